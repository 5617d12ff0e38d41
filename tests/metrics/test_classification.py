"""jaxmetric.metrics.classification against scikit-learn's kNN and logistic regression."""

from __future__ import annotations

import doctest

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from jaxmetric import metrics
from jaxmetric.metrics import classification

from ._common import clustered

# ----------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_knn_matches_sklearn(metric, weighted):
    x, y = clustered(300, spread=2.5, seed=2)
    tr, ytr, te, yte = x[:220], y[:220], x[220:], y[220:]
    temperature = 0.07 if metric == "cosine" else 0.5
    weights = (lambda d: np.exp(-d / temperature)) if weighted else "uniform"
    clf = KNeighborsClassifier(n_neighbors=10, metric=metric, algorithm="brute", weights=weights)
    want = clf.fit(tr, ytr).predict(te)
    pred = metrics.knn_predict(
        tr, ytr, te, k=10, metric=metric, weighted=weighted, temperature=temperature, block_size=16
    )
    np.testing.assert_array_equal(np.asarray(pred), want)
    acc = metrics.knn_accuracy(
        tr, ytr, te, yte, k=10, metric=metric, weighted=weighted, temperature=temperature
    )
    np.testing.assert_allclose(acc, np.mean(want == yte))


def test_knn_vote_tie_goes_to_smallest_class_and_neighbour_tie_to_lowest_index():
    train = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], np.float32)
    # k=2 among three identical nearest rows: rows 0 and 1 (labels 5 and 3) -> tie -> 3.
    pred = metrics.knn_predict(train, [5, 3, 9, 0], np.array([[2.0, 0.0]], np.float32), k=2)
    assert int(pred[0]) == 3


# ----------------------------------------------------------------------------- linear probe


def test_linear_probe_close_to_sklearn_logistic_regression_and_deterministic():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = clustered(600, dim=16, num_classes=5, spread=3.0, seed=4)
    tr, ytr, te, yte = x[:450], y[:450], x[450:], y[450:]
    acc = metrics.linear_probe_accuracy(tr, ytr, te, yte, l2=1e-3, seed=0)
    again = metrics.linear_probe_accuracy(tr, ytr, te, yte, l2=1e-3, seed=0)
    assert acc == again
    scaler = StandardScaler().fit(tr)
    clf = LogisticRegression(C=1.0 / (1e-3 * 405), max_iter=5000)
    want = clf.fit(scaler.transform(tr), ytr).score(scaler.transform(te), yte)
    assert 0.5 < want < 0.99  # Not trivially separable.
    assert abs(acc - want) <= 0.04


def test_linear_probe_stops_early():
    x, y = clustered(200, num_classes=3, spread=0.3)
    n_val = 20
    x_fit, y_fit, x_val, y_val = x[n_val:], y[n_val:], x[:n_val], y[:n_val]
    _, steps = classification._train_probe(
        jnp.asarray(x_fit),
        jnp.asarray(y_fit),
        jnp.asarray(x_val),
        jnp.asarray(y_val),
        jnp.float32(1e-4),
        num_classes=3,
        learning_rate=0.01,
        max_steps=10_000,
        eval_every=10,
        patience=5,
    )
    assert int(steps) < 10_000  # Validation accuracy saturates at once.


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x, y: metrics.knn_accuracy(x, y, x, y, k=0), "k"),
        (lambda x, y: metrics.knn_accuracy(x, y, x[:, :2], y), "test_emb"),
        (lambda x, y: metrics.knn_accuracy(x, y, x, y, weighted=True, temperature=0), "temper"),
        (lambda x, y: metrics.linear_probe_accuracy(x, y, x, y, val_fraction=1.0), "val_frac"),
        (lambda x, y: metrics.linear_probe_accuracy(x, y, x, y, l2=-1.0), "l2"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    x, y = clustered(20, num_classes=3)
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_docstring_examples():
    result = doctest.testmod(classification, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
