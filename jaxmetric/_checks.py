"""Trace-time argument checks shared by the kernels.

Every check runs on static shapes and Python values, so a bad call fails
before compilation with a ValueError that names the argument and its value.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp


def upcast(x: jax.Array) -> jax.Array:
    """``x`` as float32 (or wider), with a gradient that saturates at the
    input dtype's largest finite value on the way back.

    A float16 input's gradient is cast back to float16, whose range ends at
    65504: a legitimate float32 gradient of 1e6 (e.g. through the L2
    normalisation of a row of norm 1e-6) would become Inf there and poison
    the optimizer. Saturating keeps it finite and of the right sign; NaN
    stays NaN.
    """
    dtype = x.dtype
    wide = jnp.promote_types(dtype, jnp.float32)
    if dtype == wide:
        return x

    @jax.custom_vjp
    def cast(x):
        return x.astype(wide)

    def fwd(x):
        return cast(x), None

    def bwd(_, g):
        big = jnp.finfo(dtype).max.astype(g.dtype)
        return (jnp.clip(g, -big, big).astype(dtype),)

    cast.defvjp(fwd, bwd)
    return cast(x)


def check_embeddings(x: jax.Array, name: str = "embeddings") -> jax.Array:
    """Checks a [B, D] floating array and returns it upcast to float32 (see
    ``upcast`` for its gradient)."""
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D [batch, dim], got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"`{name}` must be a floating array, got dtype {x.dtype}.")
    return upcast(x)


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


def check_int(value: int, name: str, *, low: int = 1, high: int | None = None) -> int:
    """Checks an int (not a bool) in [low, high] (no upper bound when
    ``high`` is None)."""
    ok = (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and low <= value
        and (high is None or value <= high)
    )
    if not ok:
        if high is not None:
            bound = f"an int in [{low}, {high}]"
        elif low == 1:
            bound = "a positive int"
        else:
            bound = f"an int >= {low}"
        raise ValueError(f"`{name}` must be {bound}, got {value!r}.")
    return int(value)


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


def check_miner_inputs(
    dist: jax.Array,
    positive_mask: jax.Array,
    negative_mask: jax.Array,
    dist_name: str = "dist",
) -> jax.Array:
    """Checks a miner's [b, M] distance (or similarity) matrix and its two
    [b, M] pair masks; returns ``dist`` as a float array."""
    dist = jnp.asarray(dist)
    if dist.ndim != 2:
        raise ValueError(
            f"`{dist_name}` must be 2-D [anchors, candidates], got shape {dist.shape}."
        )
    for name, m in (("positive_mask", positive_mask), ("negative_mask", negative_mask)):
        shape = jnp.shape(m)
        if shape != dist.shape:
            raise ValueError(
                f"`{name}` must have the shape of `{dist_name}` {dist.shape}, got {shape}."
            )
    return dist


def check_integer_labels(labels: jax.Array, name: str = "labels") -> jax.Array:
    """Checks 1-D integer labels of any length and returns them as int32."""
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D, got shape {labels.shape}.")
    if not (jnp.issubdtype(labels.dtype, jnp.integer) or labels.dtype == jnp.bool_):
        raise ValueError(f"`{name}` must be integers, got dtype {labels.dtype}.")
    return labels.astype(jnp.int32)
