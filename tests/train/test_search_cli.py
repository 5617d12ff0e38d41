"""``jaxmetric index | search | verify`` on a trained workdir, against NumPy
on the embeddings that ``jaxmetric evaluate``'s own path gives."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from jaxmetric import main
from jaxmetric.search import Index
from jaxmetric.train import evaluate_cli, search_cli


@pytest.fixture(scope="module")
def embedded(run):
    """The run's embeddings of both splits, through ``jaxmetric evaluate``'s path."""
    workdir, _ = run
    config, graphdef, state = evaluate_cli.restore(str(workdir))
    return evaluate_cli.embed_splits(config, graphdef, state)


def _cli(argv: list[str], capsys) -> tuple[int | str | None, str, str]:
    """Runs the console script in-process; (exit code, stdout, stderr)."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(sys, "argv", ["jaxmetric", *argv])
    main.FLAGS.unparse_flags()  # absl keeps flag values between parses.
    try:
        with pytest.raises(SystemExit) as exit_info:
            main.run()
    finally:
        monkeypatch.undo()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def _cosine_top_k(queries, gallery, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    dist = 1.0 - q.astype(np.float64) @ g.astype(np.float64).T
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, axis=1), order


def test_index_then_search_through_the_cli(run, embedded, tmp_path, capsys):
    workdir, _ = run
    path = tmp_path / "gallery.npz"
    code, out, _ = _cli(["index", f"--workdir={workdir}", f"--out={path}"], capsys)
    assert not code and "300 rows" in out
    index = Index.load(path, metric="cosine")
    np.testing.assert_array_equal(index.embeddings, embedded.test_embeddings)
    np.testing.assert_array_equal(index.labels, embedded.test_labels)

    queries = embedded.train_embeddings[:25]
    np.save(tmp_path / "q.npy", queries)
    code, out, _ = _cli(["search", f"--index={path}", f"--queries={tmp_path / 'q.npy'}"], capsys)
    assert not code
    rows = [json.loads(line) for line in out.splitlines()]
    want_d, want_i = _cosine_top_k(queries, embedded.test_embeddings, 10)
    assert [r["query"] for r in rows] == list(range(25))
    np.testing.assert_array_equal([r["indices"] for r in rows], want_i)
    np.testing.assert_allclose([r["distances"] for r in rows], want_d, atol=1e-5)
    np.testing.assert_array_equal([r["labels"] for r in rows], embedded.test_labels[want_i])

    # Queries embedded by the run itself: the train split, as above.
    code, out, _ = _cli(
        ["search", f"--index={path}", f"--workdir={workdir}", "--split=train", "--k=3"], capsys
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert not code and len(rows) == len(embedded.train_labels)
    np.testing.assert_array_equal([r["indices"] for r in rows[:25]], want_i[:, :3])


def _brute_force_threshold(dist, same, target_far):
    """The largest pair distance whose FAR (impostors at or below it) is <= target."""
    best = -np.inf
    impostor = dist[~same]
    for t in np.unique(dist):
        if np.mean(impostor <= t) <= target_far:
            best = max(best, t)
    return best


def test_verify_calibrates_on_one_half_of_the_identities_and_tests_on_the_other(
    run, embedded, capsys
):
    workdir, _ = run
    code, out, _ = _cli(["verify", f"--workdir={workdir}", "--target_far=0.05"], capsys)
    assert not code and "threshold" in out
    section = json.loads((workdir / "metrics.json").read_text())["verify"]
    # NumPy: every pair of each half of the held-out identities.
    z, y = embedded.test_embeddings, embedded.test_labels
    first, second = search_cli._identity_halves(y, seed=0)
    assert set(y[first]).isdisjoint(y[second])

    def pairs(mask):
        u = z[mask] / np.linalg.norm(z[mask], axis=1, keepdims=True)
        i, j = np.triu_indices(int(mask.sum()), 1)
        dist = 1.0 - np.sum(u[i].astype(np.float64) * u[j], axis=1)
        return dist, y[mask][i] == y[mask][j]

    d_cal, s_cal = pairs(first)
    threshold = _brute_force_threshold(d_cal, s_cal, 0.05)
    assert section["threshold"] == pytest.approx(threshold, abs=1e-6)
    assert section["calibration"]["num_impostor"] == int((~s_cal).sum())
    d_test, s_test = pairs(second)
    # Tolerance: a pair within float32 rounding of the threshold.
    near = np.abs(d_test - threshold) < 1e-6
    far = np.mean((d_test <= threshold)[~s_test])
    assert section["test"]["far"] == pytest.approx(far, abs=np.mean(near[~s_test]) + 1e-12)
    lo, hi = section["calibration"]["far_interval"]
    assert section["far_in_interval"] == (lo <= section["test"]["far"] <= hi)
    assert section["calibration"]["far"] <= 0.05
    assert json.loads((workdir / "metrics.json").read_text())["step"] > 0  # kept


def test_cli_usage_errors_name_what_is_missing(run, tmp_path, capsys):
    workdir, _ = run
    code, _, err = _cli(["index", f"--workdir={workdir}"], capsys)
    assert code == 1 and "--out required" in err
    code, _, _ = _cli(["search", f"--index={tmp_path / 'absent.npz'}", "--queries=q.npy"], capsys)
    assert "absent.npz" in str(code)
    code, _, _ = _cli(["index", f"--workdir={tmp_path}", f"--out={tmp_path / 'g.npz'}"], capsys)
    assert "No checkpoint" in str(code)
    with pytest.raises(ValueError, match="`calibrate_on`"):
        search_cli.verify_workdir(str(workdir), calibrate_on="nowhere")
    with pytest.raises(ValueError, match="`split`"):
        search_cli.embed_workdir_split(str(workdir), "validation")
