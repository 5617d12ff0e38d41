"""Loss kernels: pure functions of arrays, one module per family.

``LABEL_LOSSES`` maps the name of every label-based loss (``(embeddings,
labels, *, <hyper>, mask=None, axis_name=None)``) to its spec; see
``jaxmetric.losses._registry``.
"""

from jaxmetric.losses._registry import LABEL_LOSSES as LABEL_LOSSES
from jaxmetric.losses.angular import angular_loss
from jaxmetric.losses.circle import circle_loss
from jaxmetric.losses.contrastive import contrastive_loss
from jaxmetric.losses.lifted import generalized_lifted_structure_loss, lifted_structure_loss
from jaxmetric.losses.margin import margin_loss
from jaxmetric.losses.margin_softmax import (
    arcface_loss,
    cosface_loss,
    normalized_softmax_loss,
    subcenter_arcface_loss,
)
from jaxmetric.losses.moco import moco_loss, mocov3_loss
from jaxmetric.losses.multi_similarity import multi_similarity_loss
from jaxmetric.losses.nnclr import nnclr_loss
from jaxmetric.losses.nnclr import support_nearest_neighbors as support_nearest_neighbors
from jaxmetric.losses.noncontrastive import (
    barlow_twins_loss,
    byol_loss,
    simsiam_loss,
    vicreg_loss,
)
from jaxmetric.losses.npair import npair_loss
from jaxmetric.losses.ntxent import ntxent_loss, simclr_loss
from jaxmetric.losses.proxy import proxy_anchor_loss, proxy_nca_loss
from jaxmetric.losses.soft_nearest_neighbor import soft_nearest_neighbor_loss
from jaxmetric.losses.soft_triple import soft_triple_loss
from jaxmetric.losses.supcon import supcon_loss
from jaxmetric.losses.triplet import triplet_margin_loss
from jaxmetric.losses.xbm import xbm_loss

# The loss functions (tests and docs iterate over it); LABEL_LOSSES and
# support_nearest_neighbors are exported beside them.
__all__ = [
    "angular_loss",
    "arcface_loss",
    "barlow_twins_loss",
    "byol_loss",
    "circle_loss",
    "contrastive_loss",
    "cosface_loss",
    "generalized_lifted_structure_loss",
    "lifted_structure_loss",
    "margin_loss",
    "moco_loss",
    "mocov3_loss",
    "multi_similarity_loss",
    "nnclr_loss",
    "normalized_softmax_loss",
    "npair_loss",
    "ntxent_loss",
    "proxy_anchor_loss",
    "proxy_nca_loss",
    "simclr_loss",
    "simsiam_loss",
    "soft_nearest_neighbor_loss",
    "soft_triple_loss",
    "subcenter_arcface_loss",
    "supcon_loss",
    "triplet_margin_loss",
    "vicreg_loss",
    "xbm_loss",
]
