"""Non-contrastive self-supervised losses: BYOL, SimSiam, Barlow Twins, VICReg.

All take two [B, D] arrays whose row i comes from the same example (two
views, or a prediction and its target), plus ``mask`` and ``axis_name`` as
every kernel does. Under ``axis_name`` every statistic is a statistic of the
global batch: means, variances, cross-correlation and covariance matrices
are ``psum``-ed sums divided by ``psum``-ed counts, so the value (and the
gradient that reaches replicated parameters under ``jax.shard_map``) equals
the single-device one on the concatenated batch. (MoCo v3, contrastive
against the batch's keys, is in ``jaxmetric.losses.moco``.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import l2_normalize


def _global_count(mask: jax.Array, axis_name: str | None) -> jax.Array:
    """Number of valid rows of the global batch (float32 scalar)."""
    return parallel.global_sum(mask.astype(jnp.float32), axis_name)


def _global_mean(x: jax.Array, mask: jax.Array, count: jax.Array, axis_name) -> jax.Array:
    """Column means [D] over the valid rows of the global batch (0 if none)."""
    total = parallel.psum(jnp.sum(jnp.where(mask[:, None], x, 0.0), axis=0), axis_name)
    return parallel.safe_divide(total, count)


def _off_diagonal_sq_sum(c: jax.Array) -> jax.Array:
    """Sum of the squared off-diagonal entries of a square matrix."""
    return jnp.sum(jnp.square(c)) - jnp.sum(jnp.square(jnp.diagonal(c)))


def byol_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""BYOL's normalised mean squared error between predictions and targets.

    .. math::
        \ell_i = \left\| \frac{p_i}{\|p_i\|} - \frac{t_i}{\|t_i\|} \right\|^2
               = 2 - 2 \cos(p_i, t_i)

    averaged over the valid rows of the (global) batch. ``targets`` carry no
    gradient (they come from the EMA target network). BYOL's loss is
    symmetric: ``byol_loss(p1, t2) + byol_loss(p2, t1)``, where p_v is the
    online predictor's output on view v and t_v the target projection.

    Args:
      predictions: [B, D] online predictions q(g(f(v))), float32 / bfloat16 /
        float16.
      targets: [B, D] target projections, row i the target of prediction i.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; the mean runs over the global batch.

    Returns:
      A float32 scalar in [0, 4]; 0.0 when no row is valid.

    Example:
      >>> import jax, jaxmetric
      >>> p, t = jax.random.normal(jax.random.key(0), (2, 8, 4))
      >>> loss = jaxmetric.byol_loss(p, t) + jaxmetric.byol_loss(t, p)

    Reference:
      Grill et al., "Bootstrap Your Own Latent: A New Approach to
      Self-Supervised Learning", NeurIPS 2020, eq. 2.
    """
    predictions, targets = _checks.check_embedding_pair(
        predictions, targets, "predictions", "targets"
    )
    mask = _checks.check_mask(mask, predictions.shape[0])
    targets = jax.lax.stop_gradient(l2_normalize(targets))
    cosine = jnp.sum(l2_normalize(predictions) * targets, axis=1)
    return parallel.reduce_losses(2.0 - 2.0 * cosine, mask, "mean", axis_name)


