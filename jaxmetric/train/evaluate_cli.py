"""``jaxmetric evaluate --workdir DIR``: every metric of a trained run.

Restores the latest checkpoint of a workdir written by ``jaxmetric train``
(the config saved in it, or one passed in), embeds the train and held-out
splits, and scores the held-out embeddings with ``jaxmetric.metrics``:
retrieval (leave-one-out within the held-out split), kNN and linear-probe
classification (fit on the train split), verification on held-out pairs and
k-means clustering (NMI / AMI). It prints a table, merges the results into
``DIR/metrics.json`` under the key ``"evaluate"`` (the training run's own
top-level keys are kept) and writes ``DIR/embedding_map.png``, a t-SNE map of
the held-out embeddings coloured by label.

The pieces (`restore`, `embed_splits`, `compute_metrics`) are public so a
notebook can reuse them on a run it has just trained.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any, TextIO

import ml_collections

from jaxmetric.data import input_pipeline
from jaxmetric.train import evaluate
from jaxmetric.train.evaluate import Embedded

METRICS_FILE = "metrics.json"
MAP_FILE = "embedding_map.png"
MAP_METHODS = ("tsne", "pca", "none")


class MissingCheckpointError(ValueError):
    """The workdir holds no checkpoint to evaluate."""


def _tuples(value: Any) -> Any:
    # The checkpoint stores the config as JSON, which turns tuples (e.g.
    # `model.mlp_hidden`) into lists; the config schema uses tuples.
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _with_defaults(saved: dict) -> ml_collections.ConfigDict:
    """The saved config over ``base_config()``: a field that a newer version
    added takes its one default from the schema."""
    from jaxmetric.train.config import base_config

    config = base_config()

    def merge(node: ml_collections.ConfigDict, values: dict) -> None:
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(node.get(key), ml_collections.ConfigDict):
                merge(node[key], value)
            else:
                with node.unlocked():
                    node[key] = value

    merge(config, saved)
    return config


def _manager(workdir: str):
    """A read-only orbax manager on ``<workdir>/checkpoints`` (the layout of
    ``jaxmetric.train.checkpoint.Checkpointer``)."""
    path = os.path.abspath(os.path.join(workdir, "checkpoints"))
    # Check before orbax sees the path: a manager would create the folder.
    if not os.path.isdir(path):
        raise MissingCheckpointError(
            f"No checkpoint in workdir {workdir!r} (no {path}); train first with "
            f"`jaxmetric train --config=... --workdir={workdir}`."
        )
    import orbax.checkpoint as ocp

    # Read-only: opening a manager must not clean up or delete anything in a
    # run's workdir. orbax logs a warning about that choice; hide it.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        manager = ocp.CheckpointManager(
            path,
            options=ocp.CheckpointManagerOptions(
                create=False, read_only=True, max_to_keep=None, save_interval_steps=0
            ),
        )
    finally:
        absl_logger.setLevel(level)
    if manager.latest_step() is None:
        manager.close()
        raise MissingCheckpointError(
            f"No checkpoint in workdir {workdir!r} ({path} holds no saved step); "
            "train first with `jaxmetric train`."
        )
    return manager


def _config_of(manager) -> ml_collections.ConfigDict:
    import orbax.checkpoint as ocp

    out = manager.restore(
        manager.latest_step(), args=ocp.args.Composite(config=ocp.args.JsonRestore())
    )
    return _with_defaults(_tuples(dict(out.config)))


def saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The config saved with the latest checkpoint of ``workdir``."""
    manager = _manager(workdir)
    try:
        return _config_of(manager)
    finally:
        manager.close()


def restore(workdir: str, config: ml_collections.ConfigDict | None = None):
    """(config, graphdef, state) of the latest checkpoint of ``workdir``.

    Args:
      workdir: a ``jaxmetric train`` workdir.
      config: the run's config; None reads the one saved in the checkpoint.

    Returns:
      ``(config, graphdef, state)``: the state (a ``TrainState``) lives on
      the default device, whatever device count the run was trained on.

    Raises:
      MissingCheckpointError: the workdir holds no checkpoint.
    """
    import jax
    import orbax.checkpoint as ocp

    from jaxmetric.data import sources
    from jaxmetric.train.optim import make_optimizer
    from jaxmetric.train.state import create_train_state

    manager = _manager(workdir)
    try:
        if config is None:
            config = _config_of(manager)
        train, _ = sources.load(config.dataset)
        # The optimizer state only gives the checkpoint's tree its structure.
        tx, _ = make_optimizer(config.optimizer, config.batch_size, config.num_steps)
        graphdef, state = create_train_state(config, input_pipeline.input_shape(config, train), tx)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        out = manager.restore(
            manager.latest_step(),
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)),
        )
    finally:
        manager.close()
    return config, graphdef, out.state


