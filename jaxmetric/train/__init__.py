"""The trainer: the config schema, the training methods (``methods/``, one
module each), the train state, the sharded step under
``jax.jit(jax.shard_map(...))``, checkpointing, evaluation and the loop."""

from jaxmetric import _extras

with _extras.requires(
    "jaxmetric.train",
    "flax",
    "optax",
    "orbax.checkpoint",
    "ml_collections",
    "tensorboardX",
    "tqdm",
    "matplotlib",
):
    from jaxmetric.train.config import base_config, validate_config
    from jaxmetric.train.state import TrainState, create_train_state, make_mesh
    from jaxmetric.train.steps import make_embed_fn, make_train_step
    from jaxmetric.train.trainer import train_and_evaluate

__all__ = [
    "TrainState",
    "base_config",
    "create_train_state",
    "make_embed_fn",
    "make_mesh",
    "make_train_step",
    "train_and_evaluate",
    "validate_config",
]
