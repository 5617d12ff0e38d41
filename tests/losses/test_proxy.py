"""proxy_anchor_loss and proxy_nca_loss against plain NumPy loop references.

Proxy-Anchor (Kim et al. 2020) and Proxy-NCA (Movshovitz-Attias et al.
2017), with the proxies [C, D] passed in; rows whose label has no proxy
count for nothing. float64 (rtol 1e-5) and float32 (rtol 1e-4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    assert_docstring_examples_pass,
    class_batch,
    ref_cosine,
    ref_mean,
    ref_softmax_ce,
    ref_unit,
    run_masked,
    tol,
)


def ref_proxy_anchor(x, labels, mask, proxies, margin, alpha):
    rows = [i for i in range(len(x)) if mask[i] and 0 <= labels[i] < len(proxies)]
    pos_terms, neg_total = [], 0.0
    for c in range(len(proxies)):
        s = {i: ref_cosine(x[i], proxies[c]) for i in rows}
        pos = [i for i in rows if labels[i] == c]
        neg = [i for i in rows if labels[i] != c]
        if pos:
            pos_terms.append(math.log(1 + sum(math.exp(-alpha * (s[i] - margin)) for i in pos)))
        neg_total += math.log(1 + sum(math.exp(alpha * (s[i] + margin)) for i in neg))
    return ref_mean(pos_terms) + neg_total / len(proxies)


def ref_proxy_nca(x, labels, mask, proxies, temperature):
    losses = []
    for i in range(len(x)):
        if mask[i] and 0 <= labels[i] < len(proxies):
            logits = [-np.sum((ref_unit(x[i]) - ref_unit(p)) ** 2) / temperature for p in proxies]
            losses.append(ref_softmax_ce(logits, labels[i]))
    return ref_mean(losses)


def _proxy_anchor(x, y, w, *, mask):
    return jm.proxy_anchor_loss(x, y, w, mask=mask)


def _proxy_anchor_small_alpha(x, y, w, *, mask):
    return jm.proxy_anchor_loss(x, y, w, margin=0.2, alpha=4.0, mask=mask)


def _proxy_nca(x, y, w, *, mask):
    return jm.proxy_nca_loss(x, y, w, temperature=1 / 9, mask=mask)


CASES = {
    "proxy_anchor": (_proxy_anchor, lambda x, y, m, w: ref_proxy_anchor(x, y, m, w, 0.1, 32.0)),
    "proxy_anchor_small_alpha": (
        _proxy_anchor_small_alpha,
        lambda x, y, m, w: ref_proxy_anchor(x, y, m, w, 0.2, 4.0),
    ),
    "proxy_nca": (_proxy_nca, lambda x, y, m, w: ref_proxy_nca(x, y, m, w, 1 / 9)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ("mixed", "masked", "one_class"))
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, reference = CASES[name]
    x, labels, mask, weights = class_batch(case)
    expected = reference(x, labels, mask, weights)
    out = run_masked(fn, dtype, x, labels, mask, weights)
    np.testing.assert_allclose(out, expected, **tol(dtype))


def test_docstring_examples():
    assert_docstring_examples_pass(jm.proxy_anchor_loss, jm.proxy_nca_loss)
