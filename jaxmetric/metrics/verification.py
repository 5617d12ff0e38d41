"""Verification ("same or different?") metrics of scored pairs: ROC AUC, TAR@FAR, accuracy.

`verification_pairs` scores pairs of embeddings (all pairs, or sampled
positive and negative ones); `verification_metrics` turns scores and
same-label flags into the ROC summaries of face-verification benchmarks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxmetric import _checks
from jaxmetric.distances import l2_normalize
from jaxmetric.metrics import _common

__all__ = ["verification_metrics", "verification_pairs"]


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
