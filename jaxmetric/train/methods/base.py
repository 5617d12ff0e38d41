"""What a training method declares: the one record the trainer reads."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import ml_collections
import optax
from flax import nnx

if TYPE_CHECKING:
    from jaxmetric.train.state import TrainState

StepFn = Callable[["TrainState", jax.Array, jax.Array], tuple["TrainState", dict[str, jax.Array]]]
StepBuilder = Callable[
    [ml_collections.ConfigDict, nnx.GraphDef, optax.GradientTransformation], StepFn
]


def _no_checks(config: ml_collections.ConfigDict) -> None:
    del config


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method: its step, its config block and the state it needs.

    Attributes:
      name: the value of ``config.method`` and the name of its config block
        (``config.<name>``) and of its module in ``jaxmetric/train/methods/``.
      title: how tables and logs name it ("MoCo v2").
      make_step: ``(config, graphdef, tx) -> step``: the per-device step
        ``(state, x, y) -> (state, {"loss", ...})`` that the trainer wraps in
        ``jax.jit(jax.shard_map(...))`` (see ``jaxmetric.train.steps``).
      defaults: the fields of ``config.<name>`` with their defaults.
      validate: raises ValueError naming a bad field of the method's block
        (or of a field the method constrains); runs before anything is built.
      two_views: self-supervised: each step sees two augmented views of
        unlabelled examples (``augment.kind`` must not be "none").
      needs_predictor: the model needs a predictor head (``model.predictor``).
      momentum_target: the state holds an EMA copy of the model
        (``target_params``, ``target_batch_stats``).
      queue: the state holds a queue of ``config.<name>.queue_size``
        embeddings (``TrainState.queue``); the size must be a multiple of the
        global batch.
      random_queue: the queue starts full of random unit vectors (MoCo);
        otherwise empty, no slot valid.
      class_balanced: batches hold ``config.<name>.samples_per_class``
        examples of each of their classes (supervised metric learning).
      grad_cache: the step supports gradient caching
        (``config.grad_cache.chunk_size`` > 0: the encoder in chunks, the
        loss over the whole batch; ``jaxmetric.chunked_value_and_grad``),
        declared by the methods whose loss couples the batch.
    """

    name: str
    title: str
    make_step: StepBuilder
    defaults: dict[str, Any]
    validate: Callable[[ml_collections.ConfigDict], None] = _no_checks
    two_views: bool = True
    needs_predictor: bool = False
    momentum_target: bool = False
    queue: bool = False
    random_queue: bool = False
    class_balanced: bool = False
    grad_cache: bool = False

    def config_block(self) -> ml_collections.ConfigDict:
        """A fresh ``config.<name>`` block with the defaults."""
        return ml_collections.ConfigDict(copy.deepcopy(self.defaults))
