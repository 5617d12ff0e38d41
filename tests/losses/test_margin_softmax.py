"""arcface_loss and cosface_loss against plain NumPy loop references.

ArcFace (Deng et al. 2019, the margin in radians, both fallbacks beyond
pi - m and the easy margin) and CosFace (Wang et al. 2018), with the class
weights [C, D] passed in. float64 (rtol 1e-5) and float32 (rtol 1e-4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    B,
    C,
    assert_docstring_examples_pass,
    class_batch,
    ref_cosine,
    ref_mean,
    ref_softmax_ce,
    run_masked,
    tol,
)


def ref_arcface(x, labels, mask, weights, margin, scale, easy_margin):
    losses = []
    for i in range(len(x)):
        if not (mask[i] and 0 <= labels[i] < len(weights)):
            continue
        logits = []
        for c, w in enumerate(weights):
            cos = min(1.0, max(-1.0, ref_cosine(x[i], w)))
            if c == labels[i]:
                theta = math.acos(cos)
                if easy_margin:
                    cos = math.cos(theta + margin) if cos > 0 else cos
                elif theta <= math.pi - margin:
                    cos = math.cos(theta + margin)
                else:
                    cos = cos - margin * math.sin(margin)
            logits.append(scale * cos)
        losses.append(ref_softmax_ce(logits, labels[i]))
    return ref_mean(losses)


def ref_cosface(x, labels, mask, weights, margin, scale):
    losses = []
    for i in range(len(x)):
        if mask[i] and 0 <= labels[i] < len(weights):
            logits = [
                scale * (ref_cosine(x[i], w) - (margin if c == labels[i] else 0.0))
                for c, w in enumerate(weights)
            ]
            losses.append(ref_softmax_ce(logits, labels[i]))
    return ref_mean(losses)


def _arcface(x, y, w, *, mask):
    return jm.arcface_loss(x, y, w, mask=mask)


def _arcface_big_margin(x, y, w, *, mask):
    return jm.arcface_loss(x, y, w, margin=1.4, scale=8.0, mask=mask)


def _arcface_easy(x, y, w, *, mask):
    return jm.arcface_loss(x, y, w, margin=0.3, scale=16.0, easy_margin=True, mask=mask)


def _cosface(x, y, w, *, mask):
    return jm.cosface_loss(x, y, w, mask=mask)


CASES = {
    "arcface": (_arcface, lambda x, y, m, w: ref_arcface(x, y, m, w, 0.5, 64.0, False)),
    # With m = 1.4 rad many targets pass theta > pi - m: the fallback branch.
    "arcface_big_margin": (
        _arcface_big_margin,
        lambda x, y, m, w: ref_arcface(x, y, m, w, 1.4, 8.0, False),
    ),
    "arcface_easy": (_arcface_easy, lambda x, y, m, w: ref_arcface(x, y, m, w, 0.3, 16.0, True)),
    "cosface": (_cosface, lambda x, y, m, w: ref_cosface(x, y, m, w, 0.35, 64.0)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ("mixed", "masked", "one_class"))
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, reference = CASES[name]
    x, labels, mask, weights = class_batch(case)
    if name == "arcface_big_margin":
        weights[:] = -x[:C]  # targets far from their weights: theta near pi
        labels = np.where(labels < 100, np.arange(B) % C, labels).astype(np.int32)
    expected = reference(x, labels, mask, weights)
    if name == "arcface_big_margin":
        thetas = [
            math.acos(max(-1.0, min(1.0, ref_cosine(x[i], weights[labels[i]]))))
            for i in range(B)
            if labels[i] < 100
        ]
        assert max(thetas) > math.pi - 1.4
    out = run_masked(fn, dtype, x, labels, mask, weights)
    np.testing.assert_allclose(out, expected, **tol(dtype))


def test_docstring_examples():
    assert_docstring_examples_pass(jm.arcface_loss, jm.cosface_loss)
