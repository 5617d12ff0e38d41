"""Clustering: k-means in JAX, and the NMI / AMI of a clustering against classes.

`kmeans` (Lloyd's algorithm, k-means++ or random seeding, a blockwise
assignment in O(block * k) memory) runs under ``jit``;
`normalized_mutual_info` and `adjusted_mutual_info` are exact NumPy
computations on the [classes, clusters] contingency table, with
scikit-learn's conventions for degenerate labelings.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from jaxmetric import _checks, parallel
from jaxmetric.metrics import _common

__all__ = [
    "KMeansResult",
    "adjusted_mutual_info",
    "clustering_metrics",
    "kmeans",
    "normalized_mutual_info",
]


# --------------------------------------------------------------------------------------
# k-means.
# --------------------------------------------------------------------------------------


class KMeansResult(NamedTuple):
    """Output of `kmeans`."""

    centroids: jax.Array  # [k, D]
    labels: jax.Array  # [N] int32 cluster of each row
    inertia: jax.Array  # scalar: sum of squared distances to the assigned centroid
    num_iters: jax.Array  # scalar int32: Lloyd iterations run (fewer than asked once converged)


_INITS = ("k-means++", "random")
# Default block_size: about this many [k, block] keys (2 MiB) at a time, which stay in a
# CPU core's L2 cache between the GEMM and the two reductions over them. At k = 1,000 on
# 2 free cores 2^18 was 1.2x slower and 2^20 the same; on 1 busy core 2^18 was 1.04x faster.
_TILE = 2**19


def _default_block_size(n: int, k: int) -> int:
    """The largest power of two <= 2^19 / k, within [128, 8192], and at most ``n``."""
    block = 1 << max(int(_TILE // k).bit_length() - 1, 0)
    return min(max(block, 128), 8192, n)


def _assign(x, x_sq, centroids, block_size):
    """Nearest centroid of every row, block by block: labels [N] int32, squared distances [N].

    A block of ``block_size`` rows at a time: the [k, block] keys
    ``||c||^2 - 2 c.x`` (the squared distance less the row's ``||x||^2``: same
    order) come from one GEMM, their minimum from a reduction, and the label
    is the lowest centroid index reaching the minimum (ties to the lower
    index). Memory is O(block_size * k), never O(N * k). The last block is
    shifted back to end at row N (it overlaps the one before; its overlapping
    rows get the same labels again), so every block is full and no padded
    copy of ``x`` is made.
    """
    n = x.shape[0]
    k = centroids.shape[0]
    c_sq = jnp.sum(jnp.square(centroids), axis=1)[:, None]
    minus_2c = -2.0 * centroids  # Exact (a power of two): the keys are those of c.x.
    index = jnp.arange(k, dtype=jnp.float32)[:, None]  # Exact up to 2^24 centroids.

    def block(i, carry):
        labels, keys = carry
        start = jnp.minimum(i * block_size, n - block_size)
        xb = jax.lax.dynamic_slice_in_dim(x, start, block_size)
        # [k, block] rather than [block, k]: the reductions run over the major axis,
        # vectorised across the block's rows (twice as fast on CPU as over the minor one).
        key = minus_2c @ xb.T + c_sq
        best = jnp.min(key, axis=0)
        # argmin as min over the indices reaching the minimum: two plain reductions, much
        # faster on CPU than the variadic (value, index) one of jnp.argmin. A NaN row
        # reaches no minimum: clipped to the last centroid.
        label = jnp.min(jnp.where(key == best[None, :], index, jnp.inf), axis=0)
        label = jnp.minimum(label, k - 1).astype(jnp.int32)
        labels = jax.lax.dynamic_update_slice_in_dim(labels, label, start, 0)
        keys = jax.lax.dynamic_update_slice_in_dim(keys, best, start, 0)
        return labels, keys

    init = (jnp.zeros_like(x_sq, jnp.int32), jnp.zeros_like(x_sq))
    labels, keys = jax.lax.fori_loop(0, -(-n // block_size), block, init)
    return labels, jnp.maximum(keys + x_sq, 0.0)


def _update(x, labels, dist, valid, centroids, axis):
    """Lloyd's update: each centroid moves to the mean of its rows.

    Empty clusters are re-seeded as scikit-learn does: the e-th empty cluster
    (in index order) takes the e-th farthest row from its assigned centroid
    (distances descending, ties to the lower row), which leaves its old
    cluster. A cluster that still has no row (its only row moved) keeps its
    centroid.

    With ``axis`` (under ``shard_map``) the rows are this device's shard
    (``valid`` False on the padding): the sums and counts are summed over the
    devices, and the farthest rows are the top of every device's own farthest
    rows, gathered device by device (so ties still go to the lower global row).
    """
    k = centroids.shape[0]
    if valid is not None:
        labels = jnp.where(valid, labels, k)  # Out of range: dropped by segment_sum.
        dist = jnp.where(valid, dist, -jnp.inf)
    sums = parallel.psum(jax.ops.segment_sum(x, labels, num_segments=k), axis)
    counts = jax.ops.segment_sum(jnp.ones_like(dist), labels, num_segments=k)
    counts = parallel.psum(counts, axis)
    empty = counts == 0

    def reseed(sums_counts):
        sums, counts = sums_counts
        # This device's k farthest rows (farthest first), then those of all devices.
        far_dist, far = jax.lax.top_k(dist, min(k, dist.shape[0]))
        far_dist, far_x, far_labels = (
            parallel.gather(a, axis, invariant=True) for a in (far_dist, x[far], labels[far])
        )
        pick = jax.lax.top_k(far_dist, k)[1]
        rank = jnp.cumsum(empty) - 1  # Rank of each empty cluster among the empty ones.
        pick = pick[jnp.maximum(rank, 0)]  # [k] the candidate each empty cluster takes.
        moved = jnp.where(empty[:, None], far_x[pick], 0.0)
        old = far_labels[pick]
        sums = sums - jax.ops.segment_sum(moved, old, num_segments=k)
        counts = counts - jax.ops.segment_sum(empty.astype(counts.dtype), old, num_segments=k)
        sums = jnp.where(empty[:, None], moved, sums)
        counts = jnp.where(empty, 1.0, counts)
        return sums, counts

    sums, counts = jax.lax.cond(jnp.any(empty), reseed, lambda sc: sc, (sums, counts))
    filled = counts[:, None] > 0
    return jnp.where(filled, sums / jnp.where(filled, counts[:, None], 1.0), centroids)


def _lloyd_local(x, x_sq, valid, centroids, tol, *, num_iters, block_size, axis):
    def cond(state):
        i, _, shift = state
        return (i < num_iters) & (shift > tol)

    def body(state):
        i, centroids, _ = state
        labels, dist = _assign(x, x_sq, centroids, block_size)
        new = _update(x, labels, dist, valid, centroids, axis)
        return i + 1, new, jnp.sum(jnp.square(new - centroids))

    state = (jnp.int32(0), centroids, jnp.asarray(jnp.inf, x.dtype))
    iters, centroids, _ = jax.lax.while_loop(cond, body, state)
    labels, dist = _assign(x, x_sq, centroids, block_size)
    if valid is not None:
        dist = jnp.where(valid, dist, 0.0)
    return KMeansResult(centroids, labels, parallel.psum(jnp.sum(dist), axis), iters)


_AXIS = "rows"


def _row_mesh(devices) -> jax.sharding.Mesh | None:
    """A one-axis mesh over ``devices`` (None: all local devices); None for one device."""
    devices = jax.local_devices() if devices is None else list(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(f"`devices` must be a non-empty sequence of jax.Device, got {devices!r}.")
    if len(devices) == 1:
        return None
    return jax.sharding.Mesh(np.array(devices), (_AXIS,))


def _lloyd(x, x_sq, centroids, tol, *, num_iters, block_size, mesh):
    """Lloyd iterations from ``centroids``; with ``mesh``, the rows split over its devices."""
    if mesh is None:
        return _lloyd_local(
            x, x_sq, None, centroids, tol, num_iters=num_iters, block_size=block_size, axis=None
        )
    n = x.shape[0]
    x, x_sq = _common.pad_rows(x, mesh.size), _common.pad_rows(x_sq, mesh.size)
    valid = _common.pad_rows(jnp.ones((n,), bool), mesh.size, False)
    local = functools.partial(
        _lloyd_local,
        num_iters=num_iters,
        block_size=min(block_size, x.shape[0] // mesh.size),
        axis=_AXIS,
    )
    rows, replicated = jax.sharding.PartitionSpec(_AXIS), jax.sharding.PartitionSpec()
    result = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(rows, rows, rows, replicated, replicated),
        out_specs=KMeansResult(replicated, rows, replicated, replicated),
    )(x, x_sq, valid, centroids, tol)
    return result._replace(labels=result.labels[:n])


def _kmeans_pp(x, x_sq, k, key):
    n = x.shape[0]
    key, first_key = jax.random.split(key)
    first = jax.random.randint(first_key, (), 0, n)
    centroids = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
    # 2 (x.c), not (2 x).c: the same bits (2 is exact), but XLA would hoist a scaled
    # copy of x out of the loop.
    min_d = jnp.maximum(x_sq + jnp.sum(jnp.square(x[first])) - 2.0 * (x @ x[first]), 0.0)

    def body(c, carry):
        centroids, min_d, key = carry
        key, sub = jax.random.split(key)
        total = jnp.sum(min_d)
        # D^2 sampling; uniform when every row already sits on a centroid.
        logits = jnp.where(total > 0, jnp.log(min_d), 0.0)
        idx = jax.random.categorical(sub, logits)
        new = x[idx]
        d = jnp.maximum(x_sq + jnp.sum(jnp.square(new)) - 2.0 * (x @ new), 0.0)
        return centroids.at[c].set(new), jnp.minimum(min_d, d), key

    centroids, _, _ = jax.lax.fori_loop(1, k, body, (centroids, min_d, key))
    return centroids


def _random_init(x, k, key):
    """k distinct rows of ``x``, uniformly at random (faiss's default seeding)."""
    return x[jax.random.choice(key, x.shape[0], (k,), replace=False)]


@functools.partial(
    jax.jit, static_argnames=("k", "num_iters", "n_init", "init", "block_size", "mesh")
)
def _kmeans(x, key, centroids, tol, *, k, num_iters, n_init, init, block_size, mesh):
    x_sq = jnp.sum(jnp.square(x), axis=1)
    # scikit-learn's tolerance: relative to the mean variance of the features.
    tol = tol * jnp.mean(jnp.var(x, axis=0))
    lloyd = functools.partial(_lloyd, num_iters=num_iters, block_size=block_size, mesh=mesh)
    if centroids is not None:
        return lloyd(x, x_sq, centroids, tol)
    seed = _kmeans_pp if init == "k-means++" else lambda x, _, k, key: _random_init(x, k, key)

    def run(run_key):
        return lloyd(x, x_sq, seed(x, x_sq, k, run_key), tol)

    # One run after the other (a vmap would hold n_init runs' blocks at once and run
    # each while_loop as long as the longest).
    runs = jax.lax.map(run, jax.random.split(key, n_init))
    best = jnp.argmin(runs.inertia)  # First of equal inertias.
    return jax.tree.map(lambda a: a[best], runs)


def kmeans(
    x: jax.Array,
    k: int,
    *,
    key: jax.Array,
    num_iters: int = 100,
    n_init: int = 3,
    init: str | ArrayLike | None = "k-means++",
    tol: float = 1e-4,
    block_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> KMeansResult:
    r"""k-means (Lloyd's algorithm), blockwise, in JAX.

    Minimises the inertia :math:`\sum_i \min_c \lVert x_i - \mu_c \rVert^2`.
    Each of ``n_init`` runs seeds its k centroids, then runs Lloyd
    iterations: assign every row to its nearest centroid (ties to the lower
    centroid index), move each centroid to the mean of its rows. It stops
    after ``num_iters`` iterations, or earlier once the centroids move by at
    most ``tol`` times the mean feature variance,
    :math:`\sum_c \lVert \mu_c^{new} - \mu_c \rVert^2 \le \mathrm{tol} \cdot
    \overline{\mathrm{Var}}(x)` (scikit-learn's rule; ``tol=0`` stops only at
    a fixed point, where further iterations would change nothing). The run
    with the lowest inertia is returned (the first of equal ones).

    Seeding (``init``):

    - ``"k-means++"`` (the default, as before): Arthur & Vassilvitskii's D^2
      sampling (the first centroid uniformly, each next one with probability
      proportional to the squared distance to the nearest one chosen so
      far). Good seeds, but k sequential passes over the data: fine for tens
      or hundreds of clusters, slow for thousands.
    - ``"random"``: k distinct rows drawn uniformly with ``key`` (faiss's
      default): one pass, for large k (e.g. a coarse quantiser's 1,000+).
    - a [k, D] array: these initial centroids, one run (``n_init`` and
      ``key`` unused).

    The assignment runs ``block_size`` rows at a time: one [k, block] GEMM of
    :math:`\lVert c\rVert^2 - 2\, c \cdot x` (the squared distance less
    :math:`\lVert x\rVert^2`) and two reductions per block (the minimum, then
    the lowest index reaching it), so memory is O(block_size * k), never
    O(N * k). The update is a ``segment_sum`` of the
    rows by label. An empty cluster is re-seeded as scikit-learn does: the
    e-th empty cluster (in index order) takes the row e-th farthest from its
    assigned centroid (ties to the lower row), which leaves its old cluster;
    deterministic. Everything runs in one ``jit`` (a ``while_loop`` of
    Lloyd iterations, the runs one after the other): deterministic given
    ``key``.

    With several devices the rows are split over them with ``jax.shard_map``
    (the centroids replicated): each device assigns its rows, and the
    per-cluster sums and counts, the inertia and the farthest rows of the
    empty-cluster rule are combined over the devices. The result is that of
    one device up to the rounding of those sums. On a CPU, set
    ``jax_num_cpu_devices`` to the number of cores: one device per core runs
    faster than one device over all of them (1.2x on 2 cores, k = 1,000).

    Args:
      x: [N, D] float data.
      k: number of clusters, in [1, N].
      key: PRNG key of the seeding.
      num_iters: at most this many Lloyd iterations per run, >= 0.
      n_init: number of seeded runs, >= 1.
      init: ``"k-means++"``, ``"random"``, or [k, D] initial centroids
        (``None`` means ``"k-means++"``).
      tol: relative tolerance of the stop, >= 0 (scikit-learn's default).
      block_size: rows per assignment block, >= 1; by default about 2^19 / k
        (a power of two in [128, 8192]; 512 for k = 1,000), at most the rows
        of a device.
      devices: devices to split the rows over; None: all of
        ``jax.local_devices()``.

    Returns:
      A `KMeansResult` (centroids [k, D], labels [N] int32, inertia, and
      num_iters: the Lloyd iterations the returned run made).

    Reference:
      Lloyd, "Least squares quantization in PCM", 1982; Arthur & Vassilvitskii,
      "k-means++: the advantages of careful seeding", SODA 2007.

    Example:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> from jaxmetric.metrics import kmeans
      >>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
      >>> result = kmeans(x, 2, key=jax.random.key(0), init=x[:3:2])
      >>> result.labels.tolist(), result.centroids.tolist(), float(result.inertia)
      ([0, 0, 1, 1], [[0.0, 0.5], [10.0, 0.5]], 1.0)
      >>> int(result.num_iters)  # The second iteration moved nothing: stopped.
      2
      >>> kmeans(x, 2, key=jax.random.key(0), init="random").labels.tolist()
      [0, 0, 1, 1]
    """
    x = _common.check_embeddings(x, "x")
    n, dim = x.shape
    k = _checks.check_int(k, "k", high=n)
    mesh = _row_mesh(devices)
    local_rows = n if mesh is None else -(-n // mesh.size)
    num_iters = _checks.check_int(num_iters, "num_iters", low=0)
    n_init = _checks.check_int(n_init, "n_init")
    tol = _checks.check_non_negative(tol, "tol")
    if block_size is None:
        block_size = _default_block_size(local_rows, k)
    block_size = min(_checks.check_int(block_size, "block_size"), local_rows)
    centroids = None
    if init is None:
        init = "k-means++"
    if isinstance(init, str):
        init = _checks.check_choice(init, _INITS, "init")
    else:
        centroids = jnp.asarray(init)
        if centroids.shape != (k, dim) or not jnp.issubdtype(centroids.dtype, jnp.floating):
            raise ValueError(
                f"`init` must be {_INITS[0]!r}, {_INITS[1]!r} or a float array of shape "
                f"{(k, dim)}, got {centroids.dtype} of shape {centroids.shape}."
            )
        centroids, init = centroids.astype(jnp.float32), None
    return _kmeans(
        x,
        key,
        centroids,
        tol,
        k=k,
        num_iters=num_iters,
        n_init=n_init,
        init=init,
        block_size=block_size,
        mesh=mesh,
    )


# --------------------------------------------------------------------------------------
# Mutual information of two labelings.
# --------------------------------------------------------------------------------------


class _Contingency(NamedTuple):
    """The nonzero cells of the [classes, clusters] co-occurrence table, and its sums.

    Only the nonzero cells: a dense table of N singletons against N
    singletons would take N^2 floats.
    """

    counts: np.ndarray  # [cells] float64 n_ij > 0
    rows: np.ndarray  # [cells] class i of each cell
    cols: np.ndarray  # [cells] cluster j of each cell
    a: np.ndarray  # [classes] float64 row sums a_i (class sizes)
    b: np.ndarray  # [clusters] float64 column sums b_j (cluster sizes)


def _contingency(labels_true: ArrayLike, labels_pred: ArrayLike) -> _Contingency:
    u = np.asarray(labels_true)
    v = np.asarray(labels_pred)
    if u.ndim != 1 or v.shape != u.shape:
        raise ValueError(
            f"`labels_true` and `labels_pred` must be 1-D of one length, got {u.shape} "
            f"and {v.shape}."
        )
    _, ui = np.unique(u, return_inverse=True)
    _, vi = np.unique(v, return_inverse=True)
    num_clusters = int(vi.max(initial=-1)) + 1
    cells, counts = np.unique(ui.astype(np.int64) * num_clusters + vi, return_counts=True)
    rows, cols = np.divmod(cells, max(num_clusters, 1))
    a = np.bincount(ui).astype(np.float64)
    b = np.bincount(vi).astype(np.float64)
    return _Contingency(counts.astype(np.float64), rows, cols, a, b)


def _entropy(counts: np.ndarray) -> float:
    """H = -sum_i (a_i / n) log(a_i / n) of the cluster sizes a_i."""
    counts = counts[counts > 0]
    n = counts.sum()
    # log(a / n) as log(a) - log(n), as in `_mutual_info`.
    return float(-np.sum(counts / n * (np.log(counts) - np.log(n))))


def _mutual_info(table: _Contingency) -> float:
    """I(U; V) of a contingency table, clipped at 0 (rounding can dip below)."""
    nij, a, b = table.counts, table.a[table.rows], table.b[table.cols]
    n = table.a.sum()
    # Logs of ratios as differences of logs, in scikit-learn's order of operations:
    # a perfect match then gives I(U; V) equal to the normaliser, and NMI = AMI = 1.0
    # rather than 1 - eps.
    terms = nij / n * (np.log(nij) - np.log(n)) + nij / n * (np.log(n) - np.log(a * b) + np.log(n))
    # Terms below eps are rounding noise of independent cells.
    terms = np.where(np.abs(terms) < np.finfo(np.float64).eps, 0.0, terms)
    return max(float(np.sum(terms)), 0.0)


def _log_factorials(n: int) -> np.ndarray:
    """[n + 1] log k! for k = 0..n.

    Each entry is its own ``math.lgamma`` (accurate to about an ulp): a
    cumulative sum of logs would drift by ~sqrt(n) ulps, and the hypergeometric
    log-probabilities below are differences of such terms.
    """
    return np.fromiter(map(math.lgamma, range(1, n + 2)), np.float64, count=n + 1)


def _expected_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    r"""E[I(U; V)] over random labelings with the row sums ``a`` and column sums ``b``.

    .. math::

        E[I] = \sum_{i,j} \sum_{n_{ij}=\max(1, a_i+b_j-N)}^{\min(a_i, b_j)}
        \frac{n_{ij}}{N} \log\frac{N n_{ij}}{a_i b_j}\,
        \frac{a_i!\, b_j!\, (N-a_i)!\, (N-b_j)!}
             {N!\, n_{ij}!\, (a_i-n_{ij})!\, (b_j-n_{ij})!\, (N-a_i-b_j+n_{ij})!}

    (Vinh, Epps & Bailey 2010: given the marginals, n_ij is hypergeometric).
    A term depends on (a_i, b_j) only, so each distinct pair of sizes is
    summed once and weighted by how often it occurs: a side of N rows has at
    most sqrt(2N) distinct sizes.
    """
    a = a.astype(np.int64)
    b = b.astype(np.int64)
    n = int(a.sum())
    log_fact = _log_factorials(n)
    sizes_a, repeats_a = np.unique(a, return_counts=True)
    sizes_b, repeats_b = np.unique(b, return_counts=True)
    emi = 0.0
    for size_a, repeat_a in zip(sizes_a, repeats_a, strict=True):
        # Every (b_j, n_ij) of this a_i, flattened: n_ij runs over [start, stop) for each b_j.
        start = np.maximum(1, size_a + sizes_b - n)
        length = np.maximum(np.minimum(size_a, sizes_b) + 1 - start, 0)
        col = np.repeat(np.arange(sizes_b.size), length)
        offset = np.arange(col.size) - np.repeat(np.cumsum(length) - length, length)
        nij = start[col] + offset
        size_b = sizes_b[col]
        log_prob = (
            log_fact[size_a]
            + log_fact[size_b]
            + log_fact[n - size_a]
            + log_fact[n - size_b]
            - log_fact[n]
            - log_fact[nij]
            - log_fact[size_a - nij]
            - log_fact[size_b - nij]
            - log_fact[n - size_a - size_b + nij]
        )
        log_ratio = math.log(n) + np.log(nij) - math.log(size_a) - np.log(size_b)
        terms = nij / n * log_ratio * np.exp(log_prob)
        emi += float(repeat_a * np.sum(repeats_b[col] * terms))
    return emi


def _away_from_zero(x: float) -> float:
    """``x`` with |x| >= float64 eps, sign kept (0 -> +eps)."""
    eps = float(np.finfo(np.float64).eps)
    return min(x, -eps) if x < 0 else max(x, eps)


def normalized_mutual_info(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    r"""Normalised mutual information with the arithmetic mean normaliser.

    .. math::

        \mathrm{NMI}(U, V) = \frac{I(U; V)}{(H(U) + H(V)) / 2},\qquad
        I(U;V) = \sum_{ij} \frac{n_{ij}}{n} \log \frac{n\, n_{ij}}{a_i b_j},

    with the contingency counts n_ij, row sums a_i and column sums b_j.
    Matches scikit-learn's ``normalized_mutual_info_score`` (its default
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

    Example:
      >>> from jaxmetric.metrics import normalized_mutual_info
      >>> normalized_mutual_info([0, 0, 1, 1], [5, 5, 3, 3])  # Same partition, renamed.
      1.0
    """
    table = _contingency(labels_true, labels_pred)
    if (table.a.size, table.b.size) in ((0, 0), (1, 1)):
        return 1.0
    mi = _mutual_info(table)
    if mi == 0.0:
        return 0.0
    entropies = _entropy(table.a) + _entropy(table.b)
    normaliser = max(entropies / 2.0, np.finfo(np.float64).eps)
    return float(mi / normaliser)


def adjusted_mutual_info(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    r"""Adjusted mutual information: mutual information corrected for chance.

    .. math::

        \mathrm{AMI}(U, V) = \frac{I(U; V) - E[I(U; V)]}
                                  {(H(U) + H(V)) / 2 - E[I(U; V)]},

    with I(U; V) as in `normalized_mutual_info` and E[I(U; V)] its expectation
    over random labelings with the same cluster sizes (the hypergeometric
    model: n_ij is the overlap of a random a_i-subset and a random b_j-subset
    of the N rows). AMI is 1 for identical partitions and about 0 for a
    random one (it can be negative). Matches scikit-learn's
    ``adjusted_mutual_info_score`` (its default
    ``average_method="arithmetic"``), including its conventions: 1.0 when
    both labelings are one single cluster (or both are empty), 0.0 when
    exactly one is, and the numerator and denominator kept at least float64
    eps away from zero with their signs.

    Args:
      labels_true: [N] int class labels.
      labels_pred: [N] int cluster labels.

    Returns:
      AMI, at most 1.

    Reference:
      Vinh, Epps & Bailey, "Information theoretic measures for clusterings
      comparison: variants, properties, normalization and correction for
      chance", JMLR 2010.

    Example:
      >>> from jaxmetric.metrics import adjusted_mutual_info
      >>> adjusted_mutual_info([0, 0, 1, 1], [5, 5, 3, 3])  # Same partition, renamed.
      1.0
      >>> adjusted_mutual_info([0, 0, 0, 0], [0, 1, 2, 3])  # One class: nothing to find.
      0.0
    """
    table = _contingency(labels_true, labels_pred)
    if (table.a.size, table.b.size) in ((0, 0), (1, 1)):
        return 1.0
    if 1 in (table.a.size, table.b.size):
        return 0.0
    mi = _mutual_info(table)
    emi = _expected_mutual_info(table.a, table.b)
    normaliser = (_entropy(table.a) + _entropy(table.b)) / 2.0
    # E[I] can exceed the normaliser by rounding, at a perfect match: keep the signs.
    return float(_away_from_zero(mi - emi) / _away_from_zero(normaliser - emi))


def clustering_metrics(labels_true: ArrayLike, labels_pred: ArrayLike) -> dict[str, float]:
    """NMI (`normalized_mutual_info`) and AMI (`adjusted_mutual_info`) of a clustering.

    Args:
      labels_true: [N] int class labels.
      labels_pred: [N] int cluster labels (e.g. ``kmeans(...).labels``).

    Returns:
      ``{"nmi": ..., "ami": ...}`` as Python floats.
    """
    return {
        "nmi": normalized_mutual_info(labels_true, labels_pred),
        "ami": adjusted_mutual_info(labels_true, labels_pred),
    }
