"""jaxmetric.metrics.verification against scikit-learn's ROC curve and a brute-force search.

`calibrate`, `match` and `open_set_identification` against NumPy loops; the
bootstrap intervals against explicit resampling of the pairs, a held-out
split and their coverage of the analytic FAR of Gaussian distances.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from jaxmetric import metrics
from jaxmetric.metrics import verification
from jaxmetric.search import Index

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


# --------------------------------------------------------------------------------------
# calibrate, match, open_set_identification.
# --------------------------------------------------------------------------------------


def brute_force_threshold(d, same, ok):
    """The largest candidate t (an observed distance) with ok(genuine <= t,
    impostor <= t); -inf if none. A plain loop."""
    best = -math.inf
    for t in sorted(set(d.tolist())):
        g = sum(1 for x, s in zip(d, same, strict=True) if s and x <= t)
        i = sum(1 for x, s in zip(d, same, strict=True) if not s and x <= t)
        if ok(g, i):
            best = t
    return best


def rates_at(d, same, t):
    return np.mean(d[same] <= t), np.mean(d[~same] <= t)


def gaussian_pairs(rng, num_genuine, num_impostor, mu=(0.3, 0.8), sigma=0.1):
    d = np.concatenate(
        [rng.normal(mu[0], sigma, num_genuine), rng.normal(mu[1], sigma, num_impostor)]
    )
    return d, np.arange(d.size) < num_genuine


def shifted_pairs(seed, n, genuine_fraction, shift, ties):
    """Impostor distances N(0, 1), genuine ones shifted down by ``shift``;
    with ``ties``, rounded to one decimal (many ties across both kinds)."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < genuine_fraction
    d = rng.normal(size=n) - shift * same
    return (np.round(d, 1) if ties else d), same


def gaussian_cdf(t, mu, sigma):
    return 0.5 * math.erfc((mu - t) / (sigma * math.sqrt(2.0)))


@pytest.mark.parametrize("ties", [False, True])
def test_calibrate_far_matches_brute_force_and_sklearn(ties):
    d, same = shifted_pairs(3, 600, 0.3, 1.2, ties)
    num_impostor = int((~same).sum())
    fpr, tpr, thresholds = roc_curve(same, -d, drop_intermediate=False)
    for f in (1e-4, 1 / num_impostor, 0.01, 0.05, 0.1, 0.5, 0.99):
        got = metrics.calibrate(d, same, target_far=f, num_bootstrap=10)
        want = brute_force_threshold(d, same, lambda g, i, f=f: i / num_impostor <= f)
        assert got.threshold == want, f
        tar, far = rates_at(d, same, want)
        assert (got.far, got.tar) == (far, tar), f
        assert got.far <= f
        # scikit-learn: the last ROC point with FPR <= f (its first threshold, inf, is ours -inf).
        i = np.flatnonzero(fpr <= f)[-1]
        assert got.threshold == -thresholds[i], f
        np.testing.assert_allclose([got.far, got.tar], [fpr[i], tpr[i]], rtol=1e-12)
        assert (got.num_genuine, got.num_impostor) == (int(same.sum()), num_impostor)


def test_calibrate_ties_at_the_budget_reject_the_whole_group():
    # Impostors at 0.1, 0.5, 0.5, 0.9: target 0.25 allows one false accept; the two
    # tied at 0.5 would make two, so the threshold falls below 0.5 (to the genuine 0.3).
    d = np.array([0.1, 0.5, 0.5, 0.9, 0.0, 0.3, 0.5, 0.6])
    same = np.array([False, False, False, False, True, True, True, True])
    got = metrics.calibrate(d, same, target_far=0.25)
    assert (got.threshold, got.far, got.tar) == (0.3, 0.25, 0.5)
    got = metrics.calibrate(d, same, target_far=0.75)  # Now the group fits: 0.6 is accepted.
    assert (got.threshold, got.far, got.tar) == (0.6, 0.75, 1.0)
    got = metrics.calibrate(d, same, target_far=0.2)  # Not even the impostor at 0.1.
    assert (got.threshold, got.far, got.tar) == (0.0, 0.0, 0.25)
    # The nearest pair is an impostor and no false accept fits: accept nothing.
    got = metrics.calibrate(
        np.array([0.0, 0.5, 0.6]), np.array([False, True, True]), target_far=0.5
    )
    assert got.threshold == -math.inf and got.far == got.tar == 0.0 and got.precision == 1.0


