"""The lifted structure losses against plain NumPy loop references.

- ``generalized_lifted_structure_loss`` (Hermans et al. 2017, PML's
  GeneralizedLiftedStructureLoss): relu(logsumexp(d(a,p) - pos_margin) +
  logsumexp(neg_margin - d(a,n))) per anchor with a positive and a negative.
- ``lifted_structure_loss`` (Oh Song et al. 2016, PML's LiftedStructureLoss):
  relu(log(sum of exp(neg_margin - d) over the negative pairs of i and of j)
  + d(i,j) - pos_margin)^2 / 2 per ordered positive pair (i, j), averaged.

Euclidean distance on L2-normalised rows; float64 (rtol 1e-5) and float32
(rtol 1e-4). ``pairs=``, ``reference_embeddings=`` and the reductions are
tested for every pair loss in tests/losses/test_composition.py.
"""

from __future__ import annotations

import functools
import math

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
    """The generalised (per-anchor) lifted structure loss."""
    losses = []
    for i, pos, neg in pairs.anchors():
        if not pos or not neg:
            continue
        pos_lse = ref_logsumexp([ref_euclid(pairs.x[i], pairs.cands[p]) - pos_margin for p in pos])
        neg_lse = ref_logsumexp([neg_margin - ref_euclid(pairs.x[i], pairs.cands[n]) for n in neg])
        losses.append(max(0.0, pos_lse + neg_lse))
    return ref_mean(losses)


def ref_lifted_pair_terms(x, cands, pos, neg, rows_of=None, *, pos_margin, neg_margin):
    """{(i, j): term} of the positive pairs of [b, M] masks that have a negative.

    The negatives of j: the negative pairs of row ``rows_of[j]`` (j a row of
    the batch), else those of column j.
    """
    out = {}
    for i in range(pos.shape[0]):
        for j in range(pos.shape[1]):
            if not pos[i, j]:
                continue
            logits = [neg_margin - ref_euclid(x[i], cands[n]) for n in np.flatnonzero(neg[i])]
            if rows_of is not None and rows_of.get(j) is not None:
                r = rows_of[j]
                logits += [neg_margin - ref_euclid(x[r], cands[n]) for n in np.flatnonzero(neg[r])]
            else:
                logits += [
                    neg_margin - ref_euclid(x[k], cands[j]) for k in np.flatnonzero(neg[:, j])
                ]
            if logits:
                hinge = max(0.0, ref_logsumexp(logits) + ref_euclid(x[i], cands[j]) - pos_margin)
                out[i, j] = 0.5 * hinge**2
    return out


def ref_lifted_structure(pairs: Pairs, pos_margin: float, neg_margin: float) -> float:
    """Oh Song et al.'s loss; the batch's rows are its first candidates (then,
    with a cross-batch memory, the memory's, which have no row)."""
    b, m = len(pairs.x), len(pairs.cands)
    pos, neg = np.zeros((b, m), bool), np.zeros((b, m), bool)
    for i, p, n in pairs.anchors():
        pos[i, p], neg[i, n] = True, True
    terms = ref_lifted_pair_terms(
        pairs.x,
        pairs.cands,
        pos,
        neg,
        {j: j for j in range(b)},
        pos_margin=pos_margin,
        neg_margin=neg_margin,
    )
    return ref_mean(list(terms.values()))


CASES = {
    "generalized": (
        jm.generalized_lifted_structure_loss,
        ref_lifted,
        {"pos_margin": 0.0, "neg_margin": 1.0},
    ),
    "generalized_margins": (
        functools.partial(jm.generalized_lifted_structure_loss, pos_margin=0.2, neg_margin=0.8),
        ref_lifted,
        {"pos_margin": 0.2, "neg_margin": 0.8},
    ),
    "lifted": (
        jm.lifted_structure_loss,
        ref_lifted_structure,
        {"pos_margin": 0.0, "neg_margin": 1.0},
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LABELLED_CASES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, reference, hyper = CASES[name]
    assert_matches_label_reference(
        fn, reference, hyper, case, dtype, zero_cases=("one_class", "no_positive")
    )


def test_lifted_structure_by_hand():
    """Two classes of two unit rows: J for the pair (0, 1) written out."""
    x = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    d = lambda i, j: float(np.linalg.norm(x[i] - x[j]))  # noqa: E731
    # Pair (0, 1): negatives of 0 are 2, 3; of 1 also 2, 3 (labels 0, 0, 1, 1).
    j01 = math.log(sum(math.exp(1.0 - d(a, n)) for a in (0, 1) for n in (2, 3))) + d(0, 1)
    j23 = math.log(sum(math.exp(1.0 - d(a, n)) for a in (2, 3) for n in (0, 1))) + d(2, 3)
    expected = (j01**2 + j23**2) / 4  # mean over 4 ordered pairs of J^2 / 2
    got = float(jm.lifted_structure_loss(x, np.array([0, 0, 1, 1])))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_docstring_examples():
    assert_docstring_examples_pass(jm.lifted_structure_loss, jm.generalized_lifted_structure_loss)
