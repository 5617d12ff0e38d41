"""Evaluation metrics for embeddings: retrieval, classification, verification, clustering.

Everything that touches an [N, M] comparison runs blockwise in JAX: the query
rows are cut into blocks of ``block_size`` and ``jax.lax.map`` walks over the
blocks, so only a [block_size, M] slice of the distance matrix exists at any
time (a 100k x 100k evaluation never materialises the 40 GB matrix). Shapes
are fixed and every function is pure, so the per-block work can be sharded
over devices by splitting the query rows.

This module is a kernel: it imports nothing from ``models``, ``data``,
``train`` or ``main``.

Conventions shared by every function here:

- ``metric`` is ``"cosine"`` (distance 1 - cos) or ``"euclidean"``.
- **Ties in distance** are broken by the index of the reference row: of two
  references at the same distance, the one that comes first in
  ``reference`` ranks first (a stable sort by distance, as a brute-force
  faiss / ``torch.topk`` search would usually return them). Ties are judged on
  the float32 distances computed here; rows that are identical (or, for
  cosine, equal up to a power-of-two scale) always tie exactly.
- Labels are non-negative integers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmetric import _checks
from jaxmetric.distances import l2_normalize

RETRIEVAL_METRICS = ("cosine", "euclidean")

__all__ = [
    "KMeansResult",
    "clustering_metrics",
    "evaluate_embeddings",
    "kmeans",
    "knn_accuracy",
    "knn_predict",
    "linear_probe_accuracy",
    "normalized_mutual_info",
    "retrieval_metrics",
    "verification_metrics",
    "verification_pairs",
]


# --------------------------------------------------------------------------------------
# Input checks and shared helpers.
# --------------------------------------------------------------------------------------


def _check_embeddings(x, name: str) -> jax.Array:
    x = _checks.check_embeddings(x, name)
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` has no rows.")
    return x.astype(jnp.float32)


def _check_labels(labels, batch: int, name: str) -> jax.Array:
    labels = _checks.check_labels(labels, batch, name)
    try:
        minimum = int(jnp.min(labels)) if labels.size else 0
    except jax.errors.ConcretizationTypeError:  # Traced labels: no value check.
        return labels
    if minimum < 0:
        raise ValueError(f"`{name}` must be non-negative integers, got a minimum of {minimum}.")
    return labels


def _check_block_size(block_size: int) -> int:
    if not isinstance(block_size, int | np.integer) or block_size < 1:
        raise ValueError(f"`block_size` must be a positive int, got {block_size!r}.")
    return int(block_size)


def _prepare_pair(query, reference, metric: str) -> tuple[jax.Array, jax.Array]:
    if reference.shape[1] != query.shape[1]:
        raise ValueError(
            f"`reference` must have the feature dimension of `query` ({query.shape[1]}), "
            f"got shape {reference.shape}."
        )
    if metric == "cosine":
        return l2_normalize(query), l2_normalize(reference)
    return query, reference


def _ranking_keys(q: jax.Array, ref: jax.Array, ref_sq: jax.Array, metric: str) -> jax.Array:
    """[b, M] keys whose ascending order is the order of increasing distance.

    cosine: -cos (inputs already normalised); euclidean: |r|^2 - 2 q.r, the
    squared distance less the per-row constant |q|^2 (same order, one add
    fewer, and exact on integer-valued data).
    """
    s = q @ ref.T
    if metric == "cosine":
        return -s
    return ref_sq[None, :] - 2.0 * s


def _distances_from_keys(keys: jax.Array, q: jax.Array, metric: str) -> jax.Array:
    """Turns ranking keys back into distances (1 - cos, or euclidean)."""
    if metric == "cosine":
        return 1.0 + keys
    q_sq = jnp.sum(jnp.square(q), axis=1, keepdims=True)
    return jnp.sqrt(jnp.maximum(keys + q_sq, 0.0))


def _pad_rows(x: jax.Array, multiple: int, value=0) -> jax.Array:
    pad = (-x.shape[0]) % multiple
    if pad == 0:
        return x
    widths = [(0, pad)] + [(0, 0)] * (x.ndim - 1)
    return jnp.pad(x, widths, constant_values=value)


def _blocks(x: jax.Array, block_size: int) -> jax.Array:
    return x.reshape((-1, block_size) + x.shape[1:])


def _ordered_int32(x: jax.Array) -> jax.Array:
    """Maps float32 to int32 preserving order (and equality: -0.0 == +0.0).

    Sorting int32 keys is several times faster than sorting floats on the XLA
    CPU backend, whose float comparator handles NaN.
    """
    x = jnp.where(x == 0, jnp.zeros_like(x), x)  # -0.0 -> +0.0
    bits = jax.lax.bitcast_convert_type(x, jnp.int32)
    return bits ^ ((bits >> 31) & jnp.int32(0x7FFFFFFF))


# --------------------------------------------------------------------------------------
# Retrieval.
# --------------------------------------------------------------------------------------


def _retrieval_block(q, q_labels, q_index, q_valid, ref, ref_labels, ref_sq, *, metric, loo, ks):
    """Per-metric sums over the valid queries of one block, and their count."""
    num_ref = ref.shape[0]
    keys = _ranking_keys(q, ref, ref_sq, metric)
    relevant = q_labels[:, None] == ref_labels[None, :]
    if loo:
        is_self = q_index[:, None] == jnp.arange(num_ref)[None, :]
        keys = jnp.where(is_self, jnp.inf, keys)  # Ranks last; never relevant.
        relevant = relevant & ~is_self
    # Stable sort by distance: ties keep reference order.
    _, rel = jax.lax.sort(
        (_ordered_int32(keys), relevant.astype(jnp.int32)), dimension=1, is_stable=True, num_keys=1
    )
    num_relevant = jnp.sum(rel, axis=1)  # R per query.
    hits = jnp.cumsum(rel, axis=1)  # Relevant items within the first i.
    pos = jnp.arange(1, num_ref + 1, dtype=jnp.float32)[None, :]
    relf = rel.astype(jnp.float32)
    precision_at_hits = relf * hits.astype(jnp.float32) / pos  # P(i) rel(i).
    within_r = pos <= num_relevant[:, None].astype(jnp.float32)
    r_denominator = jnp.maximum(num_relevant, 1).astype(jnp.float32)
    per_query = [
        relf[:, 0],  # precision_at_1
        jnp.sum(relf * within_r, axis=1) / r_denominator,  # r_precision
        jnp.sum(precision_at_hits * within_r, axis=1) / r_denominator,  # map_at_r
        jnp.sum(precision_at_hits, axis=1) / r_denominator,  # mean_average_precision
    ]
    for k in ks:
        per_query.append((hits[:, min(k, num_ref) - 1] > 0).astype(jnp.float32))
    valid = q_valid & (num_relevant > 0)
    sums = jnp.stack([jnp.sum(jnp.where(valid, v, 0.0)) for v in per_query])
    return sums, jnp.sum(valid.astype(jnp.int32))


@functools.partial(jax.jit, static_argnames=("metric", "loo", "ks", "block_size", "mesh"))
def _retrieval_sums(
    query, query_labels, reference, reference_labels, *, metric, loo, ks, block_size, mesh
):
    query, reference = _prepare_pair(query, reference, metric)
    ref_sq = jnp.sum(jnp.square(reference), axis=1)
    num_query = query.shape[0]
    multiple = block_size * (1 if mesh is None else mesh.size)
    index = jnp.arange(num_query, dtype=jnp.int32)
    xs = (
        _blocks(_pad_rows(query, multiple), block_size),
        _blocks(_pad_rows(query_labels, multiple), block_size),
        _blocks(_pad_rows(index, multiple, -1), block_size),
        _blocks(_pad_rows(jnp.ones(num_query, bool), multiple, False), block_size),
    )

    def run(q, q_labels, q_index, q_valid, ref, ref_labels, ref_sq):
        def body(args):
            return _retrieval_block(*args, ref, ref_labels, ref_sq, metric=metric, loo=loo, ks=ks)

        return jax.lax.map(body, (q, q_labels, q_index, q_valid))

    if mesh is not None:
        # Each device walks over its share of the query blocks against the
        # replicated reference; devices run in parallel (also CPU devices).
        blocks, replicated = jax.sharding.PartitionSpec("blocks"), jax.sharding.PartitionSpec()
        run = jax.shard_map(
            run,
            mesh=mesh,
            in_specs=(blocks,) * 4 + (replicated,) * 3,
            out_specs=(blocks, blocks),
        )
    # Per-block sums and counts; summed in float64 on the host.
    return run(*xs, reference, reference_labels, ref_sq)


def _query_mesh(devices) -> jax.sharding.Mesh | None:
    devices = jax.local_devices() if devices is None else list(devices)
    if len(devices) <= 1:
        return None
    return jax.sharding.Mesh(np.array(devices), ("blocks",))


def retrieval_metrics(
    query: jax.Array,
    query_labels: jax.Array,
    reference: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    *,
    metric: str = "cosine",
    recall_at: Sequence[int] = (1, 2, 4, 8),
    block_size: int = 128,
    devices: Sequence[jax.Device] | None = None,
) -> dict[str, float]:
    r"""Retrieval metrics of "A Metric Learning Reality Check" (Musgrave et al. 2020).

    Each query ranks every reference by increasing distance (ties: lower
    reference index first). With ``rel(i)`` = 1 when the i-th ranked reference
    has the query's label, ``R`` = the number of references with the query's
    label (in leave-one-out mode the query itself does not count, and is never
    retrieved), and ``P(i) = (1/i) sum_{j<=i} rel(j)``:

    .. math::

        \mathrm{P@1} = rel(1), \qquad
        \mathrm{R\text{-}precision} = \frac{1}{R}\sum_{i=1}^{R} rel(i), \qquad
        \mathrm{MAP@R} = \frac{1}{R}\sum_{i=1}^{R} P(i)\,rel(i),

        \mathrm{AP} = \frac{1}{R}\sum_{i=1}^{M} P(i)\,rel(i), \qquad
        \mathrm{Recall@}k = [\textstyle\sum_{i\le k} rel(i) > 0],

    each averaged over the queries (``mean_average_precision`` is the mean of
    AP over the full ranking; ``recall_at_k`` is the "Recall@K" of deep metric
    learning papers: the fraction of queries with at least one same-label
    reference among their k nearest).

    **Queries with R = 0 are left out of every average**, as
    pytorch-metric-learning's ``AccuracyCalculator`` does with its "lone query
    labels": in leave-one-out mode these are the queries whose class has one
    sample; with a separate reference set, the queries whose label does not
    occur in it. If no query has R > 0, every metric is 0.0.

    PML's ``AccuracyCalculator(k=None)`` (all references retrieved, self
    removed by index) gives the same numbers up to its tie order (faiss /
    ``torch.topk``) and float32 rounding: checked against PML 2.9 in
    ``tests/test_metrics_pml.py`` (run it in ``.venv-bench``); older PML versions
    truncated the ranking at ``k = max_bin_count`` (at most 1023), which
    changes ``mean_average_precision`` and, for classes with more than 1023
    samples, MAP@R and R-precision.

    Memory and time: the queries are processed ``block_size`` rows at a time
    with ``jax.lax.map``; each block holds a few [block_size, M] arrays
    (measured: about 160 MiB of peak growth at ``block_size=128``, M = 20k,
    i.e. about 60 bytes per entry; lower ``block_size`` for a larger M) and
    sorts its rows, O(N M log M) in all.
    With several devices the query blocks are split over them with
    ``jax.shard_map`` (the reference is replicated), and they run in
    parallel; the result does not depend on the number of devices.

    Args:
      query: [N, D] float embeddings.
      query_labels: [N] non-negative int labels.
      reference: [M, D] float embeddings, or None for leave-one-out within
        ``query`` (each query is compared with every other query row).
      reference_labels: [M] labels; required with ``reference``.
      metric: "cosine" (1 - cos) or "euclidean".
      recall_at: the k of the ``recall_at_{k}`` keys, positive ints.
      block_size: query rows per block.
      devices: devices to split the query blocks over; None: all of
        ``jax.local_devices()`` (on CPU, set ``jax_num_cpu_devices`` to the
        number of cores to use them all).

    Returns:
      A dict of Python floats with keys ``precision_at_1``, ``r_precision``,
      ``map_at_r``, ``mean_average_precision``, ``recall_at_{k}`` for each k,
      and ``num_queries`` (the number of queries with R > 0 that the averages
      are over).

    Reference:
      Musgrave, Belongie, Lim, "A Metric Learning Reality Check", ECCV 2020.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxmetric.metrics import retrieval_metrics
      >>> x = jnp.array([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.2]])
      >>> m = retrieval_metrics(x, jnp.array([0, 0, 1, 1]), recall_at=(1,))
      >>> m["precision_at_1"], m["map_at_r"]
      (1.0, 1.0)
    """
    _checks.check_choice(metric, RETRIEVAL_METRICS, "metric")
    block_size = _check_block_size(block_size)
    ks = tuple(recall_at)
    for k in ks:
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"`recall_at` must hold positive ints, got {recall_at!r}.")
    ks = tuple(int(k) for k in ks)
    query = _check_embeddings(query, "query")
    query_labels = _check_labels(query_labels, query.shape[0], "query_labels")
    loo = reference is None
    if loo:
        if reference_labels is not None:
            raise ValueError("`reference_labels` was given without `reference`.")
        reference, reference_labels = query, query_labels
    else:
        if reference_labels is None:
            raise ValueError("`reference_labels` is required when `reference` is given.")
        reference = _check_embeddings(reference, "reference")
        reference_labels = _check_labels(reference_labels, reference.shape[0], "reference_labels")
    if loo and query.shape[0] < 2:
        raise ValueError(f"leave-one-out needs at least 2 `query` rows, got {query.shape[0]}.")
    block_size = min(block_size, query.shape[0])
    sums, count = _retrieval_sums(
        query,
        query_labels,
        reference,
        reference_labels,
        metric=metric,
        loo=loo,
        ks=ks,
        block_size=block_size,
        mesh=_query_mesh(devices),
    )
    sums = np.asarray(sums, dtype=np.float64).sum(axis=0)
    count = int(np.asarray(count).sum())
    means = sums / count if count else np.zeros_like(sums)
    names = ["precision_at_1", "r_precision", "map_at_r", "mean_average_precision"]
    names += [f"recall_at_{k}" for k in ks]
    out = {name: float(v) for name, v in zip(names, means, strict=True)}
    out["num_queries"] = count
    return out


# --------------------------------------------------------------------------------------
# k nearest neighbours.
# --------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("k", "metric", "block_size"))
def _knn(query, reference, *, k, metric, block_size):
    query, reference = _prepare_pair(query, reference, metric)
    ref_sq = jnp.sum(jnp.square(reference), axis=1)
    num_query = query.shape[0]
    qb = _blocks(_pad_rows(query, block_size), block_size)

    def body(q):
        keys = _ranking_keys(q, reference, ref_sq, metric)
        # top_k returns the lower index first among equal values.
        neg_keys, idx = jax.lax.top_k(-keys, k)
        return _distances_from_keys(-neg_keys, q, metric), idx

    dist, idx = jax.lax.map(body, qb)
    return dist.reshape(-1, k)[:num_query], idx.reshape(-1, k)[:num_query]


def _num_classes(*label_arrays: jax.Array) -> int:
    return int(max(int(jnp.max(lab)) for lab in label_arrays)) + 1


def knn_predict(
    train_emb: jax.Array,
    train_labels: jax.Array,
    test_emb: jax.Array,
    *,
    k: int = 10,
    metric: str = "cosine",
    weighted: bool = False,
    temperature: float = 0.07,
    num_classes: int | None = None,
    block_size: int = 128,
) -> jax.Array:
    """Class predictions [N_test] of a k-nearest-neighbour vote; see `knn_accuracy`."""
    _checks.check_choice(metric, RETRIEVAL_METRICS, "metric")
    block_size = _check_block_size(block_size)
    train_emb = _check_embeddings(train_emb, "train_emb")
    train_labels = _check_labels(train_labels, train_emb.shape[0], "train_labels")
    test_emb = _check_embeddings(test_emb, "test_emb")
    if test_emb.shape[1] != train_emb.shape[1]:
        raise ValueError(
            f"`test_emb` must have the feature dimension of `train_emb` ({train_emb.shape[1]}), "
            f"got shape {test_emb.shape}."
        )
    if not isinstance(k, int | np.integer) or not 1 <= k <= train_emb.shape[0]:
        raise ValueError(f"`k` must be an int in [1, {train_emb.shape[0]}], got {k!r}.")
    if weighted:
        _checks.check_positive(temperature, "temperature")
    if num_classes is None:
        num_classes = _num_classes(train_labels)
    dist, idx = _knn(
        test_emb, train_emb, k=int(k), metric=metric, block_size=min(block_size, test_emb.shape[0])
    )
    votes = jax.nn.one_hot(train_labels[idx], num_classes)  # [N, k, C]
    if weighted:
        # exp(-d / T): for cosine, exp((cos - 1) / T), the DINO weights up to a constant.
        votes = votes * jnp.exp(-(dist - dist[:, :1]) / temperature)[:, :, None]
    # argmax picks the smallest class among tied votes (as scikit-learn does).
    return jnp.argmax(jnp.sum(votes, axis=1), axis=1)


def knn_accuracy(
    train_emb: jax.Array,
    train_labels: jax.Array,
    test_emb: jax.Array,
    test_labels: jax.Array,
    *,
    k: int = 10,
    metric: str = "cosine",
    weighted: bool = False,
    temperature: float = 0.07,
    block_size: int = 128,
) -> float:
    r"""Accuracy of a k-nearest-neighbour classifier on frozen embeddings.

    Each test row takes its ``k`` nearest training rows (ties: lower training
    index first) and predicts the class with the largest vote

    .. math::

        \hat y = \arg\max_c \sum_{j \in kNN} w_j [y_j = c], \qquad
        w_j = 1 \;\text{(majority vote)} \quad\text{or}\quad
        w_j = \exp(-d_j / T) \;\text{(weighted)},

    the smallest class winning a tie of votes (scikit-learn's
    ``KNeighborsClassifier`` does the same). With ``metric="cosine"``,
    ``d = 1 - cos`` and the weights are ``exp(cos / T)`` up to a common factor:
    the weighted kNN monitor of InstDisc (Wu et al. 2018) and DINO (Caron et
    al. 2021; k=20, T=0.07 there).

    Args:
      train_emb: [N, D] float embeddings of the labelled set.
      train_labels: [N] non-negative int labels.
      test_emb: [N_test, D] float embeddings to classify.
      test_labels: [N_test] int labels.
      k: neighbours per test row, in [1, N].
      metric: "cosine" or "euclidean".
      weighted: False for a majority vote, True for exp(-d / T) weights.
      temperature: T of the weighted vote, > 0.
      block_size: test rows per block.

    Returns:
      The fraction of test rows whose predicted class equals their label.

    Reference:
      Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
      Discrimination", CVPR 2018; Caron et al., "Emerging Properties in
      Self-Supervised Vision Transformers", ICCV 2021.
    """
    test_emb = _check_embeddings(test_emb, "test_emb")
    test_labels = _check_labels(test_labels, test_emb.shape[0], "test_labels")
    train_labels_ = _checks.check_labels(
        train_labels, jnp.asarray(train_labels).shape[0], "train_labels"
    )
    pred = knn_predict(
        train_emb,
        train_labels,
        test_emb,
        k=k,
        metric=metric,
        weighted=weighted,
        temperature=temperature,
        num_classes=_num_classes(train_labels_, test_labels),
        block_size=block_size,
    )
    return float(jnp.mean(pred == test_labels))


# --------------------------------------------------------------------------------------
# Linear probe.
# --------------------------------------------------------------------------------------


class _ProbeState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    best_params: dict
    best_score: jax.Array  # (val accuracy, -val loss) compared lexicographically.
    best_neg_loss: jax.Array
    evals: jax.Array
    since_best: jax.Array


def _probe_logits(params, x):
    return x @ params["w"] + params["b"]


@functools.partial(
    jax.jit,
    static_argnames=("num_classes", "learning_rate", "max_steps", "eval_every", "patience"),
)
def _train_probe(
    x_tr, y_tr, x_val, y_val, l2, *, num_classes, learning_rate, max_steps, eval_every, patience
):
    dim = x_tr.shape[1]
    params = {
        "w": jnp.zeros((dim, num_classes), jnp.float32),
        "b": jnp.zeros((num_classes,), jnp.float32),
    }
    opt = optax.adam(learning_rate)

    def loss_fn(p):
        ce = optax.softmax_cross_entropy_with_integer_labels(_probe_logits(p, x_tr), y_tr)
        return jnp.mean(ce) + 0.5 * l2 * jnp.sum(jnp.square(p["w"]))

    def step(_, carry):
        p, s = carry
        grads = jax.grad(loss_fn)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    def evaluate(p):
        logits = _probe_logits(p, x_val)
        acc = jnp.mean(jnp.argmax(logits, axis=1) == y_val)
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y_val))
        return acc, -loss

    max_evals = max(1, max_steps // eval_every)

    def cond(st: _ProbeState):
        return (st.evals < max_evals) & (st.since_best < patience)

    def body(st: _ProbeState):
        p, s = jax.lax.fori_loop(0, eval_every, step, (st.params, st.opt_state))
        acc, neg_loss = evaluate(p)
        better = (acc > st.best_score) | ((acc == st.best_score) & (neg_loss > st.best_neg_loss))
        best = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, st.best_params)
        return _ProbeState(
            p,
            s,
            best,
            jnp.where(better, acc, st.best_score),
            jnp.where(better, neg_loss, st.best_neg_loss),
            st.evals + 1,
            jnp.where(better, 0, st.since_best + 1),
        )

    acc0, neg_loss0 = evaluate(params)
    init = _ProbeState(
        params, opt.init(params), params, acc0, neg_loss0, jnp.array(0), jnp.array(0)
    )
    final = jax.lax.while_loop(cond, body, init)
    return final.best_params, final.evals * eval_every


def linear_probe_accuracy(
    train_emb: jax.Array,
    train_labels: jax.Array,
    test_emb: jax.Array,
    test_labels: jax.Array,
    *,
    l2: float = 1e-4,
    learning_rate: float = 0.01,
    max_steps: int = 2000,
    eval_every: int = 20,
    patience: int = 10,
    val_fraction: float = 0.1,
    standardize: bool = True,
    seed: int = 0,
) -> float:
    r"""Test accuracy of an L2-regularised softmax regression on frozen embeddings.

    The training rows are shuffled with ``seed`` and split: ``val_fraction``
    of them (at least one) form a validation split, the rest fit

    .. math::

        \min_{W, b}\; \frac{1}{n}\sum_i \mathrm{CE}(W^\top x_i + b,\; y_i)
        + \frac{\lambda}{2}\lVert W \rVert_2^2

    with full-batch Adam from zero weights. Every ``eval_every`` steps the
    validation accuracy is measured (ties: lower validation loss); the best
    weights so far are kept, and training stops after ``patience``
    evaluations without improvement or after ``max_steps`` steps. The test
    accuracy of the kept weights is returned. With ``standardize``, features
    are centred and scaled by the mean and standard deviation of the fitting
    split. The result is deterministic given ``seed`` (full batch; the only
    randomness is the split).

    This is the "linear evaluation protocol" of SimCLR / MoCo, on fixed
    features and without augmentation. ``l2 = 1 / (C n)`` matches
    scikit-learn's ``LogisticRegression(C=C)`` objective.

    Args:
      train_emb: [N, D] float embeddings of the labelled set.
      train_labels: [N] non-negative int labels.
      test_emb: [N_test, D] float embeddings.
      test_labels: [N_test] int labels.
      l2: lambda, >= 0.
      learning_rate: Adam step size, > 0.
      max_steps: most optimisation steps.
      eval_every: steps between validation checks.
      patience: validation checks without improvement before stopping.
      val_fraction: share of the training rows held out, in (0, 1).
      standardize: centre and scale the features first.
      seed: seed of the train / validation split.

    Returns:
      The test accuracy in [0, 1].

    Reference:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations" (linear evaluation), ICML 2020.
    """
    train_emb = _check_embeddings(train_emb, "train_emb")
    train_labels = _check_labels(train_labels, train_emb.shape[0], "train_labels")
    test_emb = _check_embeddings(test_emb, "test_emb")
    test_labels = _check_labels(test_labels, test_emb.shape[0], "test_labels")
    if test_emb.shape[1] != train_emb.shape[1]:
        raise ValueError(
            f"`test_emb` must have the feature dimension of `train_emb` ({train_emb.shape[1]}), "
            f"got shape {test_emb.shape}."
        )
    _checks.check_non_negative(l2, "l2")
    _checks.check_positive(learning_rate, "learning_rate")
    for name, value in (("max_steps", max_steps), ("eval_every", eval_every)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if not isinstance(patience, int | np.integer) or patience < 1:
        raise ValueError(f"`patience` must be a positive int, got {patience!r}.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction!r}.")
    n = train_emb.shape[0]
    if n < 2:
        raise ValueError(f"`train_emb` needs at least 2 rows for a validation split, got {n}.")
    num_val = min(n - 1, max(1, round(val_fraction * n)))
    perm = jax.random.permutation(jax.random.key(seed), n)
    val_idx, fit_idx = perm[:num_val], perm[num_val:]
    x_fit, y_fit = train_emb[fit_idx], train_labels[fit_idx]
    x_val, y_val = train_emb[val_idx], train_labels[val_idx]
    x_test = test_emb
    if standardize:
        mean = jnp.mean(x_fit, axis=0)
        std = jnp.std(x_fit, axis=0)
        std = jnp.where(std > 1e-12, std, 1.0)
        x_fit, x_val, x_test = ((x - mean) / std for x in (x_fit, x_val, x_test))
    params, _ = _train_probe(
        x_fit,
        y_fit,
        x_val,
        y_val,
        jnp.float32(l2),
        num_classes=_num_classes(train_labels, test_labels),
        learning_rate=float(learning_rate),
        max_steps=int(max_steps),
        eval_every=int(eval_every),
        patience=int(patience),
    )
    pred = jnp.argmax(_probe_logits(params, x_test), axis=1)
    return float(jnp.mean(pred == test_labels))


# --------------------------------------------------------------------------------------
# Verification.
# --------------------------------------------------------------------------------------


def _far_key(far: float) -> str:
    return f"{far:g}"


def _max_false_accepts(far: float, num_neg: int) -> int:
    """Largest m with m / num_neg <= far (the float comparison of ROC curves)."""
    m = min(num_neg, max(0, math.floor(far * num_neg)))
    while m < num_neg and (m + 1) / num_neg <= far:
        m += 1
    while m > 0 and m / num_neg > far:
        m -= 1
    return m


@functools.partial(jax.jit, static_argnames=("max_false_accepts",))
def _verification(scores, is_same, *, max_false_accepts):
    pos = is_same
    neg = ~is_same
    num_pos = jnp.sum(pos)
    num_neg = jnp.sum(neg)
    total = scores.shape[0]

    # ROC AUC = P(s+ > s-) + P(s+ = s-) / 2 (Mann-Whitney U), from the sorted negatives.
    neg_sorted = jnp.sort(jnp.where(neg, scores, jnp.inf))
    below = jnp.searchsorted(neg_sorted, scores, side="left")
    below_or_equal = jnp.searchsorted(neg_sorted, scores, side="right")
    below_or_equal = jnp.minimum(below_or_equal, num_neg)
    below = jnp.minimum(below, num_neg)
    u = jnp.sum(jnp.where(pos, below + 0.5 * (below_or_equal - below), 0.0))
    # In float: the int32 product P * N overflows past ~46k x 46k pairs.
    auc = u / (num_pos.astype(jnp.float32) * num_neg.astype(jnp.float32))

    # Descending order; accept iff score >= threshold.
    order = jnp.argsort(-scores, stable=True)
    s_desc = scores[order]
    pos_desc = pos[order]
    tp = jnp.cumsum(pos_desc)
    fp = jnp.cumsum(~pos_desc)
    cut = jnp.concatenate([s_desc[1:] != s_desc[:-1], jnp.array([True])])
    acc = jnp.where(cut, (tp + (num_neg - fp)) / total, -1.0)
    acc_none = num_neg / total  # Threshold +inf: reject every pair.
    best = jnp.argmax(acc)
    take_none = acc_none >= acc[best]
    best_acc = jnp.where(take_none, acc_none, acc[best])
    best_threshold = jnp.where(take_none, jnp.inf, s_desc[best])

    results = {"roc_auc": auc, "best_accuracy": best_acc, "best_accuracy_threshold": best_threshold}
    neg_desc = -jnp.sort(-jnp.where(neg, scores, -jnp.inf))
    tars, fars, thresholds = [], [], []
    for m in max_false_accepts:
        # Accept the scores above c, the (m+1)-th largest negative score: at most
        # m negatives pass. The threshold is the smallest score above c.
        c = neg_desc[m] if m < total else -jnp.inf
        c = jnp.where(m < num_neg, c, -jnp.inf)
        accepted = scores > c
        tars.append(jnp.sum(accepted & pos) / num_pos)
        fars.append(jnp.sum(accepted & neg) / num_neg)
        thresholds.append(jnp.min(jnp.where(accepted, scores, jnp.inf)))
    return results, tars, fars, thresholds


def verification_metrics(
    scores: jax.Array,
    is_same: jax.Array,
    *,
    far_targets: Sequence[float] = (1e-3, 1e-2, 1e-1),
) -> dict[str, float]:
    r"""Verification metrics of scored pairs: ROC AUC, TAR at FAR, thresholds.

    A pair is *accepted* ("same identity") when its score is at least a
    threshold t; scores are similarities (higher = more alike; pass
    ``-distances`` for distances). With P positive and N negative pairs:

    .. math::

        \mathrm{TAR}(t) = \frac{|\{s^+ \ge t\}|}{P}, \qquad
        \mathrm{FAR}(t) = \frac{|\{s^- \ge t\}|}{N}, \qquad
        \mathrm{AUC} = P(s^+ > s^-) + \tfrac12 P(s^+ = s^-).

    - ``roc_auc`` equals ``sklearn.metrics.roc_auc_score`` (ties count 1/2).
    - ``tar_at_far_{f}``: the largest TAR whose FAR is <= f, i.e. the ROC
      point with the largest false-positive rate not above f (no
      interpolation); ``far_at_far_{f}`` the FAR reached there and
      ``threshold_at_far_{f}`` its threshold, the smallest score that is
      accepted (``inf`` when nothing can be accepted within the budget).
    - ``best_accuracy``: the best (TP + TN) / (P + N) over all thresholds,
      and ``best_accuracy_threshold`` the highest threshold reaching it
      (``inf``: reject everything).

    Args:
      scores: [P + N] float similarity scores.
      is_same: [P + N] bool, True for positive (same-label) pairs. Needs at
        least one positive and one negative pair.
      far_targets: FAR values in (0, 1].

    Returns:
      A dict of Python floats.

    Reference:
      Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters
      2006; the TAR@FAR protocol of IJB-B/C (Whitelam et al. 2017).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxmetric.metrics import verification_metrics
      >>> m = verification_metrics(jnp.array([0.9, 0.8, 0.3, 0.1]),
      ...                          jnp.array([True, True, False, False]), far_targets=(0.5,))
      >>> m["roc_auc"], m["tar_at_far_0.5"], m["best_accuracy"]
      (1.0, 1.0, 1.0)
    """
    scores = jnp.asarray(scores)
    if scores.ndim != 1 or not jnp.issubdtype(scores.dtype, jnp.floating):
        raise ValueError(
            f"`scores` must be a 1-D float array, got shape {scores.shape} dtype {scores.dtype}."
        )
    is_same = jnp.asarray(is_same)
    if is_same.shape != scores.shape:
        raise ValueError(f"`is_same` must have shape {scores.shape}, got {is_same.shape}.")
    is_same = is_same.astype(bool)
    num_pos = int(jnp.sum(is_same))
    num_neg = scores.shape[0] - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError(
            f"`is_same` needs positive and negative pairs, got {num_pos} and {num_neg}."
        )
    fars = tuple(float(f) for f in far_targets)
    for f in fars:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"`far_targets` must be in (0, 1], got {far_targets!r}.")
    ms = tuple(_max_false_accepts(f, num_neg) for f in fars)
    results, tars, reached, thresholds = _verification(
        scores.astype(jnp.float32), is_same, max_false_accepts=ms
    )
    out = {k: float(v) for k, v in results.items()}
    for f, tar, far, t in zip(fars, tars, reached, thresholds, strict=True):
        out[f"tar_at_far_{_far_key(f)}"] = float(tar)
        out[f"far_at_far_{_far_key(f)}"] = float(far)
        out[f"threshold_at_far_{_far_key(f)}"] = float(t)
    return out


def verification_pairs(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    metric: str = "cosine",
    num_pairs: int | None = None,
    seed: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Scored pairs for `verification_metrics` from embeddings and labels.

    ``num_pairs=None``: every unordered pair i < j (N (N - 1) / 2 pairs; at
    most 5e7). Otherwise ``num_pairs`` positive and ``num_pairs`` negative
    pairs drawn with NumPy's generator from ``seed``: a positive pair is a
    uniformly drawn row of a class with at least two rows and another row of
    its class; a negative pair is a uniformly drawn row and a row of another
    class.

    Args:
      embeddings: [N, D] float embeddings.
      labels: [N] int labels.
      metric: "cosine" (score = cos) or "euclidean" (score = -distance).
      num_pairs: pairs of each kind, or None for all pairs.
      seed: seed of the sampling.

    Returns:
      ``(scores, is_same)``: [P] float32 similarity scores and [P] bool.
    """
    _checks.check_choice(metric, RETRIEVAL_METRICS, "metric")
    emb = _check_embeddings(embeddings, "embeddings")
    lab = np.asarray(_check_labels(labels, emb.shape[0], "labels"))
    n = emb.shape[0]
    if num_pairs is None:
        if n * (n - 1) // 2 > 50_000_000:
            raise ValueError(f"{n} rows give too many pairs; pass `num_pairs`.")
        i, j = np.triu_indices(n, k=1)
    else:
        if not isinstance(num_pairs, int | np.integer) or num_pairs < 1:
            raise ValueError(f"`num_pairs` must be a positive int, got {num_pairs!r}.")
        rng = np.random.default_rng(seed)
        classes, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
        eligible = np.flatnonzero(counts[inverse] >= 2)
        if eligible.size == 0 or classes.size < 2:
            raise ValueError("`labels` needs a class with two rows and at least two classes.")
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        a = rng.choice(eligible, num_pairs)
        cls = inverse[a]
        # Another member of the class, uniformly: a slot in the class's block of
        # `order` other than a's own.
        rank_in_class = np.empty(n, np.int64)
        rank_in_class[order] = np.arange(n) - starts[inverse[order]]
        slot = rng.integers(0, counts[cls] - 1)
        slot = slot + (slot >= rank_in_class[a])
        pos_j = order[starts[cls] + slot]
        neg_a = rng.integers(0, n, num_pairs)
        neg_j = rng.integers(0, n, num_pairs)
        for _ in range(100):
            clash = lab[neg_a] == lab[neg_j]
            if not clash.any():
                break
            neg_j[clash] = rng.integers(0, n, int(clash.sum()))
        keep = lab[neg_a] != lab[neg_j]
        i = np.concatenate([a, neg_a[keep]])
        j = np.concatenate([pos_j, neg_j[keep]])
    x, y = emb[i], emb[j]
    if metric == "cosine":
        scores = jnp.sum(l2_normalize(x) * l2_normalize(y), axis=1)
    else:
        scores = -jnp.sqrt(jnp.sum(jnp.square(x - y), axis=1))
    return scores, jnp.asarray(lab[i] == lab[j])


