"""Every distance, miner and loss against an independent plain-NumPy loop reference.

The references below are written from DESIGN.md and the docstrings alone:
explicit Python loops over anchors, positives and negatives in float64 NumPy,
calling nothing from jaxmetric. The JAX code runs once in float64
(``jax.enable_x64``, rtol 1e-5) and once in float32 (rtol 1e-4, atol 1e-5) on
the same input values (drawn as float32-representable numbers), on batches
with singleton classes (anchors without a positive), one-class batches
(anchors without a negative), batches without any positive pair, and padded
rows (``mask``; padded rows are neither anchors nor candidates).

Mining compares distances, so a float32 rounding error could flip a
comparison that float64 decides the other way. Draws for the triplet and
contrastive tests are therefore rejected (and the next seed taken) when any
compared pair of distances, or any hinge argument, lies within ``_GAP`` of a
decision boundary. This keeps the data continuous random data, not ties.
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmetric
from jaxmetric import mining

DIM = 8
DTYPES = ("float32", "float64")
METRICS = ("euclidean", "squared_euclidean", "cosine")
MININGS = ("all", "hard", "semi_hard", "batch_hard", "facenet_semi_hard")
REDUCTIONS = ("mean_nonzero", "mean", "sum")
# (batch size, label/mask case)
SCENARIOS = (
    (6, "mixed"),
    (13, "mixed"),
    (32, "mixed"),
    (13, "masked"),
    (32, "masked"),
    (6, "one_class"),
    (6, "no_positive"),
    (13, "masked_one_class"),
)
SCENARIO_IDS = [f"B{b}-{case}" for b, case in SCENARIOS]
# Every case, at sizes 6 and 13 only (for the losses with the most XLA ops).
SMALL_SCENARIOS = tuple((b, case) for b, case in SCENARIOS if b < 32)
SMALL_SCENARIO_IDS = [f"B{b}-{case}" for b, case in SMALL_SCENARIOS]
CASES = tuple(sorted({case for _, case in SCENARIOS}))
# Smallest distance from a decision boundary a draw may have (see module doc).
_GAP = 2e-5
_NORM_EPS = 1e-12
# (rows of x, rows of y or None for y = x) of the distance tests. Only sizes of
# SCENARIOS: every new shape costs XLA compilations, and this file must stay
# fast on two cores.
_DIST_SHAPES = ((6, None), (32, None), (13, 13), (32, 6))
_DIST_IDS = [f"x{b}-y{m}" for b, m in _DIST_SHAPES]
# The optax references, compiled once per shape (eager optax is slow to start).
_optax_ntxent = jax.jit(optax.losses.ntxent)
_optax_triplet = jax.jit(functools.partial(optax.losses.triplet_margin_loss, eps=0.0))


# ----------------------------------------------------------------------------
# Plumbing: precision, tolerances, data.
# ----------------------------------------------------------------------------


def _precision(dtype: str):
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def _tol(dtype: str) -> dict:
    if dtype == "float64":
        return {"rtol": 1e-5, "atol": 1e-9}
    return {"rtol": 1e-4, "atol": 1e-5}


def _run(dtype: str, fn, *arrays, **kwargs) -> np.ndarray:
    """Calls ``fn`` on the float ``arrays`` cast to ``dtype``, x64 on for float64."""
    with _precision(dtype):
        args = [jnp.asarray(np.asarray(a, dtype=dtype)) for a in arrays]
        kwargs = {
            k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()
        }
        out = fn(*args, **kwargs)
        if dtype == "float64":
            assert out.dtype == jnp.float64, f"computed in {out.dtype}, not float64"
        return np.asarray(out, dtype=np.float64)


def _labels_and_mask(rng: np.random.Generator, batch: int, case: str):
    mask = None
    if case in ("mixed", "masked"):
        labels = rng.integers(0, max(2, batch // 3), size=batch)
        labels[-2:] = [100, 101]  # singleton classes: anchors without a positive
        if case == "masked":
            mask = rng.random(batch) > 0.3
            # Row 0's only positive is padding, so the mask takes its positive away.
            labels[0] = labels[1] = 200
            mask[0], mask[1] = True, False
            labels[2] = labels[3] = 201
            mask[2] = mask[3] = True
    elif case == "one_class":  # no anchor has a negative
        labels = np.full(batch, 7)
    elif case == "no_positive":  # no anchor has a positive
        labels = rng.permutation(batch)
    elif case == "masked_one_class":
        # The only other class sits on padded rows: no valid anchor has a negative.
        mask = rng.random(batch) > 0.3
        mask[:2], mask[2] = True, False
        labels = np.where(mask, 3, 4)
    else:
        raise ValueError(case)
    return labels.astype(np.int32), mask


def _draw(batch: int, case: str, attempt: int, seed: int = 0):
    rng = np.random.default_rng([seed, batch, CASES.index(case), attempt])
    labels, mask = _labels_and_mask(rng, batch, case)
    x = rng.normal(size=(batch, DIM))
    if mask is not None:
        x[~mask] *= 10.0  # padding that would move every value if it leaked in
    # float32-representable, so both precisions see the same numbers.
    return x.astype(np.float32).astype(np.float64), labels, mask


def _valid_rows(mask, batch):
    return np.ones(batch, bool) if mask is None else np.asarray(mask, bool)


# ----------------------------------------------------------------------------
# The NumPy loop references.
# ----------------------------------------------------------------------------


def ref_normalize(x):
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        out[i] = x[i] / max(math.sqrt(float(np.dot(x[i], x[i]))), _NORM_EPS)
    return out


def ref_cosine(u, v):
    nu = max(math.sqrt(float(np.dot(u, u))), _NORM_EPS)
    nv = max(math.sqrt(float(np.dot(v, v))), _NORM_EPS)
    return float(np.dot(u, v)) / (nu * nv)


def ref_distance(u, v, metric):
    if metric == "euclidean":
        return math.sqrt(float(np.sum((u - v) ** 2)))
    if metric == "squared_euclidean":
        return float(np.sum((u - v) ** 2))
    if metric == "cosine":
        return 1.0 - ref_cosine(u, v)
    raise ValueError(metric)


def ref_distance_matrix(x, y=None, metric="euclidean"):
    same = y is None
    y = x if same else y
    out = np.zeros((x.shape[0], y.shape[0]))
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            # Docstring: with y=None the diagonal is exactly 0.
            out[i, j] = 0.0 if (same and i == j) else ref_distance(x[i], y[j], metric)
    return out


def ref_similarity_matrix(x, y=None, metric="cosine"):
    y = x if y is None else y
    out = np.zeros((x.shape[0], y.shape[0]))
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = ref_cosine(x[i], y[j]) if metric == "cosine" else float(np.dot(x[i], y[j]))
    return out


def ref_pair_masks(labels, mask=None, ref_labels=None, ref_mask=None, anchor_index=None):
    """pos[i, j]: same label, j not anchor i itself; neg: other label; valid rows only."""
    b = len(labels)
    amask = _valid_rows(mask, b)
    if ref_labels is None:
        ref_labels = labels
        ref_mask = amask if ref_mask is None else ref_mask
        anchor_index = list(range(b)) if anchor_index is None else anchor_index
    m = len(ref_labels)
    rmask = _valid_rows(ref_mask, m)
    pos = np.zeros((b, m), bool)
    neg = np.zeros((b, m), bool)
    for i in range(b):
        for j in range(m):
            if not (amask[i] and rmask[j]):
                continue
            if labels[i] == ref_labels[j]:
                pos[i, j] = anchor_index is None or anchor_index[i] != j
            else:
                neg[i, j] = True
    return pos, neg


def ref_mine(d, pos, neg, mining_name, margin):
    """The mined triplets (a, p, n) as a list, by the rules of DESIGN.md."""
    b, m = pos.shape
    out = []
    for a in range(b):
        positives = [p for p in range(m) if pos[a, p]]
        negatives = [n for n in range(m) if neg[a, n]]
        if mining_name == "batch_hard":
            if positives and negatives:  # anchors lacking either are dropped
                p = max(positives, key=lambda j, a=a: d[a, j])
                n = min(negatives, key=lambda j, a=a: d[a, j])
                out.append((a, p, n))
            continue
        for p in positives:
            if mining_name == "facenet_semi_hard":
                if not negatives:
                    continue
                outside = [n for n in negatives if d[a, n] > d[a, p]]
                if outside:
                    n = min(outside, key=lambda j, a=a: d[a, j])
                else:
                    n = max(negatives, key=lambda j, a=a: d[a, j])
                out.append((a, p, n))
                continue
            for n in negatives:
                if mining_name == "hard" and not d[a, n] < d[a, p]:
                    continue
                if mining_name == "semi_hard" and not d[a, p] < d[a, n] < d[a, p] + margin:
                    continue
                out.append((a, p, n))
    return out


def ref_hinge(z, soft):
    return float(np.logaddexp(0.0, z)) if soft else max(0.0, z)


def ref_reduce(terms, reduction):
    total = float(sum(terms))
    if reduction == "sum":
        return total
    if reduction == "mean":
        count = len(terms)
    elif reduction == "mean_nonzero":
        count = sum(1 for t in terms if t > 0)
    else:
        raise ValueError(reduction)
    return total / count if count else 0.0


def ref_triplet_setup(x, labels, mask, metric, normalize):
    xe = ref_normalize(x) if normalize else x
    return ref_distance_matrix(xe, None, metric), *ref_pair_masks(labels, mask)


def ref_triplet_terms(x, labels, mask, *, margin, metric, normalize, mining_name, soft):
    d, pos, neg = ref_triplet_setup(x, labels, mask, metric, normalize)
    triplets = ref_mine(d, pos, neg, mining_name, margin)
    terms = [ref_hinge(d[a, p] - d[a, n] + margin, soft) for a, p, n in triplets]
    return triplets, terms


def ref_contrastive_terms(x, labels, mask, *, pos_margin, neg_margin, metric, normalize):
    """Returns ({(i, j): term} of positive pairs, the same of negative pairs)."""
    xe = ref_normalize(x) if normalize else x
    valid = _valid_rows(mask, len(labels))
    pos_terms, neg_terms = {}, {}
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i == j or not (valid[i] and valid[j]):
                continue
            d = ref_distance(xe[i], xe[j], metric)
            if labels[i] == labels[j]:
                pos_terms[i, j] = max(0.0, d - pos_margin)
            else:
                neg_terms[i, j] = max(0.0, neg_margin - d)
    return pos_terms, neg_terms


def ref_logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def ref_angular(x, labels, mask, alpha):
    xn = ref_normalize(x)
    valid = _valid_rows(mask, len(labels))
    tan_sq = math.tan(math.radians(alpha)) ** 2
    terms = []
    for a in range(len(labels)):
        if not valid[a]:
            continue
        negatives = [n for n in range(len(labels)) if valid[n] and labels[n] != labels[a]]
        if not negatives:
            continue
        for p in range(len(labels)):
            if p == a or not valid[p] or labels[p] != labels[a]:
                continue
            total = 0.0
            for n in negatives:
                f = 4.0 * tan_sq * float(np.dot(xn[a] + xn[p], xn[n]))
                f -= 2.0 * (1.0 + tan_sq) * float(np.dot(xn[a], xn[p]))
                total += math.exp(f)
            terms.append(math.log1p(total))
    return sum(terms) / len(terms) if terms else 0.0


def ref_npair(anchors, positives, labels, mask, *, l2_reg, normalize, temperature):
    n = anchors.shape[0]
    valid = _valid_rows(mask, n)
    fa = ref_normalize(anchors) if normalize else anchors
    fp = ref_normalize(positives) if normalize else positives
    terms, penalties = [], []
    for i in range(n):
        if not valid[i]:
            continue
        logits = []
        for j in range(n):
            if not valid[j]:
                continue
            if j == i or labels is None or labels[j] != labels[i]:
                logits.append(float(np.dot(fa[i], fp[j])) / temperature)
        target = float(np.dot(fa[i], fp[i])) / temperature
        terms.append(ref_logsumexp(logits) - target)
        # The penalty is on the raw inputs.
        penalties.append(float(np.sum(anchors[i] ** 2) + np.sum(positives[i] ** 2)))
    loss = sum(terms) / len(terms) if terms else 0.0
    if l2_reg and penalties:
        loss += l2_reg * sum(penalties) / len(penalties)
    return loss


def ref_ntxent(x, labels, mask, temperature):
    xn = ref_normalize(x)
    valid = _valid_rows(mask, len(labels))
    b = len(labels)
    terms = []
    for i in range(b):
        if not valid[i]:
            continue
        negatives = [
            float(np.dot(xn[i], xn[n])) / temperature
            for n in range(b)
            if valid[n] and labels[n] != labels[i]
        ]
        for p in range(b):
            if p == i or not valid[p] or labels[p] != labels[i]:
                continue
            s_ip = float(np.dot(xn[i], xn[p])) / temperature
            # Other positives of i are not in the denominator.
            terms.append(ref_logsumexp([s_ip, *negatives]) - s_ip)
    return sum(terms) / len(terms) if terms else 0.0


def ref_simclr(z1, z2, mask, temperature):
    n = z1.shape[0]
    valid = _valid_rows(mask, n)
    views = np.concatenate([ref_normalize(z1), ref_normalize(z2)])
    owner = [i % n for i in range(2 * n)]
    terms = []
    for u in range(2 * n):
        if not valid[owner[u]]:
            continue
        v = (u + n) % (2 * n)
        # Denominator: every other valid view, the positive included (2N - 1 terms).
        logits = [
            float(np.dot(views[u], views[w])) / temperature
            for w in range(2 * n)
            if w != u and valid[owner[w]]
        ]
        s_uv = float(np.dot(views[u], views[v])) / temperature
        terms.append(ref_logsumexp(logits) - s_uv)
    return sum(terms) / len(terms) if terms else 0.0


def ref_moco(q, k, queue, *, temperature, normalize, queue_mask, mask):
    if normalize:
        q, k, queue = ref_normalize(q), ref_normalize(k), ref_normalize(queue)
    valid = _valid_rows(mask, q.shape[0])
    filled = _valid_rows(queue_mask, queue.shape[0])
    terms = []
    for i in range(q.shape[0]):
        if not valid[i]:
            continue
        s_pos = float(np.dot(q[i], k[i])) / temperature
        logits = [s_pos]
        for j in range(queue.shape[0]):
            if filled[j]:
                logits.append(float(np.dot(q[i], queue[j])) / temperature)
        terms.append(ref_logsumexp(logits) - s_pos)
    return sum(terms) / len(terms) if terms else 0.0


# ----------------------------------------------------------------------------
# Draws kept away from decision boundaries.
# ----------------------------------------------------------------------------


def _triplets_separated(x, labels, mask, metric, normalize, margin):
    d, pos, neg = ref_triplet_setup(x, labels, mask, metric, normalize)
    for a in range(len(labels)):
        for p in np.flatnonzero(pos[a]):
            for n in np.flatnonzero(neg[a]):
                diff = d[a, n] - d[a, p]
                if abs(diff) < _GAP or abs(diff - margin) < _GAP:
                    return False
    return True


@functools.cache
def triplet_data(batch, case, metric="euclidean", normalize=True, margin=0.3):
    for attempt in range(200):
        x, labels, mask = _draw(batch, case, attempt)
        if _triplets_separated(x, labels, mask, metric, normalize, margin):
            return x, labels, mask
    raise AssertionError("no well-separated draw")


@functools.cache
def contrastive_data(batch, case, metric, normalize, pos_margin, neg_margin):
    for attempt in range(200):
        x, labels, mask = _draw(batch, case, attempt)
        xe = ref_normalize(x) if normalize else x
        valid = _valid_rows(mask, batch)
        dists = [
            ref_distance(xe[i], xe[j], metric)
            for i in range(batch)
            for j in range(batch)
            if i != j and valid[i] and valid[j]
        ]
        if all(abs(d - pos_margin) > _GAP and abs(d - neg_margin) > _GAP for d in dists):
            return x, labels, mask
    raise AssertionError("no well-separated draw")


def _plain_data(batch, case, attempt=0):
    return _draw(batch, case, attempt, seed=1)


# ----------------------------------------------------------------------------
# Distances and similarities.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", _DIST_SHAPES, ids=_DIST_IDS)
def test_pairwise_distances(shape, metric, dtype):
    batch, y_rows = shape
    with_y = y_rows is not None
    x, _, _ = _plain_data(batch, "mixed")
    x[-1] = 0.0  # a zero row: cosine 0 with everything (distance 1 under "cosine")
    y = _plain_data(y_rows, "mixed", attempt=1)[0] if with_y else None
    expected = ref_distance_matrix(x, y, metric)
    if with_y:
        got = _run(dtype, lambda a, b: jaxmetric.pairwise_distances(a, b, metric=metric), x, y)
    else:
        got = _run(dtype, lambda a: jaxmetric.pairwise_distances(a, metric=metric), x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("shape", _DIST_SHAPES, ids=_DIST_IDS)
def test_pairwise_similarities(shape, metric, dtype):
    batch, y_rows = shape
    with_y = y_rows is not None
    x, _, _ = _plain_data(batch, "mixed")
    x[0] = 0.0  # zero row: cosine similarity 0
    y = _plain_data(y_rows, "mixed", attempt=1)[0] if with_y else None
    expected = ref_similarity_matrix(x, y, metric)
    if with_y:
        got = _run(dtype, lambda a, b: jaxmetric.pairwise_similarities(a, b, metric=metric), x, y)
    else:
        got = _run(dtype, lambda a: jaxmetric.pairwise_similarities(a, metric=metric), x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **_tol(dtype))


# ----------------------------------------------------------------------------
# Label masks and miners.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_pair_masks(scenario):
    batch, case = scenario
    _, labels, mask = _plain_data(batch, case)
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
    with _precision(dtype):
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
    with _precision(dtype):
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
    with _precision(dtype):
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


# ----------------------------------------------------------------------------
# Triplet margin loss.
# ----------------------------------------------------------------------------


def _triplet(dtype, x, labels, mask, **kwargs):
    return _run(dtype, lambda e: jaxmetric.triplet_margin_loss(e, labels, mask=mask, **kwargs), x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mining_name", MININGS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_triplet_mining_and_reduction(scenario, mining_name, dtype):
    batch, case = scenario
    margin = 0.3
    x, labels, mask = triplet_data(batch, case, "euclidean", True, margin)
    triplets, terms = ref_triplet_terms(
        x,
        labels,
        mask,
        margin=margin,
        metric="euclidean",
        normalize=True,
        mining_name=mining_name,
        soft=False,
    )
    for reduction in REDUCTIONS:
        got = _triplet(
            dtype, x, labels, mask, margin=margin, mining=mining_name, reduction=reduction
        )
        assert got.shape == ()
        np.testing.assert_allclose(
            got, ref_reduce(terms, reduction), err_msg=reduction, **_tol(dtype)
        )
    if case in ("mixed", "masked") and batch == 32:  # not vacuous
        assert triplets
        if mining_name == "all":  # mean_nonzero and mean differ
            assert any(t > 0 for t in terms) and any(t == 0 for t in terms)
    if case in ("one_class", "no_positive", "masked_one_class"):
        assert not triplets


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mining_name", MININGS)
@pytest.mark.parametrize("soft", [False, True], ids=["hinge", "soft"])
@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "raw"])
@pytest.mark.parametrize("metric", METRICS)
def test_triplet_metric_normalize_soft(metric, normalize, soft, mining_name, dtype):
    batch, case = 13, "masked"
    margin = {"euclidean": 0.3, "squared_euclidean": 0.5, "cosine": 0.2}[metric]
    x, labels, mask = triplet_data(batch, case, metric, normalize, margin)
    _, terms = ref_triplet_terms(
        x,
        labels,
        mask,
        margin=margin,
        metric=metric,
        normalize=normalize,
        mining_name=mining_name,
        soft=soft,
    )
    assert terms
    for reduction in REDUCTIONS:
        got = _triplet(
            dtype,
            x,
            labels,
            mask,
            margin=margin,
            metric=metric,
            normalize=normalize,
            mining=mining_name,
            soft=soft,
            reduction=reduction,
        )
        np.testing.assert_allclose(
            got, ref_reduce(terms, reduction), err_msg=reduction, **_tol(dtype)
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "scenario",
    [(6, "mixed"), (13, "masked"), (32, "mixed")],
    ids=["B6-mixed", "B13-masked", "B32-mixed"],
)
def test_triplet_all_none_per_triplet_and_optax(scenario, dtype):
    batch, case = scenario
    margin = 0.3
    x, labels, mask = triplet_data(batch, case, "euclidean", False, margin)
    triplets, terms = ref_triplet_terms(
        x,
        labels,
        mask,
        margin=margin,
        metric="euclidean",
        normalize=False,
        mining_name="all",
        soft=False,
    )
    got = _triplet(
        dtype,
        x,
        labels,
        mask,
        margin=margin,
        normalize=False,
        mining="all",
        reduction="none",
    )
    expected = np.zeros((batch, batch, batch))
    for (a, p, n), term in zip(triplets, terms, strict=True):
        expected[a, p, n] = term
    assert got.shape == (batch, batch, batch)
    np.testing.assert_allclose(got, expected, **_tol(dtype))

    a_idx, p_idx, n_idx = (np.array(i) for i in zip(*triplets, strict=True))
    with _precision(dtype):
        xj = jnp.asarray(x.astype(dtype))
        by_optax = _optax_triplet(xj[a_idx], xj[p_idx], xj[n_idx], margin=margin)
        by_optax = np.asarray(by_optax, np.float64)
    np.testing.assert_allclose(got[a_idx, p_idx, n_idx], by_optax, **_tol(dtype))
    # Everything that is not a mined triplet is exactly 0.
    off = np.ones_like(got, bool)
    off[a_idx, p_idx, n_idx] = False
    assert not got[off].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mining_name", ["hard", "semi_hard", "batch_hard", "facenet_semi_hard"])
@pytest.mark.parametrize(
    "scenario", [(13, "masked"), (32, "mixed")], ids=["B13-masked", "B32-mixed"]
)
def test_triplet_none_per_term(scenario, mining_name, dtype):
    """reduction="none": [b, M, M] for hard/semi-hard, [b] batch-hard, [b, M] FaceNet."""
    batch, case = scenario
    margin = 0.3
    x, labels, mask = triplet_data(batch, case, "euclidean", True, margin)
    triplets, terms = ref_triplet_terms(
        x,
        labels,
        mask,
        margin=margin,
        metric="euclidean",
        normalize=True,
        mining_name=mining_name,
        soft=True,
    )
    shape = {"batch_hard": (batch,), "facenet_semi_hard": (batch, batch)}.get(
        mining_name, (batch, batch, batch)
    )
    expected = np.zeros(shape)
    for (a, p, n), term in zip(triplets, terms, strict=True):
        index = {"batch_hard": (a,), "facenet_semi_hard": (a, p)}.get(mining_name, (a, p, n))
        expected[index] = term
    got = _triplet(
        dtype, x, labels, mask, margin=margin, mining=mining_name, soft=True, reduction="none"
    )
    assert got.shape == shape
    np.testing.assert_allclose(got, expected, **_tol(dtype))


# ----------------------------------------------------------------------------
# Contrastive loss.
# ----------------------------------------------------------------------------


def _contrastive_case(x, labels, mask, dtype, *, reduction, **kwargs):
    pos_terms, neg_terms = ref_contrastive_terms(x, labels, mask, **kwargs)
    got = _run(
        dtype,
        lambda e: jaxmetric.contrastive_loss(e, labels, mask=mask, reduction=reduction, **kwargs),
        x,
    )
    if reduction == "none":
        expected = np.zeros((len(labels), len(labels)))
        for (i, j), term in (pos_terms | neg_terms).items():
            expected[i, j] = term
    else:
        # Positive and negative terms are reduced on their own, then added.
        expected = ref_reduce(list(pos_terms.values()), reduction) + ref_reduce(
            list(neg_terms.values()), reduction
        )
    np.testing.assert_allclose(got, expected, err_msg=reduction, **_tol(dtype))
    return pos_terms, neg_terms


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margins", [(0.0, 1.0), (0.4, 1.5)], ids=["default", "pos0.4-neg1.5"])
@pytest.mark.parametrize("reduction", [*REDUCTIONS, "none"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_contrastive(scenario, reduction, margins, dtype):
    batch, case = scenario
    pos_margin, neg_margin = margins
    x, labels, mask = contrastive_data(batch, case, "euclidean", True, pos_margin, neg_margin)
    pos_terms, neg_terms = _contrastive_case(
        x,
        labels,
        mask,
        dtype,
        reduction=reduction,
        pos_margin=pos_margin,
        neg_margin=neg_margin,
        metric="euclidean",
        normalize=True,
    )
    if case in ("mixed", "masked") and batch == 32 and margins[1] > 1.0:  # not vacuous
        terms = list(pos_terms.values()) + list(neg_terms.values())
        assert any(t > 0 for t in neg_terms.values()) and any(t == 0 for t in terms)


# Margins inside the spread of each metric's distances, so that terms are mixed
# zero / non-zero.
_CONTRASTIVE_MARGINS = {
    ("euclidean", True): (1.2, 1.5),
    ("squared_euclidean", True): (1.6, 2.2),
    ("cosine", True): (0.8, 1.1),
    ("euclidean", False): (2.8, 3.5),
    ("squared_euclidean", False): (8.0, 12.0),
    ("cosine", False): (0.8, 1.1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "raw"])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "scenario", [(13, "masked"), (32, "mixed")], ids=["B13-masked", "B32-mixed"]
)
def test_contrastive_metric_normalize(scenario, metric, normalize, dtype):
    batch, case = scenario
    pos_margin, neg_margin = _CONTRASTIVE_MARGINS[metric, normalize]
    x, labels, mask = contrastive_data(batch, case, metric, normalize, pos_margin, neg_margin)
    for reduction in (*REDUCTIONS, "none"):
        pos_terms, neg_terms = _contrastive_case(
            x,
            labels,
            mask,
            dtype,
            reduction=reduction,
            pos_margin=pos_margin,
            neg_margin=neg_margin,
            metric=metric,
            normalize=normalize,
        )
    for terms in (list(pos_terms.values()), list(neg_terms.values())):
        assert any(t > 0 for t in terms) and any(t == 0 for t in terms)


# ----------------------------------------------------------------------------
# Angular loss.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [40.0, 45.0, 72.0])
@pytest.mark.parametrize("scenario", SMALL_SCENARIOS, ids=SMALL_SCENARIO_IDS)
def test_angular(scenario, alpha, dtype):
    batch, case = scenario
    x, labels, mask = _plain_data(batch, case)
    expected = ref_angular(x, labels, mask, alpha)
    got = _run(dtype, lambda e: jaxmetric.angular_loss(e, labels, alpha=alpha, mask=mask), x)
    np.testing.assert_allclose(got, expected, **_tol(dtype))
    if case in ("mixed", "masked"):
        assert expected > 0


def test_angular_alpha_matters():
    x, labels, mask = _plain_data(13, "mixed")
    assert ref_angular(x, labels, mask, 40.0) != pytest.approx(ref_angular(x, labels, mask, 45.0))


# ----------------------------------------------------------------------------
# N-pair loss.
# ----------------------------------------------------------------------------


def _npair_data(num_pairs, masked, seed):
    rng = np.random.default_rng([2, num_pairs, int(masked), seed])
    anchors = rng.normal(size=(num_pairs, DIM))
    positives = anchors + 0.5 * rng.normal(size=(num_pairs, DIM))
    labels = rng.integers(0, max(2, num_pairs // 2), size=num_pairs).astype(np.int32)
    mask = None
    if masked:
        mask = rng.random(num_pairs) > 0.3
        mask[:2] = True
        anchors[~mask] *= 10.0
        positives[~mask] *= 10.0
    as32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    return as32(anchors), as32(positives), labels, mask


_NPAIR_CONFIGS = [
    # (with labels, l2_reg, normalize, temperature)
    (False, 0.0, False, 1.0),
    (True, 0.0, False, 1.0),
    (False, 0.05, False, 1.0),
    (True, 0.05, True, 0.5),
    (False, 0.0, True, 0.1),
    (True, 0.0, True, 1.0),
    (True, 0.2, False, 2.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "config",
    _NPAIR_CONFIGS,
    ids=[f"labels{c[0]}-reg{c[1]}-norm{c[2]}-T{c[3]}" for c in _NPAIR_CONFIGS],
)
@pytest.mark.parametrize("size", [(6, False), (13, True)], ids=["N6", "N13-masked"])
def test_npair(size, config, dtype):
    num_pairs, masked = size
    with_labels, l2_reg, normalize, temperature = config
    anchors, positives, labels, mask = _npair_data(num_pairs, masked, seed=0)
    labels = labels if with_labels else None
    expected = ref_npair(
        anchors,
        positives,
        labels,
        mask,
        l2_reg=l2_reg,
        normalize=normalize,
        temperature=temperature,
    )
    got = _run(
        dtype,
        lambda a, p: jaxmetric.npair_loss(
            a,
            p,
            labels=labels,
            l2_reg=l2_reg,
            normalize=normalize,
            temperature=temperature,
            mask=mask,
        ),
        anchors,
        positives,
    )
    np.testing.assert_allclose(got, expected, **_tol(dtype))


def test_npair_labels_and_reg_matter():
    """The reference's options change its value, so the cases above test them."""
    anchors, positives, labels, mask = _npair_data(13, True, seed=0)
    kw = {"normalize": False, "temperature": 1.0}
    base = ref_npair(anchors, positives, None, mask, l2_reg=0.0, **kw)
    assert ref_npair(anchors, positives, labels, mask, l2_reg=0.0, **kw) != pytest.approx(base)
    assert ref_npair(anchors, positives, None, mask, l2_reg=0.1, **kw) != pytest.approx(base)
    assert ref_npair(anchors, positives, None, None, l2_reg=0.0, **kw) != pytest.approx(base)


