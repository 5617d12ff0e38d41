"""BYOL, SimSiam, Barlow Twins, VICReg and MoCo v3 losses: NumPy-loop
references in float64, sharded (shard_map, pmap) == single device on 8
simulated devices, robustness, validation, stop-gradients, docstrings."""

from __future__ import annotations

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxmetric as jm
from jaxmetric.losses import noncontrastive

NUM_DEVICES = 8
LOCAL = 4
GLOBAL = NUM_DEVICES * LOCAL
IN_DIM, EMB_DIM = 6, 5
ATOL = 1e-5


# --- NumPy references, written from the papers' formulas --------------------


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ref_byol(p, t, mask):
    p, t = _unit(p), _unit(t)
    terms = [np.sum((p[i] - t[i]) ** 2) for i in range(len(p)) if mask[i]]
    return np.mean(terms) if terms else 0.0


def ref_simsiam(p, t, mask):
    p, t = _unit(p), _unit(t)
    terms = [-np.dot(p[i], t[i]) for i in range(len(p)) if mask[i]]
    return np.mean(terms) if terms else 0.0


def ref_barlow_twins(z1, z2, mask, lambda_offdiag=5e-3, eps=1e-5):
    z1, z2 = z1[mask], z2[mask]
    n, d = z1.shape

    def standardise(z):
        mu = z.mean(0)
        var = ((z - mu) ** 2).mean(0)  # biased, as BatchNorm in training mode
        return (z - mu) / np.sqrt(var + eps)

    a, b = standardise(z1), standardise(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambda_offdiag * c**2
    return loss


def ref_vicreg(z1, z2, mask, sim=25.0, var=25.0, cov=1.0, eps=1e-4):
    z1, z2 = z1[mask], z2[mask]
    n, d = z1.shape
    invariance = np.mean((z1 - z2) ** 2)

    def regularisers(z):
        zc = z - z.mean(0)
        v = np.mean([max(0.0, 1 - np.sqrt(zc[:, j] @ zc[:, j] / (n - 1) + eps)) for j in range(d)])
        c = sum((zc[:, i] @ zc[:, j] / (n - 1)) ** 2 for i in range(d) for j in range(d) if i != j)
        return v, c / d

    v1, c1 = regularisers(z1)
    v2, c2 = regularisers(z2)
    return sim * invariance + var * (v1 + v2) / 2 + cov * (c1 + c2)


def ref_mocov3(q, k, mask, temperature=0.2):
    q, k = _unit(q), _unit(k)
    terms = []
    for i in range(len(q)):
        if not mask[i]:
            continue
        logits = [q[i] @ k[j] / temperature for j in range(len(k)) if mask[j]]
        terms.append(-(q[i] @ k[i] / temperature) + np.log(np.sum(np.exp(logits))))
    return 2 * temperature * np.mean(terms) if terms else 0.0


REFERENCE = {
    "byol": (jm.byol_loss, ref_byol, {}),
    "simsiam": (jm.simsiam_loss, ref_simsiam, {}),
    "barlow_twins": (jm.barlow_twins_loss, ref_barlow_twins, {}),
    "barlow_twins_lambda": (
        functools.partial(jm.barlow_twins_loss, lambda_offdiag=0.1),
        functools.partial(ref_barlow_twins, lambda_offdiag=0.1),
        {},
    ),
    "vicreg": (jm.vicreg_loss, ref_vicreg, {}),
    "vicreg_weights": (
        functools.partial(jm.vicreg_loss, sim_weight=1.0, var_weight=2.0, cov_weight=3.0),
        functools.partial(ref_vicreg, sim=1.0, var=2.0, cov=3.0),
        {},
    ),
    "mocov3": (jm.mocov3_loss, ref_mocov3, {}),
    "mocov3_t1": (
        functools.partial(jm.mocov3_loss, temperature=1.0),
        functools.partial(ref_mocov3, temperature=1.0),
        {},
    ),
}


@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", sorted(REFERENCE))
def test_matches_numpy_reference(case, masked):
    loss_fn, ref_fn, _ = REFERENCE[case]
    rng = np.random.default_rng(len(case))
    # Correlated views with unequal column scales: every term matters.
    a = rng.normal(size=(12, 7)) * rng.uniform(0.3, 2.0, size=7)
    b = a + 0.5 * rng.normal(size=a.shape) + 0.2
    mask = np.ones(12, bool)
    if masked:
        mask[[1, 5, 6]] = False
    expected = ref_fn(a, b, mask)
    got = loss_fn(
        jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), mask=None if not masked else mask
    )
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), expected, rtol=2e-5, atol=1e-5)


