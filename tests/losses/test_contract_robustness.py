"""No NaN or Inf, the zero-loss cases, and padding masks, for every case of the registry.

The kernel contract: no valid pair / triplet / positive in the batch gives
0.0 with a finite (zero) gradient, never NaN or Inf, also for identical
embeddings, zero vectors, huge and tiny scales, low temperature and half
precision (computed in float32 internally); padded rows (``mask``) change
nothing and get zero gradient.

Each case is called as ``loss(first, second, labels, weights, ...)``
(tests/losses/cases.py); the gradient is taken with respect to the first
argument, the second (another view, keys, positives: by default a fixed
transform of the first, so that masking row i masks the whole pair) and the
class weights / proxies. The queue and the memory are constants.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm
from tests.losses import cases

FAMILY = "robustness"
CASES = cases.for_family(FAMILY)

B, D = 12, 6
C = 4  # classes of the weights / proxies
W = jax.random.normal(jax.random.key(3), (C, D))
QUEUE = jax.random.normal(jax.random.key(7), (8, D))
QUEUE_MASK = jnp.arange(8) % 3 != 0
MEMORY = jm.MemoryQueue(
    embeddings=jax.random.normal(jax.random.key(4), (6, D)),
    labels=jnp.array([0, 1, 2, 3, 0, 100], jnp.int32),
    valid=jnp.ones(6, bool),
    pointer=jnp.zeros((), jnp.int32),
)
DEFAULT_TEMPERATURE = 0.1
LOW_TEMPERATURE = 0.01  # the lowest the contract asks for: the hardest case


def partner(e):
    """The second element of pair i: exact in every dtype, a function of row i only."""
    return 0.5 * e[:, ::-1]


def own_temperature(case: cases.Case) -> float:
    """The temperature of the case's hyper-parameters, else the loss's default."""
    if "temperature" in case.hyper:
        return case.hyper["temperature"]
    return inspect.signature(case.fn).parameters["temperature"].default


def temperatures(case: cases.Case) -> tuple:
    """The case's own temperature, the default of these tests and the lowest
    (None for a loss without one)."""
    if not case.takes_temperature:
        return (None,)
    return tuple(sorted({own_temperature(case), DEFAULT_TEMPERATURE, LOW_TEMPERATURE}))


@functools.cache
def _compiled(case: cases.Case, temperature):
    """One jitted value-and-grad per (case, temperature), reused across tests."""

    def loss(first, second, weights, labels, mask):
        return case.call(
            first,
            second,
            labels,
            weights=weights,
            queue=QUEUE,
            queue_mask=QUEUE_MASK,
            memory=MEMORY,
            mask=mask,
            temperature=temperature,
        )

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def value_and_grads(
    case, emb, labels, mask=None, temperature=DEFAULT_TEMPERATURE, second=None, weights=None
):
    """(value, (d/d first, d/d second, d/d weights)); second defaults to
    partner(emb), the weights to W in emb's dtype."""
    mask = jnp.ones(emb.shape[0], bool) if mask is None else mask
    second = partner(emb) if second is None else second
    weights = W.astype(emb.dtype) if weights is None else weights
    fn = _compiled(case, temperature if case.takes_temperature else None)
    return fn(emb, second, weights, jnp.asarray(labels, jnp.int32), mask)


def through_partner(grads):
    """d/d emb of a loss whose second argument is partner(emb)."""
    g_first, g_second, _ = grads
    return g_first + 0.5 * g_second[:, ::-1]


def assert_finite(value, grads, context=""):
    assert np.isfinite(np.asarray(value, np.float32)).all(), (context, value)
    for g in grads:
        assert np.isfinite(np.asarray(g, np.float32)).all(), context


def assert_zero(value, grads, context=""):
    assert float(value) == 0.0, (context, value)
    for g in grads:
        np.testing.assert_array_equal(np.asarray(g), 0.0, err_msg=context)


