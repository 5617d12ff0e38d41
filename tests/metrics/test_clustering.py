"""jaxmetric.metrics.clustering against NumPy Lloyd steps and scikit-learn (k-means, NMI, AMI)."""

from __future__ import annotations

import doctest

import jax
import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

from jaxmetric import metrics
from jaxmetric.metrics import clustering

from ._common import clustered


def np_lloyd(x, init, num_iters):
    c = init.astype(np.float64).copy()
    x = x.astype(np.float64)
    for _ in range(num_iters):
        labels = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)
        for j in range(len(c)):
            if (labels == j).any():
                c[j] = x[labels == j].mean(axis=0)
    labels = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)
    return c, labels


def test_kmeans_lloyd_matches_numpy_from_the_same_init():
    x, _ = clustered(200, num_classes=5, spread=1.5)
    init = x[:5]
    got = metrics.kmeans(x, 5, key=jax.random.key(0), num_iters=10, init=init)
    c, labels = np_lloyd(x, init, 10)
    np.testing.assert_array_equal(np.asarray(got.labels), labels)
    np.testing.assert_allclose(np.asarray(got.centroids), c, rtol=1e-4, atol=1e-4)
    inertia = ((x - c[labels]) ** 2).sum()
    np.testing.assert_allclose(float(got.inertia), inertia, rtol=1e-4)


def test_kmeans_plus_plus_recovers_blobs_and_is_deterministic():
    from sklearn.cluster import KMeans

    x, y = clustered(300, num_classes=6, spread=0.3, seed=8)
    a = metrics.kmeans(x, 6, key=jax.random.key(1), num_iters=20, n_init=3)
    b = metrics.kmeans(x, 6, key=jax.random.key(1), num_iters=20, n_init=3)
    np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
    sk = KMeans(6, n_init=3, random_state=0).fit(x)
    assert normalized_mutual_info_score(y, np.asarray(a.labels)) == pytest.approx(1.0)
    assert float(a.inertia) <= sk.inertia_ * (1 + 1e-4)


@pytest.mark.parametrize(
    "true,pred",
    [
        (
            np.random.default_rng(0).integers(0, 5, 300),
            np.random.default_rng(1).integers(0, 7, 300),
        ),
        (np.arange(50) % 5, (np.arange(50) % 5) * 3 + 1),  # Same partition, renamed.
        (np.zeros(20, int), np.zeros(20, int)),  # One cluster each: 1.0.
        (np.zeros(20, int), np.arange(20) % 4),  # One side constant: 0.0.
        (np.arange(30), np.arange(30) // 2),  # Singletons.
    ],
)
def test_clustering_metrics_match_sklearn(true, pred):
    got = metrics.clustering_metrics(true, pred)
    np.testing.assert_allclose(got["nmi"], normalized_mutual_info_score(true, pred), atol=1e-12)
    np.testing.assert_allclose(got["ami"], adjusted_mutual_info_score(true, pred), atol=1e-12)


def random_labelings(kind, seed):
    """Pairs of labelings of 1 to 400 rows: independent, correlated, skewed or nested."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    true = rng.integers(0, int(rng.integers(1, 12)), n)
    num_pred = int(rng.integers(1, 12))
    if kind == "independent":
        pred = rng.integers(0, num_pred, n)
    elif kind == "correlated":
        pred = np.where(rng.random(n) < 0.7, true, rng.integers(0, num_pred, n))
    elif kind == "skewed":  # Cluster sizes geometric: many distinct sizes.
        pred = np.minimum(rng.geometric(0.3, n), num_pred)
    else:  # A refinement of `true`, renamed.
        pred = true * 3 + rng.integers(0, 2, n)
    return true, pred


@pytest.mark.parametrize("kind", ["independent", "correlated", "skewed", "nested"])
def test_adjusted_mutual_info_matches_sklearn_on_random_labelings(kind):
    for seed in range(50):
        true, pred = random_labelings(kind, seed)
        want = adjusted_mutual_info_score(true, pred)
        got = metrics.adjusted_mutual_info(true, pred)
        assert abs(got - want) <= 1e-10, (kind, seed, got, want)


def test_adjusted_mutual_info_matches_sklearn_on_large_labelings():
    # Thousands of rows per class: log-factorials near 1e5, where rounding shows first.
    rng = np.random.default_rng(3)
    for n, num_true, num_pred in [(20_000, 100, 100), (50_000, 2, 2), (3_000, 3_000, 10)]:
        true, pred = rng.integers(0, num_true, n), rng.integers(0, num_pred, n)
        want = adjusted_mutual_info_score(true, pred)
        got = metrics.adjusted_mutual_info(true, pred)
        assert abs(got - want) <= 1e-10, (n, got, want)


AMI_EDGE_CASES = {
    "empty": ([], []),
    "one_row": ([3], [7]),
    "one_cluster_each": ([0] * 5, [1] * 5),  # 1.0
    "one_class": ([0] * 4, [0, 1, 2, 3]),  # 0.0
    "one_cluster": ([0, 1, 2, 3], [0] * 4),  # 0.0
    "renamed": ([0, 0, 1, 1, 2], [2, 2, 0, 0, 1]),  # 1.0
    "two_singletons": ([0, 1], [1, 0]),  # 1.0
    "all_singletons": (list(range(30)), list(range(30))),  # E[I] = I = H: 0 / 0 guarded.
    "singletons_vs_pairs": (list(range(30)), [i // 2 for i in range(30)]),
    "crossed": ([0, 0, 1, 1], [0, 1, 0, 1]),  # I = 0: negative AMI.
    "strings": (["a", "b", "a", "c"], ["x", "x", "y", "y"]),
    "non_contiguous": ([10, 10, 40, 40, 40], [-1, 5, 5, 9, 9]),
}


@pytest.mark.parametrize("case", AMI_EDGE_CASES)
def test_adjusted_mutual_info_matches_sklearn_on_edge_cases(case):
    true, pred = AMI_EDGE_CASES[case]
    want = adjusted_mutual_info_score(true, pred)
    got = metrics.adjusted_mutual_info(true, pred)
    assert isinstance(got, float)
    assert abs(got - want) <= 1e-10, (got, want)


def test_adjusted_mutual_info_conventions():
    ami = metrics.adjusted_mutual_info
    assert ami([], []) == ami([0] * 5, [1] * 5) == 1.0  # Nothing split on either side.
    assert ami([0] * 4, [0, 1, 2, 3]) == ami([0, 1, 2, 3], [0] * 4) == 0.0  # One side only.
    assert ami([0, 0, 1, 1, 2], [2, 2, 0, 0, 1]) == 1.0  # Exactly, not 1 - eps.
    assert ami([0, 0, 1, 1], [0, 1, 0, 1]) < 0.0  # Worse than chance.


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x, y: metrics.kmeans(x, 0, key=jax.random.key(0)), "k"),
        (lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), init=x[:3]), "init"),
        (lambda x, y: metrics.clustering_metrics(y, y[:-1]), "labels_pred"),
        (lambda x, y: metrics.adjusted_mutual_info(y, y[:-1]), "labels_pred"),
        (lambda x, y: metrics.adjusted_mutual_info(x, y), "labels_true"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    x, y = clustered(20, num_classes=3)
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_docstring_examples():
    result = doctest.testmod(clustering, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
