"""Checkpoint / resume: an interrupted run restarted from its workdir ends
with the same state as an uninterrupted one, also on another device count."""

import importlib.util
import json
import pathlib

import jax
import numpy as np

from jaxmetric.train import train_and_evaluate

CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "moco_mnist1d.py"


def _config(num_devices: int):
    spec = importlib.util.spec_from_file_location("moco_mnist1d", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config()
    c.batch_size = 32
    c.moco.queue_size = 128
    c.num_steps = 6
    c.log_every = 2
    c.num_devices = num_devices
    return c


def test_interrupted_moco_run_resumes_to_the_same_state(tmp_path):
    full, _ = train_and_evaluate(_config(1), str(tmp_path / "full"), run_eval=False)
    part, _ = train_and_evaluate(_config(1), str(tmp_path / "part"), stop_after=3, run_eval=False)
    assert int(part.step) == 3
    # Restart from the workdir, now on 8 devices: the checkpoint restores the
    # state (queue, momentum encoder, PRNG key) and the data position.
    resumed, _ = train_and_evaluate(_config(8), str(tmp_path / "part"), run_eval=False)
    assert int(resumed.step) == 6
    a, b = jax.device_get(full), jax.device_get(resumed)
    for name in ("params", "batch_stats", "opt_state", "target_params", "queue", "key"):
        for u, v in zip(
            jax.tree.leaves(getattr(a, name)), jax.tree.leaves(getattr(b, name)), strict=True
        ):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=1e-5, err_msg=name)
    # A resumed run must differ from one that restarted its data from scratch.
    assert not np.allclose(jax.tree.leaves(part.params)[0], jax.tree.leaves(a.params)[0])
    # The loss log continues where it stopped.
    steps = [json.loads(line)[0] for line in open(tmp_path / "part" / "losses.jsonl")]
    assert steps == [2, 3, 4, 6]
