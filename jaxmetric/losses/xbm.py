"""Cross-batch memory (XBM): a labelled queue as extra candidates of any label-based loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks
from jaxmetric.distances import l2_normalize
from jaxmetric.losses import _common
from jaxmetric.losses._registry import LABEL_LOSSES
from jaxmetric.memory import MemoryQueue

# Every label-based loss, by its short name ("supcon") and by its public name
# ("supcon_loss").
_SPECS = {
    **{name.removesuffix("_loss"): spec for name, spec in LABEL_LOSSES.items()},
    **LABEL_LOSSES,
}
XBM_LOSSES = tuple(name.removesuffix("_loss") for name in LABEL_LOSSES)


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
    r"""A label-based loss whose candidates include a cross-batch memory.

    Anchors are the (local) rows of the batch; candidates are the rows of the
    (global) batch followed by the valid slots of ``memory``, a labelled
    ``jaxmetric.memory.MemoryQueue`` of past embeddings:

    .. math::
        \text{candidates} = [\,x_1, \dots, x_B \,\|\, m_1, \dots, m_K\,],
        \qquad L = \mathcal{L}_{\text{loss}}(\text{anchors} = x,\
            \text{candidates})

    with every convention of the named loss (pairs (i, i) excluded, its
    mining, its reduction over the anchors, pairs or triplets): the loss's
    own ``terms`` and reduction run on the extended candidates. The memory
    carries no gradient.
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
      loss: any label-based loss, by its name in
        ``jaxmetric.losses.LABEL_LOSSES`` ("supcon_loss") or without the
        "_loss" (``XBM_LOSSES``): "angular", "circle", "contrastive" (the
        default; euclidean on normalised rows, positive and negative terms
        each averaged over their non-zero pairs, PML's convention),
        "generalized_lifted_structure", "lifted_structure", "margin",
        "multi_similarity", "ntxent", "soft_nearest_neighbor", "supcon",
        "triplet_margin" (every mining).
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; the batch part of the candidates is gathered
        from all devices.
      **hyper_params: the named loss's hyper-parameters (e.g. ``epsilon``,
        ``temperature``, ``pos_margin``, ``mining``); defaults as the
        stand-alone loss. Its ``normalize`` (where it has one) applies to the
        memory too.

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
    if loss not in _SPECS:
        raise ValueError(
            f"Unknown `loss` {loss!r}; expected one of {', '.join(map(repr, XBM_LOSSES))} "
            "(or the function's name, e.g. 'supcon_loss')."
        )
    spec = _SPECS[loss]
    hyper = spec.resolve(hyper_params)
    normalize = spec.normalizes(hyper)
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
    return spec.evaluate(batch, axis_name, hyper)
