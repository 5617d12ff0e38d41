"""BYOL (Grill et al. 2020): the online network's prediction of each view
regresses the EMA target network's projection of the other view (symmetric
loss, eq. 2); the target's momentum follows a cosine schedule from
``byol.base_momentum`` to ``byol.final_momentum``."""

from __future__ import annotations

import jaxmetric
from jaxmetric.train.methods import parts
from jaxmetric.train.methods.base import Method
from jaxmetric.train.state import AXIS


def make_step(config, graphdef, tx):
    def loss_of(prediction, target):
        return jaxmetric.byol_loss(prediction, target, axis_name=AXIS)

    return parts.momentum_predictor_step(config, graphdef, tx, config.byol, loss_of)


METHOD = Method(
    name="byol",
    title="BYOL",
    make_step=make_step,
    defaults={"base_momentum": 0.99, "final_momentum": 1.0},
    validate=parts.momentum_fields("byol"),
    needs_predictor=True,
    momentum_target=True,
)
