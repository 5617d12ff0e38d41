"""Shared by the metric tests: test data, the NumPy distance reference, result keys.

Random clustered embeddings, plus data built to have exact ties in distance
(integer grids, duplicated and power-of-two-scaled rows) and classes with a
single sample.
"""

from __future__ import annotations

import numpy as np

KS = (1, 2, 4, 8)  # The default `recall_at` of retrieval_metrics.
NAMES = ["precision_at_1", "r_precision", "map_at_r", "mean_average_precision"]
NAMES += [f"recall_at_{k}" for k in KS]


def clustered(n, dim=8, num_classes=6, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim)) * 2.0
    labels = rng.integers(0, num_classes, n)
    x = centers[labels] + spread * rng.normal(size=(n, dim))
    return x.astype(np.float32), labels


def integer_grid(n, dim=3, num_classes=4, seed=0):
    """Small-integer rows: many exact ties and duplicates, exact float32 distances."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    return x, rng.integers(0, num_classes, n)


def scaled_duplicates(n, dim=6, num_base=12, num_classes=4, seed=0):
    """Rows that repeat a few directions at power-of-two scales: exact cosine ties."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(num_base, dim))
    which = rng.integers(0, num_base, n)
    scale = 2.0 ** rng.integers(-2, 3, n)
    x = (base[which] * scale[:, None]).astype(np.float32)
    return x, rng.integers(0, num_classes, n)


def with_singletons(labels, count=3, start=100):
    """Gives `count` rows labels that no other row has."""
    labels = labels.copy()
    labels[:count] = start + np.arange(count)
    return labels


def np_distances(q, r, metric):
    """[N, M] float64 distances: 1 - cos, or euclidean."""
    q = q.astype(np.float64)
    r = r.astype(np.float64)
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        rn = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ rn.T
    return np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
