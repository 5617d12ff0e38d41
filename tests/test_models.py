"""Models: shapes, parameter counts against torchvision, initialisation
against its formula, and forward passes against NumPy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxmetric.models import CNN1D, MLP, ResNet, build_model, model_config


def _numpy_conv1d(x, kernel, bias, stride, pad):
    """x [L, Cin], kernel [K, Cin, Cout] (cross-correlation, as torch / XLA)."""
    x = np.pad(x, ((pad, pad), (0, 0)))
    k = kernel.shape[0]
    out_len = (x.shape[0] - k) // stride + 1
    out = np.zeros((out_len, kernel.shape[2]))
    for i in range(out_len):
        window = x[i * stride : i * stride + k]  # [K, Cin]
        out[i] = np.einsum("kc,kco->o", window, kernel) + bias
    return out


def test_cnn1d_matches_numpy_and_has_125_features():
    model = CNN1D(40, 25, rngs=nnx.Rngs(params=0))
    assert model.num_features == 125
    x = np.asarray(jax.random.normal(jax.random.key(1), (3, 40)))
    got = np.asarray(model(jnp.asarray(x)))
    for n in range(3):
        h = x[n][:, None]
        for layer in model.convs:
            h = np.maximum(
                _numpy_conv1d(h, np.asarray(layer.kernel[...]), np.asarray(layer.bias[...]), 2, 1),
                0,
            )
        assert h.shape == (5, 25)
        np.testing.assert_allclose(got[n], h.reshape(-1), rtol=1e-5, atol=1e-5)


def test_mlp_matches_numpy():
    model = MLP(6, [5, 4], 3, rngs=nnx.Rngs(params=0))
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 6)))
    h = x
    for layer in model.hidden:
        h = np.maximum(h @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...]), 0)
    want = h @ np.asarray(model.out.kernel[...]) + np.asarray(model.out.bias[...])
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(x))), want, rtol=1e-5, atol=1e-6)


def test_torch_init_is_uniform_fan_in():
    # PyTorch: kaiming_uniform_(a=sqrt(5)) => U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same for bias.
    model = CNN1D(40, 25, init="torch", rngs=nnx.Rngs(params=0))
    kernel = np.asarray(model.convs[1].kernel[...])  # [3, 25, 25]
    bias = np.asarray(model.convs[1].bias[...])
    bound = 1 / math.sqrt(3 * 25)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    # Uniform on [-b, b]: std b / sqrt(3); 1,875 draws give ~2% precision.
    assert abs(kernel.std() - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)
    assert np.abs(bias).max() > 0.5 * bound
    flax_model = CNN1D(40, 25, init="flax", rngs=nnx.Rngs(params=0))
    assert np.all(np.asarray(flax_model.convs[1].bias[...]) == 0)
    with pytest.raises(ValueError, match="model.init"):
        CNN1D(40, 25, init="kaiming", rngs=nnx.Rngs(params=0))


def _num_params(module):
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize(
    "depth,stem,expected",
    [
        # torchvision resnet18 / resnet50 minus their 1000-way fc layer.
        (18, "imagenet", 11_689_512 - 513_000),
        (50, "imagenet", 25_557_032 - 2_049_000),
        # CIFAR stem: a 3x3 instead of a 7x7 first conv.
        (18, "cifar", 11_689_512 - 513_000 - (49 - 9) * 3 * 64),
    ],
)
def test_resnet_parameter_counts_match_torchvision(depth, stem, expected):
    model = nnx.eval_shape(lambda: ResNet(depth, stem=stem, rngs=nnx.Rngs(params=0)))
    assert _num_params(model) == expected
    assert model.num_features == (512 if depth == 18 else 2048)


def test_build_model_heads_and_bn_running_stats():
    cfg = model_config()
    cfg.use_bn = True
    cfg.head_bn = True
    model = build_model(cfg, (40,))
    x = jax.random.normal(jax.random.key(0), (8, 40))
    h, z = model(x, train=True)
    assert h.shape == (8, 125) and z.shape == (8, 16)
    # Train mode moved the running mean towards the batch mean; eval mode uses it.
    mean = np.asarray(model.head.norms[0].mean[...])
    assert np.any(mean != 0)
    h_eval, _ = model(x, train=False)
    assert not np.allclose(np.asarray(h_eval), np.asarray(h))
    cfg.head = "moco_v2"
    _, z = build_model(cfg, (40,))(x)
    assert z.shape == (8, 16)
    cfg.encoder = "bogus"
    with pytest.raises(ValueError, match="model.encoder"):
        build_model(cfg, (40,))
