"""The jitted, sharded train step of a config's method, and the embed function.

Each method's module in ``jaxmetric/train/methods/`` writes its step for one
device's shard (see ``jaxmetric.train.methods.parts``); here it is wrapped as
``jax.jit(jax.shard_map(...))`` over the ``"data"`` mesh axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxmetric import augment
from jaxmetric.train import methods
from jaxmetric.train.methods import StepFn
from jaxmetric.train.state import AXIS, merge_model


def make_train_step(
    config: ml_collections.ConfigDict,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
) -> StepFn:
    """The jitted, sharded step for ``config.method``: (state, x, y) ->
    (state, {"loss", ...}), x and y sharded over ``"data"``, state replicated."""
    step = methods.get(config.method).make_step(config, graphdef, tx)
    sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=(P(), P()))
    return jax.jit(sharded)


def make_embed_fn(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef
) -> Callable[[Any, Any, jax.Array], tuple[jax.Array, jax.Array]]:
    """Jitted (params, batch_stats, x) -> (features h, embeddings z) in
    evaluation mode (running BN statistics, no augmentation)."""

    @jax.jit
    def embed(params, batch_stats, x):
        model = merge_model(graphdef, params, batch_stats)
        x = jax.vmap(lambda e: augment.preprocess(config.augment, e))(x)
        return model(x, train=False)

    return embed
