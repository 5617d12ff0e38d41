"""Shared test harnesses: sharded == single device, data builders, NumPy helpers.

Four parts, each used by several test modules:

- "Sharded == single device" (``assert_sharded_equals_single``): a loss of a
  small model's outputs, called with ``axis_name="data"`` on the local shard
  under ``jax.shard_map`` or ``jax.pmap`` on the 8 simulated CPU devices of
  tests/conftest.py, must give on every device the single-device value of
  the concatenated batch, and the gradient reaching the replicated
  parameters must equal the single-device gradient (under shard_map with no
  collective on the gradient, under pmap after the usual ``pmean``).
- Data builders: the labelled batches of the reference tests (singleton
  classes, one-class batches, batches without a positive pair, padded rows),
  two-view batches, the replicated model and batch of the sharded harness.
- NumPy helpers of the reference tests: precision and tolerances, float64
  loop references of distances, label masks and miners, reductions.
- Hypothesis: the random batches of the property tests of the losses and
  of the miners.

Everything here calls only the public API of jaxmetric.
"""

from __future__ import annotations

import contextlib
import doctest
import functools
import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from jax.sharding import PartitionSpec as P

import jaxmetric as jm

# ----------------------------------------------------------------------------
# Sharded == single device.
# ----------------------------------------------------------------------------

NUM_DEVICES = 8
LOCAL = 4
GLOBAL = NUM_DEVICES * LOCAL
IN_DIM, EMB_DIM = 6, 5
# Classes of two: row i and row i + GLOBAL / 2 live on different devices, so
# every positive of an anchor sits on another device.
NUM_CLASSES = GLOBAL // 2
MEMORY = 16  # rows of the replicated queue / memory
ATOL = 1e-5
MAPPERS = ("shard_map", "pmap")


def mesh() -> jax.sharding.Mesh:
    """The one-axis ("data") mesh over the 8 simulated devices."""
    return jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def split(a):
    """[GLOBAL, ...] -> [NUM_DEVICES, GLOBAL / NUM_DEVICES, ...] (the pmap layout)."""
    return a.reshape(NUM_DEVICES, -1, *a.shape[1:])


def embed(params: dict, x: jax.Array) -> jax.Array:
    """A small model: one dense layer, tanh, a second dense layer."""
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


def sharded_data(seed: int, masked: bool):
    """(params, batch, replicated) of the sharded harness.

    params (replicated, differentiated): the model (w1, w2), a second branch
    w3 for the second view, class weights / proxies [NUM_CLASSES, EMB_DIM].
    batch (split over the devices): x [GLOBAL, 2, IN_DIM] (two correlated
    views of each example), labels [GLOBAL] (classes of two, on different
    devices), mask [GLOBAL] (5 padded rows when ``masked``).
    replicated (not differentiated): a queue [MEMORY, EMB_DIM] of raw
    embeddings, and the inputs, labels and validity of a memory that the
    case passes through the model.
    """
    rng = np.random.default_rng(seed)
    params = {
        "w1": jnp.asarray(rng.normal(size=(IN_DIM, 8)) / np.sqrt(IN_DIM), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(8, EMB_DIM)) / np.sqrt(8), jnp.float32),
        "w3": jnp.asarray(np.eye(EMB_DIM) + 0.3 * rng.normal(size=(EMB_DIM, EMB_DIM)), jnp.float32),
        "classes": jnp.asarray(rng.normal(size=(NUM_CLASSES, EMB_DIM)), jnp.float32),
    }
    x1 = rng.normal(size=(GLOBAL, IN_DIM))
    x2 = x1 + 0.3 * rng.normal(size=x1.shape)
    mask = np.ones(GLOBAL, bool)
    if masked:
        mask[rng.choice(GLOBAL, size=5, replace=False)] = False
    batch = {
        "x": jnp.asarray(np.stack([x1, x2], axis=1), jnp.float32),
        "labels": jnp.asarray(np.arange(GLOBAL) % NUM_CLASSES, jnp.int32),
        "mask": jnp.asarray(mask),
    }
    replicated = {
        "queue": jnp.asarray(rng.normal(size=(MEMORY, EMB_DIM)), jnp.float32),
        "memory_x": jnp.asarray(rng.normal(size=(MEMORY, IN_DIM)), jnp.float32),
        "memory_labels": jnp.asarray(rng.integers(0, NUM_CLASSES, size=MEMORY), jnp.int32),
        "memory_valid": jnp.asarray(rng.random(MEMORY) > 0.25),
    }
    return params, batch, replicated


