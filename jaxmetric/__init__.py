"""jaxmetric: deep metric learning and contrastive self-supervised learning in JAX.

The kernels (``distances``, ``mining``, ``losses``, ``parallel``, ``memory``)
are pure functions of arrays that run under ``jit``, ``vmap``,
``jax.shard_map`` and ``jax.pmap``; none of them needs a Flax or optax object.
"""

from jaxmetric import distances, losses, memory, metrics, mining, parallel, search
from jaxmetric.distances import l2_normalize, pairwise_distances, pairwise_similarities
from jaxmetric.grad_cache import chunked_value_and_grad
from jaxmetric.losses import (
    angular_loss,
    arcface_loss,
    barlow_twins_loss,
    byol_loss,
    circle_loss,
    contrastive_loss,
    cosface_loss,
    generalized_lifted_structure_loss,
    lifted_structure_loss,
    margin_loss,
    moco_loss,
    mocov3_loss,
    multi_similarity_loss,
    nnclr_loss,
    normalized_softmax_loss,
    npair_loss,
    ntxent_loss,
    proxy_anchor_loss,
    proxy_nca_loss,
    simclr_loss,
    simsiam_loss,
    soft_nearest_neighbor_loss,
    soft_triple_loss,
    subcenter_arcface_loss,
    supcon_loss,
    triplet_margin_loss,
    vicreg_loss,
    xbm_loss,
)
from jaxmetric.memory import MemoryQueue, ema_update, enqueue, init_queue

__version__ = "0.1.0"

__all__ = [
    "MemoryQueue",
    "angular_loss",
    "arcface_loss",
    "barlow_twins_loss",
    "byol_loss",
    "chunked_value_and_grad",
    "circle_loss",
    "contrastive_loss",
    "cosface_loss",
    "distances",
    "ema_update",
    "enqueue",
    "generalized_lifted_structure_loss",
    "init_queue",
    "l2_normalize",
    "lifted_structure_loss",
    "losses",
    "margin_loss",
    "memory",
    "metrics",
    "mining",
    "moco_loss",
    "mocov3_loss",
    "multi_similarity_loss",
    "nnclr_loss",
    "normalized_softmax_loss",
    "npair_loss",
    "ntxent_loss",
    "pairwise_distances",
    "pairwise_similarities",
    "parallel",
    "proxy_anchor_loss",
    "proxy_nca_loss",
    "search",
    "simclr_loss",
    "simsiam_loss",
    "soft_nearest_neighbor_loss",
    "soft_triple_loss",
    "subcenter_arcface_loss",
    "supcon_loss",
    "triplet_margin_loss",
    "vicreg_loss",
    "xbm_loss",
]


def __getattr__(name: str):
    # ``jaxmetric.queue`` (renamed ``jaxmetric.memory``) loads its deprecated
    # alias, which warns, only when asked for.
    if name == "queue":
        import importlib

        return importlib.import_module("jaxmetric.queue")
    raise AttributeError(f"module 'jaxmetric' has no attribute {name!r}")