def embed_splits(
    config: ml_collections.ConfigDict, graphdef, state, *, progress: bool = False
) -> Embedded:
    """Embeds the train and held-out splits of ``config.dataset`` with the
    trainer's evaluation-mode embed function (no augmentation, running BN
    statistics); ``config.eval.max_examples`` caps each split; ``progress``:
    a progress bar per split (stderr)."""
    from jaxmetric.data import sources
    from jaxmetric.train.steps import make_embed_fn

    train, test = sources.load(config.dataset)
    embed = make_embed_fn(config, graphdef)
    return evaluate.embed_splits(config, embed, state, train, test, progress=progress)


def compute_metrics(emb: Embedded, *, baseline: bool = True) -> dict[str, dict[str, float]]:
    """Every metric of ``jaxmetric.metrics`` on a run's embeddings.

    Returns:
      ``{"embeddings": ..., "features": ..., "raw_inputs": ...}``, flat dicts of
      floats: ``embeddings`` holds `jaxmetric.metrics.evaluate_embeddings` of
      the model outputs z (retrieval, kNN, linear probe, verification,
      clustering; kNN with ``k = config.eval.knn_k``, cosine); ``features``
      the kNN and linear-probe accuracies of the encoder features h (the
      SSL linear-evaluation protocol); ``raw_inputs`` the same metrics as
      ``embeddings`` on the flattened raw inputs (only with ``baseline`` and a
      bundled dataset; else empty).
    """
    from jaxmetric import metrics

    config = emb.config
    k = config.eval.knn_k
    seed = config.seed

    def score(x_tr, x_te):
        return metrics.evaluate_embeddings(
            x_tr, emb.train_labels, x_te, emb.test_labels, supervised=True, knn_k=k, seed=seed
        )

    out = {"embeddings": score(emb.train_embeddings, emb.test_embeddings)}
    # The trainer's own functions: metrics.json's top level (written by the
    # run) and this section agree on one checkpoint.
    h_tr, h_te = emb.train_features, emb.test_features
    out["features"] = {
        "knn_accuracy": evaluate.knn_accuracy(config, emb, h_tr, h_te),
        "linear_probe_accuracy": evaluate.linear_probe_accuracy(config, emb, h_tr, h_te),
    }
    out["raw_inputs"] = {}
    if baseline and emb.train_inputs is not None:
        out["raw_inputs"] = score(emb.train_inputs, emb.test_inputs)
    return out


# Row order and names of the printed table; metrics not named here follow, sorted.
_NAMES = {
    "precision_at_1": "precision@1",
    "r_precision": "R-precision",
    "map_at_r": "MAP@R",
    "recall_at_1": "recall@1",
    "recall_at_2": "recall@2",
    "recall_at_4": "recall@4",
    "recall_at_8": "recall@8",
    "knn_accuracy": "kNN accuracy (k={k}, cosine)",
    "knn_accuracy_weighted": "kNN accuracy (k={k}, weighted)",
    "linear_probe_accuracy": "linear probe accuracy",
    "roc_auc": "verification ROC AUC",
    "tar_at_far_0.001": "TAR @ FAR=1e-3",
    "tar_at_far_0.01": "TAR @ FAR=1e-2",
    "tar_at_far_0.1": "TAR @ FAR=1e-1",
    "best_accuracy": "verification best accuracy",
    "best_accuracy_threshold": "  its threshold (cosine)",
    "nmi": "k-means NMI",
    "ami": "k-means AMI",
}
# Bookkeeping of the verification metrics, kept in metrics.json only.
_HIDDEN_PREFIXES = ("far_at_far_", "threshold_at_far_")


