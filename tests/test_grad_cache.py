"""jaxmetric.chunked_value_and_grad (gradient caching) against plain value_and_grad.

Every reference is ``jax.value_and_grad`` of the same loss of the same small
MLP (a plain dict of parameters and a pure function) on the whole batch: on
one device, and on the 8 simulated CPU devices of tests/conftest.py under
``jax.shard_map`` (the gradient returned with ``out_specs=P()``, so it must
be typed replicated, with no collective added) and ``jax.pmap`` (the
gradient ``pmean``-ed, as the library's convention). With a BatchNorm-like
statistic (the per-chunk batch mean, the aux output) the reference is the
plain gradient of the model whose statistic is computed over the same chunks.
"""

from __future__ import annotations

import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxmetric as jm
from tests.harness import NUM_DEVICES, mesh

IN_DIM, HIDDEN, EMB_DIM = 6, 16, 5
BATCH, CHUNK = 32, 8  # one device: 4 chunks
LOCAL = 8  # sharded: 8 devices x 8 rows = 64, chunks of 2 (4 per device)
GLOBAL, SHARD_CHUNK = NUM_DEVICES * LOCAL, 2
LOSS_RTOL, GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-4, 1e-7


def mlp(params: dict, x: jax.Array) -> jax.Array:
    """[..., IN_DIM] -> [..., EMB_DIM]: dense, tanh, dense."""
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


def make_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "w1": jnp.asarray(rng.normal(size=(IN_DIM, HIDDEN)) / np.sqrt(IN_DIM), jnp.float32),
        "b1": jnp.asarray(0.1 * rng.normal(size=HIDDEN), jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(HIDDEN, EMB_DIM)) / np.sqrt(HIDDEN), jnp.float32),
    }


def make_batch(batch: int, seed: int = 1):
    """Two correlated views [batch, 2, IN_DIM] and labels [batch] (classes of 4
    rows, spread so that positives sit on other devices)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=(batch, IN_DIM))
    x2 = x1 + 0.3 * rng.normal(size=x1.shape)
    views = jnp.asarray(np.stack([x1, x2], axis=1), jnp.float32)
    labels = jnp.asarray(np.arange(batch) % (batch // 4), jnp.int32)
    return views, labels


# A case: (inputs from (views, labels), embed_fn, loss_fn(embeddings, labels, axis_name)).
def _simclr_inputs(views):  # a pytree of two arrays
    return {"view1": views[:, 0], "view2": views[:, 1]}


def _simclr_embed(params, x):
    return mlp(params, x["view1"]), mlp(params, x["view2"])


def _simclr_loss(z, labels, axis_name):
    del labels
    return jm.simclr_loss(z[0], z[1], temperature=0.5, axis_name=axis_name)


def _supcon_inputs(views):  # one array, the first view
    return views[:, 0]


def _supcon_loss(z, labels, axis_name):
    return jm.supcon_loss(z, labels, temperature=0.5, axis_name=axis_name)


def _barlow_inputs(views):  # one [B, 2, IN_DIM] array, embeddings [B, 2, EMB_DIM]
    return views


def _barlow_loss(z, labels, axis_name):
    del labels
    return jm.barlow_twins_loss(z[:, 0], z[:, 1], lambda_offdiag=0.05, axis_name=axis_name)


CASES = {
    "simclr": (_simclr_inputs, _simclr_embed, _simclr_loss),
    "supcon": (_supcon_inputs, mlp, _supcon_loss),
    "barlow_twins": (_barlow_inputs, mlp, _barlow_loss),
}


@functools.cache
def _plain(name: str):
    _, embed, loss = CASES[name]
    return jax.jit(jax.value_and_grad(lambda p, x, y: loss(embed(p, x), y, None)))


@functools.cache
def _chunked(name: str, chunk_size: int, unroll=1):
    _, embed, loss = CASES[name]
    fn = jm.chunked_value_and_grad(
        embed, lambda z, y: loss(z, y, None), chunk_size=chunk_size, unroll=unroll
    )
    return jax.jit(fn)


@functools.cache
def _chunked_mapped(name: str, mapper: str, unroll=1):
    _, embed, loss = CASES[name]
    fn = jm.chunked_value_and_grad(
        embed, lambda z, y: loss(z, y, "data"), chunk_size=SHARD_CHUNK, unroll=unroll
    )
    if mapper == "shard_map":
        # out_specs=P(): the loss and the gradient must be typed replicated
        # (check_vma=True), with no collective added here.
        return jax.jit(
            jax.shard_map(
                fn, mesh=mesh(), in_specs=(P(), P("data"), P("data")), out_specs=(P(), P())
            )
        )

    def step(p, x, y):
        value, grads = fn(p, x, y)
        return value, jax.lax.pmean(grads, "data")

    pmapped = jax.pmap(step, axis_name="data", in_axes=(None, 0, 0))

    def split(a):
        return a.reshape(NUM_DEVICES, -1, *a.shape[1:])

    return lambda p, x, y: pmapped(p, jax.tree.map(split, x), split(y))


def _assert_equal(value, grads, ref_value, ref_grads):
    assert float(ref_value) > 0
    np.testing.assert_allclose(np.asarray(value), float(ref_value), rtol=LOSS_RTOL)
    for name, ref in ref_grads.items():
        ref = np.asarray(ref)
        assert np.abs(ref).max() > 1e-4, name  # a case that could not fail is useless
        got = np.asarray(grads[name])
        np.testing.assert_allclose(
            got, np.broadcast_to(ref, got.shape), rtol=GRAD_RTOL, atol=GRAD_ATOL, err_msg=name
        )


@pytest.mark.parametrize("unroll", [1, True], ids=["rolled", "unrolled"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_plain_value_and_grad_on_one_device(name, unroll):
    params = make_params()
    views, labels = make_batch(BATCH)
    inputs = CASES[name][0](views)
    ref_value, ref_grads = _plain(name)(params, inputs, labels)
    value, grads = _chunked(name, CHUNK, unroll)(params, inputs, labels)
    _assert_equal(value, grads, ref_value, ref_grads)
    assert jax.tree.map(lambda g: g.dtype, grads) == jax.tree.map(lambda p: p.dtype, params)


SHARDED = [(name, mapper, 1) for name in sorted(CASES) for mapper in ("shard_map", "pmap")]
SHARDED += [("simclr", "shard_map", True), ("simclr", "pmap", True)]


@pytest.mark.parametrize(("name", "mapper", "unroll"), SHARDED)
def test_sharded_equals_single_device_plain_value_and_grad(name, mapper, unroll):
    assert len(jax.devices()) == NUM_DEVICES
    params = make_params(2)
    views, labels = make_batch(GLOBAL, seed=3)
    inputs = CASES[name][0](views)
    ref_value, ref_grads = _plain(name)(params, inputs, labels)
    value, grads = _chunked_mapped(name, mapper, unroll)(params, inputs, labels)
    if mapper == "pmap":  # one value and one gradient per device, all equal
        assert np.shape(value) == (NUM_DEVICES,)
    _assert_equal(value, grads, ref_value, ref_grads)


def _psums(jaxpr, in_loop=False):
    """(in a loop body, operand shape) of every psum in ``jaxpr`` and its sub-jaxprs."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name.startswith("psum"):
            out += [(in_loop, tuple(v.aval.shape)) for v in eqn.invars]
        loop = in_loop or eqn.primitive.name in ("scan", "while")
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            out += _psums(sub, loop)
    return out


