"""jaxmetric.models.load_torchvision_resnet: torchvision ResNet weights in the NNX ResNet.

The parity tests (marked ``torch``, run in ``.venv-bench`` by ``make test``)
build a PyTorch ResNet written here with torchvision's module and key names
(torchvision's wheels do not load against torch 2.13.0+cpu), give it random
weights and random BatchNorm running statistics, and compare its pooled
features in eval mode (float64) with the loaded encoder's (float32). The other
tests need no torch: key / shape errors and the file formats.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

try:
    import torch
    from torch import nn
except ModuleNotFoundError:  # .venv: the torch tests are deselected there (tests/conftest.py).
    torch = nn = None

import jax
from flax import nnx

from jaxmetric.models import load_torchvision_resnet, read_safetensors, torchvision_resnet_keys

FEATURES = {18: 512, 50: 2048}


# --- a PyTorch ResNet with torchvision's layout (torchvision/models/resnet.py) ---------


def _torch_resnet(depth: int, seed: int = 0):
    def conv3x3(i, o, stride=1):
        return nn.Conv2d(i, o, 3, stride, padding=1, bias=False)

    def conv1x1(i, o, stride=1):
        return nn.Conv2d(i, o, 1, stride, bias=False)

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = conv3x3(inplanes, planes, stride)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = conv3x3(planes, planes)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = conv1x1(inplanes, planes)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = conv3x3(planes, planes, stride)  # the stride on the 3x3 ("v1.5")
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = conv1x1(planes, planes * 4)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class ResNet(nn.Module):
        def __init__(self, block, layers, num_classes=1000):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(block, 64, layers[0])
            self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
            self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
            self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * block.expansion, num_classes)

        def _make_layer(self, block, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    conv1x1(self.inplanes, planes * block.expansion, stride),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            layers = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*layers)

        def features(self, x):  # fc's input
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return torch.flatten(self.avgpool(x), 1)

    torch.manual_seed(seed)
    block, layers = {18: (BasicBlock, [2, 2, 2, 2]), 50: (Bottleneck, [3, 4, 6, 3])}[depth]
    model = ResNet(block, layers)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):  # random affine and running statistics
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def _parity(depth, tmp_path):
    model = _torch_resnet(depth)
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    x = np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = model.double().features(torch.from_numpy(x).double()).numpy()
    assert want.shape == (2, FEATURES[depth])
    assert np.abs(want).max() > 1e-2  # non-degenerate features

    np.savez(tmp_path / "resnet.npz", **sd)
    import safetensors.torch

    safetensors.torch.save_file(model.float().state_dict(), str(tmp_path / "resnet.safetensors"))
    features = nnx.jit(lambda m, x: m(x, train=False))
    for source in (sd, tmp_path / "resnet.npz", str(tmp_path / "resnet.safetensors")):
        encoder = load_torchvision_resnet(source, depth)
        assert encoder.num_features == FEATURES[depth]
        got = np.asarray(features(encoder, x.transpose(0, 2, 3, 1)))
        np.testing.assert_allclose(
            got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max(), err_msg=str(source)
        )
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.torch
@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_resnet_parity(depth, tmp_path):
    """Pooled features equal the PyTorch ResNet's in eval mode, from the dict, a
    .npz and a .safetensors written by the safetensors package."""
    _parity(depth, tmp_path)


# --- no torch ---------------------------------------------------------------------------


def _random_state_dict(depth, seed=0):
    rng = np.random.default_rng(seed)
    sd = {
        k: rng.normal(size=shape).astype(np.float32)
        for k, (shape, _) in torchvision_resnet_keys(depth).items()
    }
    sd["fc.weight"] = np.zeros((10, FEATURES[depth]), np.float32)
    sd["fc.bias"] = np.zeros(10, np.float32)
    sd["bn1.num_batches_tracked"] = np.array(3)
    return sd


def _write_safetensors(path, arrays):
    """A minimal writer following the format's spec (dtype names, offsets)."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header, blobs, offset = {"__metadata__": {"format": "np"}}, [], 0
    for k, a in arrays.items():
        b = np.ascontiguousarray(a).tobytes()
        header[k] = {
            "dtype": names[a.dtype],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def test_torchvision_keys_cover_the_encoder():
    keys18, keys50 = torchvision_resnet_keys(18), torchvision_resnet_keys(50)
    assert len(keys18) == 100 and len(keys50) == 265  # torchvision's, minus fc / counters
    assert keys18["layer2.0.downsample.0.weight"][0] == (128, 64, 1, 1)
    assert "layer1.0.downsample.0.weight" not in keys18
    assert keys50["layer1.0.downsample.0.weight"][0] == (256, 64, 1, 1)
    assert keys50["layer3.5.conv3.weight"][0] == (1024, 256, 1, 1)
    assert keys50["layer4.2.bn3.running_var"][0] == (2048,)


def test_layouts_and_files(tmp_path):
    """OIHW -> HWIO and BN names land on the right variables; .npz and
    .safetensors load the same as the dict."""
    sd = _random_state_dict(18)
    encoder = load_torchvision_resnet(sd, 18)
    np.testing.assert_array_equal(
        encoder.stem_conv.kernel[...], sd["conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(encoder.stem_norm.mean[...], sd["bn1.running_mean"])
    np.testing.assert_array_equal(encoder.blocks[2].norms[1].scale[...], sd["layer2.0.bn2.weight"])
    np.testing.assert_array_equal(
        encoder.blocks[2].proj_norm.var[...], sd["layer2.0.downsample.1.running_var"]
    )
    np.testing.assert_array_equal(
        encoder.blocks[7].convs[1].kernel[...], sd["layer4.1.conv2.weight"].transpose(2, 3, 1, 0)
    )
    np.savez(tmp_path / "r.npz", **sd)
    _write_safetensors(tmp_path / "r.safetensors", sd)
    np.testing.assert_array_equal(
        read_safetensors(tmp_path / "r.safetensors")["conv1.weight"], sd["conv1.weight"]
    )
    want = nnx.split(encoder)[1]
    for path in (tmp_path / "r.npz", tmp_path / "r.safetensors"):
        got = nnx.split(load_torchvision_resnet(path, 18))[1]
        jax.tree.map(np.testing.assert_array_equal, got, want)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda sd: sd.pop("layer3.1.bn2.running_mean"), "missing keys: layer3.1.bn2.running_mean"),
        (lambda sd: sd.update(extra=np.zeros(3)), "unexpected keys: extra"),
        (
            lambda sd: sd.update({"layer1.0.conv1.weight": np.zeros((64, 64, 1, 1))}),
            r"mis-shaped keys: layer1.0.conv1.weight: \(64, 64, 1, 1\), expected \(64, 64, 3, 3\)",
        ),
    ],
)
def test_bad_state_dicts_name_the_key(edit, match):
    sd = _random_state_dict(18)
    edit(sd)
    with pytest.raises(ValueError, match=match):
        load_torchvision_resnet(sd, 18)


