"""SimCLR (Chen et al. 2020): NT-Xent between two views of each example,
2N - 2 negatives from the global batch."""

from __future__ import annotations

import jax.numpy as jnp

import jaxmetric
from jaxmetric.train import fields
from jaxmetric.train.methods import parts
from jaxmetric.train.methods.base import Method
from jaxmetric.train.state import AXIS


def make_step(config, graphdef, tx):
    aug, temperature = config.augment, config.simclr.temperature
    block_size = config.simclr.block_size or "auto"

    def step(state, x, y):
        del y
        views = jnp.stack(parts.two_views(state, aug, x), axis=1)  # [b, 2, ...]

        def embed_fn(params, chunk):  # chunk [c, 2, ...] -> z [c, 2, D]
            # Both views in one forward pass: BN statistics over all 2c views
            # (2N without chunks).
            c = chunk.shape[0]
            _, z, stats = parts.forward(
                graphdef, params, state.batch_stats, jnp.concatenate([chunk[:, 0], chunk[:, 1]])
            )
            return jnp.stack([z[:c], z[c:]], axis=1), stats

        def loss_fn(z):
            return jaxmetric.simclr_loss(
                z[:, 0], z[:, 1], temperature=temperature, axis_name=AXIS, block_size=block_size
            )

        (loss, stats), grads = parts.value_and_grad(config, embed_fn, loss_fn, state.params, views)
        return parts.apply_update(config, state, tx, loss, grads, stats), {"loss": loss}

    return step


def validate(config) -> None:
    fields.positive("simclr.temperature", config.simclr.temperature)
    fields.non_negative_int("simclr.block_size", config.simclr.block_size)


METHOD = Method(
    name="simclr",
    title="SimCLR",
    make_step=make_step,
    # block_size 0: the kernel's "auto", its fastest exact path for the shapes
    # and backend (dense only where that is faster); n: tiles of n rows
    # (memory linear in the global batch, same value and gradient).
    defaults={"temperature": 0.1, "block_size": 0},
    validate=validate,
    grad_cache=True,
)
