"""The losses beyond the seeds against pytorch-metric-learning 2.9 (PML).

PML is not a dependency: these tests are marked ``torch`` and run in the
benchmark venv (``.venv-bench``, torch + PML), which ``make test`` creates and
runs them in; the main run deselects them (docs/testing.md).
Each check builds the PML loss with the settings the docstring names, feeds
both libraries the same float64 inputs and compares the values (rtol 1e-6).
The batches give every anchor a positive and a negative, the case where the
conventions of PML and jaxmetric coincide (see each docstring).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

try:
    import pytorch_metric_learning.losses as pml_losses
    import pytorch_metric_learning.miners as pml_miners
    import pytorch_metric_learning.reducers as pml_reducers
    import torch
except ModuleNotFoundError:  # .venv: deselected there (tests/conftest.py).
    pml_losses = pml_miners = pml_reducers = torch = None

import jax
import jax.numpy as jnp

import jaxmetric as jm

pytestmark = pytest.mark.torch

B, D, C = 12, 5, 3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, D))
    labels = np.arange(B) % C  # every anchor: 3 positives, 8 negatives
    weights = rng.normal(size=(C, D))
    return x, labels, weights


def _pml(loss, x, labels, indices_tuple=None):
    value = loss(torch.tensor(x), torch.tensor(labels), indices_tuple)
    return float(value.detach())


def _ours(fn, x, labels, *args, **kwargs):
    with jax.enable_x64(True):
        return float(fn(jnp.asarray(x), jnp.asarray(labels), *args, **kwargs))


def _with_params(loss, name, value):
    getattr(loss, name).data = torch.tensor(value)
    return loss


def _cases():
    x, labels, w = _data()
    tw = torch.tensor(w)
    miner = pml_miners.MultiSimilarityMiner(epsilon=0.1)
    mined = miner(torch.tensor(x), torch.tensor(labels))
    return {
        "supcon": (
            _pml(pml_losses.SupConLoss(temperature=0.2), x, labels),
            _ours(jm.supcon_loss, x, labels, temperature=0.2),
        ),
        "multi_similarity_no_miner": (
            _pml(pml_losses.MultiSimilarityLoss(alpha=2, beta=10, base=0.5), x, labels),
            _ours(jm.multi_similarity_loss, x, labels, beta=10.0, epsilon=None),
        ),
        "multi_similarity_with_miner": (
            _pml(pml_losses.MultiSimilarityLoss(alpha=2, beta=10, base=0.5), x, labels, mined),
            _ours(jm.multi_similarity_loss, x, labels, beta=10.0, epsilon=0.1),
        ),
        "circle": (
            _pml(pml_losses.CircleLoss(m=0.25, gamma=32), x, labels),
            _ours(jm.circle_loss, x, labels, m=0.25, gamma=32.0),
        ),
        "generalized_lifted_structure": (
            _pml(
                pml_losses.GeneralizedLiftedStructureLoss(neg_margin=1, pos_margin=0.1), x, labels
            ),
            _ours(jm.generalized_lifted_structure_loss, x, labels, pos_margin=0.1, neg_margin=1.0),
        ),
        "proxy_anchor": (
            _pml(
                _with_params(
                    pml_losses.ProxyAnchorLoss(C, D, margin=0.1, alpha=32), "proxies", w
                ).double(),
                x,
                labels,
            ),
            _ours(jm.proxy_anchor_loss, x, labels, jnp.asarray(w)),
        ),
        "proxy_nca": (
            _pml(
                _with_params(pml_losses.ProxyNCALoss(C, D, softmax_scale=3.0), "proxies", w),
                x,
                labels,
            ),
            _ours(jm.proxy_nca_loss, x, labels, jnp.asarray(w), temperature=1 / 3),
        ),
        "arcface": (
            _pml(
                _with_params(
                    pml_losses.ArcFaceLoss(C, D, margin=math.degrees(0.5), scale=16),
                    "W",
                    tw.T.numpy(),
                ),
                x,
                labels,
            ),
            _ours(jm.arcface_loss, x, labels, jnp.asarray(w), margin=0.5, scale=16.0),
        ),
        "cosface": (
            _pml(
                _with_params(
                    pml_losses.CosFaceLoss(C, D, margin=0.35, scale=16), "W", tw.T.numpy()
                ),
                x,
                labels,
            ),
            _ours(jm.cosface_loss, x, labels, jnp.asarray(w), margin=0.35, scale=16.0),
        ),
        "xbm_contrastive": _xbm_case(),
    }


def _xbm_case():
    """CrossBatchMemory(ContrastiveLoss()) at its second step == xbm_loss with batch 1 stored."""
    x1, labels1, _ = _data(1)
    x2, labels2, _ = _data(2)
    pml = pml_losses.CrossBatchMemory(pml_losses.ContrastiveLoss(), D, memory_size=2 * B)
    pml.embedding_memory = pml.embedding_memory.double()
    pml(torch.tensor(x1), torch.tensor(labels1))
    expected = float(pml(torch.tensor(x2), torch.tensor(labels2)).detach())
    with jax.enable_x64(True):
        memory = jm.init_queue(2 * B, D, dtype=jnp.float64)
        memory = jm.enqueue(memory, jnp.asarray(x1), jnp.asarray(labels1))
        ours = float(jm.xbm_loss(jnp.asarray(x2), jnp.asarray(labels2), memory, loss="contrastive"))
    return expected, ours


CASE_NAMES = (
    "supcon",
    "multi_similarity_no_miner",
    "multi_similarity_with_miner",
    "circle",
    "generalized_lifted_structure",
    "proxy_anchor",
    "proxy_nca",
    "arcface",
    "cosface",
    "xbm_contrastive",
)


def check_against_pml():
    results = _cases()
    assert set(results) == set(CASE_NAMES)
    for name, (expected, ours) in results.items():
        np.testing.assert_allclose(ours, expected, rtol=1e-6, err_msg=name)
        assert expected > 0, name
    return results


def test_losses_match_pml():
    check_against_pml()


# --- issue 15: sub-center ArcFace, normalised softmax, SoftTriple, the margin loss and the
# distance-weighted miner.


def _ours_jit(fn, x, labels, *args, **kwargs):
    """``_ours``, compiled once (not op by op)."""
    with jax.enable_x64(True):
        return float(jax.jit(functools.partial(fn, **kwargs))(x, labels, *args))


def test_class_center_losses_match_pml():
    x, labels, _ = _data(3)
    rng = np.random.default_rng(4)
    sub = rng.normal(size=(C * 3, D))  # 3 sub-centres per class, PML's W.T
    weights = rng.normal(size=(C, D))
    centers = rng.normal(size=(C * 4, D))  # 4 centres per class, PML's fc.T
    subcenter = pml_losses.SubCenterArcFaceLoss(
        num_classes=C, embedding_size=D, margin=math.degrees(0.5), scale=16, sub_centers=3
    )
    results = {
        "subcenter_arcface": (
            _pml(_with_params(subcenter, "W", sub.T.copy()), x, labels),
            _ours_jit(jm.subcenter_arcface_loss, x, labels, sub, sub_centers=3, scale=16.0),
        ),
        "normalized_softmax": (
            _pml(
                _with_params(
                    pml_losses.NormalizedSoftmaxLoss(C, D, temperature=0.1), "W", weights.T.copy()
                ),
                x,
                labels,
            ),
            _ours_jit(jm.normalized_softmax_loss, x, labels, weights, temperature=0.1),
        ),
        # PML's SoftTripleLoss has no centre regulariser: tau=0.
        "soft_triple": (
            _pml(
                _with_params(
                    pml_losses.SoftTripleLoss(
                        C, D, centers_per_class=4, la=20, gamma=0.1, margin=0.01
                    ),
                    "fc",
                    centers.T.copy(),
                ),
                x,
                labels,
            ),
            _ours_jit(jm.soft_triple_loss, x, labels, centers, centers_per_class=4, tau=0.0),
        ),
    }
    for name, (expected, ours) in results.items():
        np.testing.assert_allclose(ours, expected, rtol=1e-6, err_msg=name)
        assert expected > 0, name


def _pml_margin(x, labels, indices_tuple=None, beta=None, **kwargs):
    """PML's MarginLoss value and, with ``beta`` (learn_beta), the gradient reaching it."""
    loss = pml_losses.MarginLoss(**kwargs)
    if beta is not None:
        loss.beta = torch.nn.Parameter(torch.tensor(np.asarray(beta, np.float64).reshape(-1)))
    value = loss(torch.tensor(x), torch.tensor(labels), indices_tuple)
    if beta is None:
        return float(value.detach()), None
    value.backward()
    return float(value.detach()), loss.beta.grad.numpy().reshape(np.shape(beta))


