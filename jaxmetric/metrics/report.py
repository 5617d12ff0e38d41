"""Every metric at once on a train / test split: the numbers of ``metrics.json``."""

from __future__ import annotations

import jax
import numpy as np

from jaxmetric.distances import l2_normalize
from jaxmetric.metrics import _common
from jaxmetric.metrics.classification import knn_accuracy, linear_probe_accuracy
from jaxmetric.metrics.clustering import clustering_metrics, kmeans
from jaxmetric.metrics.retrieval import retrieval_metrics
from jaxmetric.metrics.verification import verification_metrics, verification_pairs

__all__ = ["evaluate_embeddings"]


def evaluate_embeddings(
    train_emb: jax.Array,
    train_labels: jax.Array,
    test_emb: jax.Array,
    test_labels: jax.Array,
    *,
    supervised: bool,
    metric: str = "cosine",
    knn_k: int = 20,
    seed: int = 0,
    max_verification_pairs: int = 100_000,
    block_size: int | None = None,
) -> dict[str, float]:
    """Every metric of this package on one train / test split (``metrics.json``).

    - ``knn_accuracy``: majority vote of the ``knn_k`` nearest training rows;
      ``knn_accuracy_weighted``: the DINO-style exp(cos / 0.07) vote.
    - ``linear_probe_accuracy``: `linear_probe_accuracy` with its defaults.
    - ``nmi``, ``ami``: `kmeans` on the test embeddings (L2-normalised for
      ``metric="cosine"``) with one cluster per test class, against the labels.
    - ``supervised=True`` adds the retrieval metrics of the test set against
      itself (leave-one-out; `retrieval_metrics`) and the verification metrics
      (`verification_metrics`) of test pairs (all pairs, or
      ``max_verification_pairs`` positive and negative ones when there are
      more).

    Args:
      train_emb: [N, D] float embeddings of the labelled training split.
      train_labels: [N] int labels.
      test_emb: [N_test, D] float embeddings of the evaluation split.
      test_labels: [N_test] int labels.
      supervised: add the retrieval and verification metrics.
      metric: "cosine" or "euclidean".
      knn_k: neighbours of the kNN classifiers.
      seed: seed of the probe split, k-means and pair sampling.
      max_verification_pairs: pairs of each kind at most.
      block_size: query rows per block (None: automatic).

    Returns:
      A flat dict of Python floats, fractions in [0, 1].
    """
    _common.check_metric(metric)
    train_emb = _common.check_embeddings(train_emb, "train_emb")
    test_emb = _common.check_embeddings(test_emb, "test_emb")
    test_labels = _common.check_labels(test_labels, test_emb.shape[0], "test_labels")
    k = min(knn_k, train_emb.shape[0])
    out: dict[str, float] = {}
    out["knn_accuracy"] = knn_accuracy(
        train_emb, train_labels, test_emb, test_labels, k=k, metric=metric, block_size=block_size
    )
    out["knn_accuracy_weighted"] = knn_accuracy(
        train_emb,
        train_labels,
        test_emb,
        test_labels,
        k=k,
        metric=metric,
        weighted=True,
        block_size=block_size,
    )
    out["linear_probe_accuracy"] = linear_probe_accuracy(
        train_emb, train_labels, test_emb, test_labels, seed=seed
    )
    num_clusters = int(np.unique(np.asarray(test_labels)).size)
    x = l2_normalize(test_emb) if metric == "cosine" else test_emb
    clusters = kmeans(x, num_clusters, key=jax.random.key(seed)).labels
    out.update(clustering_metrics(test_labels, clusters))
    if supervised:
        retrieval = retrieval_metrics(test_emb, test_labels, metric=metric, block_size=block_size)
        retrieval.pop("num_queries")
        out.update(retrieval)
        n = test_emb.shape[0]
        all_pairs = n * (n - 1) // 2 <= 2 * max_verification_pairs
        labels_np = np.asarray(test_labels)
        if len(np.unique(labels_np)) > 1 and np.bincount(labels_np).max() > 1:
            scores, same = verification_pairs(
                test_emb,
                test_labels,
                metric=metric,
                num_pairs=None if all_pairs else max_verification_pairs,
                seed=seed,
            )
            out.update(verification_metrics(scores, same))
    return out
