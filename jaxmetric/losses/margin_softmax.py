"""Softmax losses against class weights: ArcFace, sub-center ArcFace, CosFace and
the normalised softmax (cosine logits over a temperature)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmetric import _checks
from jaxmetric.distances import safe_sqrt
from jaxmetric.losses import _classes


def arcface_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    margin: float = 0.5,
    scale: float = 64.0,
    easy_margin: bool = False,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""ArcFace (additive angular margin) softmax cross-entropy.

    With :math:`\cos\theta_c` the cosine between a row and the class weight
    :math:`W_c` (both L2-normalised) and y the row's class:

    .. math::
        \ell = -\log \frac{e^{s\,\phi(\theta_y)}}
            {e^{s\,\phi(\theta_y)} + \sum_{c \ne y} e^{s \cos\theta_c}},
        \qquad \phi(\theta) = \begin{cases}
            \cos(\theta + m) & \theta \le \pi - m \\
            \cos\theta - m \sin m & \text{otherwise}
        \end{cases}

    averaged over the valid rows whose label is in [0, C).

    :math:`\cos(\theta + m)` is computed as :math:`\cos\theta\cos m -
    \sin\theta \sin m` with :math:`\sin\theta = \sqrt{1 - \cos^2\theta}`
    (value and gradient 0 where the argument is ~0), so there is no
    ``arccos`` and no infinite derivative at :math:`\cos\theta = \pm 1`.
    Beyond :math:`\theta = \pi - m` the margin would make the target logit
    grow again; the fallback :math:`\cos\theta - m \sin m` (InsightFace's
    threshold, PML's rule) keeps it decreasing in :math:`\theta`.
    ``easy_margin=True`` (InsightFace's option) applies the margin only where
    :math:`\cos\theta > 0` and leaves :math:`\cos\theta` elsewhere.

    PML: ``ArcFaceLoss(C, D, margin=degrees(m), scale=s)`` (PML's margin is
    in degrees, 28.6 = 0.5 rad) with ``loss.W = weights.T`` (PML stores
    [D, C]).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class indices in [0, C); rows with other labels are
        left out.
      weights: [C, D] class weights, a parameter the caller owns (the
        gradient flows to it).
      margin: m in radians, in [0, pi/2] (paper: 0.5).
      scale: s > 0 (paper: 64).
      easy_margin: margin only for positive cosines.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; ``weights`` replicated, rows sharded.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no row counts.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
      >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> loss = jaxmetric.arcface_loss(x, jnp.array([0, 0, 1]), w, scale=8.0)
      >>> round(float(loss), 4)
      1.7543

    Reference:
      Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face
      Recognition", CVPR 2019.
    """
    _check_arcface(margin, scale)
    x, weights, one_hot, valid = _classes.class_inputs(embeddings, labels, weights, mask, "weights")
    logits = _arcface_logits(x @ weights.T, one_hot, margin, scale, easy_margin)
    return _classes.cross_entropy(logits, one_hot, valid, axis_name)


def _check_arcface(margin: float, scale: float) -> None:
    _checks.check_non_negative(margin, "margin")
    if margin > math.pi / 2:
        raise ValueError(f"`margin` is in radians and must be <= pi/2, got {margin!r}.")
    _checks.check_positive(scale, "scale")


def _arcface_logits(
    cosine: jax.Array, one_hot: jax.Array, margin: float, scale: float, easy_margin: bool
) -> jax.Array:
    """ArcFace's logits [b, C] from the cosines [b, C]: the margin on the targets."""
    cosine = jnp.clip(cosine, -1.0, 1.0)
    sine = safe_sqrt(1.0 - jnp.square(cosine))
    with_margin = cosine * math.cos(margin) - sine * math.sin(margin)
    if easy_margin:
        target = jnp.where(cosine > 0.0, with_margin, cosine)
    else:
        # theta <= pi - m  <=>  cos(theta) >= cos(pi - m) = -cos(m)
        target = jnp.where(
            cosine >= -math.cos(margin), with_margin, cosine - margin * math.sin(margin)
        )
    return scale * jnp.where(one_hot, target, cosine)


