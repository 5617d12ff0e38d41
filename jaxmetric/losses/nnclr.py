"""NNCLR: the nearest neighbour from a support queue as the positive."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks
from jaxmetric.distances import l2_normalize
from jaxmetric.losses import _common


def support_nearest_neighbors(
    queries: jax.Array, support: jax.Array, support_mask: jax.Array | None = None
) -> jax.Array:
    r"""The nearest valid support row of each query, by cosine similarity.

    .. math::
        \mathrm{NN}(q_i) = s_{j^*},\qquad j^* = \arg\max_{j\ \text{valid}}\ \hat q_i \cdot \hat s_j

    with :math:`\hat x = x / \lVert x \rVert`; ties go to the lower index. A
    query with no valid support row (an empty queue at the start of
    training) is its own neighbour. The rows returned are L2-normalised and
    carry no gradient.

    Args:
      queries: [B, D] float embeddings.
      support: [K, D] float support set (e.g. ``MemoryQueue.embeddings``).
      support_mask: [K] bool, valid support rows. None: all valid.

    Returns:
      [B, D] float32, the normalised neighbour of each query.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> q = jnp.array([[1.0, 0.1], [0.0, 1.0]])
      >>> s = jnp.array([[0.0, 2.0], [3.0, 0.0]])
      >>> jaxmetric.losses.support_nearest_neighbors(q, s).round(2).tolist()
      [[1.0, 0.0], [0.0, 1.0]]
    """
    queries = l2_normalize(_checks.check_embeddings(queries, "queries"))
    support = l2_normalize(_checks.check_embeddings(support, "support"))
    if support.shape[1] != queries.shape[1]:
        raise ValueError(
            f"`support` rows must have the queries' dimension {queries.shape[1]}, "
            f"got shape {support.shape}."
        )
    support_mask = _checks.check_mask(support_mask, support.shape[0], "support_mask")
    similarity = jnp.where(support_mask[None, :], queries @ support.T, -jnp.inf)
    # argmax returns the first maximum: ties go to the lower index.
    nearest = support[jnp.argmax(similarity, axis=1)]
    nearest = jnp.where(jnp.any(support_mask), nearest, queries)
    return jax.lax.stop_gradient(nearest)


def nnclr_loss(
    z1: jax.Array,
    z2: jax.Array,
    support: jax.Array,
    *,
    temperature: float = 0.1,
    support_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""NNCLR's InfoNCE: the support-set neighbour of one view against the other view.

    For every valid example i of the global batch, with L2-normalised
    embeddings, the nearest neighbour :math:`\mathrm{NN}(z^1_i)` of the
    first view in the support set (see `support_nearest_neighbors`; no
    gradient) is the anchor, the second view of the same example the
    positive and the second views of the other examples the negatives:

    .. math::
        \ell_i = -\log \frac{e^{\mathrm{NN}(z^1_i) \cdot z^2_i / \tau}}
            {\sum_{k} e^{\mathrm{NN}(z^1_i) \cdot z^2_k / \tau}},
        \qquad \mathcal{L} = \frac{1}{N} \sum_i \ell_i

    with k over the valid rows of the global batch. The paper's loss is
    symmetric: ``(nnclr_loss(z1, z2, S) + nnclr_loss(z2, z1, S)) / 2`` (with
    the predictor's outputs as the second argument when there is one); the
    support queue then receives ``z1`` (``jaxmetric.enqueue``). Only ``z2``
    receives gradient.

    Args:
      z1: [B, D] embeddings of the first view, looked up in the support set.
      z2: [B, D] embeddings (or predictions) of the second view, row i
        paired with row i of ``z1``; gathered from every device under
        ``axis_name``.
      support: [K, D] the support set, the same on every device (a
        replicated queue of earlier embeddings).
      temperature: :math:`\tau` > 0 (the paper's 0.1).
      support_mask: [K] bool, valid support rows (``MemoryQueue.valid``).
        None: all valid. A query with no valid support row is its own
        neighbour (the loss is then SimCLR's one-directional InfoNCE).
      mask: [B] bool, valid rows (as anchors and as candidates).
      axis_name: mapped axis; the second views of all devices are the
        candidates.

    Returns:
      A float32 scalar, the loss of the global batch; 0.0 when no row is
      valid.

    Example:
      >>> import jax, jaxmetric
      >>> z1, z2, support = jax.random.normal(jax.random.key(0), (3, 8, 4))
      >>> loss = jaxmetric.nnclr_loss(z1, z2, support)
      >>> loss.shape
      ()

    PML and optax have no NNCLR loss. lightly's NNCLR example passes the
    neighbours and the other view to its ``NTXentLoss``, whose denominator
    also holds the other neighbours (2N - 2 negatives); this is the paper's
    eq. 2 (N - 1 negatives: the other examples' second views).

    Reference:
      Dwibedi, Aytar, Tompson, Sermanet & Zisserman, "With a Little Help
      from My Friends: Nearest-Neighbor Contrastive Learning of Visual
      Representations" (NNCLR), ICCV 2021, eq. 2.
    """
    _checks.check_positive(temperature, "temperature")
    z1, z2 = _checks.check_embedding_pair(z1, z2, "z1", "z2")
    mask = _checks.check_mask(mask, z1.shape[0])
    anchors = support_nearest_neighbors(z1, support, support_mask)
    return _common.batch_infonce(anchors, l2_normalize(z2), mask, temperature, axis_name)
