"""``jaxmetric evaluate``: restores a trained workdir, scores it, writes
metrics.json (merged) and the embedding map; checked against NumPy /
scikit-learn on the same embeddings, in-process and through the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from jaxmetric import main
from jaxmetric.train import evaluate_cli, train_and_evaluate

from .conftest import ROOT, STEPS, recipe


@pytest.fixture(scope="module")
def reference(run):
    """The run's held-out embeddings and NumPy / scikit-learn metrics of them."""
    workdir, state = run
    config, graphdef, restored = evaluate_cli.restore(str(workdir))
    # The restored parameters are the trained ones.
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    emb = evaluate_cli.embed_splits(config, graphdef, restored)
    z, y = emb.test_embeddings.astype(np.float64), emb.test_labels
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    # Leave-one-out precision@1: is the most similar other row of the same label?
    p1 = float(np.mean(y[np.argmax(sim, axis=1)] == y))
    knn = KNeighborsClassifier(n_neighbors=config.eval.knn_k, metric="cosine", algorithm="brute")
    knn.fit(emb.train_embeddings, emb.train_labels)
    return {"precision_at_1": p1, "knn_accuracy": float(knn.score(z, y)), "emb": emb}


@pytest.mark.slow
def test_evaluate_workdir(run, reference):
    workdir, _ = run
    out = io.StringIO()
    section = evaluate_cli.evaluate_workdir(str(workdir), embedding_map="pca", out=out)
    data = json.loads((workdir / "metrics.json").read_text())
    # The training run's keys stay; the evaluation is its own section.
    assert data["step"] == STEPS and data["knn_accuracy"] == 0.5
    ev = data["evaluate"]
    assert ev["step"] == STEPS and ev["embedding_map"] == "embedding_map.png"
    assert ev["num_test"] == len(reference["emb"].test_labels) == 300
    expected = {
        "precision_at_1",
        "r_precision",
        "map_at_r",
        "recall_at_1",
        "recall_at_8",
        "knn_accuracy",
        "knn_accuracy_weighted",
        "linear_probe_accuracy",
        "roc_auc",
        "tar_at_far_0.01",
        "best_accuracy",
        "nmi",
        "ami",
    }
    for section_name in ("embeddings", "raw_inputs"):
        metrics = ev[section_name]
        assert expected <= set(metrics), expected - set(metrics)
        for key in expected:
            assert 0.0 <= metrics[key] <= 1.0, (section_name, key, metrics[key])
    assert set(ev["features"]) == {"knn_accuracy", "linear_probe_accuracy"}
    assert section["embeddings"]["precision_at_1"] == ev["embeddings"]["precision_at_1"]
    # Against NumPy / scikit-learn on the same embeddings.
    assert ev["embeddings"]["precision_at_1"] == pytest.approx(
        reference["precision_at_1"], abs=1e-9
    )
    assert ev["embeddings"]["knn_accuracy"] == pytest.approx(reference["knn_accuracy"], abs=0.01)
    # Thirty triplet steps already beat raw pixels at retrieval.
    assert ev["embeddings"]["map_at_r"] > ev["raw_inputs"]["map_at_r"]
    png = workdir / "embedding_map.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    table = out.getvalue()
    assert "MAP@R" in table and "raw inputs" in table and "k-means NMI" in table


@pytest.mark.slow
def test_console_script(run, reference, capsys):
    """``jaxmetric evaluate --workdir=DIR`` (the console script's entry point,
    in-process so the compiled metrics are reused; the config is read from
    the checkpoint)."""
    workdir, _ = run
    argv = ["jaxmetric", "evaluate", f"--workdir={workdir}", "--embedding_map=none"]
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(sys, "argv", argv + ["--nobaseline"])
    # absl keeps flag values between parses: start from the defaults (no --config).
    main.FLAGS.unparse_flags()
    try:
        with pytest.raises(SystemExit) as exit_info:
            main.run()
    finally:
        monkeypatch.undo()
    assert not exit_info.value.code
    out = capsys.readouterr().out
    assert "precision@1" in out and "raw inputs" not in out
    ev = json.loads((workdir / "metrics.json").read_text())["evaluate"]
    assert ev["raw_inputs"] == {} and ev["embedding_map"] is None
    assert ev["embeddings"]["precision_at_1"] == pytest.approx(
        reference["precision_at_1"], abs=1e-9
    )


@pytest.mark.slow
def test_training_metrics_equal_evaluate_on_the_same_checkpoint(tmp_path):
    """One evaluation stack: the numbers a run writes into metrics.json (trained
    and scored on 2 devices) are those ``jaxmetric evaluate`` computes from its
    checkpoint (restored onto one device)."""
    config = recipe("triplet_digits")
    config.num_steps = 20
    config.log_every = 20
    config.num_devices = 2
    config.eval.max_examples = 300
    config.model.mlp_hidden = (128, 64)
    assert config.eval.linear_probe and config.eval.retrieval
    workdir = tmp_path / "run"
    _, trained = train_and_evaluate(config, str(workdir), progress=False)
    written = json.loads((workdir / "metrics.json").read_text())
    section = evaluate_cli.evaluate_workdir(
        str(workdir), embedding_map="none", baseline=False, print_table=False
    )
    # The run's kNN and linear probe of the encoder features h are the
    # "features" section; everything else it measures is of the embeddings z.
    features = {"knn_accuracy_features": "knn_accuracy", "linear_probe_accuracy": None}
    assert {"knn_accuracy", "map_at_r", "precision_at_1", *features} <= set(trained)
    for key, value in trained.items():
        if key == "step":
            continue
        if key in features:
            evaluated = section["features"][features[key] or key]
        else:
            evaluated = section["embeddings"][key]
        assert value == written[key] == evaluated, key


def test_missing_checkpoint(tmp_path):
    with pytest.raises(evaluate_cli.MissingCheckpointError, match="No checkpoint"):
        evaluate_cli.evaluate_workdir(str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()  # nothing created
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(evaluate_cli.MissingCheckpointError, match="no saved step"):
        evaluate_cli.evaluate_workdir(str(tmp_path))
    # `python -m jaxmetric.main --mode=evaluate` in its own process: exits with the message.
    cmd = [sys.executable, "-m", "jaxmetric.main", "--mode=evaluate", f"--workdir={tmp_path}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "jaxmetric evaluate: No checkpoint" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_roc_auc_of_many_pairs():
    """More than 2**31 positive x negative pairs (evaluate samples 100k of
    each): the AUC still equals scikit-learn's."""
    from sklearn.metrics import roc_auc_score

    from jaxmetric import metrics

    rng = np.random.default_rng(0)
    n = 50_000  # 50k x 50k = 2.5e9 pairs
    scores = np.concatenate([rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)]).astype(np.float32)
    same = np.arange(2 * n) < n
    auc = metrics.verification_metrics(scores, same, far_targets=(0.01,))["roc_auc"]
    assert auc == pytest.approx(roc_auc_score(same, scores), abs=1e-5)
