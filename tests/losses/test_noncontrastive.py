"""BYOL, SimSiam, Barlow Twins and VICReg losses against NumPy loop references.

The references are written from the papers' formulas, in float64; the JAX
code runs in float32 on correlated views with unequal column scales, with
and without padded rows. Sharded == single device, robustness and bad input
are the contract families of tests/losses/test_contract_*.py.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    assert_docstring_examples_pass,
    assert_matches_two_view_reference,
    ref_normalize,
)


def ref_byol(p, t, mask):
    p, t = ref_normalize(p), ref_normalize(t)
    terms = [np.sum((p[i] - t[i]) ** 2) for i in range(len(p)) if mask[i]]
    return np.mean(terms) if terms else 0.0


def ref_simsiam(p, t, mask):
    p, t = ref_normalize(p), ref_normalize(t)
    terms = [-np.dot(p[i], t[i]) for i in range(len(p)) if mask[i]]
    return np.mean(terms) if terms else 0.0


def ref_barlow_twins(z1, z2, mask, lambda_offdiag=5e-3, eps=1e-5):
    z1, z2 = z1[mask], z2[mask]
    n, d = z1.shape

    def standardise(z):
        mu = z.mean(0)
        var = ((z - mu) ** 2).mean(0)  # biased, as BatchNorm in training mode
        return (z - mu) / np.sqrt(var + eps)

    a, b = standardise(z1), standardise(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambda_offdiag * c**2
    return loss


def ref_vicreg(z1, z2, mask, sim=25.0, var=25.0, cov=1.0, eps=1e-4):
    z1, z2 = z1[mask], z2[mask]
    n, d = z1.shape
    invariance = np.mean((z1 - z2) ** 2)

    def regularisers(z):
        zc = z - z.mean(0)
        v = np.mean([max(0.0, 1 - np.sqrt(zc[:, j] @ zc[:, j] / (n - 1) + eps)) for j in range(d)])
        c = sum((zc[:, i] @ zc[:, j] / (n - 1)) ** 2 for i in range(d) for j in range(d) if i != j)
        return v, c / d

    v1, c1 = regularisers(z1)
    v2, c2 = regularisers(z2)
    return sim * invariance + var * (v1 + v2) / 2 + cov * (c1 + c2)


REFERENCE = {
    "byol": (jm.byol_loss, ref_byol),
    "simsiam": (jm.simsiam_loss, ref_simsiam),
    "barlow_twins": (jm.barlow_twins_loss, ref_barlow_twins),
    "barlow_twins_lambda": (
        functools.partial(jm.barlow_twins_loss, lambda_offdiag=0.1),
        functools.partial(ref_barlow_twins, lambda_offdiag=0.1),
    ),
    "vicreg": (jm.vicreg_loss, ref_vicreg),
    "vicreg_weights": (
        functools.partial(jm.vicreg_loss, sim_weight=1.0, var_weight=2.0, cov_weight=3.0),
        functools.partial(ref_vicreg, sim=1.0, var=2.0, cov=3.0),
    ),
}


@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_matches_numpy_reference(case, masked):
    loss_fn, ref_fn = REFERENCE[case]
    assert_matches_two_view_reference(loss_fn, ref_fn, len(case), masked)


def test_barlow_twins_perfect_views_give_zero():
    # Identical views with centred, orthogonal columns of unit variance: C = I.
    a = np.random.default_rng(0).normal(size=(12, 7))
    q, _ = np.linalg.qr(a - a.mean(0))  # columns stay centred
    z = jnp.asarray(q / q.std(0), jnp.float32)
    assert float(jm.barlow_twins_loss(z, z, lambda_offdiag=0.0)) < 1e-3


def test_docstring_examples():
    assert_docstring_examples_pass(
        jm.byol_loss, jm.simsiam_loss, jm.barlow_twins_loss, jm.vicreg_loss
    )
