"""Soft nearest neighbour loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks
from jaxmetric.distances import pairwise_distances
from jaxmetric.losses import _common


def check(*, temperature: float) -> None:
    """Checks the hyper-parameters: T > 0."""
    _checks.check_positive(temperature, "temperature")


def terms(batch: _common.Batch, *, temperature: float) -> tuple[jax.Array, jax.Array]:
    """Per-anchor soft nearest neighbour losses [b]; anchors with a positive count."""
    dist = pairwise_distances(batch.anchors, batch.candidates, metric="squared_euclidean")
    logits = -dist / temperature
    pos, neg = batch.pair_masks()
    losses = _common.masked_logsumexp(logits, pos | neg, axis=1) - _common.masked_logsumexp(
        logits, pos, axis=1
    )
    valid = jnp.any(pos, axis=1)
    return jnp.where(valid, losses, 0.0), valid


def soft_nearest_neighbor_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 1.0,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Soft nearest neighbour loss (Frosst, Papernot, Hinton 2019).

    With squared euclidean distances :math:`d_{ij} = \|x_i - x_j\|^2` on the
    raw (not normalised) embeddings and temperature T:

    .. math::
        \ell_i = -\log \frac{\sum_{j \ne i,\, y_j = y_i} e^{-d_{ij}/T}}
                            {\sum_{k \ne i} e^{-d_{ik}/T}}

    averaged over the anchors that have a positive (the paper averages over
    the whole batch, where an anchor without a positive would give
    :math:`+\infty`). Small when each class is tight and far from the others.

    PML has no such loss; TF-Similarity's ``SoftNearestNeighborLoss`` with
    the squared-L2 distance computes the same ratio per anchor.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; used as they are.
      labels: [B] integer labels.
      temperature: T > 0.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; neighbours come from all devices.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no anchor has a positive.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])
      >>> loss = jaxmetric.soft_nearest_neighbor_loss(x, jnp.array([0, 0, 1, 1]), temperature=4.0)
      >>> round(float(loss), 4)
      0.2157

    Reference:
      Frosst, Papernot, Hinton, "Analyzing and Improving Representations
      with the Soft Nearest Neighbor Loss", ICML 2019, eq. 1.
    """
    return _common.label_loss(SPEC, embeddings, labels, mask, axis_name, temperature=temperature)


# The raw embeddings: the loss is on squared distances, not on the sphere.
SPEC = _common.LabelLoss(soft_nearest_neighbor_loss, check=check, terms=terms, normalize=False)