@pytest.mark.parametrize("ties", [False, True])
def test_calibrate_precision_matches_brute_force(ties):
    d, same = shifted_pairs(5, 500, 0.4, 1.0, ties)
    for p in (0.5, 0.7, 0.9, 0.97, 0.999):
        got = metrics.calibrate(d, same, target_precision=p, num_bootstrap=10)
        want = brute_force_threshold(d, same, lambda g, i, p=p: g + i > 0 and g / (g + i) >= p)
        assert got.threshold == want, p
        accepted = d <= want
        precision = same[accepted].mean() if accepted.any() else 1.0
        assert got.precision == precision and got.precision >= p, p
        tar, far = rates_at(d, same, want)
        assert (got.far, got.tar) == (far, tar), p


def test_bootstrap_intervals_match_resampling_the_pairs():
    # The binomial draw of the accepted count is the pairs' bootstrap: compare with
    # resampling the genuine and impostor pairs (separately) by index.
    rng = np.random.default_rng(0)
    d, same = gaussian_pairs(rng, 3000, 5000, mu=(0.5, 0.8))
    got = metrics.calibrate(d, same, target_far=0.05, num_bootstrap=4000, confidence=0.9)
    gen, imp = d[same], d[~same]
    boot = np.random.default_rng(1)
    fars, tars, precisions = [], [], []
    for _ in range(4000):
        g = np.sum(gen[boot.integers(0, gen.size, gen.size)] <= got.threshold)
        i = np.sum(imp[boot.integers(0, imp.size, imp.size)] <= got.threshold)
        fars.append(i / imp.size)
        tars.append(g / gen.size)
        precisions.append(g / (g + i))
    for name, values, tol in (
        ("far", fars, 1.5 / imp.size),
        ("tar", tars, 3 / gen.size),
        ("precision", precisions, 2e-3),
    ):
        want = np.quantile(values, [0.05, 0.95])
        np.testing.assert_allclose(getattr(got, f"{name}_interval"), want, atol=tol, err_msg=name)


def test_held_out_far_lies_in_the_interval():
    rng = np.random.default_rng(2024)
    d, same = gaussian_pairs(rng, 5000, 20_000)
    got = metrics.calibrate(d, same, target_far=1e-2)
    low, high = got.far_interval
    assert low < got.far < high and got.far <= 1e-2
    assert 0.0 < high - low < 0.01  # A real interval, not a point or everything.
    held_d, held_same = gaussian_pairs(np.random.default_rng(77), 200_000, 1_000_000)
    held_tar, held_far = rates_at(held_d, held_same, got.threshold)
    assert low <= held_far <= high, (low, held_far, high)
    assert got.tar_interval[0] <= held_tar <= got.tar_interval[1]


def test_intervals_cover_the_true_rates_about_95_percent_of_the_time():
    mu, sigma = (0.3, 0.8), 0.1
    covered_far = covered_tar = 0
    repetitions = 200
    for seed in range(repetitions):
        rng = np.random.default_rng(seed)
        # Genuine pairs close to the impostors, so the TAR is not ~1.
        d, same = gaussian_pairs(rng, 2000, 20_000, mu=(0.6, 0.8), sigma=sigma)
        got = metrics.calibrate(d, same, target_far=1e-2, seed=seed)
        true_far = gaussian_cdf(got.threshold, mu[1], sigma)
        true_tar = gaussian_cdf(got.threshold, 0.6, sigma)
        covered_far += got.far_interval[0] <= true_far <= got.far_interval[1]
        covered_tar += got.tar_interval[0] <= true_tar <= got.tar_interval[1]
    assert 0.90 <= covered_far / repetitions <= 0.99, covered_far
    assert 0.90 <= covered_tar / repetitions <= 0.99, covered_tar


GALLERY = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
GALLERY_LABELS = np.array([10, 20, 30, 20])


def gallery_index(metric="euclidean"):
    index = Index(2, metric=metric)
    index.add(GALLERY, GALLERY_LABELS)
    return index


def test_match_labels_present_and_absent_identities():
    index = gallery_index()
    queries = np.array([[0.5, 0.0], [4.0, 3.5], [2.0, 2.0], [0.0, 3.0], [9.0, 9.0]])
    got = metrics.match(index, queries, threshold=1.0)
    assert got.dtype == np.int64 and got.shape == (5,)
    # Reference: nearest gallery row (lower index on ties) within the threshold.
    dist = np_distances(queries, GALLERY, "euclidean")
    want = [
        int(GALLERY_LABELS[j]) if dist[q, j] <= 1.0 else -1
        for q, j in enumerate(np.argmin(dist, axis=1))
    ]
    assert got.tolist() == want == [10, 20, -1, 30, -1]


