"""Pieces shared by the label-based losses: the batch, the loss spec, masked LSE.

Every label-based loss ``<name>(embeddings, labels, *, <hyper>, mask=None,
axis_name=None)`` is computed in one way, by ``label_loss``:

1. ``check(**hyper)``: trace-time checks of the hyper-parameters (a
   ``ValueError`` naming the argument);
2. ``labelled_batch``: the input checks, and the ``Batch`` of local anchors
   and globally gathered candidates;
3. ``terms(batch, **hyper) -> (losses, valid)``: the loss terms of the local
   anchors and which of them count, arrays of one shape (or matching tuples
   of them, for a loss whose parts reduce separately, as contrastive's);
4. ``reduce(losses, valid, axis_name, **hyper)``: the scalar of the global
   batch (by default the mean over the valid terms).

Composition, as PML, is handled here once for every label loss:
``reference_embeddings`` / ``reference_labels`` / ``reference_mask`` make
the candidates another (gathered) set (PML's ``ref_emb``), ``pairs=`` replace
the label-derived pair masks (``Batch.pair_masks``) and ``triplets=`` a
triplet loss's mining (PML's ``indices_tuple``); ``reduce_terms`` gives the
reductions of PML's reducers (``REDUCTIONS``; ``check_reduction`` checks
them). A loss offers these by taking the arguments and forwarding them.

A loss module holds these pieces and a ``LabelLoss`` spec naming them
(``SPEC``); its public function only forwards its arguments to
``label_loss(SPEC, ...)``. ``jaxmetric.losses.LABEL_LOSSES`` maps every
public name to its spec, so ``xbm_loss`` and the trainer can run any of them
(XBM appends its memory to the batch's candidates between steps 2 and 3).
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxmetric import _checks, mining, parallel

# Stand-in for log(0) that keeps values and gradients finite (an all-masked
# log-sum-exp would give -inf, and -inf - -inf = NaN in the backward pass).
NEG_LARGE = -1e9


class Batch(NamedTuple):
    """A local batch of anchors and the (globally gathered) candidates.

    ``pairs`` (given ``(positive_mask, negative_mask)`` [b, M]) replace the
    label-derived masks of ``pair_masks``; ``triplets`` (given
    ``mining.Triplets``) replace a triplet loss's mining. A loss whose
    ``value`` shortcut skips ``pair_masks`` must honour them itself.
    """

    anchors: jax.Array  # [b, D] float32
    labels: jax.Array  # [b] int32
    mask: jax.Array  # [b] bool
    candidates: jax.Array  # [M, D], M = b * num_devices (or the gathered reference)
    candidate_labels: jax.Array  # [M]
    candidate_mask: jax.Array  # [M]
    anchor_index: jax.Array  # [b] column of each anchor among the candidates; -1: none
    pairs: tuple[jax.Array, jax.Array] | None = None  # [b, M] bool each
    triplets: mining.Triplets | None = None  # [T] each

    def pair_masks(self) -> tuple[jax.Array, jax.Array]:
        """(positive, negative) [b, M]: the given ``pairs`` where valid, else from labels."""
        if self.pairs is not None:
            valid = self.mask[:, None] & self.candidate_mask[None, :]
            return self.pairs[0] & valid, self.pairs[1] & valid
        return mining.pair_masks(
            self.labels,
            self.candidate_labels,
            anchor_index=self.anchor_index,
            mask=self.mask,
            reference_mask=self.candidate_mask,
        )


def _check_pairs(pairs, shape: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    if not isinstance(pairs, tuple | list) or len(pairs) != 2:
        raise ValueError(
            "`pairs` must be a tuple (positive_mask, negative_mask) of [anchors, candidates] "
            f"bool arrays, got {type(pairs).__name__}."
        )
    out = []
    for name, m in zip(("positive", "negative"), pairs, strict=True):
        m = jnp.asarray(m)
        if m.shape != shape or m.dtype != jnp.bool_:
            raise ValueError(
                f"`pairs` ({name} mask) must be bool of shape {shape} (anchors, candidates), "
                f"got {m.dtype} {m.shape}."
            )
        out.append(jax.lax.stop_gradient(m))
    return out[0], out[1]


def _check_triplets(triplets) -> mining.Triplets:
    if not isinstance(triplets, tuple | list) or len(triplets) != 4:
        raise ValueError(
            "`triplets` must be a tuple (anchor_idx, positive_idx, negative_idx, valid) of "
            f"[T] arrays (jaxmetric.mining.Triplets), got {type(triplets).__name__}."
        )
    arrays = [jnp.asarray(t) for t in triplets]
    size = arrays[0].shape
    for name, t in zip(("anchor_idx", "positive_idx", "negative_idx"), arrays[:3], strict=True):
        if t.ndim != 1 or t.shape != size or not jnp.issubdtype(t.dtype, jnp.integer):
            raise ValueError(
                f"`triplets` ({name}) must be a 1-D integer array of the shape of anchor_idx "
                f"{size}, got {t.dtype} {t.shape}."
            )
    if arrays[3].shape != size or arrays[3].dtype != jnp.bool_:
        raise ValueError(
            f"`triplets` (valid) must be bool of shape {size}, got {arrays[3].dtype} "
            f"{arrays[3].shape}."
        )
    return mining.Triplets(*(t.astype(jnp.int32) for t in arrays[:3]), arrays[3])


def labelled_batch(
    embeddings: jax.Array,
    labels: jax.Array,
    mask: jax.Array | None,
    axis_name: str | None,
    *,
    normalize: bool,
    gather: bool = True,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    pairs: tuple[jax.Array, jax.Array] | None = None,
    triplets: mining.Triplets | None = None,
) -> Batch:
    """Checks the inputs of a label-based loss and gathers its candidates.

    The candidates are the batch, or ``reference_embeddings`` (with
    ``reference_labels`` and ``reference_mask``; no candidate is then an
    anchor, so no pair is left out as the anchor itself), gathered from every
    device under ``axis_name`` (``mining.anchors_and_candidates``).
    ``gather=False`` leaves the candidates local (the rows themselves), for a
    ring that passes them from device to device; ``anchor_index`` stays global.
    ``pairs`` / ``triplets``: checked and kept (see ``Batch``).
    """
    rows = mining.anchors_and_candidates(
        embeddings,
        labels,
        mask=mask,
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        axis_name=axis_name,
        normalize=normalize,
        gather=gather,
    )
    if pairs is not None:
        pairs = _check_pairs(pairs, (rows.anchors.shape[0], rows.candidates.shape[0]))
    if triplets is not None:
        triplets = _check_triplets(triplets)
    return Batch(*rows, pairs=pairs, triplets=triplets)


def mean_over_valid(losses: jax.Array, valid: jax.Array, axis_name: str | None, **_) -> jax.Array:
    """The default reduction: the mean of the valid terms of the global batch."""
    return parallel.reduce_losses(losses, valid, "mean", axis_name)


# The reductions of the pair and triplet losses, PML's reducers: MeanReducer,
# AvgNonZeroReducer, SumReducer, no reduction, ThresholdReducer.
REDUCTIONS = ("mean", "mean_nonzero", "sum", "none", "threshold")


def check_reduction(
    reduction: str, reduction_threshold: tuple[float | None, float | None] | None
) -> None:
    """``reduction`` one of ``REDUCTIONS``; ``reduction_threshold`` = (low, high)
    (either may be None, not both; low < high) exactly when it is "threshold"."""
    _checks.check_choice(reduction, REDUCTIONS, "reduction")
    if reduction != "threshold":
        if reduction_threshold is not None:
            raise ValueError(
                f"`reduction_threshold` is for reduction='threshold', got reduction={reduction!r}."
            )
        return
    ok = isinstance(reduction_threshold, tuple | list) and len(reduction_threshold) == 2
    if ok:
        low, high = reduction_threshold
        ok = (low is not None or high is not None) and all(
            v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))
            for v in (low, high)
        )
        ok = ok and (low is None or high is None or low < high)
    if not ok:
        raise ValueError(
            "`reduction_threshold` must be (low, high) with low < high (None: no bound on "
            f"that side, not both), got {reduction_threshold!r}."
        )


def reduce_terms(
    losses: jax.Array,
    valid: jax.Array,
    axis_name: str | None,
    *,
    reduction: str,
    reduction_threshold: tuple[float | None, float | None] | None = None,
    **_,
) -> jax.Array:
    """The valid terms of the global batch reduced by ``reduction``.

    "mean" (MeanReducer), "mean_nonzero" (sum over the number of terms > 0,
    AvgNonZeroReducer), "sum" (SumReducer), "none" (the local terms, 0 where
    not valid), "threshold" (ThresholdReducer(low, high): the mean over the
    terms with low < term < high; "mean_nonzero" is (0, None)). 0.0 with a
    zero gradient when nothing counts.
    """
    if reduction == "threshold":
        low, high = reduction_threshold
        if low is not None:
            valid = valid & (losses > low)
        if high is not None:
            valid = valid & (losses < high)
        reduction = "mean"
    return parallel.reduce_losses(losses, valid, reduction, axis_name)


@dataclasses.dataclass(frozen=True)
class LabelLoss:
    """How a label-based loss is computed from a ``Batch``.

    Attributes:
      loss: the public function; its keyword defaults are the defaults of the
        hyper-parameters.
      check: ``check(**hyper)``, keyword-only; its parameters are the loss's
        hyper-parameters (those ``terms``, ``reduce`` and ``value`` receive).
      terms: ``terms(batch, **hyper) -> (losses, valid)`` for the local anchors.
      reduce: ``reduce(losses, valid, axis_name, **hyper) -> value`` of the
        global batch; by default the mean over the valid terms
        (``reduce_terms`` for a loss with ``reduction`` hyper-parameters).
      value: optional ``value(batch, axis_name, **hyper)``, an exact shortcut
        for ``reduce(*terms(batch), ...)`` that does not form every term
        (the triplet loss's sorted hinge sums, NT-Xent's tiles).
      normalize: whether rows are L2-normalised before the loss (the memory of
        ``xbm_loss`` too); None: the ``normalize`` hyper-parameter says.
    """

    loss: Callable[..., jax.Array]
    check: Callable[..., None]
    terms: Callable[..., tuple[jax.Array, jax.Array]]
    reduce: Callable[..., jax.Array] = mean_over_valid
    value: Callable[..., jax.Array] | None = None
    normalize: bool | None = True

    @property
    def name(self) -> str:
        return self.loss.__name__

    @property
    def hyper_params(self) -> dict[str, Any]:
        """The hyper-parameters and their defaults, in ``check``'s order."""
        defaults = inspect.signature(self.loss).parameters
        return {name: defaults[name].default for name in inspect.signature(self.check).parameters}

    def resolve(self, hyper: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated by ``hyper``, checked; unknown names raise ValueError."""
        names = self.hyper_params
        for key in hyper:
            if key not in names:
                raise ValueError(
                    f"Unknown hyper-parameter `{key}` for loss={self.name!r}; expected one "
                    f"of {', '.join(map(repr, names))}."
                )
        resolved = {**names, **hyper}
        self.check(**resolved)
        return resolved

    def normalizes(self, hyper: Mapping[str, Any]) -> bool:
        return bool(hyper["normalize"]) if self.normalize is None else self.normalize

    def evaluate(self, batch: Batch, axis_name: str | None, hyper: Mapping[str, Any]):
        """The loss of a (checked) batch: ``value``, or ``reduce`` of ``terms``."""
        if self.value is not None:
            return self.value(batch, axis_name, **hyper)
        losses, valid = self.terms(batch, **hyper)
        return self.reduce(losses, valid, axis_name, **hyper)


def label_loss(
    spec: LabelLoss,
    embeddings: jax.Array,
    labels: jax.Array,
    mask: jax.Array | None,
    axis_name: str | None,
    *,
    reference_embeddings: jax.Array | None = None,
    reference_labels: jax.Array | None = None,
    reference_mask: jax.Array | None = None,
    pairs: tuple[jax.Array, jax.Array] | None = None,
    triplets: mining.Triplets | None = None,
    **hyper,
) -> jax.Array:
    """The body of every label-based loss: check, build the batch, terms, reduce.

    ``hyper`` holds every hyper-parameter of ``spec`` (the public function
    passes its own arguments); the keyword arguments are the batch's inputs
    beyond the rows (see ``labelled_batch``), which a loss forwards if it
    offers them.
    """
    spec.check(**hyper)
    batch = labelled_batch(
        embeddings,
        labels,
        mask,
        axis_name,
        normalize=spec.normalizes(hyper),
        reference_embeddings=reference_embeddings,
        reference_labels=reference_labels,
        reference_mask=reference_mask,
        pairs=pairs,
        triplets=triplets,
    )
    return spec.evaluate(batch, axis_name, hyper)


def masked_logsumexp(
    logits: jax.Array, where: jax.Array, axis: int = -1, *, include_zero: bool = False
) -> jax.Array:
    """log(sum_{where} exp(logits)) along ``axis``; NEG_LARGE where nothing counts.

    ``include_zero=True`` adds one exp(0) term: log(1 + sum exp(logits)).
    Values and gradients stay finite for any mask.
    """
    logits = jnp.where(where, logits, NEG_LARGE)
    shift = jnp.max(logits, axis=axis, keepdims=True)
    if include_zero:
        shift = jnp.maximum(shift, 0.0)
    shift = jax.lax.stop_gradient(shift)
    total = jnp.sum(jnp.where(where, jnp.exp(logits - shift), 0.0), axis=axis, keepdims=True)
    if include_zero:
        total = total + jnp.exp(-shift)
    nonzero = total > 0
    lse = shift + jnp.log(jnp.where(nonzero, total, 1.0))
    return jnp.squeeze(jnp.where(nonzero, lse, NEG_LARGE), axis=axis)


def batch_infonce(
    anchors: jax.Array,
    keys: jax.Array,
    mask: jax.Array,
    temperature: float,
    axis_name: str | None,
) -> jax.Array:
    """InfoNCE of each anchor against the keys of the global batch, its own
    key the positive: the mean over valid anchors of
    ``logsumexp_j(a_i . k_j / T) - a_i . k_i / T``, j over the valid keys of
    every device (MoCo v3, NNCLR). ``anchors`` and ``keys`` [b, D] are
    normalised by the caller, who also decides which carries gradient."""
    all_keys = parallel.gather(keys, axis_name)  # [M, D]
    all_mask = parallel.gather(mask, axis_name)  # [M]
    logits = anchors @ all_keys.T / temperature  # [b, M]
    # Anchor i's own key sits among the gathered ones (column anchor_index(i));
    # its logit is computed from the local copy.
    positive = jnp.sum(anchors * keys, axis=1) / temperature
    where = jnp.broadcast_to(all_mask[None, :], logits.shape)
    losses = masked_logsumexp(logits, where, axis=1) - positive
    return parallel.reduce_losses(losses, mask, "mean", axis_name)
