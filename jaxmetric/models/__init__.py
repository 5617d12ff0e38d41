"""Flax NNX encoders and projection heads, and ``build_model`` from a config.

Every model is an ``Embedder``: an encoder f (features h, used by the linear
probe) followed by a projection head g (embeddings z = g(h), fed to the loss
and the kNN monitor) and, for BYOL / SimSiam / MoCo v3, a predictor q (an MLP
on z, ``Embedder.predict``) that only the online branch uses. Models are
used functionally by the trainer (``nnx.split`` / ``nnx.merge``); ``train``
selects batch or running BatchNorm statistics.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from jaxmetric import _extras

with _extras.requires("jaxmetric.models", "flax", "ml_collections"):
    import ml_collections
    from flax import nnx

    from jaxmetric.models.cnn import CNN1D, CNN2D
    from jaxmetric.models.init import INITS, check_init, dense_inits
    from jaxmetric.models.mlp import MLP, moco_v2_head, predictor_head, simclr_head
    from jaxmetric.models.pretrained import (
        load_torchvision_resnet,
        read_safetensors,
        torchvision_resnet_keys,
    )
    from jaxmetric.models.resnet import ResNet

ENCODERS = ("mlp", "cnn1d", "cnn2d", "resnet18", "resnet50")
HEADS = ("simclr", "moco_v2", "linear", "none")
PREDICTORS = ("none", "mlp")
# ``model.input_norm``: per-channel (mean, std) subtracted from / dividing the
# inputs (in [0, 1]) before the encoder. "imagenet": torchvision's, which its
# pretrained weights (``model.pretrained``) expect.
INPUT_NORMS = {"none": None, "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

__all__ = [
    "CNN1D",
    "CNN2D",
    "DTYPES",
    "ENCODERS",
    "Embedder",
    "HEADS",
    "INITS",
    "INPUT_NORMS",
    "MLP",
    "PREDICTORS",
    "ResNet",
    "build_model",
    "check_init",
    "dense_inits",
    "load_torchvision_resnet",
    "moco_v2_head",
    "predictor_head",
    "read_safetensors",
    "simclr_head",
    "torchvision_resnet_keys",
]


class Embedder(nnx.Module):
    """Encoder + projection head (+ an optional predictor).

    Args:
      encoder: maps a batch to features [B, F]; has ``num_features``.
      head: maps features to embeddings [B, D], or None (z = h).
      predictor: maps embeddings [B, D] to predictions [B, D] (BYOL, SimSiam,
        MoCo v3), or None. Not applied by ``__call__``, so evaluation and
        the momentum (target) branch never see it; see ``predict``.
      freeze_bn: the encoder's BatchNorm layers always run in inference mode:
        they normalise with their running statistics, which are never
        updated, also when ``train=True`` (the encoders' ``train`` flag
        selects only the BatchNorm mode). Their scale and bias are still
        trained. This is PyTorch's ``.eval()`` on the trunk's BatchNorm
        modules, PML's ``freeze_trunk_batchnorm=True``, which "A Metric
        Learning Reality Check" uses to fine-tune an ImageNet ResNet on
        batches of a few classes. The head and predictor are not affected.
      input_norm: (mean, std) per channel: the encoder sees
        ``(x - mean) / std`` (torchvision's ``Normalize``), or None: x.
      proxies: [C, D] initial class proxies, trained with the model (the
        ``proxies`` parameter that ``proxy_anchor_loss`` / ``proxy_nca_loss``
        take), or None. Not used by ``__call__``.
    """

    def __init__(
        self,
        encoder: nnx.Module,
        head: nnx.Module | None,
        predictor: nnx.Module | None = None,
        *,
        freeze_bn: bool = False,
        input_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
        proxies: jax.Array | None = None,
    ) -> None:
        self.encoder = encoder
        self.head = head
        self.predictor = predictor
        self.freeze_bn = freeze_bn
        self.input_norm = input_norm
        self.proxies = None if proxies is None else nnx.Param(proxies)

    def __call__(self, x: jax.Array, *, train: bool = True) -> tuple[jax.Array, jax.Array]:
        """Returns (features h [B, F], embeddings z [B, D]), both float32."""
        if self.input_norm is not None:
            mean, std = (jnp.asarray(v, jnp.float32) for v in self.input_norm)
            x = (x - mean) / std
        h = self.encoder(x, train=train and not self.freeze_bn)
        z = h if self.head is None else self.head(h, train=train)
        return h.astype(jnp.float32), z.astype(jnp.float32)

    def predict(self, z: jax.Array, *, train: bool = True) -> jax.Array:
        """The predictor's output q(z) [B, D], float32."""
        if self.predictor is None:
            raise ValueError("This model has no predictor: set `model.predictor`='mlp'.")
        return self.predictor(z, train=train).astype(jnp.float32)


def _encoder(cfg: ml_collections.ConfigDict, input_shape: tuple[int, ...], axis_name, dtype, rngs):
    name = cfg.encoder
    if name == "mlp":
        in_features = 1
        for d in input_shape:
            in_features *= d
        enc = MLP(
            in_features,
            list(cfg.mlp_hidden[:-1]),
            cfg.mlp_hidden[-1],
            init=cfg.init,
            use_bn=cfg.use_bn,
            axis_name=axis_name,
            dtype=dtype,
            rngs=rngs,
        )
        # The encoder's features are post-ReLU, as for the CNNs.
        enc_out = cfg.mlp_hidden[-1]
        return _ReluOut(enc, enc_out)
    if name == "cnn1d":
        return CNN1D(
            input_shape[0],
            cfg.channels,
            init=cfg.init,
            use_bn=cfg.use_bn,
            axis_name=axis_name,
            dtype=dtype,
            rngs=rngs,
        )
    if name == "cnn2d":
        return CNN2D(
            input_shape[-1] if len(input_shape) == 3 else 1,
            tuple(cfg.cnn_widths),
            init=cfg.init,
            use_bn=cfg.use_bn,
            axis_name=axis_name,
            dtype=dtype,
            rngs=rngs,
        )
    depth = int(name.removeprefix("resnet"))
    if cfg.get("pretrained", ""):
        from jaxmetric.models.pretrained import load_torchvision_resnet

        if not os.path.isfile(cfg.pretrained):
            raise ValueError(f"`model.pretrained`: no file {cfg.pretrained!r}.")
        encoder = load_torchvision_resnet(cfg.pretrained, depth, axis_name=axis_name, dtype=dtype)
        if encoder.stem_conv.in_features != input_shape[-1]:
            raise ValueError(
                f"`model.pretrained` takes {encoder.stem_conv.in_features} input channels, "
                f"the data has {input_shape[-1]}."
            )
        return encoder
    return ResNet(
        depth,
        stem=cfg.stem,
        in_channels=input_shape[-1],
        width=cfg.width,
        axis_name=axis_name,
        zero_init_residual=cfg.zero_init_residual,
        dtype=dtype,
        rngs=rngs,
    )


class _ReluOut(nnx.Module):
    """An MLP encoder whose output passes through ReLU (features h >= 0)."""

    def __init__(self, mlp: MLP, num_features: int) -> None:
        self.mlp = mlp
        self.num_features = num_features

    def __call__(self, x: jax.Array, *, train: bool = True) -> jax.Array:
        return nnx.relu(self.mlp(x, train=train))


def check_model_config(cfg: ml_collections.ConfigDict) -> None:
    """Raises a ValueError naming the first bad ``model.*`` field."""
    if cfg.encoder not in ENCODERS:
        raise ValueError(f"`model.encoder` must be one of {ENCODERS}, got {cfg.encoder!r}.")
    if cfg.head not in HEADS:
        raise ValueError(f"`model.head` must be one of {HEADS}, got {cfg.head!r}.")
    check_init(cfg.init)
    if cfg.dtype not in DTYPES:
        raise ValueError(f"`model.dtype` must be one of {tuple(DTYPES)}, got {cfg.dtype!r}.")
    if cfg.encoder.startswith("resnet") and cfg.stem not in ("cifar", "imagenet"):
        raise ValueError(f"`model.stem` must be 'cifar' or 'imagenet', got {cfg.stem!r}.")
    if cfg.head != "none" and cfg.embed_dim <= 0:
        raise ValueError(f"`model.embed_dim` must be > 0, got {cfg.embed_dim!r}.")
    if cfg.predictor not in PREDICTORS:
        raise ValueError(f"`model.predictor` must be one of {PREDICTORS}, got {cfg.predictor!r}.")
    if cfg.predictor != "none" and cfg.predictor_hidden <= 0:
        raise ValueError(f"`model.predictor_hidden` must be > 0, got {cfg.predictor_hidden!r}.")
    if cfg.get("input_norm", "none") not in INPUT_NORMS:
        raise ValueError(
            f"`model.input_norm` must be one of {tuple(INPUT_NORMS)}, got {cfg.input_norm!r}."
        )
    num_proxies = cfg.get("num_proxies", 0)
    if not isinstance(num_proxies, int) or isinstance(num_proxies, bool) or num_proxies < 0:
        raise ValueError(f"`model.num_proxies` must be an integer >= 0, got {num_proxies!r}.")
    if not isinstance(cfg.get("freeze_bn", False), bool):
        raise ValueError(f"`model.freeze_bn` must be True or False, got {cfg.freeze_bn!r}.")
    pretrained = cfg.get("pretrained", "")
    if pretrained:
        torchvision_like = cfg.stem == "imagenet" and cfg.width == 64
        if cfg.encoder not in ("resnet18", "resnet50") or not torchvision_like:
            raise ValueError(
                f"`model.pretrained` ({pretrained!r}) holds torchvision ResNet weights: it needs "
                f"`model.encoder` resnet18 or resnet50 with `model.stem='imagenet'` and "
                f"`model.width=64`, got {cfg.encoder!r}, {cfg.stem!r}, {cfg.width!r}."
            )


def build_model(
    cfg: ml_collections.ConfigDict,
    input_shape: tuple[int, ...],
    *,
    axis_name: str | None = None,
    seed: int = 0,
) -> Embedder:
    """Builds the ``Embedder`` described by a ``config.model`` ConfigDict.

    Args:
      cfg: ``config.model`` (encoder, head, init, use_bn, embed_dim, ...).
      input_shape: one example's shape, e.g. (40,) or (32, 32, 3).
      axis_name: device axis for global BatchNorm (the trainer passes
        "data"); None for single-device use.
      seed: parameter initialisation seed.

    Returns:
      The model, with freshly initialised parameters.
    """
    check_model_config(cfg)
    dtype = DTYPES[cfg.dtype]
    # "rbg" keys: initialisers draw through XLA's RngBitGenerator, which
    # compiles in a fraction of threefry's time; a ResNet's eager init, one
    # compile per kernel shape, drops from ~18 s to ~8 s of CPU.
    rngs = nnx.Rngs(params=jax.random.key(seed, impl="rbg"))
    encoder = _encoder(cfg, tuple(input_shape), axis_name, dtype, rngs)
    feats = encoder.num_features
    if cfg.head == "simclr":
        head = simclr_head(
            feats,
            hidden=cfg.head_hidden,
            out_features=cfg.embed_dim,
            num_layers=cfg.head_layers,
            init=cfg.init,
            use_bn=cfg.head_bn,
            final_bn=cfg.head_final_bn,
            axis_name=axis_name,
            dtype=dtype,
            rngs=rngs,
        )
    elif cfg.head == "moco_v2":
        head = moco_v2_head(
            feats,
            hidden=cfg.head_hidden,
            out_features=cfg.embed_dim,
            init=cfg.init,
            axis_name=axis_name,
            dtype=dtype,
            rngs=rngs,
        )
    elif cfg.head == "linear":
        head = MLP(feats, [], cfg.embed_dim, init=cfg.init, dtype=dtype, rngs=rngs)
    else:
        head = None
    predictor = None
    if cfg.predictor == "mlp":
        dim = feats if head is None else cfg.embed_dim
        predictor = predictor_head(
            dim,
            hidden=cfg.predictor_hidden,
            init=cfg.init,
            use_bn=cfg.predictor_bn,
            axis_name=axis_name,
            dtype=dtype,
            rngs=rngs,
        )
    proxies = None
    if cfg.get("num_proxies", 0):
        # PML's ProxyAnchorLoss / ProxyNCALoss: kaiming_normal_(mode="fan_out")
        # of a [C, D] weight, i.e. N(0, 2 / C).
        c, d = cfg.num_proxies, feats if head is None else cfg.embed_dim
        key = jax.random.key(seed + 1)
        proxies = jax.random.normal(key, (c, d), jnp.float32) * (2.0 / c) ** 0.5
    return Embedder(
        encoder,
        head,
        predictor,
        freeze_bn=cfg.get("freeze_bn", False),
        input_norm=INPUT_NORMS[cfg.get("input_norm", "none")],
        proxies=proxies,
    )


def model_config() -> ml_collections.ConfigDict:
    """Default ``config.model`` fields (the MNIST-1D SimCLR model)."""
    return ml_collections.ConfigDict(
        {
            "encoder": "cnn1d",
            "init": "torch",
            "use_bn": False,
            "channels": 25,
            "mlp_hidden": (256, 128),
            "cnn_widths": (32, 64),
            "stem": "cifar",
            "width": 64,
            "zero_init_residual": False,
            # A torchvision ResNet-18 / 50 state dict (.npz or .safetensors) that the
            # encoder starts from (resnet18 / resnet50, stem "imagenet", width 64).
            "pretrained": "",
            # The encoder's BatchNorm in inference mode while training: running
            # statistics used and frozen, scale / bias still trained (PML's
            # freeze_trunk_batchnorm, as "A Metric Learning Reality Check").
            "freeze_bn": False,
            # "imagenet": inputs normalised by ImageNet's per-channel mean and std
            # (torchvision's, what `pretrained` weights expect); "none": as they are.
            "input_norm": "none",
            # Class proxies [num_proxies, embed_dim] trained with the model, for
            # the proxy losses (supervised.loss="proxy_anchor_loss"); 0: none.
            "num_proxies": 0,
            "head": "simclr",
            "head_hidden": 128,
            "head_layers": 2,
            "head_bn": False,
            "head_final_bn": False,  # BN (no scale / bias) on z: SimSiam, MoCo v3
            "embed_dim": 16,
            # BYOL / SimSiam / MoCo v3: dense(hidden) -> [BN] -> ReLU -> dense(embed_dim).
            "predictor": "none",
            "predictor_hidden": 64,
            "predictor_bn": True,
            "dtype": "float32",
        }
    )
