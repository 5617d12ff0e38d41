"""jaxmetric.search.knn against a NumPy brute force, blockwise and sharded.

The reference computes the full float64 distance matrix and ranks every
query's row on (distance, index) with ``np.lexsort``. Exact ties come from
duplicated reference rows (and a zero query, at cosine distance 1 from
everything), tied in float32 as in float64, so the index order is compared
exactly everywhere.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxmetric import search
from jaxmetric.search import Index, knn

NUM_DEVICES = 8


def _numpy_knn(queries, reference, k, metric, mask=None):
    q = np.asarray(queries, np.float64)
    r = np.asarray(reference, np.float64)
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        rn = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
        dist = np.maximum(1.0 - qn @ rn.T, 0.0)
    else:
        dist = np.sqrt(np.sum(np.square(q[:, None, :] - r[None, :, :]), axis=-1))
    if mask is not None:
        dist = np.where(np.asarray(mask)[None, :], dist, np.inf)
    out_d = np.full((q.shape[0], k), np.inf)
    out_i = np.full((q.shape[0], k), -1, np.int64)
    for row in range(q.shape[0]):
        order = np.lexsort((np.arange(r.shape[0]), dist[row]))[:k]
        valid = np.isfinite(dist[row][order])
        out_d[row, : valid.sum()] = dist[row][order][valid]
        out_i[row, : valid.sum()] = order[valid]
    return out_d, out_i


def _data(seed, num_queries=6, num_reference=40, dim=5, *, ties=True):
    """Random normal queries and reference; with ``ties``, every row of the
    reference's second half a copy of one of the first half (bitwise equal
    rows, hence exactly tied distances in float32 as in float64), a zero
    query and a zero reference row."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(num_queries, dim)).astype(np.float32)
    r = rng.normal(size=(num_reference, dim)).astype(np.float32)
    if ties:
        half = num_reference // 2
        r[half:] = r[rng.integers(0, half, num_reference - half)]
        q[0] = 0.0  # Cosine: distance 1 to everything, all tied.
        r[3] = 0.0
    return q, r


