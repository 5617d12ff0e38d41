"""Evaluation metrics for embeddings: retrieval, classification, verification, clustering.

One module per job:

- `retrieval`: P@1, R-precision, MAP@R, Recall@k and (when asked) mAP
  (`retrieval_metrics`), from each query's nearest neighbours
  (`jaxmetric.search.knn`), blockwise over the query rows and sharded over
  devices;
- `classification`: the kNN classifier (`knn_predict`, `knn_accuracy`) and
  the linear probe (`linear_probe_accuracy`);
- `verification`: ROC AUC, TAR@FAR and best accuracy of scored pairs
  (`verification_metrics`, `verification_pairs`), thresholds and open-set
  search after training (`calibrate`, `match`, `open_set_identification`);
- `clustering`: `kmeans`, `normalized_mutual_info`, `adjusted_mutual_info`
  and `clustering_metrics`;
- `report`: all of them at once on a train / test split (`evaluate_embeddings`).

This package is a kernel: it imports nothing from ``models``, ``data``,
``train`` or ``main``.

Conventions shared by every function here:

- ``metric`` is ``"cosine"`` (distance 1 - cos) or ``"euclidean"``
  (`RETRIEVAL_METRICS`).
- **Ties** are broken by the index of the reference row: of two references
  that rank alike, the one that comes first in ``reference`` ranks first
  (as a brute-force faiss / ``torch.topk`` search would usually return
  them). The ranking is `jaxmetric.search.knn`'s, on float32 keys (cosine
  similarity, or q.r - |r|^2 / 2); rows that are identical (or, for cosine,
  equal up to a power-of-two scale) always tie exactly.
- Labels are non-negative integers.
"""

from jaxmetric.metrics._common import RETRIEVAL_METRICS
from jaxmetric.metrics.classification import knn_accuracy, knn_predict, linear_probe_accuracy
from jaxmetric.metrics.clustering import (
    KMeansResult,
    adjusted_mutual_info,
    clustering_metrics,
    kmeans,
    normalized_mutual_info,
)
from jaxmetric.metrics.report import evaluate_embeddings
from jaxmetric.metrics.retrieval import retrieval_metrics
from jaxmetric.metrics.verification import (
    Calibration,
    calibrate,
    match,
    open_set_identification,
    verification_metrics,
    verification_pairs,
)

__all__ = [
    "RETRIEVAL_METRICS",
    "Calibration",
    "KMeansResult",
    "adjusted_mutual_info",
    "calibrate",
    "clustering_metrics",
    "evaluate_embeddings",
    "kmeans",
    "knn_accuracy",
    "knn_predict",
    "linear_probe_accuracy",
    "match",
    "normalized_mutual_info",
    "open_set_identification",
    "retrieval_metrics",
    "verification_metrics",
    "verification_pairs",
]