# A model loss: fn(params, batch, replicated, axis_name) -> scalar.
ModelLoss = Callable[[dict, dict, dict, "str | None"], jax.Array]


@functools.cache
def _single(fn: ModelLoss):
    return jax.jit(jax.value_and_grad(lambda p, b, r: fn(p, b, r, None)))


@functools.cache
def _mapped(fn: ModelLoss, mapper: str):
    if mapper == "shard_map":

        def step(p, b, r):
            value, grads = jax.value_and_grad(lambda p: fn(p, b, r, "data"))(p)
            # No collective on the gradient: shard_map (check_vma=True) has
            # already summed the contributions of all devices.
            return value[None], jax.tree.map(lambda a: a[None], grads)

        return jax.jit(
            jax.shard_map(
                step,
                mesh=mesh(),
                in_specs=(P(), P("data"), P()),
                out_specs=(P("data"), P("data")),
            )
        )
    if mapper == "pmap":

        def step(p, b, r):
            value, grads = jax.value_and_grad(lambda p: fn(p, b, r, "data"))(p)
            return value, jax.lax.pmean(grads, "data")

        pmapped = jax.pmap(step, axis_name="data", in_axes=(None, 0, None))
        return lambda p, b, r: pmapped(p, jax.tree.map(split, b), r)
    raise ValueError(mapper)


def assert_sharded_equals_single(
    fn: ModelLoss,
    data,
    mapper: str,
    *,
    nonzero_grads=("w1", "w2"),
    positive_value: bool = True,
    rtol: float = 0.0,
) -> None:
    """The value and the parameter gradient of ``fn`` under ``mapper`` == one device.

    Args:
      fn: fn(params, batch, replicated, axis_name) -> scalar loss; compiled
        once per (fn, mapper), so pass a module-level function.
      data: (params, batch, replicated), e.g. from ``sharded_data``.
      mapper: "shard_map" or "pmap".
      nonzero_grads: parameters whose single-device gradient must not be
        trivially zero (a case that could not fail would be useless).
      positive_value: the single-device value must be > 0 (else only != 0).
      rtol: relative tolerance of the gradient comparison (atol is ATOL).
    """
    assert len(jax.devices()) == NUM_DEVICES
    params, batch, replicated = data
    value, grads = _single(fn)(params, batch, replicated)
    if positive_value:
        assert float(value) > 0
    else:
        assert float(value) != 0
    values, sharded_grads = _mapped(fn, mapper)(params, batch, replicated)
    np.testing.assert_allclose(
        np.asarray(values), np.full(NUM_DEVICES, value), rtol=1e-5, atol=ATOL, err_msg=mapper
    )
    for name in grads:
        expected = np.broadcast_to(np.asarray(grads[name]), sharded_grads[name].shape)
        if name in nonzero_grads:
            assert np.abs(expected).max() > 1e-4, name
        np.testing.assert_allclose(
            np.asarray(sharded_grads[name]),
            expected,
            rtol=rtol,
            atol=ATOL,
            err_msg=f"{mapper} {name}",
        )


