"""Building blocks shared by the encoders: dense / conv layers with the init
choice, and BatchNorm that can be global across devices."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmetric.models.init import dense_inits


def linear(
    in_features: int,
    out_features: int,
    *,
    init: str,
    use_bias: bool = True,
    dtype: jnp.dtype | None = None,
    rngs: nnx.Rngs,
) -> nnx.Linear:
    """``nnx.Linear`` with the configured initialisation."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        dtype=dtype,
        rngs=rngs,
        **dense_inits(init, in_features),
    )


def conv(
    in_features: int,
    out_features: int,
    kernel_size: Sequence[int],
    *,
    init: str,
    strides: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    use_bias: bool = True,
    dtype: jnp.dtype | None = None,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """``nnx.Conv`` (channels last) with the configured initialisation."""
    fan_in = in_features * math.prod(kernel_size)
    return nnx.Conv(
        in_features,
        out_features,
        tuple(kernel_size),
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        dtype=dtype,
        rngs=rngs,
        **dense_inits(init, fan_in),
    )


def batch_norm(
    num_features: int,
    *,
    axis_name: str | None,
    momentum: float = 0.9,
    zero_scale: bool = False,
    dtype: jnp.dtype | None = None,
    rngs: nnx.Rngs,
) -> nnx.BatchNorm:
    """BatchNorm over the batch of all devices when ``axis_name`` is set.

    ``momentum`` 0.9 is PyTorch's 0.1 update rate, as the SimCLR / MoCo code
    uses; ``zero_scale`` starts a residual branch as the identity.
    """
    kwargs = {"scale_init": nnx.initializers.zeros_init()} if zero_scale else {}
    return nnx.BatchNorm(
        num_features,
        momentum=momentum,
        epsilon=1e-5,
        axis_name=axis_name,
        dtype=dtype,
        rngs=rngs,
        **kwargs,
    )


def apply_bn(bn: nnx.BatchNorm, x: jax.Array, train: bool) -> jax.Array:
    """BatchNorm with batch statistics in training, running ones otherwise."""
    return bn(x, use_running_average=not train)