# --------------------------------------------------------------------------------------
# Clustering.
# --------------------------------------------------------------------------------------


class KMeansResult(NamedTuple):
    """Output of `kmeans`."""

    centroids: jax.Array  # [k, D]
    labels: jax.Array  # [N] int32 cluster of each row
    inertia: jax.Array  # scalar: sum of squared distances to the assigned centroid


def _assign(x, x_sq, centroids):
    d = x_sq[:, None] + jnp.sum(jnp.square(centroids), axis=1)[None, :] - 2.0 * x @ centroids.T
    d = jnp.maximum(d, 0.0)
    labels = jnp.argmin(d, axis=1)
    return labels, jnp.sum(jnp.min(d, axis=1))


def _kmeans_pp(x, x_sq, k, key):
    n = x.shape[0]
    key, first_key = jax.random.split(key)
    first = jax.random.randint(first_key, (), 0, n)
    centroids = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
    min_d = jnp.maximum(x_sq + jnp.sum(jnp.square(x[first])) - 2.0 * x @ x[first], 0.0)

    def body(c, carry):
        centroids, min_d, key = carry
        key, sub = jax.random.split(key)
        total = jnp.sum(min_d)
        # D^2 sampling; uniform when every row already sits on a centroid.
        logits = jnp.where(total > 0, jnp.log(min_d), 0.0)
        idx = jax.random.categorical(sub, logits)
        new = x[idx]
        d = jnp.maximum(x_sq + jnp.sum(jnp.square(new)) - 2.0 * x @ new, 0.0)
        return centroids.at[c].set(new), jnp.minimum(min_d, d), key

    centroids, _, _ = jax.lax.fori_loop(1, k, body, (centroids, min_d, key))
    return centroids