def planted_hard_negatives(seed: int = 0):
    """Embeddings [GLOBAL, EMB_DIM] and labels whose hardest negatives live elsewhere.

    Each anchor's most similar negative is planted in the same local slot of
    the next device: a per-device (ungathered) miner would see another one.
    """
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(GLOBAL, EMB_DIM))
    labels = np.arange(GLOBAL) % NUM_CLASSES
    emb = base.copy()
    for i in range(GLOBAL):
        j = (i + LOCAL) % GLOBAL  # Same local slot, next device.
        if labels[j] != labels[i]:
            emb[j] = base[i] + 0.05 * rng.normal(size=EMB_DIM)
    return jnp.asarray(emb, jnp.float32), jnp.asarray(labels, jnp.int32)


# ----------------------------------------------------------------------------
# Precision, tolerances, running a function in float32 or float64.
# ----------------------------------------------------------------------------

DTYPES = ("float32", "float64")


def precision(dtype: str):
    """x64 on for float64 (a context manager), nothing for float32."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def tol(dtype: str) -> dict:
    """rtol 1e-5 in float64, rtol 1e-4 / atol 1e-5 in float32."""
    if dtype == "float64":
        return {"rtol": 1e-5, "atol": 1e-9}
    return {"rtol": 1e-4, "atol": 1e-5}


def run(dtype: str, fn, *arrays, **kwargs) -> np.ndarray:
    """Calls ``fn`` on the float ``arrays`` cast to ``dtype``, x64 on for float64."""
    with precision(dtype):
        args = [jnp.asarray(np.asarray(a, dtype=dtype)) for a in arrays]
        kwargs = {
            k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()
        }
        out = fn(*args, **kwargs)
        if dtype == "float64":
            assert out.dtype == jnp.float64, f"computed in {out.dtype}, not float64"
        return np.asarray(out, dtype=np.float64)


def as_float32_values(a: np.ndarray) -> np.ndarray:
    """float64 values that float32 represents exactly: both precisions see them."""
    return np.asarray(a).astype(np.float32).astype(np.float64)


def assert_docstring_examples_pass(*fns) -> None:
    """Runs the examples in the docstrings of the public functions ``fns``."""
    finder = doctest.DocTestFinder()
    for fn in fns:
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        for test in finder.find(fn, fn.__name__):
            runner.run(test)
        result = runner.summarize(verbose=False)
        assert result.failed == 0 and result.attempted > 0, fn.__name__


# ----------------------------------------------------------------------------
# Labelled batches of the reference tests.
# ----------------------------------------------------------------------------

DIM = 8
# (batch size, label/mask case)
SCENARIOS = (
    (6, "mixed"),
    (13, "mixed"),
    (32, "mixed"),
    (13, "masked"),
    (32, "masked"),
    (6, "one_class"),
    (6, "no_positive"),
    (13, "masked_one_class"),
)
SCENARIO_IDS = [f"B{b}-{case}" for b, case in SCENARIOS]
# Every case, at sizes 6 and 13 only (for the losses with the most XLA ops).
SMALL_SCENARIOS = tuple((b, case) for b, case in SCENARIOS if b < 32)
SMALL_SCENARIO_IDS = [f"B{b}-{case}" for b, case in SMALL_SCENARIOS]
SCENARIO_CASES = tuple(sorted({case for _, case in SCENARIOS}))
# Smallest distance from a decision boundary a draw may have: mining compares
# distances, so a float32 rounding error could flip a comparison that float64
# decides the other way. Draws within _GAP of a boundary are redrawn.
GAP = 2e-5


def _labels_and_mask(rng: np.random.Generator, batch: int, case: str):
    mask = None
    if case in ("mixed", "masked"):
        labels = rng.integers(0, max(2, batch // 3), size=batch)
        labels[-2:] = [100, 101]  # singleton classes: anchors without a positive
        if case == "masked":
            mask = rng.random(batch) > 0.3
            # Row 0's only positive is padding, so the mask takes its positive away.
            labels[0] = labels[1] = 200
            mask[0], mask[1] = True, False
            labels[2] = labels[3] = 201
            mask[2] = mask[3] = True
    elif case == "one_class":  # no anchor has a negative
        labels = np.full(batch, 7)
    elif case == "no_positive":  # no anchor has a positive
        labels = rng.permutation(batch)
    elif case == "masked_one_class":
        # The only other class sits on padded rows: no valid anchor has a negative.
        mask = rng.random(batch) > 0.3
        mask[:2], mask[2] = True, False
        labels = np.where(mask, 3, 4)
    else:
        raise ValueError(case)
    return labels.astype(np.int32), mask


def scenario_batch(batch: int, case: str, attempt: int, seed: int = 0):
    """(x [batch, DIM] float64, labels [batch] int32, mask [batch] bool or None)."""
    rng = np.random.default_rng([seed, batch, SCENARIO_CASES.index(case), attempt])
    labels, mask = _labels_and_mask(rng, batch, case)
    x = rng.normal(size=(batch, DIM))
    if mask is not None:
        x[~mask] *= 10.0  # padding that would move every value if it leaked in
    return as_float32_values(x), labels, mask


def plain_batch(batch: int, case: str, attempt: int = 0):
    """A scenario batch of the second seed (no boundary condition)."""
    return scenario_batch(batch, case, attempt, seed=1)


def valid_rows(mask, batch: int) -> np.ndarray:
    return np.ones(batch, bool) if mask is None else np.asarray(mask, bool)


# The batches of the losses beyond the seeds: B rows, C classes.
B, SMALL_DIM, C = 10, 6, 4
LABELLED_CASES = ("mixed", "masked", "one_class", "no_positive")


def labelled_batch(case: str, attempt: int = 0):
    """(x [B, SMALL_DIM] float64, labels [B] int32, mask [B] bool): singletons,
    padding, one-class and no-positive batches."""
    rng = np.random.default_rng([LABELLED_CASES.index(case), attempt, 7])
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
    x = rng.normal(size=(B, SMALL_DIM))
    x[~mask] *= 10.0  # padding that would move every value if it leaked in
    return as_float32_values(x), labels.astype(np.int32), mask


def class_batch(case: str):
    """A labelled batch with labels in [0, C) (singletons beyond: no class) and
    class weights / proxies [C, SMALL_DIM]."""
    x, labels, mask = labelled_batch(case)
    labels = np.where(labels < 100, labels % C, labels).astype(np.int32)
    weights = as_float32_values(np.random.default_rng(5).normal(size=(C, SMALL_DIM)))
    return x, labels, mask, weights


@functools.cache
def _jit_masked(fn):
    return jax.jit(lambda x, y, m, *params: fn(x, y, *params, mask=m))


def run_masked(fn, dtype: str, x, labels, mask, *params) -> float:
    """``fn(x, labels, *params, mask=mask)`` under jit in ``dtype``, which the
    value must have; ``fn`` is compiled once (pass a module-level function)."""
    with precision(dtype):
        out = _jit_masked(fn)(
            jnp.asarray(x, dtype),
            jnp.asarray(labels),
            jnp.asarray(mask),
            *(jnp.asarray(p, dtype) for p in params),
        )
        assert out.dtype == jnp.dtype(dtype)
    return float(out)


def two_view_batch(seed: int, masked: bool, batch: int = 12, dim: int = 7):
    """Correlated views with unequal column scales (every term of a
    non-contrastive loss matters) and a mask with 3 padded rows."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(batch, dim)) * rng.uniform(0.3, 2.0, size=dim)
    b = a + 0.5 * rng.normal(size=a.shape) + 0.2
    mask = np.ones(batch, bool)
    if masked:
        mask[[1, 5, 6]] = False
    return a, b, mask


