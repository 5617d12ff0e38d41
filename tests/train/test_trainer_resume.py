"""Checkpoint / resume: an interrupted run restarted from its workdir ends
with the same state as an uninterrupted one, also on another device count
(1 -> 8, 8 -> 4, 8 -> 1); the NaN guard; bad checkpoints and a workdir of
another config fail with a clear message, before anything is compiled."""

from __future__ import annotations

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from jaxmetric.data import sources
from jaxmetric.train import base_config, train_and_evaluate
from jaxmetric.train import trainer as trainer_module
from jaxmetric.train.checkpoint import Checkpointer, CheckpointError, ConfigMismatchError
from jaxmetric.train.config import load_recipe
from jaxmetric.train.trainer import NonFiniteStepsError

CONFIG = pathlib.Path(__file__).resolve().parents[2] / "configs" / "moco_mnist1d.py"
STATE_FIELDS = ("params", "batch_stats", "opt_state", "target_params", "queue", "key")


def _config(num_devices: int):
    c = load_recipe(CONFIG)
    c.batch_size = 32
    c.moco.queue_size = 128
    c.num_steps = 6
    c.log_every = 2
    c.num_devices = num_devices
    # SGD, not the recipe's Adam: these tests compare runs on different
    # device counts at 1e-5, and a different device count sums the gradients
    # in another order. Adam divides each gradient element by its own RMS, so
    # elements at round-off level (~1e-9 here, differing by a few percent
    # between 1 and 8 devices) become steps of ~lr / 10: a fresh 8-device run
    # left the 1-device one by 5e-3 in 3 steps. SGD keeps round-off at
    # round-off (~1e-7), so any difference above 1e-5 is a real resume bug.
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.05
    return c


def _assert_same_state(a, b, atol=1e-5):
    a, b = jax.device_get(a), jax.device_get(b)
    assert int(a.step) == int(b.step)
    for name in STATE_FIELDS:
        for u, v in zip(
            jax.tree.leaves(getattr(a, name)), jax.tree.leaves(getattr(b, name)), strict=True
        ):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=atol, err_msg=name)


def _losses(workdir: pathlib.Path) -> list[list]:
    return [json.loads(line) for line in open(workdir / "losses.jsonl")]


@pytest.fixture(scope="module")
def full_moco_run(tmp_path_factory):
    """The uninterrupted 6-step MoCo run on one device: (state, loss log)."""
    workdir = tmp_path_factory.mktemp("full")
    state, _ = train_and_evaluate(_config(1), str(workdir), run_eval=False)
    return state, _losses(workdir)


