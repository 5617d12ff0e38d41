"""supcon_loss against a plain NumPy loop reference (Khosla et al. 2020).

The mean over the anchors that have a positive (PML's convention), cosine
similarity over temperature, every other valid candidate in the
denominator. float64 (rtol 1e-5) and float32 (rtol 1e-4) on the same
float32-representable inputs: singleton classes, padding, one-class and
no-positive batches.
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
    ref_cosine,
    ref_logsumexp,
    ref_mean,
)


def ref_supcon(pairs: Pairs, temperature: float) -> float:
    losses = []
    for i, pos, neg in pairs.anchors():
        if not pos:
            continue
        s = {j: ref_cosine(pairs.x[i], pairs.cands[j]) / temperature for j in pos + neg}
        denominator = ref_logsumexp([s[j] for j in pos + neg])
        losses.append(-np.mean([s[p] - denominator for p in pos]))
    return ref_mean(losses)


CASES = {
    "supcon": (functools.partial(jm.supcon_loss, temperature=0.5), {"temperature": 0.5}),
    "supcon_low_t": (functools.partial(jm.supcon_loss, temperature=0.05), {"temperature": 0.05}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LABELLED_CASES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, hyper = CASES[name]
    assert_matches_label_reference(fn, ref_supcon, hyper, case, dtype, zero_cases=("no_positive",))


def test_docstring_examples():
    assert_docstring_examples_pass(jm.supcon_loss)
