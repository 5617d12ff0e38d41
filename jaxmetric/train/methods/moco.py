"""MoCo v2 (Chen et al. 2020): queries from the online encoder, keys from the
momentum encoder, negatives from a queue of earlier keys."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jaxmetric
from jaxmetric.distances import l2_normalize
from jaxmetric.train import fields
from jaxmetric.train.methods import parts
from jaxmetric.train.methods.base import Method
from jaxmetric.train.state import AXIS


def make_step(config, graphdef, tx):
    """The momentum encoder (EMA of the online parameters) is updated before
    the keys are computed, as in MoCo's code; the queue then receives the
    keys of the whole global batch."""
    aug, m = config.augment, config.moco

    def step(state, x, y):
        del y
        b = x.shape[0]
        v1, v2 = parts.two_views(state, aug, x)
        target_params = jaxmetric.ema_update(state.target_params, state.params, m.momentum)
        key_views = jnp.concatenate([v2, v1]) if m.symmetric else v2
        _, k, target_stats = parts.forward(
            graphdef, target_params, state.target_batch_stats, key_views
        )
        k = jax.lax.stop_gradient(l2_normalize(k))
        queue = state.queue

        def loss_fn(params):
            views = jnp.concatenate([v1, v2]) if m.symmetric else v1
            _, q, stats = parts.forward(graphdef, params, state.batch_stats, views)
            loss = jaxmetric.moco_loss(
                q,
                k,
                queue.embeddings,
                temperature=m.temperature,
                queue_mask=queue.valid,
                axis_name=AXIS,
            )
            return loss, stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if m.symmetric:
            # One write per view keeps the queue's order independent of the
            # device count: [all k(v2) of the global batch], [all k(v1)].
            new_queue = jaxmetric.enqueue(
                jaxmetric.enqueue(queue, k[:b], axis_name=AXIS), k[b:], axis_name=AXIS
            )
        else:
            new_queue = jaxmetric.enqueue(queue, k, axis_name=AXIS)
        new = parts.apply_update(
            config,
            state,
            tx,
            loss,
            grads,
            stats,
            target_params=target_params,
            target_batch_stats=target_stats,
            queue=new_queue,
        )
        return new, {"loss": loss}

    return step


def validate(config) -> None:
    fields.unit_interval("moco.momentum", config.moco.momentum)
    fields.positive("moco.temperature", config.moco.temperature)
    fields.boolean("moco.symmetric", config.moco.symmetric)


METHOD = Method(
    name="moco",
    title="MoCo v2",
    make_step=make_step,
    defaults={"queue_size": 4096, "momentum": 0.99, "temperature": 0.2, "symmetric": False},
    validate=validate,
    momentum_target=True,
    queue=True,
    random_queue=True,
)
