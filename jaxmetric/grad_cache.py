"""Gradient caching: the exact gradient of a batch-coupled loss, encoder in chunks.

A contrastive loss couples every row of the batch, so the batch cannot be
split into micro-batches whose gradients add up. Gradient caching (Gao et
al. 2021) splits the *encoder* instead: embed every chunk without keeping
its activations, differentiate the loss with respect to all the embeddings
at once, then re-run each chunk's forward pass under ``jax.vjp`` with its
slice of that embedding gradient and add up the parameter gradients. The
encoder's activation memory is that of one chunk; the loss still sees the
whole batch (and, through ``axis_name``, the global batch of all devices).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxmetric._checks import check_int

__all__ = ["chunked_value_and_grad"]


def _batch_size(inputs: Any, chunk_size: int) -> int:
    """The common leading size of every leaf of ``inputs``; chunk_size divides it."""
    leaves = jax.tree.leaves(inputs)
    if not leaves:
        raise ValueError("`inputs` has no array leaves: nothing to split into chunks.")
    sizes = set()
    for leaf in leaves:
        shape = jnp.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                "every leaf of `inputs` needs a leading batch axis, got a scalar leaf."
            )
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(
            "every leaf of `inputs` must have the same leading batch size, got sizes "
            f"{sorted(sizes)}."
        )
    (batch,) = sizes
    if batch % chunk_size:
        raise ValueError(
            f"`chunk_size`={chunk_size} must divide the batch size {batch} (the leading "
            "axis of every leaf of `inputs`; under shard_map / pmap the per-device batch)."
        )
    return batch


def _varying_axes(x: Any) -> frozenset:
    """The mesh axes ``x`` varies over under ``shard_map``'s vma typing (else empty)."""
    manual = getattr(jax.typeof(x), "mat", None)
    return frozenset(manual.varying) if manual is not None else frozenset()


def _to_varying(p: jax.Array, axes: frozenset) -> jax.Array:
    return jax.lax.pcast(p, tuple(sorted(axes)), to="varying") if axes else p


def _depend_on(tree: Any, dependency: Any) -> Any:
    """``tree`` unchanged in value, but computed from all of ``dependency``.

    In unrolled code this orders the chunks (chunk k + 1 cannot start before
    every output of chunk k exists) and keeps XLA from merging (CSE) a
    chunk's re-run with its first forward pass, which would keep every
    chunk's activations alive. An ``optimization_barrier`` did neither on
    XLA's CPU backend, which removes it before scheduling; a data dependency
    holds on every backend. It is a full sum: XLA moves a slice of a result back
    through the ops that made it, so a dependency on one element would tie
    the next chunk to one row only. The added term is -0.0 (minus 0 times a
    finite number), so every value passes unchanged, -0.0 included.
    """
    leaves = [x for x in jax.tree.leaves(dependency) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return tree
    total = sum(jnp.sum(jnp.abs(x).astype(jnp.float32)) for x in leaves)
    zero = -(jnp.where(jnp.isfinite(total), total, 0.0) * 0.0)

    def add(x):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.inexact) or jnp.issubdtype(x.dtype, jnp.integer):
            return x + zero.astype(x.dtype)
        if x.dtype == jnp.bool_:
            return jnp.logical_xor(x, zero != 0)
        return x  # e.g. PRNG keys: left as they are

    return jax.tree.map(add, tree)


def _accumulator_dtype(dtype) -> jnp.dtype:
    """float32 (or wider) for floating parameters: chunk gradients add up in float32."""
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.promote_types(dtype, jnp.float32)
    return dtype


