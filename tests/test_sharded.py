"""Sharded == single device, for every loss, under jax.shard_map and jax.pmap.

On 8 simulated CPU devices each loss is called with ``axis_name="data"`` on
the local shard. It must return, on every device, the value of the
single-device loss on the concatenated batch, and the gradient reaching the
replicated parameters of a small model must equal the single-device gradient:
under shard_map with no collective on the gradient, under pmap after the
usual pmean.
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
LOCAL = 4
GLOBAL = NUM_DEVICES * LOCAL
IN_DIM, EMB_DIM = 6, 5
ATOL = 1e-5


def _mesh() -> jax.sharding.Mesh:
    return jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _embed(params: dict, x: jax.Array) -> jax.Array:
    """A small model: one dense layer, tanh, a second dense layer."""
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


# Each case: fn(params, x, labels, mask, queue, axis_name) -> scalar loss.
# x is [B, 2, IN_DIM]: two views of each example (label losses use view 0).
def _label_loss(loss_fn, **kwargs):
    def fn(params, x, labels, mask, queue, axis_name):
        del queue
        return loss_fn(_embed(params, x[:, 0]), labels, mask=mask, axis_name=axis_name, **kwargs)

    return fn


def _simclr(params, x, labels, mask, queue, axis_name):
    del labels, queue
    return jm.simclr_loss(
        _embed(params, x[:, 0]),
        _embed(params, x[:, 1]),
        temperature=0.2,
        mask=mask,
        axis_name=axis_name,
    )


def _npair(params, x, labels, mask, queue, axis_name):
    del queue
    return jm.npair_loss(
        _embed(params, x[:, 0]),
        _embed(params, x[:, 1]),
        labels=labels // 2,
        l2_reg=0.01,
        temperature=0.5,
        mask=mask,
        axis_name=axis_name,
    )


def _moco(params, x, labels, mask, queue, axis_name):
    del labels
    return jm.moco_loss(
        _embed(params, x[:, 0]),
        _embed(params, x[:, 1]),
        queue,
        temperature=0.2,
        mask=mask,
        axis_name=axis_name,
    )


def _nnclr(params, x, labels, mask, queue, axis_name):
    del labels
    return jm.nnclr_loss(
        _embed(params, x[:, 0]),
        _embed(params, x[:, 1]),
        queue,
        temperature=0.2,
        mask=mask,
        axis_name=axis_name,
    )


CASES = {
    **{
        f"triplet_{mining}": _label_loss(jm.triplet_margin_loss, mining=mining, margin=0.3)
        for mining in jm.mining.TRIPLET_MINING
    },
    "triplet_soft_batch_hard_sq": _label_loss(
        jm.triplet_margin_loss,
        mining="batch_hard",
        soft=True,
        metric="squared_euclidean",
        normalize=False,
    ),
    "triplet_semi_hard_sum": _label_loss(
        jm.triplet_margin_loss, mining="semi_hard", reduction="sum", metric="cosine"
    ),
    "contrastive": _label_loss(jm.contrastive_loss, pos_margin=0.1, neg_margin=0.9),
    "contrastive_mean": _label_loss(jm.contrastive_loss, reduction="mean"),
    "angular": _label_loss(jm.angular_loss),
    "ntxent": _label_loss(jm.ntxent_loss, temperature=0.1),
    "simclr": _simclr,
    "npair": _npair,
    "moco": _moco,
    "nnclr": _nnclr,
}


def _data(seed: int, masked: bool):
    rng = np.random.default_rng(seed)
    params = {
        "w1": jnp.asarray(rng.normal(size=(IN_DIM, 8)) / np.sqrt(IN_DIM), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(8, EMB_DIM)) / np.sqrt(8), jnp.float32),
    }
    x = jnp.asarray(rng.normal(size=(GLOBAL, 2, IN_DIM)), jnp.float32)
    # Classes of two: row i and row i + GLOBAL / 2 live on different devices,
    # so every positive of an anchor sits on another device.
    labels = jnp.asarray(np.arange(GLOBAL) % (GLOBAL // 2), jnp.int32)
    mask = np.ones(GLOBAL, bool)
    if masked:
        mask[rng.choice(GLOBAL, size=5, replace=False)] = False
    queue = jnp.asarray(rng.normal(size=(16, EMB_DIM)), jnp.float32)
    return params, x, labels, jnp.asarray(mask), queue


def _single(fn, params, x, labels, mask, queue):
    return jax.jit(jax.value_and_grad(lambda p: fn(p, x, labels, mask, queue, None)))(params)


def _shard_map(fn, params, x, labels, mask, queue):
    def step(p, x, labels, mask, queue):
        value, grads = jax.value_and_grad(lambda p: fn(p, x, labels, mask, queue, "data"))(p)
        # No collective on the gradient: shard_map (check_vma=True) has
        # already summed the contributions of all devices.
        expand = functools.partial(jax.tree.map, lambda a: a[None])
        return value[None], expand(grads)

    mapped = jax.shard_map(
        step,
        mesh=_mesh(),
        in_specs=(P(), P("data"), P("data"), P("data"), P()),
        out_specs=(P("data"), P("data")),
    )
    return jax.jit(mapped)(params, x, labels, mask, queue)


def _pmap(fn, params, x, labels, mask, queue):
    def step(p, x, labels, mask, queue):
        value, grads = jax.value_and_grad(lambda p: fn(p, x, labels, mask, queue, "data"))(p)
        return value, jax.lax.pmean(grads, "data")

    split = lambda a: a.reshape(NUM_DEVICES, -1, *a.shape[1:])  # noqa: E731
    return jax.pmap(step, axis_name="data", in_axes=(None, 0, 0, 0, None))(
        params, split(x), split(labels), split(mask), queue
    )


@pytest.mark.parametrize("mapper", [_shard_map, _pmap], ids=["shard_map", "pmap"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_sharded_equals_single_device(case, masked, mapper):
    assert len(jax.devices()) == NUM_DEVICES
    fn = CASES[case]
    data = _data(seed=len(case) + masked, masked=masked)
    value, grads = _single(fn, *data)
    assert float(value) > 0  # A case that could not fail would be useless.
    values, sharded_grads = mapper(fn, *data)
    np.testing.assert_allclose(
        np.asarray(values), np.full(NUM_DEVICES, value), rtol=1e-5, atol=ATOL
    )
    for name in grads:
        expected = np.broadcast_to(np.asarray(grads[name]), sharded_grads[name].shape)
        assert np.abs(expected).max() > 1e-4
        np.testing.assert_allclose(np.asarray(sharded_grads[name]), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "facenet_semi_hard"])
def test_hardest_candidate_on_another_device(mining):
    """Mining must find the hardest negative wherever it lives.

    The embeddings are the inputs themselves; each anchor's closest negative
    is planted on the device after it. A per-device (ungathered) miner would
    see another negative and give another loss and gradient.
    """
    rng = np.random.default_rng(0)
    base = rng.normal(size=(GLOBAL, EMB_DIM))
    labels = np.arange(GLOBAL) % (GLOBAL // 2)
    emb = base.copy()
    for i in range(GLOBAL):
        j = (i + LOCAL) % GLOBAL  # Same local slot, next device.
        if labels[j] != labels[i]:
            emb[j] = base[i] + 0.05 * rng.normal(size=EMB_DIM)
    emb = jnp.asarray(emb, jnp.float32)
    labels = jnp.asarray(labels, jnp.int32)
    loss = functools.partial(jm.triplet_margin_loss, mining=mining, margin=0.5)

    dist = jm.pairwise_distances(jm.l2_normalize(emb))
    pos, neg = jm.mining.pair_masks(labels)
    _, neg_index, valid = jm.mining.batch_hard(dist, pos, neg)
    device_of = lambda i: np.asarray(i) // LOCAL  # noqa: E731
    off_device = device_of(neg_index) != device_of(np.arange(GLOBAL))
    assert np.mean(off_device[np.asarray(valid)]) > 0.5

    value, grad = jax.value_and_grad(lambda e: loss(e, labels))(emb)
    mapped = jax.jit(
        jax.shard_map(
            jax.value_and_grad(lambda e, y: loss(e, y, axis_name="data")),
            mesh=_mesh(),
            in_specs=(P("data"), P("data")),
            out_specs=(P(), P("data")),
        )
    )
    sharded_value, sharded_grad = mapped(emb, labels)
    # The local-only loss (what a miner that forgot to gather would compute).
    local_only = jax.jit(
        jax.shard_map(
            lambda e, y: jax.lax.pmean(loss(e, y), "data"),
            mesh=_mesh(),
            in_specs=(P("data"), P("data")),
            out_specs=P(),
        )
    )(emb, labels)
    assert abs(float(local_only) - float(value)) > 1e-3
    np.testing.assert_allclose(float(sharded_value), float(value), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(sharded_grad), np.asarray(grad), atol=ATOL)


def test_simclr_sees_all_global_negatives():
    """8 devices x 512 local pairs: each anchor's softmax runs over 8,190 negatives."""
    local_pairs, dim, temperature = 512, 32, 0.5
    num_pairs = NUM_DEVICES * local_pairs
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(num_pairs, dim)).astype(np.float32)
    z2 = (z1 + 0.5 * rng.normal(size=(num_pairs, dim))).astype(np.float32)

    mapped = jax.jit(
        jax.shard_map(
            lambda a, b: jm.simclr_loss(a, b, temperature=temperature, axis_name="data")[None],
            mesh=_mesh(),
            in_specs=(P("data"), P("data")),
            out_specs=P("data"),
        )
    )
    per_device = np.asarray(mapped(jnp.asarray(z1), jnp.asarray(z2)))

    # NumPy reference, float64, with the negatives of each anchor listed
    # explicitly: every other view in the global batch except its positive.
    views = np.concatenate([z1, z2]).astype(np.float64)
    views /= np.linalg.norm(views, axis=1, keepdims=True)
    n = 2 * num_pairs
    total = 0.0
    for start in range(0, n, 1024):
        rows = np.arange(start, min(start + 1024, n))
        logits = views[rows] @ views.T / temperature
        positive = (rows + num_pairs) % n
        negatives = np.ones_like(logits, dtype=bool)
        negatives[np.arange(len(rows)), rows] = False
        negatives[np.arange(len(rows)), positive] = False
        assert (negatives.sum(axis=1) == 8190).all()
        pos_logit = logits[np.arange(len(rows)), positive]
        shift = logits.max(axis=1)
        denom = np.exp(pos_logit - shift) + np.where(
            negatives, np.exp(logits - shift[:, None]), 0
        ).sum(1)
        total += np.sum(-(pos_logit - shift) + np.log(denom))
    expected = total / n
    np.testing.assert_allclose(per_device, np.full(NUM_DEVICES, expected), rtol=1e-5)
    # With only the local negatives (1022 per anchor) the loss would be lower.
    local = float(jm.simclr_loss(z1[:local_pairs], z2[:local_pairs], temperature=temperature))
    assert local < expected - 0.5
