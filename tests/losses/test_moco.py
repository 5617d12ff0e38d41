"""moco_loss and mocov3_loss against plain NumPy loop references.

MoCo: InfoNCE with logits [q . k, q . queue^T] / T, target 0, keys and queue
without gradient (float64 and float32, with queue and batch masks). MoCo v3:
2T times the InfoNCE of the queries against the keys of the batch.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DIM,
    DTYPES,
    assert_docstring_examples_pass,
    assert_matches_two_view_reference,
    ref_logsumexp,
    ref_normalize,
    run,
    tol,
    valid_rows,
)


def ref_moco(q, k, queue, *, temperature, normalize, queue_mask, mask):
    if normalize:
        q, k, queue = ref_normalize(q), ref_normalize(k), ref_normalize(queue)
    valid = valid_rows(mask, q.shape[0])
    filled = valid_rows(queue_mask, queue.shape[0])
    terms = []
    for i in range(q.shape[0]):
        if not valid[i]:
            continue
        s_pos = float(np.dot(q[i], k[i])) / temperature
        logits = [s_pos]
        for j in range(queue.shape[0]):
            if filled[j]:
                logits.append(float(np.dot(q[i], queue[j])) / temperature)
        terms.append(ref_logsumexp(logits) - s_pos)
    return sum(terms) / len(terms) if terms else 0.0


def ref_mocov3(q, k, mask, temperature=0.2):
    q, k = ref_normalize(q), ref_normalize(k)
    terms = []
    for i in range(len(q)):
        if not mask[i]:
            continue
        logits = [q[i] @ k[j] / temperature for j in range(len(k)) if mask[j]]
        terms.append(-(q[i] @ k[i] / temperature) + np.log(np.sum(np.exp(logits))))
    return 2 * temperature * np.mean(terms) if terms else 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.07, 0.2])
@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "raw"])
@pytest.mark.parametrize("masks", ["none", "queue_mask", "both"])
def test_moco(masks, normalize, temperature, dtype):
    rng = np.random.default_rng([6, len(masks)])
    batch, size = 13, 32
    q = rng.normal(size=(batch, DIM))
    k = q + 0.5 * rng.normal(size=(batch, DIM))
    queue = rng.normal(size=(size, DIM))
    if not normalize:  # keep raw logits in a sane range
        q, k, queue = q / 3.0, k / 3.0, queue / 3.0
    queue_mask = mask = None
    if masks in ("queue_mask", "both"):
        queue_mask = rng.random(size) > 0.4
        queue_mask[0] = True
        queue[~queue_mask] *= 10.0
    if masks == "both":
        mask = rng.random(batch) > 0.3
        mask[0] = True
        q[~mask] *= 10.0
    q, k, queue = (a.astype(np.float32).astype(np.float64) for a in (q, k, queue))
    expected = ref_moco(
        q,
        k,
        queue,
        temperature=temperature,
        normalize=normalize,
        queue_mask=queue_mask,
        mask=mask,
    )
    got = run(
        dtype,
        lambda a, b, c: jm.moco_loss(
            a,
            b,
            c,
            temperature=temperature,
            normalize=normalize,
            queue_mask=queue_mask,
            mask=mask,
        ),
        q,
        k,
        queue,
    )
    np.testing.assert_allclose(got, expected, **tol(dtype))
    if masks != "none":  # the masks change the reference, so they are tested
        unmasked = ref_moco(
            q,
            k,
            queue,
            temperature=temperature,
            normalize=normalize,
            queue_mask=None,
            mask=None,
        )
        assert unmasked != pytest.approx(expected)


MOCOV3_CASES = {
    "mocov3": (jm.mocov3_loss, ref_mocov3),
    "mocov3_t1": (
        functools.partial(jm.mocov3_loss, temperature=1.0),
        functools.partial(ref_mocov3, temperature=1.0),
    ),
}


@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", sorted(MOCOV3_CASES))
def test_mocov3_matches_numpy_reference(case, masked):
    loss_fn, ref_fn = MOCOV3_CASES[case]
    assert_matches_two_view_reference(loss_fn, ref_fn, len(case), masked)


def test_docstring_examples():
    assert_docstring_examples_pass(jm.mocov3_loss)