def random_batch(seed=0, scale=1.0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    emb = jnp.asarray(scale * rng.normal(size=(B, D)), dtype)
    labels = jnp.asarray(rng.integers(0, 3, size=B), jnp.int32)
    return emb, labels


def label_layouts():
    """random, mixed (row i of class i % C), all distinct, all equal."""
    return {
        "random": random_batch()[1],
        "mixed": jnp.arange(B) % C,
        "distinct": jnp.arange(B),
        "equal": jnp.zeros(B, jnp.int32),
    }


def _assert_finite_everywhere(case, inputs):
    for label_case, labels in label_layouts().items():
        for what, (first, second) in inputs.items():
            for t in temperatures(case):
                value, grads = value_and_grads(case, first, labels, temperature=t, second=second)
                assert_finite(value, grads, (label_case, what, t))


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
def test_identical_embeddings(case):
    ones = jnp.ones((B, D))
    on_weights = jnp.tile(W, (3, 1))[:B]  # cos exactly 1 with the targets of the mixed labels
    _assert_finite_everywhere(
        case,
        {
            "identical": (ones, None),
            "identical_pairs": (ones, ones),
            "tiny": (1e-30 * ones, ones),
            "on_weights": (on_weights, None),
            "opposite_weights": (-on_weights, None),  # cos exactly -1
        },
    )


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
def test_zero_vectors(case):
    rand, _ = random_batch()
    zeros = jnp.zeros((B, D))
    _assert_finite_everywhere(
        case,
        {
            "half_zero": (zeros.at[::2].set(1.0), None),  # half the rows are zero
            "half_zero_random": (rand.at[::2].set(0.0), None),
            "zeros": (zeros, None),
            "zero_pairs": (zeros, zeros),
        },
    )


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_inputs(case, dtype):
    emb, labels = random_batch(dtype=dtype)
    value, grads = value_and_grads(case, emb, labels, temperature=LOW_TEMPERATURE)
    assert_finite(value, grads)
    assert value.dtype == jnp.float32
    assert grads[0].dtype == grads[1].dtype == grads[2].dtype == dtype
    reference, _ = value_and_grads(
        case,
        emb.astype(jnp.float32),
        labels,
        temperature=LOW_TEMPERATURE,
        weights=W.astype(dtype).astype(jnp.float32),
    )
    # Computed in float32 internally: only the rounding of the inputs differs.
    assert abs(float(value) - float(reference)) <= 1e-6 + 1e-5 * abs(float(reference))


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_close_to_float32(case, dtype):
    """Rounding the inputs to half precision moves the value little."""
    rand = jax.random.normal(jax.random.key(0), (B, D))
    second = rand + 0.3 * jax.random.normal(jax.random.key(2), (B, D))
    labels = jnp.arange(B) % C
    for t, rtol in ((None, 0.05), (LOW_TEMPERATURE, 0.1)):
        if t is None:
            t = own_temperature(case) if case.takes_temperature else None
        value, grads = value_and_grads(
            case, rand.astype(dtype), labels, temperature=t, second=second.astype(dtype)
        )
        assert_finite(value, grads, t)
        full, _ = value_and_grads(case, rand, labels, temperature=t, second=second)
        np.testing.assert_allclose(float(value), float(full), rtol=rtol, atol=0.05, err_msg=t)


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
@pytest.mark.parametrize("scale", [1e-6, 1e4, 1e6])
def test_extreme_scales_and_low_temperature(case, scale):
    emb, _ = random_batch(scale=scale)
    for label_case, labels in label_layouts().items():
        for t in temperatures(case):
            value, grads = value_and_grads(case, emb, labels, temperature=t)
            assert_finite(value, grads, (label_case, t))


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
def test_all_labels_distinct_and_all_equal(case):
    emb, _ = random_batch()
    for labels in (jnp.arange(B), jnp.zeros(B, jnp.int32)):
        for t in temperatures(case):
            assert_finite(*value_and_grads(case, emb, labels, temperature=t))


ZERO_WITHOUT_POSITIVE = [case for case in CASES if case.zero_without_positive]
ZERO_WITHOUT_NEGATIVE = [case for case in CASES if case.zero_without_negative]


@pytest.mark.parametrize("case", ZERO_WITHOUT_POSITIVE, ids=cases.ids(ZERO_WITHOUT_POSITIVE))
def test_no_positive_pair_gives_zero_loss_and_zero_gradient(case):
    emb, _ = random_batch()
    # All labels distinct; the second also absent from any memory or class.
    for labels in (jnp.arange(B), jnp.arange(B) + 200):
        for t in temperatures(case):
            assert_zero(*value_and_grads(case, emb, labels, temperature=t), t)


@pytest.mark.parametrize("case", ZERO_WITHOUT_NEGATIVE, ids=cases.ids(ZERO_WITHOUT_NEGATIVE))
def test_no_negative_gives_zero_loss_and_zero_gradient(case):
    emb, _ = random_batch()
    for t in temperatures(case):
        assert_zero(*value_and_grads(case, emb, jnp.zeros(B, jnp.int32), temperature=t), t)


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
def test_everything_masked_gives_zero_loss_and_zero_gradient(case):
    emb, labels = random_batch()
    for t in temperatures(case):
        assert_zero(*value_and_grads(case, emb, labels, mask=jnp.zeros(B, bool), temperature=t), t)
    a, b = jax.random.normal(jax.random.key(0), (2, B, D))  # independent views
    assert_zero(*value_and_grads(case, a, labels, mask=jnp.zeros(B, bool), second=b))
    rand = jax.random.normal(jax.random.key(1), (B, D))
    for t in temperatures(case):
        assert_zero(
            *value_and_grads(case, rand, jnp.arange(B) % C, mask=jnp.zeros(B, bool), temperature=t),
            t,
        )


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
def test_padded_rows_are_ignored(case):
    """A padded batch gives the loss of its valid rows, and pads get zero gradient."""
    emb, labels = random_batch(seed=3)
    mask = np.ones(B, bool)
    mask[[2, 7, 11]] = False
    # Padding holds garbage, including NaN-prone values: they must not leak.
    padded = emb.at[~mask].set(jnp.array([1e4, 0, 0, 0, 0, 0]))
    value, grads = value_and_grads(case, padded, labels, mask=jnp.asarray(mask))
    assert_finite(value, grads)
    np.testing.assert_array_equal(np.asarray(grads[0])[~mask], 0.0)
    np.testing.assert_array_equal(np.asarray(grads[1])[~mask], 0.0)
    compact, compact_grads = value_and_grads(case, emb[mask], labels[mask])
    np.testing.assert_allclose(float(value), float(compact), rtol=1e-6, atol=1e-7)
    rtol = max(1e-7, case.grad_rtol)
    for got, want in zip(grads[:2], compact_grads[:2], strict=True):
        np.testing.assert_allclose(np.asarray(got)[mask], np.asarray(want), rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(grads[2]), np.asarray(compact_grads[2]), rtol=rtol, atol=1e-6
    )
    # The gradient reaching the embeddings along both paths (second = partner).
    np.testing.assert_allclose(
        np.asarray(through_partner(grads))[mask],
        np.asarray(through_partner(compact_grads)),
        rtol=rtol,
        atol=1e-6,
    )
    assert float(value) != 0.0 or case.loss == "triplet_margin_loss"


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
def test_gradient_reaches_exactly_the_differentiated_inputs(case):
    """Targets (BYOL, SimSiam), keys (MoCo, MoCo v3) and support neighbours
    (NNCLR) carry no gradient; the other inputs do."""
    a, b = jax.random.normal(jax.random.key(0), (2, B, D))
    _, labels = random_batch()
    _, (g_first, g_second, g_weights) = value_and_grads(case, a, labels, second=b)
    reaches = {
        "first": case.grad_first,
        "second": case.uses_second and case.grad_second,
        "weights": case.kind == cases.PARAMS,
    }
    for name, grad in (("first", g_first), ("second", g_second), ("weights", g_weights)):
        if reaches[name]:
            assert np.abs(np.asarray(grad)).max() > 1e-4, name
        else:
            np.testing.assert_array_equal(np.asarray(grad), 0.0, err_msg=name)
