"""jaxmetric.mining: label masks and miners against NumPy loops, hypothesis
properties of the miners and distances, and bad input naming the argument.

Mining compares distances: the draws are kept GAP away from every decision
boundary (see tests/harness.py), and the reference sees the distances as the
dtype under test rounds them.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import jaxmetric as jm
from jaxmetric import mining
from tests.harness import (
    DTYPES,
    PROPERTY_SETTINGS,
    SCENARIO_IDS,
    SCENARIOS,
    Pairs,
    as_float32_values,
    labelled_batch,
    plain_batch,
    precision,
    property_batches,
    property_examples,
    ref_cosine,
    ref_mine,
    ref_normalize,
    ref_pair_masks,
    ref_triplet_setup,
    ref_unit,
    triplet_data,
)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_pair_masks(scenario):
    batch, case = scenario
    _, labels, mask = plain_batch(batch, case)
    pos, neg = mining.pair_masks(
        jnp.asarray(labels), mask=None if mask is None else jnp.asarray(mask)
    )
    exp_pos, exp_neg = ref_pair_masks(labels, mask)
    np.testing.assert_array_equal(np.asarray(pos), exp_pos)
    np.testing.assert_array_equal(np.asarray(neg), exp_neg)


@pytest.mark.parametrize("with_anchor_index", [True, False], ids=["anchor_index", "disjoint"])
@pytest.mark.parametrize("masked", [False, True], ids=["all-valid", "masked"])
def test_pair_masks_reference_set(with_anchor_index, masked):
    rng = np.random.default_rng(5)
    num_ref, b, offset = 24, 8, 8  # anchors are rows 8..15 of the reference set
    ref_labels = rng.integers(0, 5, size=num_ref).astype(np.int32)
    labels = ref_labels[offset : offset + b].copy()
    ref_mask = rng.random(num_ref) > 0.3 if masked else None
    mask = ref_mask[offset : offset + b].copy() if masked else None
    anchor_index = np.arange(offset, offset + b, dtype=np.int32) if with_anchor_index else None
    pos, neg = mining.pair_masks(
        jnp.asarray(labels),
        jnp.asarray(ref_labels),
        anchor_index=None if anchor_index is None else jnp.asarray(anchor_index),
        mask=None if mask is None else jnp.asarray(mask),
        reference_mask=None if ref_mask is None else jnp.asarray(ref_mask),
    )
    exp_pos, exp_neg = ref_pair_masks(labels, mask, ref_labels, ref_mask, anchor_index)
    np.testing.assert_array_equal(np.asarray(pos), exp_pos)
    np.testing.assert_array_equal(np.asarray(neg), exp_neg)
    # The self pairs are positives exactly when no anchor_index says who is who.
    self_pairs = exp_pos[np.arange(b), np.arange(offset, offset + b)]
    assert not self_pairs.any() if with_anchor_index else self_pairs.any()


def _miner_inputs(batch, case, dtype, margin=0.3):
    """Distances (as the dtype will round them) and reference pair masks."""
    x, labels, mask = triplet_data(batch, case, "euclidean", True, margin)
    d, pos, neg = ref_triplet_setup(x, labels, mask, "euclidean", True)
    d = d.astype(dtype).astype(np.float64)  # the reference sees the same numbers
    return d, pos, neg


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_triplet_masks(scenario, dtype):
    batch, case = scenario
    margin = 0.3
    d, pos, neg = _miner_inputs(batch, case, dtype, margin)
    with precision(dtype):
        dj, pj, nj = jnp.asarray(d.astype(dtype)), jnp.asarray(pos), jnp.asarray(neg)
        got = {
            "all": np.asarray(mining.triplet_mask(pj, nj)),
            "hard": np.asarray(mining.hard_triplet_mask(dj, pj, nj)),
            "semi_hard": np.asarray(mining.semi_hard_triplet_mask(dj, pj, nj, margin=margin)),
        }
    for name, mined in got.items():
        expected = np.zeros((batch, batch, batch), bool)
        for a, p, n in ref_mine(d, pos, neg, name, margin):
            expected[a, p, n] = True
        assert mined.shape == expected.shape
        np.testing.assert_array_equal(mined, expected, err_msg=name)
    if case == "mixed" and batch == 32:  # the comparison is not vacuous
        assert got["hard"].any() and got["semi_hard"].any()
        assert (got["all"] & ~got["hard"] & ~got["semi_hard"]).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_batch_hard_miner(scenario, dtype):
    batch, case = scenario
    d, pos, neg = _miner_inputs(batch, case, dtype)
    with precision(dtype):
        pos_index, neg_index, valid = mining.batch_hard(
            jnp.asarray(d.astype(dtype)), jnp.asarray(pos), jnp.asarray(neg)
        )
    pos_index, neg_index, valid = map(np.asarray, (pos_index, neg_index, valid))
    assert pos_index.shape == neg_index.shape == valid.shape == (batch,)
    expected_valid = np.zeros(batch, bool)
    for a, p, n in ref_mine(d, pos, neg, "batch_hard", 0.0):
        expected_valid[a] = True
        assert (pos_index[a], neg_index[a]) == (p, n), f"anchor {a}"
    np.testing.assert_array_equal(valid, expected_valid)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_facenet_semi_hard_miner(scenario, dtype):
    batch, case = scenario
    d, pos, neg = _miner_inputs(batch, case, dtype)
    with precision(dtype):
        neg_index, valid = mining.facenet_semi_hard(
            jnp.asarray(d.astype(dtype)), jnp.asarray(pos), jnp.asarray(neg)
        )
    neg_index, valid = np.asarray(neg_index), np.asarray(valid)
    assert neg_index.shape == valid.shape == (batch, batch)
    expected_valid = np.zeros((batch, batch), bool)
    used_fallback = False
    for a, p, n in ref_mine(d, pos, neg, "facenet_semi_hard", 0.0):
        expected_valid[a, p] = True
        assert neg_index[a, p] == n, f"pair ({a}, {p})"
        used_fallback |= d[a, n] < d[a, p]
    np.testing.assert_array_equal(valid, expected_valid)
    if case == "mixed" and batch == 32:  # both branches of the rule are exercised
        assert used_fallback and expected_valid.any()


def test_multi_similarity_mask_matches_loop():
    x, labels, mask = labelled_batch("masked")
    b = len(labels)
    sim = np.array([[ref_cosine(u, v) for v in x] for u in x])
    pos, neg = mining.pair_masks(jnp.asarray(labels), mask=jnp.asarray(mask))
    mined_pos, mined_neg = mining.multi_similarity_mask(
        jnp.asarray(sim, jnp.float32), pos, neg, epsilon=0.1
    )
    for i, p_list, n_list in Pairs(x, labels, mask).anchors():
        hardest_neg = max((sim[i, n] for n in n_list), default=-np.inf)
        hardest_pos = min((sim[i, p] for p in p_list), default=np.inf)
        for j in range(b):
            assert bool(mined_pos[i, j]) == (j in p_list and sim[i, j] - 0.1 < hardest_neg)
            assert bool(mined_neg[i, j]) == (j in n_list and sim[i, j] + 0.1 > hardest_pos)
    assert np.asarray(mined_pos).any() and np.asarray(mined_neg).any()
    # Mining selects strictly fewer pairs than there are here.
    assert np.asarray(mined_neg).sum() < np.asarray(neg).sum()


# ----------------------------------------------------------------------------
# The miners that take embeddings (PML's miners): their outputs are the losses'
# ``pairs=`` / ``triplets=``, against NumPy loops, with and without a reference set.
# ----------------------------------------------------------------------------


def _miner_batch(reference: bool):
    """(x, labels, mask, kwargs of the reference set, candidates, pos, neg) in float64."""
    x, labels, mask = labelled_batch("masked")
    if not reference:
        return x, labels, mask, {}, x, *ref_pair_masks(labels, mask)
    rng = np.random.default_rng(21)
    ref = as_float32_values(rng.normal(size=(12, x.shape[1])))
    ref_labels = rng.integers(0, 5, size=12).astype(np.int32)
    ref_mask = rng.random(12) > 0.2
    kwargs = {
        "reference_embeddings": ref,
        "reference_labels": ref_labels,
        "reference_mask": ref_mask,
    }
    return x, labels, mask, kwargs, ref, *ref_pair_masks(labels, mask, ref_labels, ref_mask)


def _x64(fn, x, labels, mask, kwargs, **hyper):
    with jax.enable_x64(True):
        args = {k: jnp.asarray(v) for k, v in kwargs.items()}
        out = fn(jnp.asarray(x), jnp.asarray(labels), mask=jnp.asarray(mask), **args, **hyper)
        return jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("reference", [False, True], ids=["batch", "reference"])
def test_multi_similarity_miner_matches_loop(reference):
    x, labels, mask, kwargs, cands, pos, neg = _miner_batch(reference)
    got_pos, got_neg = _x64(mining.multi_similarity_miner, x, labels, mask, kwargs, epsilon=0.1)
    sim = np.array([[ref_cosine(u, v) for v in cands] for u in x])
    for i in range(len(x)):
        hardest_neg = max((sim[i, n] for n in np.flatnonzero(neg[i])), default=-np.inf)
        hardest_pos = min((sim[i, p] for p in np.flatnonzero(pos[i])), default=np.inf)
        for j in range(len(cands)):
            assert got_pos[i, j] == (pos[i, j] and sim[i, j] - 0.1 < hardest_neg), (i, j)
            assert got_neg[i, j] == (neg[i, j] and sim[i, j] + 0.1 > hardest_pos), (i, j)
    assert 0 < got_neg.sum() < neg.sum() and got_pos.any()


def _ref_triplet_margin_miner(d, pos, neg, margin, kind):
    """PML's TripletMarginMiner rule, in (anchor, positive, negative) order."""
    out = []
    for a, p, n in itertools.product(*map(range, (d.shape[0], d.shape[1], d.shape[1]))):
        if not (pos[a, p] and neg[a, n]):
            continue
        gap = d[a, n] - d[a, p]
        keep = {
            "all": gap <= margin,
            "hard": gap <= 0,
            "semihard": 0 < gap <= margin,
            "easy": gap > margin,
        }[kind]
        if keep:
            out.append((a, p, n))
    return out


