"""jaxmetric.distances: pairwise distances and similarities against NumPy loops,
finite gradients at distance 0, and bad input naming the argument."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    plain_batch,
    ref_cosine,
    ref_distance_matrix,
    run,
    tol,
)

METRICS = ("euclidean", "squared_euclidean", "cosine")
# (rows of x, rows of y or None for y = x). Only sizes of the reference
# scenarios: every new shape costs XLA compilations.
_DIST_SHAPES = ((6, None), (32, None), (13, 13), (32, 6))
_DIST_IDS = [f"x{b}-y{m}" for b, m in _DIST_SHAPES]


def ref_similarity_matrix(x, y=None, metric="cosine"):
    y = x if y is None else y
    out = np.zeros((x.shape[0], y.shape[0]))
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = ref_cosine(x[i], y[j]) if metric == "cosine" else float(np.dot(x[i], y[j]))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", _DIST_SHAPES, ids=_DIST_IDS)
def test_pairwise_distances(shape, metric, dtype):
    batch, y_rows = shape
    with_y = y_rows is not None
    x, _, _ = plain_batch(batch, "mixed")
    x[-1] = 0.0  # a zero row: cosine 0 with everything (distance 1 under "cosine")
    y = plain_batch(y_rows, "mixed", attempt=1)[0] if with_y else None
    expected = ref_distance_matrix(x, y, metric)
    if with_y:
        got = run(dtype, lambda a, b: jm.pairwise_distances(a, b, metric=metric), x, y)
    else:
        got = run(dtype, lambda a: jm.pairwise_distances(a, metric=metric), x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("shape", _DIST_SHAPES, ids=_DIST_IDS)
def test_pairwise_similarities(shape, metric, dtype):
    batch, y_rows = shape
    with_y = y_rows is not None
    x, _, _ = plain_batch(batch, "mixed")
    x[0] = 0.0  # zero row: cosine similarity 0
    y = plain_batch(y_rows, "mixed", attempt=1)[0] if with_y else None
    expected = ref_similarity_matrix(x, y, metric)
    if with_y:
        got = run(dtype, lambda a, b: jm.pairwise_similarities(a, b, metric=metric), x, y)
    else:
        got = run(dtype, lambda a: jm.pairwise_similarities(a, metric=metric), x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **tol(dtype))


@pytest.mark.parametrize("metric", jm.distances.DISTANCE_METRICS)
def test_distance_gradient_is_finite_at_zero(metric):
    x = jnp.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    grad = jax.grad(lambda x: jnp.sum(jm.pairwise_distances(x, metric=metric)))(x)
    assert np.isfinite(np.asarray(grad)).all()
    grad = jax.grad(lambda x: jnp.sum(jm.pairwise_distances(x, x + 0, metric=metric)))(x)
    assert np.isfinite(np.asarray(grad)).all()
    assert abs(float(jm.pairwise_distances(x, metric=metric)[0, 1])) < 1e-6


# ----------------------------------------------------------------------------
# Bad input: a ValueError (or TypeError) at trace time naming the argument.
# ----------------------------------------------------------------------------

EMB = jnp.ones((6, 4))

# (call, the argument the message must name in backticks)
NAMED_ARGUMENT_CASES = [
    (lambda: jm.pairwise_distances(jnp.ones(3)), "x"),
    (lambda: jm.pairwise_distances(EMB, jnp.ones((3, 5))), "y"),
    (lambda: jm.pairwise_distances(EMB, jnp.ones(4)), "y"),
    (lambda: jm.pairwise_distances(EMB, metric="manhattan"), "metric"),
    (lambda: jm.pairwise_distances(EMB.astype(jnp.int32)), "x"),
    (lambda: jm.pairwise_similarities(jnp.ones((2, 3, 4))), "x"),
    (lambda: jm.pairwise_similarities(EMB, metric="euclidean"), "metric"),
]


@pytest.mark.parametrize(
    "call, argument",
    [
        pytest.param(call, argument, id=f"distance-{i}-{argument}")
        for i, (call, argument) in enumerate(NAMED_ARGUMENT_CASES)
    ],
)
def test_rejects_bad_input_naming_the_argument(call, argument):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call()


# (call, the message, a regular expression)
MESSAGE_CASES = {
    "unknown_distance_metric": (
        lambda: jm.pairwise_distances(EMB, metric="manhattan"),
        "Unknown `metric` 'manhattan'",
    ),
    "unknown_similarity_metric": (
        lambda: jm.pairwise_similarities(EMB, metric="euclidean"),
        "Unknown `metric` 'euclidean'",
    ),
    "feature_dimension": (
        lambda: jm.pairwise_distances(EMB, jnp.ones((3, 5))),
        "`y` must have the feature dimension",
    ),
    "rank": (lambda: jm.pairwise_similarities(jnp.ones(3)), "`x` must be 2-D"),
}


@pytest.mark.parametrize("name", sorted(MESSAGE_CASES))
def test_bad_input_message(name):
    call, match = MESSAGE_CASES[name]
    with pytest.raises(ValueError, match=match):
        call()
