"""triplet_margin_loss against a plain NumPy loop reference (and optax).

The reference is written from DESIGN.md and the docstring alone: explicit
Python loops over anchors, positives and negatives in float64, mining by the
rules of tests/harness.py's ``ref_mine``. The JAX code runs once in float64
(``jax.enable_x64``, rtol 1e-5) and once in float32 (rtol 1e-4, atol 1e-5)
on the same float32-representable inputs, on batches with singleton classes,
one-class batches, batches without a positive pair and padded rows. Draws
are kept GAP away from every mining and hinge boundary.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    SCENARIO_IDS,
    SCENARIOS,
    precision,
    ref_mine,
    ref_reduce,
    ref_triplet_setup,
    run,
    tol,
    triplet_data,
)

METRICS = ("euclidean", "squared_euclidean", "cosine")
MININGS = ("all", "hard", "semi_hard", "batch_hard", "facenet_semi_hard")
REDUCTIONS = ("mean_nonzero", "mean", "sum")
# The optax reference, compiled once per shape (eager optax is slow to start).
_optax_triplet = jax.jit(functools.partial(optax.losses.triplet_margin_loss, eps=0.0))


def ref_hinge(z, soft):
    return float(np.logaddexp(0.0, z)) if soft else max(0.0, z)


def ref_triplet_terms(x, labels, mask, *, margin, metric, normalize, mining_name, soft):
    d, pos, neg = ref_triplet_setup(x, labels, mask, metric, normalize)
    triplets = ref_mine(d, pos, neg, mining_name, margin)
    terms = [ref_hinge(d[a, p] - d[a, n] + margin, soft) for a, p, n in triplets]
    return triplets, terms


def _triplet(dtype, x, labels, mask, **kwargs):
    return run(dtype, lambda e: jm.triplet_margin_loss(e, labels, mask=mask, **kwargs), x)


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
            got, ref_reduce(terms, reduction), err_msg=reduction, **tol(dtype)
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
            got, ref_reduce(terms, reduction), err_msg=reduction, **tol(dtype)
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
    np.testing.assert_allclose(got, expected, **tol(dtype))

    a_idx, p_idx, n_idx = (np.array(i) for i in zip(*triplets, strict=True))
    with precision(dtype):
        xj = jnp.asarray(x.astype(dtype))
        by_optax = _optax_triplet(xj[a_idx], xj[p_idx], xj[n_idx], margin=margin)
        by_optax = np.asarray(by_optax, np.float64)
    np.testing.assert_allclose(got[a_idx, p_idx, n_idx], by_optax, **tol(dtype))
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
    np.testing.assert_allclose(got, expected, **tol(dtype))