@pytest.mark.parametrize("reference", [False, True], ids=["batch", "reference"])
def test_triplet_margin_miner_matches_loop(reference):
    x, labels, mask, kwargs, cands, pos, neg = _miner_batch(reference)
    xn, cn = ref_normalize(x), ref_normalize(cands)
    d = np.array([[np.linalg.norm(u - v) for v in cn] for u in xn])
    for kind in mining.TRIPLET_TYPES:
        expected = _ref_triplet_margin_miner(d, pos, neg, 0.3, kind)
        assert expected, kind
        for size in (None, 7) if kind == "all" else (None,):
            t = _x64(
                mining.triplet_margin_miner,
                x,
                labels,
                mask,
                kwargs,
                margin=0.3,
                type_of_triplets=kind,
                max_triplets=size,
            )
            total = len(x) * len(cands) ** 2 if size is None else size
            assert all(a.shape == (total,) for a in t)
            kept = min(total, len(expected))
            np.testing.assert_array_equal(t.valid, np.arange(total) < kept)
            got = list(zip(t.anchor[:kept], t.positive[:kept], t.negative[:kept], strict=True))
            assert got == expected[:kept], (kind, size)


@pytest.mark.parametrize("reference", [False, True], ids=["batch", "reference"])
def test_batch_hard_miner_matches_loop(reference):
    x, labels, mask, kwargs, cands, pos, neg = _miner_batch(reference)
    t = _x64(mining.batch_hard_miner, x, labels, mask, kwargs, metric="squared_euclidean")
    xn, cn = ref_normalize(x), ref_normalize(cands)
    d = np.array([[np.sum((u - v) ** 2) for v in cn] for u in xn])
    expected = {a: (p, n) for a, p, n in ref_mine(d, pos, neg, "batch_hard", 0.0)}
    np.testing.assert_array_equal(t.anchor, np.arange(len(x)))
    np.testing.assert_array_equal(t.valid, [a in expected for a in range(len(x))])
    for a, (p, n) in expected.items():
        assert (t.positive[a], t.negative[a]) == (p, n), a
    assert 0 < len(expected) < len(x)


