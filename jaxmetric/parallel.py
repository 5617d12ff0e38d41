"""Gathering and reductions across devices for the loss kernels.

Every loss takes ``axis_name``. With ``axis_name=None`` these helpers are the
identity (one device). With ``axis_name="data"`` the loss runs inside
``jax.shard_map`` or ``jax.pmap`` on the device's local shard:

- candidates (positives and negatives) are all-gathered from every device
  (``gather``), anchors stay local, and ``anchor_index`` gives each local row
  its position in the gathered array (to skip the anchor itself and to find
  positives that are defined by position);
- the loss is reduced as a global ratio ``psum(sum) / psum(count)``
  (``global_sum``), so "mean over non-zero terms" is exact across devices and
  the value is the same on every device.

Gradients: ``all_gather``'s transpose is a reduce-scatter, so each device's
embeddings receive the gradient of every device's anchors. Under
``jax.shard_map`` (``check_vma=True``) the gradient of a replicated parameter
is then already the single-device gradient: put no collective on it. Under
``jax.pmap`` each device gets its own share of the gradient, so take
``jax.lax.pmean`` of the gradients as usual.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _unbound(axis_name: str, err: Exception) -> ValueError:
    return ValueError(
        f"`axis_name`={axis_name!r} is not bound: call the loss inside "
        "jax.shard_map or jax.pmap over that axis, or pass axis_name=None "
        f"({err})."
    )


def axis_size(axis_name: str | None) -> int:
    """Number of devices along ``axis_name`` (1 when None), a Python int."""
    if axis_name is None:
        return 1
    try:
        return int(jax.lax.axis_size(axis_name))
    except NameError as err:
        raise _unbound(axis_name, err) from err


def axis_index(axis_name: str | None) -> jax.Array:
    """This device's index along ``axis_name`` (0 when None)."""
    if axis_name is None:
        return jnp.zeros((), jnp.int32)
    try:
        return jax.lax.axis_index(axis_name)
    except NameError as err:
        raise _unbound(axis_name, err) from err


def gather(x: jax.Array, axis_name: str | None, *, invariant: bool = False) -> jax.Array:
    """Concatenates ``x`` [b, ...] from all devices into [n * b, ...].

    Device d's rows land at ``[d * b, (d + 1) * b)``.

    Args:
      x: the local rows.
      axis_name: mapped axis, or None (then ``x`` is returned).
      invariant: False (losses): the result is typed as varying over the
        axis and its gradient is reduce-scattered back to the device that owns
        each row. True (state such as the MoCo queue): the result is typed as
        replicated, so it can be returned with ``out_specs=P()`` under
        ``shard_map``'s replication check; use it only where no gradient flows.
    """
    if axis_name is None:
        return x
    axis_size(axis_name)  # A clear error when the axis is not bound.
    return jax.lax.all_gather(
        x, axis_name, axis=0, tiled=True, to="invarying" if invariant else "varying"
    )


def to_varying(tree, axis_name: str | None):
    """Types every leaf as varying over ``axis_name`` (for ``lax.scan`` carries).

    Under ``shard_map`` with ``check_vma=True`` a loop carry that starts
    replicated (e.g. an all-True default mask) but meets per-device data must
    be cast first. A no-op for ``axis_name=None``, under ``pmap``, and for
    leaves that already vary.
    """
    if axis_name is None:
        return tree

    def cast(x):
        manual = getattr(jax.typeof(x), "mat", None)  # None outside shard_map's typing
        if manual is None or axis_name in manual.varying:
            return x
        try:
            return jax.lax.pcast(x, (axis_name,), to="varying")
        except (NameError, ValueError):  # pmap-style contexts that do not track vma
            return x

    return jax.tree.map(cast, tree)


def anchor_index(local_batch: int, axis_name: str | None) -> jax.Array:
    """Global row index [b] of this device's local rows in the gathered batch."""
    offset = axis_index(axis_name) * local_batch
    return offset + jnp.arange(local_batch, dtype=jnp.int32)


def psum(x: jax.Array, axis_name: str | None) -> jax.Array:
    """``jax.lax.psum`` that is the identity for ``axis_name=None``."""
    if axis_name is None:
        return x
    axis_size(axis_name)  # A clear error when the axis is not bound.
    return jax.lax.psum(x, axis_name)


def global_sum(x: jax.Array, axis_name: str | None) -> jax.Array:
    """Sum of ``x`` over all its elements and all devices."""
    return psum(jnp.sum(x), axis_name)


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """numerator / denominator, and 0 (with zero gradient) where it is 0."""
    nonzero = denominator > 0
    return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1.0), 0.0)


REDUCTIONS = ("mean_nonzero", "mean", "sum", "none")


def reduce_losses(
    losses: jax.Array,
    valid: jax.Array,
    reduction: str,
    axis_name: str | None,
) -> jax.Array:
    """Reduces per-term losses over valid terms of the whole global batch.

    Args:
      losses: per-term losses of the local anchors, any shape.
      valid: bool, the shape of ``losses``; invalid terms count for nothing.
      reduction: "mean_nonzero" (sum / number of valid terms > 0, PML's
        AvgNonZeroReducer), "mean" (sum / number of valid terms), "sum", or
        "none" (``losses`` with invalid terms set to 0, local, not reduced).
      axis_name: mapped axis to reduce over, or None.

    Returns:
      A float32 scalar, or the masked ``losses`` for "none". 0.0 when no term
      counts, with a zero gradient.
    """
    losses = jnp.where(valid, losses, 0.0)
    if reduction == "none":
        return losses
    total = global_sum(losses, axis_name)
    if reduction == "sum":
        return total
    if reduction == "mean_nonzero":
        count = global_sum(valid & (losses > 0), axis_name)
    else:
        count = global_sum(valid, axis_name)
    return safe_divide(total, count.astype(total.dtype))
