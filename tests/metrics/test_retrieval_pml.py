"""jaxmetric.metrics.retrieval_metrics against pytorch-metric-learning's AccuracyCalculator.

PML is not a dependency: these tests are marked ``torch`` and run in the
benchmark venv (``.venv-bench``, torch + PML), which ``make test`` creates and
runs them in; the main run deselects them (docs/testing.md).
Data without ties, since PML's tie order (``torch.topk``) is unspecified.
"""

from __future__ import annotations

import numpy as np
import pytest

try:
    import pytorch_metric_learning.utils.accuracy_calculator as pml_calc
    import torch
except ModuleNotFoundError:  # .venv: deselected there (tests/conftest.py).
    pml_calc = torch = None

from jaxmetric import metrics

pytestmark = pytest.mark.torch

PML_KEYS = {
    "precision_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "map_at_r": "mean_average_precision_at_r",
    "mean_average_precision": "mean_average_precision",
}


def _data(n, num_classes, seed, singletons=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, 16)) * 1.5
    labels = rng.integers(0, num_classes, n)
    labels[:singletons] = 1000 + np.arange(singletons)  # Classes with one sample.
    x = centers[labels % num_classes] + rng.normal(size=(n, 16))
    return x.astype(np.float32), labels


def _pml(query, query_labels, reference, reference_labels, metric, same_source):
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.utils.inference import CustomKNN

    distance = CosineSimilarity() if metric == "cosine" else LpDistance(normalize_embeddings=False)
    calc = pml_calc.AccuracyCalculator(
        include=tuple(PML_KEYS.values()), k=None, knn_func=CustomKNN(distance)
    )
    t = torch.from_numpy
    return calc.get_accuracy(
        t(query), t(query_labels), t(reference), t(reference_labels), same_source
    )


def check_against_pml(metric, same_source):
    x, y = _data(300, 7, seed=0)
    if same_source:
        got = metrics.retrieval_metrics(x, y, metric=metric, mean_average_precision=True)
        want = _pml(x, y, x, y, metric, True)
    else:
        got = metrics.retrieval_metrics(
            x[:100], y[:100], x[100:], y[100:], metric=metric, mean_average_precision=True
        )
        want = _pml(x[:100], y[:100], x[100:], y[100:], metric, False)
    for ours, theirs in PML_KEYS.items():
        np.testing.assert_allclose(got[ours], want[theirs], rtol=1e-5, err_msg=ours)


CASES = [(m, s) for m in ("cosine", "euclidean") for s in (True, False)]


@pytest.mark.parametrize("metric,same_source", CASES)
def test_retrieval_metrics_equal_pml(metric, same_source):
    check_against_pml(metric, same_source)


if __name__ == "__main__":  # .venv-bench/bin/python tests/metrics/test_retrieval_pml.py
    for metric, same_source in CASES:
        check_against_pml(metric, same_source)
        print(f"ok: {metric}, same_source={same_source}")
