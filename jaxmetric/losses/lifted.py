"""Lifted structure losses: Oh Song et al.'s pair form and Hermans et al.'s per-anchor form."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import pairwise_distances
from jaxmetric.losses import _common


def check(
    *,
    pos_margin: float,
    neg_margin: float,
    reduction: str,
    reduction_threshold: tuple[float | None, float | None] | None,
) -> None:
    """Checks the hyper-parameters: Margins >= 0, a reduction."""
    _checks.check_non_negative(pos_margin, "pos_margin")
    _checks.check_non_negative(neg_margin, "neg_margin")
    _common.check_reduction(reduction, reduction_threshold)


# --- Oh Song et al. 2016: one term per positive pair --------------------------------


def _pair_terms(
    batch: _common.Batch, axis_name: str | None, *, pos_margin: float, neg_margin: float
) -> tuple[jax.Array, jax.Array]:
    """Per positive pair terms [b, M] and which pairs count (a negative on either side).

    The negatives of pair (i, j): the negative pairs of anchor i (row i) and
    those of candidate j: its own row when j is a row of the batch (on any
    device: the rows and masks are gathered), else (a reference or memory
    row) the negative pairs (k, j) of every anchor k of the global batch.
    """
    dist = pairwise_distances(batch.anchors, batch.candidates, metric="euclidean")  # [b, M]
    pos, neg = batch.pair_masks()
    anchor_lse = _common.masked_logsumexp(neg_margin - dist, neg, axis=1)  # [b]
    # Every device's anchors against the candidates: [G, M].
    all_anchors = parallel.gather(batch.anchors, axis_name)
    all_neg = parallel.gather(neg, axis_name)
    all_index = parallel.gather(batch.anchor_index, axis_name)
    all_logits = neg_margin - pairwise_distances(all_anchors, batch.candidates, metric="euclidean")
    row_lse = _common.masked_logsumexp(all_logits, all_neg, axis=1)  # [G] the rows' negatives
    col_lse = _common.masked_logsumexp(all_logits, all_neg, axis=0)  # [M] pairs (k, j)
    is_row = all_index[:, None] == jnp.arange(dist.shape[1])[None, :]  # [G, M]: g sits at j
    has_row = jnp.any(is_row, axis=0)
    row_at = jnp.sum(jnp.where(is_row, row_lse[:, None], 0.0), axis=0)
    row_any = jnp.any(is_row & jnp.any(all_neg, axis=1, keepdims=True), axis=0)
    cand_lse = jnp.where(has_row, row_at, col_lse)  # [M]
    cand_any = jnp.where(has_row, row_any, jnp.any(all_neg, axis=0))
    lse = jnp.logaddexp(anchor_lse[:, None], cand_lse[None, :])
    # Each unordered pair appears twice (i, j) and (j, i): half of each (PML).
    losses = 0.5 * jnp.square(jax.nn.relu(lse + dist - pos_margin))
    valid = pos & (jnp.any(neg, axis=1, keepdims=True) | cand_any[None, :])
    return losses, valid


def terms(batch: _common.Batch, **hyper) -> tuple[jax.Array, jax.Array]:
    """Per positive pair terms [b, M] (one device; ``value`` gathers under ``axis_name``)."""
    return _pair_terms(batch, None, pos_margin=hyper["pos_margin"], neg_margin=hyper["neg_margin"])


def value(batch: _common.Batch, axis_name: str | None, **hyper) -> jax.Array:
    """``reduce_terms`` of the terms, whose candidates' negatives come from all devices."""
    losses, valid = _pair_terms(
        batch, axis_name, pos_margin=hyper["pos_margin"], neg_margin=hyper["neg_margin"]
    )
    return _common.reduce_terms(losses, valid, axis_name, **hyper)