def _ours_margin(x, labels, beta, **kwargs):
    with jax.enable_x64(True):
        value, grad = jax.jit(
            jax.value_and_grad(lambda b: jm.margin_loss(x, labels, beta=b, **kwargs))
        )(jnp.asarray(beta, jnp.float64))
        return float(value), np.asarray(grad)


def test_margin_loss_matches_pml():
    x, labels, _ = _data(5)
    class_beta = np.array([1.0, 1.15, 1.3])
    # The default: all triplets, fixed beta.
    expected, _ = _pml_margin(x, labels)
    ours = _ours_jit(jm.margin_loss, x, labels)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    # learn_beta: a scalar beta with its regulariser, and one beta per class.
    for beta, kwargs in (
        (1.0, dict(margin=0.1, nu=0.1)),
        (class_beta, dict(margin=0.2, nu=0.05, num_classes=C)),
    ):
        expected, expected_grad = _pml_margin(x, labels, beta=beta, learn_beta=True, **kwargs)
        kwargs.pop("num_classes", None)
        ours, grad = _ours_margin(x, labels, beta, **kwargs)
        np.testing.assert_allclose(ours, expected, rtol=1e-6, err_msg=str(beta))
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-12, err_msg=str(beta))
        assert np.abs(expected_grad).max() > 0
    # Mined pairs: PML's convert_to_triplets pairs every given positive and
    # negative pair of one anchor; the same masks as ``pairs=``.
    miner = pml_miners.MultiSimilarityMiner(epsilon=0.3)
    a1, p, a2, n = miner(torch.tensor(x), torch.tensor(labels))
    pos = np.zeros((B, B), bool)
    neg = np.zeros((B, B), bool)
    pos[a1.numpy(), p.numpy()] = True
    neg[a2.numpy(), n.numpy()] = True
    expected, _ = _pml_margin(x, labels, (a1, p, a2, n))
    ours = _ours_jit(jm.margin_loss, x, labels, pairs=(pos, neg))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    assert expected > 0


