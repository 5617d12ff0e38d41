"""xbm_loss (cross-batch memory, Wang et al. 2020) against the NumPy loop references.

The pair references of the wrapped losses take a candidate set, so the same
loops check the memory: candidates = the batch + the memory's valid slots,
anchors = the batch. float64 (rtol 1e-5) and float32 (rtol 1e-4).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    SMALL_DIM,
    Pairs,
    assert_docstring_examples_pass,
    labelled_batch,
    precision,
    ref_mean,
    tol,
)
from tests.losses.test_circle import ref_circle
from tests.losses.test_lifted import ref_euclid, ref_lifted, ref_lifted_structure
from tests.losses.test_multi_similarity import draw_away_from_mining_ties, ref_multi_similarity
from tests.losses.test_soft_nearest_neighbor import ref_snn
from tests.losses.test_supcon import ref_supcon

K = 6  # memory slots


def memory_of(attempt: int = 0):
    """(embeddings [K, SMALL_DIM], labels [K], valid [K]): classes shared with
    the batch, an invalid slot, a class of its own."""
    rng = np.random.default_rng([99, attempt])
    emb = rng.normal(size=(K, SMALL_DIM)).astype(np.float32).astype(np.float64)
    labels = np.array([0, 1, 2, 3, 0, 100], np.int32)
    valid = np.array([True, True, True, False, True, True])
    return emb, labels, valid


def ref_contrastive(pairs: Pairs, pos_margin: float, neg_margin: float) -> float:
    """PML's ContrastiveLoss: each term averaged over its non-zero terms, then added."""
    pos_terms, neg_terms = [], []
    for i, pos, neg in pairs.anchors():
        pos_terms += [max(0.0, ref_euclid(pairs.x[i], pairs.cands[p]) - pos_margin) for p in pos]
        neg_terms += [max(0.0, neg_margin - ref_euclid(pairs.x[i], pairs.cands[n])) for n in neg]
    pos_nonzero = [t for t in pos_terms if t > 0]
    neg_nonzero = [t for t in neg_terms if t > 0]
    return ref_mean(pos_nonzero) + ref_mean(neg_nonzero)


CASES = {
    "contrastive": (ref_contrastive, {"pos_margin": 0.1, "neg_margin": 1.2}),
    "multi_similarity": (
        ref_multi_similarity,
        {"alpha": 2.0, "beta": 10.0, "base": 0.5, "epsilon": 0.1},
    ),
    "circle": (ref_circle, {"m": 0.25, "gamma": 16.0}),
    "supcon": (ref_supcon, {"temperature": 0.5}),
    "generalized_lifted_structure": (ref_lifted, {"pos_margin": 0.1, "neg_margin": 1.0}),
    "lifted_structure": (ref_lifted_structure, {"pos_margin": 0.1, "neg_margin": 1.2}),
    "soft_nearest_neighbor": (ref_snn, {"temperature": 4.0}),
}


@functools.cache
def _jitted(name):
    hyper = CASES[name][1]
    return jax.jit(lambda x, y, m, memory: jm.xbm_loss(x, y, memory, loss=name, mask=m, **hyper))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ("mixed", "masked"))
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference_with_memory_candidates(name, case, dtype):
    reference, hyper = CASES[name]
    x, labels, mask, (emb, mem_labels, valid) = draw_away_from_mining_ties(case, hyper, memory_of)
    expected = reference(Pairs.with_memory(x, labels, mask, (emb, mem_labels, valid)), **hyper)
    # Without the memory the value differs: the memory is really used.
    assert abs(expected - reference(Pairs(x, labels, mask), **hyper)) > 1e-3
    with precision(dtype):
        memory = jm.MemoryQueue(
            embeddings=jnp.asarray(emb, dtype),
            labels=jnp.asarray(mem_labels),
            valid=jnp.asarray(valid),
            pointer=jnp.zeros((), jnp.int32),
        )
        out = _jitted(name)(jnp.asarray(x, dtype), jnp.asarray(labels), jnp.asarray(mask), memory)
    np.testing.assert_allclose(float(out), expected, **tol(dtype))


def test_empty_memory_equals_plain_loss_and_memory_gets_no_gradient():
    x, labels, mask = labelled_batch("masked")
    x, labels, mask = jnp.asarray(x, jnp.float32), jnp.asarray(labels), jnp.asarray(mask)
    empty = jm.init_queue(K, SMALL_DIM)
    plain = {
        "contrastive": jm.contrastive_loss,
        "supcon": jm.supcon_loss,
        "multi_similarity": jm.multi_similarity_loss,
    }

    @jax.jit
    def both(x, labels, mask, empty):
        return {
            name: (fn(x, labels, mask=mask), jm.xbm_loss(x, labels, empty, loss=name, mask=mask))
            for name, fn in plain.items()
        }

    for name, (value, with_memory) in both(x, labels, mask, empty).items():
        np.testing.assert_allclose(float(with_memory), float(value), rtol=1e-6, err_msg=name)
    emb, mem_labels, valid = memory_of()
    memory = jm.MemoryQueue(
        jnp.asarray(emb, jnp.float32),
        jnp.asarray(mem_labels),
        jnp.asarray(valid),
        jnp.zeros((), jnp.int32),
    )
    grad = jax.jit(
        jax.grad(lambda e: jm.xbm_loss(x, labels, memory.replace(embeddings=e), loss="supcon"))
    )(memory.embeddings)
    assert not np.asarray(grad).any()


def test_docstring_examples():
    assert_docstring_examples_pass(jm.xbm_loss)
