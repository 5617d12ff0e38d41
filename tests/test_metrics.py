"""jaxmetric.metrics against plain NumPy / scikit-learn references.

Data: random clustered embeddings, plus data built to have exact ties in
distance (integer grids, duplicated and power-of-two-scaled rows), classes
with a single sample, and leave-one-out (query == reference).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import (
    adjusted_mutual_info_score,
    normalized_mutual_info_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.neighbors import KNeighborsClassifier

from jaxmetric import metrics

KS = (1, 2, 4, 8)
NAMES = ["precision_at_1", "r_precision", "map_at_r", "mean_average_precision"]
NAMES += [f"recall_at_{k}" for k in KS]


# ----------------------------------------------------------------------------- data


def clustered(n, dim=8, num_classes=6, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim)) * 2.0
    labels = rng.integers(0, num_classes, n)
    x = centers[labels] + spread * rng.normal(size=(n, dim))
    return x.astype(np.float32), labels


def integer_grid(n, dim=3, num_classes=4, seed=0):
    """Small-integer rows: many exact ties and duplicates, exact float32 distances."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    return x, rng.integers(0, num_classes, n)


def scaled_duplicates(n, dim=6, num_base=12, num_classes=4, seed=0):
    """Rows that repeat a few directions at power-of-two scales: exact cosine ties."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(num_base, dim))
    which = rng.integers(0, num_base, n)
    scale = 2.0 ** rng.integers(-2, 3, n)
    x = (base[which] * scale[:, None]).astype(np.float32)
    return x, rng.integers(0, num_classes, n)


def with_singletons(labels, count=3, start=100):
    """Gives `count` rows labels that no other row has."""
    labels = labels.copy()
    labels[:count] = start + np.arange(count)
    return labels


# ----------------------------------------------------------------------------- references


def np_distances(q, r, metric):
    q = q.astype(np.float64)
    r = r.astype(np.float64)
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        rn = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ rn.T
    return np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))


def np_retrieval(q, ql, r=None, rl=None, metric="cosine", ks=KS):
    """Plain loops over queries: stable sort by distance, ties by reference index."""
    loo = r is None
    if loo:
        r, rl = q, ql
    dist = np_distances(q, r, metric)
    per_query = []
    for i in range(len(q)):
        keep = np.arange(len(r)) != i if loo else np.ones(len(r), bool)
        d, labels = dist[i][keep], rl[keep]
        order = np.argsort(d, kind="stable")
        rel = (labels[order] == ql[i]).astype(np.float64)
        big_r = int(rel.sum())
        if big_r == 0:
            continue  # Lone query: left out, as PML does.
        prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        row = [
            rel[0],
            rel[:big_r].sum() / big_r,
            (prec[:big_r] * rel[:big_r]).sum() / big_r,
            (prec * rel).sum() / big_r,
        ]
        row += [float(rel[:k].any()) for k in ks]
        per_query.append(row)
    means = np.mean(per_query, axis=0) if per_query else np.zeros(4 + len(ks))
    names = NAMES[:4] + [f"recall_at_{k}" for k in ks]
    return dict(zip(names, means, strict=True)), len(per_query)


def assert_retrieval_matches(got, want, count):
    assert got["num_queries"] == count
    for name in NAMES:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)


# ----------------------------------------------------------------------------- retrieval


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_retrieval_leave_one_out_matches_numpy(metric):
    x, y = clustered(150, spread=1.5)
    y = with_singletons(y)
    got = metrics.retrieval_metrics(x, y, metric=metric, block_size=32)
    want, count = np_retrieval(x, y, metric=metric)
    assert count == 147  # The three single-sample classes have R = 0.
    assert_retrieval_matches(got, want, count)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_retrieval_query_vs_reference_matches_numpy(metric):
    x, y = clustered(200, spread=1.5, seed=1)
    q, ql, r, rl = x[:70], y[:70], x[70:], y[70:]
    ql = with_singletons(ql, count=4)  # Labels absent from the reference: R = 0.
    got = metrics.retrieval_metrics(q, ql, r, rl, metric=metric, block_size=16)
    want, count = np_retrieval(q, ql, r, rl, metric=metric)
    assert count == 66
    assert_retrieval_matches(got, want, count)


def test_retrieval_ties_euclidean_integer_grid():
    x, y = integer_grid(120)
    assert len(np.unique(x, axis=0)) < len(x)  # Duplicates: ties at distance 0 too.
    got = metrics.retrieval_metrics(x, y, metric="euclidean", block_size=32)
    want, count = np_retrieval(x, y, metric="euclidean")
    assert_retrieval_matches(got, want, count)
    got = metrics.retrieval_metrics(x[:40], y[:40], x[40:], y[40:], metric="euclidean")
    want, count = np_retrieval(x[:40], y[:40], x[40:], y[40:], metric="euclidean")
    assert_retrieval_matches(got, want, count)


def test_retrieval_ties_cosine_scaled_duplicates():
    x, y = scaled_duplicates(100)
    got = metrics.retrieval_metrics(x, y, metric="cosine", block_size=32)
    want, count = np_retrieval(x, y, metric="cosine")
    assert_retrieval_matches(got, want, count)


def test_tie_rule_is_reference_order():
    # Four references at the same distance from the query; labels decide the result.
    query = np.array([[1.0, 0.0]], np.float32)
    ref = np.array([[0.0, 1.0], [0.0, -1.0], [2.0, 1.0], [2.0, -1.0]], np.float32)  # All sqrt(2).
    kw = {"metric": "euclidean", "recall_at": (1, 2, 3)}
    first = metrics.retrieval_metrics(query, [7], ref, [7, 1, 1, 1], **kw)
    last = metrics.retrieval_metrics(query, [7], ref[[1, 2, 3, 0]], [1, 1, 1, 7], **kw)
    assert first["precision_at_1"] == 1.0 and first["mean_average_precision"] == 1.0
    assert last["precision_at_1"] == 0.0 and last["recall_at_3"] == 0.0
    assert last["mean_average_precision"] == 0.25
    # Cosine: all four orthogonal to the query.
    ortho = np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0], [0.0, -3.0]], np.float32)
    cos = metrics.retrieval_metrics(query, [7], ortho, [1, 7, 1, 1], recall_at=(1, 2))
    assert cos["precision_at_1"] == 0.0 and cos["recall_at_2"] == 1.0
    assert cos["mean_average_precision"] == 0.5


def test_retrieval_identical_rows_leave_one_out():
    # Every row identical: the ranking is the row order, skipping the query itself.
    x = np.ones((6, 3), np.float32)
    y = np.array([0, 1, 0, 1, 0, 1])
    got = metrics.retrieval_metrics(x, y, metric="euclidean", recall_at=(1,))
    want, count = np_retrieval(x, y, metric="euclidean", ks=(1,))
    assert got["num_queries"] == count == 6
    for name in ["precision_at_1", "map_at_r", "mean_average_precision"]:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)


def test_retrieval_block_size_does_not_matter():
    x, y = clustered(97, seed=3)
    results = [metrics.retrieval_metrics(x, y, block_size=b) for b in (1, 13, 97, 500)]
    results.append(metrics.retrieval_metrics(x, y, block_size=13, devices=jax.devices()[:1]))
    results.append(metrics.retrieval_metrics(x, y, block_size=5, devices=jax.devices()[:3]))
    for r in results[1:]:
        for name in NAMES:
            np.testing.assert_allclose(r[name], results[0][name], rtol=1e-6)


def test_retrieval_no_valid_query_gives_zeros():
    x, _ = clustered(5)
    got = metrics.retrieval_metrics(x, np.arange(5))  # Every class has one sample.
    assert got["num_queries"] == 0
    assert all(got[name] == 0.0 for name in NAMES)


def test_retrieval_recall_beyond_reference_size():
    x, y = clustered(10, num_classes=2)
    got = metrics.retrieval_metrics(x, y, recall_at=(1, 50))
    want, count = np_retrieval(x, y, ks=(1, 50))
    np.testing.assert_allclose(got["recall_at_50"], want["recall_at_50"])
    assert got["recall_at_50"] == 1.0


def test_retrieval_bfloat16_input():
    x, y = clustered(64, seed=5)
    got = metrics.retrieval_metrics(jnp.asarray(x, jnp.bfloat16), y)
    assert 0.0 <= got["map_at_r"] <= 1.0


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
    _, steps = metrics._train_probe(
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


# ----------------------------------------------------------------------------- verification


def np_best_accuracy(scores, same):
    candidates = np.concatenate([np.unique(scores)[::-1], [np.inf]])
    best, best_t = -1.0, None
    for t in sorted(candidates, reverse=True):
        acc = np.mean((scores >= t) == same)
        if acc > best:
            best, best_t = acc, t
    return best, best_t


@pytest.mark.parametrize("ties", [False, True])
def test_verification_matches_sklearn(ties):
    rng = np.random.default_rng(7)
    same = rng.random(3000) < 0.3
    scores = rng.normal(size=3000) + 1.5 * same
    if ties:
        scores = np.round(scores, 1)
    scores = scores.astype(np.float32)
    fars = (1e-3, 1e-2, 0.05, 0.1, 0.29, 1.0)
    got = metrics.verification_metrics(scores, same, far_targets=fars)
    s64 = scores.astype(np.float64)
    np.testing.assert_allclose(got["roc_auc"], roc_auc_score(same, s64), rtol=1e-6)
    fpr, tpr, thresholds = roc_curve(same, s64, drop_intermediate=False)
    for f in fars:
        i = np.flatnonzero(fpr <= f)[-1]
        key = f"{f:g}"
        np.testing.assert_allclose(got[f"tar_at_far_{key}"], tpr[i], rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(got[f"far_at_far_{key}"], fpr[i], rtol=1e-6, err_msg=key)
        assert got[f"threshold_at_far_{key}"] == np.float32(thresholds[i]), key
    best, best_t = np_best_accuracy(s64, same)
    np.testing.assert_allclose(got["best_accuracy"], best, rtol=1e-6)
    assert got["best_accuracy_threshold"] == best_t


def test_verification_pairs_all_and_sampled():
    x, y = clustered(40, num_classes=4)
    y = with_singletons(y, count=2)
    scores, same = metrics.verification_pairs(x, y)
    assert scores.shape == (40 * 39 // 2,)
    i, j = np.triu_indices(40, k=1)
    np.testing.assert_array_equal(np.asarray(same), y[i] == y[j])
    want = 1.0 - np_distances(x, x, "cosine")[i, j]
    np.testing.assert_allclose(np.asarray(scores), want, atol=1e-5)

    scores, same = metrics.verification_pairs(x, y, num_pairs=500, metric="euclidean", seed=1)
    same = np.asarray(same)
    assert same[:500].all() and not same[500:].any()
    assert (np.asarray(scores) <= 0).all()
    # A positive pair never pairs a row with itself: distance > 0 for distinct rows.
    assert (np.asarray(scores)[:500] < 0).all()


# ----------------------------------------------------------------------------- clustering


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


# ----------------------------------------------------------------------------- all at once


def test_evaluate_embeddings_keys_and_ranges():
    x, y = clustered(260, num_classes=4, spread=1.0, seed=9)
    sup = metrics.evaluate_embeddings(x[:200], y[:200], x[200:], y[200:], supervised=True)
    ssl = metrics.evaluate_embeddings(x[:200], y[:200], x[200:], y[200:], supervised=False)
    for key in ["knn_accuracy", "linear_probe_accuracy", "nmi", "ami"]:
        assert key in ssl and key in sup
    for key in NAMES + ["roc_auc", "tar_at_far_0.001", "best_accuracy"]:
        assert key in sup and key not in ssl
    for key, value in sup.items():
        if "threshold" not in key:
            assert -0.1 <= value <= 1.0 + 1e-6, key
    assert sup["knn_accuracy"] > 0.9


def test_embedding_map_png(tmp_path):
    from jaxmetric.plots import embedding_map_png

    x, y = clustered(60, dim=8, num_classes=3)
    for method in ("tsne", "pca"):
        path = embedding_map_png(x, y, tmp_path / f"sub/{method}.png", method=method)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x, y: metrics.retrieval_metrics(x[0], y), "query"),
        (lambda x, y: metrics.retrieval_metrics(x, y[:-1]), "query_labels"),
        (lambda x, y: metrics.retrieval_metrics(x, -y - 1), "query_labels"),
        (lambda x, y: metrics.retrieval_metrics(x, y, metric="dot"), "metric"),
        (lambda x, y: metrics.retrieval_metrics(x, y, recall_at=(0,)), "recall_at"),
        (lambda x, y: metrics.retrieval_metrics(x, y, block_size=0), "block_size"),
        (lambda x, y: metrics.retrieval_metrics(x, y, x), "reference_labels"),
        (lambda x, y: metrics.retrieval_metrics(x, y, x[:, :2], y), "reference"),
        (lambda x, y: metrics.knn_accuracy(x, y, x, y, k=0), "k"),
        (lambda x, y: metrics.knn_accuracy(x, y, x[:, :2], y), "test_emb"),
        (lambda x, y: metrics.knn_accuracy(x, y, x, y, weighted=True, temperature=0), "temper"),
        (lambda x, y: metrics.linear_probe_accuracy(x, y, x, y, val_fraction=1.0), "val_frac"),
        (lambda x, y: metrics.linear_probe_accuracy(x, y, x, y, l2=-1.0), "l2"),
        (lambda x, y: metrics.verification_metrics(x[:, 0], y[:-1] > 0), "is_same"),
        (lambda x, y: metrics.verification_metrics(x[:, 0], y >= 0), "is_same"),
        (lambda x, y: metrics.verification_metrics(x[:, 0], y > 0, far_targets=(0,)), "far_"),
        (lambda x, y: metrics.kmeans(x, 0, key=jax.random.key(0)), "k"),
        (lambda x, y: metrics.kmeans(x, 2, key=jax.random.key(0), init=x[:3]), "init"),
        (lambda x, y: metrics.clustering_metrics(y, y[:-1]), "labels_pred"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    x, y = clustered(20, num_classes=3)
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_retrieval_on_sharded_input_equals_single_device():
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    x, y = clustered(64, seed=11)
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    ys = jax.device_put(y, NamedSharding(mesh, PartitionSpec("data")))
    got = metrics.retrieval_metrics(xs, ys, block_size=8)
    want = metrics.retrieval_metrics(x, y, block_size=8)
    for name in NAMES:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