def _assert_matches(result, expected):
    dist, idx = result
    exp_d, exp_i = expected
    assert dist.shape == exp_d.shape and idx.shape == exp_i.shape
    assert idx.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(idx), exp_i)
    np.testing.assert_allclose(np.asarray(dist), exp_d, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("ties", [True, False])
@pytest.mark.parametrize("k", [1, 4, 13])
@pytest.mark.parametrize("block_size", [None, 8, 7, 40, 64])
def test_knn_matches_numpy_brute_force(metric, ties, k, block_size):
    q, r = _data(k + (block_size or 0), ties=ties)
    expected = _numpy_knn(q, r, k, metric)
    _assert_matches(knn(q, r, k, metric=metric, block_size=block_size), expected)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ties_go_to_the_lower_index_across_block_boundaries(metric):
    # Every reference row is the same: the k lowest indices, in order, even
    # when the running best of earlier blocks meets later blocks' equals.
    q = np.ones((3, 4), np.float32)
    r = np.tile(np.array([[1.0, 2.0, 0.0, -1.0]], np.float32), (23, 1))
    for block_size in (None, 1, 3, 5, 23):
        dist, idx = knn(q, r, 7, metric=metric, block_size=block_size)
        np.testing.assert_array_equal(np.asarray(idx), np.tile(np.arange(7), (3, 1)))
        np.testing.assert_allclose(np.asarray(dist), dist[0, 0], rtol=0, atol=0)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("block_size", [None, 6])
def test_mask_excludes_rows_and_pads_with_inf_and_minus_one(metric, block_size):
    q, r = _data(1, num_reference=30)
    rng = np.random.default_rng(2)
    mask = rng.random(30) < 0.5
    _assert_matches(
        knn(q, r, 9, metric=metric, reference_mask=mask, block_size=block_size),
        _numpy_knn(q, r, 9, metric, mask),
    )
    # Fewer valid rows (3) than k (5): the other slots are +inf and -1.
    few = np.zeros(30, bool)
    few[[4, 17, 29]] = True
    dist, idx = knn(q, r, 5, metric=metric, reference_mask=few, block_size=block_size)
    _assert_matches((dist, idx), _numpy_knn(q, r, 5, metric, few))
    assert np.all(np.isinf(np.asarray(dist)[:, 3:]))
    assert np.all(np.asarray(idx)[:, 3:] == -1)
    assert set(np.asarray(idx)[:, :3].ravel()) <= {4, 17, 29}


def test_cosine_zero_vectors_are_at_distance_one_without_nan():
    q = np.array([[0.0, 0.0], [1.0, 0.0]], np.float32)
    r = np.array([[0.0, 0.0], [2.0, 0.0], [-1.0, 0.0]], np.float32)
    dist, idx = knn(q, r, 3)
    np.testing.assert_allclose(np.asarray(dist), [[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(idx), [[0, 1, 2], [1, 0, 2]])


def test_euclidean_is_not_squared_and_never_nan():
    q = np.array([[0.0, 0.0], [1e3, 1e3]], np.float32)
    r = np.array([[3.0, 4.0], [1e3, 1e3], [0.0, 0.0]], np.float32)
    dist, idx = knn(q, r, 2, metric="euclidean")
    assert not np.any(np.isnan(np.asarray(dist)))
    np.testing.assert_allclose(np.asarray(dist)[0], [0.0, 5.0])
    np.testing.assert_array_equal(np.asarray(idx), [[2, 0], [1, 0]])
    assert float(dist[1, 0]) == 0.0


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize(
    ("k", "num_reference", "block_size"),
    [(3, 1000, None), (6, 1003, None), (4, 1003, 600), (2, 997, 300)],
)
def test_long_rows_select_through_column_groups_exactly(metric, k, num_reference, block_size):
    # Rows of >= search.GROUPED_MIN_COLUMNS_PER_K * k columns take the grouped
    # top-k (also rows of a running merge: k + block columns); duplicated rows
    # tie across groups, a column count that GROUP does not divide pads.
    assert num_reference >= search.GROUPED_MIN_COLUMNS_PER_K * k
    q, r = _data(k + num_reference, num_queries=7, num_reference=num_reference)
    expected = _numpy_knn(q, r, k, metric)
    _assert_matches(knn(q, r, k, metric=metric, block_size=block_size), expected)
    mask = np.random.default_rng(k).random(num_reference) < 0.3
    _assert_matches(
        knn(q, r, k, metric=metric, reference_mask=mask, block_size=block_size),
        _numpy_knn(q, r, k, metric, mask),
    )


def test_long_rows_of_equal_distances_keep_the_lowest_indices():
    r = np.tile(np.array([[1.0, 2.0]], np.float32), (1000, 1))
    dist, idx = knn(np.ones((2, 2), np.float32), r, 5)
    np.testing.assert_array_equal(np.asarray(idx), np.tile(np.arange(5), (2, 1)))


def test_automatic_blocks_equal_a_single_block(monkeypatch):
    # Few distances per block, so that the default cuts the reference.
    monkeypatch.setattr(search, "AUTO_BLOCK_DISTANCES", 7 * 50)
    monkeypatch.setattr(search, "MIN_AUTO_BLOCK", 8)
    q, r = _data(9, num_queries=7, num_reference=200)
    _assert_matches(knn(q, r, 6), _numpy_knn(q, r, 6, "cosine"))


def test_approximate_search_reaches_its_recall_target():
    # Exact on CPU (XLA computes approx_max_k exactly there); on TPU the
    # measured recall is what the target promises.
    rng = np.random.default_rng(0)
    q = rng.normal(size=(64, 16)).astype(np.float32)
    r = rng.normal(size=(4096, 16)).astype(np.float32)
    _, exact = _numpy_knn(q, r, 10, "cosine")
    _, idx = knn(q, r, 10, recall_target=0.9)
    recall = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(np.asarray(idx), exact, strict=True)]
    )
    assert recall >= 0.9


def test_jit():
    q, r = _data(3)
    mask = np.arange(40) % 3 != 0
    jitted = jax.jit(knn, static_argnames=("k", "metric", "block_size"))
    for block_size in (None, 16):
        _assert_matches(
            jitted(q, r, 5, metric="euclidean", reference_mask=mask, block_size=block_size),
            _numpy_knn(q, r, 5, "euclidean", mask),
        )


def _sharded_knn(k, metric, block_size, with_mask):
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    search = functools.partial(knn, k=k, metric=metric, block_size=block_size, axis_name="data")
    if with_mask:
        in_specs = (P(), P("data"), P("data"))

        def local(q, r, mask):
            return search(q, r, reference_mask=mask)
    else:
        in_specs = (P(), P("data"))
        local = search
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=P()))


