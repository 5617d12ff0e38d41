"""A training run for tests/train/test_trainer_crash_safety.py to kill: ``python crash_run.py
WORKDIR [--kill-in-save STEP] [--step-sleep SECONDS]``.

The triplet-digits recipe with the test's overrides, through the command
line's ``jaxmetric.main.train`` (its exit statuses). ``--kill-in-save STEP``:
SIGKILL this process while orbax saves STEP, after every file is written and
before the step is finalised (a patch of orbax's temporary-path commit, here
in the test, not in the library). ``--step-sleep``: a hook that sleeps after
each step, so the test can kill or stop the run from outside between steps.
``--process PORT,INDEX``: this process is one of two of one run (two CPU
devices each).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "triplet_digits.py"
STEPS = 12
OVERRIDES = {
    "num_steps": STEPS,
    "checkpoint_every": 2,
    "log_every": 1,
    "num_devices": 1,
    "batch_size": 32,
    "supervised.samples_per_class": 4,
    "eval.linear_probe": False,
    "eval.retrieval": False,
    "eval.max_examples": 200,
}


def config():
    """The recipe with ``OVERRIDES``."""
    from jaxmetric.train.config import load_recipe

    c = load_recipe(CONFIG)
    c.update_from_flattened_dict(OVERRIDES)
    return c


def kill_in_save(step: int) -> None:
    """Makes orbax's finalisation of ``step``'s temporary directory kill this
    process instead."""
    from orbax.checkpoint._src.path import atomicity

    def patch(cls):
        original = cls.finalize

        async def finalize(self):
            if self.get_final().name == str(step):
                os.kill(os.getpid(), signal.SIGKILL)
            return await original(self)

        cls.finalize = finalize

    # Local file systems use the atomic rename, object stores the commit file.
    patch(atomicity.AtomicRenameTemporaryPath)
    patch(atomicity.CommitFileTemporaryPath)


def distributed(port: int, process_index: int) -> None:
    """Joins a run of two processes on localhost, two CPU devices each
    (CPU collectives over gloo)."""
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_num_cpu_devices", 2)
    jax.distributed.initialize(f"127.0.0.1:{port}", 2, process_index)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--kill-in-save", type=int, default=0)
    parser.add_argument("--step-sleep", type=float, default=0.0)
    parser.add_argument("--process", default="", help="PORT,INDEX: one of two processes")
    args = parser.parse_args()
    c = config()
    if args.process:
        distributed(*map(int, args.process.split(",")))
        c.num_devices = 0  # Both processes' devices.
    from jaxmetric import main as cli

    if args.kill_in_save:
        kill_in_save(args.kill_in_save)
    hooks = [lambda done: time.sleep(args.step_sleep)] if args.step_sleep else []
    # The command line's own error handling and exit statuses.
    cli.train(c, args.workdir, progress=False, hooks=hooks)


if __name__ == "__main__":
    main()
