"""jaxmetric.metrics.verification against scikit-learn's ROC curve and a brute-force search."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from jaxmetric import metrics
from jaxmetric.metrics import verification

from ._common import clustered, np_distances, with_singletons


def np_best_accuracy(scores, same):
    candidates = np.concatenate([np.unique(scores)[::-1], [np.inf]])
    best, best_t = -1.0, None
    for t in sorted(candidates, reverse=True):
        acc = np.mean((scores >= t) == same)
        if acc > best:
            best, best_t = acc, t
    return best, best_t


@pytest.mark.parametrize("ties", [False, True])
def test_verification_matches_sklearn(ties):
    rng = np.random.default_rng(7)
    same = rng.random(3000) < 0.3
    scores = rng.normal(size=3000) + 1.5 * same
    if ties:
        scores = np.round(scores, 1)
    scores = scores.astype(np.float32)
    fars = (1e-3, 1e-2, 0.05, 0.1, 0.29, 1.0)
    got = metrics.verification_metrics(scores, same, far_targets=fars)
    s64 = scores.astype(np.float64)
    np.testing.assert_allclose(got["roc_auc"], roc_auc_score(same, s64), rtol=1e-6)
    fpr, tpr, thresholds = roc_curve(same, s64, drop_intermediate=False)
    for f in fars:
        i = np.flatnonzero(fpr <= f)[-1]
        key = f"{f:g}"
        np.testing.assert_allclose(got[f"tar_at_far_{key}"], tpr[i], rtol=1e-6, err_msg=key)
        np.testing.assert_allclose(got[f"far_at_far_{key}"], fpr[i], rtol=1e-6, err_msg=key)
        assert got[f"threshold_at_far_{key}"] == np.float32(thresholds[i]), key
    best, best_t = np_best_accuracy(s64, same)
    np.testing.assert_allclose(got["best_accuracy"], best, rtol=1e-6)
    assert got["best_accuracy_threshold"] == best_t


def test_verification_pairs_all_and_sampled():
    x, y = clustered(40, num_classes=4)
    y = with_singletons(y, count=2)
    scores, same = metrics.verification_pairs(x, y)
    assert scores.shape == (40 * 39 // 2,)
    i, j = np.triu_indices(40, k=1)
    np.testing.assert_array_equal(np.asarray(same), y[i] == y[j])
    want = 1.0 - np_distances(x, x, "cosine")[i, j]
    np.testing.assert_allclose(np.asarray(scores), want, atol=1e-5)

    scores, same = metrics.verification_pairs(x, y, num_pairs=500, metric="euclidean", seed=1)
    same = np.asarray(same)
    assert same[:500].all() and not same[500:].any()
    assert (np.asarray(scores) <= 0).all()
    # A positive pair never pairs a row with itself: distance > 0 for distinct rows.
    assert (np.asarray(scores)[:500] < 0).all()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x, y: metrics.verification_metrics(x[:, 0], y[:-1] > 0), "is_same"),
        (lambda x, y: metrics.verification_metrics(x[:, 0], y >= 0), "is_same"),
        (lambda x, y: metrics.verification_metrics(x[:, 0], y > 0, far_targets=(0,)), "far_"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    x, y = clustered(20, num_classes=3)
    with pytest.raises(ValueError, match=match):
        call(x, y)


def test_docstring_examples():
    result = doctest.testmod(verification, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
