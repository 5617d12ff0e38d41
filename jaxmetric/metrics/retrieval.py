"""Retrieval metrics (P@1, R-precision, MAP@R, Recall@k, and mAP), from the k nearest neighbours.

Each query needs its R nearest references (R = the number of references with
its label) and its max(recall_at) nearest: `jaxmetric.search.knn` finds the
top K = max(R, k) of every query exactly, in blocks of query rows (only a
[block_size, M] slice of the distances exists at a time), and the metrics
follow from those K labels. The full ranking, which the mean average
precision over all references needs, is computed only when asked for.
Query blocks are split over the devices, the reference replicated.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmetric.metrics import _common
from jaxmetric.metrics._common import RETRIEVAL_METRICS
from jaxmetric.search import knn

__all__ = ["RETRIEVAL_METRICS", "retrieval_metrics"]


def _retrieval_block(
    q,
    q_labels,
    q_index,
    q_valid,
    q_num_relevant,
    ref,
    ref_labels,
    *,
    metric,
    loo,
    top,
    ks,
    full_ranking,
):
    """Per-metric sums over the valid queries of one block, and their count."""
    # Leave-one-out searches one neighbour more and drops the query itself
    # (wherever ties put it; the last neighbour if it is not among them).
    _, idx = knn(q, ref, top + loo, metric=metric, block_size=ref.shape[0])
    if loo:
        cols = jnp.arange(top)[None, :]
        self_at = jnp.argmax(
            jnp.concatenate([idx == q_index[:, None], jnp.ones_like(idx[:, :1], bool)], axis=1),
            axis=1,
        )
        idx = jnp.take_along_axis(idx, cols + (cols >= self_at[:, None]), axis=1)
    rel = (ref_labels[idx] == q_labels[:, None]).astype(jnp.float32)
    hits = jnp.cumsum(rel, axis=1)  # Relevant items within the first i.
    pos = jnp.arange(1, top + 1, dtype=jnp.float32)[None, :]
    precision_at_hits = rel * hits / pos  # P(i) rel(i).
    num_relevant = q_num_relevant.astype(jnp.float32)
    within_r = pos <= num_relevant[:, None]
    r_denominator = jnp.maximum(num_relevant, 1.0)
    per_query = [
        rel[:, 0],  # precision_at_1
        jnp.sum(rel * within_r, axis=1) / r_denominator,  # r_precision
        jnp.sum(precision_at_hits * within_r, axis=1) / r_denominator,  # map_at_r
    ]
    per_query += [(hits[:, k - 1] > 0).astype(jnp.float32) for k in ks]
    if full_ranking:  # top = every reference: mean_average_precision.
        per_query.append(jnp.sum(precision_at_hits, axis=1) / r_denominator)
    valid = q_valid & (q_num_relevant > 0)
    sums = jnp.stack([jnp.sum(jnp.where(valid, v, 0.0)) for v in per_query])
    return sums, jnp.sum(valid.astype(jnp.int32))


@functools.partial(
    jax.jit, static_argnames=("metric", "loo", "top", "ks", "full_ranking", "block_size", "mesh")
)
def _retrieval_sums(
    query,
    query_labels,
    num_relevant,
    query_offset,
    reference,
    reference_labels,
    *,
    metric,
    loo,
    top,
    ks,
    full_ranking,
    block_size,
    mesh,
):
    num_query = query.shape[0]
    multiple = block_size * (1 if mesh is None else mesh.size)
    index = query_offset + jnp.arange(num_query, dtype=jnp.int32)
    xs = (
        _common.blocks(_common.pad_rows(query, multiple), block_size),
        _common.blocks(_common.pad_rows(query_labels, multiple), block_size),
        _common.blocks(_common.pad_rows(index, multiple, -1), block_size),
        _common.blocks(_common.pad_rows(jnp.ones(num_query, bool), multiple, False), block_size),
        _common.blocks(_common.pad_rows(num_relevant, multiple), block_size),
    )

    def run(q, q_labels, q_index, q_valid, q_num_relevant, ref, ref_labels):
        def body(args):
            return _retrieval_block(
                *args,
                ref,
                ref_labels,
                metric=metric,
                loo=loo,
                top=top,
                ks=ks,
                full_ranking=full_ranking,
            )

        return jax.lax.map(body, (q, q_labels, q_index, q_valid, q_num_relevant))

    if mesh is not None:
        # Each device walks over its share of the query blocks against the
        # replicated reference; devices run in parallel (also CPU devices).
        blocks, replicated = jax.sharding.PartitionSpec("blocks"), jax.sharding.PartitionSpec()
        run = jax.shard_map(
            run,
            mesh=mesh,
            in_specs=(blocks,) * 5 + (replicated,) * 2,
            out_specs=(blocks, blocks),
        )
    # Per-block sums and counts; summed in float64 on the host.
    return run(*xs, reference, reference_labels)


def _host_chunks(num_query: int, block_size: int, mesh) -> int:
    """How many concurrent calls the query rows go in: the CPU cores on a
    single CPU device (at least a block each), else one."""
    if mesh is not None or jax.default_backend() != "cpu":
        return 1
    return max(1, min(os.cpu_count() or 1, num_query // block_size))


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
    mean_average_precision: bool = False,
    block_size: int | None = None,
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

    each averaged over the queries (``mean_average_precision``, computed when
    asked for, is the mean of AP over the full ranking; ``recall_at_k`` is
    the "Recall@K" of deep metric learning papers: the fraction of queries
    with at least one same-label
    reference among their k nearest).

    **Queries with R = 0 are left out of every average**, as
    pytorch-metric-learning's ``AccuracyCalculator`` does with its "lone query
    labels": in leave-one-out mode these are the queries whose class has one
    sample; with a separate reference set, the queries whose label does not
    occur in it. If no query has R > 0, every metric is 0.0.

    PML's ``AccuracyCalculator(k=None)`` (all references retrieved, self
    removed by index) gives the same numbers up to its tie order (faiss /
    ``torch.topk``) and float32 rounding: checked against PML 2.9 in
    ``tests/metrics/test_retrieval_pml.py`` (run it in ``.venv-bench``); older PML versions
    truncated the ranking at ``k = max_bin_count`` (at most 1023), which
    changes ``mean_average_precision`` and, for classes with more than 1023
    samples, MAP@R and R-precision.

    Memory and time: the queries are processed ``block_size`` rows at a time
    with ``jax.lax.map``; each block holds a few [block_size, M] arrays and
    finds its K = max(R_max, max(recall_at)) nearest references with
    `jaxmetric.search.knn` (R_max: the largest R of any query), O(N M log K)
    in all; ``mean_average_precision=True`` ranks every reference instead,
    O(N M log M).
    With several devices the query blocks are split over them with
    ``jax.shard_map`` (the reference is replicated), and they run in
    parallel; on a single CPU device the query rows go in one chunk per
    core, run concurrently from host threads (XLA's CPU top-k uses one
    thread). The result does not depend on either.

    Args:
      query: [N, D] float embeddings.
      query_labels: [N] non-negative int labels.
      reference: [M, D] float embeddings, or None for leave-one-out within
        ``query`` (each query is compared with every other query row).
      reference_labels: [M] labels; required with ``reference``.
      metric: "cosine" (1 - cos) or "euclidean".
      recall_at: the k of the ``recall_at_{k}`` keys, positive ints.
      mean_average_precision: also return ``mean_average_precision``, the
        mean AP over the full ranking (ranks all M references per query).
      block_size: query rows per block; None: about 2^24 distances per
        block.
      devices: devices to split the query blocks over; None: all of
        ``jax.local_devices()`` (on CPU, set ``jax_num_cpu_devices`` to the
        number of cores to use them all).

    Returns:
      A dict of Python floats with keys ``precision_at_1``, ``r_precision``,
      ``map_at_r``, ``recall_at_{k}`` for each k, ``mean_average_precision``
      if asked for,
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
    _common.check_metric(metric)
    ks = tuple(recall_at)
    for k in ks:
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"`recall_at` must hold positive ints, got {recall_at!r}.")
    ks = tuple(int(k) for k in ks)
    query = _common.check_embeddings(query, "query")
    query_labels = _common.check_labels(query_labels, query.shape[0], "query_labels")
    loo = reference is None
    if loo:
        if reference_labels is not None:
            raise ValueError("`reference_labels` was given without `reference`.")
        reference, reference_labels = query, query_labels
    else:
        if reference_labels is None:
            raise ValueError("`reference_labels` is required when `reference` is given.")
        reference = _common.check_embeddings(reference, "reference")
        reference_labels = _common.check_labels(
            reference_labels, reference.shape[0], "reference_labels"
        )
    _common.check_same_dim(reference, "reference", query, "query")
    if loo and query.shape[0] < 2:
        raise ValueError(f"leave-one-out needs at least 2 `query` rows, got {query.shape[0]}.")
    # R of every query: the references with its label, itself left out.
    host_query_labels = np.asarray(query_labels)
    counts = np.bincount(np.asarray(reference_labels), minlength=int(host_query_labels.max()) + 1)
    num_relevant = counts[host_query_labels] - int(loo)
    candidates = reference.shape[0] - int(loo)
    if mean_average_precision:
        top = candidates
    else:
        top = min(max(int(num_relevant.max()), max(ks, default=1), 1), candidates)
    block_size = min(_common.query_block_size(block_size, reference.shape[0]), query.shape[0])
    mesh = _query_mesh(devices)
    run = functools.partial(
        _retrieval_sums,
        reference=reference,
        reference_labels=reference_labels,
        metric=metric,
        loo=loo,
        top=top,
        ks=tuple(min(k, top) for k in ks),
        full_ranking=mean_average_precision,
        block_size=block_size,
        mesh=mesh,
    )
    num_relevant = jnp.asarray(num_relevant, jnp.int32)
    # XLA's CPU top-k runs on one thread: on a single CPU device, the query
    # rows go in as many equal chunks as there are cores, run concurrently
    # from host threads (padding rows have R = 0 and count for nothing).
    chunks = _host_chunks(query.shape[0], block_size, mesh)
    size = -(-query.shape[0] // chunks)
    parts = [
        (
            _common.pad_rows(query[start : start + size], size),
            _common.pad_rows(query_labels[start : start + size], size),
            _common.pad_rows(num_relevant[start : start + size], size),
            jnp.int32(start),
        )
        for start in range(0, query.shape[0], size)
    ]
    with concurrent.futures.ThreadPoolExecutor(len(parts)) as pool:
        results = list(pool.map(lambda part: jax.device_get(run(*part)), parts))
    sums = sum(np.asarray(s, dtype=np.float64).sum(axis=0) for s, _ in results)
    count = int(sum(np.asarray(c).sum() for _, c in results))
    means = sums / count if count else np.zeros_like(sums)
    names = ["precision_at_1", "r_precision", "map_at_r"] + [f"recall_at_{k}" for k in ks]
    if mean_average_precision:
        names.append("mean_average_precision")
    out = {name: float(v) for name, v in zip(names, means, strict=True)}
    out["num_queries"] = count
    return out
