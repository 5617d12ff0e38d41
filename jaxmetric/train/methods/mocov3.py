"""MoCo v3 (Chen, Xie & He 2021): online encoder + predictor gives the
queries, the momentum encoder (no predictor; cosine momentum schedule) the
keys; no queue, the other keys of the global batch are the negatives;
symmetric loss ctr(q1, k2) + ctr(q2, k1)."""

from __future__ import annotations

import jaxmetric
from jaxmetric.train import fields
from jaxmetric.train.methods import parts
from jaxmetric.train.methods.base import Method
from jaxmetric.train.state import AXIS


def make_step(config, graphdef, tx):
    c = config.mocov3

    def loss_of(queries, keys):
        return jaxmetric.mocov3_loss(queries, keys, temperature=c.temperature, axis_name=AXIS)

    return parts.momentum_predictor_step(config, graphdef, tx, c, loss_of)


def validate(config) -> None:
    parts.momentum_fields("mocov3")(config)
    fields.positive("mocov3.temperature", config.mocov3.temperature)


METHOD = Method(
    name="mocov3",
    title="MoCo v3",
    make_step=make_step,
    defaults={"temperature": 0.2, "base_momentum": 0.99, "final_momentum": 1.0},
    validate=validate,
    needs_predictor=True,
    momentum_target=True,
    grad_cache=True,
)
