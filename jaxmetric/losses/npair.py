"""N-pair loss (Sohn, 2016)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import l2_normalize
from jaxmetric.losses import _common


def npair_loss(
    anchors: jax.Array,
    positives: jax.Array,
    *,
    labels: jax.Array | None = None,
    l2_reg: float = 0.0,
    normalize: bool = False,
    temperature: float = 1.0,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Multi-class N-pair loss: softmax cross-entropy of each anchor over all positives.

    Row i of ``anchors`` and ``positives`` is one pair. With
    :math:`s_{ij} = f_i^\top f_j^+ / T`:

    .. math::
        L = \frac{1}{N} \sum_i \Big(-s_{ii} + \log \sum_{j \in \{i\} \cup N(i)}
            e^{s_{ij}}\Big)
            + \frac{\lambda}{N} \sum_i \big(\lVert f_i \rVert^2
            + \lVert f_i^+ \rVert^2\big)

    where N(i) are the other pairs, or with ``labels`` the pairs of another
    class (pairs of the same class are not negatives).

    Args:
      anchors: [N, D] float32, bfloat16 or float16.
      positives: [N, D], row i the positive of anchor i.
      labels: optional [N] integer class labels of the pairs.
      l2_reg: lambda >= 0 of the embedding-norm penalty (of the raw inputs).
      normalize: L2-normalise anchors and positives before the product.
      temperature: T > 0.
      mask: [N] bool, valid pairs. None: all valid.
      axis_name: mapped axis; each anchor sees the positives of all devices.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no pair is valid.

    TensorFlow's ``npairs_loss(reg_lambda=r)`` uses soft targets over
    same-class pairs and a penalty of r/4 on the mean squared norms; PML's
    ``NPairsLoss()`` keeps one pair per label and uses cosine similarity with
    no temperature: ``normalize=True, temperature=1.0`` on pairs of distinct
    labels reproduces it.

    Reference:
      Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
      Objective", NeurIPS 2016.
    """
    _checks.check_positive(temperature, "temperature")
    _checks.check_non_negative(l2_reg, "l2_reg")
    anchors, positives = _checks.check_embedding_pair(anchors, positives, "anchors", "positives")
    num_pairs = anchors.shape[0]
    mask = _checks.check_mask(mask, num_pairs)
    index = parallel.anchor_index(num_pairs, axis_name)
    if labels is None:
        labels = index
    else:
        labels = _checks.check_labels(labels, num_pairs)

    penalty_sum = parallel.global_sum(
        jnp.where(mask, jnp.sum(anchors**2 + positives**2, axis=1), 0.0), axis_name
    )
    if normalize:
        anchors, positives = l2_normalize(anchors), l2_normalize(positives)
    candidates = parallel.gather(positives, axis_name)
    candidate_labels = parallel.gather(labels, axis_name)
    candidate_mask = parallel.gather(mask, axis_name)
    logits = anchors @ candidates.T / temperature  # [N, M]
    columns = jnp.arange(candidates.shape[0])
    is_target = columns[None, :] == index[:, None]
    counts = is_target | (labels[:, None] != candidate_labels[None, :])
    counts = counts & candidate_mask[None, :] & mask[:, None]
    target_logit = jnp.sum(jnp.where(is_target, logits, 0.0), axis=1)
    losses = _common.masked_logsumexp(logits, counts, axis=1) - target_logit
    loss = parallel.reduce_losses(losses, mask, "mean", axis_name)
    if l2_reg:
        num_valid = parallel.global_sum(mask, axis_name).astype(jnp.float32)
        loss = loss + l2_reg * parallel.safe_divide(penalty_sum, num_valid)
    return loss