def format_table(results: dict[str, dict[str, float]], knn_k: int) -> str:
    """A plain-text table: one row per metric, columns z / raw inputs."""
    emb, raw, feat = results["embeddings"], results.get("raw_inputs", {}), results["features"]
    keys = [k for k in _NAMES if k in emb]
    keys += sorted(k for k in emb if k not in _NAMES and not k.startswith(_HIDDEN_PREFIXES))

    def cell(d, key):
        v = d.get(key)
        return "-" if v is None or not math.isfinite(v) else f"{v:.3f}"

    rows = [("metric (held-out split)", "embeddings", "raw inputs" if raw else "")]
    for key in keys:
        rows.append((_NAMES.get(key, key).format(k=knn_k), cell(emb, key), cell(raw, key)))
    rows.append((f"kNN accuracy (k={knn_k}), encoder features", cell(feat, "knn_accuracy"), ""))
    rows.append(("linear probe, encoder features", cell(feat, "linear_probe_accuracy"), ""))
    if not raw:
        rows = [r[:2] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    # Names left-aligned, numbers right-aligned.
    lines = [
        " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    # inf thresholds ("reject everything") are not JSON: write null.
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_workdir(
    workdir: str,
    config: ml_collections.ConfigDict | None = None,
    *,
    embedding_map: str = "tsne",
    baseline: bool = True,
    print_table: bool = True,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Evaluates the latest checkpoint of ``workdir``; what ``jaxmetric evaluate`` runs.

    Args:
      workdir: a ``jaxmetric train`` workdir.
      config: the run's config; None reads the one saved in the checkpoint.
      embedding_map: "tsne", "pca" or "none": the 2-D projection of the
        held-out embeddings drawn into ``<workdir>/embedding_map.png``.
      baseline: also score the raw inputs (bundled datasets only).
      print_table: print a header line, the table and the files written.
      out: where they go (None: ``sys.stdout`` at call time).

    Returns:
      The ``"evaluate"`` section written into ``<workdir>/metrics.json``:
      ``step``, ``num_train``, ``num_test``, ``embeddings`` (metrics of the
      model outputs z), ``features`` (encoder features h), ``raw_inputs``
      (empty without a baseline) and ``embedding_map`` (the PNG's file name or
      None). Metrics are fractions in [0, 1] (thresholds are cosine
      similarities; an infinite threshold is written as null).

    Raises:
      MissingCheckpointError: the workdir holds no checkpoint.
    """
    if embedding_map not in MAP_METHODS:
        raise ValueError(f"`embedding_map` must be one of {MAP_METHODS}, got {embedding_map!r}.")
    config, graphdef, state = restore(workdir, config)
    emb = embed_splits(config, graphdef, state, progress=print_table)
    results = compute_metrics(emb, baseline=baseline)
    section: dict[str, Any] = {
        "step": emb.step,
        "num_train": len(emb.train_labels),
        "num_test": len(emb.test_labels),
        **results,
        "embedding_map": None,
    }
    if embedding_map != "none":
        from jaxmetric.plots import embedding_map_png

        title = (
            f"{config.method} on {config.dataset.name}: held-out embeddings, "
            f"step {emb.step} ({embedding_map.upper()})"
        )
        embedding_map_png(
            emb.test_embeddings,
            emb.test_labels,
            os.path.join(workdir, MAP_FILE),
            method=embedding_map,
            seed=config.seed,
            title=title,
        )
        section["embedding_map"] = MAP_FILE

    # Merge: keep what training wrote (its top-level keys), replace our section.
    path = os.path.join(workdir, METRICS_FILE)
    data: dict[str, Any] = {}
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    data["evaluate"] = _json_safe(section)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)

    if print_table:
        out = sys.stdout if out is None else out
        print(
            f"jaxmetric evaluate: {workdir} | {config.method} on {config.dataset.name} | "
            f"step {emb.step} | train {section['num_train']}, held-out {section['num_test']}",
            file=out,
        )
        print(format_table(results, config.eval.knn_k), file=out)
        written = [METRICS_FILE] + ([MAP_FILE] if section["embedding_map"] else [])
        print(f"wrote {', '.join(os.path.join(workdir, w) for w in written)}", file=out)
    return section
