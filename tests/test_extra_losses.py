"""The losses beyond the seeds against plain NumPy loop references, plus robustness.

Each reference below is an explicit float64 loop over anchors, positives and
negatives (or rows and classes), written from the paper's formula and the
docstring's conventions, calling nothing from jaxmetric. The JAX code runs in
float64 (``jax.enable_x64``, rtol 1e-5) and in float32 (rtol 1e-4) on the
same float32-representable inputs, on batches with singleton classes (anchors
without a positive), one-class batches (no negative), batches without any
positive pair, and padded rows. The pair references take a candidate set, so
the same loops check the cross-batch memory (XBM): candidates = batch + memory.
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm

B, DIM, C = 10, 6, 4
K = 6  # memory slots for XBM
CASES = ("mixed", "masked", "one_class", "no_positive")
DTYPES = ("float32", "float64")
# Mining compares similarities: draws within _GAP of the miner's boundary are redrawn.
_GAP = 1e-4


def _precision(dtype):
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-9} if dtype == "float64" else {"rtol": 1e-4, "atol": 1e-5}


def _draw(case: str, attempt: int = 0):
    rng = np.random.default_rng([CASES.index(case), attempt, 7])
    mask = np.ones(B, bool)
    if case in ("mixed", "masked"):
        labels = rng.integers(0, C, size=B)
        labels[-2:] = [100, 101]  # singletons: no positive (and no class for proxies)
        if case == "masked":
            mask = rng.random(B) > 0.3
            labels[0] = labels[1] = 3  # row 0's only... one more positive is padding
            mask[0], mask[1] = True, False
    elif case == "one_class":
        labels = np.full(B, 2)
    else:
        labels = rng.permutation(B)
    x = rng.normal(size=(B, DIM))
    x[~mask] *= 10.0  # padding that would move every value if it leaked in
    return x.astype(np.float32).astype(np.float64), labels.astype(np.int32), mask


def _memory(attempt: int = 0):
    rng = np.random.default_rng([99, attempt])
    emb = rng.normal(size=(K, DIM)).astype(np.float32).astype(np.float64)
    labels = np.array([0, 1, 2, 3, 0, 100], np.int32)
    valid = np.array([True, True, True, False, True, True])
    return emb, labels, valid


# ----------------------------------------------------------------------------
# References (float64 NumPy loops).
# ----------------------------------------------------------------------------


def _normalize(v):
    return v / max(np.linalg.norm(v), 1e-12)


def _lse(values):
    values = np.asarray(values, np.float64)
    top = values.max()
    return top + math.log(np.exp(values - top).sum())


class Pairs:
    """Anchors (the valid batch rows) and their positives / negatives among candidates."""

    def __init__(self, x, labels, mask, cands=None, cand_labels=None, cand_valid=None):
        self.x, self.labels, self.mask = x, labels, mask
        if cands is None:
            cands, cand_labels, cand_valid = x, labels, mask
        self.cands, self.cand_labels, self.cand_valid = cands, cand_labels, cand_valid

    def anchors(self):
        for i in range(len(self.x)):
            if not self.mask[i]:
                continue
            pos, neg = [], []
            for j in range(len(self.cands)):
                if not self.cand_valid[j]:
                    continue
                if self.cand_labels[j] == self.labels[i]:
                    if j != i:
                        pos.append(j)
                else:
                    neg.append(j)
            yield i, pos, neg


def _cos(a, b):
    return float(_normalize(a) @ _normalize(b))


def _mean(losses):
    return float(np.mean(losses)) if losses else 0.0


def ref_supcon(pairs, temperature):
    losses = []
    for i, pos, neg in pairs.anchors():
        if not pos:
            continue
        s = {j: _cos(pairs.x[i], pairs.cands[j]) / temperature for j in pos + neg}
        denominator = _lse([s[j] for j in pos + neg])
        losses.append(-np.mean([s[p] - denominator for p in pos]))
    return _mean(losses)


def ref_multi_similarity(pairs, alpha, beta, base, epsilon, gaps=None):
    losses = []
    for i, pos, neg in pairs.anchors():
        s = {j: _cos(pairs.x[i], pairs.cands[j]) for j in pos + neg}
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
    return _mean(losses)


def ref_circle(pairs, m, gamma):
    losses = []
    for i, pos, neg in pairs.anchors():
        if not pos or not neg:
            continue
        pos_logits, neg_logits = [], []
        for p in pos:
            s = _cos(pairs.x[i], pairs.cands[p])
            pos_logits.append(-gamma * max(0.0, 1 + m - s) * (s - (1 - m)))
        for n in neg:
            s = _cos(pairs.x[i], pairs.cands[n])
            neg_logits.append(gamma * max(0.0, s + m) * (s - m))
        losses.append(np.logaddexp(0.0, _lse(pos_logits) + _lse(neg_logits)))
    return _mean(losses)


def _euclid(a, b):
    return float(np.linalg.norm(_normalize(a) - _normalize(b)))


def ref_lifted(pairs, pos_margin, neg_margin):
    losses = []
    for i, pos, neg in pairs.anchors():
        if not pos or not neg:
            continue
        pos_lse = _lse([_euclid(pairs.x[i], pairs.cands[p]) - pos_margin for p in pos])
        neg_lse = _lse([neg_margin - _euclid(pairs.x[i], pairs.cands[n]) for n in neg])
        losses.append(max(0.0, pos_lse + neg_lse))
    return _mean(losses)


def ref_snn(pairs, temperature):
    losses = []
    for i, pos, neg in pairs.anchors():
        if not pos:
            continue
        logit = {j: -np.sum((pairs.x[i] - pairs.cands[j]) ** 2) / temperature for j in pos + neg}
        losses.append(_lse([logit[j] for j in pos + neg]) - _lse([logit[p] for p in pos]))
    return _mean(losses)


def ref_contrastive(pairs, pos_margin, neg_margin):
    pos_terms, neg_terms = [], []
    for i, pos, neg in pairs.anchors():
        pos_terms += [max(0.0, _euclid(pairs.x[i], pairs.cands[p]) - pos_margin) for p in pos]
        neg_terms += [max(0.0, neg_margin - _euclid(pairs.x[i], pairs.cands[n])) for n in neg]
    pos_nonzero = [t for t in pos_terms if t > 0]
    neg_nonzero = [t for t in neg_terms if t > 0]
    return _mean(pos_nonzero) + _mean(neg_nonzero)


def ref_proxy_anchor(x, labels, mask, proxies, margin, alpha):
    rows = [i for i in range(len(x)) if mask[i] and 0 <= labels[i] < len(proxies)]
    pos_terms, neg_total = [], 0.0
    for c in range(len(proxies)):
        s = {i: _cos(x[i], proxies[c]) for i in rows}
        pos = [i for i in rows if labels[i] == c]
        neg = [i for i in rows if labels[i] != c]
        if pos:
            pos_terms.append(math.log(1 + sum(math.exp(-alpha * (s[i] - margin)) for i in pos)))
        neg_total += math.log(1 + sum(math.exp(alpha * (s[i] + margin)) for i in neg))
    return _mean(pos_terms) + neg_total / len(proxies)


def _softmax_ce(logits, target):
    return _lse(logits) - logits[target]


def ref_proxy_nca(x, labels, mask, proxies, temperature):
    losses = []
    for i in range(len(x)):
        if mask[i] and 0 <= labels[i] < len(proxies):
            logits = [
                -np.sum((_normalize(x[i]) - _normalize(p)) ** 2) / temperature for p in proxies
            ]
            losses.append(_softmax_ce(logits, labels[i]))
    return _mean(losses)


def ref_arcface(x, labels, mask, weights, margin, scale, easy_margin):
    losses = []
    for i in range(len(x)):
        if not (mask[i] and 0 <= labels[i] < len(weights)):
            continue
        logits = []
        for c, w in enumerate(weights):
            cos = min(1.0, max(-1.0, _cos(x[i], w)))
            if c == labels[i]:
                theta = math.acos(cos)
                if easy_margin:
                    cos = math.cos(theta + margin) if cos > 0 else cos
                elif theta <= math.pi - margin:
                    cos = math.cos(theta + margin)
                else:
                    cos = cos - margin * math.sin(margin)
            logits.append(scale * cos)
        losses.append(_softmax_ce(logits, labels[i]))
    return _mean(losses)


def ref_cosface(x, labels, mask, weights, margin, scale):
    losses = []
    for i in range(len(x)):
        if mask[i] and 0 <= labels[i] < len(weights):
            logits = [
                scale * (_cos(x[i], w) - (margin if c == labels[i] else 0.0))
                for c, w in enumerate(weights)
            ]
            losses.append(_softmax_ce(logits, labels[i]))
    return _mean(losses)


# ----------------------------------------------------------------------------
# The cases: (jax fn(x, labels, mask, extra), reference(x, labels, mask, extra)).
# ----------------------------------------------------------------------------

PAIR_CASES = {
    "supcon": (
        functools.partial(jm.supcon_loss, temperature=0.5),
        ref_supcon,
        {"temperature": 0.5},
    ),
    "supcon_low_t": (
        functools.partial(jm.supcon_loss, temperature=0.05),
        ref_supcon,
        {"temperature": 0.05},
    ),
    "multi_similarity": (
        jm.multi_similarity_loss,
        ref_multi_similarity,
        {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1},
    ),
    "multi_similarity_nomine": (
        functools.partial(jm.multi_similarity_loss, alpha=1.5, beta=20.0, base=0.3, epsilon=None),
        ref_multi_similarity,
        {"alpha": 1.5, "beta": 20.0, "base": 0.3, "epsilon": None},
    ),
    "circle": (jm.circle_loss, ref_circle, {"m": 0.4, "gamma": 80.0}),
    "circle_faces": (
        functools.partial(jm.circle_loss, m=0.25, gamma=16.0),
        ref_circle,
        {"m": 0.25, "gamma": 16.0},
    ),
    "lifted": (jm.lifted_structure_loss, ref_lifted, {"pos_margin": 0.0, "neg_margin": 1.0}),
    "lifted_margins": (
        functools.partial(jm.lifted_structure_loss, pos_margin=0.2, neg_margin=0.8),
        ref_lifted,
        {"pos_margin": 0.2, "neg_margin": 0.8},
    ),
    "snn": (
        functools.partial(jm.soft_nearest_neighbor_loss, temperature=4.0),
        ref_snn,
        {"temperature": 4.0},
    ),
}
XBM_CASES = {
    "contrastive": (ref_contrastive, {"pos_margin": 0.1, "neg_margin": 1.2}),
    "multi_similarity": (
        ref_multi_similarity,
        {"alpha": 2.0, "beta": 10.0, "base": 0.5, "epsilon": 0.1},
    ),
    "circle": (ref_circle, {"m": 0.25, "gamma": 16.0}),
    "supcon": (ref_supcon, {"temperature": 0.5}),
    "lifted_structure": (ref_lifted, {"pos_margin": 0.1, "neg_margin": 1.0}),
    "soft_nearest_neighbor": (ref_snn, {"temperature": 4.0}),
}


@functools.cache
def _jitted_pair(name):
    fn = PAIR_CASES[name][0]
    return jax.jit(lambda x, y, m: fn(x, y, mask=m))


@functools.cache
def _jitted_xbm(name):
    hyper = XBM_CASES[name][1]
    return jax.jit(lambda x, y, m, memory: jm.xbm_loss(x, y, memory, loss=name, mask=m, **hyper))


def _draw_mined(case, hyper, memory=False):
    """A draw (and memory) whose multi-similarity mining is not within _GAP of a tie."""
    for attempt in range(20):
        x, labels, mask = _draw(case, attempt)
        mem = _memory(attempt) if memory else None
        if hyper.get("epsilon") is None:
            return x, labels, mask, mem
        gaps = []
        ref_multi_similarity(_pairs(x, labels, mask, mem), **hyper, gaps=gaps)
        if not gaps or min(gaps) > _GAP:
            return x, labels, mask, mem
    raise AssertionError("no draw away from the mining boundary")


def _pairs(x, labels, mask, mem):
    if mem is None:
        return Pairs(x, labels, mask)
    emb, mem_labels, valid = mem
    return Pairs(
        x,
        labels,
        mask,
        np.concatenate([x, emb]),
        np.concatenate([labels, mem_labels]),
        np.concatenate([mask, valid]),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", sorted(PAIR_CASES))
def test_pair_losses_match_reference(name, case, dtype):
    _, reference, hyper = PAIR_CASES[name]
    x, labels, mask, _ = _draw_mined(case, hyper)
    expected = reference(Pairs(x, labels, mask), **hyper)
    with _precision(dtype):
        out = _jitted_pair(name)(jnp.asarray(x, dtype), jnp.asarray(labels), jnp.asarray(mask))
        assert out.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(float(out), expected, **_tol(dtype))
    if (name, case) in _ZERO or (case == "no_positive" and name != "multi_similarity_nomine"):
        assert expected == 0.0 and float(out) == 0.0


# One-class batches: nothing counts where an anchor needs a negative (or the
# miner needs one to keep a positive).
_ZERO = {(name, "one_class") for name in PAIR_CASES if name.startswith(("circle", "lifted"))}
_ZERO.add(("multi_similarity", "one_class"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ("mixed", "masked"))
@pytest.mark.parametrize("name", sorted(XBM_CASES))
def test_xbm_matches_reference_with_memory_candidates(name, case, dtype):
    reference, hyper = XBM_CASES[name]
    x, labels, mask, (emb, mem_labels, valid) = _draw_mined(case, hyper, memory=True)
    expected = reference(_pairs(x, labels, mask, (emb, mem_labels, valid)), **hyper)
    # Without the memory the value differs: the memory is really used.
    assert abs(expected - reference(Pairs(x, labels, mask), **hyper)) > 1e-3
    with _precision(dtype):
        memory = jm.MemoryQueue(
            embeddings=jnp.asarray(emb, dtype),
            labels=jnp.asarray(mem_labels),
            valid=jnp.asarray(valid),
            pointer=jnp.zeros((), jnp.int32),
        )
        out = _jitted_xbm(name)(
            jnp.asarray(x, dtype), jnp.asarray(labels), jnp.asarray(mask), memory
        )
    np.testing.assert_allclose(float(out), expected, **_tol(dtype))


def test_xbm_empty_memory_equals_plain_loss_and_memory_gets_no_gradient():
    x, labels, mask = _draw("masked")
    x, labels, mask = jnp.asarray(x, jnp.float32), jnp.asarray(labels), jnp.asarray(mask)
    empty = jm.init_queue(K, DIM)
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
    emb, mem_labels, valid = _memory()
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


@functools.cache
def _jitted_class(name):
    return jax.jit(CLASS_CASES[name][0])


CLASS_CASES = {
    "proxy_anchor": (
        lambda x, y, m, w: jm.proxy_anchor_loss(x, y, w, mask=m),
        lambda x, y, m, w: ref_proxy_anchor(x, y, m, w, 0.1, 32.0),
    ),
    "proxy_anchor_small_alpha": (
        lambda x, y, m, w: jm.proxy_anchor_loss(x, y, w, margin=0.2, alpha=4.0, mask=m),
        lambda x, y, m, w: ref_proxy_anchor(x, y, m, w, 0.2, 4.0),
    ),
    "proxy_nca": (
        lambda x, y, m, w: jm.proxy_nca_loss(x, y, w, temperature=1 / 9, mask=m),
        lambda x, y, m, w: ref_proxy_nca(x, y, m, w, 1 / 9),
    ),
    "arcface": (
        lambda x, y, m, w: jm.arcface_loss(x, y, w, mask=m),
        lambda x, y, m, w: ref_arcface(x, y, m, w, 0.5, 64.0, False),
    ),
    "arcface_big_margin": (
        # With m = 1.4 rad many targets pass theta > pi - m: the fallback branch.
        lambda x, y, m, w: jm.arcface_loss(x, y, w, margin=1.4, scale=8.0, mask=m),
        lambda x, y, m, w: ref_arcface(x, y, m, w, 1.4, 8.0, False),
    ),
    "arcface_easy": (
        lambda x, y, m, w: jm.arcface_loss(
            x, y, w, margin=0.3, scale=16.0, easy_margin=True, mask=m
        ),
        lambda x, y, m, w: ref_arcface(x, y, m, w, 0.3, 16.0, True),
    ),
    "cosface": (
        lambda x, y, m, w: jm.cosface_loss(x, y, w, mask=m),
        lambda x, y, m, w: ref_cosface(x, y, m, w, 0.35, 64.0),
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ("mixed", "masked", "one_class"))
@pytest.mark.parametrize("name", sorted(CLASS_CASES))
def test_class_losses_match_reference(name, case, dtype):
    x, labels, mask = _draw(case)
    labels = np.where(labels < 100, labels % C, labels).astype(np.int32)
    weights = np.random.default_rng(5).normal(size=(C, DIM)).astype(np.float32)
    weights = weights.astype(np.float64)
    if name == "arcface_big_margin":
        weights[:] = -x[:C]  # targets far from their weights: theta near pi
        labels = np.where(labels < 100, np.arange(B) % C, labels).astype(np.int32)
    expected = CLASS_CASES[name][1](x, labels, mask, weights)
    if name == "arcface_big_margin":
        thetas = [
            math.acos(max(-1.0, min(1.0, _cos(x[i], weights[labels[i]]))))
            for i in range(B)
            if labels[i] < 100
        ]
        assert max(thetas) > math.pi - 1.4
    with _precision(dtype):
        out = _jitted_class(name)(
            jnp.asarray(x, dtype),
            jnp.asarray(labels),
            jnp.asarray(mask),
            jnp.asarray(weights, dtype),
        )
        assert out.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(float(out), expected, **_tol(dtype))


def test_multi_similarity_mask_matches_loop():
    x, labels, mask = _draw("masked")
    x64 = np.asarray(x)
    sim = np.array([[_cos(a, b) for b in x64] for a in x64])
    pos, neg = jm.mining.pair_masks(jnp.asarray(labels), mask=jnp.asarray(mask))
    mined_pos, mined_neg = jm.mining.multi_similarity_mask(
        jnp.asarray(sim, jnp.float32), pos, neg, epsilon=0.1
    )
    for i, p_list, n_list in Pairs(x, labels, mask).anchors():
        hardest_neg = max((sim[i, n] for n in n_list), default=-np.inf)
        hardest_pos = min((sim[i, p] for p in p_list), default=np.inf)
        for j in range(B):
            assert bool(mined_pos[i, j]) == (j in p_list and sim[i, j] - 0.1 < hardest_neg)
            assert bool(mined_neg[i, j]) == (j in n_list and sim[i, j] + 0.1 > hardest_pos)
    assert np.asarray(mined_pos).any() and np.asarray(mined_neg).any()
    # Mining selects strictly fewer pairs than there are here.
    assert np.asarray(mined_neg).sum() < np.asarray(neg).sum()


# ----------------------------------------------------------------------------
# Robustness: no NaN / Inf, zero loss and zero gradient when nothing counts.
# ----------------------------------------------------------------------------

_W = jax.random.normal(jax.random.key(3), (C, DIM))
_MEMORY = jm.MemoryQueue(
    embeddings=jax.random.normal(jax.random.key(4), (K, DIM)),
    labels=jnp.array([0, 1, 2, 3, 0, 100], jnp.int32),
    valid=jnp.ones(K, bool),
    pointer=jnp.zeros((), jnp.int32),
)
ROBUST = {
    "supcon": lambda e, y, m, w: jm.supcon_loss(e, y, mask=m, temperature=0.01),
    "multi_similarity": lambda e, y, m, w: jm.multi_similarity_loss(e, y, mask=m),
    "multi_similarity_nomine": lambda e, y, m, w: jm.multi_similarity_loss(
        e, y, mask=m, epsilon=None
    ),
    "circle": lambda e, y, m, w: jm.circle_loss(e, y, mask=m),
    "lifted": lambda e, y, m, w: jm.lifted_structure_loss(e, y, mask=m),
    "snn": lambda e, y, m, w: jm.soft_nearest_neighbor_loss(e, y, mask=m, temperature=0.01),
    "proxy_anchor": lambda e, y, m, w: jm.proxy_anchor_loss(e, y, w, mask=m, alpha=200.0),
    "proxy_nca": lambda e, y, m, w: jm.proxy_nca_loss(e, y, w, mask=m, temperature=0.01),
    "arcface": lambda e, y, m, w: jm.arcface_loss(e, y, w, mask=m),
    "cosface": lambda e, y, m, w: jm.cosface_loss(e, y, w, mask=m),
    "xbm_ms": lambda e, y, m, w: jm.xbm_loss(e, y, _MEMORY, loss="multi_similarity", mask=m),
}


@functools.cache
def _robust(name):
    return jax.jit(jax.value_and_grad(ROBUST[name], argnums=(0, 3)))


def _finite(value, grads):
    assert np.isfinite(np.asarray(value, np.float32)).all(), value
    for g in grads:
        assert np.isfinite(np.asarray(g, np.float32)).all()


@pytest.mark.parametrize("name", sorted(ROBUST))
def test_robust_no_nan(name):
    fn = _robust(name)
    y = jnp.arange(B) % C
    ones = jnp.ones(B, bool)
    rand = jax.random.normal(jax.random.key(0), (B, DIM))
    inputs = {
        "identical": jnp.ones((B, DIM)),
        "zeros": jnp.zeros((B, DIM)),
        "huge": 1e4 * rand,
        "half_zero": rand.at[::2].set(0.0),
        "on_weights": jnp.tile(_W, (3, 1))[:B],  # cos exactly 1 with the targets
        "opposite_weights": -jnp.tile(_W, (3, 1))[:B],  # cos exactly -1
    }
    for label_case, labels in {
        "mixed": y,
        "distinct": jnp.arange(B),
        "equal": jnp.zeros(B, jnp.int32),
    }.items():
        for what, emb in inputs.items():
            value, grads = fn(emb, labels, ones, _W)
            _finite(value, grads), (label_case, what)
    for dtype in (jnp.bfloat16, jnp.float16):
        value, grads = fn(rand.astype(dtype), y, ones, _W.astype(dtype))
        assert value.dtype == jnp.float32
        _finite(value, grads)
        np.testing.assert_allclose(
            float(value), float(fn(rand, y, ones, _W)[0]), rtol=0.1, atol=0.05
        )


@pytest.mark.parametrize("name", sorted(ROBUST))
def test_nothing_valid_gives_zero_and_zero_gradient(name):
    fn = _robust(name)
    rand = jax.random.normal(jax.random.key(1), (B, DIM))
    value, grads = fn(rand, jnp.arange(B) % C, jnp.zeros(B, bool), _W)
    assert float(value) == 0.0
    for g in grads:
        assert not np.asarray(g).any()
    if name.startswith(("proxy", "arc", "cos")):
        return
    # No positive pair at all (all labels distinct; for XBM, also absent from memory).
    value, grads = fn(rand, jnp.arange(B) + 200, jnp.ones(B, bool), _W)
    if name.startswith("multi_similarity") or name == "xbm_ms":
        return  # negatives alone still cost something (by the formula)
    assert float(value) == 0.0
    for g in grads:
        assert not np.asarray(g).any()


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------

EMB = jnp.ones((6, 4))
LABELS = jnp.array([0, 0, 1, 1, 2, 2])
W4 = jnp.ones((3, 4))
ALL = {
    "supcon_loss": lambda e, y, **k: jm.supcon_loss(e, y, **k),
    "multi_similarity_loss": lambda e, y, **k: jm.multi_similarity_loss(e, y, **k),
    "circle_loss": lambda e, y, **k: jm.circle_loss(e, y, **k),
    "lifted_structure_loss": lambda e, y, **k: jm.lifted_structure_loss(e, y, **k),
    "soft_nearest_neighbor_loss": lambda e, y, **k: jm.soft_nearest_neighbor_loss(e, y, **k),
    "proxy_anchor_loss": lambda e, y, **k: jm.proxy_anchor_loss(e, y, W4, **k),
    "proxy_nca_loss": lambda e, y, **k: jm.proxy_nca_loss(e, y, W4, **k),
    "arcface_loss": lambda e, y, **k: jm.arcface_loss(e, y, W4, **k),
    "cosface_loss": lambda e, y, **k: jm.cosface_loss(e, y, W4, **k),
    "xbm_loss": lambda e, y, **k: jm.xbm_loss(e, y, jm.init_queue(4, 4), **k),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_bad_shapes(name):
    loss = ALL[name]
    with pytest.raises(ValueError, match="`embeddings` must be 2-D"):
        loss(jnp.ones((6,)), LABELS)
    with pytest.raises(ValueError, match="`labels` has length 5"):
        loss(EMB, LABELS[:5])
    with pytest.raises(ValueError, match="`labels` must be integers"):
        loss(EMB, LABELS.astype(jnp.float32))
    with pytest.raises(ValueError, match="`embeddings` must be a floating"):
        loss(EMB.astype(jnp.int32), LABELS)
    with pytest.raises(ValueError, match=r"`mask` must have shape \(6,\)"):
        loss(EMB, LABELS, mask=jnp.ones(5, bool))
    with pytest.raises(ValueError, match="`labels` has length 5"):
        jax.jit(loss)(EMB, LABELS[:5])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: jm.supcon_loss(EMB, LABELS, temperature=0.0), "`temperature` must be > 0"),
        (lambda: jm.soft_nearest_neighbor_loss(EMB, LABELS, temperature=-1.0), "`temperature`"),
        (lambda: jm.proxy_nca_loss(EMB, LABELS, W4, temperature=0.0), "`temperature`"),
        (lambda: jm.multi_similarity_loss(EMB, LABELS, alpha=0.0), "`alpha` must be > 0"),
        (lambda: jm.multi_similarity_loss(EMB, LABELS, beta=-1.0), "`beta` must be > 0"),
        (lambda: jm.multi_similarity_loss(EMB, LABELS, epsilon=-0.1), "`epsilon` must be >= 0"),
        (lambda: jm.circle_loss(EMB, LABELS, gamma=0.0), "`gamma` must be > 0"),
        (lambda: jm.circle_loss(EMB, LABELS, m=-0.1), "`m` must be >= 0"),
        (lambda: jm.lifted_structure_loss(EMB, LABELS, neg_margin=-1.0), "`neg_margin`"),
        (lambda: jm.proxy_anchor_loss(EMB, LABELS, W4, alpha=0.0), "`alpha` must be > 0"),
        (lambda: jm.proxy_anchor_loss(EMB, LABELS, W4, margin=-0.1), "`margin` must be >= 0"),
        (lambda: jm.proxy_anchor_loss(EMB, LABELS, jnp.ones((3, 5))), r"`proxies` must have"),
        (lambda: jm.proxy_nca_loss(EMB, LABELS, jnp.ones((3,))), r"`proxies` must be 2-D"),
        (lambda: jm.arcface_loss(EMB, LABELS, jnp.ones((3, 2))), r"`weights` must have"),
        (lambda: jm.arcface_loss(EMB, LABELS, W4, margin=2.0), r"`margin` is in radians"),
        (lambda: jm.arcface_loss(EMB, LABELS, W4, scale=0.0), r"`scale` must be > 0"),
        (lambda: jm.cosface_loss(EMB, LABELS, W4, margin=-0.1), r"`margin` must be >= 0"),
        (lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 4), loss="npair"), "Unknown `loss`"),
        (
            lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 4), loss="supcon", margin=1.0),
            "Unknown hyper-parameter `margin`",
        ),
        (
            lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 4), loss="supcon", temperature=0.0),
            "`temperature` must be > 0",
        ),
        (lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 3)), "`memory.embeddings` has"),
        (
            lambda: jm.mining.multi_similarity_mask(EMB, EMB > 0, EMB > 0, epsilon=-1.0),
            "`epsilon` must be >= 0",
        ),
    ],
)
def test_bad_hyper_parameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_docstring_examples_run():
    import doctest

    from jaxmetric.losses import (
        circle,
        lifted,
        margin_softmax,
        multi_similarity,
        proxy,
        soft_nearest_neighbor,
        supcon,
        xbm,
    )

    modules = [circle, lifted, margin_softmax, multi_similarity, proxy, soft_nearest_neighbor]
    for module in [*modules, supcon, xbm]:
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, module.__name__
