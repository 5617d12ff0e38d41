"""Command line: ``python -m jaxmetric.main --config=configs/X.py --workdir=DIR``.

Also installed as the console script ``jaxmetric train --config=... --workdir=...``.
Any config field can be overridden, e.g. ``--config.batch_size=256
--config.optimizer.learning_rate=0.01``. A workdir that holds a checkpoint
resumes from it.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.json.")
config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file with get_config().", lock_config=True
)
flags.mark_flags_as_required(["config", "workdir"])

COMMANDS = ("train",)


def main(argv: list[str]) -> None:
    """Trains and evaluates ``--config`` in ``--workdir``."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # orbax logs every checkpoint step at INFO; keep the progress bar readable.
    logging.set_verbosity(logging.WARNING)
    from jaxmetric.train import train_and_evaluate

    train_and_evaluate(FLAGS.config, FLAGS.workdir)


def run() -> None:
    """Entry point of the ``jaxmetric`` console script (``jaxmetric train ...``)."""
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        if argv[1] not in COMMANDS:
            sys.exit(f"jaxmetric: unknown command {argv[1]!r}; commands: {', '.join(COMMANDS)}")
        del argv[1]
    app.run(main, argv=argv)


if __name__ == "__main__":
    app.run(main)