def simsiam_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""SimSiam's negative cosine similarity with a stop-gradient on the target.

    .. math::
        \mathcal{D}(p_i, z_i) = -\frac{p_i}{\|p_i\|} \cdot
            \frac{\mathrm{sg}(z_i)}{\|z_i\|}

    averaged over the valid rows of the (global) batch. The symmetric loss
    of the paper is ``0.5 * simsiam_loss(p1, z2) + 0.5 * simsiam_loss(p2, z1)``.
    Equal to ``byol_loss / 2 - 1`` (BYOL's loss up to an affine map); SimSiam
    differs from BYOL in the trainer (no EMA: the target is the online
    projection itself, behind the stop-gradient).

    Args:
      predictions: [B, D] predictor outputs h(z).
      targets: [B, D] projections z of the other view; no gradient flows
        into them.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; the mean runs over the global batch.

    Returns:
      A float32 scalar in [-1, 1]; 0.0 when no row is valid.

    Example:
      >>> import jax, jaxmetric
      >>> p, z = jax.random.normal(jax.random.key(0), (2, 8, 4))
      >>> loss = 0.5 * jaxmetric.simsiam_loss(p, z) + 0.5 * jaxmetric.simsiam_loss(z, p)

    Reference:
      Chen & He, "Exploring Simple Siamese Representation Learning", CVPR
      2021, eq. 1-3 and Algorithm 1.
    """
    predictions, targets = _checks.check_embedding_pair(
        predictions, targets, "predictions", "targets"
    )
    mask = _checks.check_mask(mask, predictions.shape[0])
    targets = jax.lax.stop_gradient(l2_normalize(targets))
    cosine = jnp.sum(l2_normalize(predictions) * targets, axis=1)
    return parallel.reduce_losses(-cosine, mask, "mean", axis_name)


def barlow_twins_loss(
    z1: jax.Array,
    z2: jax.Array,
    *,
    lambda_offdiag: float = 5e-3,
    epsilon: float = 1e-5,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Barlow Twins: the cross-correlation of the two views towards identity.

    Each view is standardised per dimension over the valid rows of the
    global batch (mean :math:`\mu`, biased variance :math:`\sigma^2`, as
    ``BatchNorm1d(affine=False)`` in training mode),
    :math:`\hat z = (z - \mu) / \sqrt{\sigma^2 + \epsilon}`, then

    .. math::
        C_{ij} = \frac{1}{N} \sum_{n=1}^{N} \hat z^{(1)}_{n,i} \hat z^{(2)}_{n,j},
        \qquad
        \mathcal{L} = \sum_i (1 - C_{ii})^2
            + \lambda \sum_i \sum_{j \ne i} C_{ij}^2

    with N the number of valid rows of the global batch: under
    ``axis_name`` the means, variances and C are ``psum``-ed over the devices
    (as the official code's synchronised BatchNorm and all-reduced C).

    Args:
      z1: [B, D] projections of view 1.
      z2: [B, D] projections of view 2, row i the same example as in ``z1``.
      lambda_offdiag: :math:`\lambda` >= 0, weight of the redundancy term
        (paper: 5e-3; the official code 0.0051).
      epsilon: > 0, added to the variance (BatchNorm's default 1e-5).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; statistics of the global batch.

    Returns:
      A float32 scalar; 0.0 when no row is valid.

    Example:
      >>> import jax, jaxmetric
      >>> z1, z2 = jax.random.normal(jax.random.key(0), (2, 8, 4))
      >>> loss = jaxmetric.barlow_twins_loss(z1, z2, lambda_offdiag=5e-3)

    Reference:
      Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
      Reduction", ICML 2021, eq. 1-2 and Algorithm 1.
    """
    _checks.check_non_negative(lambda_offdiag, "lambda_offdiag")
    _checks.check_positive(epsilon, "epsilon")
    z1, z2 = _checks.check_embedding_pair(z1, z2, "z1", "z2")
    mask = _checks.check_mask(mask, z1.shape[0])
    count = _global_count(mask, axis_name)

    def standardise(z):
        mean = _global_mean(z, mask, count, axis_name)
        centred = jnp.where(mask[:, None], z - mean, 0.0)
        var = parallel.safe_divide(
            parallel.psum(jnp.sum(jnp.square(centred), axis=0), axis_name), count
        )
        return centred * jax.lax.rsqrt(var + epsilon)

    n1, n2 = standardise(z1), standardise(z2)
    c = parallel.safe_divide(parallel.psum(n1.T @ n2, axis_name), count)  # [D, D]
    on_diag = jnp.sum(jnp.square(1.0 - jnp.diagonal(c)))
    loss = on_diag + lambda_offdiag * _off_diagonal_sq_sum(c)
    return jnp.where(count > 0, loss, 0.0)


def vicreg_loss(
    z1: jax.Array,
    z2: jax.Array,
    *,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    epsilon: float = 1e-4,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""VICReg: variance-invariance-covariance regularisation of two views.

    With N valid rows in the global batch, D dimensions, per-view column
    means :math:`\bar z`, unbiased variances and covariances:

    .. math::
        s = \frac{1}{N D} \sum_n \| z^{(1)}_n - z^{(2)}_n \|^2, \quad
        v(z) = \frac{1}{D} \sum_j \max\!\left(0, 1 -
            \sqrt{\mathrm{Var}(z_{:,j}) + \epsilon}\right),

        C(z) = \frac{1}{N - 1} \sum_n (z_n - \bar z)(z_n - \bar z)^\top, \quad
        c(z) = \frac{1}{D} \sum_{i \ne j} C(z)_{ij}^2,

        \mathcal{L} = \lambda\, s + \mu\, \frac{v(z^{(1)}) + v(z^{(2)})}{2}
            + \nu\, \left(c(z^{(1)}) + c(z^{(2)})\right)

    as the official code (variance term averaged over the two views,
    covariance terms added). Under ``axis_name`` the means, variances and
    covariances are those of the global batch (the official code gathers
    the embeddings of all GPUs).

    Args:
      z1: [B, D] expander outputs of view 1.
      z2: [B, D] expander outputs of view 2, row i the same example.
      sim_weight: :math:`\lambda` >= 0, invariance weight (25).
      var_weight: :math:`\mu` >= 0, variance weight (25).
      cov_weight: :math:`\nu` >= 0, covariance weight (1).
      epsilon: > 0, added to the variance before the square root (1e-4).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; statistics of the global batch.

    Returns:
      A float32 scalar; 0.0 when no row is valid. With a single valid row
      the variance and covariance are taken as 0.

    Example:
      >>> import jax, jaxmetric
      >>> z1, z2 = jax.random.normal(jax.random.key(0), (2, 8, 4))
      >>> loss = jaxmetric.vicreg_loss(z1, z2, sim_weight=25.0, var_weight=25.0, cov_weight=1.0)

    Reference:
      Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
      Regularization for Self-Supervised Learning", ICLR 2022, eq. 1-6 and
      Algorithm 1.
    """
    for value, name in ((sim_weight, "sim_weight"), (var_weight, "var_weight")):
        _checks.check_non_negative(value, name)
    _checks.check_non_negative(cov_weight, "cov_weight")
    _checks.check_positive(epsilon, "epsilon")
    z1, z2 = _checks.check_embedding_pair(z1, z2, "z1", "z2")
    mask = _checks.check_mask(mask, z1.shape[0])
    dim = z1.shape[1]
    count = _global_count(mask, axis_name)

    sq = jnp.sum(jnp.square(z1 - z2), axis=1) / dim
    invariance = parallel.reduce_losses(sq, mask, "mean", axis_name)

    def regularisers(z):
        mean = _global_mean(z, mask, count, axis_name)
        centred = jnp.where(mask[:, None], z - mean, 0.0)
        cov = parallel.safe_divide(parallel.psum(centred.T @ centred, axis_name), count - 1.0)
        std = jnp.sqrt(jnp.diagonal(cov) + epsilon)
        return jnp.mean(jax.nn.relu(1.0 - std)), _off_diagonal_sq_sum(cov) / dim

    v1, c1 = regularisers(z1)
    v2, c2 = regularisers(z2)
    loss = sim_weight * invariance + var_weight * (v1 + v2) / 2 + cov_weight * (c1 + c2)
    return jnp.where(count > 0, loss, 0.0)
