"""jaxmetric: deep metric learning and contrastive self-supervised learning in JAX.

The kernels (``distances``, ``mining``, ``losses``, ``parallel``, ``queue``)
are pure functions of arrays that run under ``jit``, ``vmap``,
``jax.shard_map`` and ``jax.pmap``; none of them needs a Flax or optax object.
"""

from jaxmetric import distances, losses, metrics, mining, parallel, queue
from jaxmetric.distances import l2_normalize, pairwise_distances, pairwise_similarities
from jaxmetric.losses import (
    angular_loss,
    contrastive_loss,
    moco_loss,
    npair_loss,
    ntxent_loss,
    simclr_loss,
    triplet_margin_loss,
)
from jaxmetric.queue import MemoryQueue, ema_update, enqueue, init_queue

__version__ = "0.1.0"

__all__ = [
    "MemoryQueue",
    "angular_loss",
    "contrastive_loss",
    "distances",
    "ema_update",
    "enqueue",
    "init_queue",
    "l2_normalize",
    "losses",
    "metrics",
    "mining",
    "moco_loss",
    "npair_loss",
    "ntxent_loss",
    "pairwise_distances",
    "pairwise_similarities",
    "parallel",
    "queue",
    "simclr_loss",
    "triplet_margin_loss",
]
