"""Crash safety: a training run killed with SIGKILL (once in the middle of a
checkpoint save, once between steps) and restarted on the same workdir ends
with exactly the parameters of an uninterrupted run, and never resumes from
an incomplete checkpoint.

Three processes (the costly part: each starts JAX and compiles): one killed
inside a save (``crash_run.py`` patches orbax's commit of the step), one
killed from outside between steps (a hook slows the steps down), and this
one, which finishes the run. The SIGTERM (preemption) tests stop a run at a
step boundary, also one of two processes whose peer never got the signal."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
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
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # Each process sets its own device count; conftest's compile flags stay.
    env["XLA_FLAGS"] = " ".join(
        f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f
    )
    return subprocess.Popen(
        cmd,
        cwd=crash_run.ROOT,
        env=env,
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(workdir: pathlib.Path, *flags: str) -> list[subprocess.Popen]:
    port = _free_port()
    return [_start(workdir, "--process", f"{port},{i}", *flags) for i in range(2)]


def _final_state(workdir: pathlib.Path):
    """The latest checkpoint of a two-process run, restored here (one
    process) onto a template of the recipe's state."""
    from jaxmetric.data import input_pipeline, sources
    from jaxmetric.train import create_train_state
    from jaxmetric.train.optim import make_optimizer

    c = _reference_config()
    tx, _ = make_optimizer(c.optimizer, c.batch_size, c.num_steps)
    train, _ = sources.load(c.dataset)
    _, template = create_train_state(c, input_pipeline.input_shape(c, train), tx)
    ckpt = Checkpointer(str(workdir))
    state, data_state = ckpt.restore(template)
    ckpt.close()
    return state, data_state


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_and_resumes_bitwise(tmp_path):
    """Two processes of one run (a two-host pod slice): SIGTERM reaches only
    process 1; both agree to stop at the same step boundary, save that step
    and exit 75; restarted, they end bitwise where an uninterrupted
    two-process run ends."""
    workdir = tmp_path / "run"
    log = workdir / "losses.jsonl"  # Written by process 0.
    procs = _two_processes(workdir, "--step-sleep", "0.3")
    deadline = time.monotonic() + 150
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):
        for p in procs:
            assert p.poll() is None, p.communicate()[0]
        assert time.monotonic() < deadline, "step 3 never logged"
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGTERM)
    results = [_finish(p) for p in procs]
    stops = set()
    for rc, out in results:
        assert rc == 75, out
        stops.add(int(out.split("Preempted (SIGTERM) at step ")[1].split("/")[0]))
    assert len(stops) == 1 and 3 <= min(stops) < STEPS
    ckpt = Checkpointer(str(workdir))
    assert ckpt.latest_step() == min(stops)
    ckpt.close()

    for p in _two_processes(workdir):  # The restart.
        rc, out = _finish(p)
        assert rc == 0, out
    for p in _two_processes(tmp_path / "ref"):  # Uninterrupted.
        rc, out = _finish(p)
        assert rc == 0, out
    resumed, resumed_data = _final_state(workdir)
    reference, reference_data = _final_state(tmp_path / "ref")
    assert int(resumed.step) == STEPS and resumed_data == reference_data
    for name in ("params", "opt_state", "batch_stats", "key"):
        for u, v in zip(
            jax.tree.leaves(getattr(reference, name)),
            jax.tree.leaves(getattr(resumed, name)),
            strict=True,
        ):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v), err_msg=name)
    ref_log = [json.loads(line) for line in open(tmp_path / "ref" / "losses.jsonl")]
    assert [json.loads(line) for line in open(log)] == ref_log
