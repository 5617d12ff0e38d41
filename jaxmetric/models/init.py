"""Weight initialisation schemes for the encoders and heads.

Two schemes, chosen by config (``model.init``):

- ``"torch"``: PyTorch's default for ``nn.Linear`` / ``nn.Conv*``,
  ``kaiming_uniform_(a=sqrt(5))`` on the weights, which is
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the biases.
  Published small-scale SSL runs (the MNIST-1D SimCLR notebook) use it; with
  it our MNIST-1D SimCLR reaches the notebook's accuracy, with Flax's default
  init it falls 20 points short.
- ``"flax"``: Flax's defaults (LeCun normal kernels, zero biases).

ResNets keep He (fan-out) normal initialisation for convolutions and zero-init
the last BatchNorm scale of each block when ``zero_init_residual`` is set, as
the SimCLR / MoCo reference code does; the choice here applies to their dense
layers and to the MLPs / small CNNs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

INITS = ("torch", "flax")

Initializer = Callable[..., jax.Array]


def _uniform(bound: float) -> Initializer:
    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def check_init(init: str) -> str:
    """Returns ``init`` or raises a ValueError naming ``model.init``."""
    if init not in INITS:
        raise ValueError(f"`model.init` must be one of {INITS}, got {init!r}.")
    return init


def dense_inits(init: str, fan_in: int) -> dict[str, Initializer]:
    """``kernel_init`` / ``bias_init`` keyword arguments for a layer.

    Args:
      init: "torch" or "flax".
      fan_in: inputs per output unit (in_features, or kernel volume x in
        channels for a convolution).

    Returns:
      A dict to splat into ``nnx.Linear`` or ``nnx.Conv``.
    """
    if check_init(init) == "flax":
        return {}
    bound = 1.0 / math.sqrt(fan_in)
    return {"kernel_init": _uniform(bound), "bias_init": _uniform(bound)}