def _lloyd(x, x_sq, centroids, num_iters):
    k = centroids.shape[0]

    def body(_, centroids):
        labels, _ = _assign(x, x_sq, centroids)
        sums = jax.ops.segment_sum(x, labels, num_segments=k)
        counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), labels, num_segments=k)
        # An empty cluster keeps its centroid.
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centroids)

    centroids = jax.lax.fori_loop(0, num_iters, body, centroids)
    labels, inertia = _assign(x, x_sq, centroids)
    return KMeansResult(centroids, labels.astype(jnp.int32), inertia)


@functools.partial(jax.jit, static_argnames=("k", "num_iters", "n_init"))
def _kmeans(x, key, init, *, k, num_iters, n_init):
    x_sq = jnp.sum(jnp.square(x), axis=1)
    if init is not None:
        return _lloyd(x, x_sq, init, num_iters)
    runs = jax.vmap(lambda kk: _lloyd(x, x_sq, _kmeans_pp(x, x_sq, k, kk), num_iters))(
        jax.random.split(key, n_init)
    )
    best = jnp.argmin(runs.inertia)  # First of equal inertias.
    return jax.tree.map(lambda a: a[best], runs)


def kmeans(
    x: jax.Array,
    k: int,
    *,
    key: jax.Array,
    num_iters: int = 100,
    n_init: int = 3,
    init: jax.Array | None = None,
) -> KMeansResult:
    r"""k-means (Lloyd's algorithm) with k-means++ seeding, in JAX.

    Minimises the inertia :math:`\sum_i \min_c \lVert x_i - \mu_c \rVert^2`.
    Each of ``n_init`` runs seeds its centroids with k-means++ (Arthur &
    Vassilvitskii 2007: the first uniformly, each next one drawn with
    probability proportional to the squared distance to the nearest centroid
    chosen so far), then runs ``num_iters`` Lloyd iterations (assign to the
    nearest centroid, ties to the lower centroid index; move each centroid to
    the mean of its rows; an empty cluster keeps its centroid). The run with
    the lowest inertia is returned. The runs are ``vmap``-ed and the loops are
    ``fori_loop``-s: a fixed amount of work, deterministic given ``key``.

    Args:
      x: [N, D] float data.
      k: number of clusters, in [1, N].
      key: PRNG key of the seeding.
      num_iters: Lloyd iterations per run, >= 0.
      n_init: number of seeded runs, >= 1.
      init: optional [k, D] initial centroids (then a single run, no seeding).

    Returns:
      A `KMeansResult` (centroids [k, D], labels [N], inertia).

    Reference:
      Lloyd, "Least squares quantization in PCM", 1982; Arthur & Vassilvitskii,
      "k-means++: the advantages of careful seeding", SODA 2007.
    """
    x = _check_embeddings(x, "x")
    if not isinstance(k, int | np.integer) or not 1 <= k <= x.shape[0]:
        raise ValueError(f"`k` must be an int in [1, {x.shape[0]}], got {k!r}.")
    if not isinstance(num_iters, int | np.integer) or num_iters < 0:
        raise ValueError(f"`num_iters` must be an int >= 0, got {num_iters!r}.")
    if not isinstance(n_init, int | np.integer) or n_init < 1:
        raise ValueError(f"`n_init` must be a positive int, got {n_init!r}.")
    if init is not None:
        init = jnp.asarray(init, jnp.float32)
        if init.shape != (k, x.shape[1]):
            raise ValueError(f"`init` must have shape {(k, x.shape[1])}, got {init.shape}.")
    return _kmeans(x, key, init, k=int(k), num_iters=int(num_iters), n_init=int(n_init))


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def normalized_mutual_info(labels_true, labels_pred) -> float:
    r"""Normalised mutual information with the arithmetic mean normaliser.

    .. math::

        \mathrm{NMI}(U, V) = \frac{I(U; V)}{(H(U) + H(V)) / 2},\qquad
        I(U;V) = \sum_{ij} \frac{n_{ij}}{n} \log \frac{n\, n_{ij}}{a_i b_j},

    with the contingency counts n_ij, row sums a_i and column sums b_j.
    Matches ``sklearn.metrics.normalized_mutual_info_score`` (its default
    ``average_method="arithmetic"``), including its conventions: 1.0 when
    both labelings are one single cluster, 0.0 when I(U; V) = 0.

    Args:
      labels_true: [N] int class labels.
      labels_pred: [N] int cluster labels.

    Returns:
      NMI in [0, 1].

    Reference:
      Strehl & Ghosh, "Cluster ensembles", JMLR 2002; Vinh, Epps & Bailey,
      "Information theoretic measures for clusterings comparison", JMLR 2010.
    """
    u = np.asarray(labels_true)
    v = np.asarray(labels_pred)
    if u.ndim != 1 or v.shape != u.shape:
        raise ValueError(
            f"`labels_true` and `labels_pred` must be 1-D of one length, got {u.shape} "
            f"and {v.shape}."
        )
    _, ui = np.unique(u, return_inverse=True)
    _, vi = np.unique(v, return_inverse=True)
    nu, nv = ui.max(initial=-1) + 1, vi.max(initial=-1) + 1
    if (nu == nv == 1) or (nu == nv == 0):
        return 1.0
    table = np.zeros((nu, nv), np.float64)
    np.add.at(table, (ui, vi), 1.0)
    n = table.sum()
    a = table.sum(axis=1)
    b = table.sum(axis=0)
    nz = table > 0
    mi = float(np.sum(table[nz] / n * (np.log(table[nz] * n) - np.log(np.outer(a, b)[nz]))))
    mi = max(mi, 0.0)
    if mi == 0.0:
        return 0.0
    normaliser = max((_entropy(a) + _entropy(b)) / 2.0, np.finfo(np.float64).eps)
    return float(mi / normaliser)


