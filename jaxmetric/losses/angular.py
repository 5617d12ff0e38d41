"""Angular loss (Wang et al., 2017)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmetric import parallel
from jaxmetric.losses import _common


def angular_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    alpha: float = 40.0,
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
    if not 0 < alpha < 90:
        raise ValueError(f"`alpha` must be in (0, 90) degrees, got {alpha!r}.")
    batch = _common.labelled_batch(embeddings, labels, mask, axis_name, normalize=True)
    tan_sq = math.tan(math.radians(alpha)) ** 2
    pos, neg = batch.pair_masks()
    anchor_sim = batch.anchors @ batch.candidates.T  # [b, M]
    candidate_sim = batch.candidates @ batch.candidates.T  # [M, M]
    # f[a, p, n] = 4 t (x_a + x_p).x_n - 2 (1 + t) x_a.x_p
    logits = 4.0 * tan_sq * (anchor_sim[:, None, :] + candidate_sim[None, :, :])
    logits = logits - 2.0 * (1.0 + tan_sq) * anchor_sim[:, :, None]
    losses = _common.masked_logsumexp(logits, neg[:, None, :], axis=2, include_zero=True)
    valid = pos & jnp.any(neg, axis=1, keepdims=True)
    return parallel.reduce_losses(losses, valid, "mean", axis_name)
