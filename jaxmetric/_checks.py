"""Trace-time argument checks shared by the kernels.

Every check runs on static shapes and Python values, so a bad call fails
before compilation with a ValueError that names the argument and its value.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def check_embeddings(x: jax.Array, name: str = "embeddings") -> jax.Array:
    """Checks a [B, D] floating array and returns it upcast to float32."""
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D [batch, dim], got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`{name}` must be a floating array, got dtype {x.dtype}.")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def check_labels(labels: jax.Array, batch: int, name: str = "labels") -> jax.Array:
    """Checks integer labels [batch] and returns them as int32."""
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D [batch], got shape {labels.shape}.")
    if labels.shape[0] != batch:
        raise ValueError(
            f"`{name}` has length {labels.shape[0]} but the embeddings have {batch} rows."
        )
    if not (jnp.issubdtype(labels.dtype, jnp.integer) or labels.dtype == jnp.bool_):
        raise ValueError(f"`{name}` must be integers, got dtype {labels.dtype}.")
    return labels.astype(jnp.int32)


def check_mask(mask: jax.Array | None, batch: int, name: str = "mask") -> jax.Array:
    """Checks a validity mask [batch]; None means every row is valid."""
    if mask is None:
        return jnp.ones((batch,), dtype=bool)
    mask = jnp.asarray(mask)
    if mask.shape != (batch,):
        raise ValueError(f"`{name}` must have shape ({batch},), got {mask.shape}.")
    return mask.astype(bool)


def check_embedding_pair(
    a: jax.Array, b: jax.Array, name_a: str, name_b: str
) -> tuple[jax.Array, jax.Array]:
    """Checks two [B, D] floating arrays of one shape (row i pairs with row i)."""
    a = check_embeddings(a, name_a)
    b = check_embeddings(b, name_b)
    check_same_shape(a, b, name_a, name_b)
    return a, b


def check_same_shape(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same shape, got {a.shape} and {b.shape}."
        )


def check_positive(value: float, name: str) -> float:
    if not value > 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}.")
    return float(value)


def check_non_negative(value: float, name: str) -> float:
    if not value >= 0:
        raise ValueError(f"`{name}` must be >= 0, got {value!r}.")
    return float(value)


def check_choice(value: str, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(
            f"Unknown `{name}` {value!r}; expected one of {', '.join(map(repr, choices))}."
        )
    return value
