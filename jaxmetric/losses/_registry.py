"""The label-based losses, by public name: every loss with the signature
``(embeddings, labels, *, <hyper>, mask=None, axis_name=None)``.

Each value is the loss's ``_common.LabelLoss`` spec: ``spec.loss`` is the
public function, ``spec.hyper_params`` its hyper-parameters and defaults,
``spec.resolve(hyper)`` fills in the defaults and checks them (a
``ValueError`` naming the argument), and ``spec.check`` / ``spec.terms`` /
``spec.reduce`` compute it from a ``_common.Batch``, whose candidates may be
extended (``xbm_loss`` appends its memory). ``jaxmetric.losses`` exports the
dict as ``LABEL_LOSSES``; a new label-based loss adds its module here.
"""

from __future__ import annotations

from jaxmetric.losses import (
    angular,
    circle,
    contrastive,
    lifted,
    margin,
    multi_similarity,
    ntxent,
    soft_nearest_neighbor,
    supcon,
    triplet,
)
from jaxmetric.losses._common import LabelLoss

_MODULES = (
    angular,
    circle,
    contrastive,
    lifted,
    margin,
    multi_similarity,
    ntxent,
    soft_nearest_neighbor,
    supcon,
    triplet,
)

# A module with several label losses lists them in ``SPECS``.
LABEL_LOSSES: dict[str, LabelLoss] = {
    spec.name: spec for module in _MODULES for spec in getattr(module, "SPECS", (module.SPEC,))
}