def _pml_distance_weights(monkeypatch, x, labels):
    """PML's DistanceWeightedMiner: the weights it samples negatives from, and its triplets."""
    from pytorch_metric_learning.miners import distance_weighted_miner as dwm

    seen = {}
    sample = dwm.lmu.get_random_triplet_indices

    def spy(labels, ref_labels=None, t_per_anchor=None, weights=None):
        seen["weights"] = weights.detach().numpy().copy()
        return sample(labels, ref_labels=ref_labels, t_per_anchor=t_per_anchor, weights=weights)

    monkeypatch.setattr(dwm.lmu, "get_random_triplet_indices", spy)
    miner = pml_miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)
    triplets = miner(torch.tensor(x), torch.tensor(labels))
    return np.nan_to_num(seen["weights"]), miner, triplets


def test_distance_weighted_miner_matches_pml(monkeypatch):
    """The sampling probabilities P(n | a) equal the weights PML samples from
    (captured from its call to ``get_random_triplet_indices``); PML's torch draws
    follow our probabilities (per anchor, within 5 binomial sigmas over 300
    calls); both give triplets to the same anchors, with positives of the
    anchor. The draws themselves (torch vs JAX RNG) are not compared; the loss
    on the same triplets is, fed to both."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(B, 8))
    labels = np.arange(B) % C
    weights, miner, (a, p, n) = _pml_distance_weights(monkeypatch, x, labels)
    with jax.enable_x64(True):
        miner_fn = functools.partial(jm.mining.distance_weighted_miner, return_probabilities=True)
        t, probs = jax.jit(miner_fn)(x, labels, jax.random.key(0))
        probs = np.asarray(probs)
        np.testing.assert_allclose(probs, weights, rtol=1e-6, atol=1e-12)
        assert (weights == 0).sum() > B * C  # the cut-off at 1.4 removes some negatives
        valid = np.asarray(t.valid).reshape(B, B)
        # The same triplets fed to both margin losses.
        ours = float(jax.jit(jm.margin_loss)(x, labels, triplets=t))
        mine = [np.asarray(v)[np.asarray(t.valid)] for v in (t.anchor, t.positive, t.negative)]
    expected, _ = _pml_margin(x, labels, tuple(torch.tensor(v) for v in mine))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    counts = np.zeros((B, B))
    torch.manual_seed(0)
    for _ in range(300):
        a, p, n = miner(torch.tensor(x), torch.tensor(labels))
        a, p, n = a.numpy(), p.numpy(), n.numpy()
        assert set(a) == set(np.flatnonzero(valid.any(axis=1)))
        assert valid[a, p].all()  # PML's positives: positives of the anchor
        np.add.at(counts, (a, n), 1)
    for i in np.flatnonzero(valid.any(axis=1)):
        total = counts[i].sum()
        sigma = np.sqrt(probs[i] * (1 - probs[i]) / total)
        assert (np.abs(counts[i] / total - probs[i]) <= 5 * sigma + 1e-3).all(), i


# --- Composition, as PML: mined pairs / triplets (indices_tuple), ref_emb, reducers -----


def _mined_pairs_as_masks(mined, shape):
    """PML's pair indices_tuple (a1, p, a2, n) as our (positive_mask, negative_mask)."""
    a1, p, a2, n = (t.numpy() for t in mined)
    pos, neg = np.zeros(shape, bool), np.zeros(shape, bool)
    pos[a1, p], neg[a2, n] = True, True
    return pos, neg


