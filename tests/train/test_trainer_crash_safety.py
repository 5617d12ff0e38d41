"""Crash safety: a training run killed with SIGKILL (once in the middle of a
checkpoint save, once between steps) and restarted on the same workdir ends
with exactly the parameters of an uninterrupted run, and never resumes from
an incomplete checkpoint.

Three processes (the costly part: each starts JAX and compiles): one killed
inside a save (``crash_run.py`` patches orbax's commit of the step), one
killed from outside between steps (a hook slows the steps down), and this
one, which finishes the run."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxmetric.train import train_and_evaluate
from jaxmetric.train.checkpoint import Checkpointer
from tests.train import crash_run

SCRIPT = pathlib.Path(crash_run.__file__)

STEPS = crash_run.STEPS


def _start(workdir: pathlib.Path, *flags: str) -> subprocess.Popen:
    cmd = [sys.executable, str(SCRIPT), str(workdir), *flags]
    return subprocess.Popen(
        cmd,
        cwd=crash_run.ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def _reference_config():
    return crash_run.config()


@pytest.mark.slow
def test_sigkill_during_save_and_between_steps_then_resume_is_bitwise_identical(tmp_path):
    workdir = tmp_path / "run"
    ckpt_dir = workdir / "checkpoints"

    # 1. Killed inside the save of step 4: files written, directory not
    #    finalised. Step 2 is the last complete checkpoint.
    rc, out = _finish(_start(workdir, "--kill-in-save", "4"))
    assert rc == -signal.SIGKILL, out
    names = sorted(p.name for p in ckpt_dir.iterdir())
    assert "2" in names and "4" not in names, names
    assert any(n.startswith("4.orbax-checkpoint-tmp") for n in names), names

    # 2. Restart (from step 2, the temporary directory ignored); killed from
    #    outside between two steps, once step 6 is saved.
    proc = _start(workdir, "--step-sleep", "0.3")
    deadline = time.monotonic() + 120
    while not (ckpt_dir / "6").exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "step 6 never saved"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    rc, out = _finish(proc)
    assert rc == -signal.SIGKILL, out
    assert "Resumed from" in out and "at step 2." in out, out
    assert not any(".orbax-checkpoint-tmp" in p.name for p in ckpt_dir.iterdir())
    assert str(STEPS) not in {p.name for p in ckpt_dir.iterdir()}

    # 3. Restart to the end, here in this process (the two runs above went
    #    through the command line), beside an uninterrupted run.
    reference, _ = train_and_evaluate(_reference_config(), str(tmp_path / "ref"), run_eval=False)
    resumed, _ = train_and_evaluate(_reference_config(), str(workdir), run_eval=False)
    assert int(resumed.step) == STEPS

    # Same parameters as the uninterrupted run, bit for bit (CPU, one device),
    # in the final state and in the final checkpoint.
    ckpt = Checkpointer(str(workdir))
    assert ckpt.latest_step() == STEPS
    restored, _ = ckpt.restore(reference)
    ckpt.close()
    for state in (resumed, restored):
        for name in ("params", "opt_state", "key"):
            for u, v in zip(
                jax.tree.leaves(getattr(reference, name)),
                jax.tree.leaves(getattr(state, name)),
                strict=True,
            ):
                np.testing.assert_array_equal(np.asarray(u), np.asarray(v), err_msg=name)
    # Every step logged exactly once, with the uninterrupted run's losses.
    log = [json.loads(line) for line in open(workdir / "losses.jsonl")]
    ref_log = [json.loads(line) for line in open(tmp_path / "ref" / "losses.jsonl")]
    assert [s for s, _ in log] == list(range(1, STEPS + 1))
    assert log == ref_log


@pytest.mark.slow
def test_sigterm_saves_the_current_step_exits_75_and_resumes_bitwise(tmp_path):
    """A preemptible VM's SIGTERM: the run stops at the next step boundary
    with that step's checkpoint (not the last periodic one) and exit status
    75; the restart ends where an uninterrupted run does, bit for bit."""
    workdir = tmp_path / "run"
    log = workdir / "losses.jsonl"
    proc = _start(workdir, "--step-sleep", "0.3")
    deadline = time.monotonic() + 120
    # Step 3 logged: between the periodic checkpoints of steps 2 and 4.
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "step 3 never logged"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    rc, out = _finish(proc)
    assert rc == 75, out
    assert "Preempted (SIGTERM) at step" in out and "Traceback" not in out, out
    stopped = int(out.split("Preempted (SIGTERM) at step ")[1].split("/")[0])
    assert 3 <= stopped < STEPS
    ckpt = Checkpointer(str(workdir))
    assert ckpt.latest_step() == stopped  # this step's own checkpoint
    ckpt.close()

    reference, _ = train_and_evaluate(_reference_config(), str(tmp_path / "ref"), run_eval=False)
    resumed, _ = train_and_evaluate(_reference_config(), str(workdir), run_eval=False)
    assert int(resumed.step) == STEPS
    for name in ("params", "opt_state", "key"):
        for u, v in zip(
            jax.tree.leaves(getattr(reference, name)),
            jax.tree.leaves(getattr(resumed, name)),
            strict=True,
        ):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v), err_msg=name)
    log_steps = [json.loads(line)[0] for line in open(log)]
    assert log_steps == list(range(1, STEPS + 1))


def test_sigterm_in_process_raises_preempted_with_the_step_saved(tmp_path):
    """The library call: PreemptedError naming the step, its checkpoint
    saved, the previous SIGTERM handler back in place afterwards."""
    from jaxmetric.train.trainer import PreemptedError

    def term_at_step_3(done: int) -> None:
        if done == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(PreemptedError, match="at step 3/") as info:
        train_and_evaluate(
            _reference_config(), str(tmp_path), run_eval=False, hooks=[term_at_step_3]
        )
    assert info.value.step == 3
    assert signal.getsignal(signal.SIGTERM) is before
    ckpt = Checkpointer(str(tmp_path))
    assert ckpt.all_steps() == [2, 3]
    ckpt.close()
