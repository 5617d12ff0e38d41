"""SimSiam (Chen & He 2021): each view's prediction against the other view's
projection behind a stop-gradient, no momentum encoder:
L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2."""

from __future__ import annotations

import jaxmetric
from jaxmetric.train.methods import parts
from jaxmetric.train.methods.base import Method
from jaxmetric.train.state import AXIS


def make_step(config, graphdef, tx):
    def loss_of(z1, z2, p1, p2):
        return 0.5 * jaxmetric.simsiam_loss(p1, z2, axis_name=AXIS) + 0.5 * (
            jaxmetric.simsiam_loss(p2, z1, axis_name=AXIS)
        )

    return parts.paired_views_step(config, graphdef, tx, loss_of, predict=True)


METHOD = Method(
    name="simsiam",
    title="SimSiam",
    make_step=make_step,
    defaults={},
    needs_predictor=True,
)
