"""Loss kernels: pure functions of arrays, one module per family."""

from jaxmetric.losses.angular import angular_loss
from jaxmetric.losses.moco import moco_loss
from jaxmetric.losses.npair import npair_loss
from jaxmetric.losses.ntxent import ntxent_loss, simclr_loss
from jaxmetric.losses.pair import contrastive_loss
from jaxmetric.losses.triplet import triplet_margin_loss

__all__ = [
    "angular_loss",
    "contrastive_loss",
    "moco_loss",
    "npair_loss",
    "ntxent_loss",
    "simclr_loss",
    "triplet_margin_loss",
]
