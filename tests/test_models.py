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


def _bn_step(freeze_bn: bool):
    """One supervised train step of a CNN2D with BatchNorm (and a BN head)."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxmetric.train import create_train_state, make_mesh, make_train_step, validate_config
    from jaxmetric.train.config import base_config
    from jaxmetric.train.optim import make_optimizer

    c = base_config()
    c.method = "supervised"
    c.dataset.name = "digits"
    c.augment.kind = "none"
    c.model.update(encoder="cnn2d", cnn_widths=(4, 6), use_bn=True, head="simclr", head_bn=True)
    c.model.update(head_hidden=5, embed_dim=3, freeze_bn=freeze_bn)
    c.batch_size = 8
    c.optimizer.learning_rate = 0.1
    validate_config(c, num_devices=1)
    tx, _ = make_optimizer(c.optimizer, c.batch_size, c.num_steps)
    graphdef, state = create_train_state(c, (8, 8), tx)
    mesh = make_mesh(1)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    x = jax.random.uniform(jax.random.key(1), (8, 8, 8)) * 3.0 + 1.0  # far from N(0, 1)
    y = jnp.repeat(jnp.arange(2), 4)
    new, _ = make_train_step(c, graphdef, tx, mesh)(state, x, y)
    return c, state, new, x


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_freeze_bn_keeps_the_encoder_bn_in_inference_mode(freeze_bn):
    from jaxmetric.train.state import merge_model, split_model

    c, old, new, x = _bn_step(freeze_bn)

    def unchanged(part, a, b):
        pairs = zip(jax.tree.leaves(a[part]), jax.tree.leaves(b[part]), strict=True)
        return [np.array_equal(u, v) for u, v in pairs]

    # Frozen: the encoder's running statistics did not move (PyTorch's .eval()).
    same = unchanged("encoder", old.batch_stats, new.batch_stats)
    assert all(same) if freeze_bn else not any(same)
    # The head's BatchNorm still trains, and the encoder's BN scale / bias are
    # still trained (PML's freeze_trunk_batchnorm leaves them to the optimiser).
    assert not any(unchanged("head", old.batch_stats, new.batch_stats))
    assert not any(unchanged("norms", old.params["encoder"], new.params["encoder"]))
    # The reference: the encoder in eval mode (running statistics); the same
    # model without the device axis of global BN, holding the new state.
    graphdef = split_model(build_model(c.model, (8, 8)))[0]
    model = merge_model(graphdef, new.params, new.batch_stats)
    h_train = np.asarray(model(x, train=True)[0])
    h_eval = np.asarray(model(x, train=False)[0])
    if freeze_bn:
        np.testing.assert_array_equal(h_train, h_eval)
    else:
        assert not np.allclose(h_train, h_eval, atol=1e-3)


def test_freeze_bn_must_be_a_bool():
    import ml_collections

    # A config read back from JSON (a checkpoint) is not type-checked by ml_collections.
    cfg = ml_collections.ConfigDict({**model_config().to_dict(), "freeze_bn": "yes"})
    with pytest.raises(ValueError, match="model.freeze_bn"):
        build_model(cfg, (40,))


def test_input_norm_imagenet_is_torchvision_normalize():
    cfg = model_config()
    cfg.update(encoder="cnn2d", cnn_widths=(4,), head="linear", embed_dim=3)
    plain = build_model(cfg, (6, 6, 3))
    cfg.input_norm = "imagenet"
    normed = build_model(cfg, (6, 6, 3))  # same seed: same parameters
    x = np.asarray(jax.random.uniform(jax.random.key(0), (2, 6, 6, 3)))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    want = plain(jnp.asarray((x - mean) / std, jnp.float32), train=False)[1]
    got = normed(jnp.asarray(x), train=False)[1]
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    cfg.input_norm = "cifar"
    with pytest.raises(ValueError, match="model.input_norm"):
        build_model(cfg, (6, 6, 3))


def test_max_pool_2x2_equals_a_numpy_loop_and_reduce_window_gradient():
    from jaxmetric.models.cnn import max_pool_2x2

    x = jax.random.normal(jax.random.key(3), (2, 7, 6, 3))  # odd height: the last row dropped
    want = np.empty((2, 3, 3, 3), np.float32)
    xn = np.asarray(x)
    for i in range(3):
        for j in range(3):
            want[:, i, j] = xn[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].max(axis=(1, 2))
    np.testing.assert_array_equal(np.asarray(max_pool_2x2(x)), want)
    # No ties in random floats: the gradient is reduce_window's (nnx.max_pool's).
    w = jax.random.normal(jax.random.key(4), want.shape)
    ours = jax.grad(lambda v: jnp.sum(max_pool_2x2(v) * w))(x)
    theirs = jax.grad(lambda v: jnp.sum(nnx.max_pool(v, (2, 2), strides=(2, 2)) * w))(x)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
