"""What the trainer and ``jaxmetric evaluate`` measure, with ``jaxmetric.metrics``.

One evaluation stack: the end-of-run metrics of ``train_and_evaluate`` (the
top level of ``metrics.json``), its kNN monitor and ``jaxmetric evaluate``
call the functions below, so one checkpoint gets one number per metric.

- kNN: the ``eval.knn_k`` nearest train rows by cosine similarity, majority
  vote (``jaxmetric.metrics.knn_accuracy``), on the embeddings z and on the
  encoder features h (solo-learn reports both);
- linear probe: ``jaxmetric.metrics.linear_probe_accuracy`` (softmax
  regression on standardised, frozen features h, seeded by ``config.seed``);
- retrieval (``eval.retrieval``): leave-one-out within the held-out split
  (``jaxmetric.metrics.retrieval_metrics``, Musgrave et al. 2020).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections
import numpy as np

from jaxmetric import metrics
from jaxmetric.data import input_pipeline


@dataclasses.dataclass(frozen=True)
class Embedded:
    """A run's embeddings of both splits (NumPy).

    Attributes:
      config: the run's config.
      step: the checkpoint's step.
      train_features, test_features: encoder features h [N, F].
      train_embeddings, test_embeddings: model outputs z [N, D] (what the
        loss saw).
      train_labels, test_labels: int labels [N].
      train_inputs, test_inputs: the evaluation inputs flattened to [N, -1],
        for the raw-input baseline; None where they would not fit in
        ``RAW_INPUT_LIMIT`` values.
    """

    config: ml_collections.ConfigDict
    step: int
    train_features: np.ndarray
    train_embeddings: np.ndarray
    train_labels: np.ndarray
    test_features: np.ndarray
    test_embeddings: np.ndarray
    test_labels: np.ndarray
    train_inputs: np.ndarray | None = None
    test_inputs: np.ndarray | None = None


# The raw-input baseline holds both splits' inputs in memory, flattened as
# float32: kept where that is at most this many values (1 GiB).
RAW_INPUT_LIMIT = 2**28


def embed_split(
    config: ml_collections.ConfigDict,
    embed: Callable,
    params,
    batch_stats,
    split,
    *,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(features h, embeddings z, labels, flattened inputs or None) of the
    first ``config.eval.max_examples`` of a split (0: all), read in order by
    the input pipeline with the evaluation transform (images: the centred
    crop, resized). The inputs are kept for the raw-input baseline where
    they fit in ``RAW_INPUT_LIMIT`` values. ``progress``: the label of a
    progress bar (on stderr), or None for none."""
    from tqdm.auto import tqdm

    ev = config.eval
    n = len(split) if not ev.max_examples else min(ev.max_examples, len(split))
    batches = input_pipeline.eval_batches(
        split,
        ev.batch_size,
        num_examples=n,
        transform=input_pipeline.eval_transform(config),
        workers=config.data.workers,
        prefetch=config.data.prefetch,
    )
    hs, zs, ys, xs = [], [], [], []
    bar = tqdm(total=n, desc=progress, unit="ex", disable=progress is None, mininterval=0.5)
    try:
        for batch in batches:
            bar.update(len(batch["y"]))
            h, z = embed(params, batch_stats, batch["x"])
            hs.append(np.asarray(h))
            zs.append(np.asarray(z))
            ys.append(batch["y"])
            if xs is not None:
                xs.append(np.asarray(batch["x"], np.float32).reshape(len(batch["x"]), -1))
                if len(xs) == 1 and n * xs[0].shape[1] > RAW_INPUT_LIMIT:
                    xs = None
    finally:
        bar.close()
        batches.close()
    inputs = np.concatenate(xs) if xs is not None else None
    return np.concatenate(hs), np.concatenate(zs), np.concatenate(ys), inputs


def embed_splits(
    config: ml_collections.ConfigDict,
    embed: Callable,
    state,
    train,
    test,
    *,
    progress: bool = False,
) -> Embedded:
    """Both splits through ``embed`` (``jaxmetric.train.steps.make_embed_fn``);
    ``config.eval.max_examples`` caps each split; ``progress``: a bar each."""
    params, stats = state.params, state.batch_stats
    bar = "embedding {}" if progress else None
    h_tr, z_tr, y_tr, x_tr = embed_split(
        config, embed, params, stats, train, progress=bar and bar.format("train")
    )
    h_te, z_te, y_te, x_te = embed_split(
        config, embed, params, stats, test, progress=bar and bar.format("test")
    )
    if x_tr is None or x_te is None:
        x_tr = x_te = None
    return Embedded(
        config=config,
        step=int(state.step),
        train_features=h_tr,
        train_embeddings=z_tr,
        train_labels=y_tr,
        test_features=h_te,
        test_embeddings=z_te,
        test_labels=y_te,
        train_inputs=x_tr,
        test_inputs=x_te,
    )


def knn_accuracy(
    config: ml_collections.ConfigDict, emb: Embedded, train_x, test_x, metric: str = "cosine"
) -> float:
    """kNN accuracy (k = ``eval.knn_k``, at most the train size) of rows of ``emb``'s splits."""
    k = min(config.eval.knn_k, len(emb.train_labels))
    return metrics.knn_accuracy(
        train_x, emb.train_labels, test_x, emb.test_labels, k=k, metric=metric
    )


def linear_probe_accuracy(
    config: ml_collections.ConfigDict, emb: Embedded, train_x, test_x
) -> float:
    """The linear probe's held-out accuracy, seeded by ``config.seed``."""
    return metrics.linear_probe_accuracy(
        train_x, emb.train_labels, test_x, emb.test_labels, seed=config.seed
    )


def retrieval(test_x, test_labels) -> dict[str, float]:
    """Leave-one-out retrieval metrics within the held-out split (cosine)."""
    out = metrics.retrieval_metrics(test_x, test_labels, metric="cosine")
    out.pop("num_queries", None)
    return {k: float(v) for k, v in out.items()}


def run_metrics(
    config: ml_collections.ConfigDict, emb: Embedded, *, linear_probe: bool
) -> dict[str, float]:
    """The trainer's metrics: kNN on z; with ``linear_probe``, the linear
    probe and kNN on h; with ``eval.retrieval``, the retrieval metrics of z."""
    out = {"knn_accuracy": knn_accuracy(config, emb, emb.train_embeddings, emb.test_embeddings)}
    if linear_probe:
        out["linear_probe_accuracy"] = linear_probe_accuracy(
            config, emb, emb.train_features, emb.test_features
        )
        out["knn_accuracy_features"] = knn_accuracy(
            config, emb, emb.train_features, emb.test_features
        )
    if config.eval.retrieval:
        out.update(retrieval(emb.test_embeddings, emb.test_labels))
    return out


def raw_baseline(config: ml_collections.ConfigDict, emb: Embedded) -> dict[str, float]:
    """Raw-input baselines on the bundled sets (as the MNIST-1D notebook:
    kNN k=10, Euclidean, on raw signals; MAP@R on raw pixels for supervised
    runs with ``eval.retrieval``), on the evaluation inputs; empty where they
    were too large to keep (``RAW_INPUT_LIMIT``)."""
    if emb.train_inputs is None:
        return {}
    if config.method == "supervised" and config.eval.retrieval:
        return {"raw-input MAP@R": retrieval(emb.test_inputs, emb.test_labels)["map_at_r"]}
    accuracy = metrics.knn_accuracy(
        emb.train_inputs,
        emb.train_labels,
        emb.test_inputs,
        emb.test_labels,
        k=10,
        metric="euclidean",
    )
    return {"raw-input kNN (k=10)": accuracy}