def clustering_metrics(labels_true, labels_pred) -> dict[str, float]:
    """NMI (`normalized_mutual_info`) and AMI of a clustering against classes.

    AMI is scikit-learn's ``adjusted_mutual_info_score`` (arithmetic
    normaliser, expected MI under the hypergeometric model; Vinh et al. 2010).

    Args:
      labels_true: [N] int class labels.
      labels_pred: [N] int cluster labels (e.g. ``kmeans(...).labels``).

    Returns:
      ``{"nmi": ..., "ami": ...}`` as Python floats.
    """
    from sklearn.metrics import adjusted_mutual_info_score

    nmi = normalized_mutual_info(labels_true, labels_pred)
    ami = adjusted_mutual_info_score(np.asarray(labels_true), np.asarray(labels_pred))
    return {"nmi": nmi, "ami": float(ami)}


# --------------------------------------------------------------------------------------
# Everything at once.
# --------------------------------------------------------------------------------------


def evaluate_embeddings(
    train_emb: jax.Array,
    train_labels: jax.Array,
    test_emb: jax.Array,
    test_labels: jax.Array,
    *,
    supervised: bool,
    metric: str = "cosine",
    knn_k: int = 20,
    seed: int = 0,
    max_verification_pairs: int = 100_000,
    block_size: int = 128,
) -> dict[str, float]:
    """Every metric of this module on one train / test split (``metrics.json``).

    - ``knn_accuracy``: majority vote of the ``knn_k`` nearest training rows;
      ``knn_accuracy_weighted``: the DINO-style exp(cos / 0.07) vote.
    - ``linear_probe_accuracy``: `linear_probe_accuracy` with its defaults.
    - ``nmi``, ``ami``: `kmeans` on the test embeddings (L2-normalised for
      ``metric="cosine"``) with one cluster per test class, against the labels.
    - ``supervised=True`` adds the retrieval metrics of the test set against
      itself (leave-one-out; `retrieval_metrics`) and the verification metrics
      (`verification_metrics`) of test pairs (all pairs, or
      ``max_verification_pairs`` positive and negative ones when there are
      more).

    Args:
      train_emb: [N, D] float embeddings of the labelled training split.
      train_labels: [N] int labels.
      test_emb: [N_test, D] float embeddings of the evaluation split.
      test_labels: [N_test] int labels.
      supervised: add the retrieval and verification metrics.
      metric: "cosine" or "euclidean".
      knn_k: neighbours of the kNN classifiers.
      seed: seed of the probe split, k-means and pair sampling.
      max_verification_pairs: pairs of each kind at most.
      block_size: query rows per block.

    Returns:
      A flat dict of Python floats, fractions in [0, 1].
    """
    _checks.check_choice(metric, RETRIEVAL_METRICS, "metric")
    train_emb = _check_embeddings(train_emb, "train_emb")
    test_emb = _check_embeddings(test_emb, "test_emb")
    test_labels = _check_labels(test_labels, test_emb.shape[0], "test_labels")
    k = min(knn_k, train_emb.shape[0])
    out: dict[str, float] = {}
    out["knn_accuracy"] = knn_accuracy(
        train_emb, train_labels, test_emb, test_labels, k=k, metric=metric, block_size=block_size
    )
    out["knn_accuracy_weighted"] = knn_accuracy(
        train_emb,
        train_labels,
        test_emb,
        test_labels,
        k=k,
        metric=metric,
        weighted=True,
        block_size=block_size,
    )
    out["linear_probe_accuracy"] = linear_probe_accuracy(
        train_emb, train_labels, test_emb, test_labels, seed=seed
    )
    num_clusters = int(np.unique(np.asarray(test_labels)).size)
    x = l2_normalize(test_emb) if metric == "cosine" else test_emb
    clusters = kmeans(x, num_clusters, key=jax.random.key(seed)).labels
    out.update(clustering_metrics(test_labels, clusters))
    if supervised:
        retrieval = retrieval_metrics(test_emb, test_labels, metric=metric, block_size=block_size)
        retrieval.pop("num_queries")
        out.update(retrieval)
        n = test_emb.shape[0]
        all_pairs = n * (n - 1) // 2 <= 2 * max_verification_pairs
        labels_np = np.asarray(test_labels)
        if len(np.unique(labels_np)) > 1 and np.bincount(labels_np).max() > 1:
            scores, same = verification_pairs(
                test_emb,
                test_labels,
                metric=metric,
                num_pairs=None if all_pairs else max_verification_pairs,
                seed=seed,
            )
            out.update(verification_metrics(scores, same))
    return out
