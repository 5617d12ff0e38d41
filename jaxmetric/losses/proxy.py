"""Proxy-based losses: Proxy-Anchor and Proxy-NCA (proxies [C, D] owned by the caller)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import pairwise_distances
from jaxmetric.losses import _classes, _common


def _global_log1p_sum_exp(logits: jax.Array, where: jax.Array, axis_name: str | None):
    """log(1 + sum_{rows of all devices, where} exp(logits)), per column: [C].

    The sum over the batch axis is inside the log, so it is psum-ed across
    devices; the stabilising shift is the global max (no gradient).
    """
    logits = jnp.where(where, logits, _common.NEG_LARGE)
    shift = jax.lax.stop_gradient(jnp.max(logits, axis=0))
    if axis_name is not None:
        parallel.axis_size(axis_name)  # A clear error when the axis is not bound.
        shift = jax.lax.pmax(shift, axis_name)
    shift = jnp.maximum(shift, 0.0)  # >= the exp(0) term: total >= 1 term of 1.
    local = jnp.sum(jnp.where(where, jnp.exp(logits - shift), 0.0), axis=0)
    return shift + jnp.log(parallel.psum(local, axis_name) + jnp.exp(-shift))


def proxy_anchor_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    proxies: jax.Array,
    *,
    margin: float = 0.1,
    alpha: float = 32.0,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Proxy-Anchor loss: each class proxy is an anchor against the whole batch.

    With cosine similarities :math:`s(x, p)` between the rows and the C
    proxies, :math:`X_p^+` the rows of class p, :math:`X_p^-` the others, and
    :math:`P^+` the proxies with at least one row in the (global) batch:

    .. math::
        L = \frac{1}{|P^+|} \sum_{p \in P^+}
              \log\Big(1 + \sum_{x \in X_p^+} e^{-\alpha (s(x, p) - \delta)}\Big)
          + \frac{1}{C} \sum_{p=1}^{C}
              \log\Big(1 + \sum_{x \in X_p^-} e^{\alpha (s(x, p) + \delta)}\Big)

    The sums over the batch sit inside the log: under ``axis_name`` they are
    summed over all devices (``psum``), so the value is that of the global
    batch and the gradient reaches every device's rows and the proxies.

    Equals PML's ``ProxyAnchorLoss(C, D, margin, alpha)`` with its
    ``loss.proxies`` set to ``proxies`` (PML holds them as a
    ``torch.nn.Parameter`` of the same [C, D] shape).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class indices in [0, C); rows with other labels are
        left out.
      proxies: [C, D] the proxies, a parameter the caller owns and optimises
        (PML initialises them with ``kaiming_normal_(mode="fan_out")``); the
        gradient flows to them. Both sides are L2-normalised inside.
      margin: delta >= 0 (paper: 0.1).
      alpha: scale > 0 (paper: 32).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; ``proxies`` replicated, rows sharded.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no row is valid.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
      >>> proxies = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> loss = jaxmetric.proxy_anchor_loss(x, jnp.array([0, 0, 1]), proxies)
      >>> round(float(loss), 2)
      16.02

    Reference:
      Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020, eq. 4.
    """
    _checks.check_non_negative(margin, "margin")
    _checks.check_positive(alpha, "alpha")
    x, proxies, one_hot, valid = _classes.class_inputs(embeddings, labels, proxies, mask, "proxies")
    cosine = x @ proxies.T
    num_classes = cosine.shape[1]
    pos = one_hot & valid[:, None]
    neg = ~one_hot & valid[:, None]
    pos_lse = _global_log1p_sum_exp(-alpha * (cosine - margin), pos, axis_name)
    neg_lse = _global_log1p_sum_exp(alpha * (cosine + margin), neg, axis_name)
    with_pos = parallel.psum(jnp.sum(pos, axis=0), axis_name) > 0  # [C]
    pos_term = parallel.safe_divide(
        jnp.sum(jnp.where(with_pos, pos_lse, 0.0)),
        jnp.sum(with_pos).astype(cosine.dtype),
    )
    return pos_term + jnp.sum(neg_lse) / num_classes


def proxy_nca_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    proxies: jax.Array,
    *,
    temperature: float = 1.0,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Proxy-NCA loss: softmax over the distances to the class proxies.

    With :math:`\hat x, \hat p` the L2-normalised row and proxies and
    :math:`d(x, p) = \|\hat x - \hat p\|^2`:

    .. math::
        \ell(x) = -\log \frac{e^{-d(x, p_y)/T}}{\sum_{c=1}^{C} e^{-d(x, p_c)/T}}

    averaged over the valid rows whose label is a class in [0, C).

    The positive proxy is in the denominator, as in PML's ``ProxyNCALoss``
    and ProxyNCA++ (Teh et al. 2020, who take T = 1/9); the original paper
    sums over the other proxies only. PML: ``ProxyNCALoss(C, D,
    softmax_scale=1/T)`` with ``loss.proxies = proxies`` (its default
    distance, squared euclidean on normalised rows, is the one here).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class indices in [0, C); rows with other labels
        are left out.
      proxies: [C, D] the proxies (the caller's parameter; gradient flows).
      temperature: T > 0 (1: the paper and PML's default; ProxyNCA++: 1/9).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; ``proxies`` replicated, rows sharded.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no row counts.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
      >>> proxies = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> loss = jaxmetric.proxy_nca_loss(x, jnp.array([0, 0, 1]), proxies)
      >>> round(float(loss), 3)
      0.389

    Reference:
      Movshovitz-Attias et al., "No Fuss Distance Metric Learning using
      Proxies", ICCV 2017; Teh, DeVries, Taylor, "ProxyNCA++", ECCV 2020.
    """
    _checks.check_positive(temperature, "temperature")
    x, proxies, one_hot, valid = _classes.class_inputs(embeddings, labels, proxies, mask, "proxies")
    dist = pairwise_distances(x, proxies, metric="squared_euclidean")
    return _classes.cross_entropy(-dist / temperature, one_hot, valid, axis_name)
