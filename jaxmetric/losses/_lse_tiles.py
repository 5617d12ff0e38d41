"""NT-Xent in [block, block] tiles with a running log-sum-exp: gathered or ring.

NT-Xent needs, for every anchor row i, the log-sum-exp of its logits
``S_ij = <x_i, c_j> / T`` over its negatives j, and the positive terms
``softplus(lse_i - S_ip)``. The dense version holds S ([rows, cols]) and its
gradient in memory. Here S only ever exists one [block, block] tile at a
time: the forward pass keeps a running (max, sum) per row, and the backward
pass (a custom VJP) recomputes each tile to form dS and accumulate
``dx = dS c / T`` and ``dc = dS^T x / T``. Forward: one GEMM; backward: three.

Candidates come from one of two places:

- ``ring=False``: ``cands`` is the whole candidate set (the batch gathered
  from all devices, or the local batch on one device);
- ``ring=True`` (under ``axis_name``): ``cands`` is this device's block only.
  Blocks travel around the devices with ``jax.lax.ppermute``, one hop per
  step, so no device ever holds more than two candidate blocks; in the
  backward pass the candidates' gradient travels with its block and arrives
  home after the last hop (Inf-CL, Li et al. 2024, arXiv:2410.17243).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxmetric import parallel
from jaxmetric.losses import _tiling
from jaxmetric.losses._common import NEG_LARGE

# A tile's forward step: (row carry, S tile, positive mask, negative mask,
# per-row inputs) -> new row carry.
TileFn = Callable[..., tuple]
# A tile's backward: (S tile, positive mask, negative mask, per-row inputs) -> dS.
TileGrad = Callable[..., jax.Array]


def _ring_perm(axis_name: str) -> list[tuple[int, int]]:
    n = parallel.axis_size(axis_name)
    return [(i, (i + 1) % n) for i in range(n)]


def _num_steps(axis_name: str | None, ring: bool) -> int:
    return parallel.axis_size(axis_name) if ring else 1


def _forward(
    anchors: _tiling.Rows,
    row_inputs: tuple,
    cands: _tiling.Rows,
    carry_init: tuple,
    tile_fn: TileFn,
    temperature: float,
    block: int,
    axis_name: str | None,
    ring: bool,
) -> tuple:
    """Runs ``tile_fn`` over every (anchor tile, candidate tile); returns the row carries."""
    num_rows = anchors.emb.shape[0]
    a_tiles = _tiling.tiles(anchors, block)
    inputs = tuple(_tiling.pad_rows(r, block, 0).reshape(a_tiles.mask.shape) for r in row_inputs)
    carry = tuple(_tiling.pad_rows(c, block, 0).reshape(a_tiles.mask.shape) for c in carry_init)

    def visit(carry, cand_block: _tiling.Rows):
        c_tiles = _tiling.tiles(cand_block, block)

        def rows(args):
            a, row_in, row_carry = args

            def cols(row_carry, c):
                s = a.emb @ c.emb.T / temperature
                pos, neg = _tiling.tile_masks(a, c)
                return tile_fn(row_carry, s, pos, neg, *row_in), None

            return jax.lax.scan(cols, row_carry, c_tiles)[0]

        return jax.lax.map(rows, (a_tiles, inputs, carry))

    carry = visit(carry, cands)
    if ring and _num_steps(axis_name, ring) > 1:
        perm = _ring_perm(axis_name)

        def hop(state, _):
            carry, block_ = state
            block_ = jax.lax.ppermute(block_, axis_name, perm)
            return (visit(carry, block_), block_), None

        steps = _num_steps(axis_name, ring) - 1
        state = parallel.to_varying((carry, cands), axis_name)
        (carry, _), _ = jax.lax.scan(hop, state, None, length=steps)
    return tuple(c.reshape(-1)[:num_rows] for c in carry)


def _backward(
    anchors: _tiling.Rows,
    row_inputs: tuple,
    cands: _tiling.Rows,
    tile_grad: TileGrad,
    temperature: float,
    block: int,
    axis_name: str | None,
    ring: bool,
) -> tuple[jax.Array, jax.Array]:
    """Recomputes every tile, forms dS with ``tile_grad``; returns (dx [b, D], dc [m, D])."""
    num_rows, dim = anchors.emb.shape
    num_cands = cands.emb.shape[0]
    a_tiles = _tiling.tiles(anchors, block)
    inputs = tuple(_tiling.pad_rows(r, block, 0).reshape(a_tiles.mask.shape) for r in row_inputs)

    def visit(dx, cand_block: _tiling.Rows, dc):
        c_tiles = _tiling.tiles(cand_block, block)
        dc_tiles = _tiling.pad_rows(dc, block, 0.0).reshape(c_tiles.emb.shape)

        def rows(dc_tiles, args):
            a, row_in, dx_r = args

            def cols(dx_r, c):
                s = a.emb @ c.emb.T / temperature
                pos, neg = _tiling.tile_masks(a, c)
                ds = tile_grad(s, pos, neg, *row_in) / temperature
                return dx_r + ds @ c.emb, ds.T @ a.emb

            dx_r, dc_contrib = jax.lax.scan(cols, dx_r, c_tiles)
            return dc_tiles + dc_contrib, dx_r

        dc_tiles, dx = jax.lax.scan(rows, dc_tiles, (a_tiles, inputs, dx))
        return dx, dc_tiles.reshape(-1, dim)[:num_cands]

    dx = jnp.zeros_like(a_tiles.emb)
    dc = jnp.zeros_like(cands.emb)
    dx, dc = visit(dx, cands, dc)
    if ring and _num_steps(axis_name, ring) > 1:
        perm = _ring_perm(axis_name)

        def hop(state, _):
            dx, block_, dc = state
            block_, dc = jax.lax.ppermute((block_, dc), axis_name, perm)
            dx, dc = visit(dx, block_, dc)
            return (dx, block_, dc), None

        steps = _num_steps(axis_name, ring) - 1
        state = parallel.to_varying((dx, cands, dc), axis_name)
        (dx, _, dc), _ = jax.lax.scan(hop, state, None, length=steps)
        # One more hop brings every block's gradient back to its owner.
        dc = jax.lax.ppermute(dc, axis_name, perm)
    return dx.reshape(-1, dim)[:num_rows], dc


# ---------------------------------------------------------------------------
# The negatives' log-sum-exp, lse_i = log sum_{j: y_j != y_i} exp(S_ij).


def _lse_tile(carry, s, pos, neg):
    del pos
    running_max, running_sum = carry
    tile_max = jnp.max(jnp.where(neg, s, NEG_LARGE), axis=1)
    new_max = jnp.maximum(running_max, tile_max)
    tile_sum = jnp.sum(jnp.where(neg, jnp.exp(s - new_max[:, None]), 0.0), axis=1)
    return new_max, running_sum * jnp.exp(running_max - new_max) + tile_sum


def _finish_lse(running_max, running_sum):
    nonzero = running_sum > 0
    lse = running_max + jnp.log(jnp.where(nonzero, running_sum, 1.0))
    return jnp.where(nonzero, lse, NEG_LARGE)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def negative_lse(
    x: jax.Array,
    c: jax.Array,
    anchor_meta: tuple,
    cand_meta: tuple,
    temperature: float,
    block: int,
    axis_name: str | None,
    ring: bool,
) -> jax.Array:
    """[b] log-sum-exp of each anchor's logits over its negatives; NEG_LARGE if none.

    ``anchor_meta`` and ``cand_meta`` are (labels, mask, index) of the rows.
    """
    return _negative_lse_fwd(x, c, anchor_meta, cand_meta, temperature, block, axis_name, ring)[0]


def _negative_lse_fwd(x, c, anchor_meta, cand_meta, temperature, block, axis_name, ring):
    anchors = _tiling.Rows(x, *anchor_meta)
    cands = _tiling.Rows(c, *cand_meta)
    init = (jnp.full_like(x[:, 0], NEG_LARGE), jnp.zeros_like(x[:, 0]))
    running = _forward(anchors, (), cands, init, _lse_tile, temperature, block, axis_name, ring)
    lse = _finish_lse(*running)
    return lse, (x, c, anchor_meta, cand_meta, lse)


def _negative_lse_bwd(temperature, block, axis_name, ring, residuals, g):
    x, c, anchor_meta, cand_meta, lse = residuals

    def tile_grad(s, pos, neg, lse_r, g_r):
        del pos
        # d lse_i / d S_ij = softmax over the negatives.
        return jnp.where(neg, jnp.exp(s - lse_r[:, None]), 0.0) * g_r[:, None]

    dx, dc = _backward(
        _tiling.Rows(x, *anchor_meta),
        (lse, g),
        _tiling.Rows(c, *cand_meta),
        tile_grad,
        temperature,
        block,
        axis_name,
        ring,
    )
    return dx, dc, None, None


negative_lse.defvjp(_negative_lse_fwd, _negative_lse_bwd)


# ---------------------------------------------------------------------------
# The positive terms, sum_{p: y_p = y_i, p != i} softplus(lse_i - S_ip), per row.


def _positive_tile(carry, s, pos, neg, lse_r):
    del neg
    total, count, weight = carry
    z = lse_r[:, None] - s
    total = total + jnp.sum(jnp.where(pos, jax.nn.softplus(z), 0.0), axis=1)
    count = count + jnp.sum(pos, axis=1)
    # d total_i / d lse_i, kept for the backward pass.
    weight = weight + jnp.sum(jnp.where(pos, jax.nn.sigmoid(z), 0.0), axis=1)
    return total, count, weight


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def positive_terms(
    x: jax.Array,
    c: jax.Array,
    lse: jax.Array,
    anchor_meta: tuple,
    cand_meta: tuple,
    temperature: float,
    block: int,
    axis_name: str | None,
    ring: bool,
) -> tuple[jax.Array, jax.Array]:
    """Per anchor: (sum over its positives of softplus(lse_i - S_ip), number of positives)."""
    return _positive_terms_fwd(
        x, c, lse, anchor_meta, cand_meta, temperature, block, axis_name, ring
    )[0]


def _positive_terms_fwd(x, c, lse, anchor_meta, cand_meta, temperature, block, axis_name, ring):
    anchors = _tiling.Rows(x, *anchor_meta)
    cands = _tiling.Rows(c, *cand_meta)
    zeros = jnp.zeros_like(x[:, 0])
    total, count, weight = _forward(
        anchors,
        (lse,),
        cands,
        (zeros, zeros, zeros),
        _positive_tile,
        temperature,
        block,
        axis_name,
        ring,
    )
    return (total, count), (x, c, lse, anchor_meta, cand_meta, weight)


def _positive_terms_bwd(temperature, block, axis_name, ring, residuals, cotangents):
    x, c, lse, anchor_meta, cand_meta, weight = residuals
    g, _ = cotangents  # The count is piecewise constant: no gradient.

    def tile_grad(s, pos, neg, lse_r, g_r):
        del neg
        return -jnp.where(pos, jax.nn.sigmoid(lse_r[:, None] - s), 0.0) * g_r[:, None]

    dx, dc = _backward(
        _tiling.Rows(x, *anchor_meta),
        (lse, g),
        _tiling.Rows(c, *cand_meta),
        tile_grad,
        temperature,
        block,
        axis_name,
        ring,
    )
    return dx, dc, g * weight, None, None


positive_terms.defvjp(_positive_terms_fwd, _positive_terms_bwd)
