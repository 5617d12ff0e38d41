"""ntxent_loss and simclr_loss against plain NumPy loop references (and optax).

NT-Xent over positives defined by labels, cosine similarity, the anchor's
other positives left out of the denominator; SimCLR's two-view NT-Xent with
2N - 2 negatives per anchor. float64 (rtol 1e-5) and float32 (rtol 1e-4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxmetric as jm
from tests.harness import (
    DIM,
    DTYPES,
    SCENARIO_IDS,
    SCENARIOS,
    plain_batch,
    precision,
    ref_logsumexp,
    ref_normalize,
    run,
    tol,
    valid_rows,
)

# The optax reference, compiled once per shape (eager optax is slow to start).
_optax_ntxent = jax.jit(optax.losses.ntxent)


def ref_ntxent(x, labels, mask, temperature):
    xn = ref_normalize(x)
    valid = valid_rows(mask, len(labels))
    b = len(labels)
    terms = []
    for i in range(b):
        if not valid[i]:
            continue
        negatives = [
            float(np.dot(xn[i], xn[n])) / temperature
            for n in range(b)
            if valid[n] and labels[n] != labels[i]
        ]
        for p in range(b):
            if p == i or not valid[p] or labels[p] != labels[i]:
                continue
            s_ip = float(np.dot(xn[i], xn[p])) / temperature
            # Other positives of i are not in the denominator.
            terms.append(ref_logsumexp([s_ip, *negatives]) - s_ip)
    return sum(terms) / len(terms) if terms else 0.0


def ref_simclr(z1, z2, mask, temperature):
    n = z1.shape[0]
    valid = valid_rows(mask, n)
    views = np.concatenate([ref_normalize(z1), ref_normalize(z2)])
    owner = [i % n for i in range(2 * n)]
    terms = []
    for u in range(2 * n):
        if not valid[owner[u]]:
            continue
        v = (u + n) % (2 * n)
        # Denominator: every other valid view, the positive included (2N - 1 terms).
        logits = [
            float(np.dot(views[u], views[w])) / temperature
            for w in range(2 * n)
            if w != u and valid[owner[w]]
        ]
        s_uv = float(np.dot(views[u], views[v])) / temperature
        terms.append(ref_logsumexp(logits) - s_uv)
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_ntxent(scenario, temperature, dtype):
    batch, case = scenario
    x, labels, mask = plain_batch(batch, case)
    expected = ref_ntxent(x, labels, mask, temperature)
    got = run(dtype, lambda e: jm.ntxent_loss(e, labels, temperature=temperature, mask=mask), x)
    np.testing.assert_allclose(got, expected, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.07, 0.5])
@pytest.mark.parametrize("batch", [6, 13, 32])
def test_ntxent_equals_optax(batch, temperature, dtype):
    rng = np.random.default_rng([3, batch])
    x = rng.normal(size=(batch, DIM)).astype(np.float32).astype(np.float64)
    # Every class has two or more members: every anchor has a positive.
    labels = rng.permutation(np.arange(batch) % (batch // 2)).astype(np.int32)
    got = run(dtype, lambda e: jm.ntxent_loss(e, labels, temperature=temperature), x)
    with precision(dtype):
        by_optax = _optax_ntxent(jnp.asarray(x.astype(dtype)), jnp.asarray(labels), temperature)
        by_optax = np.asarray(by_optax, np.float64)
    np.testing.assert_allclose(got, by_optax, **tol(dtype))
    np.testing.assert_allclose(got, ref_ntxent(x, labels, None, temperature), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize(
    "size", [(3, False), (16, False), (16, True)], ids=["N3", "N16", "N16-masked"]
)
def test_simclr(size, temperature, dtype):
    num_pairs, masked = size
    rng = np.random.default_rng([4, num_pairs])
    z1 = rng.normal(size=(num_pairs, DIM))
    z2 = z1 + 0.5 * rng.normal(size=(num_pairs, DIM))
    mask = None
    if masked:
        mask = rng.random(num_pairs) > 0.3
        mask[:2] = True
        z1[~mask] *= 10.0
    z1, z2 = (z.astype(np.float32).astype(np.float64) for z in (z1, z2))
    expected = ref_simclr(z1, z2, mask, temperature)
    got = run(
        dtype,
        lambda a, b: jm.simclr_loss(a, b, temperature=temperature, mask=mask),
        z1,
        z2,
    )
    np.testing.assert_allclose(got, expected, **tol(dtype))
    # simclr_loss(z1, z2) == ntxent_loss(concat[z1, z2], concat[arange N, arange N]).
    labels = np.concatenate([np.arange(num_pairs), np.arange(num_pairs)]).astype(np.int32)
    both_mask = None if mask is None else np.concatenate([mask, mask])
    via_ntxent = run(
        dtype,
        lambda e: jm.ntxent_loss(e, labels, temperature=temperature, mask=both_mask),
        np.concatenate([z1, z2]),
    )
    np.testing.assert_allclose(got, via_ntxent, **tol(dtype))
