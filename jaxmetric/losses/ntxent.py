"""NT-Xent: the normalised temperature-scaled cross-entropy of SimCLR."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import l2_normalize
from jaxmetric.losses import _common


def _ntxent_terms(batch: _common.Batch, temperature: float) -> tuple[jax.Array, jax.Array]:
    """Per positive pair NT-Xent terms [b, M] and their validity mask."""
    logits = batch.anchors @ batch.candidates.T / temperature  # [b, M]
    pos, neg = batch.pair_masks()
    # log sum over the anchor's negatives; the positive itself is added below,
    # the anchor's other positives are left out of the denominator.
    negative_lse = _common.masked_logsumexp(logits, neg, axis=1)
    # -log(e^s / (e^s + sum_n e^s_n)) = softplus(lse_neg - s)
    terms = jax.nn.softplus(negative_lse[:, None] - logits)
    return terms, pos


def ntxent_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 0.07,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""NT-Xent over positive pairs defined by labels.

    With cosine similarities :math:`s_{ij}` and temperature T, for every
    ordered positive pair (i, p), i != p, y_i = y_p:

    .. math::
        \ell(i, p) = -\log \frac{e^{s_{ip}/T}}
            {e^{s_{ip}/T} + \sum_{n: y_n \ne y_i} e^{s_{in}/T}}

    averaged over all positive pairs (anchors with more positives weigh more;
    the anchor's other positives are not in the denominator).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; cosine similarity.
      labels: [B] integer labels; equal labels are positives.
      temperature: T > 0.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; positives and negatives come from all devices.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when there is no positive pair.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
      >>> loss = jaxmetric.ntxent_loss(x, jnp.array([0, 0, 1, 1]), temperature=0.5)

    Equals ``optax.losses.ntxent`` and PML's ``NTXentLoss(temperature)``
    wherever a positive pair exists (optax returns NaN when none does).

    Reference:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations", ICML 2020.
    """
    _checks.check_positive(temperature, "temperature")
    batch = _common.labelled_batch(embeddings, labels, mask, axis_name, normalize=True)
    terms, valid = _ntxent_terms(batch, temperature)
    return parallel.reduce_losses(terms, valid, "mean", axis_name)


def simclr_loss(
    z1: jax.Array,
    z2: jax.Array,
    *,
    temperature: float = 0.1,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""SimCLR's NT-Xent for two views of N examples.

    Anchor z1_i has positive z2_i and the other 2N - 2 views as negatives
    (and z2_i symmetrically); with cosine similarity s and temperature T:

    .. math::
        L = \frac{1}{2N} \sum_{i=1}^{N} \big(\ell(z^1_i, z^2_i)
            + \ell(z^2_i, z^1_i)\big),\quad
        \ell(u, v) = -\log \frac{e^{s(u, v)/T}}{\sum_{w \ne u} e^{s(u, w)/T}}

    Under ``axis_name`` N is the global batch: with 8 devices of 512 local
    pairs every anchor sees 8,190 negatives.

    Args:
      z1: [N, D] first views (float32, bfloat16 or float16).
      z2: [N, D] second views, row i pairs with ``z1[i]``.
      temperature: T > 0 (SimCLR: 0.1 to 0.5).
      mask: [N] bool, valid pairs. None: all valid.
      axis_name: mapped axis; negatives come from all devices.

    Returns:
      A float32 scalar; 0.0 when no pair is valid.

    Example:
      >>> import jax, jaxmetric
      >>> z1, z2 = jax.random.normal(jax.random.key(0), (2, 8, 16))
      >>> loss = jaxmetric.simclr_loss(z1, z2, temperature=0.5)

    Equals ``ntxent_loss(concat([z1, z2]), concat([arange(N), arange(N)]))``
    and PML's ``NTXentLoss`` with the same labels.

    Reference:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations", ICML 2020, Algorithm 1.
    """
    _checks.check_positive(temperature, "temperature")
    z1, z2 = _checks.check_embedding_pair(z1, z2, "z1", "z2")
    num_pairs = z1.shape[0]
    mask = _checks.check_mask(mask, num_pairs)
    z1, z2 = l2_normalize(z1), l2_normalize(z2)
    pair_id = parallel.anchor_index(num_pairs, axis_name)
    gathered_ids = parallel.gather(pair_id, axis_name)
    gathered_mask = parallel.gather(mask, axis_name)
    global_pairs = gathered_ids.shape[0]
    batch = _common.Batch(
        anchors=jnp.concatenate([z1, z2]),
        labels=jnp.concatenate([pair_id, pair_id]),
        mask=jnp.concatenate([mask, mask]),
        candidates=jnp.concatenate(
            [parallel.gather(z1, axis_name), parallel.gather(z2, axis_name)]
        ),
        candidate_labels=jnp.concatenate([gathered_ids, gathered_ids]),
        candidate_mask=jnp.concatenate([gathered_mask, gathered_mask]),
        anchor_index=jnp.concatenate([pair_id, pair_id + global_pairs]),
    )
    terms, valid = _ntxent_terms(batch, temperature)
    return parallel.reduce_losses(terms, valid, "mean", axis_name)
