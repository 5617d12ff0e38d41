"""Command line: ``python -m jaxmetric.main --config=configs/X.py --workdir=DIR``.

Also installed as the console script ``jaxmetric train --config=... --workdir=...``.
``jaxmetric evaluate --workdir=DIR`` (``python -m jaxmetric.main --mode=evaluate
--workdir=DIR``) scores the latest checkpoint of DIR with every metric of
``jaxmetric.metrics`` (``--config`` optional: the checkpoint holds the config).
Any config field can be overridden, e.g. ``--config.batch_size=256
--config.optimizer.learning_rate=0.01``. A workdir that holds a checkpoint
resumes from it; on SIGTERM (a preemptible VM about to stop) a run saves the
checkpoint of its current step and exits with status 75, and rerunning the
same command resumes it.
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
flags.DEFINE_enum("mode", "train", ["train", "evaluate"], "What to run on --workdir.")
flags.DEFINE_enum(
    "embedding_map", "tsne", ["tsne", "pca", "none"], "evaluate: 2-D map of the embeddings."
)
flags.DEFINE_bool("baseline", True, "evaluate: also score the raw inputs (bundled datasets).")
# --config is optional for evaluate, which reads the config saved with the checkpoint.
flags.mark_flags_as_required(["workdir"])

COMMANDS = ("train", "evaluate")


def main(argv: list[str]) -> None:
    """Trains ``--config`` in ``--workdir`` (``--mode=evaluate``: evaluates it)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # orbax logs every checkpoint step at INFO; keep the progress bar readable.
    logging.set_verbosity(logging.WARNING)
    if FLAGS.mode == "evaluate":
        from jaxmetric.train import evaluate_cli

        try:
            evaluate_cli.evaluate_workdir(
                FLAGS.workdir,
                FLAGS.config,
                embedding_map=FLAGS.embedding_map,
                baseline=FLAGS.baseline,
            )
        except evaluate_cli.MissingCheckpointError as err:
            sys.exit(f"jaxmetric evaluate: {err}")
        return
    if FLAGS.config is None:
        raise app.UsageError("--config is required to train.")
    train(FLAGS.config, FLAGS.workdir)


def train(config, workdir: str, **kwargs) -> None:
    """``train_and_evaluate(config, workdir, **kwargs)`` as the command line
    runs it: a bad checkpoint or a diverged run exits with status 1 and its
    message (a traceback would only hide what to do), a preempted run
    (SIGTERM) with status 75 once its checkpoint is saved."""
    from jaxmetric.train import train_and_evaluate
    from jaxmetric.train.checkpoint import CheckpointError
    from jaxmetric.train.trainer import PREEMPTED_EXIT_CODE, NonFiniteStepsError, PreemptedError

    try:
        train_and_evaluate(config, workdir, **kwargs)
    except (CheckpointError, NonFiniteStepsError) as err:
        sys.exit(f"jaxmetric: {err}")
    except PreemptedError as err:
        print(f"jaxmetric: {err}", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT_CODE)


def run() -> None:
    """Entry point of the ``jaxmetric`` console script (``jaxmetric train|evaluate ...``)."""
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        if argv[1] not in COMMANDS:
            sys.exit(f"jaxmetric: unknown command {argv[1]!r}; commands: {', '.join(COMMANDS)}")
        argv[1] = f"--mode={argv[1]}"
    app.run(main, argv=argv)


if __name__ == "__main__":
    app.run(main)
