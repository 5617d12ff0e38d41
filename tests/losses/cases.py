"""The registry of loss cases: every public loss, how to call it, with which hyper-parameters.

Every cross-cutting test family (tests/losses/test_contract_*.py) draws its
cases from ``CASES``, and tests/losses/test_coverage.py fails, naming the
loss and the family, when a name of ``jaxmetric.losses.__all__`` has no case
here or a family leaves it out. To add a loss: add its cases below (its
kind says how it is called; a case runs in every family unless ``families``
says otherwise; the first case of a loss is its primary case), then its
NumPy-loop reference tests in tests/losses/test_<module>.py.

A case is one public loss with representative hyper-parameters. Its kind
says how it is called:

- ``LABELS``: ``loss(embeddings, labels, **hyper)``;
- ``PARAMS``: ``loss(embeddings, labels, weights, **hyper)``, with a
  parameter pytree (proxies / class weights [C, D]) that the caller owns;
- ``MEMORY``: ``loss(embeddings, labels, memory, **hyper)``, with a
  ``jaxmetric.MemoryQueue`` of earlier embeddings and labels (XBM);
- ``TWO_VIEW``: ``loss(z1, z2, **hyper)``, row i of both views one example;
- ``PAIR_LIST``: ``loss(anchors, positives, labels=..., **hyper)`` (N-pair);
- ``QUEUE``: ``loss(queries, keys, queue, <queue_mask>=..., **hyper)``,
  with a replicated queue / support set of earlier keys.

The families, and which cases they run (``Case.families``):

- ``"sharded"`` (test_contract_sharded): shard_map and pmap == one device;
  every case;
- ``"robustness"`` (test_contract_robustness): finite values and gradients on
  degenerate input, zero loss where nothing counts, padding masks; the
  primary cases and the variants that change what can go wrong (metrics,
  normalisation, mining, soft hinges, sharp alpha, no mining);
- ``"properties"`` (test_contract_properties): hypothesis, 200 examples
  each; the primary cases and the blockwise paths;
- ``"bad_inputs"`` (test_contract_bad_inputs): ValueErrors naming the
  argument; the primary case of every loss (the table comes from its
  signature).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import jaxmetric as jm
from jaxmetric import losses

LABELS = "labels"
PARAMS = "params"
MEMORY = "memory"
TWO_VIEW = "two_view"
PAIR_LIST = "pair_list"
QUEUE = "queue"
KINDS = (LABELS, PARAMS, MEMORY, TWO_VIEW, PAIR_LIST, QUEUE)
# The kinds whose second argument is the labels.
LABELLED = (LABELS, PARAMS, MEMORY)

SHARDED, ROBUSTNESS, PROPERTIES, BAD_INPUTS = FAMILIES = (
    "sharded",
    "robustness",
    "properties",
    "bad_inputs",
)
_S = frozenset({SHARDED})
_SR = frozenset({SHARDED, ROBUSTNESS})
_SP = frozenset({SHARDED, PROPERTIES})
_SRP = frozenset({SHARDED, ROBUSTNESS, PROPERTIES})
_R = frozenset({ROBUSTNESS})


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: usable as a cache key
class Case:
    """One public loss with representative hyper-parameters.

    Attributes:
      name: the case id (test ids use it).
      loss: the public name in ``jaxmetric.losses.__all__``.
      kind: how the loss is called (see the module docstring).
      hyper: keyword hyper-parameters.
      families: the families that run this case (besides "bad_inputs",
        which runs the primary case of every loss).
      labels: PAIR_LIST only: pass the labels (rows of one class are not negatives).
      queue_mask: QUEUE only: the keyword that takes the queue's validity
        mask ("queue_mask", "support_mask"), or None to pass none.
      temperature: the loss takes a ``temperature`` (the robustness and
        property families set it); None: read from the signature.
      zero_without_positive: the loss (and its gradient) is 0 when no valid
        anchor has a positive pair.
      zero_without_negative: the same, when no valid anchor has a negative.
      grad_first / grad_second: the gradient reaches the first / the second
        (non-label) argument; the others carry stop-gradients.
      nonnegative: the value is >= 0 (SimSiam's -cos is not).
      grad_rtol: relative tolerance of the gradient comparisons (sharded vs
        one device, padded vs compact), for cases whose gradients are large.
    """

    name: str
    loss: str
    kind: str
    hyper: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    families: frozenset[str] = _SRP
    labels: bool = False
    queue_mask: str | None = None
    temperature: bool | None = None
    zero_without_positive: bool = False
    zero_without_negative: bool = False
    grad_first: bool = True
    grad_second: bool = False
    nonnegative: bool = True
    grad_rtol: float = 0.0

    def __post_init__(self):
        assert self.kind in KINDS, self.kind
        assert self.families <= set(FAMILIES), self.families

    def __repr__(self) -> str:
        return self.name

    @property
    def fn(self):
        return getattr(losses, self.loss)

    @property
    def takes_temperature(self) -> bool:
        if self.temperature is not None:
            return self.temperature
        return "temperature" in inspect.signature(self.fn).parameters

    @property
    def labelled(self) -> bool:
        """The second argument is the labels."""
        return self.kind in LABELLED

    @property
    def uses_second(self) -> bool:
        """The loss takes a second array of embeddings (another view, keys, positives)."""
        return self.kind in (TWO_VIEW, PAIR_LIST, QUEUE)

    def call(
        self,
        first,
        second=None,
        batch_labels=None,
        *,
        weights=None,
        queue=None,
        queue_mask=None,
        memory=None,
        temperature=None,
        **kwargs,
    ):
        """Calls the loss on the arguments its kind takes (the others are ignored).

        ``batch_labels`` are the labels of the batch (the second argument of a
        labelled kind, the ``labels`` of a PAIR_LIST case that uses them).

        ``temperature`` (when not None and the loss takes one) overrides the
        case's; ``kwargs`` (mask, axis_name, or any hyper-parameter) override
        the case's hyper-parameters.
        """
        kw = {**self.hyper, **kwargs}
        if temperature is not None and self.takes_temperature:
            kw["temperature"] = temperature
        fn = self.fn
        if self.kind == LABELS:
            return fn(first, batch_labels, **kw)
        if self.kind == PARAMS:
            return fn(first, batch_labels, weights, **kw)
        if self.kind == MEMORY:
            return fn(first, batch_labels, memory, **kw)
        if self.kind == TWO_VIEW:
            return fn(first, second, **kw)
        if self.kind == PAIR_LIST:
            kw.setdefault("labels", batch_labels if self.labels else None)
            return fn(first, second, **kw)
        if self.queue_mask is not None and queue_mask is not None:
            kw.setdefault(self.queue_mask, queue_mask)
        return fn(first, second, queue, **kw)


def _triplet(name, families=_SRP, **hyper):
    return Case(
        name,
        "triplet_margin_loss",
        LABELS,
        hyper,
        families,
        zero_without_positive=True,
        zero_without_negative=True,
    )


CASES: tuple[Case, ...] = (
    # --- triplet -------------------------------------------------------------
    *(_triplet(f"triplet_{m}", mining=m) for m in jm.mining.TRIPLET_MINING),
    *(
        _triplet(f"triplet_{m}_margin0.3", _S, mining=m, margin=0.3)
        for m in jm.mining.TRIPLET_MINING
    ),
    *(
        _triplet(f"triplet_{m}_cosine", _SR, mining=m, metric="cosine")
        for m in jm.mining.TRIPLET_MINING
    ),
    _triplet("triplet_soft_raw", mining="batch_hard", soft=True, normalize=False),
    _triplet("triplet_sq_raw", _SR, metric="squared_euclidean", normalize=False),
    dataclasses.replace(
        _triplet(
            "triplet_sq_raw_sum", _SP, metric="squared_euclidean", normalize=False, reduction="sum"
        ),
        grad_rtol=1e-5,  # a sum of raw squared distances: gradients in the hundreds
    ),
    _triplet(
        "triplet_soft_batch_hard_sq",
        _S,
        mining="batch_hard",
        soft=True,
        metric="squared_euclidean",
        normalize=False,
    ),
    _triplet(
        "triplet_semi_hard_sum_cosine", _S, mining="semi_hard", reduction="sum", metric="cosine"
    ),
    # --- contrastive -----------------------------------------------------------
    Case("contrastive", "contrastive_loss", LABELS),
    Case(
        "contrastive_margins",
        "contrastive_loss",
        LABELS,
        {"pos_margin": 0.1, "neg_margin": 0.9},
        _S,
    ),
    Case("contrastive_mean", "contrastive_loss", LABELS, {"reduction": "mean"}, _S),
    Case(
        "contrastive_cosine_raw",
        "contrastive_loss",
        LABELS,
        {"metric": "cosine", "normalize": False},
        _SR,
    ),
    # --- angular -----------------------------------------------------------------
    Case(
        "angular",
        "angular_loss",
        LABELS,
        zero_without_positive=True,
        zero_without_negative=True,
    ),
    # --- NT-Xent, SupCon, SimCLR ---------------------------------------------------
    Case("ntxent", "ntxent_loss", LABELS, {"temperature": 0.1}, zero_without_positive=True),
    Case(
        "ntxent_blocks",
        "ntxent_loss",
        LABELS,
        {"temperature": 0.1, "block_size": 2},
        _SP,
        zero_without_positive=True,
    ),
    Case("supcon", "supcon_loss", LABELS, {"temperature": 0.2}, zero_without_positive=True),
    Case(
        "supcon_blocks",
        "supcon_loss",
        LABELS,
        {"temperature": 0.2, "block_size": 2},
        _SP,
        zero_without_positive=True,
    ),
    Case("simclr", "simclr_loss", TWO_VIEW, {"temperature": 0.2}, grad_second=True),
    Case(
        "simclr_blocks",
        "simclr_loss",
        TWO_VIEW,
        {"temperature": 0.2, "block_size": 2},
        _SP,
        grad_second=True,
    ),
    # --- multi-similarity, circle, lifted, soft nearest neighbour -------------------
    Case("multi_similarity", "multi_similarity_loss", LABELS),
    Case("multi_similarity_nomine", "multi_similarity_loss", LABELS, {"epsilon": None}, _SR),
    Case(
        "multi_similarity_beta10",
        "multi_similarity_loss",
        LABELS,
        {"beta": 10.0, "epsilon": 0.3},
        _S,
    ),
    Case(
        "circle",
        "circle_loss",
        LABELS,
        zero_without_positive=True,
        zero_without_negative=True,
    ),
    Case(
        "circle_gamma16",
        "circle_loss",
        LABELS,
        {"gamma": 16.0},
        _S,
        zero_without_positive=True,
        zero_without_negative=True,
    ),
    Case(
        "lifted",
        "lifted_structure_loss",
        LABELS,
        zero_without_positive=True,
        zero_without_negative=True,
    ),
    Case(
        "generalized_lifted",
        "generalized_lifted_structure_loss",
        LABELS,
        zero_without_positive=True,
        zero_without_negative=True,
    ),
    Case(
        "snn",
        "soft_nearest_neighbor_loss",
        LABELS,
        {"temperature": 0.5},
        _SRP,
        zero_without_positive=True,
    ),
    Case("margin", "margin_loss", LABELS, zero_without_positive=True, zero_without_negative=True),
    # --- proxies and class weights ---------------------------------------------------
    Case("proxy_anchor", "proxy_anchor_loss", PARAMS),
    Case("proxy_anchor_alpha8", "proxy_anchor_loss", PARAMS, {"alpha": 8.0}, _S),
    Case("proxy_anchor_alpha200", "proxy_anchor_loss", PARAMS, {"alpha": 200.0}, _R),
    Case("proxy_nca", "proxy_nca_loss", PARAMS, {"temperature": 0.3}),
    Case("arcface", "arcface_loss", PARAMS),
    Case("arcface_scale8", "arcface_loss", PARAMS, {"scale": 8.0}, _S),
    Case("cosface", "cosface_loss", PARAMS),
    Case("cosface_scale8", "cosface_loss", PARAMS, {"scale": 8.0}, _S),
    Case("normalized_softmax", "normalized_softmax_loss", PARAMS),
    # K centres per class in [C * K, D] weights: the primary cases (K = 3, the
    # bad-input family only) fit that family's 3 weight rows, the others the 4
    # (robustness, properties) and 16 (sharded) rows of the other families.
    Case("subcenter_arcface_k3", "subcenter_arcface_loss", PARAMS, {"sub_centers": 3}, frozenset()),
    Case("subcenter_arcface", "subcenter_arcface_loss", PARAMS, {"sub_centers": 2}),
    Case("soft_triple_k3", "soft_triple_loss", PARAMS, {"centers_per_class": 3}, frozenset()),
    Case("soft_triple", "soft_triple_loss", PARAMS, {"centers_per_class": 2}),
    # --- cross-batch memory ------------------------------------------------------------
    Case("xbm_contrastive", "xbm_loss", MEMORY),
    Case("xbm_multi_similarity", "xbm_loss", MEMORY, {"loss": "multi_similarity"}, _SR),
    Case(
        "xbm_multi_similarity_eps0.3",
        "xbm_loss",
        MEMORY,
        {"loss": "multi_similarity", "epsilon": 0.3},
        _S,
    ),
    # Not 0 without a positive in the batch: the memory may hold one.
    Case(
        "xbm_supcon",
        "xbm_loss",
        MEMORY,
        {"loss": "supcon", "temperature": 0.2},
        _SP,
        temperature=True,
    ),
    # --- N-pair ---------------------------------------------------------------------------
    Case("npair", "npair_loss", PAIR_LIST, {"l2_reg": 0.1}, labels=True, grad_second=True),
    Case(
        "npair_reg0.01_t0.5",
        "npair_loss",
        PAIR_LIST,
        {"l2_reg": 0.01, "temperature": 0.5},
        _S,
        labels=True,
        grad_second=True,
    ),
    Case("npair_normalized", "npair_loss", PAIR_LIST, {"normalize": True}, grad_second=True),
    # --- MoCo, NNCLR: a replicated queue of earlier keys ---------------------------------
    Case("moco", "moco_loss", QUEUE, families=_SR),
    Case("moco_queue_mask", "moco_loss", QUEUE, families=_SP, queue_mask="queue_mask"),
    Case("moco_blocks", "moco_loss", QUEUE, {"block_size": 2}, _SP),
    Case(
        "nnclr",
        "nnclr_loss",
        QUEUE,
        queue_mask="support_mask",
        grad_first=False,  # the support neighbour of z1 carries no gradient
        grad_second=True,
    ),
    Case(
        "nnclr_t0.2",
        "nnclr_loss",
        QUEUE,
        {"temperature": 0.2},  # every support row valid
        _SR,
        grad_first=False,
        grad_second=True,
    ),
    # --- non-contrastive SSL and MoCo v3 -----------------------------------------------
    Case("byol", "byol_loss", TWO_VIEW),
    Case("simsiam", "simsiam_loss", TWO_VIEW, nonnegative=False),
    Case("barlow_twins", "barlow_twins_loss", TWO_VIEW, grad_second=True),
    Case(
        "barlow_twins_lambda0.05",
        "barlow_twins_loss",
        TWO_VIEW,
        {"lambda_offdiag": 0.05},
        _S,
        grad_second=True,
    ),
    Case("vicreg", "vicreg_loss", TWO_VIEW, grad_second=True),
    Case("mocov3", "mocov3_loss", TWO_VIEW, {"temperature": 0.2}),
)

BY_NAME: dict[str, Case] = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"


def primary(loss: str) -> Case:
    """The first (plainest) case of ``loss``."""
    return next(case for case in CASES if case.loss == loss)


def losses_with_cases() -> list[str]:
    return sorted({case.loss for case in CASES})


def for_family(family: str) -> list[Case]:
    """The cases a family runs (its parametrisation)."""
    assert family in FAMILIES, family
    if family == BAD_INPUTS:
        return [primary(loss) for loss in losses_with_cases()]
    return [case for case in CASES if family in case.families]


def ids(cases) -> list[str]:
    return [case.name for case in cases]
