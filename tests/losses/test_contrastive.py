"""contrastive_loss against a plain NumPy loop reference.

relu(d - pos_margin) on positive pairs, relu(neg_margin - d) on negative
pairs, each term reduced on its own and then summed (PML's convention). The
JAX code runs in float64 (rtol 1e-5) and float32 (rtol 1e-4) on the same
float32-representable inputs; draws are kept GAP away from the hinges.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    GAP,
    SCENARIO_IDS,
    SCENARIOS,
    ref_distance,
    ref_normalize,
    ref_reduce,
    run,
    scenario_batch,
    tol,
    valid_rows,
)

METRICS = ("euclidean", "squared_euclidean", "cosine")
REDUCTIONS = ("mean_nonzero", "mean", "sum")


def ref_contrastive_terms(x, labels, mask, *, pos_margin, neg_margin, metric, normalize):
    """Returns ({(i, j): term} of positive pairs, the same of negative pairs)."""
    xe = ref_normalize(x) if normalize else x
    valid = valid_rows(mask, len(labels))
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


@functools.cache
def contrastive_data(batch, case, metric, normalize, pos_margin, neg_margin):
    """A scenario batch with no pair distance within GAP of a margin."""
    for attempt in range(200):
        x, labels, mask = scenario_batch(batch, case, attempt)
        xe = ref_normalize(x) if normalize else x
        valid = valid_rows(mask, batch)
        dists = [
            ref_distance(xe[i], xe[j], metric)
            for i in range(batch)
            for j in range(batch)
            if i != j and valid[i] and valid[j]
        ]
        if all(abs(d - pos_margin) > GAP and abs(d - neg_margin) > GAP for d in dists):
            return x, labels, mask
    raise AssertionError("no well-separated draw")


def _contrastive_case(x, labels, mask, dtype, *, reduction, **kwargs):
    pos_terms, neg_terms = ref_contrastive_terms(x, labels, mask, **kwargs)
    got = run(
        dtype,
        lambda e: jm.contrastive_loss(e, labels, mask=mask, reduction=reduction, **kwargs),
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
    np.testing.assert_allclose(got, expected, err_msg=reduction, **tol(dtype))
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