def test_triplets_from_mask_order_and_truncation():
    rng = np.random.default_rng(2)
    mask = rng.random((3, 4, 4)) < 0.3
    expected = list(zip(*np.nonzero(mask), strict=True))  # row-major, as torch.where
    for size in (None, 3):
        t = mining.triplets_from_mask(jnp.asarray(mask), max_triplets=size)
        total = mask.size if size is None else size
        kept = min(total, len(expected))
        np.testing.assert_array_equal(np.asarray(t.valid), np.arange(total) < kept)
        got = list(zip(*(np.asarray(a)[:kept] for a in t[:3]), strict=True))
        assert got == expected[:kept]


@pytest.mark.parametrize("reference", [False, True], ids=["batch", "reference"])
def test_mined_pairs_and_triplets_compose_with_the_losses(reference):
    """A miner's output fed to a loss == the loss's own mining (the same rule)."""
    x, labels, mask, kwargs, cands, pos, neg = _miner_batch(reference)
    with jax.enable_x64(True):
        x, labels, mask = jnp.asarray(x), jnp.asarray(labels), jnp.asarray(mask)
        kw = {"mask": mask, **{k: jnp.asarray(v) for k, v in kwargs.items()}}
        pairs = mining.multi_similarity_miner(x, labels, epsilon=0.1, **kw)
        given = jm.multi_similarity_loss(x, labels, pairs=pairs, epsilon=None, **kw)
        np.testing.assert_allclose(given, jm.multi_similarity_loss(x, labels, **kw), rtol=1e-12)
        hard = mining.batch_hard_miner(x, labels, **kw)
        np.testing.assert_allclose(
            jm.triplet_margin_loss(x, labels, triplets=hard, margin=0.3, **kw),
            jm.triplet_margin_loss(x, labels, mining="batch_hard", margin=0.3, **kw),
            rtol=1e-12,
        )
        if reference:  # the triplet mask's path is the same with a reference set
            return
        dist = jm.pairwise_distances(jm.l2_normalize(x), jm.l2_normalize(jnp.asarray(cands)))
        semi = mining.triplets_from_mask(
            mining.semi_hard_triplet_mask(dist, jnp.asarray(pos), jnp.asarray(neg), margin=0.3)
        )
        value = jm.triplet_margin_loss(x, labels, triplets=semi, margin=0.3, **kw)
        assert float(value) > 0
        np.testing.assert_allclose(
            value,
            jm.triplet_margin_loss(x, labels, mining="semi_hard", margin=0.3, **kw),
            rtol=1e-12,
        )


