"""No NaN or Inf, the zero-loss cases, and padding masks, for every loss."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm

B, D = 12, 6
QUEUE = jax.random.normal(jax.random.key(7), (8, D))


def _partner(e):
    """The second element of pair i: exact in every dtype, a function of row i only."""
    return 0.5 * e[:, ::-1]


def _label_loss(loss_fn, **kwargs):
    return lambda e, y, m, t: loss_fn(e, y, mask=m, **kwargs)


def _with_temperature(loss_fn, **kwargs):
    return lambda e, y, m, t: loss_fn(e, y, mask=m, temperature=t, **kwargs)


# Each loss as fn(embeddings [B, D], labels [B], mask [B], temperature).
# Pair losses pair row i with a fixed transform of row i, so that masking row
# i masks the whole pair.
LOSSES = {
    **{
        f"triplet_{mining}_{metric}": _label_loss(
            jm.triplet_margin_loss, mining=mining, metric=metric
        )
        for mining in jm.mining.TRIPLET_MINING
        for metric in ("euclidean", "cosine")
    },
    "triplet_soft_unnormalized": _label_loss(
        jm.triplet_margin_loss, mining="batch_hard", soft=True, normalize=False
    ),
    "triplet_sq_unnormalized": _label_loss(
        jm.triplet_margin_loss, metric="squared_euclidean", normalize=False
    ),
    "contrastive": _label_loss(jm.contrastive_loss),
    "contrastive_cosine": _label_loss(jm.contrastive_loss, metric="cosine", normalize=False),
    "angular": _label_loss(jm.angular_loss),
    "ntxent": _with_temperature(jm.ntxent_loss),
    "simclr": lambda e, y, m, t: jm.simclr_loss(e, _partner(e), temperature=t, mask=m),
    "npair": lambda e, y, m, t: jm.npair_loss(
        e, _partner(e), labels=y, temperature=t, mask=m, l2_reg=0.1
    ),
    "npair_normalized": lambda e, y, m, t: jm.npair_loss(
        e, _partner(e), temperature=t, mask=m, normalize=True
    ),
    "moco": lambda e, y, m, t: jm.moco_loss(e, _partner(e), QUEUE, temperature=t, mask=m),
    "nnclr": lambda e, y, m, t: jm.nnclr_loss(e, _partner(e), QUEUE, temperature=t, mask=m),
}
LABEL_LOSSES = [
    name for name in LOSSES if name.split("_")[0] in ("triplet", "contrastive", "angular", "ntxent")
]


@functools.cache
def _compiled(name):
    """One jitted value-and-grad per loss, reused across tests (shapes permitting)."""
    return jax.jit(jax.value_and_grad(LOSSES[name]), static_argnums=3)


def _value_and_grad(name, emb, labels, mask=None, temperature=0.1):
    mask = jnp.ones(emb.shape[0], bool) if mask is None else mask
    return _compiled(name)(emb, jnp.asarray(labels, jnp.int32), mask, temperature)


def _assert_finite(value, grad):
    assert np.isfinite(np.asarray(value, np.float32)).all(), value
    assert np.isfinite(np.asarray(grad, np.float32)).all()


def _random(seed=0, scale=1.0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    emb = jnp.asarray(scale * rng.normal(size=(B, D)), dtype)
    labels = jnp.asarray(rng.integers(0, 3, size=B), jnp.int32)
    return emb, labels


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_identical_embeddings(name):
    emb = jnp.ones((B, D))
    _, labels = _random()
    _assert_finite(*_value_and_grad(name, emb, labels))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_zero_vectors(name):
    emb = jnp.zeros((B, D)).at[::2].set(1.0)  # Half the rows are zero.
    _, labels = _random()
    _assert_finite(*_value_and_grad(name, emb, labels))
    _assert_finite(*_value_and_grad(name, jnp.zeros((B, D)), labels))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_inputs(name, dtype):
    emb, labels = _random(dtype=dtype)
    value, grad = _value_and_grad(name, emb, labels, temperature=0.01)
    _assert_finite(value, grad)
    assert value.dtype == jnp.float32 and grad.dtype == dtype
    reference, _ = _value_and_grad(name, emb.astype(jnp.float32), labels, temperature=0.01)
    # Computed in float32 internally: only the rounding of the inputs differs.
    assert abs(float(value) - float(reference)) <= 1e-6 + 1e-5 * abs(float(reference))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_extreme_scales_and_low_temperature(name, scale):
    emb, labels = _random(scale=scale)
    _assert_finite(*_value_and_grad(name, emb, labels, temperature=0.01))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_labels_distinct_and_all_equal(name):
    emb, _ = _random()
    distinct = jnp.arange(B)
    same = jnp.zeros(B, jnp.int32)
    for labels in (distinct, same):
        _assert_finite(*_value_and_grad(name, emb, labels))


@pytest.mark.parametrize("name", [n for n in LABEL_LOSSES if not n.startswith("contrastive")])
def test_no_positive_pair_gives_zero_loss_and_zero_gradient(name):
    emb, _ = _random()
    value, grad = _value_and_grad(name, emb, jnp.arange(B))
    assert float(value) == 0.0
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


@pytest.mark.parametrize("name", [n for n in LABEL_LOSSES if n.startswith(("triplet", "angular"))])
def test_no_negative_gives_zero_loss_and_zero_gradient(name):
    emb, _ = _random()
    value, grad = _value_and_grad(name, emb, jnp.zeros(B, jnp.int32))
    assert float(value) == 0.0
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_everything_masked_gives_zero_loss_and_zero_gradient(name):
    emb, labels = _random()
    value, grad = _value_and_grad(name, emb, labels, mask=jnp.zeros(B, bool))
    assert float(value) == 0.0
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_padded_rows_are_ignored(name):
    """A padded batch gives the loss of its valid rows, and pads get zero gradient."""
    emb, labels = _random(seed=3)
    mask = np.ones(B, bool)
    mask[[2, 7, 11]] = False
    # Padding holds garbage, including NaN-prone values: they must not leak.
    padded = emb.at[~mask].set(jnp.array([1e4, 0, 0, 0, 0, 0]))
    value, grad = _value_and_grad(name, padded, labels, mask=jnp.asarray(mask))
    _assert_finite(value, grad)
    np.testing.assert_array_equal(np.asarray(grad)[~mask], 0.0)
    compact, compact_grad = _value_and_grad(name, emb[mask], labels[mask])
    np.testing.assert_allclose(float(value), float(compact), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad)[mask], np.asarray(compact_grad), atol=1e-6)
    assert float(value) != 0.0 or name.startswith("triplet")


@pytest.mark.parametrize("metric", jm.distances.DISTANCE_METRICS)
def test_distance_gradient_is_finite_at_zero(metric):
    x = jnp.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    grad = jax.grad(lambda x: jnp.sum(jm.pairwise_distances(x, metric=metric)))(x)
    assert np.isfinite(np.asarray(grad)).all()
    grad = jax.grad(lambda x: jnp.sum(jm.pairwise_distances(x, x + 0, metric=metric)))(x)
    assert np.isfinite(np.asarray(grad)).all()
    assert abs(float(jm.pairwise_distances(x, metric=metric)[0, 1])) < 1e-6
