"""Composition, as PML: ``pairs=``, ``triplets=``, ``reference_embeddings=`` and the
reductions of the pair and triplet losses, against NumPy loops.

Every pair loss (contrastive, multi-similarity, circle, both lifted structure
losses, angular) is checked in four modes: the labelled batch, given pairs
(random masks that ignore the labels: they replace the label masks), a
reference set (labels against reference labels, no self-exclusion), and given
pairs against a reference set; each with every reduction ("mean",
"mean_nonzero", "sum", "threshold", "none" with its layout). The triplet loss
takes given triplets, also against a reference set. Padded rows and padded
reference rows count for nothing in every mode. float64, rtol 1e-5.

Then: sharded == single device with a reference set and with pairs and
triplets mined inside the mapped function (tests/harness.py), and bad input.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    NUM_CLASSES,
    as_float32_values,
    assert_sharded_equals_single,
    embed,
    ref_cosine,
    ref_logsumexp,
    ref_pair_masks,
    ref_reduce,
    sharded_data,
    tol,
)
from tests.losses.test_lifted import ref_euclid, ref_lifted_pair_terms

B, R, D = 10, 12, 6
MODES = ("pairs", "reference", "reference_pairs")  # "labels": tests/losses/test_<loss>.py
REDUCTIONS = ("mean", "mean_nonzero", "sum", "threshold", "none")


def _data(seed: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, D))
    labels = rng.integers(0, 3, size=B).astype(np.int32)
    labels[-1] = 50  # a singleton
    mask = np.ones(B, bool)
    mask[[2, 7]] = False
    x[~mask] *= 10.0  # padding that would move every value if it leaked in
    ref = rng.normal(size=(R, D))
    ref_labels = rng.integers(0, 4, size=R).astype(np.int32)  # class 3: no query
    ref_mask = rng.random(R) > 0.2
    ref[~ref_mask] *= 10.0
    return as_float32_values(x), labels, mask, as_float32_values(ref), ref_labels, ref_mask


def _setup(mode: str):
    """(kwargs of the loss, candidates, effective pos / neg masks [B, M], rows_of)."""
    x, labels, mask, ref, ref_labels, ref_mask = _data()
    rng = np.random.default_rng(11)
    kwargs = {"mask": mask}
    if mode.startswith("reference"):
        cands, cmask = ref, ref_mask
        kwargs |= {
            "reference_embeddings": ref,
            "reference_labels": ref_labels,
            "reference_mask": ref_mask,
        }
        pos, neg = ref_pair_masks(labels, mask, ref_labels, ref_mask)
        rows_of = None  # reference rows are no anchors
    else:
        cands, cmask = x, mask
        pos, neg = ref_pair_masks(labels, mask)
        rows_of = {j: j for j in range(B)}
    if mode.endswith("pairs"):
        m = cands.shape[0]
        given_pos = rng.random((B, m)) < 0.3
        given_neg = ~given_pos & (rng.random((B, m)) < 0.5)
        kwargs["pairs"] = (given_pos, given_neg)
        valid = mask[:, None] & cmask[None, :]
        pos, neg = given_pos & valid, given_neg & valid
    return x, labels, kwargs, cands, pos, neg, rows_of


# --- NumPy loops: the terms of each loss, keyed by their place in the "none" layout ----


def _contrastive(x, cands, pos, neg, rows_of):
    pos_terms = {
        (i, j): max(0.0, ref_euclid(x[i], cands[j]) - 0.1)
        for i, j in zip(*np.nonzero(pos), strict=True)
    }
    neg_terms = {
        (i, j): max(0.0, 1.2 - ref_euclid(x[i], cands[j]))
        for i, j in zip(*np.nonzero(neg), strict=True)
    }
    return pos_terms, neg_terms


def _multi_similarity(x, cands, pos, neg, rows_of):
    """Per valid anchor; an anchor without pairs adds 0 (it still counts in the mean)."""
    out = {}
    for i in np.flatnonzero(_data()[2]):
        s_p = [ref_cosine(x[i], cands[j]) for j in np.flatnonzero(pos[i])]
        s_n = [ref_cosine(x[i], cands[j]) for j in np.flatnonzero(neg[i])]
        pos_term = math.log1p(sum(math.exp(-2.0 * (s - 0.5)) for s in s_p)) / 2.0
        out[(i,)] = pos_term + math.log1p(sum(math.exp(10.0 * (s - 0.5)) for s in s_n)) / 10.0
    return out


def _circle(x, cands, pos, neg, rows_of):
    out = {}
    m, gamma = 0.25, 16.0
    for i in range(B):
        if not (pos[i].any() and neg[i].any()):
            continue
        lp = [
            -gamma * max(0.0, 1 + m - s) * (s - (1 - m))
            for s in (ref_cosine(x[i], cands[j]) for j in np.flatnonzero(pos[i]))
        ]
        ln = [
            gamma * max(0.0, s + m) * (s - m)
            for s in (ref_cosine(x[i], cands[j]) for j in np.flatnonzero(neg[i]))
        ]
        out[(i,)] = float(np.logaddexp(0.0, ref_logsumexp(lp) + ref_logsumexp(ln)))
    return out


def _generalized_lifted(x, cands, pos, neg, rows_of):
    out = {}
    for i in range(B):
        if not (pos[i].any() and neg[i].any()):
            continue
        lp = [ref_euclid(x[i], cands[j]) - 0.1 for j in np.flatnonzero(pos[i])]
        ln = [1.2 - ref_euclid(x[i], cands[j]) for j in np.flatnonzero(neg[i])]
        out[(i,)] = max(0.0, ref_logsumexp(lp) + ref_logsumexp(ln))
    return out


def _lifted(x, cands, pos, neg, rows_of):
    return ref_lifted_pair_terms(x, cands, pos, neg, rows_of, pos_margin=0.1, neg_margin=1.2)


def _angular(x, cands, pos, neg, rows_of):
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    tan_sq = math.tan(math.radians(40.0)) ** 2
    out = {}
    for a, p in zip(*np.nonzero(pos), strict=True):
        if not neg[a].any():
            continue
        xa, xp = unit(x[a]), unit(cands[p])
        total = sum(
            math.exp(
                4 * tan_sq * float(np.dot(xa + xp, unit(cands[n])))
                - 2 * (1 + tan_sq) * float(np.dot(xa, xp))
            )
            for n in np.flatnonzero(neg[a])
        )
        out[(a, p)] = math.log1p(total)
    return out


# name -> (loss, hyper-parameters, the terms' reference, "none" layout rank)
PAIR_LOSSES = {
    "contrastive": (jm.contrastive_loss, {"pos_margin": 0.1, "neg_margin": 1.2}, _contrastive, 2),
    "multi_similarity": (
        jm.multi_similarity_loss,
        {"alpha": 2.0, "beta": 10.0, "base": 0.5, "epsilon": None},
        _multi_similarity,
        1,
    ),
    "circle": (jm.circle_loss, {"m": 0.25, "gamma": 16.0}, _circle, 1),
    "generalized_lifted": (
        jm.generalized_lifted_structure_loss,
        {"pos_margin": 0.1, "neg_margin": 1.2},
        _generalized_lifted,
        1,
    ),
    "lifted": (jm.lifted_structure_loss, {"pos_margin": 0.1, "neg_margin": 1.2}, _lifted, 2),
    "angular": (jm.angular_loss, {"alpha": 40.0}, _angular, 2),
}


def _threshold(values) -> tuple[float, float]:
    """(low, high) between the terms, so that some are kept and some are not on each side."""
    v = sorted(set(values))
    assert len(v) >= 4, v
    low, high = len(v) // 4, (3 * len(v)) // 4
    return (v[low] + v[low + 1]) / 2, (v[high - 1] + v[high]) / 2


def ref_threshold(terms, low, high) -> float:
    kept = [t for t in terms if (low is None or t > low) and (high is None or t < high)]
    return sum(kept) / len(kept) if kept else 0.0


def _expected(terms: dict, reduction: str, shape, threshold=None) -> np.ndarray | float:
    if reduction == "none":
        out = np.zeros(shape)
        for key, t in terms.items():
            out[key] = t
        return out
    if reduction == "threshold":
        return ref_threshold(list(terms.values()), *threshold)
    return ref_reduce(list(terms.values()), reduction)


def _call(fn, x, labels, kwargs, hyper, reduction, threshold=None):
    extra = {"reduction_threshold": threshold} if reduction == "threshold" else {}
    with jax.enable_x64(True):
        args = {
            k: (tuple(map(jnp.asarray, v)) if k in ("pairs", "triplets") else jnp.asarray(v))
            for k, v in kwargs.items()
        }
        out = fn(jnp.asarray(x), jnp.asarray(labels), reduction=reduction, **hyper, **extra, **args)
        assert out.dtype == jnp.float64
        return np.asarray(out, np.float64)


@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
def test_pair_loss_composition_matches_loop(name):
    for mode in MODES:
        _check_pair_loss(name, mode)


def _check_pair_loss(name, mode):
    fn, hyper, reference, rank = PAIR_LOSSES[name]
    x, labels, kwargs, cands, pos, neg, rows_of = _setup(mode)
    terms = reference(x, cands, pos, neg, rows_of)
    shape = (B, cands.shape[0]) if rank == 2 else (B,)
    parts = terms if name == "contrastive" else (terms,)  # contrastive: two parts
    threshold = _threshold([t for part in parts for t in part.values()])
    nonvacuous = 0
    for reduction in REDUCTIONS:
        got = _call(fn, x, labels, kwargs, hyper, reduction, threshold)
        if reduction == "none":
            expected = _expected({k: t for part in parts for k, t in part.items()}, "none", shape)
        else:  # each part reduced on its own, then added
            expected = sum(_expected(part, reduction, shape, threshold) for part in parts)
        np.testing.assert_allclose(got, expected, err_msg=f"{mode} {reduction}", **tol("float64"))
        nonvacuous += bool(np.any(np.asarray(expected) != 0))
    assert nonvacuous == len(REDUCTIONS), "every reduction is tested on a non-zero value"


def _random_triplets(m: int, size: int = 24, seed: int = 4) -> jm.mining.Triplets:
    rng = np.random.default_rng(seed)
    return jm.mining.Triplets(
        rng.integers(0, B, size).astype(np.int32),
        rng.integers(0, m, size).astype(np.int32),
        rng.integers(0, m, size).astype(np.int32),
        rng.random(size) > 0.2,
    )


@pytest.mark.parametrize("soft", [False, True], ids=["hinge", "soft"])
@pytest.mark.parametrize("mode", ["labels", "reference"])
def test_given_triplets_match_loop(mode, soft):
    x, labels, kwargs, cands, *_ = _setup(mode)
    cmask = kwargs.get("reference_mask", kwargs["mask"])
    t = _random_triplets(cands.shape[0])
    margin = 0.3
    expected_terms = np.zeros(len(t.anchor))
    counted = np.zeros(len(t.anchor), bool)
    for k, (a, p, n, v) in enumerate(zip(*t, strict=True)):
        if v and kwargs["mask"][a] and cmask[p] and cmask[n]:
            z = ref_euclid(x[a], cands[p]) - ref_euclid(x[a], cands[n]) + margin
            expected_terms[k] = math.log1p(math.exp(z)) if soft else max(0.0, z)
            counted[k] = True
    terms = {(k,): expected_terms[k] for k in np.flatnonzero(counted)}
    assert 0 < len(terms) < len(t.anchor) and any(v == 0 for v in terms.values()) != soft
    threshold = _threshold(terms.values())
    for reduction in REDUCTIONS:
        got = _call(
            jm.triplet_margin_loss,
            x,
            labels,
            {**kwargs, "triplets": t},
            {"margin": margin, "soft": soft},
            reduction,
            threshold,
        )
        expected = _expected(terms, reduction, (len(t.anchor),), threshold)
        np.testing.assert_allclose(got, expected, err_msg=reduction, **tol("float64"))


def test_nothing_counts_gives_zero_and_finite_gradients():
    """No given pair / triplet, or a reference set without positives: 0 and a zero
    gradient; identical rows with given pairs: finite values and gradients."""
    x, labels, *_ = _data()
    none = (np.zeros((B, B), bool), np.zeros((B, B), bool))
    ref_kw = {"reference_embeddings": x[:4], "reference_labels": np.full(4, 99, np.int32)}
    rng = np.random.default_rng(0)
    some = (rng.random((B, B)) < 0.3, rng.random((B, B)) < 0.3)
    calls = {
        **{
            f"{n}-no-pairs": (fn, hyper, {"pairs": none})
            for n, (fn, hyper, *_) in PAIR_LOSSES.items()
        },
        "lifted-no-positive": (jm.lifted_structure_loss, {}, ref_kw),
        "triplet-no-triplets": (
            jm.triplet_margin_loss,
            {},
            {"triplets": _random_triplets(B)._replace(valid=np.zeros(24, bool))},
        ),
    }
    for name, (fn, hyper, kw) in calls.items():
        args = {k: jax.tree.map(jnp.asarray, v) for k, v in kw.items()}
        loss = functools.partial(fn, labels=labels, **hyper, **args)
        value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(x))
        assert float(value) == 0.0, name
        assert np.all(np.asarray(grad) == 0.0), name
    same = np.tile(x[:1], (B, 1)).astype(np.float32)
    for name in ("lifted", "circle", "angular"):
        fn, hyper, *_ = PAIR_LOSSES[name]
        loss = functools.partial(fn, labels=labels, pairs=tuple(map(jnp.asarray, some)), **hyper)
        value, grad = jax.jit(jax.value_and_grad(loss))(same)
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad))), name


# --- sharded == single device ------------------------------------------------------------


def _reference_losses(params, batch, replicated, axis_name):
    """Queries against a sharded reference set: the second view of each row."""
    del replicated
    x, labels, mask = batch["x"], batch["labels"], batch["mask"]
    queries = embed(params, x[:, 0])
    ref = embed(params, x[:, 1]) @ params["w3"]
    ref_labels = (labels + 1) % NUM_CLASSES  # positives of row i: the rows of the next class
    kw = {
        "reference_embeddings": ref,
        "reference_labels": ref_labels,
        "reference_mask": mask,
        "mask": mask,
        "axis_name": axis_name,
    }
    return (
        jm.lifted_structure_loss(queries, labels, **kw)
        + jm.triplet_margin_loss(queries, labels, mining="semi_hard", margin=0.5, **kw)
        + jm.multi_similarity_loss(queries, labels, **kw)
        + jm.contrastive_loss(
            queries, labels, reduction="threshold", reduction_threshold=(0.1, None), **kw
        )
    )


def _mined_losses(params, batch, replicated, axis_name):
    """Pairs and triplets mined under ``axis_name`` (global candidates), then the losses."""
    del replicated
    x, labels, mask = batch["x"], batch["labels"], batch["mask"]
    emb = embed(params, x[:, 0])
    kw = {"mask": mask, "axis_name": axis_name}
    pairs = jm.mining.multi_similarity_miner(emb, labels, epsilon=0.3, **kw)
    return (
        jm.contrastive_loss(emb, labels, pairs=pairs, **kw)
        + jm.lifted_structure_loss(emb, labels, pairs=pairs, **kw)
        + jm.triplet_margin_loss(
            emb, labels, triplets=jm.mining.batch_hard_miner(emb, labels, **kw), **kw
        )
    )


# Each function under one of the two mappers (both mappers share the kernels' paths).
@pytest.mark.parametrize(
    "fn, mapper",
    [(_reference_losses, "shard_map"), (_mined_losses, "pmap")],
    ids=["reference-shard_map", "mined-pmap"],
)
def test_sharded_equals_single_device(fn, mapper):
    nonzero = ("w1", "w2", "w3") if fn is _reference_losses else ("w1", "w2")
    assert_sharded_equals_single(
        fn, sharded_data(seed=5, masked=True), mapper, nonzero_grads=nonzero
    )


# --- bad input ----------------------------------------------------------------------------

EMB, LABELS = jnp.ones((6, 4)), jnp.array([0, 0, 1, 1, 2, 2])
GOOD_PAIRS = (jnp.ones((6, 6), bool), jnp.zeros((6, 6), bool))
GOOD_TRIPLETS = jm.mining.Triplets(*(jnp.zeros(3, jnp.int32),) * 3, jnp.ones(3, bool))

BAD = {
    "pairs-shape": (
        lambda: jm.contrastive_loss(EMB, LABELS, pairs=(GOOD_PAIRS[0][:5], GOOD_PAIRS[1])),
        "pairs",
    ),
    "pairs-dtype": (
        lambda: jm.circle_loss(EMB, LABELS, pairs=(jnp.ones((6, 6)), GOOD_PAIRS[1])),
        "pairs",
    ),
    "pairs-arity": (lambda: jm.multi_similarity_loss(EMB, LABELS, pairs=GOOD_PAIRS[0]), "pairs"),
    "pairs-reference-shape": (
        lambda: jm.lifted_structure_loss(
            EMB, LABELS, pairs=GOOD_PAIRS, reference_embeddings=EMB[:4], reference_labels=LABELS[:4]
        ),
        "pairs",
    ),
    "triplets-arity": (
        lambda: jm.triplet_margin_loss(EMB, LABELS, triplets=GOOD_TRIPLETS[:3]),
        "triplets",
    ),
    "triplets-float": (
        lambda: jm.triplet_margin_loss(EMB, LABELS, triplets=(jnp.zeros(3), *GOOD_TRIPLETS[1:])),
        "triplets",
    ),
    "triplets-valid": (
        lambda: jm.triplet_margin_loss(
            EMB, LABELS, triplets=(*GOOD_TRIPLETS[:3], jnp.ones(2, bool))
        ),
        "triplets",
    ),
    "triplets-mining": (
        lambda: jm.triplet_margin_loss(EMB, LABELS, triplets=GOOD_TRIPLETS, mining="hard"),
        "mining",
    ),
    "reference-labels-missing": (
        lambda: jm.contrastive_loss(EMB, LABELS, reference_embeddings=EMB),
        "reference_labels",
    ),
    "reference-dim": (
        lambda: jm.angular_loss(
            EMB, LABELS, reference_embeddings=EMB[:, :3], reference_labels=LABELS
        ),
        "reference_embeddings",
    ),
    "reference-labels-length": (
        lambda: jm.generalized_lifted_structure_loss(
            EMB, LABELS, reference_embeddings=EMB, reference_labels=LABELS[:4]
        ),
        "reference_labels",
    ),
    "reference-mask": (
        lambda: jm.triplet_margin_loss(
            EMB,
            LABELS,
            reference_embeddings=EMB,
            reference_labels=LABELS,
            reference_mask=jnp.ones(5, bool),
        ),
        "reference_mask",
    ),
    "reference-mask-alone": (
        lambda: jm.contrastive_loss(EMB, LABELS, reference_mask=jnp.ones(6, bool)),
        "reference_mask",
    ),
    "threshold-missing": (
        lambda: jm.circle_loss(EMB, LABELS, reduction="threshold"),
        "reduction_threshold",
    ),
    "threshold-order": (
        lambda: jm.triplet_margin_loss(
            EMB, LABELS, reduction="threshold", reduction_threshold=(1.0, 0.5)
        ),
        "reduction_threshold",
    ),
    "threshold-both-none": (
        lambda: jm.lifted_structure_loss(
            EMB, LABELS, reduction="threshold", reduction_threshold=(None, None)
        ),
        "reduction_threshold",
    ),
    "threshold-without-threshold": (
        lambda: jm.contrastive_loss(EMB, LABELS, reduction_threshold=(0.0, 1.0)),
        "reduction_threshold",
    ),
    "unknown-reduction": (lambda: jm.angular_loss(EMB, LABELS, reduction="max"), "reduction"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_names_the_argument(name):
    call, argument = BAD[name]
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call()
