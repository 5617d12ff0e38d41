"""Exact k-nearest-neighbour search, and an ``Index`` of a gallery.

``knn`` returns, for every query row, the ``k`` reference rows closest to it
(cosine or Euclidean distance), exactly: optionally blockwise over the
reference with a running top-k merge (memory O(Q (block + k)) instead of
O(Q M)), and optionally over a reference sharded along its rows across the
devices of a mapped axis. It is pure and jit-compatible; ``k``, ``metric``,
``block_size`` and ``axis_name`` are static.

References are ranked on a key that one matrix product gives (the cosine
similarity; for Euclidean distance q.r - |r|^2 / 2), and ties go to the lower
reference index. ``jax.lax.top_k`` returns the earlier of equal values first,
so every merge concatenates its candidates in the order of their reference
indices (the running best of earlier blocks, sorted by (key, index), before
the current block's best; device 0's best before device 1's), which makes
the result ranked on (key, index) whatever the block size and the number of
devices.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmetric import _checks, parallel
from jaxmetric.distances import l2_normalize, safe_sqrt

KNN_METRICS = ("cosine", "euclidean")
# The automatic block size: whole reference while [Q, M] has at most
# AUTO_BLOCK_DISTANCES entries, else blocks of that many entries (and at least
# MIN_AUTO_BLOCK rows). On XLA:CPU, 10k queries x 100k references took 0.9 s
# in blocks of 1k-10k rows against 2.2 s at once (the [Q, M] matrix leaves
# the caches and memory bandwidth bounds the product).
AUTO_BLOCK_DISTANCES = 2**26
MIN_AUTO_BLOCK = 1024


def _block_keys(q: jax.Array, r: jax.Array, valid: jax.Array, metric: str) -> jax.Array:
    """[Q, b] ranking keys of the queries against a block of reference rows:
    larger = nearer, one matrix product.

    The queries come as [q, 1] (cosine: q normalised), each reference row as
    [r, c]: cosine, [r / |r|, 0], the key is cos; euclidean, [r, -|r|^2 / 2],
    the key is q.r - |r|^2 / 2 = (|q|^2 - d^2) / 2. An invalid row has
    c = -inf (its key is -inf). The block keeps its stored dtype until here
    (a bfloat16 gallery stays half the size); it is cast to the queries'
    float32 (or wider). The explicit +0.0 constants keep the keys free of
    -0.0, which top-k's total order would rank after +0.0.
    """
    r = r.astype(q.dtype)
    if metric == "cosine":
        r, last = l2_normalize(r), jnp.zeros(r.shape[0], r.dtype)
    else:
        r_sq = jnp.sum(jnp.square(r), axis=1)
        last = jnp.where(r_sq > 0, -0.5 * r_sq, 0.0)
    last = jnp.where(valid, last, -jnp.inf)
    return q @ jnp.concatenate([r, last[:, None]], axis=1).T


def _distances(keys: jax.Array, q_sq: jax.Array, metric: str) -> jax.Array:
    """Distances of `_block_keys` (+inf for -inf keys)."""
    if metric == "cosine":
        return jnp.where(jnp.isneginf(keys), jnp.inf, jnp.maximum(1.0 - keys, 0.0))
    return safe_sqrt(jnp.maximum(q_sq[:, None] - 2.0 * keys, 0.0))


# The exact top-k of a long row goes through groups of GROUP adjacent columns
# when the row has at least GROUPED_MIN_COLUMNS_PER_K * k columns: XLA's
# top-k costs a few ns per column on CPU, a max over the groups a fraction of
# that, and the k best columns always lie in the k groups with the best maxima
# (see `_grouped_top_k`). Measured on XLA:CPU: 2x faster at k = 10 over 20k
# columns; no gain at k = 200, where the row is not long enough.
GROUP = 16
GROUPED_MIN_COLUMNS_PER_K = 8 * GROUP


def _grouped_top_k(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """``jax.lax.top_k(x, k)`` of [Q, n] ``x``, exactly, through column groups.

    Order the entries by (value descending, column ascending): the k first
    entries lie in the k groups whose first-ranked entries rank first (a
    group outside them has k groups' entries ranking before its best one).
    Groups are contiguous columns, so ranking the group maxima by value with
    ties to the lower group is that order, and the chosen groups, put back in
    column order, hand ``top_k`` its candidates in column order: equal values
    still go to the lower column.
    """
    rows, n = x.shape
    pad = -n % GROUP
    if pad:  # -inf columns after the real ones; k <= n real columns rank first.
        x = jnp.pad(x, ((0, 0), (0, pad)), constant_values=-jnp.inf)
    groups = x.reshape(rows, -1, GROUP)
    _, chosen = jax.lax.top_k(jnp.max(groups, axis=2), k)
    chosen = jnp.sort(chosen, axis=1)
    candidates = jnp.take_along_axis(groups, chosen[:, :, None], axis=1).reshape(rows, -1)
    values, pos = jax.lax.top_k(candidates, k)
    columns = jnp.take_along_axis(chosen, pos // GROUP, axis=1) * GROUP + pos % GROUP
    return values, columns


def _top_k(
    keys: jax.Array, index: jax.Array, k: int, recall_target: float | None = None
) -> tuple[jax.Array, jax.Array]:
    """The k largest of ``keys`` [Q, n] (earlier column first among equals)
    and their ``index`` [Q, n] or [n]; approximate with ``recall_target``."""
    if recall_target is not None:
        top, pos = jax.lax.approx_max_k(keys, k, recall_target=recall_target)
    elif keys.shape[1] >= GROUPED_MIN_COLUMNS_PER_K * k:
        top, pos = _grouped_top_k(keys, k)
    else:
        top, pos = jax.lax.top_k(keys, k)
    if index.ndim == 1:
        chosen = index[pos]
    else:
        chosen = jnp.take_along_axis(index, pos, axis=1)
    return top, chosen


def knn(
    queries: jax.Array,
    reference: jax.Array,
    k: int,
    *,
    metric: str = "cosine",
    reference_mask: jax.Array | None = None,
    block_size: int | None = None,
    axis_name: str | None = None,
    recall_target: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""Exact (or, with ``recall_target``, approximate) k nearest reference rows of every query row.

    .. math::
        \operatorname{knn}(q_i) = \text{the } k \text{ indices } j \text{ with }
        r_j \text{ valid of smallest } (d(q_i, r_j), j) \text{ in lexicographic order}

    - ``"cosine"``: d(q, r) = 1 - <q, r> / (max(||q||, eps) max(||r||, eps)),
      so a zero vector is at distance 1 from everything (no NaN);
    - ``"euclidean"``: d(q, r) = sqrt(max(||q||^2 + ||r||^2 - 2 <q, r>, 0))
      (not squared; 0 for squared distances below 1e-12).

    Ties go to the lower reference index. The ranking is computed on float32
    keys in one matrix product, [q, 1] . [r, c] (cosine: q and r normalised,
    c = 0; euclidean: c = -||r||^2 / 2, so the key is (||q||^2 - d^2) / 2),
    and the distances of the k chosen rows from their keys: two rows whose
    distances round to the same float32 rank by their keys. Rows with
    ``reference_mask`` False are never returned (c = -inf): when fewer than
    ``k`` rows are valid, the remaining slots hold distance +inf and index
    -1, as do rows with ||r||^2 beyond float32's range.

    ``block_size`` scans the reference in blocks of that many rows (rounded up
    to a multiple of ``GROUP``; the last one padded with masked rows),
    keeping a running top-k, so the memory is
    O(Q (block_size + k)) instead of O(Q M); the result is the same. The
    default (None) takes the whole reference at once when the [Q, M]
    distances have at most ``AUTO_BLOCK_DISTANCES`` (2^26, 256 MiB) entries,
    and otherwise blocks of ``AUTO_BLOCK_DISTANCES // Q`` rows (at least
    ``MIN_AUTO_BLOCK``): large enough for the matrix product to run at full
    speed, small enough for the memory to stay bounded. Pass ``block_size=M``
    to force a single block. Callers with very many queries cut them into
    blocks themselves (``Index.search`` does).

    ``recall_target`` (in (0, 1]) selects with ``jax.lax.approx_max_k``,
    which TPUs accelerate; the fraction of true neighbours returned is then
    about ``recall_target`` and ties are in no particular order. Other
    backends compute it exactly.

    With ``axis_name`` (inside ``jax.shard_map`` or ``jax.pmap``),
    ``reference`` and ``reference_mask`` are this device's shard of a
    reference sharded along its rows over that axis (device d holding global
    rows [d m, (d + 1) m)) and ``queries`` are replicated: each device finds
    its local top-k with global indices, the candidates of all devices are
    all-gathered and merged, and every device returns the single-device
    result of the whole reference (replicated, so ``out_specs=P()``).

    Args:
      queries: [Q, D] floating array.
      reference: [M, D] floating array (the local [m, D] shard with
        ``axis_name``).
      k: number of neighbours, 1 <= k <= M (the global M when sharded).
      metric: "cosine" or "euclidean".
      reference_mask: [M] bool, valid reference rows (the local [m] shard
        with ``axis_name``). None: all valid.
      block_size: reference rows per block, or None for all at once.
      axis_name: mapped axis the reference is sharded over, or None.
      recall_target: None (exact), or the expected recall of the
        approximate search.

    Returns:
      ``(distances, indices)``: [Q, k] float32 distances in ascending order
      and [Q, k] int32 (global) reference indices.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxmetric.search import knn
      >>> ref = jnp.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [1.0, 0.0]])
      >>> dist, idx = knn(jnp.array([[1.0, 0.0]]), ref, 3, metric="euclidean")
      >>> dist.tolist(), idx.tolist()
      ([[0.0, 0.0, 1.0]], [[2, 3, 0]])

    Reference:
      Johnson, Douze, Jégou, "Billion-scale similarity search with GPUs"
      (exact brute-force k-selection, the baseline of FAISS's IndexFlat),
      IEEE Transactions on Big Data 2019.
    """
    _checks.check_choice(metric, KNN_METRICS, "metric")
    q = _checks.check_embeddings(queries, "queries")
    # The reference keeps its dtype (a bfloat16 gallery stays half the size);
    # each block is cast to the queries' float32 (or wider) when compared.
    r = jnp.asarray(reference)
    if r.ndim != 2 or not jnp.issubdtype(r.dtype, jnp.floating):
        raise ValueError(
            f"`reference` must be a 2-D floating array [M, dim], got {r.dtype} {r.shape}."
        )
    if r.shape[1] != q.shape[1]:
        raise ValueError(
            f"`reference` must have the feature dimension of `queries` ({q.shape[1]}), "
            f"got shape {r.shape}."
        )
    if r.shape[0] == 0:
        raise ValueError(f"`reference` must have at least one row, got shape {r.shape}.")
    dtype = jnp.promote_types(q.dtype, r.dtype)
    q = q.astype(dtype)
    m = r.shape[0]
    num_devices = parallel.axis_size(axis_name)
    k = _checks.check_int(k, "k")
    if k > m * num_devices:
        where = f" ({num_devices} shards of {m})" if axis_name is not None else ""
        raise ValueError(
            f"`k` must be <= the number of reference rows {m * num_devices}{where}, got {k}."
        )
    if block_size is None:
        if q.shape[0] * m > AUTO_BLOCK_DISTANCES:
            block_size = max(MIN_AUTO_BLOCK, AUTO_BLOCK_DISTANCES // q.shape[0])
    else:
        block_size = _checks.check_int(block_size, "block_size")
    if recall_target is not None and not 0.0 < recall_target <= 1.0:
        raise ValueError(f"`recall_target` must be in (0, 1], got {recall_target!r}.")
    mask = _checks.check_mask(reference_mask, m, "reference_mask")

    q_sq = jnp.sum(jnp.square(q), axis=1)
    if metric == "cosine":
        q = l2_normalize(q)
    q = jnp.concatenate([q, jnp.ones((q.shape[0], 1), q.dtype)], axis=1)
    offset = parallel.axis_index(axis_name).astype(jnp.int32) * m
    index = offset + jnp.arange(m, dtype=jnp.int32)
    local_k = min(k, m)

    if block_size is None or block_size >= m:
        best, best_i = _top_k(_block_keys(q, r, mask, metric), index, local_k, recall_target)
    else:
        # Blocks of a multiple of GROUP rows: the grouped top-k needs no padding.
        block_size = min(-(-block_size // GROUP) * GROUP, m)
        num_blocks = -(-m // block_size)

        def step(carry, block):
            # Slices, not a padded copy of the reference: the last block ends
            # at row m and masks the rows the previous block already had.
            start = jnp.minimum(block * block_size, m - block_size)
            rows = jax.lax.dynamic_slice_in_dim(r, start, block_size)
            rows_index = jax.lax.dynamic_slice_in_dim(index, start, block_size)
            fresh = start + jnp.arange(block_size) >= block * block_size
            valid = jax.lax.dynamic_slice_in_dim(mask, start, block_size) & fresh
            # The block's own top-k, then a merge with the running best: the
            # earlier blocks (lower indices) first, so ties keep the lower index.
            keys = _block_keys(q, rows, valid, metric)
            top, top_i = _top_k(keys, rows_index, min(local_k, block_size), recall_target)
            both = jnp.concatenate([carry[0], top], axis=1)
            both_i = jnp.concatenate([carry[1], top_i], axis=1)
            return _top_k(both, both_i, local_k), None

        init = (
            jnp.full((q.shape[0], local_k), -jnp.inf, dtype),
            jnp.full((q.shape[0], local_k), -1, jnp.int32),
        )
        init = parallel.to_varying(init, axis_name)
        (best, best_i), _ = jax.lax.scan(step, init, jnp.arange(num_blocks))

    if axis_name is not None:
        # [Q, devices * local_k], device by device: in the order of the indices.
        best = jnp.moveaxis(parallel.gather(best.T, axis_name, invariant=True), 0, 1)
        best_i = jnp.moveaxis(parallel.gather(best_i.T, axis_name, invariant=True), 0, 1)
        best, best_i = _top_k(best, best_i, k)
    dist = _distances(best, q_sq, metric)
    return dist, jnp.where(jnp.isinf(dist), -1, best_i)


def _aligned_rows(*parts: np.ndarray) -> np.ndarray:
    """The rows of ``parts``, one after another, in a float32 array at a
    64-byte-aligned address: the CPU backend then puts it on the device
    without copying it (a 1M x 128 gallery is 512 MB once, not twice)."""
    rows = sum(len(x) for x in parts)
    shape = (rows, *parts[0].shape[1:])
    nbytes = int(np.prod(shape)) * 4
    buffer = np.empty(nbytes + 64, np.uint8)
    start = -buffer.ctypes.data % 64
    out = buffer[start : start + nbytes].view(np.float32).reshape(shape)
    row = 0
    for x in parts:
        out[row : row + len(x)] = x
        row += len(x)
    return out


# Queries per call of the compiled search in `Index.search` (the last block is
# padded to this size, so every call reuses one compilation).
QUERY_BLOCK = 4096
# How an Index holds its gallery on the devices.
STORAGE = {"float32": np.float32, "bfloat16": jnp.bfloat16}


@functools.partial(jax.jit, static_argnames=("k", "metric"))
def _rerank(queries, candidates, *, k, metric):
    """(distances, positions) of the k nearest of each query's own [c, D]
    float32 ``candidates`` (in candidate order among ties)."""

    def one(q, rows):
        return knn(q[None], rows, k, metric=metric, block_size=rows.shape[0])

    d, pos = jax.vmap(one)(queries, candidates)
    return d[:, 0], pos[:, 0]


@functools.partial(jax.jit, static_argnames=("k", "metric", "block_size", "mesh"))
def _search_block(queries, gallery, mask, *, k, metric, block_size, mesh):
    """``knn`` of a block of queries; over ``mesh``'s one axis when given, the
    gallery sharded along its rows (and padded with masked rows)."""
    axis = None if mesh is None else mesh.axis_names[0]

    def search(queries, gallery, mask):
        return knn(
            queries,
            gallery,
            k,
            metric=metric,
            reference_mask=mask,
            block_size=block_size,
            axis_name=axis,
        )

    if mesh is None:
        return search(queries, gallery, mask)
    rows = jax.sharding.PartitionSpec(axis)
    sharded = jax.shard_map(
        search,
        mesh=mesh,
        in_specs=(jax.sharding.PartitionSpec(), rows, rows),
        out_specs=jax.sharding.PartitionSpec(),
    )
    return sharded(queries, gallery, mask)


class Index:
    """A gallery of embeddings (and optionally labels) to search with ``knn``.

    ``add`` appends rows, ``search`` returns the ``k`` nearest gallery rows of
    each query (their distances, gallery indices and, where labels were
    added, their labels), ``save`` writes the index to one ``.npz`` file
    atomically (a process killed while saving leaves the previous file), and
    ``Index.load`` reads it back, refusing another dimension or metric than
    the caller expects.

    The gallery lives on the host (float32) and is put on the devices once
    per ``add`` (at the first search after it). With
    ``storage="bfloat16"`` the devices hold it in bfloat16 (half the memory):
    the search finds ``rerank * k`` candidates on the rounded gallery, and
    their exact float32 distances (from the host copy) pick the ``k``
    returned, so distances are exact and the neighbours are those of the
    float32 search unless a true neighbour fell out of the candidates
    (recall measured in the tests). With ``mesh`` (a
    ``jax.sharding.Mesh`` of one axis) it is sharded along its rows over the
    mesh's devices, so a gallery larger than one device's memory is
    searched, each device finding its own top-k and the candidates merged
    (``knn`` with ``axis_name``); the results are those of one device.
    Queries go through one compiled search ``query_block`` rows at a time.

    Example:
      >>> import numpy as np
      >>> from jaxmetric.search import Index
      >>> index = Index(2)
      >>> index.add(np.array([[1.0, 0.0], [0.0, 1.0]]), labels=np.array([7, 9]))
      >>> _, idx, labels = index.search(np.array([[0.1, 1.0]]), k=1)
      >>> int(idx[0, 0]), int(labels[0, 0])
      (1, 9)
    """

    FORMAT = 1

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "cosine",
        mesh: jax.sharding.Mesh | None = None,
        storage: str = "float32",
        rerank: int = 4,
    ) -> None:
        self.dim = _checks.check_int(dim, "dim")
        self.metric = _checks.check_choice(metric, KNN_METRICS, "metric")
        self.storage = _checks.check_choice(storage, STORAGE, "storage")
        self.rerank = _checks.check_int(rerank, "rerank")
        if mesh is not None and len(mesh.axis_names) != 1:
            raise ValueError(f"`mesh` must have one axis, got axes {mesh.axis_names}.")
        self.mesh = mesh
        self._embeddings = np.zeros((0, self.dim), np.float32)
        self._labels: np.ndarray | None = None
        self._on_device: tuple[jax.Array, jax.Array] | None = None

    def __len__(self) -> int:
        return int(self._embeddings.shape[0])

    @property
    def embeddings(self) -> np.ndarray:
        """The gallery [N, dim] (float32, read-only view)."""
        view = self._embeddings.view()
        view.flags.writeable = False
        return view

    @property
    def labels(self) -> np.ndarray | None:
        """The gallery's labels [N] (int), or None if added without."""
        return self._labels

    def add(self, embeddings: Any, labels: Any = None) -> None:
        """Appends embeddings [n, dim] (and their int labels [n]: given with
        every ``add`` or with none)."""
        x = np.asarray(embeddings, np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"`embeddings` must have shape [n, {self.dim}] (the index's `dim`), got {x.shape}."
            )
        if not np.all(np.isfinite(x)):
            raise ValueError("`embeddings` contain NaN or Inf values.")
        if labels is None:
            if self._labels is not None:
                raise ValueError("`labels` are required: earlier rows were added with labels.")
        else:
            y = np.asarray(labels)
            if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
                raise ValueError(
                    f"`labels` must be ints of shape [{x.shape[0]}], got {y.dtype} {y.shape}."
                )
            if self._labels is None and len(self):
                raise ValueError("`labels` were given, but earlier rows were added without.")
            old = self._labels if self._labels is not None else np.zeros(0, np.int64)
            self._labels = np.concatenate([old, y.astype(np.int64)])
        self._embeddings = _aligned_rows(self._embeddings, x)
        self._on_device = None

    def _gallery(self) -> tuple[jax.Array, jax.Array]:
        """The gallery and its validity mask on the devices (cached)."""
        if self._on_device is None:
            x = self._embeddings.astype(STORAGE[self.storage], copy=False)  # Aliased on CPU.
            mask = np.ones(len(self), bool)
            if self.mesh is None:
                self._on_device = (jax.device_put(x), jax.device_put(mask))
            else:
                pad = -len(self) % self.mesh.size
                x = np.concatenate([x, np.zeros((pad, self.dim), x.dtype)])
                mask = np.concatenate([mask, np.zeros(pad, bool)])
                rows = jax.sharding.NamedSharding(
                    self.mesh, jax.sharding.PartitionSpec(self.mesh.axis_names[0])
                )
                self._on_device = (jax.device_put(x, rows), jax.device_put(mask, rows))
        return self._on_device

    def search(
        self,
        queries: Any,
        k: int,
        *,
        block_size: int | None = None,
        query_block: int = QUERY_BLOCK,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(distances [Q, k] ascending, gallery indices [Q, k], their labels
        [Q, k] or None) of the ``k`` nearest gallery rows of each query.

        ``block_size`` is ``knn``'s (gallery rows per block; None: automatic);
        ``query_block`` queries go through each compiled call."""
        q = np.asarray(queries, np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"`queries` must have shape [Q, {self.dim}] (the index's `dim`), got {q.shape}."
            )
        if not len(self):
            raise ValueError("The index is empty: `add` embeddings first.")
        k = _checks.check_int(k, "k", high=len(self))
        query_block = _checks.check_int(query_block, "query_block")
        gallery, mask = self._gallery()
        candidates = k if self.storage == "float32" else min(self.rerank * k, len(self))
        # Even blocks: the last one pads less than a full block would.
        step = -(-len(q) // -(-len(q) // query_block)) if len(q) else 1
        dist = np.empty((len(q), k), np.float32)
        idx = np.empty((len(q), k), np.int32)
        for start in range(0, len(q), step):
            block = q[start : start + step]
            padded = np.concatenate([block, np.zeros((step - len(block), self.dim), np.float32)])
            d, i = _search_block(
                padded,
                gallery,
                mask,
                k=candidates,
                metric=self.metric,
                block_size=block_size,
                mesh=self.mesh,
            )
            if candidates > k:  # Exact distances of the candidates pick the k.
                i = np.sort(np.asarray(i), axis=1)  # Index order: ties to the lower.
                d, pos = _rerank(padded, self._embeddings[i], k=k, metric=self.metric)
                i = np.take_along_axis(i, np.asarray(pos), axis=1)
            dist[start : start + len(block)] = np.asarray(d)[: len(block)]
            idx[start : start + len(block)] = np.asarray(i)[: len(block)]
        labels = None if self._labels is None else self._labels[idx]
        return dist, idx, labels

    def save(self, path: str | os.PathLike) -> None:
        """Writes the index to ``path`` (an ``.npz`` file) atomically."""
        path = os.fspath(path)
        tmp = f"{path}.{os.getpid()}.tmp"
        arrays = {
            "embeddings": self._embeddings,
            "meta": np.asarray(
                json.dumps({"format": self.FORMAT, "dim": self.dim, "metric": self.metric})
            ),
        }
        if self._labels is not None:
            arrays["labels"] = self._labels
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        dim: int | None = None,
        metric: str | None = None,
        mesh: jax.sharding.Mesh | None = None,
        storage: str = "float32",
        rerank: int = 4,
    ) -> Index:
        """Reads an index ``save`` wrote (to search with ``mesh``, ``storage``
        and ``rerank`` as in the constructor).
        ``dim`` / ``metric``, when given, must be the saved ones (a ValueError
        names the one that differs)."""
        path = os.fspath(path)
        with np.load(path) as data:
            if "meta" not in data:
                raise ValueError(f"{path} is not a jaxmetric.search.Index file.")
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != cls.FORMAT:
                raise ValueError(f"{path}: unknown index format {meta.get('format')!r}.")
            if dim is not None and dim != meta["dim"]:
                raise ValueError(f"`dim`={dim} differs from the saved index's {meta['dim']}.")
            if metric is not None and metric != meta["metric"]:
                raise ValueError(
                    f"`metric`={metric!r} differs from the saved index's {meta['metric']!r}."
                )
            index = cls(
                meta["dim"], metric=meta["metric"], mesh=mesh, storage=storage, rerank=rerank
            )
            index._embeddings = _aligned_rows(data["embeddings"])
            index._labels = np.asarray(data["labels"]) if "labels" in data else None
        return index
