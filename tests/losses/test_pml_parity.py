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

import math

import numpy as np
import pytest

try:
    import pytorch_metric_learning.losses as pml_losses
    import pytorch_metric_learning.miners as pml_miners
    import torch
except ModuleNotFoundError:  # .venv: deselected there (tests/conftest.py).
    pml_losses = pml_miners = torch = None

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
            _ours(
                jm.generalized_lifted_structure_loss, x, labels, pos_margin=0.1, neg_margin=1.0
            ),
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


if __name__ == "__main__":  # .venv-bench/bin/python tests/losses/test_pml_parity.py
    for name, (expected, ours) in check_against_pml().items():
        print(f"ok: {name}: PML {expected:.8f}, jaxmetric {ours:.8f}")