def chunked_value_and_grad(
    embed_fn: Callable[..., Any],
    loss_fn: Callable[..., jax.Array],
    *,
    chunk_size: int,
    has_aux: bool = False,
    unroll: int | bool = 1,
) -> Callable[..., Any]:
    r"""The value and parameter gradient of ``loss_fn(embed_fn(params, inputs))``, in chunks.

    The batch of B rows is cut into :math:`K = B / c` chunks of ``chunk_size``
    c rows along the leading axis of every leaf of ``inputs``. With
    :math:`z_k = f_\theta(x_k)` the embeddings of chunk k (``embed_fn``) and
    :math:`z = [z_1; \dots; z_K]` their concatenation, the chain rule splits
    the gradient of the loss L over the chunks:

    .. math::
        g = \frac{\partial L}{\partial z}\Big|_{z},\qquad
        \frac{\partial L}{\partial \theta}
            = \sum_{k=1}^{K} \Big(\frac{\partial z_k}{\partial \theta}\Big)^{\!\top} g_k

    Three passes, so only one chunk's activations are alive at a time:

    1. ``lax.scan`` over the chunks: :math:`z_k = f_\theta(x_k)`, forward only
       (no activation kept, no gradient through it);
    2. ``jax.value_and_grad(loss_fn)`` at the concatenated :math:`z` gives L
       and :math:`g` (B rows; the loss sees the whole batch);
    3. ``lax.scan`` over the chunks: re-run :math:`f_\theta(x_k)` under
       ``jax.vjp``, pull back :math:`g_k`, add the parameter gradient to a
       float32 accumulator.

    The result equals ``jax.value_and_grad(lambda p: loss_fn(embed_fn(p,
    inputs)))`` up to float rounding whenever ``embed_fn`` treats rows
    independently (no BatchNorm in training mode); with BatchNorm each chunk
    is normalised with its own statistics, in both passes, so the result is
    the exact gradient of the model whose BatchNorm sees those chunks. The
    encoder runs forward twice: about 4/3 of the plain step's compute.

    Devices: call the returned function inside ``jax.shard_map`` or
    ``jax.pmap`` with the device's local batch and a ``loss_fn`` that uses
    ``axis_name`` (e.g. ``simclr_loss(..., axis_name="data")``): the loss
    still sees the global batch and every value follows the library's
    convention. Under ``shard_map`` (``check_vma=True``) the loss is the same
    on every device and the gradient of a replicated parameter is already
    the gradient of the global batch (typed replicated, one ``psum`` after
    the last chunk, as the plain gradient's): put no collective on it. Under
    ``pmap`` each device returns its share, as the plain gradient: take
    ``jax.lax.pmean`` of it. ``chunk_size`` then divides the per-device
    batch.

    Randomness: both forward passes of a chunk must compute the same thing,
    so a dropout or augmentation key belongs in ``inputs`` (one per row or per
    chunk), not drawn inside ``embed_fn`` from a stateful source.

    Args:
      embed_fn: ``embed_fn(params, inputs_chunk) -> embeddings_chunk``, a pure
        function; ``embeddings_chunk`` is an array or any pytree of arrays,
        each with a leading axis of ``chunk_size`` rows. With ``has_aux``:
        ``-> (embeddings_chunk, aux_chunk)`` (e.g. BatchNorm statistics).
      loss_fn: ``loss_fn(embeddings, *loss_args) -> scalar``, where
        ``embeddings`` is the pytree of ``embed_fn``'s output with every leaf
        concatenated over the chunks ([B, ...], in the row order of
        ``inputs``); it may use collectives over ``axis_name``.
      chunk_size: rows per chunk, a positive int dividing B (B itself: one
        chunk, the plain computation).
      has_aux: ``embed_fn`` returns ``(embeddings, aux)``; aux is returned
        stacked over the chunks (every leaf [K, ...], chunk k's aux at
        index k), from the first (forward-only) pass, without gradient.
      unroll: ``lax.scan``'s ``unroll`` for the two loops over the chunks: 1
        (default) a rolled loop, compiled once whatever the number of chunks;
        True (or an int > 1): straight-line code, whose compile time grows
        with the number of chunks. Either way the chunks run one after
        another, so memory stays that of one chunk: unrolled, each chunk's
        inputs are tied to the previous chunk's results by an exact zero
        (a data dependency; no value changes), which also keeps XLA from
        merging a chunk's re-run with its first pass. On CPU use True for
        convolutional encoders: XLA's CPU backend rewrites convolutions into
        the layouts of its fast (Eigen) kernels only at the top level of a
        program, not inside loops, so a weight gradient in a rolled loop
        takes a naive path (40x slower for ResNet-18 at 32 px on this
        project's CPU machine). GPU and TPU need no unrolling.

    Returns:
      ``f(params, inputs, *loss_args) -> (loss, grads)``, or with
      ``has_aux`` ``((loss, aux), grads)``: ``inputs`` any pytree of arrays
      with the same leading size B; ``loss_args`` (optional, e.g. labels [B])
      passed on to ``loss_fn``; ``grads`` the pytree of ``params`` (floating
      leaves, as ``jax.grad`` requires), in the parameters' dtype (added up
      in float32). A ValueError names ``chunk_size`` or ``unroll`` when they
      are not positive ints, and at trace time ``chunk_size`` and B when it
      does not divide B, or an embedding leaf that lacks the chunk axis.

    Example:
      >>> import jax, jax.numpy as jnp, jaxmetric
      >>> k1, k2 = jax.random.split(jax.random.key(0))
      >>> params = {"w": jax.random.normal(k1, (6, 4))}
      >>> views = jax.random.normal(k2, (16, 2, 6))  # 16 pairs, two views each
      >>> embed = lambda p, x: jnp.tanh(x @ p["w"])  # [c, 2, 6] -> [c, 2, 4]
      >>> loss = lambda z: jaxmetric.simclr_loss(z[:, 0], z[:, 1], temperature=0.5)
      >>> step = jax.jit(jaxmetric.chunked_value_and_grad(embed, loss, chunk_size=4))
      >>> value, grads = step(params, views)
      >>> plain, expected = jax.value_and_grad(lambda p: loss(embed(p, views)))(params)
      >>> bool(jnp.allclose(value, plain)), bool(jnp.allclose(grads["w"], expected["w"], atol=1e-6))
      (True, True)

    Reference:
      Gao, Zhang, Han and Callan, "Scaling Deep Contrastive Learning Batch
      Size under Memory Limited Setup", RepL4NLP 2021 (gradient cache).
    """
    chunk_size = check_int(chunk_size, "chunk_size")
    has_aux = bool(has_aux)
    if not isinstance(unroll, bool):
        unroll = check_int(unroll, "unroll")
    ordered = unroll is True or unroll > 1  # the loops are (partly) unrolled

    def split_output(out):
        if not has_aux:
            return out, None
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(
                "with `has_aux`=True, `embed_fn` must return a pair (embeddings, aux), "
                f"got {type(out).__name__}."
            )
        return out

    def value_and_grad(params, inputs, *loss_args):
        batch = _batch_size(inputs, chunk_size)
        num_chunks = batch // chunk_size
        chunks = jax.tree.map(
            lambda x: jnp.reshape(x, (num_chunks, chunk_size, *jnp.shape(x)[1:])), inputs
        )
        frozen = jax.lax.stop_gradient(params)

        param_leaves, treedef = jax.tree.flatten(params)
        param_leaves = [jnp.asarray(p) for p in param_leaves]
        input_axes = frozenset().union(
            *(_varying_axes(x) for x in [*jax.tree.leaves(chunks), *param_leaves])
        )

        def after(x, dependency):
            """``x``, made to depend on ``dependency`` when the loops are unrolled."""
            return _depend_on(x, dependency) if ordered else x

        # Pass 1: embeddings of every chunk, forward only; the token carries
        # "chunk k is embedded" to chunk k + 1.
        def embed_chunk(token, chunk):
            out = embed_fn(frozen, after(chunk, token))
            embeddings, chunk_aux = jax.lax.stop_gradient(split_output(out))
            return after(token, embeddings), (embeddings, chunk_aux)

        token = _to_varying(jnp.zeros((), jnp.float32), input_axes)
        _, (stacked, aux) = jax.lax.scan(embed_chunk, token, chunks, unroll=unroll)
        for leaf in jax.tree.leaves(stacked):
            if leaf.ndim < 2 or leaf.shape[1] != chunk_size:
                raise ValueError(
                    "every leaf of `embed_fn`'s embeddings must have a leading axis of "
                    f"`chunk_size`={chunk_size} rows (one per input row), got shape "
                    f"{leaf.shape[1:]}."
                )
        embeddings = jax.tree.map(lambda e: e.reshape(batch, *e.shape[2:]), stacked)

        # Pass 2: the loss of the whole batch and its gradient w.r.t. the embeddings.
        loss, cotangent = jax.value_and_grad(lambda z: loss_fn(z, *loss_args))(embeddings)
        cotangents = jax.tree.map(lambda g, e: g.reshape(e.shape), cotangent, stacked)

        # Pass 3: each chunk again, under vjp, with its slice of that gradient.
        # Under shard_map a replicated parameter would get its gradient psum-ed
        # by every chunk's vjp; typed as varying here, it gets local
        # gradients, summed over the chunks, then one psum (below).
        data_axes = frozenset().union(
            *(_varying_axes(x) for x in jax.tree.leaves((chunks, stacked, cotangents)))
        )
        cast_axes = [data_axes - _varying_axes(p) for p in param_leaves]
        local = treedef.unflatten(
            [_to_varying(p, axes) for p, axes in zip(param_leaves, cast_axes, strict=True)]
        )

        def backward_chunk(total, xs):
            # Chunk k + 1 is re-run once chunk k's gradient is added in.
            chunk, g = after(xs, total)
            _, pullback = jax.vjp(lambda p: split_output(embed_fn(p, chunk))[0], local)
            (grad,) = pullback(g)
            total = jax.tree.map(lambda t, d: t + d.astype(t.dtype), total, grad)
            return total, None

        zeros = jax.tree.map(lambda p: jnp.zeros_like(p, _accumulator_dtype(p.dtype)), local)
        total, _ = jax.lax.scan(backward_chunk, zeros, (chunks, cotangents), unroll=unroll)
        totals = treedef.flatten_up_to(total)
        grads = []
        for t, p, axes in zip(totals, param_leaves, cast_axes, strict=True):
            grads.append((jax.lax.psum(t, tuple(sorted(axes))) if axes else t).astype(p.dtype))
        grads = treedef.unflatten(grads)
        return ((loss, aux), grads) if has_aux else (loss, grads)

    return value_and_grad
