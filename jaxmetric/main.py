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

After training, ``jaxmetric index --workdir=DIR --out=gallery.npz`` saves a
searchable index of a split's embeddings, ``jaxmetric search
--index=gallery.npz --queries=q.npy`` prints nearest neighbours as JSON
lines, and ``jaxmetric verify --workdir=DIR --target_far=1e-3`` calibrates a
verification threshold and tests it (``jaxmetric.train.search_cli``).
"""

from __future__ import annotations

import sys

from jaxmetric import _extras

with _extras.requires("jaxmetric.main", "absl", "ml_collections"):
    from absl import app, flags, logging
    from ml_collections import config_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.json.")
flags.DEFINE_string("split", "test", "index / search: the split of --workdir to embed.")
flags.DEFINE_string("out", None, "index: where to save the index (.npz).")
flags.DEFINE_string("index", None, "search: an index saved by `jaxmetric index`.")
flags.DEFINE_string("queries", None, "search: a .npy file of query embeddings [Q, D].")
flags.DEFINE_integer("k", 10, "search: neighbours per query.")
flags.DEFINE_float("target_far", 1e-3, "verify: the false accept rate to calibrate for.")
flags.DEFINE_enum(
    "calibrate_on", "heldout", ["heldout", "train"], "verify: the pairs to calibrate on."
)
config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file with get_config().", lock_config=True
)
COMMANDS = ("train", "evaluate", "index", "search", "verify")
flags.DEFINE_enum("mode", "train", list(COMMANDS), "What to run.")
flags.DEFINE_enum(
    "embedding_map", "tsne", ["tsne", "pca", "none"], "evaluate: 2-D map of the embeddings."
)
flags.DEFINE_bool("baseline", True, "evaluate: also score the raw inputs (bundled datasets).")
# --config is optional after training: the checkpoint holds the config.


def main(argv: list[str]) -> None:
    """Trains ``--config`` in ``--workdir`` (``--mode=evaluate``: evaluates it)."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # orbax logs every checkpoint step at INFO; keep the progress bar readable.
    logging.set_verbosity(logging.WARNING)
    if FLAGS.mode in ("index", "search", "verify"):
        _search_command(FLAGS.mode)
        return
    if FLAGS.workdir is None:
        raise app.UsageError("--workdir is required.")
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


def _search_command(mode: str) -> None:
    """``jaxmetric index | search | verify`` (see ``jaxmetric.train.search_cli``)."""
    import json

    import numpy as np

    from jaxmetric.train import evaluate_cli, search_cli

    def need(*names: str) -> None:
        missing = [f"--{n}" for n in names if getattr(FLAGS, n) is None]
        if missing:
            raise app.UsageError(f"jaxmetric {mode}: {', '.join(missing)} required.")

    try:
        if mode == "index":
            need("workdir", "out")
            index = search_cli.index_workdir(FLAGS.workdir, FLAGS.out, split=FLAGS.split)
            print(f"jaxmetric index: {len(index)} rows of dim {index.dim} -> {FLAGS.out}")
        elif mode == "search":
            need("index")
            index = search_cli.Index.load(FLAGS.index)
            if FLAGS.queries is not None:
                queries = np.load(FLAGS.queries)
            elif FLAGS.workdir is not None:
                _, _, queries, _ = search_cli.embed_workdir_split(FLAGS.workdir, FLAGS.split)
            else:
                raise app.UsageError("jaxmetric search: --queries or --workdir required.")
            for row in search_cli.search_index(index, queries, FLAGS.k):
                print(json.dumps(row))
        else:
            need("workdir")
            search_cli.verify_workdir(
                FLAGS.workdir, target_far=FLAGS.target_far, calibrate_on=FLAGS.calibrate_on
            )
    except (evaluate_cli.MissingCheckpointError, ValueError, OSError) as err:
        sys.exit(f"jaxmetric {mode}: {err}")


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
    """Entry point of the ``jaxmetric`` console script (``jaxmetric train|evaluate|... ...``)."""
    argv = list(sys.argv)
    if len(argv) > 1 and not argv[1].startswith("-"):
        if argv[1] not in COMMANDS:
            sys.exit(f"jaxmetric: unknown command {argv[1]!r}; commands: {', '.join(COMMANDS)}")
        argv[1] = f"--mode={argv[1]}"
    app.run(main, argv=argv)


if __name__ == "__main__":
    app.run(main)
