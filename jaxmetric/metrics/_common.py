"""Pieces shared by the metric modules: input checks and the blockwise [N, M] helpers.

The blockwise helpers cut the query rows into blocks of ``block_size``
(padded to a multiple of it) and rank references by *keys*: values whose
ascending order is the order of increasing distance, cheaper to compute than
the distances themselves (`ranking_keys`, `distances_from_keys`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks
from jaxmetric.distances import l2_normalize

RETRIEVAL_METRICS = ("cosine", "euclidean")


# --------------------------------------------------------------------------------------
# Input checks.
# --------------------------------------------------------------------------------------


def check_metric(metric: str) -> str:
    """Checks that ``metric`` is one of `RETRIEVAL_METRICS`."""
    return _checks.check_choice(metric, RETRIEVAL_METRICS, "metric")


def check_embeddings(x: jax.Array, name: str) -> jax.Array:
    """Checks non-empty [N, D] float embeddings; returns them as float32."""
    x = _checks.check_embeddings(x, name)
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` has no rows.")
    return x.astype(jnp.float32)


def check_labels(labels: jax.Array, batch: int, name: str) -> jax.Array:
    """Checks [batch] non-negative int labels; returns them as int32."""
    labels = _checks.check_labels(labels, batch, name)
    try:
        minimum = int(jnp.min(labels)) if labels.size else 0
    except jax.errors.ConcretizationTypeError:  # Traced labels: no value check.
        return labels
    if minimum < 0:
        raise ValueError(f"`{name}` must be non-negative integers, got a minimum of {minimum}.")
    return labels


def check_same_dim(x: jax.Array, name: str, like: jax.Array, like_name: str) -> None:
    """Checks that [N, D] ``x`` has the feature dimension D of [M, D] ``like``."""
    if x.shape[1] != like.shape[1]:
        raise ValueError(
            f"`{name}` must have the feature dimension of `{like_name}` ({like.shape[1]}), "
            f"got shape {x.shape}."
        )


# --------------------------------------------------------------------------------------
# Blockwise helpers.
# --------------------------------------------------------------------------------------


def prepare_pair(
    query: jax.Array, reference: jax.Array, metric: str
) -> tuple[jax.Array, jax.Array]:
    """Checks the feature dimensions; L2-normalises both sides for cosine."""
    check_same_dim(reference, "reference", query, "query")
    if metric == "cosine":
        return l2_normalize(query), l2_normalize(reference)
    return query, reference


def ranking_keys(q: jax.Array, ref: jax.Array, ref_sq: jax.Array, metric: str) -> jax.Array:
    """[b, M] keys whose ascending order is the order of increasing distance.

    cosine: -cos (inputs already normalised); euclidean: |r|^2 - 2 q.r, the
    squared distance less the per-row constant |q|^2 (same order, one add
    fewer, and exact on integer-valued data).
    """
    s = q @ ref.T
    if metric == "cosine":
        return -s
    return ref_sq[None, :] - 2.0 * s


def distances_from_keys(keys: jax.Array, q: jax.Array, metric: str) -> jax.Array:
    """Turns `ranking_keys` back into distances (1 - cos, or euclidean)."""
    if metric == "cosine":
        return 1.0 + keys
    q_sq = jnp.sum(jnp.square(q), axis=1, keepdims=True)
    return jnp.sqrt(jnp.maximum(keys + q_sq, 0.0))


def pad_rows(x: jax.Array, multiple: int, value: int | bool = 0) -> jax.Array:
    """Pads the rows of ``x`` with ``value`` up to a multiple of ``multiple``."""
    pad = (-x.shape[0]) % multiple
    if pad == 0:
        return x
    widths = [(0, pad)] + [(0, 0)] * (x.ndim - 1)
    return jnp.pad(x, widths, constant_values=value)


def blocks(x: jax.Array, block_size: int) -> jax.Array:
    """[N, ...] -> [N / block_size, block_size, ...] (N a multiple of block_size)."""
    return x.reshape((-1, block_size) + x.shape[1:])
