"""Sharded == single device for the losses beyond the seeds (shard_map and pmap).

On 8 simulated CPU devices each loss is called with ``axis_name="data"`` on
the local shard. It must return, on every device, the value of the
single-device loss on the concatenated batch, and the gradient reaching the
replicated parameters (a small model, and the proxies / class weights / the
model feeding the XBM memory) must equal the single-device gradient: under
shard_map with no collective on the gradient, under pmap after the usual
pmean.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxmetric as jm

NUM_DEVICES = 8
LOCAL = 4
GLOBAL = NUM_DEVICES * LOCAL
IN_DIM, EMB_DIM = 6, 5
NUM_CLASSES = GLOBAL // 2
MEMORY = 16
ATOL = 1e-5


def _mesh():
    return jax.make_mesh((NUM_DEVICES,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _embed(params, x):
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


def _label(loss_fn, **kwargs):
    def fn(params, x, labels, mask, memory, axis_name):
        del memory
        return loss_fn(_embed(params, x), labels, mask=mask, axis_name=axis_name, **kwargs)

    return fn


def _class(loss_fn, **kwargs):
    def fn(params, x, labels, mask, memory, axis_name):
        del memory
        return loss_fn(
            _embed(params, x), labels, params["classes"], mask=mask, axis_name=axis_name, **kwargs
        )

    return fn


def _xbm(loss, **kwargs):
    def fn(params, x, labels, mask, memory, axis_name):
        # The memory is produced from the replicated params (no gradient may
        # reach them through it), with labels shared with the batch.
        emb, mem_labels, valid = memory
        queue = jm.MemoryQueue(
            embeddings=_embed(params, emb),
            labels=mem_labels,
            valid=valid,
            pointer=jnp.zeros((), jnp.int32),
        )
        return jm.xbm_loss(
            _embed(params, x), labels, queue, loss=loss, mask=mask, axis_name=axis_name, **kwargs
        )

    return fn


CASES = {
    "supcon": _label(jm.supcon_loss, temperature=0.2),
    "multi_similarity": _label(jm.multi_similarity_loss, beta=10.0, epsilon=0.3),
    "multi_similarity_nomine": _label(jm.multi_similarity_loss, epsilon=None),
    "circle": _label(jm.circle_loss, gamma=16.0),
    "lifted": _label(jm.lifted_structure_loss),
    "snn": _label(jm.soft_nearest_neighbor_loss, temperature=0.5),
    "proxy_anchor": _class(jm.proxy_anchor_loss, alpha=8.0),
    "proxy_nca": _class(jm.proxy_nca_loss, temperature=0.3),
    "arcface": _class(jm.arcface_loss, scale=8.0),
    "cosface": _class(jm.cosface_loss, scale=8.0),
    "xbm_contrastive": _xbm("contrastive"),
    "xbm_multi_similarity": _xbm("multi_similarity", epsilon=0.3),
}


def _data(seed, masked):
    rng = np.random.default_rng(seed)
    params = {
        "w1": jnp.asarray(rng.normal(size=(IN_DIM, 8)) / np.sqrt(IN_DIM), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(8, EMB_DIM)) / np.sqrt(8), jnp.float32),
        "classes": jnp.asarray(rng.normal(size=(NUM_CLASSES, EMB_DIM)), jnp.float32),
    }
    x = jnp.asarray(rng.normal(size=(GLOBAL, IN_DIM)), jnp.float32)
    # Classes of two on different devices: every positive lives elsewhere.
    labels = jnp.asarray(np.arange(GLOBAL) % NUM_CLASSES, jnp.int32)
    mask = np.ones(GLOBAL, bool)
    if masked:
        mask[rng.choice(GLOBAL, size=5, replace=False)] = False
    memory = (
        jnp.asarray(rng.normal(size=(MEMORY, IN_DIM)), jnp.float32),
        jnp.asarray(rng.integers(0, NUM_CLASSES, size=MEMORY), jnp.int32),
        jnp.asarray(rng.random(MEMORY) > 0.25),
    )
    return params, x, labels, jnp.asarray(mask), memory


@functools.cache
def _single(case):
    fn = CASES[case]
    return jax.jit(
        jax.value_and_grad(lambda p, x, labels, mask, memory: fn(p, x, labels, mask, memory, None))
    )


@functools.cache
def _shard_map(case):
    fn = CASES[case]

    def step(p, x, labels, mask, memory):
        value, grads = jax.value_and_grad(lambda p: fn(p, x, labels, mask, memory, "data"))(p)
        expand = functools.partial(jax.tree.map, lambda a: a[None])
        return value[None], expand(grads)

    return jax.jit(
        jax.shard_map(
            step,
            mesh=_mesh(),
            in_specs=(P(), P("data"), P("data"), P("data"), P()),
            out_specs=(P("data"), P("data")),
        )
    )


@functools.cache
def _pmap(case):
    fn = CASES[case]

    def step(p, x, labels, mask, memory):
        value, grads = jax.value_and_grad(lambda p: fn(p, x, labels, mask, memory, "data"))(p)
        return value, jax.lax.pmean(grads, "data")

    return jax.pmap(step, axis_name="data", in_axes=(None, 0, 0, 0, None))


def _split(a):
    return a.reshape(NUM_DEVICES, -1, *a.shape[1:])


@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_sharded_equals_single_device(case, masked):
    assert len(jax.devices()) == NUM_DEVICES
    params, x, labels, mask, memory = _data(seed=len(case) + masked, masked=masked)
    value, grads = _single(case)(params, x, labels, mask, memory)
    assert float(value) > 0
    results = {
        "shard_map": _shard_map(case)(params, x, labels, mask, memory),
        "pmap": _pmap(case)(params, _split(x), _split(labels), _split(mask), memory),
    }
    for mapper, (values, sharded_grads) in results.items():
        np.testing.assert_allclose(
            np.asarray(values), np.full(NUM_DEVICES, value), rtol=1e-5, atol=ATOL, err_msg=mapper
        )
        for name in grads:
            expected = np.broadcast_to(np.asarray(grads[name]), sharded_grads[name].shape)
            if name != "classes" or case.startswith(("proxy", "arc", "cos")):
                assert np.abs(expected).max() > 1e-4, name
            np.testing.assert_allclose(
                np.asarray(sharded_grads[name]),
                expected,
                rtol=0,
                atol=ATOL,
                err_msg=f"{mapper} {name}",
            )


def test_multi_similarity_miner_sees_other_devices():
    """The miner's hardest negative must be found wherever it lives.

    Each anchor's most similar negative is planted on the next device; a
    per-device miner would keep other pairs and give another value.
    """
    rng = np.random.default_rng(0)
    base = rng.normal(size=(GLOBAL, EMB_DIM))
    labels = np.arange(GLOBAL) % NUM_CLASSES
    emb = base.copy()
    for i in range(GLOBAL):
        j = (i + LOCAL) % GLOBAL
        if labels[j] != labels[i]:
            emb[j] = base[i] + 0.05 * rng.normal(size=EMB_DIM)
    emb, labels = jnp.asarray(emb, jnp.float32), jnp.asarray(labels, jnp.int32)
    loss = functools.partial(jm.multi_similarity_loss, epsilon=0.1)
    expected = loss(emb, labels)
    per_device = np.mean(jax.vmap(loss)(_split(emb), _split(labels)))
    assert abs(per_device - float(expected)) > 1e-3
    sharded = jax.jit(
        jax.shard_map(
            lambda e, y: loss(e, y, axis_name="data")[None],
            mesh=_mesh(),
            in_specs=(P("data"), P("data")),
            out_specs=P("data"),
        )
    )(emb, labels)
    np.testing.assert_allclose(np.asarray(sharded), float(expected), rtol=1e-5, atol=ATOL)