@pytest.mark.parametrize(
    ("metric", "k", "block_size", "with_mask"),
    [
        ("cosine", 3, None, False),  # k < local rows (5)
        ("euclidean", 12, None, True),  # k > local rows: candidates of several devices
        ("cosine", 12, 2, True),  # blocks that do not divide the local rows
        ("euclidean", 40, 5, False),  # k = global M
    ],
)
def test_sharded_equals_single_device(metric, k, block_size, with_mask):
    assert len(jax.devices()) == NUM_DEVICES
    q, r = _data(4, num_queries=5, num_reference=NUM_DEVICES * 5)
    mask = np.random.default_rng(5).random(r.shape[0]) < 0.7 if with_mask else None
    args = (q, r) if mask is None else (q, r, mask)
    sharded = _sharded_knn(k, metric, block_size, with_mask)(*args)
    single = knn(q, r, k, metric=metric, reference_mask=mask, block_size=block_size)
    np.testing.assert_array_equal(np.asarray(sharded[1]), np.asarray(single[1]))
    np.testing.assert_allclose(np.asarray(sharded[0]), np.asarray(single[0]), rtol=1e-6)
    _assert_matches(sharded, _numpy_knn(q, r, k, metric, mask))


def test_sharded_under_pmap():
    q, r = _data(6, num_queries=4, num_reference=NUM_DEVICES * 3)
    mapped = jax.pmap(
        lambda q, r: knn(q, r, 7, metric="euclidean", axis_name="data"),
        axis_name="data",
        in_axes=(None, 0),
    )
    dist, idx = mapped(q, r.reshape(NUM_DEVICES, 3, -1))
    expected = _numpy_knn(q, r, 7, "euclidean")
    for device in range(NUM_DEVICES):
        _assert_matches((dist[device], idx[device]), expected)


def test_bad_inputs_name_the_argument():
    q, r = _data(0, num_reference=10)
    with pytest.raises(ValueError, match="`k`"):
        knn(q, r, 11)
    with pytest.raises(ValueError, match="`k`"):
        knn(q, r, 0)
    with pytest.raises(ValueError, match="`k`"):
        knn(q, r, 2.0)
    with pytest.raises(ValueError, match="`recall_target`"):
        knn(q, r, 2, recall_target=1.5)
    with pytest.raises(ValueError, match="`queries`"):
        knn(q[0], r, 1)
    with pytest.raises(ValueError, match="`reference`"):
        knn(q, r[None], 1)
    with pytest.raises(ValueError, match="`reference`"):
        knn(q, r[:, :3], 1)
    with pytest.raises(ValueError, match="`metric`"):
        knn(q, r, 1, metric="dot")
    with pytest.raises(ValueError, match="`reference_mask`"):
        knn(q, r, 1, reference_mask=np.ones(9, bool))
    with pytest.raises(ValueError, match="`block_size`"):
        knn(q, r, 1, block_size=0)
    with pytest.raises(ValueError, match="`axis_name`"):
        knn(q, r, 1, axis_name="data")


def test_sharded_k_is_checked_against_the_global_rows():
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    q, r = _data(0, num_reference=NUM_DEVICES * 2)
    ok = jax.shard_map(
        lambda q, r: knn(q, r, 16, axis_name="data"),
        mesh=mesh,
        in_specs=(P(), P("data")),
        out_specs=P(),
    )
    assert ok(q, r)[1].shape == (q.shape[0], 16)
    too_many = jax.shard_map(
        lambda q, r: knn(q, r, 17, axis_name="data"),
        mesh=mesh,
        in_specs=(P(), P("data")),
        out_specs=P(),
    )
    with pytest.raises(ValueError, match="`k`"):
        too_many(q, r)


