"""VICReg (Bardes et al. 2022): invariance between the views, variance and
covariance regularisers on each, over the global batch."""

from __future__ import annotations

import jaxmetric
from jaxmetric.train import fields
from jaxmetric.train.methods import parts
from jaxmetric.train.methods.base import Method
from jaxmetric.train.state import AXIS

WEIGHTS = ("sim_weight", "var_weight", "cov_weight")


def make_step(config, graphdef, tx):
    weights = {name: config.vicreg[name] for name in WEIGHTS}

    def loss_of(z1, z2):
        return jaxmetric.vicreg_loss(z1, z2, axis_name=AXIS, **weights)

    return parts.paired_views_step(config, graphdef, tx, loss_of)


def validate(config) -> None:
    for name in WEIGHTS:
        fields.non_negative(f"vicreg.{name}", config.vicreg[name])


METHOD = Method(
    name="vicreg",
    title="VICReg",
    make_step=make_step,
    defaults={"sim_weight": 25.0, "var_weight": 25.0, "cov_weight": 1.0},
    validate=validate,
    grad_cache=True,
)
