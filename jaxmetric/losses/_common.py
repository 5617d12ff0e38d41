"""Pieces shared by the label-based losses: input checks, gathering, masked LSE."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmetric import _checks, mining, parallel
from jaxmetric.distances import l2_normalize

# Stand-in for log(0) that keeps values and gradients finite (an all-masked
# log-sum-exp would give -inf, and -inf - -inf = NaN in the backward pass).
NEG_LARGE = -1e9


class Batch(NamedTuple):
    """A local batch of anchors and the (globally gathered) candidates."""

    anchors: jax.Array  # [b, D] float32
    labels: jax.Array  # [b] int32
    mask: jax.Array  # [b] bool
    candidates: jax.Array  # [M, D], M = b * num_devices
    candidate_labels: jax.Array  # [M]
    candidate_mask: jax.Array  # [M]
    anchor_index: jax.Array  # [b] column of each anchor among the candidates

    def pair_masks(self) -> tuple[jax.Array, jax.Array]:
        return mining.pair_masks(
            self.labels,
            self.candidate_labels,
            anchor_index=self.anchor_index,
            mask=self.mask,
            reference_mask=self.candidate_mask,
        )


def labelled_batch(
    embeddings: jax.Array,
    labels: jax.Array,
    mask: jax.Array | None,
    axis_name: str | None,
    *,
    normalize: bool,
) -> Batch:
    """Checks the inputs of a label-based loss and gathers its candidates."""
    embeddings = _checks.check_embeddings(embeddings)
    batch = embeddings.shape[0]
    labels = _checks.check_labels(labels, batch)
    mask = _checks.check_mask(mask, batch)
    if normalize:
        embeddings = l2_normalize(embeddings)
    return Batch(
        anchors=embeddings,
        labels=labels,
        mask=mask,
        candidates=parallel.gather(embeddings, axis_name),
        candidate_labels=parallel.gather(labels, axis_name),
        candidate_mask=parallel.gather(mask, axis_name),
        anchor_index=parallel.anchor_index(batch, axis_name),
    )


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