def test_barlow_twins_perfect_views_give_zero():
    # Identical views with centred, orthogonal columns of unit variance: C = I.
    a = np.random.default_rng(0).normal(size=(12, 7))
    q, _ = np.linalg.qr(a - a.mean(0))  # columns stay centred
    z = jnp.asarray(q / q.std(0), jnp.float32)
    assert float(jm.barlow_twins_loss(z, z, lambda_offdiag=0.0)) < 1e-3


# --- Sharded == single device ------------------------------------------------


def _mesh():
    return jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _embed(params, x):
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


SHARDED = {
    "byol": jm.byol_loss,
    "simsiam": jm.simsiam_loss,
    "barlow_twins": functools.partial(jm.barlow_twins_loss, lambda_offdiag=0.05),
    "vicreg": jm.vicreg_loss,
    "mocov3": jm.mocov3_loss,
}


def _loss(case, params, x1, x2, mask, axis_name):
    z1 = _embed(params, x1)
    z2 = _embed(params, x2) @ params["w3"]  # a second branch, so both views carry gradient
    return SHARDED[case](z1, z2, mask=mask, axis_name=axis_name)


@functools.cache
def _single(case):
    return jax.jit(jax.value_and_grad(functools.partial(_loss, case, axis_name=None)))


@functools.cache
def _shard_map(case):
    def step(p, x1, x2, mask):
        value, grads = jax.value_and_grad(lambda p: _loss(case, p, x1, x2, mask, "data"))(p)
        return value[None], jax.tree.map(lambda a: a[None], grads)

    return jax.jit(
        jax.shard_map(
            step,
            mesh=_mesh(),
            in_specs=(P(), P("data"), P("data"), P("data")),
            out_specs=(P("data"), P("data")),
        )
    )


@functools.cache
def _pmap(case):
    def step(p, x1, x2, mask):
        value, grads = jax.value_and_grad(lambda p: _loss(case, p, x1, x2, mask, "data"))(p)
        return value, jax.lax.pmean(grads, "data")

    return jax.pmap(step, axis_name="data", in_axes=(None, 0, 0, 0))


def _split(a):
    return a.reshape(NUM_DEVICES, -1, *a.shape[1:])


@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", sorted(SHARDED))
def test_sharded_equals_single_device(case, masked):
    assert len(jax.devices()) == NUM_DEVICES
    rng = np.random.default_rng(len(case) + masked)
    params = {
        "w1": jnp.asarray(rng.normal(size=(IN_DIM, 8)) / np.sqrt(IN_DIM), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(8, EMB_DIM)) / np.sqrt(8), jnp.float32),
        "w3": jnp.asarray(np.eye(EMB_DIM) + 0.3 * rng.normal(size=(EMB_DIM, EMB_DIM)), jnp.float32),
    }
    x1 = rng.normal(size=(GLOBAL, IN_DIM))
    x2 = jnp.asarray(x1 + 0.3 * rng.normal(size=x1.shape), jnp.float32)
    x1 = jnp.asarray(x1, jnp.float32)
    mask = np.ones(GLOBAL, bool)
    if masked:
        mask[rng.choice(GLOBAL, size=5, replace=False)] = False
    mask = jnp.asarray(mask)
    value, grads = _single(case)(params, x1, x2, mask)
    results = {"shard_map": _shard_map(case)(params, x1, x2, mask)}
    if case == "barlow_twins":  # pmap too, for the loss with the most collectives
        results["pmap"] = _pmap(case)(params, _split(x1), _split(x2), _split(mask))
    for mapper, (values, sharded_grads) in results.items():
        np.testing.assert_allclose(
            np.asarray(values), np.full(NUM_DEVICES, value), rtol=1e-5, atol=ATOL, err_msg=mapper
        )
        for name in grads:
            expected = np.broadcast_to(np.asarray(grads[name]), sharded_grads[name].shape)
            if name != "w3" or case in ("barlow_twins", "vicreg"):
                assert np.abs(expected).max() > 1e-4, name  # the gradient is not trivially 0
            np.testing.assert_allclose(
                np.asarray(sharded_grads[name]),
                expected,
                rtol=1e-4,
                atol=ATOL,
                err_msg=f"{mapper} {name}",
            )


