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
    """Lloyd in float64, by direct differences; an empty cluster takes the farthest row.

    The e-th empty cluster (in index order) takes the e-th farthest row from its
    assigned centroid (a stable sort: ties to the lower row), which leaves its cluster.
    """
    x = x.astype(np.float64)
    c = init.astype(np.float64).copy()

    def assign(c):
        d = ((x[:, None] - c[None]) ** 2).sum(-1)
        labels = np.argmin(d, axis=1)  # The first minimum: ties to the lower centroid.
        return labels, d[np.arange(len(x)), labels]

    for _ in range(num_iters):
        labels, dist = assign(c)
        sums = np.zeros_like(c)
        np.add.at(sums, labels, x)
        counts = np.bincount(labels, minlength=len(c)).astype(np.float64)
        empty = np.flatnonzero(counts == 0)
        far = np.argsort(-dist, kind="stable")[: len(empty)]
        for j, i in zip(empty, far, strict=True):
            sums[labels[i]] -= x[i]
            counts[labels[i]] -= 1
            sums[j], counts[j] = x[i], 1
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None]
    labels, dist = assign(c)
    return c, labels, dist.sum()


def check_against_numpy(got, x, init, num_iters):
    c, labels, inertia = np_lloyd(x, init, num_iters)
    np.testing.assert_array_equal(np.asarray(got.labels), labels)
    np.testing.assert_allclose(np.asarray(got.centroids), c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(got.inertia), inertia, rtol=1e-5)


@pytest.mark.parametrize("num_iters", [0, 1, 3, 10])
def test_kmeans_lloyd_matches_numpy_from_the_same_init(num_iters):
    x, _ = clustered(200, num_classes=5, spread=1.5)
    init = x[:5]
    got = metrics.kmeans(x, 5, key=jax.random.key(0), num_iters=num_iters, init=init, tol=0.0)
    check_against_numpy(got, x, init, num_iters)
    assert 0 < int(got.num_iters) <= num_iters or int(got.num_iters) == num_iters == 0


def test_kmeans_reseeds_empty_clusters_like_numpy():
    x, _ = clustered(150, num_classes=4, spread=1.0, seed=3)
    init = np.concatenate([x[:3], np.full((3, x.shape[1]), 1e3, np.float32), x[3:4]])
    init[5] = -1e3
    # Iteration 1: clusters 3, 4 and 5 are empty (4 a duplicate of 3), and take the three
    # farthest rows, in order.
    got = metrics.kmeans(x, 7, key=jax.random.key(0), num_iters=1, init=init, tol=0.0)
    check_against_numpy(got, x, init, 1)
    c, labels, _ = np_lloyd(x, init, 1)
    assert np.bincount(labels, minlength=7).min() > 0  # The reseeded clusters hold rows.
    got = metrics.kmeans(x, 7, key=jax.random.key(0), num_iters=8, init=init, tol=0.0)
    check_against_numpy(got, x, init, 8)


