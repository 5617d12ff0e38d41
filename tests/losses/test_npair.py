"""npair_loss against a plain NumPy loop reference (Sohn 2016).

Row i of anchors and positives is one pair; softmax cross-entropy over
anchors @ positives.T; with labels, rows of the same class are not
negatives; the L2 penalty is on the raw inputs. float64 and float32.
"""

from __future__ import annotations

import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DIM,
    DTYPES,
    as_float32_values,
    ref_logsumexp,
    ref_normalize,
    run,
    tol,
    valid_rows,
)


def ref_npair(anchors, positives, labels, mask, *, l2_reg, normalize, temperature):
    n = anchors.shape[0]
    valid = valid_rows(mask, n)
    fa = ref_normalize(anchors) if normalize else anchors
    fp = ref_normalize(positives) if normalize else positives
    terms, penalties = [], []
    for i in range(n):
        if not valid[i]:
            continue
        logits = []
        for j in range(n):
            if not valid[j]:
                continue
            if j == i or labels is None or labels[j] != labels[i]:
                logits.append(float(np.dot(fa[i], fp[j])) / temperature)
        target = float(np.dot(fa[i], fp[i])) / temperature
        terms.append(ref_logsumexp(logits) - target)
        # The penalty is on the raw inputs.
        penalties.append(float(np.sum(anchors[i] ** 2) + np.sum(positives[i] ** 2)))
    loss = sum(terms) / len(terms) if terms else 0.0
    if l2_reg and penalties:
        loss += l2_reg * sum(penalties) / len(penalties)
    return loss


def _npair_data(num_pairs, masked, seed):
    rng = np.random.default_rng([2, num_pairs, int(masked), seed])
    anchors = rng.normal(size=(num_pairs, DIM))
    positives = anchors + 0.5 * rng.normal(size=(num_pairs, DIM))
    labels = rng.integers(0, max(2, num_pairs // 2), size=num_pairs).astype(np.int32)
    mask = None
    if masked:
        mask = rng.random(num_pairs) > 0.3
        mask[:2] = True
        anchors[~mask] *= 10.0
        positives[~mask] *= 10.0
    return as_float32_values(anchors), as_float32_values(positives), labels, mask


_NPAIR_CONFIGS = [
    # (with labels, l2_reg, normalize, temperature)
    (False, 0.0, False, 1.0),
    (True, 0.0, False, 1.0),
    (False, 0.05, False, 1.0),
    (True, 0.05, True, 0.5),
    (False, 0.0, True, 0.1),
    (True, 0.0, True, 1.0),
    (True, 0.2, False, 2.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "config",
    _NPAIR_CONFIGS,
    ids=[f"labels{c[0]}-reg{c[1]}-norm{c[2]}-T{c[3]}" for c in _NPAIR_CONFIGS],
)
@pytest.mark.parametrize("size", [(6, False), (13, True)], ids=["N6", "N13-masked"])
def test_npair(size, config, dtype):
    num_pairs, masked = size
    with_labels, l2_reg, normalize, temperature = config
    anchors, positives, labels, mask = _npair_data(num_pairs, masked, seed=0)
    labels = labels if with_labels else None
    expected = ref_npair(
        anchors,
        positives,
        labels,
        mask,
        l2_reg=l2_reg,
        normalize=normalize,
        temperature=temperature,
    )
    got = run(
        dtype,
        lambda a, p: jm.npair_loss(
            a,
            p,
            labels=labels,
            l2_reg=l2_reg,
            normalize=normalize,
            temperature=temperature,
            mask=mask,
        ),
        anchors,
        positives,
    )
    np.testing.assert_allclose(got, expected, **tol(dtype))


def test_npair_labels_and_reg_matter():
    """The reference's options change its value, so the cases above test them."""
    anchors, positives, labels, mask = _npair_data(13, True, seed=0)
    kw = {"normalize": False, "temperature": 1.0}
    base = ref_npair(anchors, positives, None, mask, l2_reg=0.0, **kw)
    assert ref_npair(anchors, positives, labels, mask, l2_reg=0.0, **kw) != pytest.approx(base)
    assert ref_npair(anchors, positives, None, mask, l2_reg=0.1, **kw) != pytest.approx(base)
    assert ref_npair(anchors, positives, None, None, l2_reg=0.0, **kw) != pytest.approx(base)