# ----------------------------------------------------------------------------
# NT-Xent and SimCLR.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_ntxent(scenario, temperature, dtype):
    batch, case = scenario
    x, labels, mask = _plain_data(batch, case)
    expected = ref_ntxent(x, labels, mask, temperature)
    got = _run(
        dtype, lambda e: jaxmetric.ntxent_loss(e, labels, temperature=temperature, mask=mask), x
    )
    np.testing.assert_allclose(got, expected, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("batch", [6, 13, 32])
def test_ntxent_equals_optax(batch, temperature, dtype):
    rng = np.random.default_rng([3, batch])
    x = rng.normal(size=(batch, DIM)).astype(np.float32).astype(np.float64)
    # Every class has two or more members: every anchor has a positive.
    labels = rng.permutation(np.arange(batch) % (batch // 2)).astype(np.int32)
    got = _run(dtype, lambda e: jaxmetric.ntxent_loss(e, labels, temperature=temperature), x)
    with _precision(dtype):
        by_optax = _optax_ntxent(jnp.asarray(x.astype(dtype)), jnp.asarray(labels), temperature)
        by_optax = np.asarray(by_optax, np.float64)
    np.testing.assert_allclose(got, by_optax, **_tol(dtype))
    np.testing.assert_allclose(got, ref_ntxent(x, labels, None, temperature), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize(
    "size", [(3, False), (16, False), (16, True)], ids=["N3", "N16", "N16-masked"]
)
def test_simclr(size, temperature, dtype):
    num_pairs, masked = size
    rng = np.random.default_rng([4, num_pairs])
    z1 = rng.normal(size=(num_pairs, DIM))
    z2 = z1 + 0.5 * rng.normal(size=(num_pairs, DIM))
    mask = None
    if masked:
        mask = rng.random(num_pairs) > 0.3
        mask[:2] = True
        z1[~mask] *= 10.0
    z1, z2 = (z.astype(np.float32).astype(np.float64) for z in (z1, z2))
    expected = ref_simclr(z1, z2, mask, temperature)
    got = _run(
        dtype,
        lambda a, b: jaxmetric.simclr_loss(a, b, temperature=temperature, mask=mask),
        z1,
        z2,
    )
    np.testing.assert_allclose(got, expected, **_tol(dtype))
    # simclr_loss(z1, z2) == ntxent_loss(concat[z1, z2], concat[arange N, arange N]).
    labels = np.concatenate([np.arange(num_pairs), np.arange(num_pairs)]).astype(np.int32)
    both_mask = None if mask is None else np.concatenate([mask, mask])
    via_ntxent = _run(
        dtype,
        lambda e: jaxmetric.ntxent_loss(e, labels, temperature=temperature, mask=both_mask),
        np.concatenate([z1, z2]),
    )
    np.testing.assert_allclose(got, via_ntxent, **_tol(dtype))


# ----------------------------------------------------------------------------
# MoCo.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.07, 0.2])
@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "raw"])
@pytest.mark.parametrize("masks", ["none", "queue_mask", "both"])
def test_moco(masks, normalize, temperature, dtype):
    rng = np.random.default_rng([6, len(masks)])
    batch, size = 13, 32
    q = rng.normal(size=(batch, DIM))
    k = q + 0.5 * rng.normal(size=(batch, DIM))
    queue = rng.normal(size=(size, DIM))
    if not normalize:  # keep raw logits in a sane range
        q, k, queue = q / 3.0, k / 3.0, queue / 3.0
    queue_mask = mask = None
    if masks in ("queue_mask", "both"):
        queue_mask = rng.random(size) > 0.4
        queue_mask[0] = True
        queue[~queue_mask] *= 10.0
    if masks == "both":
        mask = rng.random(batch) > 0.3
        mask[0] = True
        q[~mask] *= 10.0
    q, k, queue = (a.astype(np.float32).astype(np.float64) for a in (q, k, queue))
    expected = ref_moco(
        q,
        k,
        queue,
        temperature=temperature,
        normalize=normalize,
        queue_mask=queue_mask,
        mask=mask,
    )
    got = _run(
        dtype,
        lambda a, b, c: jaxmetric.moco_loss(
            a,
            b,
            c,
            temperature=temperature,
            normalize=normalize,
            queue_mask=queue_mask,
            mask=mask,
        ),
        q,
        k,
        queue,
    )
    np.testing.assert_allclose(got, expected, **_tol(dtype))
    if masks != "none":  # the masks change the reference, so they are tested
        unmasked = ref_moco(
            q,
            k,
            queue,
            temperature=temperature,
            normalize=normalize,
            queue_mask=None,
            mask=None,
        )
        assert unmasked != pytest.approx(expected)
