"""End to end through the CLI: supervised triplet (batch-hard) on digits beats
raw pixels on held-out MAP@R, and the run leaves its artefacts in workdir."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxmetric import main
from jaxmetric.data import sources
from jaxmetric.train import base_config, train_and_evaluate

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _numpy_map_at_r(x, y):
    """Leave-one-out MAP@R with cosine similarity, a plain loop."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    scores = []
    for i in range(len(y)):
        sim = x @ x[i]
        sim[i] = -np.inf
        order = np.argsort(-sim, kind="stable")
        r = int(np.sum(y == y[i])) - 1
        hits = y[order[:r]] == y[i]
        precision = np.cumsum(hits) / np.arange(1, r + 1)
        scores.append(np.sum(precision * hits) / r)
    return float(np.mean(scores))


@pytest.mark.slow
def test_cli_triplet_digits_beats_raw_pixels(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    argv = [
        "jaxmetric",
        "train",
        f"--config={ROOT / 'configs' / 'triplet_digits.py'}",
        f"--workdir={workdir}",
        "--config.num_steps=300",
        "--config.log_every=100",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main.run()
    assert not exit_info.value.code
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["step"] == 300
    for key in ("knn_accuracy", "linear_probe_accuracy", "map_at_r", "precision_at_1"):
        assert 0.0 <= metrics[key] <= 1.0
    _, test = sources.digits(test_fraction=0.5, seed=0)
    raw = _numpy_map_at_r(test.x.reshape(len(test), -1), test.y)
    assert metrics["map_at_r"] > raw + 0.2
    assert (workdir / "loss.png").stat().st_size > 1000
    events = list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    losses = [json.loads(line)[1] for line in open(workdir / "losses.jsonl")]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_simclr_trains_on_a_tfds_arrayrecord_dataset_of_variable_size_images(tfds_dir, tmp_path):
    """Images of 9-20 px stored raw (tfds.features.Tensor), cropped to 12 px
    views on the host: the encoder is sized from the view it is fed, not the
    stored image."""
    config = base_config()
    config.dataset.update(name="tfds", tfds_name="variable_size_images", data_dir=tfds_dir)
    config.model.encoder = "mlp"
    config.model.mlp_hidden = (32,)
    config.augment.kind = "simclr_image"
    config.augment.simclr_image.size = 12
    config.data.workers = 0
    config.batch_size = 8
    config.num_steps = 3
    config.log_every = 1
    config.num_devices = 1
    config.eval.linear_probe = False
    state, metrics = train_and_evaluate(config, str(tmp_path), progress=False)
    assert int(state.step) == 3 and int(state.skipped) == 0
    assert 0.0 <= metrics["knn_accuracy"] <= 1.0
    first_layer = jax.tree.leaves(state.params)
    assert any(leaf.shape[:1] == (12 * 12 * 3,) for leaf in first_layer)


def test_cli_trains_simclr_on_encoded_jpegs_with_worker_processes(jpeg_dir, tmp_path):
    """The Cloud TPU path end to end on CPU: a TFDS ArrayRecord dataset of
    JPEGs of varying sizes (tfds.features.Image), decoded and cropped by two
    worker processes, 3 SimCLR steps through the command line (its own
    process: absl defines the config's flags once per process), then the
    evaluation, raw-input baseline included."""
    workdir = tmp_path / "run"
    overrides = {
        "dataset.tfds_name": "jpeg_images",
        "dataset.data_dir": jpeg_dir,
        "dataset.eval_crop": 0.875,
        "data.workers": 2,
        "augment.simclr_image.size": 16,
        "model.encoder": "mlp",
        "model.head_hidden": 32,
        "model.embed_dim": 16,
        "batch_size": 16,
        "num_steps": 3,
        "optimizer.warmup_steps": 0,
        "log_every": 1,
        "eval_every": 0,
        "checkpoint_every": 0,
        "eval.max_examples": 0,
        "num_devices": 1,
    }
    cmd = [
        sys.executable,
        "-m",
        "jaxmetric.main",
        f"--config={ROOT / 'configs' / 'simclr_cifar10.py'}",
        f"--workdir={workdir}",
        *(f"--config.{k}={v}" for k, v in overrides.items()),
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["step"] == 3 and 0.0 <= metrics["knn_accuracy"] <= 1.0
    losses = [json.loads(line)[1] for line in open(workdir / "losses.jsonl")]
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert "raw-input kNN" in proc.stdout  # The baseline, for a TFDS dataset.


def test_the_trainer_turns_on_the_compilation_cache_unless_one_is_set(monkeypatch, tmp_path):
    from jaxmetric.train import trainer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    before = jax.config.jax_compilation_cache_dir  # conftest's shared test cache
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_enable_compilation_cache", False)
        trainer._use_compilation_cache()  # switched off: left off
        assert jax.config.jax_compilation_cache_dir is None
        jax.config.update("jax_enable_compilation_cache", True)
        trainer._use_compilation_cache()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jaxmetric" / "xla")
        jax.config.update("jax_compilation_cache_dir", "/elsewhere")
        trainer._use_compilation_cache()  # the user's choice stays
        assert jax.config.jax_compilation_cache_dir == "/elsewhere"
    finally:
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", before)
