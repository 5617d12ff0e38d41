"""Verification ("same or different?"): ROC metrics of pairs, calibration, open-set matching.

`verification_pairs` scores pairs of embeddings (all pairs, or sampled
positive and negative ones); `verification_metrics` turns scores and
same-label flags into the ROC summaries of face-verification benchmarks.

After training: `calibrate` picks a distance threshold for a target FAR (or
precision) with bootstrap intervals, `match` labels queries against a
``jaxmetric.search.Index`` gallery (-1: no match within the threshold), and
`open_set_identification` reports FRVT's 1:N figures (FPIR, FNIR, rank-1
identification rate). These take *distances* (accept iff distance <=
threshold), as ``Index.search`` returns them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmetric import _checks
from jaxmetric.distances import l2_normalize
from jaxmetric.metrics import _common

if TYPE_CHECKING:
    from jaxmetric.search import Index

__all__ = [
    "Calibration",
    "calibrate",
    "match",
    "open_set_identification",
    "verification_metrics",
    "verification_pairs",
]


def _far_key(far: float) -> str:
    return f"{far:g}"


def _max_false_accepts(far: float, num_neg: int) -> int:
    """Largest m with m / num_neg <= far (the float comparison of ROC curves)."""
    m = min(num_neg, max(0, math.floor(far * num_neg)))
    while m < num_neg and (m + 1) / num_neg <= far:
        m += 1
    while m > 0 and m / num_neg > far:
        m -= 1
    return m


@functools.partial(jax.jit, static_argnames=("max_false_accepts",))
def _verification(scores, is_same, *, max_false_accepts):
    pos = is_same
    neg = ~is_same
    num_pos = jnp.sum(pos)
    num_neg = jnp.sum(neg)
    total = scores.shape[0]

    # ROC AUC = P(s+ > s-) + P(s+ = s-) / 2 (Mann-Whitney U), from the sorted negatives.
    neg_sorted = jnp.sort(jnp.where(neg, scores, jnp.inf))
    below = jnp.searchsorted(neg_sorted, scores, side="left")
    below_or_equal = jnp.searchsorted(neg_sorted, scores, side="right")
    below_or_equal = jnp.minimum(below_or_equal, num_neg)
    below = jnp.minimum(below, num_neg)
    u = jnp.sum(jnp.where(pos, below + 0.5 * (below_or_equal - below), 0.0))
    # In float: the int32 product P * N overflows past ~46k x 46k pairs.
    auc = u / (num_pos.astype(jnp.float32) * num_neg.astype(jnp.float32))

    # Descending order; accept iff score >= threshold.
    order = jnp.argsort(-scores, stable=True)
    s_desc = scores[order]
    pos_desc = pos[order]
    tp = jnp.cumsum(pos_desc)
    fp = jnp.cumsum(~pos_desc)
    cut = jnp.concatenate([s_desc[1:] != s_desc[:-1], jnp.array([True])])
    acc = jnp.where(cut, (tp + (num_neg - fp)) / total, -1.0)
    acc_none = num_neg / total  # Threshold +inf: reject every pair.
    best = jnp.argmax(acc)
    take_none = acc_none >= acc[best]
    best_acc = jnp.where(take_none, acc_none, acc[best])
    best_threshold = jnp.where(take_none, jnp.inf, s_desc[best])

    results = {"roc_auc": auc, "best_accuracy": best_acc, "best_accuracy_threshold": best_threshold}
    neg_desc = -jnp.sort(-jnp.where(neg, scores, -jnp.inf))
    tars, fars, thresholds = [], [], []
    for m in max_false_accepts:
        # Accept the scores above c, the (m+1)-th largest negative score: at most
        # m negatives pass. The threshold is the smallest score above c.
        c = neg_desc[m] if m < total else -jnp.inf
        c = jnp.where(m < num_neg, c, -jnp.inf)
        accepted = scores > c
        tars.append(jnp.sum(accepted & pos) / num_pos)
        fars.append(jnp.sum(accepted & neg) / num_neg)
        thresholds.append(jnp.min(jnp.where(accepted, scores, jnp.inf)))
    return results, tars, fars, thresholds


def verification_metrics(
    scores: jax.Array,
    is_same: jax.Array,
    *,
    far_targets: Sequence[float] = (1e-3, 1e-2, 1e-1),
) -> dict[str, float]:
    r"""Verification metrics of scored pairs: ROC AUC, TAR at FAR, thresholds.

    A pair is *accepted* ("same identity") when its score is at least a
    threshold t; scores are similarities (higher = more alike; pass
    ``-distances`` for distances). With P positive and N negative pairs:

    .. math::

        \mathrm{TAR}(t) = \frac{|\{s^+ \ge t\}|}{P}, \qquad
        \mathrm{FAR}(t) = \frac{|\{s^- \ge t\}|}{N}, \qquad
        \mathrm{AUC} = P(s^+ > s^-) + \tfrac12 P(s^+ = s^-).

    - ``roc_auc`` equals scikit-learn's ``roc_auc_score`` (ties count 1/2).
    - ``tar_at_far_{f}``: the largest TAR whose FAR is <= f, i.e. the ROC
      point with the largest false-positive rate not above f (no
      interpolation); ``far_at_far_{f}`` the FAR reached there and
      ``threshold_at_far_{f}`` its threshold, the smallest score that is
      accepted (``inf`` when nothing can be accepted within the budget).
    - ``best_accuracy``: the best (TP + TN) / (P + N) over all thresholds,
      and ``best_accuracy_threshold`` the highest threshold reaching it
      (``inf``: reject everything).

    Args:
      scores: [P + N] float similarity scores.
      is_same: [P + N] bool, True for positive (same-label) pairs. Needs at
        least one positive and one negative pair.
      far_targets: FAR values in (0, 1].

    Returns:
      A dict of Python floats.

    Reference:
      Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters
      2006; the TAR@FAR protocol of IJB-B/C (Whitelam et al. 2017).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxmetric.metrics import verification_metrics
      >>> m = verification_metrics(jnp.array([0.9, 0.8, 0.3, 0.1]),
      ...                          jnp.array([True, True, False, False]), far_targets=(0.5,))
      >>> m["roc_auc"], m["tar_at_far_0.5"], m["best_accuracy"]
      (1.0, 1.0, 1.0)
    """
    scores = jnp.asarray(scores)
    if scores.ndim != 1 or not jnp.issubdtype(scores.dtype, jnp.floating):
        raise ValueError(
            f"`scores` must be a 1-D float array, got shape {scores.shape} dtype {scores.dtype}."
        )
    is_same = jnp.asarray(is_same)
    if is_same.shape != scores.shape:
        raise ValueError(f"`is_same` must have shape {scores.shape}, got {is_same.shape}.")
    is_same = is_same.astype(bool)
    num_pos = int(jnp.sum(is_same))
    num_neg = scores.shape[0] - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError(
            f"`is_same` needs positive and negative pairs, got {num_pos} and {num_neg}."
        )
    fars = tuple(float(f) for f in far_targets)
    for f in fars:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"`far_targets` must be in (0, 1], got {far_targets!r}.")
    ms = tuple(_max_false_accepts(f, num_neg) for f in fars)
    results, tars, reached, thresholds = _verification(
        scores.astype(jnp.float32), is_same, max_false_accepts=ms
    )
    out = {k: float(v) for k, v in results.items()}
    for f, tar, far, t in zip(fars, tars, reached, thresholds, strict=True):
        out[f"tar_at_far_{_far_key(f)}"] = float(tar)
        out[f"far_at_far_{_far_key(f)}"] = float(far)
        out[f"threshold_at_far_{_far_key(f)}"] = float(t)
    return out


def verification_pairs(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    metric: str = "cosine",
    num_pairs: int | None = None,
    seed: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """Scored pairs for `verification_metrics` from embeddings and labels.

    ``num_pairs=None``: every unordered pair i < j (N (N - 1) / 2 pairs; at
    most 5e7). Otherwise ``num_pairs`` positive and ``num_pairs`` negative
    pairs drawn with NumPy's generator from ``seed``: a positive pair is a
    uniformly drawn row of a class with at least two rows and another row of
    its class; a negative pair is a uniformly drawn row and a row of another
    class.

    Args:
      embeddings: [N, D] float embeddings.
      labels: [N] int labels.
      metric: "cosine" (score = cos) or "euclidean" (score = -distance).
      num_pairs: pairs of each kind, or None for all pairs.
      seed: seed of the sampling.

    Returns:
      ``(scores, is_same)``: [P] float32 similarity scores and [P] bool.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxmetric.metrics import verification_pairs
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
      >>> scores, is_same = verification_pairs(x, jnp.array([0, 0, 1]))  # (0, 1), (0, 2), (1, 2)
      >>> scores.tolist(), is_same.tolist()
      ([1.0, 0.0, 0.0], [True, False, False])
    """
    _common.check_metric(metric)
    emb = _common.check_embeddings(embeddings, "embeddings")
    lab = np.asarray(_common.check_labels(labels, emb.shape[0], "labels"))
    n = emb.shape[0]
    if num_pairs is None:
        if n * (n - 1) // 2 > 50_000_000:
            raise ValueError(f"{n} rows give too many pairs; pass `num_pairs`.")
        i, j = np.triu_indices(n, k=1)
    else:
        num_pairs = _checks.check_int(num_pairs, "num_pairs")
        rng = np.random.default_rng(seed)
        classes, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
        eligible = np.flatnonzero(counts[inverse] >= 2)
        if eligible.size == 0 or classes.size < 2:
            raise ValueError("`labels` needs a class with two rows and at least two classes.")
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        a = rng.choice(eligible, num_pairs)
        cls = inverse[a]
        # Another member of the class, uniformly: a slot in the class's block of
        # `order` other than a's own.
        rank_in_class = np.empty(n, np.int64)
        rank_in_class[order] = np.arange(n) - starts[inverse[order]]
        slot = rng.integers(0, counts[cls] - 1)
        slot = slot + (slot >= rank_in_class[a])
        pos_j = order[starts[cls] + slot]
        neg_a = rng.integers(0, n, num_pairs)
        neg_j = rng.integers(0, n, num_pairs)
        for _ in range(100):
            clash = lab[neg_a] == lab[neg_j]
            if not clash.any():
                break
            neg_j[clash] = rng.integers(0, n, int(clash.sum()))
        keep = lab[neg_a] != lab[neg_j]
        i = np.concatenate([a, neg_a[keep]])
        j = np.concatenate([pos_j, neg_j[keep]])
    x, y = emb[i], emb[j]
    if metric == "cosine":
        scores = jnp.sum(l2_normalize(x) * l2_normalize(y), axis=1)
    else:
        scores = -jnp.sqrt(jnp.sum(jnp.square(x - y), axis=1))
    return scores, jnp.asarray(lab[i] == lab[j])


# --------------------------------------------------------------------------------------
# After training: calibrate a threshold, match against a gallery, open-set figures.
# --------------------------------------------------------------------------------------


class Calibration(NamedTuple):
    """Output of `calibrate`: a distance threshold and its operating point.

    Intervals are ``(low, high)`` percentile bootstrap intervals at level
    ``confidence`` of the rate at the fixed ``threshold``.
    """

    threshold: float  # accept a pair iff distance <= threshold (-inf: accept none)
    far: float  # false accepts / num_impostor on the calibration pairs
    tar: float  # true accepts / num_genuine on the calibration pairs
    far_interval: tuple[float, float]
    tar_interval: tuple[float, float]
    num_genuine: int
    num_impostor: int
    precision: float  # true accepts / accepts (1.0 when nothing is accepted)
    precision_interval: tuple[float, float]
    confidence: float


def _check_rate(value: float, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a float in (0, 1), got {value!r}.") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1), got {value!r}.")
    return value


def _check_threshold(value: float, name: str = "threshold") -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a float, got {value!r}.") from None
    if math.isnan(value):
        raise ValueError(f"`{name}` must not be NaN.")
    return value


def _largest_threshold(distances: np.ndarray, genuine: np.ndarray, ok) -> float:
    """The largest of ``distances`` t whose cumulative counts (genuine <= t,
    impostor <= t) satisfy ``ok``; -inf when none does. The pairs tied at a
    distance are accepted or rejected together."""
    order = np.argsort(distances, kind="stable")
    d = distances[order]
    g = genuine[order]
    cum_g = np.cumsum(g)
    cum_i = np.arange(1, d.size + 1) - cum_g
    last = np.concatenate([d[1:] != d[:-1], [True]])  # The end of each group of ties.
    good = np.flatnonzero(ok(cum_g[last], cum_i[last]) & np.isfinite(d[last]))
    return float(d[last][good[-1]]) if good.size else -math.inf


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2, 1.0 - alpha / 2])
    return float(low), float(high)


def calibrate(
    distances: np.ndarray,
    same: np.ndarray,
    *,
    target_far: float | None = None,
    target_precision: float | None = None,
    num_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Calibration:
    r"""A distance threshold for a target FAR (or precision), with bootstrap intervals.

    A pair is accepted ("same identity") iff its distance is <= t. With G
    genuine and I impostor pairs:

    .. math::

        \mathrm{FAR}(t) = \frac{|\{d^- \le t\}|}{I}, \qquad
        \mathrm{TAR}(t) = \frac{|\{d^+ \le t\}|}{G}, \qquad
        \mathrm{precision}(t) = \frac{|\{d^+ \le t\}|}{|\{d^+ \le t\}| + |\{d^- \le t\}|}.

    The threshold is the largest of the observed distances (genuine or
    impostor) t with FAR(t) <= ``target_far`` (or precision(t) >=
    ``target_precision``; precision is 1.0 when nothing is accepted), so it
    reaches the highest TAR these pairs allow: any t' between it and the next
    observed distance has the same FAR and TAR here. **Ties**: pairs at the
    same distance are accepted or rejected together, so when the impostors
    tied at a distance would exceed the FAR budget the threshold falls below
    that distance, even if part of them would fit. ``-inf`` when even the
    smallest distance fails (nothing is accepted; FAR = TAR = 0).

    The intervals are percentile bootstrap intervals (Efron & Tibshirani) of
    the FAR, TAR and precision *at that fixed threshold*, resampling the
    genuine and the impostor pairs separately (G and I pairs with
    replacement) ``num_bootstrap`` times. At a fixed threshold a rate only
    depends on how many resampled pairs are accepted, and that count is
    exactly Binomial(G, TAR) (resp. Binomial(I, FAR)) under the
    nonparametric bootstrap, so the rounds draw these counts with
    ``np.random.default_rng(seed).binomial`` (genuine first, then impostor):
    the same distribution as resampling the pairs, in O(num_bootstrap). The
    interval does not account for the threshold having been chosen on the
    same pairs; calibrate on pairs kept apart from those you report on.

    Args:
      distances: [P] real distances of the pairs (smaller = more alike), all
        finite.
      same: [P] bool, True for genuine (same-identity) pairs. Needs at least
        one genuine and one impostor pair.
      target_far: FAR budget in (0, 1); exactly one of ``target_far`` and
        ``target_precision``.
      target_precision: precision floor in (0, 1).
      num_bootstrap: bootstrap rounds.
      confidence: level of the intervals, in (0, 1).
      seed: seed of the bootstrap.

    Returns:
      A `Calibration` of Python floats and ints.

    Reference:
      Efron & Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall
      1993 (ch. 13, percentile intervals); Grother, Ngan, Hanaoka, "Face
      Recognition Vendor Test (FRVT) Part 2: Identification", NISTIR 8271
      (operating thresholds set at a target false match rate).

    Example:
      >>> import numpy as np
      >>> from jaxmetric.metrics import calibrate
      >>> d = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
      >>> same = np.array([True, True, False, True, False, False, False, False])
      >>> c = calibrate(d, same, target_far=0.2)  # one of 5 impostors may pass
      >>> c.threshold, c.far, c.tar
      (0.4, 0.2, 1.0)
    """
    d = np.asarray(distances)
    if d.ndim != 1 or not (
        np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)
    ):
        raise ValueError(
            f"`distances` must be a 1-D real array, got shape {d.shape} dtype {d.dtype}."
        )
    d = d.astype(np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError("`distances` contain NaN or Inf values.")
    s = np.asarray(same)
    if s.shape != d.shape:
        raise ValueError(f"`same` must have shape {d.shape}, got {s.shape}.")
    if s.dtype != np.bool_:
        if not np.issubdtype(s.dtype, np.integer) or not np.all((s == 0) | (s == 1)):
            raise ValueError(f"`same` must be bool (or 0 / 1), got dtype {s.dtype}.")
        s = s.astype(bool)
    num_genuine = int(np.sum(s))
    num_impostor = int(s.size - num_genuine)
    if num_genuine == 0 or num_impostor == 0:
        raise ValueError(
            f"`same` needs genuine and impostor pairs, got {num_genuine} and {num_impostor}."
        )
    if (target_far is None) == (target_precision is None):
        raise ValueError("Give exactly one of `target_far` and `target_precision`.")
    num_bootstrap = _checks.check_int(num_bootstrap, "num_bootstrap")
    confidence = _check_rate(confidence, "confidence")

    if target_far is not None:
        f = _check_rate(target_far, "target_far")
        threshold = _largest_threshold(d, s, lambda g, i: i / num_impostor <= f)
    else:
        p = _check_rate(target_precision, "target_precision")
        threshold = _largest_threshold(d, s, lambda g, i: g / np.maximum(g + i, 1) >= p)

    accepted = d <= threshold
    true_accepts = int(np.sum(accepted & s))
    false_accepts = int(np.sum(accepted & ~s))
    tar = true_accepts / num_genuine
    far = false_accepts / num_impostor

    rng = np.random.default_rng(seed)
    boot_g = rng.binomial(num_genuine, tar, num_bootstrap)
    boot_i = rng.binomial(num_impostor, far, num_bootstrap)
    boot_precision = np.where(boot_g + boot_i > 0, boot_g / np.maximum(boot_g + boot_i, 1), 1.0)
    accepts = true_accepts + false_accepts
    return Calibration(
        threshold=threshold,
        far=far,
        tar=tar,
        far_interval=_percentile_interval(boot_i / num_impostor, confidence),
        tar_interval=_percentile_interval(boot_g / num_genuine, confidence),
        num_genuine=num_genuine,
        num_impostor=num_impostor,
        precision=true_accepts / accepts if accepts else 1.0,
        precision_interval=_percentile_interval(boot_precision, confidence),
        confidence=confidence,
    )


def _search_with_labels(index: Index, queries: np.ndarray, k: int):
    if len(index) == 0:
        raise ValueError("`index` is empty: add a gallery first.")
    k = _checks.check_int(k, "k", high=len(index))
    distances, _, labels = index.search(queries, k)
    if labels is None:
        raise ValueError("`index` has no labels: add the gallery with `labels`.")
    # float64: a float threshold is compared at its own precision (a float32 2.0 is not
    # <= 2 - 2**-52).
    return np.asarray(distances, np.float64), np.asarray(labels)


def match(index: Index, queries: np.ndarray, threshold: float, *, k: int = 1) -> np.ndarray:
    r"""Open-set matching: the label of the nearest gallery row within ``threshold``, or -1.

    .. math::

        \mathrm{match}(q)_j = \begin{cases} y_{(j)} & d_{(j)}(q) \le t \\
        -1 & \text{otherwise} \end{cases}

    where d_(j) is the distance of the j-th nearest gallery row of
    `index` (ties to the lower gallery index, as ``Index.search``) and
    y_(j) its label; a distance exactly equal to the threshold is accepted
    (``threshold`` of `calibrate`). -1 means "no match": the query's
    identity is not (recognisably) in the gallery.

    Args:
      index: a ``jaxmetric.search.Index`` whose gallery was added with
        labels; its ``metric`` gives the distances.
      queries: [Q, dim] float query embeddings.
      threshold: accept a neighbour iff its distance <= threshold.
      k: neighbours, 1 <= k <= len(index).

    Returns:
      [Q] int64 labels for ``k=1``; [Q, k] for ``k > 1``, the labels of the
      k nearest rows, nearest first, with -1 for each neighbour beyond the
      threshold (so a row's -1 entries come after its accepted ones).

    Reference:
      Grother, Ngan, Hanaoka, "Face Recognition Vendor Test (FRVT) Part 2:
      Identification", NISTIR 8271 (open-set search with a threshold).

    Example:
      >>> import numpy as np
      >>> from jaxmetric.metrics import match
      >>> from jaxmetric.search import Index
      >>> index = Index(2, metric="euclidean")
      >>> index.add(np.array([[0.0, 0.0], [4.0, 0.0]]), labels=np.array([3, 5]))
      >>> match(index, np.array([[1.0, 0.0], [2.0, 9.0]]), threshold=1.0).tolist()
      [3, -1]
    """
    threshold = _check_threshold(threshold)
    distances, labels = _search_with_labels(index, queries, k)
    out = np.where(distances <= threshold, labels, -1).astype(np.int64)
    return out[:, 0] if k == 1 else out


def open_set_identification(
    index: Index,
    queries: np.ndarray,
    query_labels: np.ndarray,
    *,
    threshold: float | None = None,
    target_fpir: float | None = None,
    rank: int = 1,
) -> dict[str, float | int]:
    r"""Open-set (1:N) identification figures as NIST FRVT reports them: FPIR, FNIR.

    A search is *mated* when the query's label is among the gallery's labels,
    *non-mated* otherwise. With M mated and N non-mated searches, d_1(q) the
    distance of the nearest gallery row and m_R(q) the distance of the
    nearest row with the query's label among the ``rank`` nearest (+inf if
    there is none):

    .. math::

        \mathrm{FPIR}(t) = \frac{|\{q \text{ non-mated} : d_1(q) \le t\}|}{N}, \qquad
        \mathrm{FNIR}(t) = \frac{|\{q \text{ mated} : m_R(q) > t\}|}{M}

    i.e. FRVT's FNIR(N, R, T): the mate is not returned within the top R
    candidates with a score at the threshold or better (distances here:
    smaller is better, and a distance equal to t counts as returned);
    ``rank=1`` by default. ``rank_1_identification_rate`` is the closed-set
    rate over the mated searches, with no threshold: the nearest gallery row
    has the query's label. Ties go to the lower gallery index.

    With ``target_fpir``, the threshold is chosen as in `calibrate`: the
    largest of the observed distances (d_1 of the non-mated searches, finite
    m_R of the mated ones) with FPIR(t) <= target_fpir, tied distances
    accepted or rejected together (``-inf`` when none).

    Args:
      index: a ``jaxmetric.search.Index`` with labels (the gallery).
      queries: [Q, dim] float query embeddings.
      query_labels: [Q] int identities of the queries; needs mated and
        non-mated searches.
      threshold: accept a candidate iff its distance <= threshold; exactly
        one of ``threshold`` and ``target_fpir``.
      target_fpir: FPIR budget in (0, 1).
      rank: the candidate list length R of FNIR, 1 <= R <= len(index).

    Returns:
      A dict: the floats ``threshold``, ``fpir``, ``fnir`` and
      ``rank_1_identification_rate``, and the ints ``rank``, ``num_mated``
      and ``num_non_mated``.

    Reference:
      Grother, Ngan, Hanaoka, "Face Recognition Vendor Test (FRVT) Part 2:
      Identification", NISTIR 8271, 2019 (sec. 3, FPIR and FNIR).

    Example:
      >>> import numpy as np
      >>> from jaxmetric.metrics import open_set_identification
      >>> from jaxmetric.search import Index
      >>> index = Index(1, metric="euclidean")
      >>> index.add(np.array([[0.0], [10.0]]), labels=np.array([0, 1]))
      >>> q = np.array([[0.5], [9.0], [4.0], [6.0]])  # two mated, two non-mated searches
      >>> r = open_set_identification(index, q, np.array([0, 1, 7, 8]), threshold=2.0)
      >>> r["fpir"], r["fnir"], r["rank_1_identification_rate"]
      (0.0, 0.0, 1.0)
    """
    if (threshold is None) == (target_fpir is None):
        raise ValueError("Give exactly one of `threshold` and `target_fpir`.")
    q = np.asarray(queries)
    y = np.asarray(query_labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"`query_labels` must be 1-D ints, got {y.dtype} {y.shape}.")
    if q.ndim != 2 or q.shape[0] != y.shape[0]:
        raise ValueError(
            f"`queries` must have shape [{y.shape[0]}, dim] (one row per label), got {q.shape}."
        )
    if len(index) == 0:
        raise ValueError("`index` is empty: add a gallery first.")
    rank = _checks.check_int(rank, "rank", high=len(index))
    distances, labels = _search_with_labels(index, q, rank)
    hit = labels == y[:, None]
    mate = np.where(hit, distances, np.inf).min(axis=1)
    nearest = distances[:, 0]
    mated = np.isin(y, np.asarray(index.labels))
    num_mated = int(np.sum(mated))
    num_non_mated = int(y.size - num_mated)
    if num_mated == 0 or num_non_mated == 0:
        raise ValueError(
            "`query_labels` needs mated (in the gallery) and non-mated searches, "
            f"got {num_mated} and {num_non_mated}."
        )
    if target_fpir is not None:
        f = _check_rate(target_fpir, "target_fpir")
        candidates = np.concatenate([mate[mated], nearest[~mated]])
        is_mated = np.concatenate([np.ones(num_mated, bool), np.zeros(num_non_mated, bool)])
        threshold = _largest_threshold(candidates, is_mated, lambda g, i: i / num_non_mated <= f)
    threshold = _check_threshold(threshold)
    return {
        "threshold": float(threshold),
        "fpir": float(np.mean(nearest[~mated] <= threshold)),
        "fnir": float(np.mean(~(mate[mated] <= threshold))),
        "rank_1_identification_rate": float(np.mean(hit[mated, 0])),
        "rank": rank,
        "num_mated": num_mated,
        "num_non_mated": num_non_mated,
    }
