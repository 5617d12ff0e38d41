"""End-of-run and monitoring evaluation: linear probe, kNN and retrieval.

Protocols (as the MNIST-1D SimCLR notebook and solo-learn / lightly):

- linear probe: standardised features -> multinomial logistic regression
  (scikit-learn) fit on the train split, accuracy on the held-out split;
- kNN: k nearest train embeddings by cosine similarity, majority vote
  (scikit-learn ``KNeighborsClassifier(k, metric="cosine")``);
- retrieval (supervised runs): leave-one-out within the held-out split,
  Musgrave et al. 2020 definitions (MAP@R, R-precision, precision@1), via
  ``jaxmetric.metrics.retrieval_metrics`` when it is available, else the
  NumPy implementation below.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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


def knn_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    k: int = 10,
    metric: str = "cosine",
) -> float:
    """Accuracy of a k-nearest-neighbour majority vote (fraction in [0, 1])."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k, metric=metric, algorithm="brute")
    knn.fit(train_x, train_y)
    return float(knn.score(test_x, test_y))


def linear_probe_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray
) -> float:
    """Held-out accuracy of logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train_x, train_y)
    return float(probe.score(test_x, test_y))


def retrieval_metrics_numpy(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Leave-one-out retrieval within (x, y) with cosine similarity.

    For query i with R_i = (number of other items of its class):
    precision@1; R-precision = hits in the top R_i / R_i; MAP@R =
    (1/R_i) * sum over the top R_i of precision@j at each hit (Musgrave et
    al., "A Metric Learning Reality Check", 2020). Queries with R_i = 0 are
    skipped.
    """
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")
    p1, rp, mapr = [], [], []
    for i in range(len(y)):
        r = int(np.sum(y == y[i])) - 1
        if r == 0:
            continue
        hits = (y[order[i, :r]] == y[i]).astype(np.float64)
        precision_at_j = np.cumsum(hits) / np.arange(1, r + 1)
        p1.append(hits[0])
        rp.append(hits.sum() / r)
        mapr.append(np.sum(precision_at_j * hits) / r)
    return {
        "precision_at_1": float(np.mean(p1)),
        "r_precision": float(np.mean(rp)),
        "map_at_r": float(np.mean(mapr)),
    }


def retrieval_metrics(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Leave-one-out retrieval metrics of the library (fractions)."""
    try:
        from jaxmetric.metrics import retrieval_metrics as library_metrics
    except ImportError:  # The metrics module is not part of this checkout.
        return retrieval_metrics_numpy(x, y)
    out = library_metrics(x, y, metric="cosine")
    return {k: float(v) for k, v in out.items()}
