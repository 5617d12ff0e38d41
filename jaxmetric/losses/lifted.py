"""Lifted structure loss (the generalised, per-anchor form)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks
from jaxmetric.distances import pairwise_distances
from jaxmetric.losses import _common


def check(*, pos_margin: float, neg_margin: float) -> None:
    """Checks the hyper-parameters: Margins >= 0."""
    _checks.check_non_negative(pos_margin, "pos_margin")
    _checks.check_non_negative(neg_margin, "neg_margin")


def terms(
    batch: _common.Batch, *, pos_margin: float, neg_margin: float
) -> tuple[jax.Array, jax.Array]:
    """Per-anchor lifted structure losses [b]; anchors with a positive and a negative count."""
    dist = pairwise_distances(batch.anchors, batch.candidates, metric="euclidean")
    pos, neg = batch.pair_masks()
    pos_lse = _common.masked_logsumexp(dist - pos_margin, pos, axis=1)
    neg_lse = _common.masked_logsumexp(neg_margin - dist, neg, axis=1)
    valid = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
    return jax.nn.relu(pos_lse + neg_lse), valid


def lifted_structure_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Generalised lifted structure loss: one smooth hinge per anchor.

    With euclidean distances :math:`d_{ij}` between L2-normalised rows
    (PML's default distance), per anchor i with positives P(i) and negatives
    N(i):

    .. math::
        \ell_i = \Big[\log \sum_{p \in P(i)} e^{d_{ip} - m_{\text{pos}}}
                    + \log \sum_{n \in N(i)} e^{m_{\text{neg}} - d_{in}}\Big]_+

    averaged over the anchors that have a positive and a negative.

    This is the per-anchor form of Hermans et al. (2017, section 2), which
    PML implements as ``GeneralizedLiftedStructureLoss(neg_margin,
    pos_margin)``; it is not the pair-based form of Oh Song et al. (PML's
    ``LiftedStructureLoss``). PML takes an empty log-sum-exp as 0 and averages
    over every anchor, so the two agree when every anchor has a positive and a
    negative; on other batches this function leaves such anchors out (so a
    batch with no positive pair gives 0, as every loss here).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; L2-normalised inside.
      labels: [B] integer labels.
      pos_margin: positives closer than this are cheap (>= 0).
      neg_margin: negatives farther than this are cheap (>= 0).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; positives and negatives come from all devices.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no anchor has both a
      positive and a negative.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
      >>> loss = jaxmetric.lifted_structure_loss(x, jnp.array([0, 0, 1, 1]))
      >>> round(float(loss), 4)
      1.8919

    Reference:
      Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person
      Re-Identification", 2017 (generalised lifted embedding, section 2);
      Oh Song et al., "Deep Metric Learning via Lifted Structured Feature
      Embedding", CVPR 2016.
    """
    return _common.label_loss(
        SPEC, embeddings, labels, mask, axis_name, pos_margin=pos_margin, neg_margin=neg_margin
    )


SPEC = _common.LabelLoss(lifted_structure_loss, check=check, terms=terms)