def subcenter_arcface_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    sub_centers: int = 3,
    margin: float = 0.5,
    scale: float = 64.0,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Sub-center ArcFace: ArcFace against the nearest of K centres of each class.

    Each class c has K sub-centres :math:`W_{c,1}, \dots, W_{c,K}`; a row's
    cosine to the class is that to its nearest sub-centre,

    .. math::
        \cos\theta_c = \max_{k} \cos(x, W_{c,k}),

    and the loss is ``arcface_loss``'s on these cosines: the margin
    :math:`\phi(\theta_y)` on the target class (with its fallback beyond
    :math:`\theta = \pi - m`), softmax cross-entropy with scale s, averaged
    over the valid rows whose label is in [0, C). The gradient reaches the
    nearest sub-centre of each class only. ``sub_centers=1`` is ArcFace.

    PML: ``SubCenterArcFaceLoss(C, D, margin=degrees(m), scale=s,
    sub_centers=K)`` with ``loss.W = weights.T``: PML's ``W`` [D, C * K]
    holds the sub-centres of class c in columns ``c * K .. c * K + K - 1``,
    the layout of ``weights`` here. PML's ``get_outliers`` (dropping rows far
    from their class's dominant sub-centre, the paper's second stage) is not
    part of the loss: compute the cosines to pick them.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class indices in [0, C); rows with other labels are
        left out.
      weights: [C * K, D] sub-centres, rows ``c * K .. c * K + K - 1`` those
        of class c (reshape a [C, K, D] array with ``.reshape(-1, D)``); the
        caller's parameter (the gradient flows).
      sub_centers: K >= 1 (paper and PML: 3).
      margin: m in radians, in [0, pi/2] (paper: 0.5).
      scale: s > 0 (paper: 64).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; ``weights`` replicated, rows sharded.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no row counts.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
      >>> w = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])  # 2 classes, K = 2
      >>> loss = jaxmetric.subcenter_arcface_loss(x, jnp.array([0, 0, 1]), w, sub_centers=2,
      ...                                         scale=8.0)
      >>> round(float(loss), 4)
      0.2871

    Reference:
      Deng et al., "Sub-center ArcFace: Boosting Face Recognition by
      Large-scale Noisy Web Faces", ECCV 2020.
    """
    _checks.check_int(sub_centers, "sub_centers")
    _check_arcface(margin, scale)
    x, weights, one_hot, valid = _classes.class_inputs(
        embeddings, labels, weights, mask, "weights", per_class=sub_centers
    )
    cosine = jnp.max(_classes.grouped(x @ weights.T, sub_centers), axis=2)
    logits = _arcface_logits(cosine, one_hot, margin, scale, easy_margin=False)
    return _classes.cross_entropy(logits, one_hot, valid, axis_name)


def cosface_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    margin: float = 0.35,
    scale: float = 64.0,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""CosFace (large margin cosine) softmax cross-entropy.

    With :math:`\cos\theta_c` the cosine between a row and the class weight
    :math:`W_c` (both L2-normalised) and y the row's class:

    .. math::
        \ell = -\log \frac{e^{s(\cos\theta_y - m)}}
            {e^{s(\cos\theta_y - m)} + \sum_{c \ne y} e^{s \cos\theta_c}}

    averaged over the valid rows whose label is in [0, C).

    PML: ``CosFaceLoss(C, D, margin=m, scale=s)`` with ``loss.W = weights.T``.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class indices in [0, C); rows with other labels are
        left out.
      weights: [C, D] class weights (the caller's parameter; gradient flows).
      margin: m >= 0, in cosine units (paper: 0.35).
      scale: s > 0 (paper: 64).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; ``weights`` replicated, rows sharded.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no row counts.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
      >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> loss = jaxmetric.cosface_loss(x, jnp.array([0, 0, 1]), w, scale=8.0)
      >>> round(float(loss), 4)
      1.4744

    Reference:
      Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face
      Recognition", CVPR 2018.
    """
    _checks.check_non_negative(margin, "margin")
    _checks.check_positive(scale, "scale")
    x, weights, one_hot, valid = _classes.class_inputs(embeddings, labels, weights, mask, "weights")
    cosine = x @ weights.T
    logits = scale * (cosine - margin * one_hot.astype(cosine.dtype))
    return _classes.cross_entropy(logits, one_hot, valid, axis_name)


def normalized_softmax_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    temperature: float = 0.05,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Normalised softmax: cross-entropy over cosine logits with a temperature.

    With :math:`\cos\theta_c` the cosine between a row and the class weight
    :math:`W_c` (both L2-normalised) and y the row's class:

    .. math::
        \ell = -\log \frac{e^{\cos\theta_y / T}}{\sum_{c} e^{\cos\theta_c / T}}

    averaged over the valid rows whose label is in [0, C): CosFace with no
    margin and scale 1/T.

    PML: ``NormalizedSoftmaxLoss(C, D, temperature=T)`` with ``loss.W =
    weights.T`` (PML stores [D, C]); its default distance (dot product on
    normalised rows) is the cosine here.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class indices in [0, C); rows with other labels are
        left out.
      weights: [C, D] class weights (the caller's parameter; gradient flows).
      temperature: T > 0 (paper and PML: 0.05).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; ``weights`` replicated, rows sharded.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no row counts.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
      >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> loss = jaxmetric.normalized_softmax_loss(x, jnp.array([0, 0, 1]), w, temperature=0.5)
      >>> round(float(loss), 3)
      0.389

    Reference:
      Zhai and Wu, "Classification is a Strong Baseline for Deep Metric
      Learning", BMVC 2019 (arXiv 2018).
    """
    _checks.check_positive(temperature, "temperature")
    x, weights, one_hot, valid = _classes.class_inputs(embeddings, labels, weights, mask, "weights")
    return _classes.cross_entropy(x @ weights.T / temperature, one_hot, valid, axis_name)
