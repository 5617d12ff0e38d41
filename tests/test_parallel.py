"""jaxmetric.parallel: gathering across devices and exact global reductions.

The helpers themselves against NumPy, and the losses' use of them: under
``axis_name`` the candidates of every device are seen (the hardest negative
wherever it lives, all 2N - 2 SimCLR negatives of the global batch). The
"sharded == single device" contract of every loss is
tests/losses/test_contract_sharded.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxmetric as jm
from jaxmetric import parallel
from tests.harness import ATOL, LOCAL, NUM_DEVICES, mesh, planted_hard_negatives, split


def _shard_map(fn, in_specs, out_specs):
    return jax.jit(jax.shard_map(fn, mesh=mesh(), in_specs=in_specs, out_specs=out_specs))


def test_gather_and_anchor_index_place_each_device_rows():
    x = jnp.arange(NUM_DEVICES * LOCAL * 3, dtype=jnp.float32).reshape(-1, 3)

    def local(x):
        gathered = parallel.gather(x, "data")
        index = parallel.anchor_index(x.shape[0], "data")
        # Each local row sits at its anchor index in the gathered array.
        return gathered[None], (gathered[index] - x)[None], index

    gathered, offsets, index = _shard_map(local, (P("data"),), (P("data"), P("data"), P("data")))(x)
    for device in range(NUM_DEVICES):
        np.testing.assert_array_equal(np.asarray(gathered[device]), np.asarray(x))
    assert not np.asarray(offsets).any()
    np.testing.assert_array_equal(np.asarray(index), np.arange(NUM_DEVICES * LOCAL))
    assert parallel.axis_size(None) == 1 and int(parallel.axis_index(None)) == 0
    np.testing.assert_array_equal(np.asarray(parallel.gather(x, None)), np.asarray(x))


@pytest.mark.parametrize("reduction", parallel.REDUCTIONS[:3])
def test_reduce_losses_is_the_global_reduction(reduction):
    rng = np.random.default_rng(0)
    losses = np.maximum(rng.normal(size=NUM_DEVICES * LOCAL), 0.0).astype(np.float32)
    valid = rng.random(losses.shape) > 0.3
    kept = losses[valid]
    expected = {
        "sum": kept.sum(),
        "mean": kept.mean(),
        "mean_nonzero": kept.sum() / max(1, (kept > 0).sum()),
    }[reduction]
    mapped = _shard_map(
        lambda a, v: parallel.reduce_losses(a, v, reduction, "data")[None],
        (P("data"), P("data")),
        P("data"),
    )
    got = mapped(jnp.asarray(losses), jnp.asarray(valid))
    np.testing.assert_allclose(np.asarray(got), np.full(NUM_DEVICES, expected), rtol=1e-6)
    single = parallel.reduce_losses(jnp.asarray(losses), jnp.asarray(valid), reduction, None)
    np.testing.assert_allclose(float(single), expected, rtol=1e-6)
    # Nothing valid: 0, not NaN.
    nothing = jnp.zeros(losses.shape, bool)
    assert float(parallel.reduce_losses(jnp.asarray(losses), nothing, reduction, None)) == 0.0


def test_safe_divide_is_zero_with_zero_gradient_where_the_denominator_is():
    num, den = jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0])
    np.testing.assert_array_equal(np.asarray(parallel.safe_divide(num, den)), [0.0, 0.5])
    grad = jax.grad(lambda n, d: jnp.sum(parallel.safe_divide(n, d)), argnums=(0, 1))(num, den)
    for g in grad:
        assert np.isfinite(np.asarray(g)).all()
    assert float(grad[0][0]) == 0.0 and float(grad[1][0]) == 0.0


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "facenet_semi_hard"])
def test_hardest_candidate_on_another_device(mining):
    """Mining must find the hardest negative wherever it lives.

    The embeddings are the inputs themselves; each anchor's closest negative
    is planted on the device after it. A per-device (ungathered) miner would
    see another negative and give another loss and gradient.
    """
    emb, labels = planted_hard_negatives()
    loss = functools.partial(jm.triplet_margin_loss, mining=mining, margin=0.5)

    dist = jm.pairwise_distances(jm.l2_normalize(emb))
    pos, neg = jm.mining.pair_masks(labels)
    _, neg_index, valid = jm.mining.batch_hard(dist, pos, neg)
    device_of = lambda i: np.asarray(i) // LOCAL  # noqa: E731
    off_device = device_of(neg_index) != device_of(np.arange(emb.shape[0]))
    assert np.mean(off_device[np.asarray(valid)]) > 0.5

    value, grad = jax.value_and_grad(lambda e: loss(e, labels))(emb)
    mapped = _shard_map(
        jax.value_and_grad(lambda e, y: loss(e, y, axis_name="data")),
        (P("data"), P("data")),
        (P(), P("data")),
    )
    sharded_value, sharded_grad = mapped(emb, labels)
    # The local-only loss (what a miner that forgot to gather would compute).
    local_only = _shard_map(
        lambda e, y: jax.lax.pmean(loss(e, y), "data"), (P("data"), P("data")), P()
    )(emb, labels)
    assert abs(float(local_only) - float(value)) > 1e-3
    np.testing.assert_allclose(float(sharded_value), float(value), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(sharded_grad), np.asarray(grad), atol=ATOL)


def test_multi_similarity_miner_sees_other_devices():
    """The miner's hardest negative must be found wherever it lives.

    Each anchor's most similar negative is planted on the next device; a
    per-device miner would keep other pairs and give another value.
    """
    emb, labels = planted_hard_negatives()
    loss = functools.partial(jm.multi_similarity_loss, epsilon=0.1)
    expected = loss(emb, labels)
    per_device = np.mean(jax.vmap(loss)(split(emb), split(labels)))
    assert abs(per_device - float(expected)) > 1e-3
    sharded = _shard_map(
        lambda e, y: loss(e, y, axis_name="data")[None], (P("data"), P("data")), P("data")
    )(emb, labels)
    np.testing.assert_allclose(np.asarray(sharded), float(expected), rtol=1e-5, atol=ATOL)


def test_simclr_sees_all_global_negatives():
    """8 devices x 512 local pairs: each anchor's softmax runs over 8,190 negatives."""
    local_pairs, dim, temperature = 512, 32, 0.5
    num_pairs = NUM_DEVICES * local_pairs
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(num_pairs, dim)).astype(np.float32)
    z2 = (z1 + 0.5 * rng.normal(size=(num_pairs, dim))).astype(np.float32)

    mapped = _shard_map(
        lambda a, b: jm.simclr_loss(a, b, temperature=temperature, axis_name="data")[None],
        (P("data"), P("data")),
        P("data"),
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
