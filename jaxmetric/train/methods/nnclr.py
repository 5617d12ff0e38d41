"""NNCLR (Dwibedi et al. 2021): the nearest neighbour of one view in a
support queue of earlier embeddings is the positive of the other view.

Each step: both views through the online network (one forward pass, BN
statistics over all 2N views, as SimCLR), predictions p = q(z) when the
model has a predictor (the paper's prediction head; else p = z), the
symmetric loss (nnclr_loss(z1, p2, S) + nnclr_loss(z2, p1, S)) / 2 with the
support set S = the queue, and then the queue receives z1 of the global
batch (no gradient), as the paper's Algorithm 1.
"""

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
    aug, temperature = config.augment, config.nnclr.temperature

    def step(state, x, y):
        del y
        b = x.shape[0]
        v1, v2 = parts.two_views(state, aug, x)
        queue = state.queue

        def loss_fn(params):
            z, p, stats = parts.forward_predict(
                graphdef, params, state.batch_stats, jnp.concatenate([v1, v2])
            )
            z1, z2, p1, p2 = z[:b], z[b:], p[:b], p[b:]

            def ctr(a, c):
                return jaxmetric.nnclr_loss(
                    a,
                    c,
                    queue.embeddings,
                    temperature=temperature,
                    support_mask=queue.valid,
                    axis_name=AXIS,
                )

            return 0.5 * (ctr(z1, p2) + ctr(z2, p1)), (stats, z1)

        (loss, (stats, z1)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_queue = jaxmetric.enqueue(
            queue, jax.lax.stop_gradient(l2_normalize(z1)), axis_name=AXIS
        )
        new = parts.apply_update(config, state, tx, loss, grads, stats, queue=new_queue)
        return new, {"loss": loss}

    return step


def validate(config) -> None:
    fields.positive("nnclr.temperature", config.nnclr.temperature)


METHOD = Method(
    name="nnclr",
    title="NNCLR",
    make_step=make_step,
    # The paper's support set holds 98,304 rows at batch 4,096 (24 batches);
    # a recipe sets a size that suits its dataset.
    defaults={"queue_size": 4096, "temperature": 0.1},
    validate=validate,
    queue=True,
)
