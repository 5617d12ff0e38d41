"""soft_triple_loss against a plain NumPy loop reference (Qian et al. 2019).

The centres [C * K, D] passed in, K per class; the softmax over a class's
centres with temperature gamma, the margin on the target class, scale la,
and the paper's regulariser tau * R (the mean distance between two centres
of one class). float64 (rtol 1e-5) and float32 (rtol 1e-4). The docstring
example runs in tests/test_docstrings.py.
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
    DTYPES,
    C,
    as_float32_values,
    class_batch,
    ref_cosine,
    ref_mean,
    ref_softmax_ce,
    ref_unit,
    run_masked,
    tol,
)


def ref_spread(centers, k) -> float:
    """R = sum_c sum_{j < l} ||w_cj - w_cl|| / (C K (K - 1)), unit centres; 0 for K = 1."""
    if k == 1:
        return 0.0
    num_classes = len(centers) // k
    total = 0.0
    for c in range(num_classes):
        for j in range(k):
            for m in range(j + 1, k):
                diff = ref_unit(centers[c * k + j]) - ref_unit(centers[c * k + m])
                total += math.sqrt(float(np.dot(diff, diff)))
    return total / (num_classes * k * (k - 1))


def ref_soft_triple(x, labels, mask, centers, k, la, gamma, margin, tau) -> float:
    num_classes = len(centers) // k
    losses = []
    for i in range(len(x)):
        if not (mask[i] and 0 <= labels[i] < num_classes):
            continue
        logits = []
        for c in range(num_classes):
            s = [ref_cosine(x[i], centers[c * k + j]) for j in range(k)]
            top = max(s)
            e = [math.exp((v - top) / gamma) for v in s]
            sim = sum(w * v for w, v in zip(e, s, strict=True)) / sum(e)
            logits.append(la * (sim - (margin if c == labels[i] else 0.0)))
        losses.append(ref_softmax_ce(logits, labels[i]))
    if not losses:
        return 0.0
    return ref_mean(losses) + tau * ref_spread(centers, k)


def _centers(k, dim=6):
    rng = np.random.default_rng(13)
    return as_float32_values(rng.normal(size=(C * k, dim)))


def _defaults(x, y, w, *, mask):  # K = 10, la 20, gamma 0.1, margin 0.01, tau 0.2
    return jm.soft_triple_loss(x, y, w, mask=mask)


def _pml(x, y, w, *, mask):  # PML's loss: no regulariser
    return jm.soft_triple_loss(
        x, y, w, centers_per_class=3, la=10.0, gamma=0.5, margin=0.1, tau=0.0, mask=mask
    )


def _one_center(x, y, w, *, mask):
    return jm.soft_triple_loss(x, y, w, centers_per_class=1, tau=1.0, mask=mask)


CASES = {
    "defaults": (_defaults, 10, dict(la=20.0, gamma=0.1, margin=0.01, tau=0.2)),
    "k3_no_regulariser": (_pml, 3, dict(la=10.0, gamma=0.5, margin=0.1, tau=0.0)),
    "k1": (_one_center, 1, dict(la=20.0, gamma=0.1, margin=0.01, tau=1.0)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ("mixed", "masked", "one_class"))
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, k, hyper = CASES[name]
    x, labels, mask, _ = class_batch(case)
    centers = _centers(k)
    expected = ref_soft_triple(x, labels, mask, centers, k, **hyper)
    out = run_masked(fn, dtype, x, labels, mask, centers)
    np.testing.assert_allclose(out, expected, **tol(dtype))


@functools.cache
def _value_and_grad(tau=1.0):
    def loss(x, y, w, m):
        return jm.soft_triple_loss(x, y, w, centers_per_class=3, tau=tau, mask=m)

    return jax.jit(jax.value_and_grad(loss, argnums=2))


def test_regulariser_only_when_a_row_counts():
    """R depends on the centres only: added when a row counts, so a batch with
    nothing valid gives 0 with zero gradient (the kernel contract)."""
    x, labels, mask, _ = class_batch("mixed")
    centers = _centers(3)
    value, grad = _value_and_grad()(x, labels, centers, np.zeros(len(x), bool))
    assert float(value) == 0.0 and not np.asarray(grad).any()
    # Rows without a class (labels >= C) count for nothing either.
    value, _ = _value_and_grad()(x, np.full(len(x), 100), centers, mask)
    assert float(value) == 0.0
    # Only the rows' term changes with tau: the difference is tau * R.
    value, _ = _value_and_grad()(x, labels, centers, mask)
    without, _ = _value_and_grad(0.0)(x, labels, centers, mask)
    np.testing.assert_allclose(float(value - without), ref_spread(centers, 3), rtol=1e-5)


def test_coinciding_centres_keep_a_finite_gradient():
    x, labels, mask, _ = class_batch("mixed")
    centers = np.repeat(_centers(1), 3, axis=0)  # the 3 centres of each class coincide
    value, grad = _value_and_grad()(x, labels, centers, mask)
    assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
    expected = ref_soft_triple(x, labels, mask, centers, 3, 20.0, 0.1, 0.01, 1.0)
    np.testing.assert_allclose(float(value), expected, rtol=1e-4)


def test_rejects_bad_hyper_parameters_naming_them():
    x, labels, _, _ = class_batch("mixed")
    centers = jnp.asarray(_centers(2), jnp.float32)
    for kwargs, name in (
        ({"centers_per_class": 3}, "centers"),  # 8 rows: not 3 per class
        ({"centers_per_class": 0}, "centers_per_class"),
        ({"centers_per_class": 2, "la": 0.0}, "la"),
        ({"centers_per_class": 2, "gamma": -1.0}, "gamma"),
        ({"centers_per_class": 2, "tau": -0.1}, "tau"),
        ({"centers_per_class": 2, "margin": -0.1}, "margin"),
    ):
        with pytest.raises(ValueError, match=f"`{name}`"):
            jm.soft_triple_loss(x, labels, centers, **kwargs)
