"""Angular loss (Wang et al., 2017)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmetric.losses import _common


def check(
    *,
    alpha: float,
    reduction: str,
    reduction_threshold: tuple[float | None, float | None] | None,
) -> None:
    """Checks the hyper-parameters: The angle bound alpha lies in (0, 90) degrees; a reduction."""
    if not 0 < alpha < 90:
        raise ValueError(f"`alpha` must be in (0, 90) degrees, got {alpha!r}.")
    _common.check_reduction(reduction, reduction_threshold)


def terms(batch: _common.Batch, *, alpha: float, **_) -> tuple[jax.Array, jax.Array]:
    """Per positive pair angular losses [b, M]; pairs whose anchor has a negative count."""
    tan_sq = math.tan(math.radians(alpha)) ** 2
    pos, neg = batch.pair_masks()
    anchor_sim = batch.anchors @ batch.candidates.T  # [b, M]
    candidate_sim = batch.candidates @ batch.candidates.T  # [M, M]
    if alpha <= _FACTORED_MAX_ALPHA:
        negative_lse = _factored_negative_lse(anchor_sim, candidate_sim, neg, tan_sq)
    else:
        # f[a, p, n] = 4 t (x_a + x_p).x_n, over an explicit [b, M, M] array.
        logits = 4.0 * tan_sq * (anchor_sim[:, None, :] + candidate_sim[None, :, :])
        negative_lse = _common.masked_logsumexp(logits, neg[:, None, :], axis=2)
    losses = jax.nn.softplus(negative_lse - 2.0 * (1.0 + tan_sq) * anchor_sim)
    return losses, pos & jnp.any(neg, axis=1, keepdims=True)


def angular_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    alpha: float = 40.0,
    reduction: str = "mean",
    reduction_threshold: tuple[float | None, float | None] | None = None,
    pairs: tuple[jax.Array, jax.Array] | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Angular loss in its N-pair form, averaged over positive pairs.

    On L2-normalised embeddings x, for each ordered positive pair (a, p):

    .. math::
        \ell(a, p) = \log\Big(1 + \sum_{n: y_n \ne y_a}
            \exp\big(4 \tan^2\alpha\,(x_a + x_p)^\top x_n
                     - 2 (1 + \tan^2\alpha)\, x_a^\top x_p\big)\Big)

    The loss is the mean of :math:`\ell` over positive pairs whose anchor has
    a negative.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; normalised here.
      labels: [B] integer class labels.
      alpha: the angle bound in degrees, 0 < alpha < 90 (paper: 36-55).
      reduction: of the per positive pair terms: "mean", "mean_nonzero",
        "sum", "threshold" (``reduction_threshold=(low, high)``) or "none"
        (the [B, M] local terms by anchor and positive, 0 where a pair does
        not count); see ``jaxmetric.contrastive_loss``.
      reduction_threshold: (low, high) for "threshold".
      pairs: ``(positive_mask, negative_mask)`` [B, M] bool: the positive
        pairs (a, p) and each anchor's negatives n to use instead of the
        labelled ones. PML's AngularLoss takes only the positive pairs of
        an ``indices_tuple``: its negatives are always every other-label row.
      reference_embeddings, reference_labels, reference_mask: another set of
        candidates (positives and negatives), as in
        ``jaxmetric.contrastive_loss``.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; positives and negatives come from all devices.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when there is no positive pair.

    PML's ``AngularLoss(alpha=40)`` normalises anchors and positives but not
    the negatives, so it equals this function when the embeddings already have
    unit norm (normalise them before calling PML to compare).

    Reference:
      Wang et al., "Deep Metric Learning with Angular Loss", ICCV 2017.
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
        alpha=alpha,
        reduction=reduction,
        reduction_threshold=reduction_threshold,
    )


SPEC = _common.LabelLoss(angular_loss, check=check, terms=terms, reduce=_common.reduce_terms)


# exp(4 t s) spans exp(8 t) over cosines s in [-1, 1]; up to this angle
# (8 tan^2 alpha < 60) the factored sum below cannot underflow in float32.
_FACTORED_MAX_ALPHA = 69.0


def _factored_negative_lse(
    anchor_sim: jax.Array, candidate_sim: jax.Array, neg: jax.Array, tan_sq: float
) -> jax.Array:
    """lse[a, p] = log sum_{n in neg(a)} exp(4t (s_an + s_pn)), without a [b, M, M] array.

    exp(4t s_an + 4t s_pn) = exp(4t s_an) exp(4t s_pn), so the sum over n is
    the matrix product A B^T with A[a, n] = exp(4t s_an) [n in neg(a)] and
    B[p, n] = exp(4t s_pn): one GEMM and O(b M) memory instead of O(b M^2).
    Each factor is shifted by its row maximum for range.
    """
    scaled_a = 4.0 * tan_sq * anchor_sim
    scaled_c = 4.0 * tan_sq * candidate_sim
    shift_a = jnp.max(jnp.where(neg, scaled_a, -jnp.inf), axis=1)
    shift_a = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift_a), shift_a, 0.0))
    shift_c = jax.lax.stop_gradient(jnp.max(scaled_c, axis=1))
    # Masked entries go through exp(NEG_LARGE) = 0: a finite value and gradient.
    factor_a = jnp.exp(jnp.where(neg, scaled_a - shift_a[:, None], _common.NEG_LARGE))
    factor_c = jnp.exp(scaled_c - shift_c[:, None])
    total = factor_a @ factor_c.T  # [b, M]
    nonzero = total > 0
    lse = shift_a[:, None] + shift_c[None, :] + jnp.log(jnp.where(nonzero, total, 1.0))
    return jnp.where(nonzero, lse, _common.NEG_LARGE)
