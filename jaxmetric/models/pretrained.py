"""Pretrained backbones: torchvision's ResNet weights in the NNX ``ResNet``.

``load_torchvision_resnet`` reads a torchvision ``ResNet.state_dict()`` (key
names as torchvision writes them: ``conv1.weight``, ``bn1.running_mean``,
``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``, ``fc.weight``,
...), given as a mapping to NumPy arrays or as a ``.npz`` / ``.safetensors``
file, and returns a ``ResNet(depth, stem="imagenet")`` whose pooled features
in eval mode (``train=False``) are torchvision's (the input of its ``fc``).
torch is never imported: a ``.safetensors`` file is read by the small reader
below (the format is a JSON header and raw little-endian arrays), so the
``safetensors`` package is not needed either.

The architectures agree as they are: torchvision's stem (7x7 stride 2, pad 3,
BN, ReLU, 3x3 max-pool stride 2 pad 1), BasicBlock for ResNet-18 and the
Bottleneck with the stride on its 3x3 conv ("v1.5") for ResNet-50, a 1x1
strided conv + BN shortcut where the shape changes, BatchNorm eps 1e-5, and
a global average pool. The classifier (``fc``) and ``num_batches_tracked``
are read past. Layouts: conv weights OIHW -> HWIO; BatchNorm ``weight`` /
``bias`` / ``running_mean`` / ``running_var`` -> ``scale`` / ``bias`` /
``mean`` / ``var``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from jaxmetric.models.resnet import DEPTHS, ResNet

# Keys of a torchvision state dict that the encoder has no use for.
_IGNORED = ("fc.weight", "fc.bias")
_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a ``.safetensors`` file, as NumPy arrays (no torch).

    The format: an unsigned little-endian 64-bit header size N, N bytes of
    JSON mapping each name to its ``dtype``, ``shape`` and ``data_offsets``
    (begin, end; relative to the end of the header), then the data.

    Raises:
      ValueError: a malformed file, or a dtype NumPy cannot hold (F8).
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{os.fspath(path)!r} is not a .safetensors file (too short).")
    n = int.from_bytes(blob[:8], "little")
    if 8 + n > len(blob):
        raise ValueError(f"{os.fspath(path)!r}: header size {n} runs past the end of the file.")
    try:
        header = json.loads(blob[8 : 8 + n])
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)!r}: the header is not JSON ({e}).") from None
    data = memoryview(blob)[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise ValueError(f"{os.fspath(path)!r}: {name!r} has unsupported dtype {info!r}.")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if not 0 <= begin <= end <= len(data) or end - begin != size:
            raise ValueError(
                f"{os.fspath(path)!r}: {name!r} has offsets {info['data_offsets']} for "
                f"shape {list(shape)} of {info['dtype']}."
            )
        out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
    return out


def _read(state_dict) -> Mapping[str, np.ndarray]:
    if isinstance(state_dict, Mapping):
        return state_dict
    if not isinstance(state_dict, str | os.PathLike):
        raise TypeError(
            "`state_dict` must map torchvision key names to arrays, or be the path of a "
            f".npz or .safetensors file, got {type(state_dict).__name__}."
        )
    path = os.fspath(state_dict)
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    raise ValueError(f"{path!r}: the state dict file must be .npz or .safetensors.")


def _abstract_resnet(depth: int, **kwargs) -> ResNet:
    """``ResNet(depth, stem="imagenet", **kwargs)`` with shapes, no values."""
    if depth not in DEPTHS:
        raise ValueError(f"`depth` must be one of {sorted(DEPTHS)}, got {depth!r}.")

    # "rbg" keys trace the initialisers in a fraction of threefry's time.
    def build():
        rngs = nnx.Rngs(params=jax.random.key(0, impl="rbg"))
        return ResNet(depth, stem="imagenet", rngs=rngs, **kwargs)

    return nnx.eval_shape(build)


def _keys(model: ResNet, depth: int) -> dict[str, tuple[tuple[int, ...], tuple]]:
    shapes = {path: v.get_value().shape for path, v in nnx.to_flat_state(nnx.split(model)[1])}

    def conv(torch_key, path):
        h, w, i, o = shapes[path]
        return {torch_key: ((o, i, h, w), path)}

    def bn(torch_prefix, path):
        return {
            f"{torch_prefix}.{t}": (shapes[(*path, ours)], (*path, ours)) for t, ours in _BN.items()
        }

    kind, stages = DEPTHS[depth]
    keys = {**conv("conv1.weight", ("stem_conv", "kernel")), **bn("bn1", ("stem_norm",))}
    block = 0
    for stage, n in enumerate(stages):
        for j in range(n):
            prefix, path = f"layer{stage + 1}.{j}", ("blocks", block)
            for k in range(3 if kind == "bottleneck" else 2):
                keys |= conv(f"{prefix}.conv{k + 1}.weight", (*path, "convs", k, "kernel"))
                keys |= bn(f"{prefix}.bn{k + 1}", (*path, "norms", k))
            if (*path, "proj", "kernel") in shapes:
                keys |= conv(f"{prefix}.downsample.0.weight", (*path, "proj", "kernel"))
                keys |= bn(f"{prefix}.downsample.1", (*path, "proj_norm"))
            block += 1
    if len(keys) != len(shapes):
        raise AssertionError("a variable of the ResNet has no torchvision key")
    return keys


def torchvision_resnet_keys(
    depth: int = 50, in_channels: int = 3
) -> dict[str, tuple[tuple[int, ...], tuple]]:
    """torchvision's state-dict keys of a ResNet-``depth`` (without ``fc`` and
    ``num_batches_tracked``), each with its torch shape and the path of the
    variable it fills in the NNX ``ResNet`` (``nnx.split`` flat-state path)."""
    return _keys(_abstract_resnet(depth, in_channels=in_channels), depth)


def load_torchvision_resnet(
    state_dict: Mapping[str, np.ndarray] | str | os.PathLike,
    depth: int = 50,
    *,
    axis_name: str | None = None,
    dtype: jnp.dtype | None = None,
) -> ResNet:
    """The NNX ``ResNet`` encoder holding a torchvision ResNet's weights.

    Args:
      state_dict: torchvision's ``model.state_dict()`` as a mapping from its key
        names to NumPy arrays (``{k: v.numpy() for k, v in sd.items()}``), or
        the path of a ``.npz`` (``np.savez``) or ``.safetensors`` file of it.
      depth: 18 (BasicBlock, [2, 2, 2, 2]) or 50 (Bottleneck, [3, 4, 6, 3]).
      axis_name: the device axis of global BatchNorm when it is trained further.
      dtype: compute dtype (bfloat16 on TPU); parameters stay float32.

    Returns:
      ``ResNet(depth, stem="imagenet")`` whose ``model(x, train=False)`` on NHWC
      images equals torchvision's pooled features (``fc``'s input) on the same
      images in NCHW, in eval mode. The input channels follow ``conv1.weight``.

    Raises:
      ValueError: naming the missing keys, the unexpected keys (other than
        ``fc.*`` and ``*.num_batches_tracked``) and the mis-shaped ones.
    """
    sd = _read(state_dict)
    conv1 = sd.get("conv1.weight")
    in_channels = int(np.shape(conv1)[1]) if conv1 is not None and np.ndim(conv1) == 4 else 3
    model = _abstract_resnet(depth, in_channels=in_channels, axis_name=axis_name, dtype=dtype)
    keys = _keys(model, depth)
    missing = sorted(k for k in keys if k not in sd)
    unexpected = sorted(
        k
        for k in sd
        if k not in keys and k not in _IGNORED and not k.endswith(".num_batches_tracked")
    )
    misshaped = [
        f"{k}: {tuple(np.shape(sd[k]))}, expected {shape}"
        for k, (shape, _) in keys.items()
        if k in sd and tuple(np.shape(sd[k])) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {'; '.join(misshaped)}")
    if problems:
        raise ValueError(
            f"Not a torchvision ResNet-{depth} state dict: " + " | ".join(problems) + "."
        )
    graphdef, state = nnx.split(model)
    variables = dict(nnx.to_flat_state(state))
    values = {}
    for k, (_, path) in keys.items():
        a = np.asarray(sd[k], dtype=np.float32)
        if a.ndim == 4:
            a = a.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        values[path] = variables[path].replace(jnp.asarray(a))
    return nnx.merge(graphdef, nnx.from_flat_state(values))
