"""The MoCo family: InfoNCE of queries against their momentum keys.

``moco_loss`` (MoCo v1 / v2) takes its negatives from a queue of past keys;
``mocov3_loss`` takes them from the keys of the (global) batch, no queue.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import l2_normalize
from jaxmetric.losses import _common
from jaxmetric.losses._tiled_ntxent import check_block_size, choose_block_size, tiled_ntxent
from jaxmetric.losses._tiling import Rows


def moco_loss(
    queries: jax.Array,
    keys: jax.Array,
    queue: jax.Array,
    *,
    temperature: float = 0.2,
    normalize: bool = True,
    queue_mask: jax.Array | None = None,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
    block_size: int | str | None = "auto",
) -> jax.Array:
    r"""InfoNCE of MoCo: each query against its key and the queued negatives.

    .. math::
        \ell_i = -\log \frac{e^{q_i^\top k_i / T}}
            {e^{q_i^\top k_i / T} + \sum_{j=1}^{K} e^{q_i^\top u_j / T}}

    i.e. cross-entropy of the logits ``[q.k, q.queue^T] / T`` with target 0,
    averaged over the (global) batch. ``keys`` and ``queue`` carry no gradient
    (the key encoder is updated by momentum, not by backprop).

    Args:
      queries: [B, D] query embeddings (online encoder).
      keys: [B, D] key embeddings (momentum encoder), row i the positive of
        query i.
      queue: [K, D] negative keys, e.g. ``jaxmetric.memory.MemoryQueue``'s
        ``embeddings``.
      temperature: T > 0 (MoCo v1: 0.07, v2: 0.2).
      normalize: L2-normalise queries, keys and queue rows (MoCo normalises
        its encoder outputs).
      queue_mask: [K] bool, filled queue slots. None: all.
      mask: [B] bool, valid queries. None: all valid.
      axis_name: mapped axis; the mean runs over the global batch. The queue
        is replicated, so no gathering is needed here (``jaxmetric.memory.
        enqueue`` gathers the keys).
      block_size: how the loss is computed; every choice gives the same
        value and gradient. "auto" (default): the fastest for the shapes and
        the backend (on CPU: slabs of 128 queries, dense up to 2^16 logits;
        on GPU / TPU: dense up to 2^26 logits). None: the dense [B, K]
        logits and autodiff. An int: slabs of ``block_size`` queries, each
        against the whole queue, with the value and gradient computed
        together (memory ``block_size`` x K per slab).

    Returns:
      A float32 scalar; 0.0 when no query is valid.

    Example:
      >>> import jax, jaxmetric
      >>> q, k = jax.random.normal(jax.random.key(0), (2, 4, 8))
      >>> queue = jax.random.normal(jax.random.key(1), (16, 8))
      >>> loss = jaxmetric.moco_loss(q, k, queue)

    pytorch-metric-learning has no MoCo loss of its own; its MoCo recipe wraps
    ``NTXentLoss(temperature)`` in ``CrossBatchMemory`` with the keys as the
    memory, which equals this function when every queue entry is a negative of
    every query (distinct pair labels) and embeddings are normalised.

    Reference:
      He et al., "Momentum Contrast for Unsupervised Visual Representation
      Learning", CVPR 2020; Chen et al., "Improved Baselines with Momentum
      Contrastive Learning" (MoCo v2), 2020.
    """
    _checks.check_positive(temperature, "temperature")
    check_block_size(block_size)
    queries, keys = _checks.check_embedding_pair(queries, keys, "queries", "keys")
    queue = _checks.check_embeddings(queue, "queue")
    if queue.shape[1] != queries.shape[1]:
        raise ValueError(
            f"`queue` rows must have the queries' dimension {queries.shape[1]}, "
            f"got shape {queue.shape}."
        )
    batch = queries.shape[0]
    mask = _checks.check_mask(mask, batch)
    queue_mask = _checks.check_mask(queue_mask, queue.shape[0], "queue_mask")
    keys = jax.lax.stop_gradient(keys)
    queue = jax.lax.stop_gradient(queue)
    if normalize:
        queries, keys, queue = l2_normalize(queries), l2_normalize(keys), l2_normalize(queue)
    positive = jnp.sum(queries * keys, axis=1) / temperature  # [B]
    block_size = choose_block_size(block_size, rows=batch, candidates=queue.shape[0])
    if block_size is not None:
        # Queries get label 0 and the queue label 1: every filled slot is a negative.
        return tiled_ntxent(
            Rows(queries, jnp.zeros(batch, jnp.int32), mask, jnp.full(batch, -1, jnp.int32)),
            Rows(
                queue,
                jnp.ones(queue.shape[0], jnp.int32),
                queue_mask,
                jnp.arange(queue.shape[0], dtype=jnp.int32),
            ),
            temperature=temperature,
            block_size=block_size,
            partner=keys,
            axis_name=axis_name,
            candidate_grad=False,  # The queue gets no gradient: skip its GEMM.
        )
    negatives = queries @ queue.T / temperature  # [B, K]
    logits = jnp.concatenate([positive[:, None], negatives], axis=1)
    counts = jnp.concatenate(
        [jnp.ones((batch, 1), bool), jnp.broadcast_to(queue_mask, negatives.shape)], axis=1
    )
    losses = _common.masked_logsumexp(logits, counts, axis=1) - positive
    return parallel.reduce_losses(losses, mask, "mean", axis_name)


def mocov3_loss(
    queries: jax.Array,
    keys: jax.Array,
    *,
    temperature: float = 0.2,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> jax.Array:
    r"""MoCo v3's InfoNCE of queries against the batch of momentum keys.

    With L2-normalised queries q (online encoder + predictor) and keys k
    (momentum encoder, no gradient), for every valid query i of the global
    batch:

    .. math::
        \ell_i = -\log \frac{e^{q_i \cdot k_i / \tau}}
            {\sum_{j} e^{q_i \cdot k_j / \tau}},
        \qquad \mathcal{L} = 2\tau \cdot \frac{1}{N} \sum_i \ell_i

    where j runs over the valid keys of the global batch (no queue; the
    other examples' keys are the negatives) and the factor :math:`2\tau` is
    the official code's (divide by it for the plain cross-entropy). MoCo
    v3's loss is symmetric: ``mocov3_loss(q1, k2) + mocov3_loss(q2, k1)``.

    Args:
      queries: [B, D] online queries, row i paired with key i.
      keys: [B, D] momentum-encoder keys; gathered from every device under
        ``axis_name``; no gradient flows into them.
      temperature: :math:`\tau` > 0 (0.2 for ResNets, 0.1 for ViTs).
      mask: [B] bool, valid rows (as queries and as keys). None: all valid.
      axis_name: mapped axis; keys of all devices are the candidates.

    Returns:
      A float32 scalar; 0.0 when no row is valid.

    Example:
      >>> import jax, jaxmetric
      >>> q1, q2, k1, k2 = jax.random.normal(jax.random.key(0), (4, 8, 4))
      >>> loss = jaxmetric.mocov3_loss(q1, k2) + jaxmetric.mocov3_loss(q2, k1)

    PML has no MoCo v3 loss; ``NTXentLoss`` on the concatenation of queries
    and keys is a different loss (queries are negatives there too).

    Reference:
      Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision
      Transformers" (MoCo v3), ICCV 2021, Algorithm 1 and its official code
      (``ctr`` multiplies the cross-entropy by 2 * T).
    """
    _checks.check_positive(temperature, "temperature")
    queries, keys = _checks.check_embedding_pair(queries, keys, "queries", "keys")
    batch = queries.shape[0]
    mask = _checks.check_mask(mask, batch)
    queries = l2_normalize(queries)
    keys = jax.lax.stop_gradient(l2_normalize(keys))
    return 2.0 * temperature * _common.batch_infonce(queries, keys, mask, temperature, axis_name)
