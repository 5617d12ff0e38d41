"""Shared by the tests of what comes after training: one short trained run."""

from __future__ import annotations

import json
import pathlib

import pytest

from jaxmetric.train import train_and_evaluate
from jaxmetric.train.config import load_recipe

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 30


def recipe(name: str):
    return load_recipe(ROOT / "configs" / f"{name}.py")


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """A short triplet run on digits (2 of the 8 test devices), without its
    end-of-run evaluation; metrics.json holds what a training run would have
    written. Returns (workdir, trained state)."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    config = recipe("triplet_digits")
    config.num_steps = STEPS
    config.log_every = STEPS
    # Trained on 2 devices, restored onto one; 300 examples per split keep
    # the evaluation's compiles small.
    config.num_devices = 2
    config.eval.max_examples = 300
    # Encoder features of the embeddings' width (64, as the raw 8x8 pixels):
    # every metric compiles once for the three columns.
    config.model.mlp_hidden = (128, 64)
    state, _ = train_and_evaluate(config, str(workdir), run_eval=False, progress=False)
    (workdir / "metrics.json").write_text(json.dumps({"step": STEPS, "knn_accuracy": 0.5}))
    return workdir, state
