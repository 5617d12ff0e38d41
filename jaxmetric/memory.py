"""MoCo / cross-batch memory queue as a pytree, and the momentum (EMA) update.

The queue is explicit state: a ``MemoryQueue`` pytree that lives in the train
state, is replicated on every device, and is updated functionally by
``enqueue``. Under ``axis_name`` the keys of all devices are gathered first,
so every replica of the queue stays identical.

(This module was ``jaxmetric.queue``, a name that shadowed the standard
library's ``queue``; that name remains as a deprecated alias.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import l2_normalize

PyTree = Any


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MemoryQueue:
    """A ring buffer of K embeddings (and labels, for supervised memories).

    Attributes:
      embeddings: [K, D] stored keys, the newest ``global_batch`` rows at
        ``pointer - global_batch``.
      labels: [K] int32 labels of the keys (-1 where unknown).
      valid: [K] bool, slots that hold a real key (use as ``queue_mask``).
      pointer: int32 scalar, the slot the next batch is written to.
    """

    embeddings: jax.Array
    labels: jax.Array
    valid: jax.Array
    pointer: jax.Array

    @property
    def size(self) -> int:
        return self.embeddings.shape[0]

    def replace(self, **changes: Any) -> MemoryQueue:
        """A copy with the given fields replaced (as ``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def init_queue(
    size: int,
    dim: int,
    *,
    key: jax.Array | None = None,
    dtype: jnp.dtype = jnp.float32,
) -> MemoryQueue:
    """Creates a queue of ``size`` slots of dimension ``dim``.

    Args:
      size: K > 0, the number of stored keys.
      dim: D > 0, the embedding dimension.
      key: PRNG key. Given: filled with random unit vectors and all slots
        valid, as MoCo starts. None: zeros, no slot valid (cross-batch memory
        starts empty; pass ``queue.valid`` as ``queue_mask``).
      dtype: storage dtype of the embeddings.

    Returns:
      A ``MemoryQueue`` with ``pointer`` 0.
    """
    if size <= 0:
        raise ValueError(f"`size` must be > 0, got {size!r}.")
    if dim <= 0:
        raise ValueError(f"`dim` must be > 0, got {dim!r}.")
    if key is None:
        embeddings = jnp.zeros((size, dim), dtype)
        valid = jnp.zeros((size,), bool)
    else:
        embeddings = l2_normalize(jax.random.normal(key, (size, dim))).astype(dtype)
        valid = jnp.ones((size,), bool)
    return MemoryQueue(
        embeddings=embeddings,
        labels=jnp.full((size,), -1, jnp.int32),
        valid=valid,
        pointer=jnp.zeros((), jnp.int32),
    )


def enqueue(
    queue: MemoryQueue,
    keys: jax.Array,
    labels: jax.Array | None = None,
    *,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
) -> MemoryQueue:
    """Writes a batch of keys into the queue, replacing the oldest.

    Under ``axis_name`` the keys of all devices are gathered (device order),
    so the global batch G = local batch x devices is written and every
    replica stays identical. K must be a multiple of G, so a write never
    wraps in the middle (MoCo's requirement too).

    Args:
      queue: the current ``MemoryQueue``.
      keys: [b, D] local keys; stored without gradient.
      labels: optional [b] integer labels (supervised memory).
      mask: optional [b] bool; rows marked False are stored as invalid slots.
      axis_name: mapped axis, or None.

    Returns:
      The updated queue; ``pointer`` advances by G modulo K.
    """
    keys = _checks.check_embeddings(keys, "keys")
    batch, dim = keys.shape
    if dim != queue.embeddings.shape[1]:
        raise ValueError(
            f"`keys` have dimension {dim} but the queue stores {queue.embeddings.shape[1]}."
        )
    global_batch = batch * parallel.axis_size(axis_name)
    if queue.size % global_batch:
        raise ValueError(
            f"The queue size K={queue.size} must be a multiple of the global "
            f"batch {global_batch} (`keys` local batch {batch} x "
            f"{parallel.axis_size(axis_name)} devices)."
        )
    if labels is None:
        labels = jnp.full((batch,), -1, jnp.int32)
    labels = _checks.check_labels(labels, batch)
    mask = _checks.check_mask(mask, batch)
    keys = jax.lax.stop_gradient(keys).astype(queue.embeddings.dtype)
    keys, labels, mask = (
        parallel.gather(x, axis_name, invariant=True) for x in (keys, labels, mask)
    )
    start = queue.pointer
    return MemoryQueue(
        embeddings=jax.lax.dynamic_update_slice_in_dim(queue.embeddings, keys, start, 0),
        labels=jax.lax.dynamic_update_slice_in_dim(queue.labels, labels, start, 0),
        valid=jax.lax.dynamic_update_slice_in_dim(queue.valid, mask, start, 0),
        pointer=((start + global_batch) % queue.size).astype(jnp.int32),
    )


def ema_update(target: PyTree, online: PyTree, momentum: float) -> PyTree:
    """Momentum update of a target pytree: m * target + (1 - m) * online.

    MoCo's key encoder and BYOL's target network; ``momentum`` may be a traced
    scalar (for a schedule). The same arithmetic as
    ``optax.incremental_update(online, target, step_size=1 - momentum)``;
    ``None`` leaves stay ``None``.

    Args:
      target: pytree of the momentum (target) parameters.
      online: pytree of the same structure, the online parameters.
      momentum: m in [0, 1]; 1 keeps the target unchanged.

    Returns:
      The updated target pytree.
    """
    if isinstance(momentum, (int, float)) and not 0.0 <= momentum <= 1.0:
        raise ValueError(f"`momentum` must be in [0, 1], got {momentum!r}.")
    step_size = 1.0 - momentum
    return jax.tree.map(
        lambda new, old: None if new is None else step_size * new + (1.0 - step_size) * old,
        online,
        target,
        is_leaf=lambda x: x is None,
    )
