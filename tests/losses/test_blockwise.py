"""Every path of the tiled NT-Xent family equals the default: value and gradients.

``simclr_loss``, ``ntxent_loss``, ``supcon_loss`` and ``moco_loss`` default to
``block_size="auto"``; every explicit path (None: dense; ints, the last tile
uneven or one tile larger than the batch; the ring) must give the default's
value and gradient, on one device and on 8 simulated devices under
shard_map and pmap. The multi-device symmetric kernel of ``simclr_loss``
also runs through the model harness of tests/harness.py, and XLA's cost
analysis shows that it splits the single-device work over the devices.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxmetric as jm
from tests.harness import MAPPERS, assert_sharded_equals_single, embed, sharded_data

NUM_DEVICES = 8
ATOL = 1e-5


def _mesh():
    return jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _views(num_pairs: int, dim: int = 8, seed: int = 0, masked: bool = False):
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=(num_pairs, dim)).astype(np.float32)
    z2 = (z1 + 0.5 * rng.normal(size=(num_pairs, dim))).astype(np.float32)
    labels = rng.integers(0, max(2, num_pairs // 3), size=num_pairs).astype(np.int32)
    mask = np.ones(num_pairs, bool)
    if masked:
        mask[rng.choice(num_pairs, size=num_pairs // 5, replace=False)] = False
    return jnp.asarray(z1), jnp.asarray(z2), jnp.asarray(labels), jnp.asarray(mask)


def _simclr(z1, z2, labels, mask, **kwargs):
    del labels
    return jm.simclr_loss(z1, z2, temperature=0.2, mask=mask, **kwargs)


def _ntxent(z1, z2, labels, mask, **kwargs):
    del z2
    return jm.ntxent_loss(z1, labels, temperature=0.2, mask=mask, **kwargs)


def _supcon(z1, z2, labels, mask, **kwargs):
    del z2
    return jm.supcon_loss(z1, labels, temperature=0.2, mask=mask, **kwargs)


# A replicated queue of 23 slots, every fifth one empty.
_QUEUE = jnp.asarray(np.random.default_rng(9).normal(size=(23, 8)), jnp.float32)
_QUEUE_MASK = jnp.asarray(np.arange(23) % 5 != 0)


def _moco(z1, z2, labels, mask, **kwargs):
    del labels
    return jm.moco_loss(
        z1, z2, _QUEUE, temperature=0.1, queue_mask=_QUEUE_MASK, mask=mask, **kwargs
    )


LOSSES = {"simclr": _simclr, "ntxent": _ntxent, "supcon": _supcon, "moco": _moco}


@functools.cache
def _compiled(fn, kwargs: tuple):
    return jax.jit(
        jax.value_and_grad(lambda a, b, y, m: fn(a, b, y, m, **dict(kwargs)), argnums=(0, 1))
    )


def _value_and_grads(fn, z1, z2, labels, mask, **kwargs):
    return _compiled(fn, tuple(sorted(kwargs.items())))(z1, z2, labels, mask)


def _assert_same(a, b):
    (value_a, grads_a), (value_b, grads_b) = a, b
    np.testing.assert_allclose(np.asarray(value_a), np.asarray(value_b), rtol=1e-5, atol=ATOL)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        np.testing.assert_allclose(np.asarray(ga), np.asarray(gb), rtol=0, atol=ATOL)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_default_equals_every_explicit_path_on_one_device(loss):
    data = _views(num_pairs=21, masked=True)  # 42 views: uneven last tiles
    default = _value_and_grads(LOSSES[loss], *data)
    assert float(default[0]) > 0
    # None: dense; 1, 5, 16: uneven last tiles (odd and even numbers of
    # tiles for the symmetric kernel); 64: one tile larger than the batch.
    for block_size in (None, 1, 5, 16, 64):
        _assert_same(_value_and_grads(LOSSES[loss], *data, block_size=block_size), default)


def _sharded(fn, z1, z2, labels, mask, **kwargs):
    def step(a, b, y, m):
        return jax.value_and_grad(
            lambda a, b: fn(a, b, y, m, axis_name="data", **kwargs), argnums=(0, 1)
        )(a, b)

    mapped = jax.shard_map(
        step,
        mesh=_mesh(),
        in_specs=(P("data"),) * 4,
        out_specs=(P(), (P("data"), P("data"))),
    )
    return jax.jit(mapped)(z1, z2, labels, mask)


def _pmapped(fn, z1, z2, labels, mask, **kwargs):
    def step(a, b, y, m):
        value, grads = jax.value_and_grad(
            lambda a, b: fn(a, b, y, m, axis_name="data", **kwargs), argnums=(0, 1)
        )(a, b)
        # pmap convention: each device holds its share; the mean over devices
        # of the per-device gradients is the gradient of the global loss.
        return value, jax.tree.map(lambda g: g / NUM_DEVICES, grads)

    split = lambda a: a.reshape(NUM_DEVICES, -1, *a.shape[1:])  # noqa: E731
    value, grads = jax.pmap(step, axis_name="data")(*map(split, (z1, z2, labels, mask)))
    merge = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731
    np.testing.assert_allclose(np.asarray(value), float(value[0]), rtol=1e-6)
    return value[0], tuple(map(merge, grads))


# Explicit paths under axis_name (the default's are the registry's cases in
# test_contract_sharded). block 3: tiles that divide neither the 10 local nor
# the 80 global rows; the symmetric kernel then has 4 row blocks per device.
SHARDED_PATHS = {
    "simclr": ("dense", "block3", "ring", "ring-block3"),
    "ntxent": ("dense", "block3", "ring", "ring-block3"),
    "supcon": ("dense", "block3"),
    "moco": ("dense", "block3"),
}
PATH_KWARGS = {
    "dense": {"block_size": None},
    "block3": {"block_size": 3},
    "ring": {"ring": True},
    "ring-block3": {"ring": True, "block_size": 3},
}


@pytest.mark.parametrize("mapper", [_sharded, _pmapped], ids=["shard_map", "pmap"])
@pytest.mark.parametrize(
    ("loss", "path"), [(loss, path) for loss, paths in SHARDED_PATHS.items() for path in paths]
)
def test_explicit_paths_on_8_devices_equal_the_default_on_one(loss, path, mapper):
    data = _views(num_pairs=NUM_DEVICES * 5, masked=True, seed=1)  # 5 local pairs
    single = _value_and_grads(LOSSES[loss], *data)
    _assert_same(mapper(LOSSES[loss], *data, **PATH_KWARGS[path]), single)


# The multi-device symmetric kernel through the model harness, with 5-row
# tiles: two row blocks per device, the last padded (the default, one row
# block per device, is the registry's simclr case in test_contract_sharded);
# the parameters' gradient with no collective on it.
def _model_simclr(params, batch, replicated, axis_name):
    del replicated
    z1 = embed(params, batch["x"][:, 0])
    z2 = embed(params, batch["x"][:, 1]) @ params["w3"]
    return jm.simclr_loss(
        z1, z2, temperature=0.3, mask=batch["mask"], axis_name=axis_name, block_size=5
    )


@pytest.mark.parametrize("mapper", MAPPERS)
def test_multi_device_symmetric_simclr_equals_one_device(mapper):
    assert_sharded_equals_single(
        _model_simclr,
        sharded_data(seed=3, masked=True),
        mapper,
        nonzero_grads=("w1", "w2", "w3"),
    )


def _flops(fn, *args) -> float:
    return float(jax.jit(fn).lower(*args).compile().cost_analysis()["flops"])


def test_multi_device_symmetric_simclr_splits_the_flops_over_the_devices():
    # 16 pairs per device, 256 views in all: "auto" is one tile of S on one
    # device, and one row block (the diagonal tile, 3 tiles after it and half
    # of the tile opposite) per device on 8; no loop runs more than once, so
    # XLA's cost analysis counts every FLOP.
    local_pairs, dim = 16, 32
    z1, z2 = jnp.asarray(
        np.random.default_rng(0).normal(size=(2, NUM_DEVICES * local_pairs, dim)), jnp.float32
    )

    def grad(axis_name):
        return jax.value_and_grad(
            lambda a, b: jm.simclr_loss(a, b, axis_name=axis_name), argnums=(0, 1)
        )

    def per_device(fn):
        specs = (P("data"), P("data"))
        return jax.shard_map(fn, mesh=_mesh(), in_specs=specs, out_specs=(P(), specs))

    def dense(a, b):
        return jax.value_and_grad(
            lambda a, b: jm.simclr_loss(a, b, axis_name="data", block_size=None), argnums=(0, 1)
        )(a, b)

    single = _flops(grad(None), z1, z2)
    sharded = _flops(per_device(grad("data")), z1, z2)
    assert sharded <= 1.1 * single / NUM_DEVICES, (sharded, single)
    # Every GEMM counted: one pass over this device's 4.5 tiles of S at least,
    # and less than the dense slab of its rows against every view.
    local_rows = 2 * local_pairs
    assert sharded >= 4.5 * 2 * local_rows**2 * dim
    assert sharded < _flops(per_device(dense), z1, z2)


def test_ring_needs_axis_name_and_block_size_is_checked():
    z1, z2, labels, mask = _views(4)
    with pytest.raises(ValueError, match="`ring`=True .* needs `axis_name`"):
        jm.simclr_loss(z1, z2, ring=True)
    with pytest.raises(ValueError, match="`ring`=True"):
        jm.ntxent_loss(z1, labels, ring=True)
    for bad in (0, -4, 2.5, "dense", True):
        with pytest.raises(ValueError, match='`block_size` must be "auto", None or a positive'):
            jm.simclr_loss(z1, z2, block_size=bad)
        with pytest.raises(ValueError, match='`block_size` must be "auto", None or a positive'):
            jm.moco_loss(z1, z2, z1, block_size=bad)
        with pytest.raises(ValueError, match="`block_size`"):
            jm.supcon_loss(z1, labels, block_size=bad)


@pytest.mark.parametrize("temperature", [1.0, 0.05, 0.02])
@pytest.mark.parametrize("block_size", [5, 64])
def test_simclr_symmetric_and_slab_tiles_equal_dense(temperature, block_size, monkeypatch):
    # T >= 1/30 takes the symmetric tiles (upper triangle only, shared shift
    # 1/T); T = 0.02 falls back to the row slabs, whose shift is per row.
    from jaxmetric.losses import _symmetric_tiles

    assert _symmetric_tiles.symmetric_applies(temperature) == (temperature >= 1 / 30)
    # The window of tiles after the diagonal in GEMMs of two tiles, the last
    # one tile (74 rows in 5-row blocks: 7 tiles after each diagonal one).
    monkeypatch.setattr(_symmetric_tiles, "WINDOW_COLUMNS", 2 * block_size)
    z1, z2, labels, mask = _views(num_pairs=37, dim=16, seed=3, masked=True)

    def loss(a, b, **kwargs):
        return jm.simclr_loss(a, b, temperature=temperature, mask=mask, **kwargs)

    dense = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(z1, z2)
    tiled = jax.jit(
        jax.value_and_grad(functools.partial(loss, block_size=block_size), argnums=(0, 1))
    )(z1, z2)
    _assert_same(tiled, dense)


def test_blockwise_is_nan_free_in_the_edge_cases():
    z1, z2, labels, _ = _views(6)
    cases = [
        (jnp.zeros_like(z1), jnp.zeros_like(z2), labels),  # zero vectors
        (jnp.ones_like(z1), jnp.ones_like(z2), labels),  # identical rows
        (z1, z2, jnp.zeros_like(labels)),  # no negatives for ntxent
        (z1, z2, jnp.arange(6)),  # no positives for ntxent
    ]
    for a, b, y in cases:
        for fn in LOSSES.values():
            value, grads = _value_and_grads(fn, a, b, y, jnp.ones(6, bool), block_size=4)
            assert np.isfinite(float(value))
            assert all(np.isfinite(np.asarray(g)).all() for g in grads)
    for fn in (_ntxent, _supcon):  # No positive pair: 0 and a zero gradient.
        value, grads = _value_and_grads(fn, z1, z2, jnp.arange(6), jnp.ones(6, bool), block_size=4)
        assert float(value) == 0.0 and not np.asarray(grads[0]).any()