def test_bad_arguments(tmp_path):
    sd = _random_state_dict(18)
    with pytest.raises(ValueError, match="missing keys: .*layer1.2.conv3.weight"):
        load_torchvision_resnet(sd, 50)  # a ResNet-18 dict for a ResNet-50
    with pytest.raises(ValueError, match="`depth` must be one of"):
        load_torchvision_resnet(sd, 34)
    with pytest.raises(ValueError, match=".npz or .safetensors"):
        load_torchvision_resnet(str(tmp_path / "r.pth"), 18)
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}xxxxxx")
    with pytest.raises(ValueError, match="not JSON"):
        load_torchvision_resnet(tmp_path / "bad.safetensors", 18)


def test_model_config_pretrained_starts_the_encoder_from_the_weights(tmp_path):
    """``model.pretrained``: the trainer's model (encoder + head) starts its
    encoder from the file; the head keeps its own initialisation."""
    from jaxmetric.models import build_model, model_config

    sd = _random_state_dict(18)
    np.savez(tmp_path / "r18.npz", **sd)
    cfg = model_config()
    cfg.update(
        encoder="resnet18", stem="imagenet", head="simclr", pretrained=str(tmp_path / "r18.npz")
    )
    model = build_model(cfg, (32, 32, 3))
    want = nnx.split(load_torchvision_resnet(sd, 18))[1]
    jax.tree.map(np.testing.assert_array_equal, nnx.split(model.encoder)[1], want)
    assert model(np.zeros((2, 32, 32, 3), np.float32), train=False)[1].shape == (2, cfg.embed_dim)

    for field, value, match in [
        ("stem", "cifar", "`model.pretrained`"),
        ("encoder", "cnn2d", "`model.pretrained`"),
        ("pretrained", str(tmp_path / "absent.npz"), "no file"),
    ]:
        bad = cfg.copy_and_resolve_references()
        bad[field] = value
        with pytest.raises(ValueError, match=match):
            build_model(bad, (32, 32, 3))
    with pytest.raises(ValueError, match="input channels"):
        build_model(cfg, (32, 32, 1))