def lifted_structure_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    reduction: str = "mean",
    reduction_threshold: tuple[float | None, float | None] | None = None,
    pairs: tuple[jax.Array, jax.Array] | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Lifted structured loss (Oh Song et al. 2016): one smooth hinge per positive pair.

    With euclidean distances :math:`d` between L2-normalised rows, for each
    ordered positive pair (i, j), N(i) and N(j) the negative pairs of i and
    of j:

    .. math::
        J_{ij} = \log\Big(\sum_{(i,k) \in N(i)} e^{m_{\text{neg}} - d_{ik}}
                        + \sum_{(j,l) \in N(j)} e^{m_{\text{neg}} - d_{jl}}\Big)
                 + d_{ij} - m_{\text{pos}},
        \qquad \ell_{ij} = \tfrac{1}{2} [J_{ij}]_+^2

    and the loss is the mean of :math:`\ell_{ij}` over the ordered positive
    pairs that have a negative on either side: each unordered pair counts
    twice at half weight, so this is the paper's
    :math:`\frac{1}{2|P|} \sum_{\{i,j\} \in P} [J_{ij}]_+^2`.

    The negative pairs of j are its own row's when j is a row of the batch
    (on any device), as PML; with ``reference_embeddings`` (or an XBM
    memory) a candidate j has no row, and its negative pairs are those of
    every anchor of the global batch with j.

    Equals PML's ``LiftedStructureLoss(neg_margin, pos_margin)`` (MeanReducer
    over the positive pairs), also with mined ``pairs`` as ``indices_tuple``.
    PML takes an empty log-sum-exp as 0, so a positive pair without any
    negative pair costs [d - m_pos]₊² / 2 there; here it does not count. With
    ``ref_emb`` PML compares the positive's index in the reference set with
    anchor indices of the batch (two index spaces), so it does not match the
    reference rule above.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; L2-normalised inside.
      labels: [B] integer labels.
      pos_margin: m_pos >= 0 (paper and PML: 0).
      neg_margin: m_neg >= 0, the paper's alpha (paper and PML: 1).
      reduction: of the per-pair terms: "mean", "mean_nonzero", "sum",
        "threshold" (``reduction_threshold=(low, high)``) or "none" (the
        [B, M] local terms, 0 where a pair does not count); see
        ``jaxmetric.contrastive_loss``.
      reduction_threshold: (low, high) for "threshold".
      pairs: ``(positive_mask, negative_mask)`` [B, M] bool, the pairs to use
        instead of every labelled pair (PML's ``indices_tuple``).
      reference_embeddings, reference_labels, reference_mask: another set of
        candidates (PML's ``ref_emb``), as in ``jaxmetric.contrastive_loss``.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; positives and negatives come from all devices.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no positive pair has a
      negative.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
      >>> loss = jaxmetric.lifted_structure_loss(x, jnp.array([0, 0, 1, 1]))
      >>> round(float(loss), 4)
      3.4238

    Reference:
      Oh Song, Xiang, Jegelka, Savarese, "Deep Metric Learning via Lifted
      Structured Feature Embedding", CVPR 2016, eq. 4.
    """
    return _common.label_loss(
        SPEC,
        embeddings,
        labels,
        mask,
        axis_name,
        pairs=pairs,
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        pos_margin=pos_margin,
        neg_margin=neg_margin,
        reduction=reduction,
        reduction_threshold=reduction_threshold,
    )


SPEC = _common.LabelLoss(lifted_structure_loss, check=check, terms=terms, value=value)


# --- Hermans et al. 2017: one term per anchor ---------------------------------------


def generalized_terms(
    batch: _common.Batch, *, pos_margin: float, neg_margin: float, **_
) -> tuple[jax.Array, jax.Array]:
    """Per-anchor lifted structure losses [b]; anchors with a positive and a negative count."""
    dist = pairwise_distances(batch.anchors, batch.candidates, metric="euclidean")
    pos, neg = batch.pair_masks()
    pos_lse = _common.masked_logsumexp(dist - pos_margin, pos, axis=1)
    neg_lse = _common.masked_logsumexp(neg_margin - dist, neg, axis=1)
    valid = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
    return jax.nn.relu(pos_lse + neg_lse), valid


def generalized_lifted_structure_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    reduction: str = "mean",
    reduction_threshold: tuple[float | None, float | None] | None = None,
    pairs: tuple[jax.Array, jax.Array] | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Generalised lifted structure loss (Hermans et al. 2017): one smooth hinge per anchor.

    With euclidean distances :math:`d_{ij}` between L2-normalised rows
    (PML's default distance), per anchor i with positives P(i) and negatives
    N(i):

    .. math::
        \ell_i = \Big[\log \sum_{p \in P(i)} e^{d_{ip} - m_{\text{pos}}}
                    + \log \sum_{n \in N(i)} e^{m_{\text{neg}} - d_{in}}\Big]_+

    averaged over the anchors that have a positive and a negative.

    This is the per-anchor form of Hermans et al. (2017, section 2), which
    PML implements as ``GeneralizedLiftedStructureLoss(neg_margin,
    pos_margin)``; the pair form of Oh Song et al. (PML's
    ``LiftedStructureLoss``) is ``jaxmetric.lifted_structure_loss``. PML takes
    an empty log-sum-exp as 0 and averages over every anchor, so the two
    agree when every anchor has a positive and a negative; on other batches
    this function leaves such anchors out (so a batch with no positive pair
    gives 0, as every loss here), for every ``reduction``.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; L2-normalised inside.
      labels: [B] integer labels.
      pos_margin: positives closer than this are cheap (>= 0).
      neg_margin: negatives farther than this are cheap (>= 0).
      reduction: of the per-anchor terms: "mean", "mean_nonzero", "sum",
        "threshold" (``reduction_threshold=(low, high)``) or "none" (the [B]
        local terms, 0 where an anchor does not count); see
        ``jaxmetric.contrastive_loss``.
      reduction_threshold: (low, high) for "threshold".
      pairs: ``(positive_mask, negative_mask)`` [B, M] bool, the pairs to use
        instead of every labelled pair (PML's ``indices_tuple``).
      reference_embeddings, reference_labels, reference_mask: another set of
        candidates (PML's ``ref_emb``), as in ``jaxmetric.contrastive_loss``.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; positives and negatives come from all devices.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no anchor has both a
      positive and a negative.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
      >>> y = jnp.array([0, 0, 1, 1])
      >>> round(float(jaxmetric.generalized_lifted_structure_loss(x, y)), 4)
      1.8919

    Reference:
      Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person
      Re-Identification", 2017 (generalised lifted embedding, section 2).
    """
    return _common.label_loss(
        GENERALIZED_SPEC,
        embeddings,
        labels,
        mask,
        axis_name,
        pairs=pairs,
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        pos_margin=pos_margin,
        neg_margin=neg_margin,
        reduction=reduction,
        reduction_threshold=reduction_threshold,
    )


GENERALIZED_SPEC = _common.LabelLoss(
    generalized_lifted_structure_loss,
    check=check,
    terms=generalized_terms,
    reduce=_common.reduce_terms,
)
# Both losses, for the registry.
SPECS = (SPEC, GENERALIZED_SPEC)
