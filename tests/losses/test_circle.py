"""circle_loss against a plain NumPy loop reference (Sun et al. 2020).

Self-paced weights alpha_p = relu(1 + m - s), alpha_n = relu(s + m) (no
gradient), the mean over anchors with a positive and a negative; float64
(rtol 1e-5) and float32 (rtol 1e-4).
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


def ref_circle(pairs: Pairs, m: float, gamma: float) -> float:
    losses = []
    for i, pos, neg in pairs.anchors():
        if not pos or not neg:
            continue
        pos_logits, neg_logits = [], []
        for p in pos:
            s = ref_cosine(pairs.x[i], pairs.cands[p])
            pos_logits.append(-gamma * max(0.0, 1 + m - s) * (s - (1 - m)))
        for n in neg:
            s = ref_cosine(pairs.x[i], pairs.cands[n])
            neg_logits.append(gamma * max(0.0, s + m) * (s - m))
        losses.append(np.logaddexp(0.0, ref_logsumexp(pos_logits) + ref_logsumexp(neg_logits)))
    return ref_mean(losses)


CASES = {
    "circle": (jm.circle_loss, {"m": 0.4, "gamma": 80.0}),
    "circle_faces": (
        functools.partial(jm.circle_loss, m=0.25, gamma=16.0),
        {"m": 0.25, "gamma": 16.0},
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LABELLED_CASES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, hyper = CASES[name]
    assert_matches_label_reference(
        fn, ref_circle, hyper, case, dtype, zero_cases=("one_class", "no_positive")
    )


def test_docstring_examples():
    assert_docstring_examples_pass(jm.circle_loss)
