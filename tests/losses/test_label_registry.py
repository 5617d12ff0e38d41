"""LABEL_LOSSES names every label-based loss, and xbm_loss runs each of them."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmetric as jm
from jaxmetric import losses

B, D, K = 8, 4, 6
# Execution flags of a public function that are not hyper-parameters of its spec.
_FLAGS = {"ntxent_loss": {"ring"}}
# The batch's inputs beyond the rows (``_common.label_loss``'s keywords): not
# hyper-parameters either.
_INPUTS = {"pairs", "triplets", "reference_embeddings", "reference_labels", "reference_mask"}


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, D)), jnp.float32)
    labels = jnp.asarray([0, 0, 1, 1, 2, 2, 3, 0])
    mask = jnp.asarray([True] * 7 + [False])
    return x, labels, mask


def _memory(seed=1):
    rng = np.random.default_rng(seed)
    return jm.MemoryQueue(
        embeddings=jnp.asarray(rng.normal(size=(K, D)), jnp.float32),
        labels=jnp.asarray([0, 1, 2, 3, 1, 0]),
        valid=jnp.asarray([True, True, True, False, True, True]),
        pointer=jnp.zeros((), jnp.int32),
    )


def test_registry_holds_every_label_based_loss():
    labelled = set()
    for name in losses.__all__:
        params = list(inspect.signature(getattr(losses, name)).parameters)
        if params[:2] == ["embeddings", "labels"] and len(params) > 2:
            third = inspect.signature(getattr(losses, name)).parameters[params[2]]
            if third.kind is inspect.Parameter.KEYWORD_ONLY:
                labelled.add(name)
    assert set(losses.LABEL_LOSSES) == labelled
    for name, spec in losses.LABEL_LOSSES.items():
        assert spec.name == name and spec.loss is getattr(jm, name)
        keywords = {
            p.name
            for p in inspect.signature(spec.loss).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        expected = keywords - {"mask", "axis_name"} - _FLAGS.get(name, set()) - _INPUTS
        assert set(spec.hyper_params) == expected, name


@pytest.mark.parametrize("name", sorted(losses.LABEL_LOSSES))
def test_xbm_with_an_empty_memory_is_the_plain_loss(name):
    x, labels, mask = _batch()
    empty = jm.init_queue(K, D)

    @jax.jit
    def both(x):
        plain = getattr(jm, name)(x, labels, mask=mask)
        short = jm.xbm_loss(x, labels, empty, loss=name.removesuffix("_loss"), mask=mask)
        return plain, short, jm.xbm_loss(x, labels, empty, loss=name, mask=mask)

    plain, short, full = both(x)
    np.testing.assert_allclose(float(short), float(plain), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(full), float(plain), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(losses.LABEL_LOSSES))
def test_xbm_uses_the_memory_and_gives_it_no_gradient(name):
    x, labels, mask = _batch()
    memory = _memory()

    def loss(x, mem):
        return jm.xbm_loss(x, labels, memory.replace(embeddings=mem), loss=name, mask=mask)

    value, (dx, dmem) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, memory.embeddings)
    assert np.isfinite(float(value)) and np.isfinite(np.asarray(dx)).all()
    assert not np.asarray(dmem).any()
    plain = jm.xbm_loss(x, labels, jm.init_queue(K, D), loss=name, mask=mask)
    assert abs(float(value) - float(plain)) > 1e-4, "the memory changes nothing"


@pytest.mark.parametrize("mining", ["all", "hard", "semi_hard", "batch_hard", "facenet_semi_hard"])
def test_xbm_triplet_mining_reduces_its_terms(mining):
    # The sorted-sum shortcut ("all", "hard", "semi_hard") equals the sum of the terms.
    x, labels, mask = _batch()
    kwargs = dict(loss="triplet_margin", mining=mining, margin=0.5, mask=mask)
    total = jm.xbm_loss(x, labels, _memory(), reduction="sum", **kwargs)
    terms = jm.xbm_loss(x, labels, _memory(), reduction="none", **kwargs)
    np.testing.assert_allclose(float(total), float(jnp.sum(terms)), rtol=1e-5)


def test_xbm_ntxent_tiles_equal_its_dense_terms():
    x, labels, mask = _batch()
    dense = jm.xbm_loss(x, labels, _memory(), loss="ntxent", mask=mask, temperature=0.5)
    tiled = jm.xbm_loss(
        x, labels, _memory(), loss="ntxent", mask=mask, temperature=0.5, block_size=3
    )
    np.testing.assert_allclose(float(tiled), float(dense), rtol=1e-5)


def test_spec_resolve_fills_defaults_and_checks():
    spec = losses.LABEL_LOSSES["contrastive_loss"]
    assert spec.resolve({"neg_margin": 0.5})["neg_margin"] == 0.5
    assert spec.resolve({})["metric"] == "euclidean"
    with pytest.raises(ValueError, match="Unknown hyper-parameter `temperature`"):
        spec.resolve({"temperature": 0.1})
    with pytest.raises(ValueError, match="`neg_margin` must be >= 0"):
        spec.resolve({"neg_margin": -1.0})
    with pytest.raises(ValueError, match="Unknown `loss` 'npair'"):
        jm.xbm_loss(*_batch()[:2], _memory(), loss="npair")
