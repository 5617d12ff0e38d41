"""lifted_structure_loss against a plain NumPy loop reference (PML's
GeneralizedLiftedStructureLoss, Hermans et al. 2017).

relu(logsumexp(d(a,p) - pos_margin) + logsumexp(neg_margin - d(a,n))) per
anchor with a positive and a negative, euclidean distance on L2-normalised
rows; float64 (rtol 1e-5) and float32 (rtol 1e-4).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    LABELLED_CASES,
    Pairs,
    assert_docstring_examples_pass,
    assert_matches_label_reference,
    ref_logsumexp,
    ref_mean,
    ref_unit,
)


def ref_euclid(a, b) -> float:
    """Euclidean distance of the L2-normalised rows."""
    return float(np.linalg.norm(ref_unit(a) - ref_unit(b)))


def ref_lifted(pairs: Pairs, pos_margin: float, neg_margin: float) -> float:
    losses = []
    for i, pos, neg in pairs.anchors():
        if not pos or not neg:
            continue
        pos_lse = ref_logsumexp([ref_euclid(pairs.x[i], pairs.cands[p]) - pos_margin for p in pos])
        neg_lse = ref_logsumexp([neg_margin - ref_euclid(pairs.x[i], pairs.cands[n]) for n in neg])
        losses.append(max(0.0, pos_lse + neg_lse))
    return ref_mean(losses)


CASES = {
    "lifted": (jm.lifted_structure_loss, {"pos_margin": 0.0, "neg_margin": 1.0}),
    "lifted_margins": (
        functools.partial(jm.lifted_structure_loss, pos_margin=0.2, neg_margin=0.8),
        {"pos_margin": 0.2, "neg_margin": 0.8},
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LABELLED_CASES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, hyper = CASES[name]
    assert_matches_label_reference(
        fn, ref_lifted, hyper, case, dtype, zero_cases=("one_class", "no_positive")
    )


def test_docstring_examples():
    assert_docstring_examples_pass(jm.lifted_structure_loss)