def test_kmeans_ties_go_to_the_lower_centroid():
    # Small integers: every squared distance (and ||c||^2 - 2 c.x) is exact in float32.
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(300, 3)).astype(np.float32)
    init = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0], [-1, -1, -1], [1, 0, 0]], np.float32)
    got = metrics.kmeans(x, 5, key=jax.random.key(0), num_iters=0, init=init)
    d = ((x[:, None] - init[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(np.asarray(got.labels), d.argmin(1))
    assert (d.min(1)[:, None] == d).sum(1).max() > 1  # There are ties.
    assert not (np.asarray(got.labels) == 2).any()  # The duplicate of centroid 0 gets none.


def test_kmeans_blockwise_equals_one_block():
    x, _ = clustered(203, num_classes=6, spread=1.2, seed=5)
    init = x[10:16]
    one = metrics.kmeans(x, 6, key=jax.random.key(0), num_iters=5, init=init, block_size=203)
    for block_size in (7, 64, 1000):  # 7 and 64 do not divide 203: the last block overlaps.
        got = metrics.kmeans(
            x, 6, key=jax.random.key(0), num_iters=5, init=init, block_size=block_size
        )
        np.testing.assert_array_equal(np.asarray(got.labels), np.asarray(one.labels))
        np.testing.assert_allclose(np.asarray(got.centroids), np.asarray(one.centroids), 1e-6)
        np.testing.assert_allclose(float(got.inertia), float(one.inertia), rtol=1e-6)


@pytest.mark.parametrize("tol", [0.0, 1e-2])
def test_kmeans_matches_sklearn_lloyd_from_the_same_init(tol):
    from sklearn.cluster import KMeans

    x, _ = clustered(2000, dim=16, num_classes=30, spread=1.0, seed=2)
    x = 10.0 * x  # Mean variance 500: a tolerance not relative to it would stop elsewhere.
    init = x[np.random.default_rng(0).choice(len(x), 40, replace=False)]
    sk = KMeans(40, init=init, n_init=1, max_iter=50, tol=tol, algorithm="lloyd").fit(x)
    got = metrics.kmeans(x, 40, key=jax.random.key(0), num_iters=50, init=init, tol=tol)
    np.testing.assert_allclose(float(got.inertia), sk.inertia_, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(got.labels), sk.labels_)
    assert int(got.num_iters) == sk.n_iter_ < 50  # The same stop.


def test_kmeans_matches_sklearn_when_a_cluster_empties():
    from sklearn.cluster import KMeans

    x, _ = clustered(300, dim=4, num_classes=3, spread=0.5, seed=4)
    init = np.concatenate([x[:3], np.full((1, 4), 50.0, np.float32)])  # Cluster 3: no row.
    sk = KMeans(4, init=init, n_init=1, max_iter=10, tol=0.0, algorithm="lloyd").fit(x)
    got = metrics.kmeans(x, 4, key=jax.random.key(0), num_iters=10, init=init, tol=0.0)
    np.testing.assert_array_equal(np.asarray(got.labels), sk.labels_)
    np.testing.assert_allclose(float(got.inertia), sk.inertia_, rtol=1e-5)


@pytest.mark.parametrize("num_devices", [1, 3, 8])
def test_kmeans_split_over_devices_matches_numpy(num_devices):
    # Small integers: exact distances, many ties, also among the farthest rows that the
    # three empty clusters take: the third farthest ties (rows 8 and 35, on devices 0 and
    # 1 of 8), and the lower global row must win.
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 4, size=(203, 4)).astype(np.float32)  # 203: uneven shards.
    init = np.concatenate([x[:4], np.full((3, 4), 100.0, np.float32)])
    dist = ((x[:, None] - x[None, :4]) ** 2).sum(-1).min(1)
    assert -np.sort(-dist)[2] == -np.sort(-dist)[3]
    devices = jax.devices()[:num_devices]
    assert len(devices) == num_devices  # conftest.py: 8 CPU devices.
    got = metrics.kmeans(x, 7, key=jax.random.key(0), num_iters=1, init=init, devices=devices)
    check_against_numpy(got, x, init, 1)
    x, _ = clustered(301, num_classes=5, spread=1.5, seed=7)
    init = x[:7]
    got = metrics.kmeans(x, 7, key=jax.random.key(0), num_iters=10, init=init, devices=devices)
    check_against_numpy(got, x, init, 10)


def test_kmeans_random_init_is_k_distinct_rows_and_jits():
    x, _ = clustered(100, num_classes=4, seed=6)
    key = jax.random.key(3)
    got = metrics.kmeans(x, 10, key=key, num_iters=0, n_init=1, init="random")
    rows = [np.flatnonzero((x == c).all(1)) for c in np.asarray(got.centroids)]
    assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 10
    other = metrics.kmeans(x, 10, key=jax.random.key(4), num_iters=0, n_init=1, init="random")
    assert not np.array_equal(np.asarray(other.centroids), np.asarray(got.centroids))
    # Pure: the same result under jit, and again for the same key.
    fn = jax.jit(lambda x: metrics.kmeans(x, 4, key=key, num_iters=20, init="random"))
    jitted, eager = fn(x), metrics.kmeans(x, 4, key=key, num_iters=20, init="random")
    np.testing.assert_array_equal(np.asarray(jitted.labels), np.asarray(eager.labels))
    np.testing.assert_allclose(float(jitted.inertia), float(eager.inertia), rtol=1e-6)


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
        (lambda x, y: metrics.kmeans(x, 0, key=jax.random.key(0)), "`k`"),
        (lambda x, y: metrics.kmeans(x, 21, key=jax.random.key(0)), "`k`"),
        (lambda x, y: metrics.kmeans(x[0], 2, key=jax.random.key(0)), "`x`"),
        (lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), init=x[:3]), "`init`"),
        (
            lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), init=np.ones((2, 8), int)),
            "`init`",
        ),
        (lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), init="kmeans++"), "`init`"),
        (lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), num_iters=-1), "`num_iters`"),
        (lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), n_init=0), "`n_init`"),
        (lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), tol=-1.0), "`tol`"),
        (lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), block_size=0), "`block_size`"),
        (lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), devices=[]), "`devices`"),
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
