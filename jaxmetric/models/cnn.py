"""Small convolutional encoders: the MNIST-1D 1-D CNN and a 2-D CNN."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmetric.models.layers import apply_bn, batch_norm, conv


class CNN1D(nnx.Module):
    """The MNIST-1D convolutional encoder (Greydanus 2020, ``ConvBase``).

    Three Conv1d layers (kernel 5, 3, 3; stride 2; padding 1; ``channels``
    each) with ReLU; a length-40 signal becomes 25 x 5 = 125 features.

    Args:
      length: input length (40 for MNIST-1D).
      channels: channels per layer (25).
      init: "torch" (the published runs) or "flax".
      use_bn: BatchNorm after each convolution (off in the published model).
      axis_name: global BatchNorm over this device axis.
      dtype: compute dtype.
      rngs: parameter PRNG streams.
    """

    def __init__(
        self,
        length: int = 40,
        channels: int = 25,
        *,
        init: str = "torch",
        use_bn: bool = False,
        axis_name: str | None = None,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        specs = [(1, 5), (channels, 3), (channels, 3)]
        self.convs = nnx.List(
            [
                conv(
                    c_in,
                    channels,
                    (k,),
                    init=init,
                    strides=2,
                    padding=((1, 1),),
                    use_bias=not use_bn,
                    dtype=dtype,
                    rngs=rngs,
                )
                for c_in, k in specs
            ]
        )
        self.norms = nnx.List(
            [batch_norm(channels, axis_name=axis_name, dtype=dtype, rngs=rngs) for _ in specs]
            if use_bn
            else []
        )
        out_len = length
        for _, k in specs:
            out_len = (out_len + 2 - k) // 2 + 1
        self.num_features = channels * out_len

    def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
        x = x.reshape(x.shape[0], -1, 1)  # [B, L] -> [B, L, 1] channels last
        for i, layer in enumerate(self.convs):
            x = layer(x)
            if len(self.norms):
                x = apply_bn(self.norms[i], x, train)
            x = nnx.relu(x)
        return x.reshape(x.shape[0], -1)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 of channels-last images, as
    ``nnx.max_pool(x, (2, 2), strides=(2, 2))`` ("VALID": an odd last row or
    column is dropped, as PyTorch's ``MaxPool2d(2)``).

    Written as a max over a reshape [B, H/2, 2, W/2, 2, C] rather than
    ``lax.reduce_window``: same values, and its gradient is an elementwise
    select where ``reduce_window``'s is XLA's ``select-and-scatter``, which is
    slow on CPU (a 3-stage CNN's train step on 28x28 images: about a third of
    the step). Where a window holds several equal maxima the gradient is
    split among them (``reduce_window`` gives it to the first); after a ReLU
    the usual tie is zeros, whose gradient the ReLU stops either way.

    Args:
      x: [B, H, W, C], H and W >= 2.

    Returns:
      [B, H // 2, W // 2, C].
    """
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


class CNN2D(nnx.Module):
    """A small 2-D CNN: [conv3x3 -> BN -> ReLU -> 2x2 max-pool] per stage,
    then global average pooling. For 8x8 digits, MNIST-sized images and
    quick tests.

    Args:
      in_channels: image channels.
      widths: channels per stage.
      init: "torch" or "flax".
      use_bn: BatchNorm after each convolution.
      axis_name: global BatchNorm over this device axis.
      dtype: compute dtype.
      rngs: parameter PRNG streams.
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64),
        *,
        init: str = "torch",
        use_bn: bool = True,
        axis_name: str | None = None,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        chans = [in_channels, *widths]
        self.convs = nnx.List(
            [
                conv(a, b, (3, 3), init=init, use_bias=not use_bn, dtype=dtype, rngs=rngs)
                for a, b in zip(chans[:-1], chans[1:], strict=True)
            ]
        )
        self.norms = nnx.List(
            [batch_norm(b, axis_name=axis_name, dtype=dtype, rngs=rngs) for b in widths]
            if use_bn
            else []
        )
        self.num_features = chans[-1]

    def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
        if x.ndim == 3:  # [B, H, W] grayscale
            x = x[..., None]
        for i, layer in enumerate(self.convs):
            x = layer(x)
            if len(self.norms):
                x = apply_bn(self.norms[i], x, train)
            x = nnx.relu(x)
            if min(x.shape[1:3]) >= 2:
                x = max_pool_2x2(x)
        return jnp.mean(x, axis=(1, 2))
