"""Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two
views' projections, over the global batch, towards the identity."""

from __future__ import annotations

import jaxmetric
from jaxmetric.train import fields
from jaxmetric.train.methods import parts
from jaxmetric.train.methods.base import Method
from jaxmetric.train.state import AXIS


def make_step(config, graphdef, tx):
    lam = config.barlow_twins.lambda_offdiag

    def loss_of(z1, z2):
        return jaxmetric.barlow_twins_loss(z1, z2, lambda_offdiag=lam, axis_name=AXIS)

    return parts.paired_views_step(config, graphdef, tx, loss_of)


def validate(config) -> None:
    fields.non_negative("barlow_twins.lambda_offdiag", config.barlow_twins.lambda_offdiag)


METHOD = Method(
    name="barlow_twins",
    title="Barlow Twins",
    make_step=make_step,
    defaults={"lambda_offdiag": 5e-3},
    validate=validate,
    grad_cache=True,
)
