"""angular_loss against a plain NumPy loop reference (Wang et al. 2017).

alpha in degrees, on L2-normalised embeddings, the mean over positive pairs;
float64 (rtol 1e-5) and float32 (rtol 1e-4) on the same inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    SMALL_SCENARIO_IDS,
    SMALL_SCENARIOS,
    plain_batch,
    ref_normalize,
    run,
    tol,
    valid_rows,
)


def ref_angular(x, labels, mask, alpha):
    xn = ref_normalize(x)
    valid = valid_rows(mask, len(labels))
    tan_sq = math.tan(math.radians(alpha)) ** 2
    terms = []
    for a in range(len(labels)):
        if not valid[a]:
            continue
        negatives = [n for n in range(len(labels)) if valid[n] and labels[n] != labels[a]]
        if not negatives:
            continue
        for p in range(len(labels)):
            if p == a or not valid[p] or labels[p] != labels[a]:
                continue
            total = 0.0
            for n in negatives:
                f = 4.0 * tan_sq * float(np.dot(xn[a] + xn[p], xn[n]))
                f -= 2.0 * (1.0 + tan_sq) * float(np.dot(xn[a], xn[p]))
                total += math.exp(f)
            terms.append(math.log1p(total))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [40.0, 45.0, 72.0])
@pytest.mark.parametrize("scenario", SMALL_SCENARIOS, ids=SMALL_SCENARIO_IDS)
def test_angular(scenario, alpha, dtype):
    batch, case = scenario
    x, labels, mask = plain_batch(batch, case)
    expected = ref_angular(x, labels, mask, alpha)
    got = run(dtype, lambda e: jm.angular_loss(e, labels, alpha=alpha, mask=mask), x)
    np.testing.assert_allclose(got, expected, **tol(dtype))
    if case in ("mixed", "masked"):
        assert expected > 0


def test_angular_alpha_matters():
    x, labels, mask = plain_batch(13, "mixed")
    assert ref_angular(x, labels, mask, 40.0) != pytest.approx(ref_angular(x, labels, mask, 45.0))