def test_match_threshold_boundary_accepts_equal_distance():
    index = gallery_index()
    q = np.array([[0.0, 2.0]])  # Distance exactly 2 to rows 0 and 2 (a tie: row 0, label 10).
    assert metrics.match(index, q, threshold=2.0).tolist() == [10]
    assert metrics.match(index, q, threshold=np.nextafter(2.0, 0.0)).tolist() == [-1]


def test_match_k_neighbours_beyond_the_threshold_are_minus_one():
    index = gallery_index()
    queries = np.array([[0.0, 1.0], [4.0, 2.0]])
    got = metrics.match(index, queries, threshold=3.0, k=3)
    dist = np_distances(queries, GALLERY, "euclidean")
    labels = GALLERY_LABELS
    want = []
    for q in range(2):
        order = np.argsort(dist[q], kind="stable")[:3]
        want.append([int(labels[j]) if dist[q, j] <= 3.0 else -1 for j in order])
    assert got.shape == (2, 3)
    assert got.tolist() == want == [[10, 30, -1], [20, 20, -1]]


def np_open_set(dist, gallery_labels, query_labels, rank, threshold=None, target_fpir=None):
    """FRVT's FPIR / FNIR by a loop over the searches."""
    mated, d1, mate, rank1 = [], [], [], []
    for q in range(dist.shape[0]):
        order = np.argsort(dist[q], kind="stable")
        mated.append(query_labels[q] in set(gallery_labels.tolist()))
        d1.append(dist[q, order[0]])
        top = [j for j in order[:rank] if gallery_labels[j] == query_labels[q]]
        mate.append(dist[q, top[0]] if top else math.inf)
        rank1.append(gallery_labels[order[0]] == query_labels[q])
    mated, d1, mate, rank1 = map(np.array, (mated, d1, mate, rank1))

    def fpir(t):
        return np.mean(d1[~mated] <= t)

    if target_fpir is not None:
        candidates = sorted(
            set(d1[~mated].tolist()) | set(mate[mated & np.isfinite(mate)].tolist())
        )
        threshold = max([t for t in candidates if fpir(t) <= target_fpir], default=-math.inf)
    return {
        "threshold": threshold,
        "fpir": fpir(threshold),
        "fnir": np.mean(mate[mated] > threshold),
        "rank_1_identification_rate": np.mean(rank1[mated]),
        "num_mated": int(mated.sum()),
        "num_non_mated": int((~mated).sum()),
    }


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("target_fpir", [0.05, 0.2, 0.5])
def test_open_set_identification_matches_numpy_loop_on_ties(rank, target_fpir):
    # Integer rows around integer centres: exact distances with many ties; labels
    # 0..3 in the gallery, 4..5 not.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 6, 120)
    centres = rng.integers(-2, 3, (6, 3))
    x = (centres[y] + rng.integers(-1, 2, (120, 3))).astype(np.float32)
    in_gallery = (y < 4) & (np.arange(120) < 60)
    index = Index(3, metric="euclidean")
    index.add(x[in_gallery], y[in_gallery])
    queries, query_labels = x[~in_gallery], y[~in_gallery]
    got = metrics.open_set_identification(
        index, queries, query_labels, target_fpir=target_fpir, rank=rank
    )
    dist = np_distances(queries, x[in_gallery], "euclidean")
    want = np_open_set(dist, y[in_gallery], query_labels, rank, target_fpir=target_fpir)
    np.testing.assert_allclose(got["threshold"], want["threshold"], rtol=1e-6)
    for key in ("fpir", "fnir", "rank_1_identification_rate", "num_mated", "num_non_mated"):
        assert got[key] == want[key], key
    assert got["fpir"] <= target_fpir and got["rank"] == rank
    assert 0 < want["num_non_mated"] and 0 < want["fnir"] < 1  # Not a degenerate case.


def test_open_set_identification_at_a_fixed_threshold():
    x, y = clustered(300, dim=8, num_classes=12, spread=1.5, seed=4)
    gallery = (y < 8) & (np.arange(300) % 3 == 0)
    index = Index(8, metric="cosine")
    index.add(x[gallery], y[gallery])
    queries, query_labels = x[~gallery], y[~gallery]
    dist = np_distances(queries, x[gallery], "cosine")
    for threshold in (0.05, 0.2, 0.4):
        # float32 search vs float64 reference: no distance is near enough to flip.
        assert np.abs(dist - threshold).min() > 1e-5
        got = metrics.open_set_identification(index, queries, query_labels, threshold=threshold)
        want = np_open_set(dist, y[gallery], query_labels, 1, threshold=threshold)
        assert got["threshold"] == threshold
        for key in ("fpir", "fnir", "rank_1_identification_rate"):
            np.testing.assert_allclose(got[key], want[key], atol=1e-12, err_msg=key)


