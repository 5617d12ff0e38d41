"""Multi-layer perceptrons: a plain encoder and the projection heads."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxmetric.models.layers import apply_bn, batch_norm, linear


class MLP(nnx.Module):
    """Dense -> [BN] -> ReLU blocks, then a final dense layer.

    Args:
      in_features: input width (inputs are flattened first).
      hidden: widths of the hidden layers.
      out_features: output width.
      init: "torch" or "flax" (see ``jaxmetric.models.init``).
      use_bn: BatchNorm after each hidden dense layer (SimCLR / MoCo v2 heads
        on ImageNet use it; the MNIST-1D recipe does not).
      final_bn: BatchNorm without scale/bias on the output (SimCLR v2 style).
      axis_name: BatchNorm statistics over this device axis (global BN).
      dtype: compute dtype; parameters stay float32.
      rngs: parameter PRNG streams.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        init: str = "torch",
        use_bn: bool = False,
        final_bn: bool = False,
        axis_name: str | None = None,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        widths = [in_features, *hidden]
        self.hidden = nnx.List(
            [
                linear(a, b, init=init, use_bias=not use_bn, dtype=dtype, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.norms = nnx.List(
            [batch_norm(b, axis_name=axis_name, dtype=dtype, rngs=rngs) for b in hidden]
            if use_bn
            else []
        )
        self.out = linear(widths[-1], out_features, init=init, dtype=dtype, rngs=rngs)
        self.final_norm = (
            batch_norm(out_features, axis_name=axis_name, dtype=dtype, rngs=rngs)
            if final_bn
            else None
        )

    def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            if len(self.norms):
                x = apply_bn(self.norms[i], x, train)
            x = nnx.relu(x)
        x = self.out(x)
        if self.final_norm is not None:
            x = apply_bn(self.final_norm, x, train)
        return x


def simclr_head(
    in_features: int,
    *,
    hidden: int = 2048,
    out_features: int = 128,
    num_layers: int = 2,
    init: str = "torch",
    use_bn: bool = True,
    final_bn: bool = False,
    axis_name: str | None = None,
    dtype: jnp.dtype | None = None,
    rngs: nnx.Rngs,
) -> MLP:
    """SimCLR projection head g(h): ``num_layers`` dense layers, BN + ReLU
    between them (SimCLR v1 appendix B.9 uses 2 layers, output 128).

    Also the projectors of the non-contrastive methods: BYOL (2 layers,
    4096 -> 256), Barlow Twins and VICReg (3 layers of 8192), SimSiam (3
    layers of 2048, ``final_bn``) and MoCo v3 (3 layers, 4096 -> 256,
    ``final_bn``)."""
    return MLP(
        in_features,
        [hidden] * (num_layers - 1),
        out_features,
        init=init,
        use_bn=use_bn,
        final_bn=final_bn,
        axis_name=axis_name,
        dtype=dtype,
        rngs=rngs,
    )


def moco_v2_head(
    in_features: int,
    *,
    hidden: int = 2048,
    out_features: int = 128,
    init: str = "torch",
    axis_name: str | None = None,
    dtype: jnp.dtype | None = None,
    rngs: nnx.Rngs,
) -> MLP:
    """MoCo v2 projection head: dense(hidden) -> ReLU -> dense(out), no BN
    (Chen et al. 2020, "Improved Baselines with Momentum Contrastive
    Learning")."""
    return MLP(
        in_features,
        [hidden],
        out_features,
        init=init,
        use_bn=False,
        axis_name=axis_name,
        dtype=dtype,
        rngs=rngs,
    )


def predictor_head(
    features: int,
    *,
    hidden: int = 4096,
    init: str = "torch",
    use_bn: bool = True,
    axis_name: str | None = None,
    dtype: jnp.dtype | None = None,
    rngs: nnx.Rngs,
) -> MLP:
    """The predictor q(z) of BYOL / SimSiam / MoCo v3: dense(hidden) -> BN ->
    ReLU -> dense(features), back to the embedding width (BYOL: 256 -> 4096
    -> 256; SimSiam: 2048 -> 512 -> 2048, a bottleneck; MoCo v3: 256 -> 4096
    -> 256)."""
    return MLP(
        features,
        [hidden],
        features,
        init=init,
        use_bn=use_bn,
        axis_name=axis_name,
        dtype=dtype,
        rngs=rngs,
    )
