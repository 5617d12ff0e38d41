"""Supervised contrastive loss (SupCon)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.losses import _common, ntxent
from jaxmetric.losses._tiled_ntxent import check_block_size


def check(*, temperature: float, block_size: int | str | None) -> None:
    """Checks the hyper-parameters: T > 0; block_size "auto", None or a positive int."""
    _checks.check_positive(temperature, "temperature")
    check_block_size(block_size)


def terms(batch: _common.Batch, *, temperature: float, **_) -> tuple[jax.Array, jax.Array]:
    """Per-anchor SupCon losses [b] and which anchors count (those with a positive)."""
    logits = batch.anchors @ batch.candidates.T / temperature  # [b, M]
    pos, neg = batch.pair_masks()
    log_prob = logits - _common.masked_logsumexp(logits, pos | neg, axis=1)[:, None]
    num_pos = jnp.sum(pos, axis=1)
    losses = -parallel.safe_divide(
        jnp.sum(jnp.where(pos, log_prob, 0.0), axis=1), num_pos.astype(logits.dtype)
    )
    return losses, num_pos > 0


def value(
    batch: _common.Batch,
    axis_name: str | None,
    *,
    temperature: float,
    block_size: int | str | None,
) -> jax.Array:
    """The mean of ``terms``: from row slabs, or dense for ``block_size=None``
    (same value and gradient)."""
    tiled = ntxent.tiled_value(
        batch, axis_name, temperature=temperature, block_size=block_size, supcon=True
    )
    if tiled is not None:
        return tiled
    return _common.mean_over_valid(*terms(batch, temperature=temperature), axis_name)


def supcon_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 0.1,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
    block_size: int | str | None = "auto",
) -> jax.Array:
    r"""Supervised contrastive loss (SupCon, the "L_out" form of Khosla et al.).

    With cosine similarities :math:`s_{ij}`, temperature T, P(i) the
    positives of anchor i (y_p = y_i, p != i) and A(i) every other valid row:

    .. math::
        \ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)}
            \log \frac{e^{s_{ip}/T}}{\sum_{a \in A(i)} e^{s_{ia}/T}},
        \qquad L = \frac{1}{|\{i : P(i) \neq \emptyset\}|}
            \sum_{i : P(i) \neq \emptyset} \ell_i

    Unlike NT-Xent, the anchor's other positives stay in the denominator, and
    each anchor weighs the same whatever its number of positives.

    Conventions: the mean runs over the anchors that have a positive, as PML's
    ``SupConLoss(temperature)`` (cosine similarity, AvgNonZero) computes; this
    function equals it whenever the batch has a negative pair (PML returns 0
    for a one-class batch, this function the formula's value). The official
    code (HobbitLong/SupContrast) averages over all anchors and multiplies the
    loss by T / 0.07 (``base_temperature``): multiply by
    ``temperature / 0.07`` to reproduce it on batches where every anchor has a
    positive.

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; L2-normalised inside.
      labels: [B] integer labels; equal labels are positives.
      temperature: T > 0 (the paper: 0.1).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; positives and negatives come from all devices,
        anchors stay local, the value is that of the global batch.
      block_size: how the loss is computed; every choice gives the same
        value and gradient. "auto" (default): the fastest for the shapes and
        the backend (on CPU: slabs of 128 rows, dense up to 2^16 logits; on
        GPU / TPU: dense up to 2^26 logits). None: the dense [B, B]
        similarity matrix and autodiff. An int: slabs of ``block_size``
        anchor rows, each against all candidates, value and gradient
        computed together (three GEMMs, as the dense version), memory
        ``block_size`` x B instead of B^2.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when no anchor has a positive.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
      >>> loss = jaxmetric.supcon_loss(x, jnp.array([0, 0, 1, 1]), temperature=0.5)
      >>> round(float(loss), 4)
      0.2899

    Reference:
      Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020, eq. 2.
    """
    hyper = {"temperature": temperature, "block_size": block_size}
    return _common.label_loss(SPEC, embeddings, labels, mask, axis_name, **hyper)


SPEC = _common.LabelLoss(supcon_loss, check=check, terms=terms, value=value)
