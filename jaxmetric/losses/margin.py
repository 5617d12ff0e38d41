"""Margin loss (Wu et al. 2017): hinges of the distances around a boundary beta."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import pairwise_distances
from jaxmetric.losses import _common


def check(*, margin: float, beta, nu: float) -> None:
    """Checks the hyper-parameters: margin, nu >= 0; beta a number > 0 or an
    array of rank 0 or 1 (a learnable scalar or one per class)."""
    _checks.check_non_negative(margin, "margin")
    _checks.check_non_negative(nu, "nu")
    if isinstance(beta, numbers.Real) and not isinstance(beta, bool):
        _checks.check_positive(beta, "beta")
        return
    if not hasattr(beta, "shape") or not jnp.issubdtype(jnp.result_type(beta), jnp.floating):
        raise ValueError(
            f"`beta` must be a number > 0 or a floating array (a scalar, or one per class "
            f"[num_classes]), got {beta!r}."
        )
    if jnp.ndim(beta) > 1:
        raise ValueError(
            f"`beta` must be a scalar or a [num_classes] array, got shape {jnp.shape(beta)}."
        )


def _anchor_beta(beta, labels: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
    """Each anchor's beta [b] and whether it has one (a label in [0, C) for a
    per-class beta [C]; every anchor for a scalar)."""
    beta = jnp.asarray(beta, dtype)
    if beta.ndim == 0:
        return jnp.broadcast_to(beta, labels.shape), jnp.ones(labels.shape, bool)
    num_classes = beta.shape[0]
    has = (labels >= 0) & (labels < num_classes)
    return beta[jnp.clip(labels, 0, num_classes - 1)], has


def terms(batch: _common.Batch, *, margin: float, beta, **_):
    """The pair terms of the local anchors: ``(pos_hinge [b, M], neg_hinge
    [b, M], beta [b])`` with their masks ``(pos, neg, anchor_has_beta)``; the
    triplet multiplicities come from the masks, in ``reduce``."""
    dist = pairwise_distances(batch.anchors, batch.candidates, metric="euclidean")
    pos, neg = batch.pair_masks()
    anchor_beta, has_beta = _anchor_beta(beta, batch.labels, dist.dtype)
    pos = pos & has_beta[:, None]
    neg = neg & has_beta[:, None]
    boundary = anchor_beta[:, None]
    pos_hinge = jax.nn.relu(dist - boundary + margin)
    neg_hinge = jax.nn.relu(boundary - dist + margin)
    return (pos_hinge, neg_hinge, anchor_beta), (pos, neg, has_beta)


def reduce(losses, valid, axis_name: str | None, *, beta, nu: float, **_) -> jax.Array:
    """Sum over all triplets (a, p, n) of the two hinges, over the number of
    non-zero hinges (PML's DivisorReducer), plus nu times beta's regulariser.

    Over all triplets of anchor a, its positive pair (a, p) appears n_neg(a)
    times and its negative pair (a, n) n_pos(a) times: the sums run over the
    pairs with these weights (no [b, M, M] array). Counts are floats (they
    reach b * M^2).
    """
    (pos_hinge, neg_hinge, anchor_beta), (pos, neg, _) = losses, valid
    dtype = pos_hinge.dtype
    n_pos = jnp.sum(pos, axis=1).astype(dtype)
    n_neg = jnp.sum(neg, axis=1).astype(dtype)
    w_pos = jnp.where(pos, n_neg[:, None], 0.0)
    w_neg = jnp.where(neg, n_pos[:, None], 0.0)
    total = parallel.global_sum(w_pos * pos_hinge + w_neg * neg_hinge, axis_name)
    count = parallel.global_sum(
        jnp.where(pos_hinge > 0, w_pos, 0.0) + jnp.where(neg_hinge > 0, w_neg, 0.0), axis_name
    )
    loss = parallel.safe_divide(total, count)
    if not nu:
        return loss
    triplets = n_pos * n_neg  # [b]
    if jnp.ndim(beta) == 0:  # PML: nu * beta, once, when there is a triplet.
        has_triplet = parallel.global_sum(triplets, axis_name) > 0
        return loss + jnp.where(has_triplet, nu * jnp.asarray(beta, dtype), 0.0)
    # Per class: nu * beta[y_a] for every triplet, over the same divisor.
    reg = parallel.global_sum(jnp.where(triplets > 0, triplets * anchor_beta, 0.0), axis_name)
    return loss + nu * parallel.safe_divide(reg, count)


def margin_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    margin: float = 0.2,
    beta: float | jax.Array = 1.2,
    nu: float = 0.0,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""Margin loss: positive pairs inside beta - margin, negatives beyond beta + margin.

    With :math:`d` the euclidean distance between L2-normalised rows, over
    every triplet (a, p, n) of the batch (p a positive of anchor a, n a
    negative), each triplet contributing its positive and its negative pair:

    .. math::
        L = \frac{\sum_{(a,p,n)} \big[(d_{ap} - \beta_a + \alpha)_+
              + (\beta_a - d_{an} + \alpha)_+\big]}
             {\#\{\text{those hinges} > 0\}}
          \; + \; \nu\, R(\beta)

    with :math:`\beta_a = \beta` (a scalar) or :math:`\beta_{y_a}` (one per
    class), 0 when no hinge is > 0. The regulariser (learnable beta): for a
    scalar, :math:`R = \beta` (added once when the batch has a triplet); per
    class, :math:`R = \sum_{(a,p,n)} \beta_{y_a}` over the same divisor.
    The triplets are never formed: each positive pair counts once per
    negative of its anchor and each negative pair once per positive.

    This is PML's ``MarginLoss(margin, nu, beta)`` (``triplets_per_anchor=
    "all"``, its default; ``DivisorReducer``). ``learn_beta=True`` is
    ``beta`` passed as an array the caller optimises (its gradient flows);
    ``num_classes=C`` is a ``[C]`` array (``jnp.full(C, 1.2)`` is PML's
    initial value), rows whose label is outside [0, C) then are no anchors
    (PML would fail). PML adds ``nu * R`` only with ``learn_beta=True``;
    here whenever ``nu > 0`` (for a fixed float beta, a constant). The paper
    samples one negative per positive pair by distance
    (``jaxmetric.mining.distance_weighted_negatives``).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer class labels.
      margin: alpha >= 0 (paper and PML: 0.2).
      beta: the boundary: a number > 0 (paper and PML: 1.2), or a learnable
        array, a scalar or one per class [C].
      nu: weight of beta's regulariser, >= 0 (PML: 0; the paper: 0 or 0.1).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; pairs are formed with the candidates of all
        devices and the value is that of the global batch; ``beta``
        replicated.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when there is no triplet.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
      >>> round(float(jaxmetric.margin_loss(x, jnp.array([0, 0, 1, 1]))), 4)
      0.5056

    Reference:
      Wu, Manmatha, Smola, Krähenbühl, "Sampling Matters in Deep Embedding
      Learning", ICCV 2017.
    """
    hyper = {"margin": margin, "beta": beta, "nu": nu}
    return _common.label_loss(SPEC, embeddings, labels, mask, axis_name, **hyper)


SPEC = _common.LabelLoss(margin_loss, check=check, terms=terms, reduce=reduce)
