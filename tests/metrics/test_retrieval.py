"""jaxmetric.metrics.retrieval against a plain NumPy reference.

Data: random clustered embeddings, plus data built to have exact ties in
distance (integer grids, duplicated and power-of-two-scaled rows), classes
with a single sample, and leave-one-out (query == reference).
"""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmetric import metrics
from jaxmetric.metrics import retrieval

from ._common import (
    KS,
    NAMES,
    clustered,
    integer_grid,
    np_distances,
    scaled_duplicates,
    with_singletons,
)

FULL = {"mean_average_precision": True}  # The NumPy reference ranks everything.


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


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_retrieval_leave_one_out_matches_numpy(metric):
    x, y = clustered(150, spread=1.5)
    y = with_singletons(y)
    got = metrics.retrieval_metrics(x, y, metric=metric, block_size=32, **FULL)
    want, count = np_retrieval(x, y, metric=metric)
    assert count == 147  # The three single-sample classes have R = 0.
    assert_retrieval_matches(got, want, count)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_retrieval_query_vs_reference_matches_numpy(metric):
    x, y = clustered(200, spread=1.5, seed=1)
    q, ql, r, rl = x[:70], y[:70], x[70:], y[70:]
    ql = with_singletons(ql, count=4)  # Labels absent from the reference: R = 0.
    got = metrics.retrieval_metrics(q, ql, r, rl, metric=metric, block_size=16, **FULL)
    want, count = np_retrieval(q, ql, r, rl, metric=metric)
    assert count == 66
    assert_retrieval_matches(got, want, count)


def test_retrieval_ties_euclidean_integer_grid():
    x, y = integer_grid(120)
    assert len(np.unique(x, axis=0)) < len(x)  # Duplicates: ties at distance 0 too.
    got = metrics.retrieval_metrics(x, y, metric="euclidean", block_size=32, **FULL)
    want, count = np_retrieval(x, y, metric="euclidean")
    assert_retrieval_matches(got, want, count)
    got = metrics.retrieval_metrics(x[:40], y[:40], x[40:], y[40:], metric="euclidean", **FULL)
    want, count = np_retrieval(x[:40], y[:40], x[40:], y[40:], metric="euclidean")
    assert_retrieval_matches(got, want, count)


def test_retrieval_ties_cosine_scaled_duplicates():
    x, y = scaled_duplicates(100)
    got = metrics.retrieval_metrics(x, y, metric="cosine", block_size=32, **FULL)
    want, count = np_retrieval(x, y, metric="cosine")
    assert_retrieval_matches(got, want, count)


def test_tie_rule_is_reference_order():
    # Four references at the same distance from the query; labels decide the result.
    query = np.array([[1.0, 0.0]], np.float32)
    ref = np.array([[0.0, 1.0], [0.0, -1.0], [2.0, 1.0], [2.0, -1.0]], np.float32)  # All sqrt(2).
    kw = {"metric": "euclidean", "recall_at": (1, 2, 3)}
    first = metrics.retrieval_metrics(query, [7], ref, [7, 1, 1, 1], **kw, **FULL)
    last = metrics.retrieval_metrics(query, [7], ref[[1, 2, 3, 0]], [1, 1, 1, 7], **kw, **FULL)
    assert first["precision_at_1"] == 1.0 and first["mean_average_precision"] == 1.0
    assert last["precision_at_1"] == 0.0 and last["recall_at_3"] == 0.0
    assert last["mean_average_precision"] == 0.25
    # Cosine: all four orthogonal to the query.
    ortho = np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0], [0.0, -3.0]], np.float32)
    cos = metrics.retrieval_metrics(query, [7], ortho, [1, 7, 1, 1], recall_at=(1, 2), **FULL)
    assert cos["precision_at_1"] == 0.0 and cos["recall_at_2"] == 1.0
    assert cos["mean_average_precision"] == 0.5


def test_retrieval_identical_rows_leave_one_out():
    # Every row identical: the ranking is the row order, skipping the query itself.
    x = np.ones((6, 3), np.float32)
    y = np.array([0, 1, 0, 1, 0, 1])
    got = metrics.retrieval_metrics(x, y, metric="euclidean", recall_at=(1,), **FULL)
    want, count = np_retrieval(x, y, metric="euclidean", ks=(1,))
    assert got["num_queries"] == count == 6
    for name in ["precision_at_1", "map_at_r", "mean_average_precision"]:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)


def test_retrieval_block_size_does_not_matter():
    x, y = clustered(97, seed=3)
    results = [metrics.retrieval_metrics(x, y, block_size=b, **FULL) for b in (1, 13, 97, 500)]
    results.append(
        metrics.retrieval_metrics(x, y, block_size=13, devices=jax.devices()[:1], **FULL)
    )
    results.append(metrics.retrieval_metrics(x, y, block_size=5, devices=jax.devices()[:3], **FULL))
    for r in results[1:]:
        for name in NAMES:
            np.testing.assert_allclose(r[name], results[0][name], rtol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_without_the_full_ranking_the_metrics_are_the_same(metric):
    # The top max(R, k) neighbours give what the full ranking gives, and no mAP.
    x, y = integer_grid(150, num_classes=9) if metric == "euclidean" else clustered(150, seed=7)
    y = with_singletons(y)
    full = metrics.retrieval_metrics(x, y, metric=metric, block_size=32, **FULL)
    top = metrics.retrieval_metrics(x, y, metric=metric, block_size=32)
    assert "mean_average_precision" not in top
    full.pop("mean_average_precision")
    assert top.keys() == full.keys()
    for name in top:
        np.testing.assert_allclose(top[name], full[name], rtol=1e-6, err_msg=name)
    q, ql, r, rl = x[:50], y[:50], x[50:], y[50:]
    full = metrics.retrieval_metrics(q, ql, r, rl, metric=metric, recall_at=(3, 200), **FULL)
    full.pop("mean_average_precision")
    top = metrics.retrieval_metrics(q, ql, r, rl, metric=metric, recall_at=(3, 200))
    for name in full:
        np.testing.assert_allclose(top[name], full[name], rtol=1e-6, err_msg=name)


def test_retrieval_no_valid_query_gives_zeros():
    x, _ = clustered(5)
    got = metrics.retrieval_metrics(x, np.arange(5), **FULL)  # Every class has one sample.
    assert got["num_queries"] == 0
    assert all(got[name] == 0.0 for name in NAMES)


def test_retrieval_recall_beyond_reference_size():
    x, y = clustered(10, num_classes=2)
    got = metrics.retrieval_metrics(x, y, recall_at=(1, 50), **FULL)
    want, count = np_retrieval(x, y, ks=(1, 50))
    np.testing.assert_allclose(got["recall_at_50"], want["recall_at_50"])
    assert got["recall_at_50"] == 1.0


def test_retrieval_bfloat16_input():
    x, y = clustered(64, seed=5)
    got = metrics.retrieval_metrics(jnp.asarray(x, jnp.bfloat16), y, **FULL)
    assert 0.0 <= got["map_at_r"] <= 1.0


def test_retrieval_on_sharded_input_equals_single_device():
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    x, y = clustered(64, seed=11)
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
    ys = jax.device_put(y, NamedSharding(mesh, PartitionSpec("data")))
    got = metrics.retrieval_metrics(xs, ys, block_size=8, **FULL)
    want = metrics.retrieval_metrics(x, y, block_size=8, **FULL)
    for name in NAMES:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)


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
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    x, y = clustered(20, num_classes=3)
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_docstring_examples():
    result = doctest.testmod(retrieval, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
