"""Circle loss (pair-label form)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks
from jaxmetric.losses import _common


def check(
    *,
    m: float,
    gamma: float,
    reduction: str,
    reduction_threshold: tuple[float | None, float | None] | None,
) -> None:
    """Checks the hyper-parameters: m >= 0, gamma > 0, a reduction."""
    _checks.check_non_negative(m, "m")
    _checks.check_positive(gamma, "gamma")
    _common.check_reduction(reduction, reduction_threshold)


def terms(batch: _common.Batch, *, m: float, gamma: float, **_) -> tuple[jax.Array, jax.Array]:
    """Per-anchor circle losses [b] and which anchors count (a positive and a negative)."""
    sim = batch.anchors @ batch.candidates.T  # [b, M] cosine
    pos, neg = batch.pair_masks()
    frozen = jax.lax.stop_gradient(sim)
    alpha_p = jax.nn.relu(1.0 + m - frozen)
    alpha_n = jax.nn.relu(frozen + m)
    pos_logits = -gamma * alpha_p * (sim - (1.0 - m))
    neg_logits = gamma * alpha_n * (sim - m)
    pos_lse = _common.masked_logsumexp(pos_logits, pos, axis=1)
    neg_lse = _common.masked_logsumexp(neg_logits, neg, axis=1)
    valid = jnp.any(pos, axis=1) & jnp.any(neg, axis=1)
    # Where a side is empty its LSE is NEG_LARGE: softplus is 0 with a zero gradient.
    return jax.nn.softplus(pos_lse + neg_lse), valid


def circle_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    m: float = 0.4,
    gamma: float = 80.0,
    reduction: str = "mean",
    reduction_threshold: tuple[float | None, float | None] | None = None,
    pairs: tuple[jax.Array, jax.Array] | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Circle loss with class-level labels, on cosine similarities.

    For anchor i with positive similarities :math:`s_p` and negative
    similarities :math:`s_n`:

    .. math::
        \ell_i = \log\Big[1 + \sum_{n} e^{\gamma \alpha_n (s_n - \Delta_n)}
                             \sum_{p} e^{-\gamma \alpha_p (s_p - \Delta_p)}\Big],
        \quad \alpha_p = [1 + m - s_p]_+,\ \alpha_n = [s_n + m]_+,
        \ \Delta_p = 1 - m,\ \Delta_n = m

    The weights :math:`\alpha_p, \alpha_n` carry no gradient
    (``stop_gradient``), as in the paper's code and PML. The loss is the mean
    of :math:`\ell_i` over the anchors that have a positive and a negative.

    Equals PML's ``CircleLoss(m, gamma)`` (cosine similarity, AvgNonZero over
    anchors, anchors lacking a positive or a negative dropped). With another
    ``reduction`` the terms are still those of the anchors with a positive
    and a negative: PML's ``reducer=MeanReducer()`` also counts the other
    anchors (as 0) in its mean.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; L2-normalised inside.
      labels: [B] integer labels.
      m: relaxation margin (paper for fine-grained retrieval: 0.4;
        faces: 0.25).
      gamma: scale (paper: 80 for fine-grained retrieval, 256 for faces), > 0.
      reduction: of the per-anchor terms: "mean", "mean_nonzero", "sum",
        "threshold" (``reduction_threshold=(low, high)``) or "none" (the [B]
        local terms, 0 where an anchor does not count); see
        ``jaxmetric.contrastive_loss``.
      reduction_threshold: (low, high) for "threshold".
      pairs: ``(positive_mask, negative_mask)`` [B, M] bool, the pairs to
        use instead of every labelled pair (PML's ``indices_tuple``).
      reference_embeddings, reference_labels, reference_mask: another set
        of candidates (PML's ``ref_emb``), as in ``jaxmetric.contrastive_loss``.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; positives and negatives come from all devices.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no anchor has both a
      positive and a negative.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
      >>> loss = jaxmetric.circle_loss(x, jnp.array([0, 0, 1, 1]))
      >>> round(float(loss), 3)
      49.664

    Reference:
      Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity
      Optimization", CVPR 2020, eq. 6.
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
        m=m,
        gamma=gamma,
        reduction=reduction,
        reduction_threshold=reduction_threshold,
    )


SPEC = _common.LabelLoss(circle_loss, check=check, terms=terms, reduce=_common.reduce_terms)
