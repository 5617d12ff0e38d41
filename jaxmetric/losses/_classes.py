"""Pieces shared by the losses against a [C, D] parameter (proxies, class weights).

Losses with K centres per class (sub-center ArcFace, SoftTriple) take a
[C * K, D] parameter, rows ``c * K .. c * K + K - 1`` the centres of class c
(PML's layout, its ``W.T``); ``grouped`` views the similarities [b, C * K] as
[b, C, K].
"""

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
    per_class: int = 1,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Checks the inputs; returns (rows [b, D], params [C * K, D], one_hot [b, C], valid [b]).

    ``per_class`` K: the rows of ``params`` per class (a ValueError naming
    ``name`` when K does not divide them).

    Rows and params come back L2-normalised, in float32 (float64 under x64).

    ``valid`` [b]: rows that count, i.e. valid rows whose label is a class in
    ``[0, C)`` (a label outside that range has no proxy / weight row).
    """
    embeddings = _checks.check_embeddings(embeddings)
    batch, dim = embeddings.shape
    labels = _checks.check_labels(labels, batch)
    mask = _checks.check_mask(mask, batch)
    params = _checks.check_embeddings(params, name)
    rows = "num_classes" if per_class == 1 else f"num_classes * {per_class}"
    if params.shape[1] != dim:
        raise ValueError(
            f"`{name}` must have shape [{rows}, {dim}] (the embedding dimension), "
            f"got {params.shape}."
        )
    if params.shape[0] % per_class:
        raise ValueError(
            f"`{name}` must have shape [{rows}, {dim}] (class c: rows c * {per_class} to "
            f"c * {per_class} + {per_class - 1}), got {params.shape}."
        )
    params = params.astype(embeddings.dtype)
    num_classes = params.shape[0] // per_class
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


def grouped(similarities: jax.Array, per_class: int) -> jax.Array:
    """[b, C * K] similarities to the centres -> [b, C, K], class by class."""
    return similarities.reshape(similarities.shape[0], -1, per_class)