@pytest.mark.parametrize("block_size", [None, 2])
def test_sharded_ties_across_devices_go_to_the_lower_index(block_size):
    # All 40 rows equal, 5 per device: the 12 lowest global indices, in order.
    q = np.ones((2, 3), np.float32)
    r = np.tile(np.array([[0.5, -1.0, 2.0]], np.float32), (NUM_DEVICES * 5, 1))
    dist, idx = _sharded_knn(12, "euclidean", block_size, False)(q, r)
    np.testing.assert_array_equal(np.asarray(idx), np.tile(np.arange(12), (2, 1)))
    np.testing.assert_array_equal(
        np.asarray(dist), np.asarray(knn(q, r, 12, metric="euclidean")[0])
    )


def test_bfloat16_inputs_give_float32_distances():
    q, r = _data(7, ties=False)
    dist, idx = knn(jnp.asarray(q, jnp.bfloat16), jnp.asarray(r, jnp.bfloat16), 4)
    assert dist.dtype == jnp.float32 and idx.dtype == jnp.int32
    q16 = np.asarray(jnp.asarray(q, jnp.bfloat16).astype(jnp.float32))
    r16 = np.asarray(jnp.asarray(r, jnp.bfloat16).astype(jnp.float32))
    _assert_matches((dist, idx), _numpy_knn(q16, r16, 4, "cosine"))


# --------------------------------------------------------------------------- Index