# ----------------------------------------------------------------------------
# Hypothesis: the miners and distances on random batches (see tests/harness.py).
# ----------------------------------------------------------------------------


@functools.cache
def _miners():
    def one(e, y, m):
        out = {}
        for metric in jm.distances.DISTANCE_METRICS:
            dist, vjp = jax.vjp(lambda e, metric=metric: jm.pairwise_distances(e, metric=metric), e)
            out[f"dist_{metric}"] = dist
            out[f"dist_grad_{metric}"] = vjp(jnp.ones_like(dist))[0]
        sim, vjp = jax.vjp(lambda e: jm.pairwise_similarities(e, metric="cosine"), e)
        out["sim_grad"] = vjp(jnp.ones_like(sim))[0]
        dist = out["dist_euclidean"]
        pos, neg = mining.pair_masks(y, mask=m)
        out.update(pos=pos, neg=neg, sim=sim, dist=dist)
        out["all"] = mining.triplet_mask(pos, neg)
        out["hard"] = mining.hard_triplet_mask(dist, pos, neg)
        out["semi"] = mining.semi_hard_triplet_mask(dist, pos, neg, margin=0.2)
        out["bh_pos"], out["bh_neg"], out["bh_valid"] = mining.batch_hard(dist, pos, neg)
        out["fn_neg"], out["fn_valid"] = mining.facenet_semi_hard(dist, pos, neg)
        out["ms_pos"], out["ms_neg"] = mining.multi_similarity_mask(sim, pos, neg)
        return out

    return jax.jit(lambda batches: [one(e, y, m) for e, y, m, _, _ in batches])