def test_shard_map_reduces_the_gradient_once_after_the_chunks():
    # A replicated parameter used by every chunk would get a psum per chunk
    # (the transpose of its implicit broadcast to varying); the gradient is
    # instead accumulated locally and reduced once, like the plain gradient.
    fn = jm.chunked_value_and_grad(
        mlp, lambda z, y: _supcon_loss(z, y, "data"), chunk_size=SHARD_CHUNK
    )
    mapped = jax.shard_map(
        fn, mesh=mesh(), in_specs=(P(), P("data"), P("data")), out_specs=(P(), P())
    )
    params = make_params()
    views, labels = make_batch(GLOBAL)
    psums = _psums(jax.make_jaxpr(mapped)(params, views[:, 0], labels).jaxpr)
    assert not [shape for in_loop, shape in psums if in_loop]
    param_shapes = sorted(tuple(p.shape) for p in params.values())
    assert sorted(shape for _, shape in psums if shape in param_shapes) == param_shapes


def test_one_chunk_of_the_whole_batch_is_the_plain_computation():
    params = make_params(4)
    views, labels = make_batch(BATCH, seed=5)
    inputs = _simclr_inputs(views)
    ref_value, ref_grads = _plain("simclr")(params, inputs, labels)
    value, grads = _chunked("simclr", BATCH)(params, inputs, labels)
    _assert_equal(value, grads, ref_value, ref_grads)


def test_without_jit_and_with_a_closure_over_the_labels():
    params = make_params(6)
    views, labels = make_batch(BATCH, seed=7)
    fn = jm.chunked_value_and_grad(
        mlp, lambda z: jm.supcon_loss(z, labels, temperature=0.5), chunk_size=4
    )
    value, grads = fn(params, views[:, 0])
    ref_value, ref_grads = _plain("supcon")(params, views[:, 0], labels)
    _assert_equal(value, grads, ref_value, ref_grads)


