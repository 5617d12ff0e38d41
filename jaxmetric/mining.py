"""Label masks and miners with fixed-shape outputs.

Every miner works on a distance matrix ``dist`` [b, M] whose rows are the
(local) anchors and whose columns are the candidates, which may be the
globally gathered batch of all devices (see ``jaxmetric.parallel``). Miners
return boolean masks or fixed-size index arrays with a validity mask, never a
variable-length list, so they run under ``jit``, ``vmap``, ``shard_map`` and
``pmap``. Their outputs carry no gradient: mining selects, the loss
differentiates the selected distances.

Conventions (the same as pytorch-metric-learning): pairs are ordered
(anchor, candidate) and an anchor is never its own positive.

Composition, as PML's miners and ``indices_tuple``: the miners that take
embeddings (``multi_similarity_miner``, ``triplet_margin_miner``,
``batch_hard_miner``, ``distance_weighted_miner``) return exactly what the
losses take: pair miners
``(positive_mask, negative_mask)``, bool [b, M], for ``pairs=``; triplet
miners a fixed-size ``Triplets(anchor, positive, negative, valid)`` for
``triplets=``. M is the number of candidates: the batch (gathered from every
device under ``axis_name``) or the reference set (``reference_embeddings``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import (
    DISTANCE_METRICS,
    l2_normalize,
    pairwise_distances,
    pairwise_similarities,
)

TRIPLET_MINING = ("all", "hard", "semi_hard", "batch_hard", "facenet_semi_hard")
# PML's TripletMarginMiner(type_of_triplets=...).
TRIPLET_TYPES = ("all", "hard", "semihard", "easy")


class Triplets(NamedTuple):
    """Fixed-size triplets, PML's triplet ``indices_tuple`` plus a validity mask.

    Each field is [T]: ``anchor`` indexes the (local) rows of ``embeddings``,
    ``positive`` and ``negative`` the candidates (the gathered batch, or the
    reference set); only the entries where ``valid`` is True are triplets
    (the others are padding, with index 0).
    """

    anchor: jax.Array  # [T] int32
    positive: jax.Array  # [T] int32
    negative: jax.Array  # [T] int32
    valid: jax.Array  # [T] bool


class Rows(NamedTuple):
    """The anchors of a labelled batch and their candidates (``anchors_and_candidates``)."""

    anchors: jax.Array  # [b, D] float32
    labels: jax.Array  # [b] int32
    mask: jax.Array  # [b] bool
    candidates: jax.Array  # [M, D]
    candidate_labels: jax.Array  # [M]
    candidate_mask: jax.Array  # [M]
    anchor_index: jax.Array  # [b] column of each anchor among the candidates; -1: none


def anchors_and_candidates(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    mask: jax.Array | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    axis_name: str | None = None,
    normalize: bool = False,
    gather: bool = True,
) -> Rows:
    """Checks a labelled batch and builds its anchors and candidates.

    The anchors are the (local) rows of ``embeddings``. The candidates are the
    batch gathered from every device under ``axis_name`` (each anchor then
    sits at column ``anchor_index``, never its own positive), or, with
    ``reference_embeddings``, the reference set gathered the same way (then no
    candidate is an anchor: ``anchor_index`` is -1, PML's ``ref_emb``).
    ``gather=False`` leaves the candidates local (a ring passes them from
    device to device); ``anchor_index`` stays global.

    Raises:
      ValueError: naming the argument: bad shapes or dtypes, reference labels
        without reference embeddings (or the reverse), another dimension.
    """
    embeddings = _checks.check_embeddings(embeddings)
    batch = embeddings.shape[0]
    labels = _checks.check_labels(labels, batch)
    mask = _checks.check_mask(mask, batch)
    if (reference_embeddings is None) != (reference_labels is None):
        raise ValueError(
            "`reference_embeddings` and `reference_labels` go together: pass both or neither."
        )
    if reference_embeddings is None:
        if reference_mask is not None:
            raise ValueError("`reference_mask` needs `reference_embeddings`.")
        cands, cand_labels, cand_mask = embeddings, labels, mask
        anchor_index = parallel.anchor_index(batch, axis_name)
    else:
        cands = _checks.check_embeddings(reference_embeddings, "reference_embeddings")
        if cands.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"`reference_embeddings` has dimension {cands.shape[1]} but `embeddings` "
                f"have {embeddings.shape[1]}."
            )
        cand_labels = _checks.check_labels(reference_labels, cands.shape[0], "reference_labels")
        cand_mask = _checks.check_mask(reference_mask, cands.shape[0], "reference_mask")
        anchor_index = jnp.full((batch,), -1, jnp.int32)
    if normalize:
        embeddings = l2_normalize(embeddings)
        cands = embeddings if reference_embeddings is None else l2_normalize(cands)
    collect = (lambda x: parallel.gather(x, axis_name)) if gather else (lambda x: x)
    return Rows(
        anchors=embeddings,
        labels=labels,
        mask=mask,
        candidates=collect(cands),
        candidate_labels=collect(cand_labels),
        candidate_mask=collect(cand_mask),
        anchor_index=anchor_index,
    )


def _label_masks(rows: Rows) -> tuple[jax.Array, jax.Array]:
    return pair_masks(
        rows.labels,
        rows.candidate_labels,
        anchor_index=rows.anchor_index,
        mask=rows.mask,
        reference_mask=rows.candidate_mask,
    )


def pair_masks(
    labels: jax.Array,
    reference_labels: jax.Array | None = None,
    *,
    anchor_index: jax.Array | None = None,
    mask: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Positive and negative pair masks from labels.

    pos[i, j] = labels[i] == reference_labels[j] and j is not anchor i itself;
    neg[i, j] = labels[i] != reference_labels[j]; both only where row i and
    column j are valid.

    Args:
      labels: [b] integer labels of the anchors.
      reference_labels: [M] integer labels of the candidates; None means the
        anchors themselves (then ``anchor_index`` defaults to ``arange(b)``).
      anchor_index: [b] column of each anchor in the reference set, to exclude
        (i, i) pairs; e.g. ``jaxmetric.parallel.anchor_index`` when the
        reference is the batch gathered from all devices. None with
        ``reference_labels`` given: the two sets are disjoint.
      mask: [b] bool, valid anchors (None: all).
      reference_mask: [M] bool, valid candidates (None: all, or ``mask`` when
        ``reference_labels`` is None).

    Returns:
      ``(positive_mask, negative_mask)``, both bool [b, M].

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> pos, neg = jaxmetric.mining.pair_masks(jnp.array([0, 0, 1]))
      >>> pos.astype(int).tolist()
      [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    """
    labels = _checks.check_integer_labels(labels)
    batch = labels.shape[0]
    mask = _checks.check_mask(mask, batch)
    if reference_labels is None:
        reference_labels = labels
        if reference_mask is None:
            reference_mask = mask
        if anchor_index is None:
            anchor_index = jnp.arange(batch)
    reference_labels = _checks.check_integer_labels(reference_labels, "reference_labels")
    num_ref = reference_labels.shape[0]
    reference_mask = _checks.check_mask(reference_mask, num_ref, "reference_mask")
    valid = mask[:, None] & reference_mask[None, :]
    same = labels[:, None] == reference_labels[None, :]
    if anchor_index is not None:
        not_self = anchor_index[:, None] != jnp.arange(num_ref)[None, :]
    else:
        not_self = jnp.ones_like(same)
    return same & not_self & valid, ~same & valid


def triplets_from_mask(triplet_mask: jax.Array, *, max_triplets: int | None = None) -> Triplets:
    """The True entries of a [b, M, M] triplet mask as fixed-size ``Triplets``.

    The triplets come in (anchor, positive, negative) row-major order, the
    order of ``torch.where`` (PML's miners); ``valid`` marks the first
    ``count`` entries. With more triplets than ``max_triplets`` the first
    ``max_triplets`` are kept.

    Args:
      triplet_mask: [b, M, M] bool, t[a, p, n] (e.g. ``triplet_mask``).
      max_triplets: T, the fixed size; None: b * M * M (every triplet fits).

    Returns:
      ``Triplets`` of [T] arrays.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> pos, neg = jaxmetric.mining.pair_masks(jnp.array([0, 0, 1]))
      >>> t = jaxmetric.mining.triplets_from_mask(
      ...     jaxmetric.mining.triplet_mask(pos, neg), max_triplets=3)
      >>> t.anchor.tolist(), t.positive.tolist(), t.negative.tolist(), t.valid.tolist()
      ([0, 1, 0], [1, 0, 0], [2, 2, 0], [True, True, False])
    """
    triplet_mask = jnp.asarray(triplet_mask)
    if triplet_mask.ndim != 3:
        raise ValueError(
            f"`triplet_mask` must be 3-D [anchors, candidates, candidates], got shape "
            f"{triplet_mask.shape}."
        )
    b, m, m2 = triplet_mask.shape
    size = b * m * m2 if max_triplets is None else _checks.check_int(max_triplets, "max_triplets")
    triplet_mask = jax.lax.stop_gradient(triplet_mask).astype(bool)
    a, p, n = jnp.nonzero(triplet_mask, size=size, fill_value=0)
    valid = jnp.arange(size) < jnp.sum(triplet_mask)
    return Triplets(a.astype(jnp.int32), p.astype(jnp.int32), n.astype(jnp.int32), valid)


def multi_similarity_miner(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    epsilon: float = 0.1,
    mask: jax.Array | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """PML's ``MultiSimilarityMiner(epsilon)``: mined pairs, for a pair loss's ``pairs=``.

    ``multi_similarity_mask`` on the cosine similarities of the anchors to the
    candidates (the gathered batch, or the reference set).

    Args:
      embeddings: [b, D] float (the local rows under ``axis_name``).
      labels: [b] integer labels.
      epsilon: the miner's margin, >= 0.
      mask: [b] bool, valid rows. None: all valid.
      reference_embeddings, reference_labels, reference_mask: candidates of
        another set ([R, D], [R], [R]; PML's ``ref_emb`` / ``ref_labels``);
        None: the batch itself (no (i, i) pairs).
      axis_name: mapped axis; the candidates are gathered from every device.

    Returns:
      ``(positive_mask, negative_mask)``, bool [b, M], M the number of
      candidates; no gradient.

    Example:
      >>> import jax, jax.numpy as jnp, jaxmetric
      >>> x = jax.random.normal(jax.random.key(0), (8, 4))
      >>> y = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
      >>> pairs = jaxmetric.mining.multi_similarity_miner(x, y)
      >>> mined = jaxmetric.contrastive_loss(x, y, pairs=pairs)
    """
    _checks.check_non_negative(epsilon, "epsilon")
    rows = anchors_and_candidates(
        embeddings,
        labels,
        mask=mask,
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        axis_name=axis_name,
        normalize=True,
    )
    sim = pairwise_similarities(rows.anchors, rows.candidates, metric="dot")
    return multi_similarity_mask(sim, *_label_masks(rows), epsilon=epsilon)


def _miner_distances(rows: Rows, metric: str):
    dist = jax.lax.stop_gradient(pairwise_distances(rows.anchors, rows.candidates, metric=metric))
    return dist, *_label_masks(rows)


def triplet_margin_miner(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    margin: float = 0.2,
    type_of_triplets: str = "all",
    metric: str = "euclidean",
    normalize: bool = True,
    max_triplets: int | None = None,
    mask: jax.Array | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> Triplets:
    """PML's ``TripletMarginMiner(margin, type_of_triplets)``, as fixed-size ``Triplets``.

    Of the valid triplets (a, p, n), with g = d(a, n) - d(a, p):
    "all" keeps g <= margin (the triplets that violate the margin), "hard"
    g <= 0, "semihard" 0 < g <= margin, "easy" g > margin. The boundaries
    are PML's (inclusive), not those of ``triplet_margin_loss(mining=...)``.

    Args:
      embeddings: [b, D] float (the local rows under ``axis_name``).
      labels: [b] integer labels.
      margin: >= 0 (PML: 0.2).
      type_of_triplets: "all", "hard", "semihard" or "easy".
      metric: "euclidean", "squared_euclidean" or "cosine".
      normalize: L2-normalise the rows first (PML's default distance).
      max_triplets: T, the fixed size; None: b * M * M. Beyond T triplets the
        first T in (anchor, positive, negative) order are kept.
      mask, reference_embeddings, reference_labels, reference_mask, axis_name:
        as ``multi_similarity_miner``.

    Returns:
      ``Triplets`` [T] for ``triplet_margin_loss(triplets=...)``: local anchor
      rows, positive and negative columns of the candidates; no gradient.

    Example:
      >>> import jax, jax.numpy as jnp, jaxmetric
      >>> x = jax.random.normal(jax.random.key(0), (6, 4))
      >>> y = jnp.array([0, 0, 1, 1, 2, 2])
      >>> t = jaxmetric.mining.triplet_margin_miner(x, y, margin=0.2, max_triplets=48)
      >>> t.anchor.shape, t.valid.dtype
      ((48,), dtype('bool'))

    ``jaxmetric.triplet_margin_loss(x, y, triplets=t)`` is then the loss on
    those triplets (PML's ``loss(x, y, miner(x, y))``).
    """
    _checks.check_non_negative(margin, "margin")
    _checks.check_choice(type_of_triplets, TRIPLET_TYPES, "type_of_triplets")
    _checks.check_choice(metric, DISTANCE_METRICS, "metric")
    rows = anchors_and_candidates(
        embeddings,
        labels,
        mask=mask,
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        axis_name=axis_name,
        normalize=normalize,
    )
    dist, pos, neg = _miner_distances(rows, metric)
    gap = dist[:, None, :] - dist[:, :, None]  # [a, p, n]: d(a, n) - d(a, p)
    if type_of_triplets == "easy":
        keep = gap > margin
    else:
        keep = gap <= margin
        if type_of_triplets == "hard":
            keep &= gap <= 0
        elif type_of_triplets == "semihard":
            keep &= gap > 0
    return triplets_from_mask(triplet_mask(pos, neg) & keep, max_triplets=max_triplets)


def batch_hard_miner(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    metric: str = "euclidean",
    normalize: bool = True,
    mask: jax.Array | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> Triplets:
    """PML's ``BatchHardMiner``: per anchor its farthest positive and closest negative.

    ``batch_hard`` on the anchor-to-candidate distances, as ``Triplets`` of
    size b (one per anchor; anchors lacking a positive or a negative are not
    valid, PML drops them).

    Args:
      embeddings, labels, mask: as ``multi_similarity_miner``.
      reference_embeddings, reference_labels, reference_mask, axis_name: as
        ``multi_similarity_miner``.
      metric, normalize: the distance, as ``triplet_margin_miner``.

    Returns:
      ``Triplets`` [b]; no gradient.

    Example:
      >>> import jax, jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
      >>> t = jaxmetric.mining.batch_hard_miner(x, jnp.array([0, 0, 1, 1]))
      >>> t.positive.tolist(), t.negative.tolist(), t.valid.tolist()
      ([1, 0, 3, 2], [2, 3, 0, 1], [True, True, True, True])

    ``jaxmetric.triplet_margin_loss(x, y, triplets=t)`` equals
    ``triplet_margin_loss(x, y, mining="batch_hard")``.
    """
    _checks.check_choice(metric, DISTANCE_METRICS, "metric")
    rows = anchors_and_candidates(
        embeddings,
        labels,
        mask=mask,
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        axis_name=axis_name,
        normalize=normalize,
    )
    pos_index, neg_index, valid = batch_hard(*_miner_distances(rows, metric))
    anchor = jnp.arange(rows.anchors.shape[0], dtype=jnp.int32)
    return Triplets(anchor, pos_index, neg_index, valid)


def triplet_mask(positive_mask: jax.Array, negative_mask: jax.Array) -> jax.Array:
    """All valid triplets (batch-all): [b, M, M] bool, t[a, p, n] = pos[a, p] & neg[a, n]."""
    _checks.check_miner_inputs(positive_mask, positive_mask, negative_mask, "positive_mask")
    return positive_mask[:, :, None] & negative_mask[:, None, :]


def hard_triplet_mask(
    dist: jax.Array, positive_mask: jax.Array, negative_mask: jax.Array
) -> jax.Array:
    """Hard triplets: valid (a, p, n) with d(a, n) < d(a, p). [b, M, M] bool."""
    dist = _checks.check_miner_inputs(dist, positive_mask, negative_mask)
    dist = jax.lax.stop_gradient(dist)
    harder = dist[:, None, :] < dist[:, :, None]
    return triplet_mask(positive_mask, negative_mask) & harder


def semi_hard_triplet_mask(
    dist: jax.Array,
    positive_mask: jax.Array,
    negative_mask: jax.Array,
    *,
    margin: float,
) -> jax.Array:
    """Semi-hard triplets: valid (a, p, n) with d(a,p) < d(a,n) < d(a,p) + margin.

    Returns [b, M, M] bool. Reference: Schroff et al., "FaceNet", CVPR 2015.
    """
    dist = _checks.check_miner_inputs(dist, positive_mask, negative_mask)
    _checks.check_non_negative(margin, "margin")
    dist = jax.lax.stop_gradient(dist)
    d_ap = dist[:, :, None]
    d_an = dist[:, None, :]
    semi = (d_an > d_ap) & (d_an < d_ap + margin)
    return triplet_mask(positive_mask, negative_mask) & semi


def batch_hard(
    dist: jax.Array, positive_mask: jax.Array, negative_mask: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Batch-hard mining: per anchor the farthest positive and the closest negative.

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person
    Re-Identification", 2017. Ties go to the lowest column index.

    Args:
      dist: [b, M] anchor-to-candidate distances.
      positive_mask, negative_mask: [b, M] bool from ``pair_masks``.

    Returns:
      ``(positive_index, negative_index, valid)``, each [b]: int32 columns of
      the chosen positive and negative, and whether the anchor has both (PML's
      BatchHardMiner drops the others).
    """
    dist = _checks.check_miner_inputs(dist, positive_mask, negative_mask)
    dist = jax.lax.stop_gradient(dist)
    pos_index = jnp.argmax(jnp.where(positive_mask, dist, -jnp.inf), axis=1)
    neg_index = jnp.argmin(jnp.where(negative_mask, dist, jnp.inf), axis=1)
    valid = jnp.any(positive_mask, axis=1) & jnp.any(negative_mask, axis=1)
    return pos_index.astype(jnp.int32), neg_index.astype(jnp.int32), valid


def facenet_semi_hard(
    dist: jax.Array, positive_mask: jax.Array, negative_mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """FaceNet semi-hard mining: one negative per positive pair.

    For each positive pair (a, p): the closest negative n with
    d(a, n) > d(a, p); if there is none, the farthest negative. This is
    ``tfa.losses.TripletSemiHardLoss``'s rule (Schroff et al., 2015).

    Args:
      dist: [b, M] anchor-to-candidate distances.
      positive_mask, negative_mask: [b, M] bool from ``pair_masks``.

    Returns:
      ``(negative_index, valid)``, both [b, M]: for the pair (a, p) the column
      of its negative, and whether (a, p) is a positive pair whose anchor has a
      negative at all.
    """
    dist = _checks.check_miner_inputs(dist, positive_mask, negative_mask)
    dist = jax.lax.stop_gradient(dist)
    d_ap = dist[:, :, None]
    d_an = dist[:, None, :]
    outside = negative_mask[:, None, :] & (d_an > d_ap)  # [b, M, M]
    closest_outside = jnp.argmin(jnp.where(outside, d_an, jnp.inf), axis=2)
    farthest = jnp.argmax(jnp.where(negative_mask, dist, -jnp.inf), axis=1)
    negative_index = jnp.where(jnp.any(outside, axis=2), closest_outside, farthest[:, None])
    valid = positive_mask & jnp.any(negative_mask, axis=1, keepdims=True)
    return negative_index.astype(jnp.int32), valid


def multi_similarity_mask(
    sim: jax.Array,
    positive_mask: jax.Array,
    negative_mask: jax.Array,
    *,
    epsilon: float = 0.1,
) -> tuple[jax.Array, jax.Array]:
    """Multi-similarity pair mining (Wang et al. 2019, eq. 8 and 9).

    With similarities S (larger is closer), per anchor a:

    - a positive p is kept if S_ap - epsilon < max_n S_an (less similar than
      the hardest negative plus epsilon);
    - a negative n is kept if S_an + epsilon > min_p S_ap.

    An anchor without a negative keeps no positive and one without a positive
    keeps no negative. The same rule as pytorch-metric-learning's
    ``MultiSimilarityMiner(epsilon)`` (cosine similarity), whose pairs, fed to
    a pair loss as ``indices_tuple``, are the pairs of these two masks.

    Args:
      sim: [b, M] anchor-to-candidate similarities (e.g. cosine).
      positive_mask, negative_mask: [b, M] bool from ``pair_masks``.
      epsilon: margin of the rule, >= 0 (the paper and PML: 0.1).

    Returns:
      ``(positive_mask, negative_mask)``: the mined subsets, both bool [b, M].

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> sim = jnp.array([[1.0, 0.9, 0.2, 0.85]])
      >>> pos = jnp.array([[False, True, False, False]])
      >>> neg = jnp.array([[False, False, True, True]])
      >>> p, n = jaxmetric.mining.multi_similarity_mask(sim, pos, neg)
      >>> p.tolist(), n.tolist()
      ([[False, True, False, False]], [[False, False, False, True]])
    """
    _checks.check_non_negative(epsilon, "epsilon")
    sim = _checks.check_miner_inputs(sim, positive_mask, negative_mask, "sim")
    sim = jax.lax.stop_gradient(sim)
    hardest_negative = jnp.max(jnp.where(negative_mask, sim, -jnp.inf), axis=1, keepdims=True)
    hardest_positive = jnp.min(jnp.where(positive_mask, sim, jnp.inf), axis=1, keepdims=True)
    return (
        positive_mask & (sim - epsilon < hardest_negative),
        negative_mask & (sim + epsilon > hardest_positive),
    )


def _distance_weighted(rows: Rows, cutoff: float, nonzero_loss_cutoff: float):
    """(probabilities [b, M], positive_mask [b, M]) of ``distance_weighted_miner``."""
    dist, pos, neg = _miner_distances(rows, "euclidean")
    dim = rows.anchors.shape[1]
    d = jnp.maximum(dist, cutoff)
    inner = 1.0 - 0.25 * jnp.square(d)  # <= 0 at d >= 2: log 0, weight 0 (PML: inf / NaN)
    log_w = (2.0 - dim) * jnp.log(d) - ((dim - 3.0) / 2.0) * jnp.log(
        jnp.where(inner > 0, inner, 1.0)
    )
    keep = neg & (inner > 0) & jnp.isfinite(log_w) & (d < nonzero_loss_cutoff)
    shift = jnp.max(jnp.where(keep, log_w, -jnp.inf), axis=1, keepdims=True)
    w = jnp.where(keep, jnp.exp(log_w - jnp.where(keep, shift, 0.0)), 0.0)
    total = jnp.sum(w, axis=1, keepdims=True)
    return jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), 0.0), pos


def distance_weighted_miner(
    embeddings: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    cutoff: float = 0.5,
    nonzero_loss_cutoff: float = 1.4,
    mask: jax.Array | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    axis_name: str | None = None,
    return_probabilities: bool = False,
) -> Triplets | tuple[Triplets, jax.Array]:
    r"""Distance-weighted sampling (Wu et al. 2017; PML's ``DistanceWeightedMiner``).

    On the unit sphere in D dimensions the distance d between two random
    points has density :math:`q(d) \propto d^{D-2} (1 - d^2/4)^{(D-3)/2}`.
    For every positive pair (a, p) one negative n is drawn with probability

    .. math::
        P(n \mid a) \propto q\big(\max(d_{an}, c)\big)^{-1}\,
            [d_{an} < \lambda_{nz}]

    over the negatives n of a, with c = ``cutoff`` (the paper's clip of the
    weights, as in its code and PML) and :math:`\lambda_{nz}` =
    ``nonzero_loss_cutoff`` (farther negatives give the margin loss 0 anyway).
    Rows are L2-normalised; d is euclidean.

    Fixed shape: T = b * M triplets, entry ``a * M + p`` for the pair (a, p),
    valid where p is a positive of anchor a and a has a negative of non-zero
    weight. Each anchor draws with its own key, ``fold_in(key, global row)``,
    so the triplets under ``axis_name`` are those of one device on the whole
    batch.

    PML draws, for each anchor, as many positives as its class has rows,
    uniformly with replacement, and one negative for each; here every positive
    pair gets one negative (the paper's code), from the same P(n | a). PML
    subtracts one global maximum before ``exp`` (a row far below it can
    underflow to zero weight); here each row has its own.

    Args:
      embeddings: [b, D] float (the local rows under ``axis_name``).
      labels: [b] integer labels.
      key: a PRNG key (``jax.random.key``), the same on every device.
      cutoff: c > 0, the smallest distance the weights see (PML: 0.5).
      nonzero_loss_cutoff: negatives at this distance or farther get weight 0,
        > 0 (PML: 1.4).
      mask, reference_embeddings, reference_labels, reference_mask, axis_name:
        as ``multi_similarity_miner``.
      return_probabilities: also return P(n | a), [b, M] (rows sum to 1, or
        0 for an anchor without a weighted negative).

    Returns:
      ``Triplets`` [b * M] for ``margin_loss(triplets=...)`` or
      ``triplet_margin_loss(triplets=...)``; no gradient. With
      ``return_probabilities``, ``(triplets, probabilities)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxmetric
      >>> x = jax.random.normal(jax.random.key(0), (8, 4))
      >>> y = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
      >>> t = jaxmetric.mining.distance_weighted_miner(x, y, jax.random.key(1))
      >>> t.anchor.shape, int(t.valid.sum())  # one triplet per positive pair
      ((64,), 8)

    ``jaxmetric.margin_loss(x, y, triplets=t)`` is then the paper's loss
    (PML's ``MarginLoss()(x, y, DistanceWeightedMiner()(x, y))``).

    Reference:
      Wu, Manmatha, Smola, Krähenbühl, "Sampling Matters in Deep Embedding
      Learning", ICCV 2017, section 4.
    """
    _checks.check_positive(cutoff, "cutoff")
    _checks.check_positive(nonzero_loss_cutoff, "nonzero_loss_cutoff")
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if not (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()) and not (
        key.dtype == jnp.uint32 and key.shape == (2,)
    ):
        raise ValueError(
            f"`key` must be one PRNG key (jax.random.key(seed)), got {key.dtype} {key.shape}."
        )
    rows = anchors_and_candidates(
        embeddings,
        labels,
        mask=mask,
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        axis_name=axis_name,
        normalize=True,
    )
    probs, pos = _distance_weighted(rows, cutoff, nonzero_loss_cutoff)
    b, m = probs.shape
    logits = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(parallel.anchor_index(b, axis_name))
    negative = jax.vmap(lambda k, row: jax.random.categorical(k, row, shape=(m,)))(keys, logits)
    valid = pos & jnp.any(probs > 0, axis=1, keepdims=True)
    triplets = Triplets(
        jnp.repeat(jnp.arange(b, dtype=jnp.int32), m),
        jnp.tile(jnp.arange(m, dtype=jnp.int32), b),
        negative.reshape(-1).astype(jnp.int32),
        valid.reshape(-1),
    )
    return (triplets, probs) if return_probabilities else triplets
