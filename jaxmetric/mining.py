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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks

TRIPLET_MINING = ("all", "hard", "semi_hard", "batch_hard", "facenet_semi_hard")


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
