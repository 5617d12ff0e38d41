"""Contrastive loss (Hadsell et al.): a hinge on positive and on negative pairs."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks
from jaxmetric.distances import DISTANCE_METRICS, pairwise_distances
from jaxmetric.losses import _common


def check(
    *,
    pos_margin: float,
    neg_margin: float,
    metric: str,
    normalize: bool,
    reduction: str,
    reduction_threshold: tuple[float | None, float | None] | None,
) -> None:
    """Checks the hyper-parameters: Margins >= 0, a known metric and reduction."""
    del normalize
    _checks.check_non_negative(pos_margin, "pos_margin")
    _checks.check_non_negative(neg_margin, "neg_margin")
    _checks.check_choice(metric, DISTANCE_METRICS, "metric")
    _common.check_reduction(reduction, reduction_threshold)


def terms(
    batch: _common.Batch, *, pos_margin: float, neg_margin: float, metric: str, **_
) -> tuple[jax.Array, jax.Array]:
    """Pair terms, a pair of [b, M] arrays: the positive-pair terms and the
    negative-pair terms (kept apart: ``reduce`` reduces each on its own)."""
    dist = pairwise_distances(batch.anchors, batch.candidates, metric=metric)
    pos, neg = batch.pair_masks()
    return (jax.nn.relu(dist - pos_margin), jax.nn.relu(neg_margin - dist)), (pos, neg)


def reduce(losses: jax.Array, valid: jax.Array, axis_name: str | None, **hyper) -> jax.Array:
    """Each part reduced on its own, then the two added (PML's convention)."""
    if hyper["reduction"] == "none":  # One [b, M] matrix: each pair's term, 0 elsewhere.
        return jnp.where(valid[0], losses[0], jnp.where(valid[1], losses[1], 0.0))
    return _common.reduce_terms(losses[0], valid[0], axis_name, **hyper) + _common.reduce_terms(
        losses[1], valid[1], axis_name, **hyper
    )


def contrastive_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    metric: str = "euclidean",
    normalize: bool = True,
    reduction: str = "mean_nonzero",
    reduction_threshold: tuple[float | None, float | None] | None = None,
    pairs: tuple[jax.Array, jax.Array] | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Contrastive loss over all ordered pairs (i, j), i != j, of a labelled batch.

    .. math::
        L = R_{\text{pos}}\big(\max(0, d_{ij} - m_{\text{pos}})\big)
          + R_{\text{neg}}\big(\max(0, m_{\text{neg}} - d_{ij})\big)

    where the first reduction runs over positive pairs (y_i = y_j) and the
    second over negative pairs, each on its own (PML's convention, also for
    a ``reducer=``), with ``reduction`` "mean_nonzero" (sum / number of terms
    > 0), "mean", "sum" or "threshold" (the mean over the terms with low <
    term < high, ``reduction_threshold=(low, high)``).
    ``reduction="none"`` returns the local [b, M] matrix holding each pair's
    term (positive or negative) and 0 elsewhere.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class labels.
      pos_margin: positive pairs closer than this cost nothing (>= 0).
      neg_margin: negative pairs farther than this cost nothing (>= 0).
      metric: "euclidean", "squared_euclidean" or "cosine" (1 - cos).
      normalize: L2-normalise the embeddings first.
      reduction: "mean_nonzero", "mean", "sum", "none" or "threshold"
        (PML's AvgNonZeroReducer, MeanReducer, SumReducer, no reduction,
        ThresholdReducer).
      reduction_threshold: (low, high) for "threshold"; None on one side:
        no bound there.
      pairs: ``(positive_mask, negative_mask)`` [B, M] bool, e.g. from
        ``jaxmetric.mining.multi_similarity_miner``: the pairs to use instead
        of every labelled pair (PML's pair ``indices_tuple``); rows and
        columns that ``mask`` / ``reference_mask`` mark invalid still count
        for nothing.
      reference_embeddings, reference_labels, reference_mask: [R, D], [R],
        [R]: pair each row with this other set instead of the batch (PML's
        ``ref_emb`` / ``ref_labels``); no pair is left out as the anchor
        itself. Under ``axis_name`` the local shards are gathered from all
        devices, as the batch is.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; pairs are formed with the candidates of all
        devices and the value is that of the global batch.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when there is no pair.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
      >>> round(float(jaxmetric.contrastive_loss(x, jnp.array([0, 0, 1]))), 4)
      0.0

    PML's ``ContrastiveLoss()`` (pos_margin 0, neg_margin 1, euclidean on
    normalised rows, AvgNonZero for each term) is this function's default;
    ``ContrastiveLoss(reducer=MeanReducer() | SumReducer() |
    ThresholdReducer(low, high))`` is ``reduction="mean" | "sum" |
    "threshold"`` (with ``reduction_threshold=(low, high)``); its
    ``indices_tuple`` from a pair miner is ``pairs=`` (e.g.
    ``jaxmetric.mining.multi_similarity_miner``), its ``ref_emb`` /
    ``ref_labels`` ``reference_embeddings`` / ``reference_labels``.

    Reference:
      Hadsell, Chopra, LeCun, "Dimensionality Reduction by Learning an
      Invariant Mapping", CVPR 2006.
    """
    hyper = {
        "pos_margin": pos_margin,
        "neg_margin": neg_margin,
        "metric": metric,
        "normalize": normalize,
        "reduction": reduction,
        "reduction_threshold": reduction_threshold,
    }
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
        **hyper,
    )


SPEC = _common.LabelLoss(contrastive_loss, check=check, terms=terms, reduce=reduce, normalize=None)
