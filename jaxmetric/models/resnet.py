"""ResNet-18 / ResNet-50 encoders with CIFAR and ImageNet stems.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016. The
CIFAR stem (3x3 conv, stride 1, no max-pool) is the one SimCLR (appendix
B.9) and MoCo's CIFAR recipes use for 32x32 images; the ImageNet stem is
7x7 stride 2 + 3x3 max-pool. The classifier is dropped: the encoder returns
the pooled features (512 for ResNet-18, 2048 for ResNet-50).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmetric.models.layers import apply_bn, batch_norm

STEMS = ("cifar", "imagenet")
DEPTHS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}

# PyTorch's torchvision ResNet: kaiming_normal_(mode="fan_out", relu).
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def _conv(c_in: int, c_out: int, k: int, stride: int, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    pad = (k - 1) // 2
    return nnx.Conv(
        c_in,
        c_out,
        (k, k),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=_conv_init,
        dtype=dtype,
        rngs=rngs,
    )


class _Block(nnx.Module):
    """Basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 x4) residual block."""

    def __init__(
        self,
        kind: str,
        c_in: int,
        width: int,
        stride: int,
        *,
        axis_name: str | None,
        zero_init_residual: bool,
        dtype,
        rngs: nnx.Rngs,
    ) -> None:
        expansion = 1 if kind == "basic" else 4
        c_out = width * expansion
        if kind == "basic":
            shapes = [(c_in, width, 3, stride), (width, c_out, 3, 1)]
        else:
            # Stride on the 3x3 conv (torchvision's "ResNet v1.5").
            shapes = [(c_in, width, 1, 1), (width, width, 3, stride), (width, c_out, 1, 1)]
        self.convs = nnx.List([_conv(a, b, k, s, dtype, rngs) for a, b, k, s in shapes])
        last = len(shapes) - 1
        self.norms = nnx.List(
            [
                batch_norm(
                    b,
                    axis_name=axis_name,
                    zero_scale=zero_init_residual and i == last,
                    dtype=dtype,
                    rngs=rngs,
                )
                for i, (_, b, _, _) in enumerate(shapes)
            ]
        )
        if stride != 1 or c_in != c_out:
            self.proj = _conv(c_in, c_out, 1, stride, dtype, rngs)
            self.proj_norm = batch_norm(c_out, axis_name=axis_name, dtype=dtype, rngs=rngs)
        else:
            self.proj = None
            self.proj_norm = None
        self.c_out = c_out

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        residual = x
        y = x
        for i, (layer, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            y = apply_bn(norm, layer(y), train)
            if i < len(self.convs) - 1:
                y = nnx.relu(y)
        if self.proj is not None:
            residual = apply_bn(self.proj_norm, self.proj(x), train)
        return nnx.relu(y + residual)


class ResNet(nnx.Module):
    """ResNet encoder returning globally pooled features.

    Args:
      depth: 18 or 50.
      stem: "cifar" (3x3 stride 1, no max-pool) or "imagenet" (7x7 stride 2
        + max-pool).
      in_channels: image channels.
      width: channels of the first stage (64).
      axis_name: global BatchNorm over this device axis (SimCLR's global BN).
      zero_init_residual: start each block's last BN scale at 0.
      dtype: compute dtype (bfloat16 on TPU); parameters stay float32.
      rngs: parameter PRNG streams.
    """

    def __init__(
        self,
        depth: int = 18,
        *,
        stem: str = "cifar",
        in_channels: int = 3,
        width: int = 64,
        axis_name: str | None = None,
        zero_init_residual: bool = False,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        if depth not in DEPTHS:
            raise ValueError(f"`model.depth` must be one of {sorted(DEPTHS)}, got {depth!r}.")
        if stem not in STEMS:
            raise ValueError(f"`model.stem` must be one of {STEMS}, got {stem!r}.")
        kind, stages = DEPTHS[depth]
        self.stem = stem
        self.stem_conv = _conv(
            in_channels,
            width,
            3 if stem == "cifar" else 7,
            1 if stem == "cifar" else 2,
            dtype,
            rngs,
        )
        self.stem_norm = batch_norm(width, axis_name=axis_name, dtype=dtype, rngs=rngs)
        blocks = []
        c_in = width
        for i, n in enumerate(stages):
            for j in range(n):
                block = _Block(
                    kind,
                    c_in,
                    width * 2**i,
                    2 if (i > 0 and j == 0) else 1,
                    axis_name=axis_name,
                    zero_init_residual=zero_init_residual,
                    dtype=dtype,
                    rngs=rngs,
                )
                c_in = block.c_out
                blocks.append(block)
        self.blocks = nnx.List(blocks)
        self.num_features = c_in

    def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
        x = nnx.relu(apply_bn(self.stem_norm, self.stem_conv(x), train))
        if self.stem == "imagenet":
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x, train)
        return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