def _mined_triplets_as_triplets(mined, size):
    """PML's triplet indices_tuple (a, p, n) as fixed-size Triplets with validity."""
    a, p, n = (t.numpy() for t in mined)
    assert len(a) <= size

    def pad(v):
        return np.concatenate([v, np.zeros(size - len(v), v.dtype)]).astype(np.int32)

    return jm.mining.Triplets(pad(a), pad(p), pad(n), np.arange(size) < len(a))


def _ours_x64(fn, x, labels, **kwargs):
    """``fn`` in float64 with every array argument (and tuple of arrays) converted."""

    def convert(v):
        if isinstance(v, tuple) and hasattr(v, "_fields"):  # Triplets
            return type(v)(*map(convert, v))
        if isinstance(v, tuple):
            return tuple(map(convert, v))
        return jnp.asarray(v) if isinstance(v, np.ndarray) else v

    with jax.enable_x64(True):
        out = fn(jnp.asarray(x), jnp.asarray(labels), **{k: convert(v) for k, v in kwargs.items()})
        return jax.tree.map(np.asarray, out)


def _composition_cases():
    x, labels, _ = _data()
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(9, D))
    ref_labels = np.arange(9) % C  # every query has positives and negatives in it
    tx, ty, tr, tr_labels = map(torch.tensor, (x, labels, ref, ref_labels))
    ref_kw = {"reference_embeddings": ref, "reference_labels": ref_labels}
    pml_ref = {"ref_emb": tr, "ref_labels": tr_labels}

    def pml(loss, indices_tuple=None, **kw):
        return float(loss(tx, ty, indices_tuple, **kw).detach())

    def ours(fn, **kw):
        return float(_ours_x64(fn, x, labels, **kw))

    # Mined pairs: PML's MultiSimilarityMiner and ours give the same masks.
    ms_mined = pml_miners.MultiSimilarityMiner(epsilon=0.1)(tx, ty)
    pairs = _ours_x64(jm.mining.multi_similarity_miner, x, labels, epsilon=0.1)
    for got, expected in zip(pairs, _mined_pairs_as_masks(ms_mined, (B, B)), strict=True):
        np.testing.assert_array_equal(got, expected)
    ms_ref_mined = pml_miners.MultiSimilarityMiner(epsilon=0.1)(tx, ty, tr, tr_labels)
    ref_pairs = _ours_x64(jm.mining.multi_similarity_miner, x, labels, epsilon=0.1, **ref_kw)
    for got, expected in zip(ref_pairs, _mined_pairs_as_masks(ms_ref_mined, (B, 9)), strict=True):
        np.testing.assert_array_equal(got, expected)
    # Mined triplets: the same triplets, in the same order.
    semi = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")(tx, ty)
    our_semi = _ours_x64(
        jm.mining.triplet_margin_miner, x, labels, margin=0.2, type_of_triplets="semihard"
    )
    count = int(our_semi.valid.sum())
    assert count == len(semi[0]) > 0
    for got, expected in zip(our_semi[:3], semi, strict=True):
        np.testing.assert_array_equal(got[:count], expected.numpy())
    hard = pml_miners.BatchHardMiner()(tx, ty)
    ms = pml_losses.MultiSimilarityLoss(alpha=2, beta=10, base=0.5)
    return {
        # Pair losses on mined pairs (PML: indices_tuple; ours: pairs=).
        "contrastive_mined": (
            pml(pml_losses.ContrastiveLoss(), ms_mined),
            ours(jm.contrastive_loss, pairs=pairs),
        ),
        "multi_similarity_mined": (
            pml(ms, ms_mined),
            ours(jm.multi_similarity_loss, beta=10.0, epsilon=None, pairs=pairs),
        ),
        "circle_mined": (
            pml(pml_losses.CircleLoss(m=0.25, gamma=32), ms_mined),
            ours(jm.circle_loss, m=0.25, gamma=32.0, pairs=pairs),
        ),
        "lifted_structure": (
            pml(pml_losses.LiftedStructureLoss()),
            ours(jm.lifted_structure_loss),
        ),
        "lifted_structure_margins_mined": (
            pml(pml_losses.LiftedStructureLoss(neg_margin=1.2, pos_margin=0.1), ms_mined),
            ours(jm.lifted_structure_loss, pos_margin=0.1, neg_margin=1.2, pairs=pairs),
        ),
        # Triplet losses on mined triplets (PML's indices, and our miners').
        "triplet_semihard_pml_indices": (
            pml(pml_losses.TripletMarginLoss(margin=0.1), semi),
            ours(
                jm.triplet_margin_loss,
                margin=0.1,
                triplets=_mined_triplets_as_triplets(semi, 2 * len(semi[0])),
            ),
        ),
        "triplet_semihard_miner": (
            pml(pml_losses.TripletMarginLoss(margin=0.1), semi),
            ours(jm.triplet_margin_loss, margin=0.1, triplets=our_semi),
        ),
        "triplet_batch_hard_miner": (
            pml(pml_losses.TripletMarginLoss(margin=0.2), hard),
            ours(
                jm.triplet_margin_loss,
                margin=0.2,
                triplets=_ours_x64(jm.mining.batch_hard_miner, x, labels),
            ),
        ),
        # Queries against a reference set (PML: ref_emb, ref_labels).
        "contrastive_ref": (
            pml(pml_losses.ContrastiveLoss(), **pml_ref),
            ours(jm.contrastive_loss, **ref_kw),
        ),
        "contrastive_ref_mined": (
            pml(pml_losses.ContrastiveLoss(), ms_ref_mined, **pml_ref),
            ours(jm.contrastive_loss, pairs=ref_pairs, **ref_kw),
        ),
        "triplet_ref": (
            pml(pml_losses.TripletMarginLoss(margin=0.2), **pml_ref),
            ours(jm.triplet_margin_loss, margin=0.2, **ref_kw),
        ),
        "multi_similarity_ref": (
            pml(ms, **pml_ref),
            ours(jm.multi_similarity_loss, beta=10.0, epsilon=None, **ref_kw),
        ),
        "circle_ref": (
            pml(pml_losses.CircleLoss(m=0.25, gamma=32), **pml_ref),
            ours(jm.circle_loss, m=0.25, gamma=32.0, **ref_kw),
        ),
        "generalized_lifted_ref": (
            pml(pml_losses.GeneralizedLiftedStructureLoss(neg_margin=1, pos_margin=0.1), **pml_ref),
            ours(jm.generalized_lifted_structure_loss, pos_margin=0.1, **ref_kw),
        ),
        # PML's reducers: MeanReducer, SumReducer, AvgNonZeroReducer, ThresholdReducer.
        "contrastive_mean": (
            pml(pml_losses.ContrastiveLoss(reducer=pml_reducers.MeanReducer())),
            ours(jm.contrastive_loss, reduction="mean"),
        ),
        "contrastive_sum": (
            pml(pml_losses.ContrastiveLoss(reducer=pml_reducers.SumReducer())),
            ours(jm.contrastive_loss, reduction="sum"),
        ),
        "contrastive_threshold": (
            pml(
                pml_losses.ContrastiveLoss(
                    reducer=pml_reducers.ThresholdReducer(low=0.05, high=0.6)
                )
            ),
            ours(jm.contrastive_loss, reduction="threshold", reduction_threshold=(0.05, 0.6)),
        ),
        "triplet_mean": (
            pml(pml_losses.TripletMarginLoss(margin=0.2, reducer=pml_reducers.MeanReducer())),
            ours(jm.triplet_margin_loss, margin=0.2, reduction="mean"),
        ),
        "triplet_threshold_low": (
            pml(
                pml_losses.TripletMarginLoss(
                    margin=0.2, reducer=pml_reducers.ThresholdReducer(low=0.1)
                )
            ),
            ours(
                jm.triplet_margin_loss,
                margin=0.2,
                reduction="threshold",
                reduction_threshold=(0.1, None),
            ),
        ),
        "multi_similarity_sum": (
            pml(
                pml_losses.MultiSimilarityLoss(
                    alpha=2, beta=10, base=0.5, reducer=pml_reducers.SumReducer()
                )
            ),
            ours(jm.multi_similarity_loss, beta=10.0, epsilon=None, reduction="sum"),
        ),
        "circle_threshold_high": (
            pml(
                pml_losses.CircleLoss(
                    m=0.25, gamma=32, reducer=pml_reducers.ThresholdReducer(high=90.0)
                )
            ),
            ours(
                jm.circle_loss,
                m=0.25,
                gamma=32.0,
                reduction="threshold",
                reduction_threshold=(None, 90.0),
            ),
        ),
        "lifted_structure_avg_nonzero": (
            pml(pml_losses.LiftedStructureLoss(reducer=pml_reducers.AvgNonZeroReducer())),
            ours(jm.lifted_structure_loss, reduction="mean_nonzero"),
        ),
        "generalized_lifted_sum": (
            pml(
                pml_losses.GeneralizedLiftedStructureLoss(reducer=pml_reducers.SumReducer()),
            ),
            ours(jm.generalized_lifted_structure_loss, reduction="sum"),
        ),
    }


def test_composition_matches_pml():
    """Mined pairs and triplets as indices_tuple, ref_emb, and the reducers."""
    for name, (expected, got) in _composition_cases().items():
        np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=name)
        assert expected > 0, name


if __name__ == "__main__":  # .venv-bench/bin/python tests/losses/test_pml_parity.py
    for name, (expected, ours) in check_against_pml().items():
        print(f"ok: {name}: PML {expected:.8f}, jaxmetric {ours:.8f}")