# ----------------------------------------------------------------------------
# NumPy loop references shared by several modules (float64, nothing from jaxmetric).
# ----------------------------------------------------------------------------

NORM_EPS = 1e-12


def ref_unit(v) -> np.ndarray:
    return np.asarray(v, np.float64) / max(math.sqrt(float(np.dot(v, v))), NORM_EPS)


def ref_normalize(x) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(x.shape[0]):
        out[i] = ref_unit(x[i])
    return out


def ref_cosine(u, v) -> float:
    nu = max(math.sqrt(float(np.dot(u, u))), NORM_EPS)
    nv = max(math.sqrt(float(np.dot(v, v))), NORM_EPS)
    return float(np.dot(u, v)) / (nu * nv)


def ref_distance(u, v, metric: str) -> float:
    if metric == "euclidean":
        return math.sqrt(float(np.sum((u - v) ** 2)))
    if metric == "squared_euclidean":
        return float(np.sum((u - v) ** 2))
    if metric == "cosine":
        return 1.0 - ref_cosine(u, v)
    raise ValueError(metric)


def ref_distance_matrix(x, y=None, metric: str = "euclidean") -> np.ndarray:
    same = y is None
    y = x if same else y
    out = np.zeros((x.shape[0], y.shape[0]))
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            # Docstring: with y=None the diagonal is exactly 0.
            out[i, j] = 0.0 if (same and i == j) else ref_distance(x[i], y[j], metric)
    return out