def bad_call(name):
    d = np.array([0.1, 0.2, 0.7, 0.8])
    same = np.array([True, True, False, False])
    labelled, unlabelled, empty = gallery_index(), Index(2), Index(2)
    unlabelled.add(np.ones((2, 2)))
    q = np.zeros((3, 2))
    calls = {
        "distances_2d": lambda: metrics.calibrate(d[None], same, target_far=0.1),
        "distances_nan": lambda: metrics.calibrate(d * np.nan, same, target_far=0.1),
        "distances_inf": lambda: metrics.calibrate(
            d + np.array([0, 0, 0, np.inf]), same, target_far=0.1
        ),
        "same_shape": lambda: metrics.calibrate(d, same[:-1], target_far=0.1),
        "same_dtype": lambda: metrics.calibrate(d, same * 2.0, target_far=0.1),
        "same_no_impostor": lambda: metrics.calibrate(d, same | True, target_far=0.1),
        "same_no_genuine": lambda: metrics.calibrate(d, same & False, target_far=0.1),
        "neither_target": lambda: metrics.calibrate(d, same),
        "both_targets": lambda: metrics.calibrate(d, same, target_far=0.1, target_precision=0.9),
        "target_far_0": lambda: metrics.calibrate(d, same, target_far=0.0),
        "target_far_1": lambda: metrics.calibrate(d, same, target_far=1.0),
        "target_precision": lambda: metrics.calibrate(d, same, target_precision=1.5),
        "num_bootstrap": lambda: metrics.calibrate(d, same, target_far=0.1, num_bootstrap=0),
        "confidence": lambda: metrics.calibrate(d, same, target_far=0.1, confidence=1.0),
        "match_unlabelled": lambda: metrics.match(unlabelled, q, 0.5),
        "match_empty": lambda: metrics.match(empty, q, 0.5),
        "match_threshold": lambda: metrics.match(labelled, q, float("nan")),
        "match_k": lambda: metrics.match(labelled, q, 0.5, k=5),
        "open_neither": lambda: metrics.open_set_identification(labelled, q, np.array([10, 1, 2])),
        "open_all_mated": lambda: metrics.open_set_identification(
            labelled, q, np.array([10, 20, 30]), threshold=1.0
        ),
        "open_labels_length": lambda: metrics.open_set_identification(
            labelled, q, np.array([10, 1]), threshold=1.0
        ),
        "open_target_fpir": lambda: metrics.open_set_identification(
            labelled, q, np.array([10, 1, 2]), target_fpir=1.0
        ),
        "open_rank": lambda: metrics.open_set_identification(
            labelled, q, np.array([10, 1, 2]), threshold=1.0, rank=0
        ),
        "open_unlabelled": lambda: metrics.open_set_identification(
            unlabelled, q, np.array([10, 1, 2]), threshold=1.0
        ),
    }
    return calls[name]


@pytest.mark.parametrize(
    "name,match",
    [
        ("distances_2d", "`distances`"),
        ("distances_nan", "`distances`"),
        ("distances_inf", "`distances`"),
        ("same_shape", "`same`"),
        ("same_dtype", "`same`"),
        ("same_no_impostor", "`same`"),
        ("same_no_genuine", "`same`"),
        ("neither_target", "`target_far`"),
        ("both_targets", "`target_precision`"),
        ("target_far_0", "`target_far`"),
        ("target_far_1", "`target_far`"),
        ("target_precision", "`target_precision`"),
        ("num_bootstrap", "`num_bootstrap`"),
        ("confidence", "`confidence`"),
        ("match_unlabelled", "`index`"),
        ("match_empty", "`index`"),
        ("match_threshold", "`threshold`"),
        ("match_k", "`k`"),
        ("open_neither", "`target_fpir`"),
        ("open_all_mated", "`query_labels`"),
        ("open_labels_length", "`queries`"),
        ("open_target_fpir", "`target_fpir`"),
        ("open_rank", "`rank`"),
        ("open_unlabelled", "`index`"),
    ],
)
def test_calibration_and_matching_bad_input_names_the_argument(name, match):
    with pytest.raises(ValueError, match=match):
        bad_call(name)()


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