@PROPERTY_SETTINGS
@given(example=property_examples())
def test_miner_properties(example):
    batches = property_batches(example)
    for (_, y, m, _, _), o in zip(batches, jax.device_get(_miners()(batches)), strict=True):
        _check_miners(y, m, o)


def _check_miners(y, m, o):
    b = len(y)
    for key, value in o.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.isfinite(value).all(), key
    for metric in jm.distances.DISTANCE_METRICS:
        dist = o[f"dist_{metric}"]
        assert (dist >= 0).all() and not np.diag(dist).any(), metric
    pos, neg, dist = o["pos"], o["neg"], o["dist"]
    valid = m[:, None] & m[None, :]
    same = y[:, None] == y[None, :]
    np.testing.assert_array_equal(pos, same & valid & ~np.eye(b, dtype=bool))
    np.testing.assert_array_equal(neg, ~same & valid)
    triplets = pos[:, :, None] & neg[:, None, :]
    np.testing.assert_array_equal(o["all"], triplets)
    assert not (o["hard"] & ~triplets).any() and not (o["semi"] & ~triplets).any()
    assert not (o["hard"] & o["semi"]).any()  # d(a,n) < d(a,p) vs d(a,n) > d(a,p)
    has_both = pos.any(1) & neg.any(1)
    np.testing.assert_array_equal(o["bh_valid"], has_both)
    rows = np.flatnonzero(has_both)
    p, n = o["bh_pos"][rows], o["bh_neg"][rows]
    assert pos[rows, p].all() and neg[rows, n].all()
    np.testing.assert_array_equal(dist[rows, p], np.where(pos, dist, -np.inf)[rows].max(1))
    np.testing.assert_array_equal(dist[rows, n], np.where(neg, dist, np.inf)[rows].min(1))
    np.testing.assert_array_equal(o["fn_valid"], pos & neg.any(1, keepdims=True))
    a, q = np.nonzero(o["fn_valid"])
    assert neg[a, o["fn_neg"][a, q]].all()
    assert not (o["ms_pos"] & ~pos).any() and not (o["ms_neg"] & ~neg).any()
    assert 0 <= o["bh_pos"].min() and o["bh_pos"].max() < b


# ----------------------------------------------------------------------------
# Bad input: a ValueError (or TypeError) at trace time naming the argument.
# ----------------------------------------------------------------------------

LABELS = jnp.array([0, 0, 1, 1, 2, 2])
EMB = jnp.ones((6, 4))
DIST = jnp.ones((6, 6))
POS, NEG = mining.pair_masks(LABELS)
# (call, the argument the message must name in backticks)
NAMED_ARGUMENT_CASES = [
    (lambda: mining.pair_masks(LABELS[:, None]), "labels"),
    (lambda: mining.pair_masks(LABELS.astype(jnp.float32)), "labels"),
    (lambda: mining.pair_masks(LABELS, LABELS[:, None]), "reference_labels"),
    (lambda: mining.pair_masks(LABELS, mask=jnp.ones(5, bool)), "mask"),
    (
        lambda: mining.pair_masks(LABELS, LABELS[:4], reference_mask=jnp.ones(6, bool)),
        "reference_mask",
    ),
    (lambda: mining.batch_hard(jnp.ones(6), POS, NEG), "dist"),
    (lambda: mining.batch_hard(DIST, POS[:, :5], NEG), "positive_mask"),
    (lambda: mining.batch_hard(DIST, POS, NEG[:5]), "negative_mask"),
    (lambda: mining.hard_triplet_mask(DIST[:, :5], POS, NEG), "positive_mask"),
    (lambda: mining.semi_hard_triplet_mask(DIST, POS, NEG, margin=-0.1), "margin"),
    (lambda: mining.semi_hard_triplet_mask(DIST, POS[0], NEG, margin=0.1), "positive_mask"),
    (lambda: mining.facenet_semi_hard(DIST, POS, NEG[:, :2]), "negative_mask"),
    (lambda: mining.multi_similarity_mask(DIST, POS, NEG, epsilon=-1.0), "epsilon"),
    (lambda: mining.multi_similarity_mask(jnp.ones(6), POS, NEG), "sim"),
    (lambda: mining.triplet_mask(POS, NEG[:5]), "negative_mask"),
]


