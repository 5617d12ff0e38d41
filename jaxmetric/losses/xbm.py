"""Cross-batch memory (XBM): a labelled queue as extra candidates of pair losses."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import l2_normalize, pairwise_distances
from jaxmetric.losses import _common
from jaxmetric.losses.circle import _circle_terms, circle_loss
from jaxmetric.losses.lifted import _lifted_terms, lifted_structure_loss
from jaxmetric.losses.multi_similarity import _check_hyper as _check_ms
from jaxmetric.losses.multi_similarity import _multi_similarity_terms, multi_similarity_loss
from jaxmetric.losses.pair import contrastive_loss
from jaxmetric.losses.soft_nearest_neighbor import _snn_terms, soft_nearest_neighbor_loss
from jaxmetric.losses.supcon import _supcon_terms, supcon_loss
from jaxmetric.queue import MemoryQueue


def _contrastive_value(batch, axis_name, *, pos_margin, neg_margin):
    dist = pairwise_distances(batch.anchors, batch.candidates, metric="euclidean")
    pos, neg = batch.pair_masks()
    pos_part = parallel.reduce_losses(
        jax.nn.relu(dist - pos_margin), pos, "mean_nonzero", axis_name
    )
    neg_part = parallel.reduce_losses(
        jax.nn.relu(neg_margin - dist), neg, "mean_nonzero", axis_name
    )
    return pos_part + neg_part


def _per_anchor(terms):
    def value(batch, axis_name, **hyper):
        losses, valid = terms(batch, **hyper)
        return parallel.reduce_losses(losses, valid, "mean", axis_name)

    return value


def _check_margins(pos_margin, neg_margin):
    _checks.check_non_negative(pos_margin, "pos_margin")
    _checks.check_non_negative(neg_margin, "neg_margin")


def _check_multi_similarity(alpha, beta, base, epsilon):
    del base
    _check_ms(alpha, beta, epsilon)


def _check_circle(m, gamma):
    _checks.check_non_negative(m, "m")
    _checks.check_positive(gamma, "gamma")


def _check_temperature(temperature):
    _checks.check_positive(temperature, "temperature")


# name: (value(batch, axis_name, **hyper), check(**hyper), the stand-alone loss
# (whose keyword defaults are the defaults here), whether rows are L2-normalised).
_FAMILIES = {
    "contrastive": (_contrastive_value, _check_margins, contrastive_loss, True),
    "multi_similarity": (
        _per_anchor(_multi_similarity_terms),
        _check_multi_similarity,
        multi_similarity_loss,
        True,
    ),
    "circle": (_per_anchor(_circle_terms), _check_circle, circle_loss, True),
    "supcon": (_per_anchor(_supcon_terms), _check_temperature, supcon_loss, True),
    "lifted_structure": (
        _per_anchor(_lifted_terms),
        _check_margins,
        lifted_structure_loss,
        True,
    ),
    "soft_nearest_neighbor": (
        _per_anchor(_snn_terms),
        _check_temperature,
        soft_nearest_neighbor_loss,
        False,
    ),
}
XBM_LOSSES = tuple(_FAMILIES)


def _hyper_params(name: str, kwargs: dict) -> dict:
    """The family's hyper-parameters: the stand-alone loss's defaults, updated by kwargs."""
    _, check, reference, _ = _FAMILIES[name]
    names = inspect.signature(check).parameters
    params = inspect.signature(reference).parameters
    for key in kwargs:
        if key not in names:
            raise ValueError(
                f"Unknown hyper-parameter `{key}` for loss={name!r}; expected one of "
                f"{', '.join(map(repr, names))}."
            )
    hyper = {key: kwargs.get(key, params[key].default) for key in names}
    check(**hyper)
    return hyper


def xbm_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    memory: MemoryQueue,
    *,
    loss: str = "contrastive",
    mask: jax.Array | None = None,
    axis_name: str | None = None,
    **hyper_params,
) -> jax.Array:
    r"""A pair-based loss whose candidates include a cross-batch memory.

    Anchors are the (local) rows of the batch; candidates are the rows of the
    (global) batch followed by the valid slots of ``memory``, a labelled
    ``jaxmetric.queue.MemoryQueue`` of past embeddings:

    .. math::
        \text{candidates} = [\,x_1, \dots, x_B \,\|\, m_1, \dots, m_K\,],
        \qquad L = \mathcal{L}_{\text{loss}}(\text{anchors} = x,\
            \text{candidates})

    with every convention of the named loss (pairs (i, i) excluded, its
    reduction over the anchors or pairs). The memory carries no gradient.
    Call it before ``jaxmetric.enqueue(memory, embeddings, labels,
    axis_name=...)`` so the current batch is not also in the memory:

    .. code-block:: python

        loss = jaxmetric.losses.xbm_loss(emb, labels, memory, loss="multi_similarity")
        memory = jaxmetric.enqueue(memory, emb, labels, axis_name=axis_name)

    PML's ``CrossBatchMemory(loss, D, memory_size)`` enqueues the batch first
    and then pairs the batch with the whole memory, leaving out each row's
    pair with itself: the same candidate set. Its ``miner`` argument is
    ``loss="multi_similarity", epsilon=0.1`` here (the miner sees the memory
    too).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16.
      labels: [B] integer labels.
      memory: a ``MemoryQueue`` with ``embeddings`` [K, D], ``labels`` [K] and
        ``valid`` [K] (invalid slots are never candidates); replicated under
        ``axis_name``.
      loss: one of ``XBM_LOSSES``: "contrastive" (euclidean on normalised
        rows, PML's convention: positive and negative terms each averaged
        over their non-zero pairs), "multi_similarity", "circle", "supcon",
        "lifted_structure", "soft_nearest_neighbor".
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; the batch part of the candidates is gathered
        from all devices.
      **hyper_params: the named loss's hyper-parameters (e.g. ``epsilon``,
        ``temperature``, ``pos_margin``); defaults as the stand-alone loss.

    Returns:
      A float32 scalar; 0.0 (zero gradient) when nothing counts.

    Example:
      >>> import jax, jax.numpy as jnp, jaxmetric
      >>> memory = jaxmetric.init_queue(8, 4)  # empty: same as no memory
      >>> x = jax.random.normal(jax.random.key(0), (4, 4))
      >>> y = jnp.array([0, 0, 1, 1])
      >>> a = jaxmetric.losses.xbm_loss(x, y, memory, loss="supcon")
      >>> bool(abs(a - jaxmetric.supcon_loss(x, y)) < 1e-6)
      True

    Reference:
      Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020.
    """
    _checks.check_choice(loss, XBM_LOSSES, "loss")
    hyper = _hyper_params(loss, hyper_params)
    value, _, _, normalize = _FAMILIES[loss]
    batch = _common.labelled_batch(embeddings, labels, mask, axis_name, normalize=normalize)
    mem = _checks.check_embeddings(memory.embeddings, "memory.embeddings")
    if mem.shape[1] != batch.anchors.shape[1]:
        raise ValueError(
            f"`memory.embeddings` has dimension {mem.shape[1]} but `embeddings` have "
            f"{batch.anchors.shape[1]}."
        )
    mem_labels = _checks.check_labels(memory.labels, mem.shape[0], "memory.labels")
    mem_valid = _checks.check_mask(memory.valid, mem.shape[0], "memory.valid")
    mem = jax.lax.stop_gradient(mem.astype(batch.anchors.dtype))
    if normalize:
        mem = l2_normalize(mem)
    batch = batch._replace(
        candidates=jnp.concatenate([batch.candidates, mem]),
        candidate_labels=jnp.concatenate([batch.candidate_labels, mem_labels]),
        candidate_mask=jnp.concatenate([batch.candidate_mask, mem_valid]),
    )
    return value(batch, axis_name, **hyper)
