"""Triplet margin loss with batch-all, hard, semi-hard, batch-hard and FaceNet mining."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric import mining as mining_lib
from jaxmetric.distances import DISTANCE_METRICS, paired_distances, pairwise_distances
from jaxmetric.losses import _common


def check(
    *,
    margin: float,
    metric: str,
    normalize: bool,
    mining: str,
    soft: bool,
    reduction: str,
    reduction_threshold: tuple[float | None, float | None] | None,
) -> None:
    """Checks the hyper-parameters: margin >= 0, a known metric, mining and reduction."""
    del normalize, soft
    _checks.check_non_negative(margin, "margin")
    _checks.check_choice(metric, DISTANCE_METRICS, "metric")
    _checks.check_choice(mining, mining_lib.TRIPLET_MINING, "mining")
    _common.check_reduction(reduction, reduction_threshold)


def _distances(batch: _common.Batch, *, metric: str, mining: str):
    dist = pairwise_distances(batch.anchors, batch.candidates, metric=metric)
    if mining == "batch_hard":  # Only the mined pairs carry a gradient (see terms).
        dist = jax.lax.stop_gradient(dist)
    return dist, *batch.pair_masks()


def terms(
    batch: _common.Batch, *, margin: float, metric: str, mining: str, soft: bool, **_
) -> tuple[jax.Array, jax.Array]:
    """The mined triplets' terms: [b, M, M] ("all", "hard", "semi_hard", indexed by
    anchor, positive, negative), [b] ("batch_hard") or [b, M] ("facenet_semi_hard",
    by anchor and positive), or [T] (given ``triplets``), and which of them count."""
    hinge = jax.nn.softplus if soft else jax.nn.relu
    if batch.triplets is not None:
        a, p, n, given = batch.triplets
        anchors = batch.anchors[a]
        d_ap = paired_distances(anchors, batch.candidates[p], metric=metric)
        d_an = paired_distances(anchors, batch.candidates[n], metric=metric)
        cand_mask = batch.candidate_mask
        valid = given & batch.mask[a] & cand_mask[p] & cand_mask[n]
        return hinge(d_ap - d_an + margin), valid
    dist, pos, neg = _distances(batch, metric=metric, mining=mining)
    if mining in ("all", "hard", "semi_hard"):
        if mining == "all":
            valid = mining_lib.triplet_mask(pos, neg)
        elif mining == "hard":
            valid = mining_lib.hard_triplet_mask(dist, pos, neg)
        else:
            valid = mining_lib.semi_hard_triplet_mask(dist, pos, neg, margin=margin)
        losses = hinge(dist[:, :, None] - dist[:, None, :] + margin)
    elif mining == "batch_hard":
        pos_index, neg_index, valid = mining_lib.batch_hard(dist, pos, neg)
        # Mining reads the stop-gradient matrix; the loss only needs 2b
        # distances, recomputed from the rows so the backward pass is O(b D)
        # instead of two [b, M] GEMMs.
        anchors, cands = batch.anchors, batch.candidates
        d_ap = paired_distances(anchors, cands[pos_index], metric=metric)
        d_an = paired_distances(anchors, cands[neg_index], metric=metric)
        losses = hinge(d_ap - d_an + margin)
    else:  # facenet_semi_hard
        neg_index, valid = mining_lib.facenet_semi_hard(dist, pos, neg)
        d_an = jnp.take_along_axis(dist, neg_index, axis=1)
        losses = hinge(dist - d_an + margin)
    return losses, valid


def value(batch: _common.Batch, axis_name: str | None, **hyper) -> jax.Array:
    """``reduce(*terms(batch))``; the hinge over a window of triplets (no softplus,
    a reduced value) from sorted rows in O(b M log M), with no [b, M, M] array."""
    mining, reduction, margin = hyper["mining"], hyper["reduction"], hyper["margin"]
    if (
        mining not in ("all", "hard", "semi_hard")
        or hyper["soft"]
        or reduction in ("none", "threshold")
        or batch.triplets is not None
    ):
        return _common.reduce_terms(*terms(batch, **hyper), axis_name, **hyper)
    dist, pos, neg = _distances(batch, metric=hyper["metric"], mining=mining)
    total, mined, nonzero = _sorted_hinge_sums(dist, pos, neg, margin=margin, mining=mining)
    total = parallel.global_sum(total, axis_name)
    if reduction == "sum":
        return total
    count = nonzero if reduction == "mean_nonzero" else mined
    return parallel.safe_divide(total, parallel.global_sum(count, axis_name))


def triplet_margin_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    margin: float = 0.2,
    metric: str = "euclidean",
    normalize: bool = True,
    mining: str = "all",
    soft: bool = False,
    reduction: str = "mean_nonzero",
    reduction_threshold: tuple[float | None, float | None] | None = None,
    triplets: mining_lib.Triplets | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Triplet margin loss over mined triplets of a labelled batch.

    For a triplet (a, p, n) with y_a = y_p != y_n and a != p:

    .. math::
        \ell(a, p, n) = \max(0,\; d(a, p) - d(a, n) + m)

    or :math:`\log(1 + e^{d(a,p) - d(a,n) + m})` with ``soft=True`` (the soft
    margin of Hermans et al.). Which triplets count is set by ``mining``:

    - ``"all"``: every valid triplet (batch-all), [b, M, M] terms.
    - ``"hard"``: valid triplets with d(a, n) < d(a, p).
    - ``"semi_hard"``: valid triplets with d(a, p) < d(a, n) < d(a, p) + m.
    - ``"batch_hard"``: per anchor, its farthest positive and closest negative;
      anchors lacking either are dropped. [b] terms.
    - ``"facenet_semi_hard"``: per positive pair, the closest negative farther
      than the positive, else the farthest negative (``tfa``'s
      TripletSemiHardLoss rule). [b, M] terms.

    - ``triplets=`` given (``mining`` must stay "all"): exactly those
      triplets, ``Triplets(anchor, positive, negative, valid)`` of [T] index
      arrays (``jaxmetric.mining.triplet_margin_miner``,
      ``batch_hard_miner``, ``triplets_from_mask``; PML's triplet
      ``indices_tuple``). [T] terms. The anchors index the local rows, the
      positives and negatives the candidates (the gathered batch, or the
      reference set); indices must be in range. Labels are not re-checked.

    ``reduction`` then gives "mean_nonzero" (sum over the number of terms > 0,
    PML's AvgNonZeroReducer), "mean" (over all mined terms, MeanReducer),
    "sum" (SumReducer), "threshold" (ThresholdReducer: the mean over the
    terms with low < term < high, ``reduction_threshold=(low, high)``), or
    "none" (the per-term array above, 0 where a term is not mined; local rows
    only).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16 (computed in float32).
      labels: [B] integer class labels.
      margin: m >= 0.
      metric: "euclidean", "squared_euclidean" or "cosine" (1 - cos).
      normalize: L2-normalise the embeddings first.
      mining: one of the names above.
      soft: softplus instead of the hinge.
      reduction: "mean_nonzero", "mean", "sum", "none" or "threshold".
      reduction_threshold: (low, high) for "threshold"; None on one side: no
        bound there.
      triplets: given triplets (see above); None: mined by ``mining``.
      reference_embeddings, reference_labels, reference_mask: [R, D], [R],
        [R]: positives and negatives from this other set instead of the batch
        (PML's ``ref_emb`` / ``ref_labels``); gathered from all devices under
        ``axis_name``.
      mask: [B] bool, valid rows (padding is False). None: all valid.
      axis_name: mapped axis under ``jax.shard_map`` / ``jax.pmap``; candidates
        (positives and negatives) come from all devices, the value is the loss
        of the global batch.

    Returns:
      A float32 scalar (or the per-term array for ``reduction="none"``). 0.0
      with a zero gradient when no triplet is mined.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
      >>> float(jaxmetric.triplet_margin_loss(x, jnp.array([0, 0, 1, 1])))
      0.0

    To reproduce pytorch-metric-learning's ``TripletMarginLoss()`` (margin
    0.05, non-squared L2 on normalised rows, all triplets, AvgNonZero), use
    ``margin=0.05`` and the other defaults; with ``BatchHardMiner`` use
    ``mining="batch_hard"`` (or ``triplets=jaxmetric.mining.batch_hard_miner(x,
    y)``), with ``TripletMarginMiner(margin, type_of_triplets)`` use
    ``triplets=jaxmetric.mining.triplet_margin_miner(x, y, margin=...,
    type_of_triplets=...)`` (PML's rule exactly; the miner's margin is not the
    loss's). ``mining="hard"`` / ``"semi_hard"`` with the miner's margin
    differ from PML's miners only on exact ties (PML keeps d(a, n) <= d(a, p)
    for "hard" and d(a, n) - d(a, p) <= m for "semihard", here they are
    strict). PML's ``smooth_loss=True`` is ``soft=True`` (softplus of
    the same d(a, p) - d(a, n) + m). PML's reducers are ``reduction=``:
    ``MeanReducer`` "mean", ``SumReducer`` "sum", ``ThresholdReducer(low,
    high)`` "threshold" with ``reduction_threshold=(low, high)``.

    References:
      Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and
      Clustering", CVPR 2015. Hermans et al., "In Defense of the Triplet Loss
      for Person Re-Identification", arXiv:1703.07737, 2017.
    """
    if triplets is not None and mining != "all":
        raise ValueError(
            f"`mining`={mining!r} with `triplets`: given triplets are used as they are "
            "(leave mining='all')."
        )
    hyper = {
        "margin": margin,
        "metric": metric,
        "normalize": normalize,
        "mining": mining,
        "soft": soft,
        "reduction": reduction,
        "reduction_threshold": reduction_threshold,
    }
    return _common.label_loss(
        SPEC,
        embeddings,
        labels,
        mask,
        axis_name,
        triplets=triplets,
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        **hyper,
    )