@pytest.mark.parametrize(
    "call, argument",
    [
        pytest.param(call, argument, id=f"mining-{i}-{argument}")
        for i, (call, argument) in enumerate(NAMED_ARGUMENT_CASES)
    ],
)
def test_rejects_bad_input_naming_the_argument(call, argument):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call()


def test_multi_similarity_mask_rejects_a_negative_epsilon():
    with pytest.raises(ValueError, match="`epsilon` must be >= 0"):
        mining.multi_similarity_mask(EMB, EMB > 0, EMB > 0, epsilon=-1.0)


# --- distance_weighted_miner (Wu et al. 2017; PML's DistanceWeightedMiner) ----------------


def ref_distance_weights(x, labels, mask, cutoff=0.5, nonzero_loss_cutoff=1.4, ref=None):
    """P(n | a) [b, M] by a loop: q(max(d, cutoff))^-1 over the valid negatives
    with d < nonzero_loss_cutoff, q(d) = d^(D-2) (1 - d^2/4)^((D-3)/2)."""
    cands, cand_labels, cand_mask = (x, labels, mask) if ref is None else ref
    dim = x.shape[1]
    probs = np.zeros((len(x), len(cands)))
    for a in range(len(x)):
        if not mask[a]:
            continue
        for n in range(len(cands)):
            if not cand_mask[n] or cand_labels[n] == labels[a]:
                continue
            d = max(float(np.linalg.norm(ref_unit(x[a]) - ref_unit(cands[n]))), cutoff)
            if d < nonzero_loss_cutoff and d < 2.0:
                probs[a, n] = d ** (2.0 - dim) * (1.0 - d * d / 4.0) ** (-(dim - 3.0) / 2.0)
        if probs[a].sum() > 0:
            probs[a] /= probs[a].sum()
    return probs


def _dw_data(dim=6, masked=True):
    x, labels, mask = labelled_batch("masked" if masked else "mixed")
    if dim != x.shape[1]:
        x = np.random.default_rng(3).normal(size=(len(x), dim))
    return x, labels, mask


@functools.cache
def _dw_miner(**kwargs):
    return jax.jit(
        lambda x, y, m, key: mining.distance_weighted_miner(
            x, y, key, mask=m, return_probabilities=True, **kwargs
        )
    )


@pytest.mark.parametrize("dim, cutoff, nonzero", [(6, 0.5, 1.4), (32, 0.3, 1.6), (3, 0.5, 2.5)])
def test_distance_weighted_miner_probabilities_match_loop(dim, cutoff, nonzero):
    x, labels, mask = _dw_data(dim)
    miner = _dw_miner(cutoff=cutoff, nonzero_loss_cutoff=nonzero)
    triplets, probs = miner(x, labels, mask, jax.random.key(0))
    expected = ref_distance_weights(x, labels, mask, cutoff, nonzero)
    np.testing.assert_allclose(np.asarray(probs), expected, rtol=1e-4, atol=1e-7)
    assert (expected > 0).any() and (expected[mask] == 0).any()  # the cut-offs bite
    # One triplet per positive pair (a, p), entry a * M + p, of an anchor with
    # a weighted negative; its negative has non-zero probability.
    b, m = probs.shape
    pos, _ = ref_pair_masks(labels, mask)
    valid = pos & (expected.sum(axis=1, keepdims=True) > 0)
    np.testing.assert_array_equal(np.asarray(triplets.valid).reshape(b, m), valid)
    np.testing.assert_array_equal(np.asarray(triplets.anchor), np.repeat(np.arange(b), m))
    np.testing.assert_array_equal(np.asarray(triplets.positive), np.tile(np.arange(m), b))
    a, n = np.asarray(triplets.anchor), np.asarray(triplets.negative)
    ok = np.asarray(triplets.valid)
    assert ok.any() and (expected[a[ok], n[ok]] > 0).all()


