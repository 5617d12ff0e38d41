"""Multi-similarity loss, with its pair miner."""

from __future__ import annotations

import jax

from jaxmetric import _checks, mining
from jaxmetric.losses import _common


def check(
    *,
    alpha: float,
    beta: float,
    base: float,
    epsilon: float | None,
    reduction: str,
    reduction_threshold: tuple[float | None, float | None] | None,
) -> None:
    """Checks the hyper-parameters: alpha, beta > 0; epsilon >= 0 or None; a reduction."""
    del base  # Any similarity margin is allowed.
    _checks.check_positive(alpha, "alpha")
    _checks.check_positive(beta, "beta")
    if epsilon is not None:
        _checks.check_non_negative(epsilon, "epsilon")
    _common.check_reduction(reduction, reduction_threshold)


def terms(
    batch: _common.Batch, *, alpha: float, beta: float, base: float, epsilon: float | None, **_
) -> tuple[jax.Array, jax.Array]:
    """Per-anchor multi-similarity losses [b] and which anchors count (all valid ones)."""
    sim = batch.anchors @ batch.candidates.T  # [b, M] cosine
    pos, neg = batch.pair_masks()
    if epsilon is not None:
        pos, neg = mining.multi_similarity_mask(sim, pos, neg, epsilon=epsilon)
    pos_term = _common.masked_logsumexp(-alpha * (sim - base), pos, axis=1, include_zero=True)
    neg_term = _common.masked_logsumexp(beta * (sim - base), neg, axis=1, include_zero=True)
    return pos_term / alpha + neg_term / beta, batch.mask


def multi_similarity_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    epsilon: float | None = 0.1,
    reduction: str = "mean",
    reduction_threshold: tuple[float | None, float | None] | None = None,
    pairs: tuple[jax.Array, jax.Array] | None = None,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Multi-similarity loss (Wang et al. 2019) over mined pairs.

    With cosine similarities :math:`S_{ij}`, and P_i, N_i the positives and
    negatives of anchor i that the miner keeps (all of them for
    ``epsilon=None``), base :math:`\lambda`:

    .. math::
        L = \frac{1}{B} \sum_{i} \Big[
            \frac{1}{\alpha} \log\big(1 + \sum_{p \in P_i} e^{-\alpha (S_{ip} - \lambda)}\big)
          + \frac{1}{\beta} \log\big(1 + \sum_{n \in N_i} e^{\beta (S_{in} - \lambda)}\big)
          \Big]

    Mining (``epsilon`` not None, ``jaxmetric.mining.multi_similarity_mask``):
    keep a positive if :math:`S_{ip} - \epsilon < \max_n S_{in}` and a
    negative if :math:`S_{in} + \epsilon > \min_p S_{ip}`.

    The mean runs over all valid anchors (B = the number of valid rows of the
    global batch; an anchor left without pairs adds 0), as PML's MeanReducer;
    ``reduction`` chooses another reduction of the per-anchor terms.
    PML: ``MultiSimilarityLoss(alpha, beta, base)`` with
    ``MultiSimilarityMiner(epsilon)``'s pairs as ``indices_tuple`` is the
    default here; the loss alone (no miner) is ``epsilon=None``.

    ``pairs=`` gives the pairs (PML's ``indices_tuple``); ``epsilon`` then
    mines among them, so for PML's loss on given pairs pass ``epsilon=None``:
    ``multi_similarity_loss(x, y, pairs=mining.multi_similarity_miner(x, y),
    epsilon=None)`` is the default ``multi_similarity_loss(x, y)``.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; L2-normalised inside.
      labels: [B] integer labels.
      alpha: weight of positive pairs, > 0 (paper: 2).
      beta: weight of negative pairs, > 0 (paper: 50).
      base: the similarity margin lambda (paper: 0.5; 1 in the paper's
        eq. 6 form is the same with another ``base``).
      epsilon: the miner's margin (paper and PML's miner: 0.1), >= 0, or None
        for no mining (every pair).
      reduction: of the per-anchor terms: "mean" (over the valid anchors),
        "mean_nonzero", "sum", "threshold" (``reduction_threshold=(low,
        high)``) or "none" (the [B] local terms, 0 for invalid rows); see
        ``jaxmetric.contrastive_loss``.
      reduction_threshold: (low, high) for "threshold".
      pairs: ``(positive_mask, negative_mask)`` [B, M] bool, the pairs to
        use instead of every labelled pair (see above).
      reference_embeddings, reference_labels, reference_mask: another set
        of candidates (PML's ``ref_emb``), as in ``jaxmetric.contrastive_loss``.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; pairs (and the miner's hardest pairs) come from
        all devices, anchors stay local.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no row is valid or no pair
      is mined.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
      >>> loss = jaxmetric.multi_similarity_loss(x, jnp.array([0, 0, 1, 1]))
      >>> round(float(loss), 4)
      0.6791

    Reference:
      Wang et al., "Multi-Similarity Loss with General Pair Weighting for
      Deep Metric Learning", CVPR 2019.
    """
    hyper = {
        "alpha": alpha,
        "beta": beta,
        "base": base,
        "epsilon": epsilon,
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


SPEC = _common.LabelLoss(
    multi_similarity_loss, check=check, terms=terms, reduce=_common.reduce_terms
)