@pytest.mark.parametrize("unroll", [1, True], ids=["rolled", "unrolled"])
def test_unrolled_chunks_keep_integer_and_boolean_inputs_exact(unroll):
    # Unrolled, each chunk's inputs are tied to the previous chunk by an
    # exact zero: uint8 images and a bool mask must pass unchanged.
    rng = np.random.default_rng(12)
    images = jnp.asarray(rng.integers(0, 256, size=(BATCH, IN_DIM)), jnp.uint8)
    keep = jnp.asarray(rng.random((BATCH, IN_DIM)) > 0.2)
    inputs = {"images": images, "keep": keep}

    def embed(p, x):
        return mlp(p, jnp.where(x["keep"], x["images"].astype(jnp.float32) / 255.0, -1.0))

    def loss(z):
        return jm.supcon_loss(z, jnp.arange(BATCH) % 8, temperature=0.5)

    params = make_params(13)
    ref_value, ref_grads = jax.value_and_grad(lambda p: loss(embed(p, inputs)))(params)
    fn = jm.chunked_value_and_grad(embed, loss, chunk_size=CHUNK, unroll=unroll)
    value, grads = jax.jit(fn)(params, inputs)
    _assert_equal(value, grads, ref_value, ref_grads)


def _wide_mlp(params, x):
    for name in sorted(params):
        x = jnp.tanh(x @ params[name])
    return x


@pytest.mark.parametrize("unroll", [1, True], ids=["rolled", "unrolled"])
def test_chunks_bound_the_compiled_temporary_memory(unroll):
    # XLA's buffer assignment: 8 chunks of an activation-heavy MLP need a
    # fraction of the plain step's temporaries. Unrolled, this fails if a
    # chunk's re-run is merged (CSE) with its first forward pass or if the
    # chunks overlap.
    rng = np.random.default_rng(14)
    dims = (64, 512, 512, 512, 32)
    params = {
        f"w{i}": jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32)
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True))
    }
    x = jnp.asarray(rng.normal(size=(1024, dims[0])), jnp.float32)

    def loss(z):
        return jm.ntxent_loss(z, jnp.arange(1024) % 64, temperature=0.5, block_size=128)

    def temp_bytes(fn):
        compiled = jax.jit(fn).lower(params, x).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain = temp_bytes(jax.value_and_grad(lambda p, x: loss(_wide_mlp(p, x))))
    chunked = temp_bytes(jm.chunked_value_and_grad(_wide_mlp, loss, chunk_size=128, unroll=unroll))
    assert plain > 4 * 1024 * 512 * 4  # the activations of the plain step are there
    assert chunked < 0.4 * plain, (chunked, plain)


# ----------------------------------------------------------------------------
# has_aux: a BatchNorm-like statistic per chunk.
# ----------------------------------------------------------------------------


def _bn_embed(params, x, axis_name=None):
    """Centres the hidden layer with its mean over the chunk (over the chunks
    of all devices under ``axis_name``), as BatchNorm in training mode does;
    that mean is the aux output."""
    h = x @ params["w1"]
    mean = jnp.mean(h, axis=0)
    if axis_name is not None:
        mean = jax.lax.pmean(mean, axis_name)
    z = jnp.tanh(h - mean + params["b1"]) @ params["w2"]
    return z, {"mean": mean}


def _bn_loss(z, labels, axis_name=None):
    return jm.supcon_loss(z, labels, temperature=0.5, axis_name=axis_name)


def _plain_over_chunks(params, x, labels, num_devices, chunk_size):
    """Plain autodiff of the model whose statistic sees chunk k of every device:
    rows [d * L + k * c, d * L + (k + 1) * c) of device d, for all d."""
    xs = x.reshape(num_devices, -1, chunk_size, IN_DIM)  # [D, K, c, IN]
    num_chunks = xs.shape[1]
    z = jnp.zeros((num_devices, num_chunks, chunk_size, EMB_DIM))
    means = []
    for k in range(num_chunks):
        zk, aux = _bn_embed(params, xs[:, k].reshape(-1, IN_DIM))
        z = z.at[:, k].set(zk.reshape(num_devices, chunk_size, EMB_DIM))
        means.append(aux["mean"])
    return _bn_loss(z.reshape(-1, EMB_DIM), labels), {"mean": jnp.stack(means)}


def _assert_aux_case(got, ref, whole_batch_grads):
    (value, aux), grads = got
    (ref_value, ref_aux), ref_grads = ref
    _assert_equal(value, grads, ref_value, ref_grads)
    num_chunks = ref_aux["mean"].shape[0]
    assert num_chunks > 1
    got_mean = np.asarray(aux["mean"])
    assert got_mean.shape[-2:] == (num_chunks, HIDDEN)  # stacked over the chunks
    np.testing.assert_allclose(
        got_mean, np.broadcast_to(ref_aux["mean"], got_mean.shape), rtol=1e-5, atol=1e-6
    )
    # The statistic of the chunks is not that of the whole batch: the test
    # would fail if the chunking were ignored.
    assert np.abs(np.asarray(whole_batch_grads["w1"]) - np.asarray(ref_grads["w1"])).max() > 1e-3


