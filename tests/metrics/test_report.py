"""jaxmetric.metrics.report: every metric at once, keys and ranges."""

from __future__ import annotations

from jaxmetric import metrics

from ._common import NAMES, clustered


def test_evaluate_embeddings_keys_and_ranges():
    x, y = clustered(260, num_classes=4, spread=1.0, seed=9)
    sup = metrics.evaluate_embeddings(x[:200], y[:200], x[200:], y[200:], supervised=True)
    ssl = metrics.evaluate_embeddings(x[:200], y[:200], x[200:], y[200:], supervised=False)
    for key in ["knn_accuracy", "linear_probe_accuracy", "nmi", "ami"]:
        assert key in ssl and key in sup
    names = [name for name in NAMES if name != "mean_average_precision"]  # Full ranking: not here.
    for key in names + ["roc_auc", "tar_at_far_0.001", "best_accuracy"]:
        assert key in sup and key not in ssl
    for key, value in sup.items():
        if "threshold" not in key:
            assert -0.1 <= value <= 1.0 + 1e-6, key
    assert sup["knn_accuracy"] > 0.9
