"""soft_nearest_neighbor_loss against a plain NumPy loop reference (Frosst et al. 2019).

-log(sum over positives of exp(-|x_i - x_j|^2 / T) / sum over all others),
the mean over anchors with a positive; float64 (rtol 1e-5) and float32.
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
)


def ref_snn(pairs: Pairs, temperature: float) -> float:
    losses = []
    for i, pos, neg in pairs.anchors():
        if not pos:
            continue
        logit = {j: -np.sum((pairs.x[i] - pairs.cands[j]) ** 2) / temperature for j in pos + neg}
        losses.append(
            ref_logsumexp([logit[j] for j in pos + neg]) - ref_logsumexp([logit[p] for p in pos])
        )
    return ref_mean(losses)


CASES = {
    "snn": (
        functools.partial(jm.soft_nearest_neighbor_loss, temperature=4.0),
        {"temperature": 4.0},
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LABELLED_CASES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, hyper = CASES[name]
    assert_matches_label_reference(fn, ref_snn, hyper, case, dtype, zero_cases=("no_positive",))


def test_docstring_examples():
    assert_docstring_examples_pass(jm.soft_nearest_neighbor_loss)
