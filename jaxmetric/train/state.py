"""The train state: one explicit pytree, replicated over the device mesh."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

import jaxmetric
from jaxmetric.models import Embedder, build_model
from jaxmetric.train import methods

AXIS = "data"


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes.

    Attributes:
      step: int32 scalar, steps taken.
      params: the online model's parameters (nested dict of arrays).
      batch_stats: its BatchNorm running statistics (may be empty).
      opt_state: optax state.
      key: raw uint32 PRNG key [2]; step t uses ``fold_in(key, t)``.
      target_params: the momentum (target) encoder's parameters, an EMA of
        ``params`` (MoCo, BYOL, MoCo v3), or None. The whole tree, predictor
        included, so ``merge_model`` rebuilds it; the target never applies
        its predictor.
      target_batch_stats: the momentum encoder's BatchNorm statistics, or None.
      queue: a queue of earlier embeddings [K, D] and its pointer (MoCo's
        negative keys, NNCLR's support set), or None.
      skipped: int32 scalar, steps whose loss or gradient was not finite and
        that were therefore not applied.
      consecutive_skipped: int32 scalar, how many of the latest steps in a row
        were not finite (0 after a good step); the trainer stops the run when
        it reaches ``config.max_consecutive_skipped``.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    key: jax.Array
    target_params: Any = None
    target_batch_stats: Any = None
    queue: jaxmetric.MemoryQueue | None = None
    skipped: jax.Array = flax.struct.field(default_factory=lambda: jnp.zeros((), jnp.int32))
    consecutive_skipped: jax.Array = flax.struct.field(
        default_factory=lambda: jnp.zeros((), jnp.int32)
    )


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
    """A 1-axis ``"data"`` mesh over the first ``num_devices`` devices (all
    when 0), with Auto axis types so ``shard_map`` takes plain arrays."""
    devices = jax.devices()
    n = num_devices or len(devices)
    if n > len(devices):
        raise ValueError(f"`num_devices`={n} but only {len(devices)} devices are present.")
    return jax.sharding.Mesh(
        np.asarray(devices[:n]), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
    )


def split_model(model: Embedder) -> tuple[nnx.GraphDef, dict, dict]:
    """(graphdef, params, batch_stats) with plain nested dicts of arrays."""
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(batch_stats)


def merge_model(graphdef: nnx.GraphDef, params: dict, batch_stats: dict) -> Embedder:
    """Rebuilds a model from ``split_model``'s pieces (a copy)."""
    return nnx.merge(graphdef, params, batch_stats, copy=True)


def create_train_state(
    config: ml_collections.ConfigDict,
    input_shape: tuple[int, ...],
    tx: optax.GradientTransformation,
) -> tuple[nnx.GraphDef, TrainState]:
    """Builds the model (global BN over ``"data"``) and its initial state."""
    model = build_model(config.model, input_shape, axis_name=AXIS, seed=config.seed)
    graphdef, params, batch_stats = split_model(model)
    key = jax.random.PRNGKey(config.seed)
    key, queue_key = jax.random.split(key)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        key=key,
    )
    method = methods.get(config.method)
    if method.momentum_target:
        state = state.replace(
            target_params=jax.tree.map(jnp.copy, params),
            target_batch_stats=jax.tree.map(jnp.copy, batch_stats),
        )
    if method.queue:
        queue = jaxmetric.init_queue(
            config[method.name].queue_size,
            config.model.embed_dim,
            key=queue_key if method.random_queue else None,
        )
        state = state.replace(queue=queue)
    return graphdef, state