def ref_logsumexp(values) -> float:
    values = [float(v) for v in values]
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def ref_softmax_ce(logits, target) -> float:
    """Softmax cross-entropy of the logits (a list) with the target index."""
    return ref_logsumexp(logits) - logits[target]


def ref_mean(losses) -> float:
    return float(np.mean(losses)) if losses else 0.0


def ref_reduce(terms, reduction: str) -> float:
    total = float(sum(terms))
    if reduction == "sum":
        return total
    if reduction == "mean":
        count = len(terms)
    elif reduction == "mean_nonzero":
        count = sum(1 for t in terms if t > 0)
    else:
        raise ValueError(reduction)
    return total / count if count else 0.0


def ref_pair_masks(labels, mask=None, ref_labels=None, ref_mask=None, anchor_index=None):
    """pos[i, j]: same label, j not anchor i itself; neg: other label; valid rows only."""
    b = len(labels)
    amask = valid_rows(mask, b)
    if ref_labels is None:
        ref_labels = labels
        ref_mask = amask if ref_mask is None else ref_mask
        anchor_index = list(range(b)) if anchor_index is None else anchor_index
    m = len(ref_labels)
    rmask = valid_rows(ref_mask, m)
    pos = np.zeros((b, m), bool)
    neg = np.zeros((b, m), bool)
    for i in range(b):
        for j in range(m):
            if not (amask[i] and rmask[j]):
                continue
            if labels[i] == ref_labels[j]:
                pos[i, j] = anchor_index is None or anchor_index[i] != j
            else:
                neg[i, j] = True
    return pos, neg


def ref_mine(d, pos, neg, mining_name: str, margin: float):
    """The mined triplets (a, p, n) as a list, by the rules of DESIGN.md."""
    b, m = pos.shape
    out = []
    for a in range(b):
        positives = [p for p in range(m) if pos[a, p]]
        negatives = [n for n in range(m) if neg[a, n]]
        if mining_name == "batch_hard":
            if positives and negatives:  # anchors lacking either are dropped
                p = max(positives, key=lambda j, a=a: d[a, j])
                n = min(negatives, key=lambda j, a=a: d[a, j])
                out.append((a, p, n))
            continue
        for p in positives:
            if mining_name == "facenet_semi_hard":
                if not negatives:
                    continue
                outside = [n for n in negatives if d[a, n] > d[a, p]]
                if outside:
                    n = min(outside, key=lambda j, a=a: d[a, j])
                else:
                    n = max(negatives, key=lambda j, a=a: d[a, j])
                out.append((a, p, n))
                continue
            for n in negatives:
                if mining_name == "hard" and not d[a, n] < d[a, p]:
                    continue
                if mining_name == "semi_hard" and not d[a, p] < d[a, n] < d[a, p] + margin:
                    continue
                out.append((a, p, n))
    return out


