"""Margin loss (Wu et al. 2017): hinges of the distances around a boundary beta."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxmetric import _checks, mining, parallel
from jaxmetric.distances import paired_distances, pairwise_distances
from jaxmetric.losses import _common


def check(*, margin: float, beta, nu: float) -> None:
    """Checks the hyper-parameters: margin, nu >= 0; beta a number > 0 or an
    array of rank 0 or 1 (a learnable scalar or one per class)."""
    _checks.check_non_negative(margin, "margin")
    _checks.check_non_negative(nu, "nu")
    if isinstance(beta, numbers.Real) and not isinstance(beta, bool):
        _checks.check_positive(beta, "beta")
        return
    if not hasattr(beta, "shape") or not jnp.issubdtype(jnp.result_type(beta), jnp.floating):
        raise ValueError(
            f"`beta` must be a number > 0 or a floating array (a scalar, or one per class "
            f"[num_classes]), got {beta!r}."
        )
    if jnp.ndim(beta) > 1:
        raise ValueError(
            f"`beta` must be a scalar or a [num_classes] array, got shape {jnp.shape(beta)}."
        )


def _anchor_beta(beta, labels: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
    """Each anchor's beta [b] and whether it has one (a label in [0, C) for a
    per-class beta [C]; every anchor for a scalar)."""
    beta = jnp.asarray(beta, dtype)
    if beta.ndim == 0:
        return jnp.broadcast_to(beta, labels.shape), jnp.ones(labels.shape, bool)
    num_classes = beta.shape[0]
    has = (labels >= 0) & (labels < num_classes)
    return beta[jnp.clip(labels, 0, num_classes - 1)], has


def terms(batch: _common.Batch, *, margin: float, beta, **_):
    """The hinges of the local anchors and how many triplets each stands for.

    Returns ``(pos_hinge, neg_hinge, beta_a), (pos_weight, neg_weight,
    triplet_weight)``: with given ``triplets``, [T] arrays, each weight 1 for
    a valid triplet and 0 otherwise; else, over all triplets of the pair masks
    (the labels', or the given ``pairs``), [b, M] hinges of the pairs, where
    a positive pair (a, p) stands for n_neg(a) triplets and a negative pair
    (a, n) for n_pos(a), and [b] per anchor (n_pos(a) n_neg(a) triplets):
    no [b, M, M] array. Weights are floats (their sums reach b * M^2).
    """
    anchor_beta, has_beta = _anchor_beta(beta, batch.labels, batch.anchors.dtype)
    if batch.triplets is not None:
        a, p, n, given = batch.triplets
        anchors = batch.anchors[a]
        d_ap = paired_distances(anchors, batch.candidates[p], metric="euclidean")
        d_an = paired_distances(anchors, batch.candidates[n], metric="euclidean")
        cand_mask = batch.candidate_mask
        valid = given & batch.mask[a] & has_beta[a] & cand_mask[p] & cand_mask[n]
        weight = valid.astype(d_ap.dtype)
        boundary = anchor_beta[a]
        pos_hinge = jax.nn.relu(d_ap - boundary + margin)
        neg_hinge = jax.nn.relu(boundary - d_an + margin)
        return (pos_hinge, neg_hinge, boundary), (weight, weight, weight)
    dist = pairwise_distances(batch.anchors, batch.candidates, metric="euclidean")
    pos, neg = batch.pair_masks()
    pos = pos & has_beta[:, None]
    neg = neg & has_beta[:, None]
    n_pos = jnp.sum(pos, axis=1).astype(dist.dtype)
    n_neg = jnp.sum(neg, axis=1).astype(dist.dtype)
    boundary = anchor_beta[:, None]
    pos_hinge = jax.nn.relu(dist - boundary + margin)
    neg_hinge = jax.nn.relu(boundary - dist + margin)
    weights = (
        jnp.where(pos, n_neg[:, None], 0.0),
        jnp.where(neg, n_pos[:, None], 0.0),
        n_pos * n_neg,
    )
    return (pos_hinge, neg_hinge, anchor_beta), weights


def reduce(losses, valid, axis_name: str | None, *, beta, nu: float, **_) -> jax.Array:
    """The weighted sum of the hinges over the weighted number of non-zero
    hinges (PML's DivisorReducer), plus nu times beta's regulariser."""
    (pos_hinge, neg_hinge, term_beta), (w_pos, w_neg, w_triplet) = losses, valid
    total = parallel.global_sum(w_pos * pos_hinge + w_neg * neg_hinge, axis_name)
    count = parallel.global_sum(
        jnp.where(pos_hinge > 0, w_pos, 0.0) + jnp.where(neg_hinge > 0, w_neg, 0.0), axis_name
    )
    loss = parallel.safe_divide(total, count)
    if not nu:
        return loss
    if jnp.ndim(beta) == 0:  # PML: nu * beta, once, when there is a triplet.
        has_triplet = parallel.global_sum(w_triplet, axis_name) > 0
        return loss + jnp.where(has_triplet, nu * jnp.asarray(beta, loss.dtype), 0.0)
    # Per class: nu * beta[y_a] for every triplet, over the same divisor.
    reg = parallel.global_sum(jnp.where(w_triplet > 0, w_triplet * term_beta, 0.0), axis_name)
    return loss + nu * parallel.safe_divide(reg, count)


def margin_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    margin: float = 0.2,
    beta: float | jax.Array = 1.2,
    nu: float = 0.0,
    pairs: tuple[jax.Array, jax.Array] | None = None,
    triplets: mining.Triplets | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Margin loss: positive pairs inside beta - margin, negatives beyond beta + margin.

    With :math:`d` the euclidean distance between L2-normalised rows, over
    every triplet (a, p, n) of the batch (p a positive of anchor a, n a
    negative), each triplet contributing its positive and its negative pair:

    .. math::
        L = \frac{\sum_{(a,p,n)} \big[(d_{ap} - \beta_a + \alpha)_+
              + (\beta_a - d_{an} + \alpha)_+\big]}
             {\#\{\text{those hinges} > 0\}}
          \; + \; \nu\, R(\beta)

    with :math:`\beta_a = \beta` (a scalar) or :math:`\beta_{y_a}` (one per
    class), 0 when no hinge is > 0. The regulariser (learnable beta): for a
    scalar, :math:`R = \beta` (added once when the batch has a triplet); per
    class, :math:`R = \sum_{(a,p,n)} \beta_{y_a}` over the same divisor.
    The triplets are never formed: each positive pair counts once per
    negative of its anchor and each negative pair once per positive.

    This is PML's ``MarginLoss(margin, nu, beta)`` (``triplets_per_anchor=
    "all"``, its default; ``DivisorReducer``). ``learn_beta=True`` is
    ``beta`` passed as an array the caller optimises (its gradient flows);
    ``num_classes=C`` is a ``[C]`` array (``jnp.full(C, 1.2)`` is PML's
    initial value), rows whose label is outside [0, C) then are no anchors
    (PML would fail). PML adds ``nu * R`` only with ``learn_beta=True``;
    here whenever ``nu > 0`` (for a fixed float beta, a constant). PML's
    ``indices_tuple`` is ``triplets=`` (as they are) or ``pairs=`` (every
    triplet of a given positive and a given negative pair of one anchor, as
    PML's ``convert_to_triplets``). The paper samples one negative per
    positive pair by distance: ``triplets=jaxmetric.mining.
    distance_weighted_miner(embeddings, labels, key)``, PML's
    ``DistanceWeightedMiner``. No ``reduction``: the divisor is the loss's.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class labels.
      margin: alpha >= 0 (paper and PML: 0.2).
      beta: the boundary: a number > 0 (paper and PML: 1.2), or a learnable
        array, a scalar or one per class [C].
      nu: weight of beta's regulariser, >= 0 (PML: 0; the paper: 0 or 0.1).
      pairs: ``(positive_mask, negative_mask)`` [B, M] bool (e.g.
        ``jaxmetric.mining.multi_similarity_miner``): the triplets are those
        of a given positive and a given negative pair of one anchor.
      triplets: ``jaxmetric.mining.Triplets`` [T] (e.g.
        ``distance_weighted_miner``): exactly these triplets (the valid ones
        whose rows are valid).
      reference_embeddings, reference_labels, reference_mask: [R, D], [R],
        [R]: positives and negatives from this other set (PML's ``ref_emb``
        / ``ref_labels``), gathered from all devices under ``axis_name``.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; pairs are formed with the candidates of all
        devices and the value is that of the global batch; ``beta``
        replicated.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when there is no triplet.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
      >>> round(float(jaxmetric.margin_loss(x, jnp.array([0, 0, 1, 1]))), 4)
      0.5056

    Reference:
      Wu, Manmatha, Smola, Krähenbühl, "Sampling Matters in Deep Embedding
      Learning", ICCV 2017.
    """
    if pairs is not None and triplets is not None:
        raise ValueError("`pairs` and `triplets` exclude each other: pass one of them.")
    return _common.label_loss(
        SPEC,
        embeddings,
        labels,
        mask,
        axis_name,
        pairs=pairs,
        triplets=triplets,
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        margin=margin,
        beta=beta,
        nu=nu,
    )


SPEC = _common.LabelLoss(margin_loss, check=check, terms=terms, reduce=reduce)
