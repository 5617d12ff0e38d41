"""Pieces shared by the losses against a [C, D] parameter (proxies, class weights)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import l2_normalize


def class_inputs(
    embeddings: jax.Array,
    labels: jax.Array,
    params: jax.Array,
    mask: jax.Array | None,
    name: str,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Checks the inputs; returns (rows [b, D], params [C, D], one_hot [b, C], valid [b]).

    Rows and params come back L2-normalised, in float32 (float64 under x64).

    ``valid`` [b]: rows that count, i.e. valid rows whose label is a class in
    ``[0, C)`` (a label outside that range has no proxy / weight row).
    """
    embeddings = _checks.check_embeddings(embeddings)
    batch, dim = embeddings.shape
    labels = _checks.check_labels(labels, batch)
    mask = _checks.check_mask(mask, batch)
    params = _checks.check_embeddings(params, name)
    if params.shape[1] != dim:
        raise ValueError(
            f"`{name}` must have shape [num_classes, {dim}] (the embedding dimension), "
            f"got {params.shape}."
        )
    params = params.astype(embeddings.dtype)
    num_classes = params.shape[0]
    one_hot = labels[:, None] == jnp.arange(num_classes)[None, :]
    valid = mask & (labels >= 0) & (labels < num_classes)
    return l2_normalize(embeddings), l2_normalize(params), one_hot, valid


def cross_entropy(
    logits: jax.Array, one_hot: jax.Array, valid: jax.Array, axis_name: str | None
) -> jax.Array:
    """Mean softmax cross-entropy [b, C] -> scalar over the valid rows of the global batch."""
    lse = jax.nn.logsumexp(logits, axis=1)
    target = jnp.sum(jnp.where(one_hot, logits, 0.0), axis=1)
    return parallel.reduce_losses(lse - target, valid, "mean", axis_name)
