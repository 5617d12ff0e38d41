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
      train_inputs, test_inputs: the raw inputs flattened to [N, -1], for the
        raw-input baseline; None for TFDS datasets (too large to hold).
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


def embed_split(
    embed: Callable, params, batch_stats, split, batch_size: int, max_examples: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features h, embeddings z, labels) of a split, in batches."""
    n = len(split) if not max_examples else min(max_examples, len(split))
    hs, zs = [], []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        x, _ = split.take(idx)
        h, z = embed(params, batch_stats, x)
        hs.append(np.asarray(h))
        zs.append(np.asarray(z))
    return np.concatenate(hs), np.concatenate(zs), np.asarray(split.y[:n])


def embed_splits(
    config: ml_collections.ConfigDict, embed: Callable, state, train, test
) -> Embedded:
    """Both splits through ``embed`` (``jaxmetric.train.steps.make_embed_fn``);
    ``config.eval.max_examples`` caps each split."""
    ev = config.eval
    h_tr, z_tr, y_tr = embed_split(
        embed, state.params, state.batch_stats, train, ev.batch_size, ev.max_examples
    )
    h_te, z_te, y_te = embed_split(
        embed, state.params, state.batch_stats, test, ev.batch_size, ev.max_examples
    )
    x_tr = x_te = None
    if config.dataset.name != "tfds":
        x_tr = np.asarray(train.x[: len(y_tr)], np.float32).reshape(len(y_tr), -1)
        x_te = np.asarray(test.x[: len(y_te)], np.float32).reshape(len(y_te), -1)
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
    runs with ``eval.retrieval``). Empty for TFDS datasets."""
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