def test_has_aux_batchnorm_statistics_per_chunk_on_one_device():
    params = make_params(8)
    views, labels = make_batch(BATCH, seed=9)
    x = views[:, 0]
    fn = jax.jit(jm.chunked_value_and_grad(_bn_embed, _bn_loss, chunk_size=CHUNK, has_aux=True))
    got = fn(params, x, labels)
    ref = jax.value_and_grad(lambda p: _plain_over_chunks(p, x, labels, 1, CHUNK), has_aux=True)(
        params
    )
    whole = jax.grad(lambda p: _bn_loss(_bn_embed(p, x)[0], labels))(params)
    _assert_aux_case(got, ref, whole)


@pytest.mark.parametrize("mapper", ["shard_map", "pmap"])
def test_has_aux_global_batchnorm_per_chunk_on_8_devices(mapper):
    params = make_params(10)
    views, labels = make_batch(GLOBAL, seed=11)
    x = views[:, 0]
    fn = jm.chunked_value_and_grad(
        functools.partial(_bn_embed, axis_name="data"),
        functools.partial(_bn_loss, axis_name="data"),
        chunk_size=SHARD_CHUNK,
        has_aux=True,
    )
    if mapper == "shard_map":
        got = jax.jit(
            jax.shard_map(
                fn, mesh=mesh(), in_specs=(P(), P("data"), P("data")), out_specs=((P(), P()), P())
            )
        )(params, x, labels)
    else:

        def step(p, x, y):
            out, grads = fn(p, x, y)
            return out, jax.lax.pmean(grads, "data")

        got = jax.pmap(step, axis_name="data", in_axes=(None, 0, 0))(
            params, x.reshape(NUM_DEVICES, LOCAL, IN_DIM), labels.reshape(NUM_DEVICES, LOCAL)
        )
    ref = jax.value_and_grad(
        lambda p: _plain_over_chunks(p, x, labels, NUM_DEVICES, SHARD_CHUNK), has_aux=True
    )(params)
    whole = jax.grad(lambda p: _bn_loss(_bn_embed(p, x)[0], labels))(params)
    _assert_aux_case(got, ref, whole)


# ----------------------------------------------------------------------------
# Bad arguments, named at construction or at trace time.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("unroll", [0, -1, 2.5, "all", None])
def test_bad_unroll_is_named(unroll):
    with pytest.raises(ValueError, match="`unroll` must be a positive int"):
        jm.chunked_value_and_grad(mlp, jnp.sum, chunk_size=4, unroll=unroll)


@pytest.mark.parametrize("chunk_size", [0, -4, 2.5, True, "8", None])
def test_bad_chunk_size_is_named(chunk_size):
    with pytest.raises(ValueError, match="`chunk_size` must be a positive int"):
        jm.chunked_value_and_grad(mlp, jnp.sum, chunk_size=chunk_size)


def test_chunk_size_that_does_not_divide_the_batch_is_named_with_the_batch():
    fn = jax.jit(jm.chunked_value_and_grad(mlp, jnp.sum, chunk_size=5))
    with pytest.raises(ValueError, match=r"`chunk_size`=5 must divide the batch size 32"):
        fn(make_params(), jnp.ones((BATCH, IN_DIM)))


def test_inputs_of_different_batch_sizes_are_refused():
    fn = jm.chunked_value_and_grad(_simclr_embed, lambda z: jnp.sum(z[0]), chunk_size=4)
    inputs = {"view1": jnp.ones((BATCH, IN_DIM)), "view2": jnp.ones((BATCH + 4, IN_DIM))}
    with pytest.raises(ValueError, match="same leading batch size"):
        fn(make_params(), inputs)


def test_embeddings_without_the_chunk_axis_are_refused():
    fn = jm.chunked_value_and_grad(lambda p, x: jnp.mean(mlp(p, x), axis=0), jnp.sum, chunk_size=4)
    with pytest.raises(ValueError, match="leading axis of `chunk_size`=4 rows"):
        fn(make_params(), jnp.ones((BATCH, IN_DIM)))


def test_has_aux_needs_a_pair():
    fn = jm.chunked_value_and_grad(mlp, jnp.sum, chunk_size=4, has_aux=True)
    with pytest.raises(ValueError, match="must return a pair"):
        fn(make_params(), jnp.ones((BATCH, IN_DIM)))