def ref_triplet_setup(x, labels, mask, metric: str, normalize: bool):
    """(distance matrix, positive mask, negative mask) of the triplet losses."""
    xe = ref_normalize(x) if normalize else x
    return ref_distance_matrix(xe, None, metric), *ref_pair_masks(labels, mask)


def _triplets_separated(x, labels, mask, metric, normalize, margin) -> bool:
    d, pos, neg = ref_triplet_setup(x, labels, mask, metric, normalize)
    for a in range(len(labels)):
        for p in np.flatnonzero(pos[a]):
            for n in np.flatnonzero(neg[a]):
                diff = d[a, n] - d[a, p]
                if abs(diff) < GAP or abs(diff - margin) < GAP:
                    return False
    return True


@functools.cache
def triplet_data(batch: int, case: str, metric="euclidean", normalize=True, margin=0.3):
    """A scenario batch with no triplet within GAP of a mining or hinge boundary."""
    for attempt in range(200):
        x, labels, mask = scenario_batch(batch, case, attempt)
        if _triplets_separated(x, labels, mask, metric, normalize, margin):
            return x, labels, mask
    raise AssertionError("no well-separated draw")


class Pairs:
    """Anchors (the valid batch rows) and their positives / negatives among candidates.

    The candidates are the batch itself, or (cross-batch memory) any other
    set with labels and validity.
    """

    def __init__(self, x, labels, mask, cands=None, cand_labels=None, cand_valid=None):
        self.x, self.labels, self.mask = x, labels, mask
        if cands is None:
            cands, cand_labels, cand_valid = x, labels, mask
        self.cands, self.cand_labels, self.cand_valid = cands, cand_labels, cand_valid

    @classmethod
    def with_memory(cls, x, labels, mask, memory=None):
        """The batch as anchors, the batch and ``memory`` (embeddings, labels,
        valid; None: no memory) as candidates."""
        if memory is None:
            return cls(x, labels, mask)
        emb, mem_labels, valid = memory
        return cls(
            x,
            labels,
            mask,
            np.concatenate([x, emb]),
            np.concatenate([labels, mem_labels]),
            np.concatenate([mask, valid]),
        )

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


# ----------------------------------------------------------------------------
# Hypothesis: random batches of every shape the property tests compile.
# ----------------------------------------------------------------------------

