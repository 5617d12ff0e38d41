"""multi_similarity_loss against a plain NumPy loop reference (Wang et al. 2019).

The pair-mining step (epsilon) and the soft weighting of positives and
negatives, cosine similarity; float64 (rtol 1e-5) and float32 (rtol 1e-4).
Mining compares similarities: draws within MINING_GAP of the miner's
boundary are redrawn.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    LABELLED_CASES,
    Pairs,
    assert_docstring_examples_pass,
    labelled_batch,
    ref_cosine,
    ref_mean,
    run_masked,
    tol,
)

MINING_GAP = 1e-4


def ref_multi_similarity(pairs: Pairs, alpha, beta, base, epsilon, gaps=None) -> float:
    """The loss; ``gaps`` (a list) collects each pair's distance to the mining boundary."""
    losses = []
    for i, pos, neg in pairs.anchors():
        s = {j: ref_cosine(pairs.x[i], pairs.cands[j]) for j in pos + neg}
        if epsilon is not None:
            hardest_neg = max((s[n] for n in neg), default=-np.inf)
            hardest_pos = min((s[p] for p in pos), default=np.inf)
            if gaps is not None:
                gaps += [abs(s[p] - epsilon - hardest_neg) for p in pos]
                gaps += [abs(s[n] + epsilon - hardest_pos) for n in neg]
            pos = [p for p in pos if s[p] - epsilon < hardest_neg]
            neg = [n for n in neg if s[n] + epsilon > hardest_pos]
        pos_term = math.log(1 + sum(math.exp(-alpha * (s[p] - base)) for p in pos)) / alpha
        neg_term = math.log(1 + sum(math.exp(beta * (s[n] - base)) for n in neg)) / beta
        losses.append(pos_term + neg_term)
    return ref_mean(losses)


def draw_away_from_mining_ties(case, hyper, memory_of=None):
    """(x, labels, mask, memory) of the first labelled batch (and memory, from
    ``memory_of(attempt)``) whose multi-similarity mining is not within
    MINING_GAP of a tie."""
    for attempt in range(20):
        x, labels, mask = labelled_batch(case, attempt)
        memory = None if memory_of is None else memory_of(attempt)
        if hyper.get("epsilon") is None:
            return x, labels, mask, memory
        gaps = []
        ref_multi_similarity(Pairs.with_memory(x, labels, mask, memory), **hyper, gaps=gaps)
        if not gaps or min(gaps) > MINING_GAP:
            return x, labels, mask, memory
    raise AssertionError("no draw away from the mining boundary")


CASES = {
    "multi_similarity": (
        jm.multi_similarity_loss,
        {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1},
    ),
    "multi_similarity_nomine": (
        functools.partial(jm.multi_similarity_loss, alpha=1.5, beta=20.0, base=0.3, epsilon=None),
        {"alpha": 1.5, "beta": 20.0, "base": 0.3, "epsilon": None},
    ),
}
# Nothing counts: one-class batches when the miner needs a negative to keep a
# positive; no-positive batches when nothing is mined.
ZERO = {("multi_similarity", "one_class"), ("multi_similarity", "no_positive")}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LABELLED_CASES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, hyper = CASES[name]
    x, labels, mask, _ = draw_away_from_mining_ties(case, hyper)
    expected = ref_multi_similarity(Pairs(x, labels, mask), **hyper)
    out = run_masked(fn, dtype, x, labels, mask)
    np.testing.assert_allclose(out, expected, **tol(dtype))
    if (name, case) in ZERO:
        assert expected == 0.0 and out == 0.0


def test_docstring_examples():
    assert_docstring_examples_pass(jm.multi_similarity_loss)