SPEC = _common.LabelLoss(
    triplet_margin_loss,
    check=check,
    terms=terms,
    reduce=_common.reduce_terms,
    value=value,
    normalize=None,
)


# Distances no threshold reaches: where invalid negatives sort to.
_FAR = 1e30


def _sort_nonnegative(x: jax.Array) -> jax.Array:
    """Sorts the rows of ``x`` (values >= 0, or the -1 sentinel) ascending.

    The bit patterns of non-negative float32 values order like the values,
    and XLA's CPU sort of int32 keys is several times faster than its float
    sort (no NaN-aware comparator). ``abs`` maps -0.0 to +0.0, whose bits
    would otherwise sort first; negative sentinels (all equal) sort first
    either way.
    """
    x = jnp.where(x < 0, x, jnp.abs(x))
    int_type = {4: jnp.int32, 8: jnp.int64}[x.dtype.itemsize]
    keys = jax.lax.bitcast_convert_type(x, int_type)
    return jax.lax.bitcast_convert_type(jnp.sort(keys, axis=1), x.dtype)


def _sorted_hinge_sums(
    dist: jax.Array, pos: jax.Array, neg: jax.Array, *, margin: float, mining: str
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Hinge sums over mined triplets in O(b M log M), with no [b, M, M] array.

    A triplet (a, p, n) is mined when d(a, n) lies in a window set by
    d = d(a, p): "all" takes d(a, n) < hi = d + m (the others cost 0),
    "hard" d(a, n) < hi = d, "semi_hard" lo = d < d(a, n) < hi = d + m.
    Every mined term d + m - d(a, n) is > 0, so the anchor's sum of terms is

        sum_p c_p * (d(a, p) + m)  -  sum_n w_n * d(a, n)

    with c_p the number of negatives in p's window and w_n the number of
    positives whose window holds n: two counts read off sorted rows with
    ``searchsorted``. The counts are piecewise constant, so this linear form
    also has the exact gradient (+c_p on d(a, p), -w_n on d(a, n)), and no
    sort or gather needs differentiating. Windows with hi <= lo (m = 0, or m
    below the float spacing of d) are empty.

    Returns per-anchor float32 [b] arrays: the sum of the terms, the number of
    mined triplets (all valid triplets for "all"), and the number of terms > 0.
    """
    stopped = jax.lax.stop_gradient(dist)
    num_cols = stopped.shape[1]
    lo = stopped
    hi = stopped + (0.0 if mining == "hard" else margin)
    if mining == "semi_hard":
        live = pos & (hi > lo)
    else:
        live = pos
    # Sentinels: -1 sorts below every distance and enters no window.
    lo_sorted = _sort_nonnegative(jnp.where(live, lo, -1.0))
    hi_sorted = jnp.where(lo_sorted < 0, -1.0, lo_sorted + (0.0 if mining == "hard" else margin))
    neg_sorted = _sort_nonnegative(jnp.where(neg, stopped, _FAR))

    count_below = jax.vmap(functools.partial(jnp.searchsorted, side="left"))
    count_at_or_below = jax.vmap(functools.partial(jnp.searchsorted, side="right"))
    # c_p: negatives v with v < hi_p (minus those with v <= lo_p for semi-hard).
    c = count_below(neg_sorted, hi)
    # w_n: positives with hi_p > v_n (minus those with lo_p >= v_n for semi-hard).
    w = num_cols - count_at_or_below(hi_sorted, stopped)
    if mining == "semi_hard":
        c = c - count_at_or_below(neg_sorted, lo)
        w = w - (num_cols - count_below(lo_sorted, stopped))
    c = jnp.where(live, c, 0).astype(dist.dtype)
    w = jnp.where(neg, w, 0).astype(dist.dtype)
    # Every mined term is d(a, p) + m - d(a, n), whatever its window.
    terms = jnp.sum(c * jnp.where(live, dist + margin, 0.0), axis=1) - jnp.sum(
        w * jnp.where(neg, dist, 0.0), axis=1
    )
    nonzero = jnp.sum(c, axis=1)
    if mining == "all":
        mined = (jnp.sum(pos, axis=1) * jnp.sum(neg, axis=1)).astype(dist.dtype)
    else:
        mined = nonzero
    return terms, mined, nonzero