def _gallery(n=30, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.integers(0, 5, n)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_index_search_is_knn_over_everything_added(metric):
    x, y = _gallery()
    index = Index(8, metric=metric)
    index.add(x[:12], labels=y[:12])
    index.add(x[12:], labels=y[12:])
    assert len(index) == 30
    q = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    dist, idx, labels = index.search(q, k=4, block_size=7)
    want_dist, want_idx = _numpy_knn(q, x, 4, metric)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, y[want_idx])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_index_sharded_over_a_mesh_and_in_query_blocks_equals_knn(metric, tmp_path):
    # 8 devices, 45 rows: the shards are padded with masked rows.
    q, r = _data(11, num_queries=9, num_reference=45)
    labels = np.arange(45) % 4
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("gallery",))
    index = Index(5, metric=metric, mesh=mesh)
    index.add(r[:20], labels[:20])
    index.search(q, 3)  # Puts the first 20 rows on the devices ...
    index.add(r[20:], labels[20:])  # ... which the next search must not reuse.
    expected = _numpy_knn(q, r, 7, metric)
    for query_block in (4, 9, 100):
        dist, idx, found = index.search(q, 7, query_block=query_block)
        _assert_matches((dist, idx), expected)
        np.testing.assert_array_equal(found, labels[idx])
    index.save(tmp_path / "g.npz")
    loaded = Index.load(tmp_path / "g.npz", mesh=mesh)
    _assert_matches(loaded.search(q, 7)[:2], expected)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_bfloat16_gallery_reranked_exactly(metric):
    # Distances are the exact float32 ones; neighbours those of the float32
    # search wherever the true ones are among the rerank * k candidates.
    rng = np.random.default_rng(3)
    r = rng.normal(size=(3000, 32)).astype(np.float32)
    q = rng.normal(size=(50, 32)).astype(np.float32)
    r[1500:1510] = r[:10]  # Exact ties: the lower index first, as knn.
    q[:10] = r[:10] + 0.05 * rng.normal(size=(10, 32))  # Nearest: rows 0-9 (and 1500-1509).
    exp_d, exp_i = _numpy_knn(q, r, 8, metric)
    index = Index(32, metric=metric, storage="bfloat16", rerank=4)
    index.add(r)
    dist, idx, _ = index.search(q, 8)
    recall = np.mean([len(set(a) & set(b)) / 8 for a, b in zip(idx, exp_i, strict=True)])
    assert recall >= 0.99
    same = np.all(idx == exp_i, axis=1)
    assert same.mean() >= 0.9
    f32_d, f32_i = knn(q, r, 8, metric=metric)
    np.testing.assert_array_equal(np.asarray(f32_i)[same], idx[same])
    np.testing.assert_allclose(dist[same], np.asarray(f32_d)[same], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dist[same], exp_d[same], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(idx[:10, 0], np.arange(10))
    with pytest.raises(ValueError, match="`storage`"):
        Index(32, storage="int8")
    with pytest.raises(ValueError, match="`rerank`"):
        Index(32, storage="bfloat16", rerank=0)


def test_index_round_trips_through_save_and_load(tmp_path):
    x, y = _gallery()
    index = Index(8, metric="euclidean")
    index.add(x, labels=y)
    index.save(tmp_path / "gallery.npz")
    back = Index.load(tmp_path / "gallery.npz", dim=8, metric="euclidean")
    assert (back.dim, back.metric, len(back)) == (8, "euclidean", 30)
    np.testing.assert_array_equal(back.embeddings, x)
    np.testing.assert_array_equal(back.labels, y)
    q = x[:3] + 0.01
    for got, want in zip(back.search(q, 2), index.search(q, 2), strict=True):
        np.testing.assert_array_equal(got, want)
    unlabelled = Index(8)
    unlabelled.add(x)
    unlabelled.save(tmp_path / "plain.npz")
    assert Index.load(tmp_path / "plain.npz").search(q, 1)[2] is None
    with pytest.raises(ValueError, match="`dim`=16 differs"):
        Index.load(tmp_path / "gallery.npz", dim=16)
    with pytest.raises(ValueError, match="`metric`='cosine' differs"):
        Index.load(tmp_path / "gallery.npz", metric="cosine")
    np.savez(tmp_path / "other.npz", embeddings=x)
    with pytest.raises(ValueError, match="not a jaxmetric.search.Index"):
        Index.load(tmp_path / "other.npz")


_KILLED_SAVE = """
import os, signal, sys
import numpy as np
from jaxmetric.search import Index
index = Index.load(sys.argv[1])
index.add(np.ones((100, index.dim), np.float32), labels=np.zeros(100, int))
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # Dies with the new file written.
index.save(sys.argv[1])
"""


def test_a_process_killed_while_saving_leaves_the_previous_index(tmp_path):
    x, y = _gallery()
    index = Index(8)
    index.add(x, labels=y)
    path = tmp_path / "gallery.npz"
    index.save(path)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(path)], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    back = Index.load(path)
    assert len(back) == 30
    np.testing.assert_array_equal(back.embeddings, x)


def test_index_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="`dim`"):
        Index(0)
    with pytest.raises(ValueError, match="`metric`"):
        Index(4, metric="hamming")
    index = Index(4)
    with pytest.raises(ValueError, match="index is empty"):
        index.search(np.zeros((1, 4)), 1)
    with pytest.raises(ValueError, match=r"`embeddings` must have shape \[n, 4\]"):
        index.add(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((1, 4), np.nan))
    unlabelled = Index(4)
    unlabelled.add(np.ones((3, 4)))
    with pytest.raises(ValueError, match="`k`"):
        unlabelled.search(np.ones((1, 4)), 4)
    with pytest.raises(ValueError, match="`query_block`"):
        unlabelled.search(np.ones((1, 4)), 1, query_block=0)
    with pytest.raises(ValueError, match="`mesh`"):
        Index(4, mesh=jax.sharding.Mesh(np.array(jax.devices()).reshape(2, 4), ("a", "b")))
    index.add(np.eye(4), labels=np.arange(4))
    with pytest.raises(ValueError, match="`labels` are required"):
        index.add(np.eye(4))
    with pytest.raises(ValueError, match="`labels` must be ints"):
        index.add(np.eye(4), labels=np.zeros(3, int))
    with pytest.raises(ValueError, match=r"`queries` must have shape \[Q, 4\]"):
        index.search(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="`k`"):
        index.search(np.zeros((2, 4)), 5)
