"""Fused value-and-gradient over row slabs (one device's candidates all present).

When every candidate is at hand, each slab of ``block`` anchor rows sees its
whole similarity row [block, M] at once: the log-sum-exp, the loss terms and
dS come out of one exp per entry, and the two gradient GEMMs follow at
once. The gradient (for a unit cotangent) is kept as the residual, so the
backward pass only scales it: three GEMMs in all, the dense count, with
memory O(block x M + M x D) instead of O(M^2).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxmetric.losses import _tiling
from jaxmetric.losses._common import NEG_LARGE


def _slab_terms(s, pos, neg, positive_logit, supcon):
    """Loss terms and dS (for a unit cotangent, before the 1/T) of one row slab."""
    # SupCon's denominator holds the positives too; NT-Xent's the negatives only.
    counted = pos | neg if supcon else neg
    shift = jnp.max(jnp.where(counted, s, -jnp.inf), axis=1)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(shift), shift, 0.0))
    exp_neg = jnp.exp(jnp.where(counted, s - shift[:, None], NEG_LARGE))
    sum_neg = jnp.sum(exp_neg, axis=1)
    has_neg = sum_neg > 0
    lse = jnp.where(has_neg, shift + jnp.log(jnp.where(has_neg, sum_neg, 1.0)), NEG_LARGE)
    inv_sum = jnp.where(has_neg, 1.0 / jnp.where(has_neg, sum_neg, 1.0), 0.0)
    if supcon:  # lse_i - the mean positive logit, for the anchors with a positive
        num_pos = jnp.sum(pos, axis=1).astype(s.dtype)
        has_pos = num_pos > 0
        inv_pos = jnp.where(has_pos, 1.0 / jnp.where(has_pos, num_pos, 1.0), 0.0)
        total = jnp.where(has_pos, lse - jnp.sum(jnp.where(pos, s, 0.0), axis=1) * inv_pos, 0.0)
        ds = exp_neg * jnp.where(has_pos, inv_sum, 0.0)[:, None] - pos * inv_pos[:, None]
        return total, has_pos.astype(s.dtype), ds, None
    if positive_logit is not None:  # One positive per row, its logit given.
        z = lse - positive_logit
        total, count = jax.nn.softplus(z), jnp.ones_like(z)
        weight = jax.nn.sigmoid(z)  # d term / d lse; d term / d positive = -weight
        ds = exp_neg * (weight * inv_sum)[:, None]
        return total, count, ds, -weight
    z = lse[:, None] - s
    total = jnp.sum(jnp.where(pos, jax.nn.softplus(z), 0.0), axis=1)
    count = jnp.sum(pos, axis=1).astype(s.dtype)
    sig = jnp.where(pos, jax.nn.sigmoid(z), 0.0)
    ds = exp_neg * (jnp.sum(sig, axis=1) * inv_sum)[:, None] - sig
    return total, count, ds, None


def _fused_fwd(x, c, partner, anchor_meta, cand_meta, temperature, block, cand_grad, supcon):
    num_rows, dim = x.shape
    block = min(block, num_rows)  # One slab at most: no padding beyond the rows.
    a_tiles = _tiling.tiles(_tiling.Rows(x, *anchor_meta), block)
    cands = _tiling.Rows(c, *cand_meta)
    single = partner is not None
    p_tiles = _tiling.pad_rows(partner, block, 0.0).reshape(a_tiles.emb.shape) if single else None

    def slab(dc, args):
        a, p = args
        p = p if single else None
        # 1/T goes on the [block, D] operands, not on the [block, M] products.
        scaled = a.emb / temperature
        s = scaled @ cands.emb.T
        pos, neg = _tiling.tile_masks(a, cands)
        positive_logit = jnp.sum(scaled * p, axis=1) if single else None
        total, count, ds, d_positive = _slab_terms(s, pos, neg, positive_logit, supcon)
        valid = a.mask
        total, count = jnp.where(valid, total, 0.0), jnp.where(valid, count, 0.0)
        ds = jnp.where(valid[:, None], ds, 0.0)
        dx = (ds @ cands.emb) / temperature
        dp = None
        if single:
            d_positive = jnp.where(valid, d_positive, 0.0)[:, None]
            dx, dp = dx + d_positive * p / temperature, d_positive * scaled
        if cand_grad:
            dc = dc + ds.T @ scaled
        return dc, (total, count, dx, dp)

    dc0 = jnp.zeros_like(c) if cand_grad else None
    if p_tiles is None:  # Keeps one scan signature; unused without a partner.
        p_tiles = jnp.zeros(a_tiles.mask.shape)
    dc, (total, count, dx, dp) = jax.lax.scan(slab, dc0, (a_tiles, p_tiles))
    flat = lambda t: t.reshape(-1, *t.shape[2:])[:num_rows]  # noqa: E731
    total, count = jnp.sum(flat(total)), jnp.sum(flat(count))
    grads = (flat(dx), dc, flat(dp) if single else None)
    return (total, count), grads


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def fused_ntxent(
    x: jax.Array,
    c: jax.Array,
    partner: jax.Array | None,
    anchor_meta: tuple,
    cand_meta: tuple,
    temperature: float,
    block: int,
    cand_grad: bool,
    supcon: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """(sum of NT-Xent terms over valid positive pairs, their number), for local anchors.

    ``partner`` [b, D]: each anchor's single positive, given directly (SimCLR,
    MoCo); candidates then serve as negatives only where their label differs.
    None: positives are the candidates with the anchor's label (not itself).
    ``cand_grad=False`` skips the candidates' gradient (a MoCo queue).
    ``supcon=True`` (``partner`` None): SupCon's terms instead, per anchor with
    a positive ``lse_{positives and negatives} - mean positive logit``, and
    the number of such anchors.
    """
    return _fused_fwd(x, c, partner, anchor_meta, cand_meta, temperature, block, cand_grad, supcon)[
        0
    ]


def _fused_vjp_bwd(temperature, block, cand_grad, supcon, grads, cotangents):
    del supcon
    g, _ = cotangents  # The count has no gradient.
    dx, dc, dp = grads
    scale = lambda t: None if t is None else g * t  # noqa: E731
    dc = scale(dc) if cand_grad else None
    return scale(dx), dc, scale(dp), None, None


fused_ntxent.defvjp(_fused_fwd, _fused_vjp_bwd)
