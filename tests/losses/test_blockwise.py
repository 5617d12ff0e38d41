"""Tiled (blockwise) and ring NT-Xent equal the dense version: value and gradients.

Block sizes are chosen so that the last tile is uneven (padded and masked),
and the ring variant runs on 8 simulated devices under shard_map and pmap.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxmetric as jm

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


LOSSES = {"simclr": _simclr, "ntxent": _ntxent}


def _value_and_grads(fn, z1, z2, labels, mask, **kwargs):
    return jax.jit(
        jax.value_and_grad(lambda a, b: fn(a, b, labels, mask, **kwargs), argnums=(0, 1))
    )(z1, z2)


def _assert_same(a, b):
    (value_a, grads_a), (value_b, grads_b) = a, b
    np.testing.assert_allclose(np.asarray(value_a), np.asarray(value_b), rtol=1e-5, atol=ATOL)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        np.testing.assert_allclose(np.asarray(ga), np.asarray(gb), rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    ("block_size", "masked"), [(1, False), (7, True), (16, False), (100, True)]
)
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_blockwise_equals_dense_on_one_device(loss, block_size, masked):
    data = _views(num_pairs=21, masked=masked)  # 42 views: uneven last tiles
    dense = _value_and_grads(LOSSES[loss], *data)
    assert float(dense[0]) > 0
    tiled = _value_and_grads(LOSSES[loss], *data, block_size=block_size)
    _assert_same(tiled, dense)


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


@pytest.mark.parametrize("mapper", [_sharded, _pmapped], ids=["shard_map", "pmap"])
@pytest.mark.parametrize(
    "tiling",
    [
        {"block_size": 3},
        {"ring": True},
        {"ring": True, "block_size": 3},
    ],
    ids=["gathered-block3", "ring", "ring-block3"],
)
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_tiled_and_ring_equal_dense_on_8_devices(loss, tiling, mapper):
    data = _views(num_pairs=NUM_DEVICES * 5, masked=True, seed=1)  # 5 local pairs
    single = _value_and_grads(LOSSES[loss], *data)
    _assert_same(mapper(LOSSES[loss], *data, **tiling), single)


def test_ring_needs_axis_name_and_block_size_is_checked():
    z1, z2, labels, mask = _views(4)
    with pytest.raises(ValueError, match="`ring`=True .* needs `axis_name`"):
        jm.simclr_loss(z1, z2, ring=True)
    with pytest.raises(ValueError, match="`ring`=True"):
        jm.ntxent_loss(z1, labels, ring=True)
    for bad in (0, -4, 2.5):
        with pytest.raises(ValueError, match="`block_size` must be a positive int"):
            jm.simclr_loss(z1, z2, block_size=bad)
        with pytest.raises(ValueError, match="`block_size` must be a positive int"):
            jm.moco_loss(z1, z2, z1, block_size=bad)


@pytest.mark.parametrize("block_size", [1, 5, 64])
def test_moco_blockwise_queue_equals_dense(block_size):
    rng = np.random.default_rng(0)
    queries, keys = jnp.asarray(rng.normal(size=(2, 6, 8)), jnp.float32)
    queue = jnp.asarray(rng.normal(size=(23, 8)), jnp.float32)
    queue_mask = jnp.asarray(np.arange(23) % 5 != 0)
    loss = functools.partial(jm.moco_loss, temperature=0.1, queue_mask=queue_mask)
    dense = jax.value_and_grad(lambda q: loss(q, keys, queue))(queries)
    tiled = jax.value_and_grad(lambda q: loss(q, keys, queue, block_size=block_size))(queries)
    np.testing.assert_allclose(float(tiled[0]), float(dense[0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(tiled[1]), np.asarray(dense[1]), atol=ATOL)


@pytest.mark.parametrize("temperature", [1.0, 0.05, 0.02])
@pytest.mark.parametrize("block_size", [5, 64])
def test_simclr_symmetric_and_slab_tiles_equal_dense(temperature, block_size):
    # T >= 1/30 takes the symmetric tiles (upper triangle only, shared shift
    # 1/T); T = 0.02 falls back to the row slabs, whose shift is per row.
    from jaxmetric.losses import _symmetric_tiles

    assert _symmetric_tiles.symmetric_applies(temperature) == (temperature >= 1 / 30)
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
    value, grads = _value_and_grads(_ntxent, z1, z2, jnp.arange(6), jnp.ones(6, bool), block_size=4)
    assert float(value) == 0.0 and not np.asarray(grads[0]).any()