# At least 200 examples per test in CI; fewer while developing (e.g. =20).
PROPERTY_EXAMPLES = int(os.environ.get("JAXMETRIC_PROPERTY_EXAMPLES", "200"))
PROPERTY_SETTINGS = settings(
    max_examples=PROPERTY_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run, so CI is reproducible
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
BUCKETS = ((1, 16), (2, 2), (8, 6))  # (batch, dim): the only shapes compiled
PROPERTY_CLASSES = 4  # classes of the proxies / class weights
PROPERTY_SLOTS = 6  # slots of the MoCo queue and of the XBM memory

LAYOUTS = ("distinct", "equal", "singleton", "two_classes", "random")
EMBEDDINGS = ("normal", "identical", "zero", "half_zero", "duplicated_pairs")
MASKS = ("all", "random", "none", "one")
SCALES = (1e-6, 1e-3, 1.0, 1e3, 1e6)


@st.composite
def property_examples(draw):
    """(layout, embeddings kind, mask kind, scale, seed): one of each drawn
    per example, applied to a batch of every shape of ``BUCKETS``."""
    return (
        draw(st.sampled_from(LAYOUTS)),
        draw(st.sampled_from(EMBEDDINGS)),
        draw(st.sampled_from(MASKS)),
        draw(st.sampled_from(SCALES)),
        draw(st.integers(0, 2**31 - 1)),
    )


def _property_labels(layout: str, b: int, rng: np.random.Generator) -> np.ndarray:
    if layout == "distinct":
        return rng.permutation(b)
    if layout == "equal":
        return np.full(b, rng.integers(0, PROPERTY_CLASSES))
    if layout == "singleton":  # pairs of one class each, and one class of a single row
        y = np.arange(b) // 2
        y[-1] = b  # its own class (beyond the classes of the proxy losses)
        return rng.permutation(y)
    if layout == "two_classes":
        return rng.integers(0, 2, size=b)
    return rng.integers(0, 3, size=b)


def _property_embeddings(kind: str, b: int, d: int, scale: float, rng: np.random.Generator):
    x = rng.normal(size=(b, d))
    if kind == "identical":
        x = np.tile(x[:1], (b, 1))
    elif kind == "zero":
        x = np.zeros((b, d))
    elif kind == "half_zero":
        x[::2] = 0.0
    elif kind == "duplicated_pairs":
        x[1::2] = x[: b // 2 * 2 : 2]
    return scale * x


def _property_mask(kind: str, b: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "all":
        return np.ones(b, bool)
    if kind == "none":
        return np.zeros(b, bool)
    if kind == "one":
        return np.arange(b) == rng.integers(0, b)
    return rng.random(b) < 0.6


def _property_batch(example, b: int, d: int):
    layout, kind, mask_kind, scale, seed = example
    rng = np.random.default_rng([seed, b])
    y = _property_labels(layout, b, rng).astype(np.int32)
    e = _property_embeddings(kind, b, d, scale, rng)
    m = _property_mask(mask_kind, b, rng)
    # Padding holds garbage that would move every value if it leaked in.
    e[~m] = rng.normal(size=(int((~m).sum()), d)) * 1e3
    extra = {
        "queue": rng.normal(size=(PROPERTY_SLOTS, d)).astype(np.float32),
        "queue_mask": rng.random(PROPERTY_SLOTS) < 0.7,
        "memory": jm.MemoryQueue(
            embeddings=rng.normal(size=(PROPERTY_SLOTS, d)).astype(np.float32),
            labels=rng.integers(0, 3, size=PROPERTY_SLOTS).astype(np.int32),
            valid=rng.random(PROPERTY_SLOTS) < 0.7,
            pointer=np.zeros((), np.int32),
        ),
    }
    w = rng.normal(size=(PROPERTY_CLASSES, d))
    return np.float32(e), y, m, np.float32(w), extra


def property_batches(example):
    """One batch (embeddings, labels, mask, weights, extras) per shape in ``BUCKETS``."""
    return tuple(_property_batch(example, b, d) for b, d in BUCKETS)


def assert_matches_label_reference(fn, reference, hyper, case, dtype, *, zero_cases=()):
    """A label-based loss ``fn`` on the labelled batch of ``case`` in ``dtype``
    against ``reference(Pairs(...), **hyper)`` (a NumPy loop in float64); in
    ``zero_cases`` (e.g. batches without a positive) both must be 0."""
    x, labels, mask = labelled_batch(case)
    expected = reference(Pairs(x, labels, mask), **hyper)
    out = run_masked(fn, dtype, x, labels, mask)
    np.testing.assert_allclose(out, expected, **tol(dtype))
    if case in zero_cases:
        assert expected == 0.0 and out == 0.0


def assert_matches_two_view_reference(loss_fn, reference, seed: int, masked: bool) -> None:
    """A two-view loss ``loss_fn(a, b, mask=...)`` in float32 on
    ``two_view_batch(seed, masked)`` against ``reference(a, b, mask)`` (NumPy)."""
    a, b, mask = two_view_batch(seed, masked)
    expected = reference(a, b, mask)
    got = loss_fn(
        jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), mask=mask if masked else None
    )
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), expected, rtol=2e-5, atol=1e-5)