@pytest.mark.slow
def test_interrupted_moco_run_resumes_to_the_same_state(tmp_path, full_moco_run):
    full, full_losses = full_moco_run
    part, _ = train_and_evaluate(_config(1), str(tmp_path / "part"), stop_after=3, run_eval=False)
    assert int(part.step) == 3
    # Restart from the workdir, now on 8 devices: the checkpoint restores the
    # state (queue, momentum encoder, PRNG key) and the data position.
    resumed, _ = train_and_evaluate(_config(8), str(tmp_path / "part"), run_eval=False)
    assert int(resumed.step) == 6
    _assert_same_state(full, resumed)
    # A resumed run must differ from one that restarted its data from scratch.
    assert not np.allclose(jax.tree.leaves(part.params)[0], jax.tree.leaves(full.params)[0])
    # The loss log continues where it stopped, with the same losses.
    log = _losses(tmp_path / "part")
    assert [s for s, _ in log] == [2, 3, 4, 6]
    full_log = dict(map(tuple, full_losses))
    for step, loss in log:
        if step in full_log:
            assert loss == pytest.approx(full_log[step], rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_eight_device_checkpoint_resumes_on_four_and_on_one_device(tmp_path, full_moco_run):
    """Elasticity: a checkpoint written on 8 devices continues on 4 and on 1
    with the same global batch, to the state and the losses of the
    uninterrupted run."""
    full, full_losses = full_moco_run
    full_log = dict(map(tuple, full_losses))
    part = tmp_path / "part8"
    train_and_evaluate(_config(8), str(part), stop_after=3, run_eval=False)
    for num_devices in (4, 1):
        workdir = tmp_path / f"resume{num_devices}"
        shutil.copytree(part, workdir)
        resumed, _ = train_and_evaluate(_config(num_devices), str(workdir), run_eval=False)
        _assert_same_state(full, resumed)
        log = _losses(workdir)
        assert [s for s, _ in log] == [2, 3, 4, 6]
        for step, loss in log:
            if step in full_log:  # Step 3 is logged only where the run stopped.
                assert loss == pytest.approx(full_log[step], rel=1e-5, abs=1e-6), num_devices


# ----------------------------------------------------------------------------
# NaN guard, bad checkpoints, another config: a tiny supervised run on digits.
# ----------------------------------------------------------------------------


def _tiny(**overrides):
    c = base_config()
    c.method = "supervised"
    c.dataset.name = "digits"
    c.dataset.seed = 0
    c.model.encoder = "mlp"
    c.model.mlp_hidden = (16,)
    c.model.head = "linear"
    c.model.embed_dim = 8
    c.augment.kind = "none"
    c.supervised.samples_per_class = 4
    c.batch_size = 16
    c.num_steps = 12
    c.log_every = 1
    c.checkpoint_every = 2
    c.num_devices = 2
    c.optimizer.learning_rate = 1e-2
    c.update_from_flattened_dict(overrides)
    return c


class _PoisonedSplit:
    """A data split whose batches hold a NaN at the given (1-based) steps."""

    def __init__(self, split: sources.Split, bad_steps) -> None:
        self.x, self.y, self.num_classes = split.x, split.y, split.num_classes
        self.example_shape = split.example_shape
        self._split, self._bad, self._calls = split, set(bad_steps), 0

    def __len__(self) -> int:
        return len(self._split)

    def take(self, idx):
        x, y = self._split.take(idx)
        self._calls += 1
        if self._calls in self._bad:
            x = np.array(x)
            x[0, 0] = np.nan
        return x, y


def _poison(monkeypatch, bad_steps):
    load = sources.load

    def poisoned_load(cfg):
        train, test = load(cfg)
        return _PoisonedSplit(train, bad_steps), test

    monkeypatch.setattr(trainer_module.sources, "load", poisoned_load)


def test_non_finite_steps_are_skipped_and_too_many_in_a_row_stop_the_run(
    tmp_path, monkeypatch, capsys
):
    # Steps 3 and 5 hold a NaN: skipped (not applied), counted and logged.
    _poison(monkeypatch, {3, 5})
    clean, _ = train_and_evaluate(_tiny(), str(tmp_path / "clean"), stop_after=6, run_eval=False)
    assert int(clean.step) == 6 and int(clean.skipped) == 2
    assert int(clean.consecutive_skipped) == 0
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(jax.device_get(clean.params)))
    err = capsys.readouterr().err
    assert "step 6/12" in err and "(2 non-finite steps skipped)" in err
    assert "2 steps had a non-finite loss or gradient and were skipped" in err
    # From step 7 on every batch holds a NaN: the run stops after 3 of them.
    _poison(monkeypatch, {3, 5, *range(7, 100)})
    config = _tiny(max_consecutive_skipped=3)
    with pytest.raises(NonFiniteStepsError, match=r"Stopped at step 9: 3 consecutive steps") as e:
        train_and_evaluate(config, str(tmp_path / "bad"), run_eval=False)
    assert "5 skipped in all" in str(e.value)
    assert "the last good checkpoint is step 6" in str(e.value)
    ckpt = Checkpointer(str(tmp_path / "bad"))
    # No checkpoint was written during the bad run (step 8): 4 and 6 are kept,
    # and step 6 holds the state of the run that never saw the bad batches.
    assert ckpt.all_steps() == [4, 6]
    restored, _ = ckpt.restore(clean)
    ckpt.close()
    for u, v in zip(jax.tree.leaves(clean.params), jax.tree.leaves(restored.params), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.fixture
def tiny_workdir(tmp_path):
    """A workdir with checkpoints at steps 2 and 4 of the tiny run."""
    workdir = tmp_path / "run"
    train_and_evaluate(_tiny(), str(workdir), stop_after=4, run_eval=False)
    return workdir


def _no_data(monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the checkpoint's config was checked")

    monkeypatch.setattr(trainer_module.sources, "load", no_data)


def test_workdir_of_another_config_refuses_to_resume(tiny_workdir, monkeypatch):
    with monkeypatch.context() as m:
        _no_data(m)
        with pytest.raises(ConfigMismatchError, match=r"`optimizer.learning_rate`: 0.01 in the"):
            train_and_evaluate(_tiny(**{"optimizer.learning_rate": 0.1}), str(tiny_workdir))
        with pytest.raises(ConfigMismatchError, match=r"step 4 .*`model.mlp_hidden`"):
            train_and_evaluate(_tiny(**{"model.mlp_hidden": (32,)}), str(tiny_workdir))
    # Fields that may differ (length, devices, logging, evaluation) pass.
    ckpt = Checkpointer(str(tiny_workdir))
    ckpt.check_config(
        _tiny(num_steps=50, num_devices=1, log_every=3, checkpoint_every=5, **{"eval.knn_k": 3})
    )
    ckpt.close()
    # Any change resumes once allowed.
    config = _tiny(allow_config_change=True, **{"optimizer.learning_rate": 0.1})
    state, _ = train_and_evaluate(config, str(tiny_workdir), stop_after=6, run_eval=False)
    assert int(state.step) == 6


def test_incomplete_and_truncated_checkpoints(tiny_workdir):
    # What a crash during a save leaves: orbax's temporary directory, ignored.
    tmp = tiny_workdir / "checkpoints" / "6.orbax-checkpoint-tmp-1234567890"
    shutil.copytree(tiny_workdir / "checkpoints" / "4", tmp)
    ckpt = Checkpointer(str(tiny_workdir))
    assert ckpt.latest_step() == 4
    ckpt.close()
    # A truncated checkpoint: a clear error that names the step.
    step_dir = tiny_workdir / "checkpoints" / "4"
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert files
    for p in files:  # Truncate every array file of the state to half its size.
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"checkpoint of step 4 .* resume from step 2"):
        train_and_evaluate(_tiny(), str(tiny_workdir), run_eval=False)
    # The deleted directory case: gone files, the same clear error.
    shutil.rmtree(step_dir / "state")
    with pytest.raises(CheckpointError, match=r"checkpoint of step 4"):
        train_and_evaluate(_tiny(), str(tiny_workdir), run_eval=False)
    # Following the advice resumes from step 2.
    shutil.rmtree(step_dir)
    state, _ = train_and_evaluate(_tiny(), str(tiny_workdir), stop_after=6, run_eval=False)
    assert int(state.step) == 6
    assert [s for s, _ in _losses(tiny_workdir)] == [1, 2, 3, 4, 5, 6]


def test_a_field_an_older_checkpoint_lacks_counts_as_its_default():
    from jaxmetric.train.checkpoint import config_differences, config_to_dict

    current = config_to_dict(base_config())
    older = {key: value for key, value in current.items() if key != "grad_cache"}
    assert config_differences(older, current) == []
    changed = base_config()
    changed.grad_cache.chunk_size = 4
    diffs = config_differences(older, config_to_dict(changed))
    assert diffs == ["`grad_cache.chunk_size`: 0 in the checkpoint, 4 now"]