# --- Stop-gradients, robustness, validation ----------------------------------


NAMES = ["byol_loss", "simsiam_loss", "barlow_twins_loss", "vicreg_loss", "mocov3_loss"]
SHAPE = (12, 7)  # one shape for the tests below: one compilation per loss


@functools.cache
def _value_and_grads(name):
    """Jitted (a, b, mask) -> (loss, (d/da, d/db))."""
    fn = getattr(jm, name)
    return jax.jit(jax.value_and_grad(lambda a, b, m: fn(a, b, mask=m), argnums=(0, 1)))


@pytest.mark.parametrize("name", NAMES)
def test_degenerate_inputs_and_stop_gradient(name):
    fn = _value_and_grads(name)
    ones, zeros, valid = jnp.ones(SHAPE), jnp.zeros(SHAPE), jnp.ones(SHAPE[0], bool)
    cases = {
        "identical rows": (ones, ones),
        "zero vectors": (zeros, zeros),
        "tiny": (1e-30 * ones, ones),
    }
    for what, (a, b) in cases.items():
        value, grads = fn(a, b, valid)
        assert np.isfinite(float(value)), what
        for g in grads:
            assert np.all(np.isfinite(np.asarray(g))), what
    a, b = jax.random.normal(jax.random.key(0), (2, *SHAPE))
    # No valid row: 0.0 and a zero gradient.
    value, grads = fn(a, b, jnp.zeros(SHAPE[0], bool))
    assert float(value) == 0.0
    for g in grads:
        np.testing.assert_array_equal(np.asarray(g), 0.0)
    # Targets (BYOL, SimSiam) and keys (MoCo v3) carry no gradient; both
    # views of Barlow Twins and VICReg do.
    _, (g_a, g_b) = fn(a, b, valid)
    assert np.abs(np.asarray(g_a)).max() > 1e-4
    if name in ("byol_loss", "simsiam_loss", "mocov3_loss"):
        np.testing.assert_array_equal(np.asarray(g_b), 0.0)
    else:
        assert np.abs(np.asarray(g_b)).max() > 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_inputs(name):
    a, b = jax.random.normal(jax.random.key(2), (2, *SHAPE))
    b = a + 0.3 * b
    fn = jax.jit(getattr(jm, name))
    value = fn(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(float(value), float(fn(a, b)), rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda a, b: jm.byol_loss(a, b[:3]), "`predictions` and `targets`"),
        (lambda a, b: jm.simsiam_loss(a[0], b), "`predictions` must be 2-D"),
        (lambda a, b: jm.barlow_twins_loss(a, b, lambda_offdiag=-1.0), "`lambda_offdiag`"),
        (lambda a, b: jm.barlow_twins_loss(a, b, epsilon=0.0), "`epsilon`"),
        (lambda a, b: jm.vicreg_loss(a, b, var_weight=-1.0), "`var_weight`"),
        (lambda a, b: jm.vicreg_loss(a, b, mask=jnp.ones(3, bool)), "`mask`"),
        (lambda a, b: jm.mocov3_loss(a, b, temperature=0.0), "`temperature`"),
        (lambda a, b: jm.mocov3_loss(a, b.astype(jnp.int32)), "`keys` must be a floating"),
        (lambda a, b: jm.byol_loss(a, b, axis_name="data"), "`axis_name`='data' is not bound"),
    ],
)
def test_bad_input_raises(call, match):
    a, b = jnp.ones((4, 3)), jnp.ones((4, 3))
    with pytest.raises(ValueError, match=match):
        call(a, b)


def test_docstring_examples():
    result = doctest.testmod(noncontrastive, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_momentum_schedule_is_byols_cosine():
    # tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 (Grill et al. 2020, 3.2).
    from jaxmetric.train.steps import momentum_schedule

    steps = jnp.asarray([0, 25, 50, 100, 150], jnp.int32)
    got = np.asarray(momentum_schedule(0.99, 1.0, steps, 100))
    want = 1 - 0.01 * (np.cos(np.pi * np.minimum(np.asarray(steps), 100) / 100) + 1) / 2
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert got[0] == np.float32(0.99) and got[-1] == 1.0
