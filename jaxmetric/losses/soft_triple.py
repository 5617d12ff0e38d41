"""SoftTriple loss: a softmax over classes, each the soft maximum of K centres."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import safe_sqrt
from jaxmetric.losses import _classes


def _center_spread(centers: jax.Array, per_class: int) -> jax.Array:
    """The regulariser R: the mean distance between two centres of one class.

    ``centers`` [C * K, D] L2-normalised; R = sum_c sum_{k < k'} ||w_ck -
    w_ck'|| / (C K (K - 1)) (the paper's and the official code's divisor);
    0 for K = 1.
    """
    if per_class == 1:
        return jnp.zeros((), centers.dtype)
    groups = centers.reshape(-1, per_class, centers.shape[1])  # [C, K, D]
    sim = jnp.einsum("ckd,cjd->ckj", groups, groups)
    upper = jnp.triu(jnp.ones((per_class, per_class), bool), k=1)
    dist = safe_sqrt(jnp.maximum(2.0 - 2.0 * sim, 0.0))
    num_classes = groups.shape[0]
    return jnp.sum(jnp.where(upper, dist, 0.0)) / (num_classes * per_class * (per_class - 1))


def soft_triple_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    centers: jax.Array,
    *,
    centers_per_class: int = 10,
    la: float = 20.0,
    gamma: float = 0.1,
    margin: float = 0.01,
    tau: float = 0.2,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""SoftTriple loss: softmax cross-entropy over soft class similarities.

    Class c has K centres :math:`w_{c,1}, \dots, w_{c,K}`. With the cosines
    :math:`s_{c,k} = \cos(x, w_{c,k})` (rows and centres L2-normalised), a
    row's similarity to class c is the softmax-weighted mean of its centres,

    .. math::
        S_c = \sum_k \frac{e^{s_{c,k}/\gamma}}{\sum_{k'} e^{s_{c,k'}/\gamma}}\, s_{c,k},
        \qquad
        \ell = -\log \frac{e^{\lambda (S_y - \delta)}}
            {e^{\lambda (S_y - \delta)} + \sum_{c \ne y} e^{\lambda S_c}},

    and the loss is the mean of :math:`\ell` over the valid rows whose label
    is in [0, C), plus :math:`\tau R` with the centres' spread

    .. math::
        R = \frac{1}{C K (K - 1)} \sum_c \sum_{k < k'} \|w_{c,k} - w_{c,k'}\|_2

    (the paper's eq. 12 and divisor), which lets centres of a class merge.
    R depends on the centres only; it is added when at least one row of the
    (global) batch counts, so a batch with nothing valid gives 0.

    PML: ``SoftTripleLoss(C, D, centers_per_class=K, la, gamma, margin)``
    with ``loss.fc = centers.T`` (PML's ``fc`` [D, C * K] holds the centres
    of class c in columns ``c * K .. c * K + K - 1``, the layout here) is
    this loss with ``tau=0``: PML has no centre regulariser (its
    ``weight_regularizer`` is a generic one, off by default). The official
    code (idstcv/SoftTriple) adds 1e-5 under the square root of R; here the
    square root is exact (its gradient is 0 for coinciding centres).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class indices in [0, C); rows with other labels are
        left out.
      centers: [C * K, D] the centres, rows ``c * K .. c * K + K - 1`` those
        of class c; the caller's parameter (the gradient flows).
      centers_per_class: K >= 1 (paper and PML: 10).
      la: lambda > 0, the scale of the logits (paper and PML: 20).
      gamma: gamma > 0, the temperature of the softmax over a class's centres
        (paper and PML: 0.1).
      margin: delta >= 0 on the target class (paper and PML: 0.01).
      tau: weight of the regulariser R, >= 0 (paper: 0.2; PML: none, 0).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; ``centers`` replicated, rows sharded.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no row counts.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
      >>> centers = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]])  # K = 2
      >>> loss = jaxmetric.soft_triple_loss(x, jnp.array([0, 0, 1]), centers,
      ...                                   centers_per_class=2, la=4.0)
      >>> round(float(loss), 4)
      0.3807

    Reference:
      Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet
      Sampling", ICCV 2019.
    """
    _checks.check_int(centers_per_class, "centers_per_class")
    _checks.check_positive(la, "la")
    _checks.check_positive(gamma, "gamma")
    _checks.check_non_negative(margin, "margin")
    _checks.check_non_negative(tau, "tau")
    x, centers, one_hot, valid = _classes.class_inputs(
        embeddings, labels, centers, mask, "centers", per_class=centers_per_class
    )
    sim = _classes.grouped(x @ centers.T, centers_per_class)  # [b, C, K]
    weights = jax.nn.softmax(sim / gamma, axis=2)
    to_classes = jnp.sum(weights * sim, axis=2)  # [b, C]
    logits = la * (to_classes - margin * one_hot.astype(to_classes.dtype))
    loss = _classes.cross_entropy(logits, one_hot, valid, axis_name)
    if tau:
        counts = parallel.global_sum(valid, axis_name) > 0
        loss = loss + jnp.where(counts, tau * _center_spread(centers, centers_per_class), 0.0)
    return loss