def test_distance_weighted_miner_samples_follow_the_probabilities():
    x, labels, mask = _dw_data(6, masked=False)
    keys = jax.random.split(jax.random.key(7), 400)
    miner = _dw_miner()
    draws = jax.jit(jax.vmap(lambda k: miner(x, labels, mask, k)[0].negative))(keys)
    triplets, probs = miner(x, labels, mask, keys[0])
    b, m = probs.shape
    draws = np.asarray(draws).reshape(len(keys), b, m)
    valid = np.asarray(triplets.valid).reshape(b, m)
    probs = np.asarray(probs)
    for a in range(b):
        if not valid[a].any():
            continue
        samples = draws[:, a, valid[a]].reshape(-1)
        freq = np.bincount(samples, minlength=m) / len(samples)
        sigma = np.sqrt(probs[a] * (1 - probs[a]) / len(samples))
        assert (np.abs(freq - probs[a]) <= 5 * sigma + 1e-3).all(), (a, freq, probs[a])
    # Independent draws: the pairs of one anchor do not all get the same negative.
    assert (draws[0][valid] != draws[1][valid]).any()


def test_distance_weighted_miner_with_a_reference_set():
    x, labels, mask = _dw_data(6)
    rng = np.random.default_rng(9)
    ref, ref_labels = rng.normal(size=(7, 6)), rng.integers(0, 4, size=7)
    ref_mask = np.array([True, True, False, True, True, True, True])
    t, probs = jax.jit(
        lambda x, r: mining.distance_weighted_miner(
            x,
            labels,
            jax.random.key(0),
            mask=mask,
            reference_embeddings=r,
            reference_labels=ref_labels,
            reference_mask=ref_mask,
            return_probabilities=True,
        )
    )(x, ref)
    expected = ref_distance_weights(x, labels, mask, ref=(ref, ref_labels, ref_mask))
    np.testing.assert_allclose(np.asarray(probs), expected, rtol=1e-4, atol=1e-7)
    pos = mask[:, None] & ref_mask[None, :] & (labels[:, None] == ref_labels[None, :])
    np.testing.assert_array_equal(
        np.asarray(t.valid).reshape(pos.shape), pos & (expected.sum(1, keepdims=True) > 0)
    )


def test_distance_weighted_miner_sharded_equals_single_device():
    from jax.sharding import PartitionSpec as P

    from tests.harness import mesh

    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(32, 6)), jnp.float32)
    labels = jnp.asarray(np.arange(32) % 16, jnp.int32)
    mask = jnp.asarray(rng.random(32) > 0.2)
    key = jax.random.key(5)
    single = jax.jit(lambda x: mining.distance_weighted_miner(x, labels, key, mask=mask))(x)

    def local(x, y, m):
        return tuple(mining.distance_weighted_miner(x, y, key, mask=m, axis_name="data"))

    sharded = jax.jit(jax.shard_map(local, mesh=mesh(), in_specs=P("data"), out_specs=P("data")))(
        x, labels, mask
    )
    anchor, positive, negative, valid = (np.asarray(a) for a in sharded)
    offset = np.repeat(np.arange(8) * 4, 4 * 32)  # local anchor rows -> global
    np.testing.assert_array_equal(anchor + offset, np.asarray(single.anchor))
    np.testing.assert_array_equal(positive, np.asarray(single.positive))
    np.testing.assert_array_equal(valid, np.asarray(single.valid))
    np.testing.assert_array_equal(negative[valid], np.asarray(single.negative)[valid])
    assert valid.any()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"cutoff": 0.0}, "cutoff"),
        ({"nonzero_loss_cutoff": -1.0}, "nonzero_loss_cutoff"),
        ({"key": jnp.ones(3)}, "key"),
        ({"key": jax.random.split(jax.random.key(0), 2)}, "key"),
    ],
)
def test_distance_weighted_miner_rejects_bad_input(kwargs, argument):
    kwargs = {"key": jax.random.key(0), **kwargs}
    with pytest.raises(ValueError, match=f"`{argument}`"):
        mining.distance_weighted_miner(EMB, LABELS, **kwargs)
