"""Pieces shared by the metric modules: input checks and the query blocks.

The blockwise helpers cut the query rows into blocks of ``block_size``
(padded to a multiple of it), each searched with `jaxmetric.search.knn`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks

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


# Query rows per block by default: about this many distances per block
# (64 MiB of float32).
BLOCK_DISTANCES = 2**24


def query_block_size(block_size: int | None, num_reference: int) -> int:
    """Checks ``block_size`` (query rows per block); None: about
    `BLOCK_DISTANCES` distances per block of a reference of that many rows."""
    if block_size is None:
        return max(1, BLOCK_DISTANCES // num_reference)
    return _checks.check_int(block_size, "block_size")


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
