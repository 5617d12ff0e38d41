"""margin_loss against a plain NumPy loop over every triplet (Wu et al. 2017,
PML's MarginLoss with triplets_per_anchor="all").

Each triplet (a, p, n) adds (d_ap - beta + margin)_+ and (beta - d_an +
margin)_+; the sum goes over the number of non-zero hinges (PML's
DivisorReducer), plus nu times beta's regulariser. Euclidean distance on
L2-normalised rows; beta a number, a learnable scalar, or one per class.
float64 (rtol 1e-5) and float32 (rtol 1e-4); the gradient reaching a
learnable beta against its closed form, and sharded == one device for it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm
from tests.harness import (
    DTYPES,
    LABELLED_CASES,
    Pairs,
    assert_matches_label_reference,
    assert_sharded_equals_single,
    embed,
    labelled_batch,
    ref_unit,
    sharded_data,
)

CLASS_BETA = np.array([1.0, 1.1, 1.25, 0.9])  # classes 0-3; the singletons (100, 101) have none


def ref_euclid(a, b) -> float:
    return float(np.linalg.norm(ref_unit(a) - ref_unit(b)))


def all_triplets(pairs: Pairs):
    for i, pos, neg in pairs.anchors():
        for p in pos:
            for n in neg:
                yield i, p, n


def ref_margin_parts(pairs: Pairs, margin: float, beta, triplets=None):
    """Loop over the triplets (all those of ``pairs``, or the given (a, p, n)):
    (hinge sum, non-zero hinges, triplets, sum of beta_a, d/d beta_c of the
    hinge sum (per class, or [1] for a scalar), triplets per class)."""
    per_class = np.ndim(beta) == 1
    n_beta = len(beta) if per_class else 1
    total, count, num, beta_sum = 0.0, 0, 0, 0.0
    d_total, class_triplets = np.zeros(n_beta), np.zeros(n_beta)
    for i, p, n in all_triplets(pairs) if triplets is None else triplets:
        c = int(pairs.labels[i]) if per_class else 0
        if per_class and not 0 <= c < n_beta:
            continue  # no beta for this anchor's class: not an anchor
        b = float(beta[c]) if per_class else float(beta)
        lp = max(0.0, ref_euclid(pairs.x[i], pairs.cands[p]) - b + margin)
        ln = max(0.0, b - ref_euclid(pairs.x[i], pairs.cands[n]) + margin)
        total += lp + ln
        count += (lp > 0) + (ln > 0)
        num += 1
        beta_sum += b
        d_total[c] += -float(lp > 0) + float(ln > 0)
        class_triplets[c] += 1
    return total, count, num, beta_sum, d_total, class_triplets


def ref_margin(pairs: Pairs, margin: float, beta, nu: float, triplets=None) -> float:
    total, count, triplets, beta_sum, _, _ = ref_margin_parts(pairs, margin, beta, triplets)
    loss = total / count if count else 0.0
    if nu and np.ndim(beta) == 0:
        loss += nu * float(beta) if triplets else 0.0
    elif nu:
        loss += nu * beta_sum / count if count else 0.0
    return loss


def ref_margin_beta_grad(pairs: Pairs, margin: float, beta, nu: float) -> np.ndarray:
    """d loss / d beta in closed form (a.e.: the hinges are piecewise linear)."""
    _, count, triplets, _, d_total, class_triplets = ref_margin_parts(pairs, margin, beta)
    if np.ndim(beta) == 0:
        return np.asarray((d_total[0] / count if count else 0.0) + (nu if triplets else 0.0))
    return (d_total + nu * class_triplets) / count if count else np.zeros_like(d_total)


CASES = {
    "defaults": (jm.margin_loss, {"margin": 0.2, "beta": 1.2, "nu": 0.0}),
    "beta1_nu": (
        functools.partial(jm.margin_loss, margin=0.1, beta=1.0, nu=0.1),
        {"margin": 0.1, "beta": 1.0, "nu": 0.1},
    ),
    "class_beta": (
        functools.partial(jm.margin_loss, beta=CLASS_BETA, nu=0.05),
        {"margin": 0.2, "beta": CLASS_BETA, "nu": 0.05},
    ),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LABELLED_CASES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference(name, case, dtype):
    fn, hyper = CASES[name]
    assert_matches_label_reference(
        fn, ref_margin, hyper, case, dtype, zero_cases=("one_class", "no_positive")
    )


@functools.cache
def _beta_value_and_grad(nu: float):
    def loss(x, y, m, beta):
        return jm.margin_loss(x, y, beta=beta, nu=nu, mask=m)

    return jax.jit(jax.value_and_grad(loss, argnums=3))


@pytest.mark.parametrize("beta", [1.1, CLASS_BETA], ids=["scalar", "per_class"])
@pytest.mark.parametrize("case", ("mixed", "masked"))
def test_learnable_beta_gets_its_gradient(beta, case):
    x, labels, mask = labelled_batch(case)
    pairs = Pairs(x, labels, mask)
    with jax.enable_x64(True):
        value, grad = _beta_value_and_grad(0.1)(
            jnp.asarray(x), jnp.asarray(labels), jnp.asarray(mask), jnp.asarray(beta, jnp.float64)
        )
        np.testing.assert_allclose(float(value), ref_margin(pairs, 0.2, beta, 0.1), rtol=1e-6)
        expected = ref_margin_beta_grad(pairs, 0.2, beta, 0.1)
        np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6, atol=1e-12)
        assert np.abs(expected).max() > 0


def test_class_beta_is_finite_on_degenerate_input():
    """Per-class beta (the registry's cases use a float): identical, zero and
    half-zero rows give a finite value and beta gradient; nothing valid gives
    0 with zero gradient."""
    x, labels, mask = labelled_batch("mixed")
    fn = _beta_value_and_grad(0.1)
    half = np.where(np.arange(len(x))[:, None] % 2, x, 0.0)
    with jax.enable_x64(True):
        y, m, beta = jnp.asarray(labels), jnp.asarray(mask), jnp.asarray(CLASS_BETA)
        for rows in (np.ones_like(x), np.zeros_like(x), half):
            value, grad = fn(jnp.asarray(rows), y, m, beta)
            assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
        value, grad = fn(jnp.asarray(x), y, jnp.zeros(len(x), bool), beta)
        assert float(value) == 0.0 and not np.asarray(grad).any()


def _sharded_margin(params, batch, replicated, axis_name, mined=False):
    del replicated
    emb = embed(params, batch["x"][:, 0])
    labels, mask = batch["labels"], batch["mask"]
    triplets = None
    if mined:  # the paper's sampling, drawn on each device for its own anchors
        triplets = jm.mining.distance_weighted_miner(
            emb, labels, jax.random.key(0), mask=mask, axis_name=axis_name
        )
    return jm.margin_loss(
        emb, labels, beta=params["beta"], nu=0.1, triplets=triplets, mask=mask, axis_name=axis_name
    )


_sharded_mined_margin = functools.partial(_sharded_margin, mined=True)


@pytest.mark.parametrize("mined", [False, True], ids=["all_triplets", "distance_weighted"])
def test_sharded_learnable_beta_equals_single_device(mined):
    """A learnable per-class beta, over all triplets and over the triplets of
    distance_weighted_miner (under axis_name: the same triplets as on one
    device), under shard_map (pmap: the registry's sharded family)."""
    params, batch, replicated = sharded_data(seed=4, masked=True)
    params = {**params, "beta": jnp.linspace(0.9, 1.3, 16, dtype=jnp.float32)}
    assert_sharded_equals_single(
        _sharded_mined_margin if mined else _sharded_margin,
        (params, batch, replicated),
        "shard_map",
        nonzero_grads=("w1", "w2", "beta"),
    )


@pytest.mark.parametrize("beta", [1.2, CLASS_BETA], ids=["scalar", "per_class"])
def test_given_triplets_pairs_and_reference_set_match_reference(beta):
    """margin_loss(triplets=) on the triplets of distance_weighted_miner (the
    paper's sampling), pairs= on multi-similarity mined pairs (every triplet of
    a given positive and a given negative pair, PML's convert_to_triplets), and
    a reference set, each against the loop over exactly those triplets."""
    x, labels, mask = labelled_batch("masked")
    x32, lab, m = jnp.asarray(x, jnp.float32), jnp.asarray(labels), jnp.asarray(mask)
    kw = {"beta": beta, "nu": 0.1, "mask": m}
    pairs = Pairs(x, labels, mask)
    t = jax.device_get(
        jax.jit(lambda x: jm.mining.distance_weighted_miner(x, lab, jax.random.key(3), mask=m))(x32)
    )
    given = [tuple(int(i) for i in row) for row in np.stack(t[:3], axis=1)[t.valid]]
    assert len(given) > 3
    loss = jax.jit(functools.partial(jm.margin_loss, **kw))
    got = loss(x32, lab, triplets=t)
    expected = ref_margin(pairs, 0.2, beta, 0.1, triplets=given)
    np.testing.assert_allclose(float(got), expected, rtol=1e-4, atol=1e-6)
    # A subset of all the triplets: not the all-triplets value.
    assert abs(expected - ref_margin(pairs, 0.2, beta, 0.1)) > 1e-4

    miner = jax.jit(functools.partial(jm.mining.multi_similarity_miner, mask=m, epsilon=0.3))
    pos, neg = jax.device_get(miner(x32, lab))
    given = [
        (a, p, n)
        for a in range(len(x))
        for p in np.flatnonzero(pos[a])
        for n in np.flatnonzero(neg[a])
    ]
    got = loss(x32, lab, pairs=(pos, neg))
    expected = ref_margin(pairs, 0.2, beta, 0.1, triplets=given)
    np.testing.assert_allclose(float(got), expected, rtol=1e-4, atol=1e-6)

    rng = np.random.default_rng(8)
    ref, ref_labels = rng.normal(size=(7, x.shape[1])), np.array([0, 1, 2, 3, 0, 1, 100])
    with_ref = Pairs(x, labels, mask, ref, ref_labels, np.ones(7, bool))
    given = [
        (a, p, n)
        for a in range(len(x))
        if mask[a]
        for p in range(7)
        if ref_labels[p] == labels[a]
        for n in range(7)
        if ref_labels[n] != labels[a]
    ]
    got = loss(x32, lab, reference_embeddings=ref, reference_labels=ref_labels)
    expected = ref_margin(with_ref, 0.2, beta, 0.1, triplets=given)
    np.testing.assert_allclose(float(got), expected, rtol=1e-4, atol=1e-6)
    assert expected > 0


def test_rejects_bad_beta_naming_it():
    x, labels, _ = labelled_batch("mixed")
    for beta in (0.0, -1.0, np.ones((2, 2)), np.array([1, 2]), "1.2"):
        with pytest.raises(ValueError, match="`beta`"):
            jm.margin_loss(x, labels, beta=beta)
    with pytest.raises(ValueError, match="`nu`"):
        jm.margin_loss(x, labels, nu=-0.1)
