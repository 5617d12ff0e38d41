"""config.grad_cache in the trainer: steps with the encoder in chunks equal
the plain steps (no BatchNorm), on 1 and 8 devices; BatchNorm per chunk runs;
the config is validated before anything compiles."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmetric.train import (
    base_config,
    create_train_state,
    make_mesh,
    make_train_step,
    methods,
    validate_config,
)
from jaxmetric.train.optim import make_optimizer

BATCH = 32
STEPS = 3
SHAPE = (40,)


def _config(method: str, chunk_size: int = 0, *, bn: bool = False):
    c = base_config()
    c.method = method
    c.batch_size = BATCH
    c.num_steps = 10
    c.model.encoder = "mlp"
    c.model.mlp_hidden = (32, 16)
    c.model.use_bn = bn  # the encoder's BatchNorm ...
    c.model.head_bn = bn  # ... and the projection head's
    c.model.head_hidden = 16
    c.model.embed_dim = 8
    c.augment.mnist1d.noise = 0.05
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 1e-4
    if method == "supervised":
        c.supervised.loss = "supcon_loss"
        c.supervised.loss_kwargs = {}
    c.grad_cache.chunk_size = chunk_size
    return c


@functools.cache
def _batches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS, BATCH, *SHAPE)).astype(np.float32)
    y = np.tile(np.repeat(np.arange(BATCH // 4), 4), (STEPS, 1)).astype(np.int32)
    return x, y


def _run(config, num_devices: int):
    validate_config(config, num_devices)
    x, y = _batches()
    mesh = make_mesh(num_devices)
    tx, _ = make_optimizer(config.optimizer, config.batch_size, config.num_steps)
    graphdef, state = create_train_state(config, SHAPE, tx)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    step = make_train_step(config, graphdef, tx, mesh)
    data = NamedSharding(mesh, P("data"))
    losses = []
    for xs, ys in zip(x, y, strict=True):
        state, metrics = step(state, jax.device_put(xs, data), jax.device_put(ys, data))
        losses.append(float(metrics["loss"]))
    return jax.device_get(state), losses


@functools.cache
def _plain(method: str):
    """Three plain steps on one device (8 devices give the same: test_steps.py)."""
    return _run(_config(method), 1)


def _assert_same(got, want):
    (state, losses), (ref, ref_losses) = got, want
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-7)
    assert int(state.step) == STEPS and int(state.skipped) == 0
    for u, v in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params), strict=True):
        u, v = np.asarray(u), np.asarray(v)
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5 * np.abs(v).max())


@pytest.mark.parametrize("method", ["simclr", "supervised", "barlow_twins"])
@pytest.mark.parametrize(("num_devices", "chunk_size"), [(1, 8), (8, 2)])
def test_three_steps_with_chunks_equal_three_plain_steps(method, num_devices, chunk_size):
    # 4 chunks of the 32 rows on one device; 2 chunks of each device's 4 rows on 8.
    assert jax.device_count() == 8
    got = _run(_config(method, chunk_size), num_devices)
    plain = _plain(method)
    _assert_same(got, plain)
    # The parameters moved.
    initial = create_train_state(
        _config(method), SHAPE, make_optimizer(_config(method).optimizer, BATCH, 1)[0]
    )[1]
    moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), plain[0].params, initial.params)
    assert max(jax.tree.leaves(moved)) > 1e-3


def test_mocov3_and_vicreg_with_chunks_equal_plain_steps():
    # The two other methods that declare grad_cache, on 8 devices (MoCo v3's
    # target branch stays a whole-batch forward pass).
    for method in ("mocov3", "vicreg"):
        plain, chunked = _config(method), _config(method, 2)
        for c in (plain, chunked):
            c.model.predictor = "mlp" if method == "mocov3" else "none"
            c.model.predictor_bn = False
            c.model.predictor_hidden = 16
        _assert_same(_run(chunked, 8), _run(plain, 8))


@pytest.mark.parametrize("method", ["simclr", "barlow_twins"])
def test_batchnorm_per_chunk(method):
    # BatchNorm in the encoder and the head, 8 devices of 4 rows. One chunk
    # per device: BatchNorm sees the same rows as the plain step, so the
    # steps are the same (parameters and running statistics). Two chunks of
    # 2: each chunk is normalised with its own statistics (global over the
    # devices), a different model: finite, not the plain loss.
    plain = _run(_config(method, bn=True), 8)
    one_chunk = _run(_config(method, 4, bn=True), 8)
    _assert_same(one_chunk, plain)
    for u, v in zip(*(jax.tree.leaves(r[0].batch_stats) for r in (one_chunk, plain)), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)
    state, losses = _run(_config(method, 2, bn=True), 8)
    assert np.all(np.isfinite(losses)) and int(state.skipped) == 0
    assert abs(losses[0] - plain[1][0]) > 1e-4
    stats = jax.tree.leaves(state.batch_stats)
    assert stats and all(np.all(np.isfinite(s)) for s in stats)
    moved = [
        np.abs(a - b).max()
        for a, b in zip(stats, jax.tree.leaves(plain[0].batch_stats), strict=True)
    ]
    assert max(moved) > 1e-6  # not the plain step's running statistics


def test_chunk_size_must_divide_the_per_device_batch():
    config = _config("simclr", 8)
    validate_config(config, 1)  # 32 rows on one device: 4 chunks
    with pytest.raises(ValueError, match=r"`grad_cache.chunk_size`=8 .*per-device batch 4"):
        validate_config(config, 8)  # 4 rows per device
    config.grad_cache.chunk_size = 3
    with pytest.raises(ValueError, match=r"`grad_cache.chunk_size`=3 .*per-device batch 32"):
        validate_config(config, 1)


@pytest.mark.parametrize("value", [-1, 1.5, True, "4"])
def test_chunk_size_must_be_a_non_negative_int(value):
    config = _config("simclr")
    config.grad_cache.chunk_size = value
    with pytest.raises(ValueError, match=r"`grad_cache.chunk_size`"):
        validate_config(config, 1)


@pytest.mark.parametrize("value", [0, -2, "fast", 1.5])
def test_unroll_is_auto_a_bool_or_a_positive_int(value):
    config = _config("simclr", 4)
    for ok in ("auto", True, False, 1, 3):
        config.grad_cache.unroll = ok
        validate_config(config, 1)
    config.grad_cache.unroll = value
    with pytest.raises(ValueError, match=r"`grad_cache.unroll`"):
        validate_config(config, 1)


@pytest.mark.parametrize("method", methods.names())
def test_every_method_declares_grad_cache_and_validation_follows(method):
    declared = methods.get(method).grad_cache
    assert isinstance(declared, bool)
    # The methods whose loss couples the batch support it; the others refuse it.
    coupled = {"simclr", "mocov3", "supervised", "barlow_twins", "vicreg"}
    assert declared == (method in coupled)
    config = _config(method, 4)
    config.model.predictor = "mlp"
    config.moco.queue_size = config.nnclr.queue_size = 2 * BATCH
    if declared:
        validate_config(config, 1)
    else:
        with pytest.raises(ValueError, match=rf"`grad_cache.chunk_size`=4: method {method!r}"):
            validate_config(config, 1)
        config.grad_cache.chunk_size = 0
        validate_config(config, 1)
