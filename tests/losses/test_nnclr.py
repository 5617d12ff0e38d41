"""nnclr_loss and support_nearest_neighbors against a NumPy loop; 8 devices == 1."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxmetric as jm


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x), 1e-12)


def _reference(z1, z2, support, temperature, support_mask, mask) -> float:
    """The paper's eq. 2 as loops over examples, in float64."""
    z1, z2, support = (np.asarray(a, np.float64) for a in (z1, z2, support))
    losses = []
    for i in range(len(z1)):
        if not mask[i]:
            continue
        best, nearest = -np.inf, _unit(z1[i])  # no valid support row: itself
        for j in range(len(support)):
            sim = _unit(z1[i]) @ _unit(support[j])
            if support_mask[j] and sim > best:  # strict: ties keep the lower index
                best, nearest = sim, _unit(support[j])
        logits = [nearest @ _unit(z2[k]) / temperature for k in range(len(z2)) if mask[k]]
        positive = nearest @ _unit(z2[i]) / temperature
        losses.append(np.log(np.sum(np.exp(logits))) - positive)
    return float(np.mean(losses)) if losses else 0.0


def _data(batch=12, dim=6, size=10, seed=0, masked=True):
    rng = np.random.default_rng(seed)
    z1, z2 = rng.normal(size=(2, batch, dim)).astype(np.float32)
    support = rng.normal(size=(size, dim)).astype(np.float32)
    support_mask = rng.random(size) < 0.7
    mask = rng.random(batch) < 0.8 if masked else np.ones(batch, bool)
    return z1, z2, support, support_mask, mask


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("case", ["masked", "full", "empty_support", "nothing_valid"])
def test_value_matches_numpy_loop(temperature, case):
    z1, z2, support, support_mask, mask = _data(masked=case == "masked")
    if case == "empty_support":
        support_mask[:] = False
    if case == "nothing_valid":
        mask[:] = False
    got = jm.nnclr_loss(
        z1, z2, support, temperature=temperature, support_mask=support_mask, mask=mask
    )
    want = _reference(z1, z2, support, temperature, support_mask, mask)
    np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)
    assert np.isfinite(float(got))


def test_gradient_matches_finite_differences_of_the_reference():
    z1, z2, support, support_mask, mask = _data(batch=5, dim=3, size=4, seed=1)
    grads = jax.grad(jm.nnclr_loss, argnums=(0, 1, 2))(
        z1, z2, support, temperature=0.5, support_mask=support_mask, mask=mask
    )
    # Only the second view is differentiated: the neighbour carries no gradient.
    np.testing.assert_array_equal(np.asarray(grads[0]), 0.0)
    np.testing.assert_array_equal(np.asarray(grads[2]), 0.0)
    eps, z2_64 = 1e-6, z2.astype(np.float64)
    numeric = np.zeros_like(z2_64)
    for index in np.ndindex(z2.shape):
        up, down = z2_64.copy(), z2_64.copy()
        up[index] += eps
        down[index] -= eps
        numeric[index] = (
            _reference(z1, up, support, 0.5, support_mask, mask)
            - _reference(z1, down, support, 0.5, support_mask, mask)
        ) / (2 * eps)
    np.testing.assert_allclose(np.asarray(grads[1]), numeric, atol=2e-4)


def test_nearest_neighbors_match_numpy_argmax_and_break_ties_low():
    z1, _, support, support_mask, _ = _data()
    support[7] = support[2] * 3.0  # the same direction: a tie, index 2 wins
    got = np.asarray(jm.losses.support_nearest_neighbors(z1, support, support_mask))
    unit = support / np.linalg.norm(support, axis=1, keepdims=True)
    sims = np.where(support_mask, (z1 / np.linalg.norm(z1, axis=1, keepdims=True)) @ unit.T, -2)
    np.testing.assert_allclose(got, unit[np.argmax(sims, axis=1)], atol=1e-6)


def test_bad_inputs_name_the_argument():
    z1, z2, support, _, _ = _data()
    with pytest.raises(ValueError, match="temperature"):
        jm.nnclr_loss(z1, z2, support, temperature=0.0)
    with pytest.raises(ValueError, match="support"):
        jm.nnclr_loss(z1, z2, support[:, :3])
    with pytest.raises(ValueError, match="z2"):
        jm.nnclr_loss(z1, z2[:5], support)
    with pytest.raises(ValueError, match="support_mask"):
        jm.nnclr_loss(z1, z2, support, support_mask=np.ones(3, bool))


NUM_DEVICES = 8


def _model(params, x):
    return jnp.tanh(x @ params["w"])


def _loss(params, x1, x2, mask, support, support_mask, axis_name=None):
    z1, z2 = _model(params, x1), _model(params, x2)
    return 0.5 * (
        jm.nnclr_loss(z1, z2, support, support_mask=support_mask, mask=mask, axis_name=axis_name)
        + jm.nnclr_loss(z2, z1, support, support_mask=support_mask, mask=mask, axis_name=axis_name)
    )


@pytest.mark.parametrize("transform", ["shard_map", "pmap"])
def test_eight_devices_equal_one_device(transform):
    rng = np.random.default_rng(2)
    batch, dim = 2 * NUM_DEVICES, 5
    params = {"w": jnp.asarray(rng.normal(size=(dim, 4)), jnp.float32)}
    x1, x2 = (jnp.asarray(a, jnp.float32) for a in rng.normal(size=(2, batch, dim)))
    mask = jnp.asarray(rng.random(batch) < 0.8)
    support = jnp.asarray(rng.normal(size=(9, 4)), jnp.float32)
    support_mask = jnp.asarray(rng.random(9) < 0.7)
    want, want_grad = jax.value_and_grad(_loss)(params, x1, x2, mask, support, support_mask)
    loss = functools.partial(_loss, axis_name="data")
    if transform == "shard_map":
        mesh = jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
        fn = jax.jit(
            jax.shard_map(
                jax.value_and_grad(loss),
                mesh=mesh,
                in_specs=(P(), P("data"), P("data"), P("data"), P(), P()),
                out_specs=(P(), P()),
            )
        )
        got, got_grad = fn(params, x1, x2, mask, support, support_mask)
    else:

        def per_device(p, a, b, m, s, sm):
            value, grad = jax.value_and_grad(loss)(p, a, b, m, s, sm)
            return value, jax.lax.pmean(grad, "data")

        def shard(a):
            return a.reshape(NUM_DEVICES, -1, *a.shape[1:])

        fn = jax.pmap(per_device, axis_name="data", in_axes=(None, 0, 0, 0, None, None))
        values, grads = fn(params, shard(x1), shard(x2), shard(mask), support, support_mask)
        np.testing.assert_allclose(np.asarray(values), float(values[0]), rtol=1e-6)
        got, got_grad = values[0], jax.tree.map(lambda g: g[0], grads)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got_grad["w"]), np.asarray(want_grad["w"]), atol=1e-5)
