"""Train steps under shard_map: 8 devices == 1 device, NaN steps skipped."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxmetric import losses
from jaxmetric.train import (
    base_config,
    create_train_state,
    make_mesh,
    make_train_step,
    validate_config,
)
from jaxmetric.train.optim import make_optimizer

BATCH = 16


def _config(method: str):
    c = base_config()
    c.method = method
    c.batch_size = BATCH
    c.model.channels = 8
    c.model.use_bn = True  # global BN in the encoder ...
    c.model.head_bn = True  # ... and in the head
    c.model.head_hidden = 16
    c.model.embed_dim = 8
    c.moco.queue_size = 2 * BATCH
    c.nnclr.queue_size = 2 * BATCH
    c.augment.mnist1d.noise = 0.05
    if method == "simclr":
        c.optimizer.name = "lars"
        c.optimizer.learning_rate = 0.5
        c.optimizer.weight_decay = 1e-4
    else:
        c.optimizer.name = "sgd"
        c.optimizer.learning_rate = 0.1
        c.optimizer.weight_decay = 1e-4
    if method == "supervised":
        c.augment.kind = "none"
    if method == "byol":
        c.model.predictor = "mlp"  # with BN: global statistics per view
        c.model.predictor_hidden = 16
    return c


def _batches(steps: int):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps, BATCH, 40)).astype(np.float32)
    y = np.tile(np.repeat(np.arange(BATCH // 4), 4), (steps, 1)).astype(np.int32)
    return x, y


def _run(config, num_devices: int, x, y):
    mesh = make_mesh(num_devices)
    tx, _ = make_optimizer(config.optimizer, config.batch_size, config.num_steps)
    graphdef, state = create_train_state(config, (40,), tx)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    step = make_train_step(config, graphdef, tx, mesh)
    data = NamedSharding(mesh, P("data"))
    states, losses = [], []
    for xs, ys in zip(x, y, strict=True):
        state, metrics = step(state, jax.device_put(xs, data), jax.device_put(ys, data))
        states.append(jax.device_get(state))
        losses.append(float(metrics["loss"]))
    return states, losses


@pytest.mark.parametrize(
    "method", ["simclr", "moco", "byol", "barlow_twins", "nnclr", "supervised"]
)
def test_eight_devices_match_one_device_after_three_steps(method):
    assert jax.device_count() == 8
    config = _config(method)
    x, y = _batches(3)
    (*_, one), losses_one = _run(config, 1, x, y)
    (*_, eight), losses_eight = _run(config, 8, x, y)
    np.testing.assert_allclose(losses_eight, losses_one, rtol=1e-5, atol=1e-6)
    assert int(one.step) == int(eight.step) == 3
    # The parameters moved, and identically on both meshes.
    initial = create_train_state(config, (40,), make_optimizer(config.optimizer, BATCH, 1)[0])[1]
    moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), one.params, initial.params)
    assert max(jax.tree.leaves(moved)) > 1e-3
    for name in ("params", "batch_stats", "target_params", "target_batch_stats", "queue"):
        a, b = getattr(one, name), getattr(eight, name)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=1e-5, err_msg=name)
    if method == "byol":
        # The target moved towards the online network, but is not equal to it.
        assert not np.allclose(
            jax.tree.leaves(one.target_params)[0], jax.tree.leaves(one.params)[0]
        )
        assert not np.allclose(
            jax.tree.leaves(one.target_params)[0], jax.tree.leaves(initial.params)[0]
        )
    if method in ("moco", "nnclr"):
        # The queue received the 3 x 16 keys: pointer wrapped to 48 mod 32.
        assert int(one.queue.pointer) == (3 * BATCH) % config[method].queue_size
        assert bool(np.all(one.queue.valid))
    if method == "moco":
        assert not np.allclose(
            jax.tree.leaves(one.target_params)[0], jax.tree.leaves(one.params)[0]
        )


def test_simclr_block_size_matches_the_default_path():
    # simclr.block_size: tiles of 5 rows over the gathered views (uneven) give
    # the step of the default ("auto": the kernel's own choice), 8 devices,
    # 32 views.
    default = _config("simclr")
    tiled = _config("simclr")
    tiled.simclr.block_size = 5
    x, y = _batches(1)
    (a,), loss_a = _run(default, 8, x, y)
    (b,), loss_b = _run(tiled, 8, x, y)
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=1e-6)


def test_non_finite_step_is_skipped():
    config = _config("simclr")
    x, y = _batches(2)
    x[1, 3, 5] = np.nan
    (state, after), losses = _run(config, 8, x, y)
    assert np.isfinite(losses[0]) and not np.isfinite(losses[1])
    assert int(after.step) == 2 and int(after.skipped) == 1
    for u, v in zip(jax.tree.leaves(state.params), jax.tree.leaves(after.params), strict=True):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("loss", sorted(losses.LABEL_LOSSES))
def test_supervised_method_trains_with_every_label_based_loss(loss):
    config = _config("supervised")
    config.supervised.loss = loss
    config.supervised.loss_kwargs = {}  # the loss's own defaults
    validate_config(config, num_devices=1)
    x, y = _batches(1)
    (state,), (value,) = _run(config, 1, x, y)
    assert np.isfinite(value) and int(state.step) == 1 and int(state.skipped) == 0


def test_supervised_proxy_anchor_trains_the_model_proxies_as_one_device_autodiff():
    # The trainer's step (under shard_map, on 2 devices) against plain
    # jax.grad of the loss of the model's embeddings and proxies, no mesh.
    from jaxmetric.models import build_model
    from jaxmetric.train.state import merge_model, split_model

    config = _config("supervised")
    config.supervised.loss = "proxy_anchor_loss"
    config.supervised.loss_kwargs = {"margin": 0.1, "alpha": 32.0}
    config.model.num_proxies = BATCH // 4  # one proxy per class of the batch
    config.optimizer.weight_decay = 0.0
    validate_config(config, num_devices=2)
    x, y = _batches(1)
    (after,), (value,) = _run(config, 2, x, y)
    tx, _ = make_optimizer(config.optimizer, BATCH, 1)
    before = create_train_state(config, (40,), tx)[1]
    graphdef = split_model(build_model(config.model, (40,)))[0]  # no device axis

    def loss(params):
        z = merge_model(graphdef, params, before.batch_stats)(x[0], train=True)[1]
        return losses.proxy_anchor_loss(z, y[0], params["proxies"], margin=0.1, alpha=32.0)

    want, grads = jax.jit(jax.value_and_grad(loss))(before.params)
    np.testing.assert_allclose(value, want, rtol=1e-5)
    assert before.params["proxies"].shape == (4, config.model.embed_dim)
    # SGD's first step (momentum trace = gradient): p - lr * g.
    np.testing.assert_allclose(
        after.params["proxies"], before.params["proxies"] - 0.1 * grads["proxies"], atol=1e-5
    )
    assert np.abs(grads["proxies"]).max() > 1e-3


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("model.num_proxies", 0, "`model.num_proxies` must be the number of training classes"),
        ("grad_cache.chunk_size", 4, "`grad_cache.chunk_size`=4: gradient caching"),
    ],
)
def test_supervised_proxy_loss_config_is_checked(field, value, match):
    config = _config("supervised")
    config.supervised.loss = "proxy_anchor_loss"
    config.supervised.loss_kwargs = {}
    config.model.num_proxies = 4
    config.update_from_flattened_dict({field: value})
    with pytest.raises(ValueError, match=match):
        validate_config(config, num_devices=1)
