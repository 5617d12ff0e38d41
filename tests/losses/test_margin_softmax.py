"""The class-weight softmax losses against plain NumPy loop references.

ArcFace (Deng et al. 2019, the margin in radians, both fallbacks beyond
pi - m and the easy margin), sub-center ArcFace (Deng et al. 2020, weights
[C * K, D], the nearest sub-centre of each class), CosFace (Wang et al.
2018) and the normalised softmax (Zhai & Wu), with the class weights passed
in. float64 (rtol 1e-5) and float32 (rtol 1e-4).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    B,
    C,
    as_float32_values,
    assert_docstring_examples_pass,
    class_batch,
    ref_cosine,
    ref_mean,
    ref_softmax_ce,
    run_masked,
    tol,
)


def ref_arcface(x, labels, mask, weights, margin, scale, easy_margin, sub_centers=1):
    """ArcFace; with ``sub_centers`` K, the class cosine is the largest of the
    cosines to rows c * K .. c * K + K - 1 of ``weights`` (sub-center ArcFace)."""
    num_classes = len(weights) // sub_centers
    losses = []
    for i in range(len(x)):
        if not (mask[i] and 0 <= labels[i] < num_classes):
            continue
        logits = []
        for c in range(num_classes):
            centres = weights[c * sub_centers : (c + 1) * sub_centers]
            cos = max(ref_cosine(x[i], w) for w in centres)
            cos = min(1.0, max(-1.0, cos))
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


def ref_normalized_softmax(x, labels, mask, weights, temperature):
    losses = []
    for i in range(len(x)):
        if mask[i] and 0 <= labels[i] < len(weights):
            logits = [ref_cosine(x[i], w) / temperature for w in weights]
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


def _normalized_softmax(x, y, w, *, mask):
    return jm.normalized_softmax_loss(x, y, w, temperature=0.2, mask=mask)


CASES = {
    "arcface": (_arcface, lambda x, y, m, w: ref_arcface(x, y, m, w, 0.5, 64.0, False)),
    # With m = 1.4 rad many targets pass theta > pi - m: the fallback branch.
    "arcface_big_margin": (
        _arcface_big_margin,
        lambda x, y, m, w: ref_arcface(x, y, m, w, 1.4, 8.0, False),
    ),
    "arcface_easy": (_arcface_easy, lambda x, y, m, w: ref_arcface(x, y, m, w, 0.3, 16.0, True)),
    "cosface": (_cosface, lambda x, y, m, w: ref_cosface(x, y, m, w, 0.35, 64.0)),
    "normalized_softmax": (
        _normalized_softmax,
        lambda x, y, m, w: ref_normalized_softmax(x, y, m, w, 0.2),
    ),
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


def _subcenter_k3(x, y, w, *, mask):
    return jm.subcenter_arcface_loss(x, y, w, mask=mask)  # the defaults: K = 3, m = 0.5, s = 64


def _subcenter_k2_big_margin(x, y, w, *, mask):
    return jm.subcenter_arcface_loss(x, y, w, sub_centers=2, margin=1.4, scale=8.0, mask=mask)


SUBCENTER_CASES = {
    "k3": (_subcenter_k3, 3, 0.5, 64.0),
    "k2_big_margin": (_subcenter_k2_big_margin, 2, 1.4, 8.0),
}


def _subcenter_weights(sub_centers: int, x=None):
    """[C * K, SMALL_DIM] sub-centres; with ``x``, the first sub-centre of
    each class opposite a row, so that the nearest sub-centre varies."""
    rng = np.random.default_rng(11)
    w = rng.normal(size=(C * sub_centers, x.shape[1] if x is not None else 6))
    if x is not None:
        w[::sub_centers] = -x[:C]
    return as_float32_values(w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ("mixed", "masked", "one_class"))
@pytest.mark.parametrize("name", sorted(SUBCENTER_CASES))
def test_subcenter_arcface_matches_reference(name, case, dtype):
    fn, k, margin, scale = SUBCENTER_CASES[name]
    x, labels, mask, _ = class_batch(case)
    weights = _subcenter_weights(k, x)
    expected = ref_arcface(x, labels, mask, weights, margin, scale, False, sub_centers=k)
    out = run_masked(fn, dtype, x, labels, mask, weights)
    np.testing.assert_allclose(out, expected, **tol(dtype))


def test_subcenter_arcface_gradient_reaches_the_nearest_subcentres_only():
    x, labels, mask, _ = class_batch("mixed")
    k = 3
    weights = _subcenter_weights(k, x)
    grad = jax.jit(jax.grad(lambda w: jm.subcenter_arcface_loss(x, labels, w, mask=mask)))(
        jnp.asarray(weights, jnp.float32)
    )
    # The nearest sub-centre of each class, for every row that counts.
    nearest = set()
    for i in range(len(x)):
        if mask[i] and labels[i] < C:
            for c in range(C):
                cos = [ref_cosine(x[i], weights[c * k + j]) for j in range(k)]
                nearest.add(c * k + int(np.argmax(cos)))
    touched = {r for r in range(len(weights)) if np.abs(np.asarray(grad[r])).max() > 0}
    assert touched == nearest and len(nearest) < len(weights)


def test_subcenter_arcface_with_one_subcentre_is_arcface():
    x, labels, mask, weights = class_batch("mixed")
    both = jax.jit(
        lambda w: (
            jm.subcenter_arcface_loss(x, labels, w, sub_centers=1, mask=mask),
            jm.arcface_loss(x, labels, w, mask=mask),
        )
    )
    one, arcface = both(weights)
    np.testing.assert_allclose(float(one), float(arcface), rtol=1e-6)


def test_subcenter_arcface_rejects_weights_not_a_multiple_of_k():
    x, labels, _, _ = class_batch("mixed")
    with pytest.raises(ValueError, match=r"`weights` must have shape \[num_classes \* 3, 6\]"):
        jm.subcenter_arcface_loss(x, labels, np.ones((8, 6)))
    with pytest.raises(ValueError, match="`sub_centers` must be a positive int"):
        jm.subcenter_arcface_loss(x, labels, np.ones((8, 6)), sub_centers=0)


def test_docstring_examples():
    assert_docstring_examples_pass(jm.arcface_loss, jm.cosface_loss)
