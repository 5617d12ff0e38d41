"""Symmetric tiles: the anchors are their own candidates (SimCLR), on one or more devices.

Then S = X X^T / T is symmetric and a tile (I, J) of it serves rows I and
rows J alike, so each unordered pair of [block, block] tiles is formed once.
With unit-norm rows every logit is at most 1/T, so ``exp(S_ij - 1/T)``
cannot overflow and one exp per entry serves both rows i and j (a per-row
max shift would not be shared), and the row sums of the tiles that different
devices form simply add up (``psum``).

The rows (gathered from every device under ``axis_name``) are cut into
``nb`` blocks, ``nb`` a multiple of the device count, and each device owns
``nb / n`` of them. Row block I forms, with the blocks after it on a circle:
its diagonal tile (I, I); the full tiles (I, I + t) for t = 1 ... (nb - 1) // 2,
one contiguous slab of the doubled rows; and when nb is even, half of the
tile (I, I + nb / 2), whose other half the partner block forms. Every
unordered pair of blocks is covered exactly once and every block does the
same work, so each of n devices does 1/n of the single-device work.

``negative_exp_sums`` returns one device's partial sums over the negatives
of ``exp(S_ij - 1/T)`` for every row; their ``psum`` is the row sums. Its
backward pass, given ``a = dL / d row sum`` for every row (the transpose of
the caller's ``psum`` and local slice hands every device all of them),
recomputes the device's tiles and forms ``A = E * (a_i + a_j)``, which carries
both dS and dS^T: ``A X_J`` for rows I and ``A^T X_I`` for rows J (the
diagonal tile: ``A X_I`` alone). The partial gradient of the gathered rows
goes back through the gather's transpose (a reduce-scatter), so the gradient
is exact with no collective on it. GEMM work over all devices: the
triangle's, 4 x (n_rows^2 / 2) x D, against the dense 6 x n_rows^2 x D.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxmetric import parallel
from jaxmetric.losses import _tiling
from jaxmetric.losses._common import NEG_LARGE

# The most columns one GEMM of a row block's window forms (CPU: 256 x 1,024
# float32 tiles stay in L2; one [256, 2N / 2] slab did not).
WINDOW_COLUMNS = 1024

# exp(-2/T) is the smallest shifted exp; past this 2/T it could underflow.
SYMMETRIC_MAX_RANGE = 60.0


def symmetric_applies(temperature: float) -> bool:
    """Whether the shared shift 1/T keeps every exp of a unit-norm S/T in range."""
    return 2.0 / temperature <= SYMMETRIC_MAX_RANGE


class _Plan:
    """The static layout: ``nb`` blocks of ``block`` rows, ``per_device`` per device."""

    def __init__(self, num_rows: int, block: int, num_devices: int):
        block = max(1, min(block, -(-num_rows // num_devices)))
        per_device = -(-num_rows // (block * num_devices))
        self.num_blocks = per_device * num_devices
        # An even nb splits the tiles (I, I + nb / 2) in halves of block / 2 columns.
        self.block = block + (block % 2 if self.num_blocks % 2 == 0 else 0)
        self.per_device = per_device
        self.window = (self.num_blocks - 1) // 2  # full tiles after the diagonal
        self.half = self.block // 2 if self.num_blocks % 2 == 0 else 0
        self.padded = self.num_blocks * self.block


def _slice(a: jax.Array, start, size: int) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(a, start, size, axis=0)


def _add(buffer: jax.Array, start, value: jax.Array) -> jax.Array:
    return jax.lax.dynamic_update_slice_in_dim(
        buffer, _slice(buffer, start, value.shape[0]) + value, start, axis=0
    )


def _doubled(rows: _tiling.Rows, plan: _Plan) -> _tiling.Rows:
    """The rows padded to ``plan.padded`` (padding masked out) and repeated twice,
    so a cyclic window of blocks is one contiguous slice."""
    fill = {"emb": 0.0, "labels": -1, "mask": False, "index": -1}

    def pad(name, t):
        extra = plan.padded - t.shape[0]
        t = jnp.pad(t, [(0, extra)] + [(0, 0)] * (t.ndim - 1), constant_values=fill[name])
        return jnp.concatenate([t, t])

    return _tiling.Rows(**{k: pad(k, v) for k, v in rows._asdict().items()})


def _block_tiles(doubled: _tiling.Rows, plan: _Plan, block_index, temperature: float):
    """The tiles row block ``block_index`` forms, as a list of (row start, column
    start, E, the rows, the columns, whether it is the diagonal tile), where
    E = exp(S - 1/T) on the negatives and 0 elsewhere; starts index the
    doubled rows."""
    shift = 1.0 / temperature
    beta = plan.block

    def exp_tile(row_start, rows: int, col_start, cols: int):
        a = jax.tree.map(lambda t: _slice(t, row_start, rows), doubled)
        c = jax.tree.map(lambda t: _slice(t, col_start, cols), doubled)
        s = (a.emb / temperature) @ c.emb.T
        _, neg = _tiling.tile_masks(a, c)
        return jnp.where(neg, jnp.exp(jnp.minimum(s - shift, 0.0)), 0.0), a.emb, c.emb

    start = block_index * beta
    out = [(start, start, *exp_tile(start, beta, start, beta), True)]
    # The tiles after the diagonal, a few at a time: one [block, window] GEMM
    # would leave the caches.
    chunk = max(1, WINDOW_COLUMNS // beta)
    for first in range(0, plan.window, chunk):
        cols = start + (1 + first) * beta
        width = min(chunk, plan.window - first) * beta
        out.append((start, cols, *exp_tile(start, beta, cols, width), False))
    if plan.half:
        partner = (block_index + plan.num_blocks // 2) % plan.num_blocks
        # The lower block's rows against half of the higher block's columns:
        # block I < J takes J's first half, block J > I its own second half.
        lower = jnp.minimum(block_index, partner) * beta
        cols = jnp.where(block_index < partner, partner * beta, start + plan.half)
        out.append((lower, cols, *exp_tile(lower, beta, cols, plan.half), False))
    return out


def _owned_block(plan: _Plan, r, axis_name: str | None):
    return parallel.axis_index(axis_name) * plan.per_device + r


def _partial_sums(x, labels, mask, temperature, block, axis_name):
    num_rows = x.shape[0]
    plan = _Plan(num_rows, block, parallel.axis_size(axis_name))
    index = jnp.arange(num_rows, dtype=jnp.int32)
    doubled = _doubled(_tiling.Rows(x, labels, mask, index), plan)

    def visit(sums, r):
        tiles = _block_tiles(doubled, plan, _owned_block(plan, r, axis_name), temperature)
        for row_start, col_start, e, _, _, diagonal in tiles:
            sums = _add(sums, row_start, jnp.sum(e, axis=1))
            if not diagonal:
                sums = _add(sums, col_start, jnp.sum(e, axis=0))
        return sums, None

    sums = jnp.zeros(2 * plan.padded, x.dtype)
    sums = parallel.to_varying(sums, axis_name)
    sums, _ = jax.lax.scan(visit, sums, jnp.arange(plan.per_device))
    return (sums[: plan.padded] + sums[plan.padded :])[:num_rows]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def negative_exp_sums(
    x: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    temperature: float,
    block: int,
    axis_name: str | None,
) -> jax.Array:
    """This device's share of ``sum_{j negative of i} exp(S_ij - 1/T)`` for every row i.

    ``x`` [n, D] (unit-norm rows, every device's under ``axis_name``), its
    ``labels`` (a row's negatives are the valid rows of another label) and
    ``mask``; the ``psum`` over devices of the result is the row sums. For
    ``symmetric_applies(temperature)`` only.
    """
    return _partial_sums(x, labels, mask, temperature, block, axis_name)


def _negative_exp_sums_fwd(x, labels, mask, temperature, block, axis_name):
    sums = _partial_sums(x, labels, mask, temperature, block, axis_name)
    return sums, (x, labels, mask)


def _negative_exp_sums_bwd(temperature, block, axis_name, residuals, g):
    x, labels, mask = residuals
    num_rows, dim = x.shape
    plan = _Plan(num_rows, block, parallel.axis_size(axis_name))
    index = jnp.arange(num_rows, dtype=jnp.int32)
    doubled = _doubled(_tiling.Rows(x, labels, mask, index), plan)
    a = jnp.concatenate([jnp.pad(g, (0, plan.padded - num_rows))] * 2)

    def visit(dx, r):
        tiles = _block_tiles(doubled, plan, _owned_block(plan, r, axis_name), temperature)
        for row_start, col_start, e, x_rows, x_cols, diagonal in tiles:
            a_rows = _slice(a, row_start, e.shape[0])
            a_cols = _slice(a, col_start, e.shape[1])
            coupled = e * (a_rows[:, None] + a_cols[None, :])
            dx = _add(dx, row_start, coupled @ x_cols)
            if not diagonal:  # The diagonal tile's coupled is symmetric: done.
                dx = _add(dx, col_start, coupled.T @ x_rows)
        return dx, None

    dx = parallel.to_varying(jnp.zeros((2 * plan.padded, dim), x.dtype), axis_name)
    dx, _ = jax.lax.scan(visit, dx, jnp.arange(plan.per_device))
    dx = (dx[: plan.padded] + dx[plan.padded :])[:num_rows] / temperature
    return dx, None, None


negative_exp_sums.defvjp(_negative_exp_sums_fwd, _negative_exp_sums_bwd)


def symmetric_ntxent(
    x: jax.Array,
    partner: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    temperature: float,
    block: int,
    axis_name: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """(sum of NT-Xent terms over this device's valid rows, their number).

    Row i of ``x`` [b, D] (unit norm, this device's rows) has the single
    positive ``partner[i]`` and as negatives the valid rows of another label
    among the rows of every device (``labels`` unique across devices except
    for the partner). For ``symmetric_applies(temperature)`` only.
    """
    local = x.shape[0]
    gathered = [parallel.gather(t, axis_name) for t in (x, labels, mask)]
    row_sum = parallel.psum(negative_exp_sums(*gathered, temperature, block, axis_name), axis_name)
    row_sum = _slice(row_sum, parallel.axis_index(axis_name) * local, local)
    has_neg = row_sum > 0
    log_sum = jnp.log(jnp.where(has_neg, row_sum, 1.0))
    lse = jnp.where(has_neg, 1.0 / temperature + log_sum, NEG_LARGE)
    positive = jnp.sum(x * partner, axis=1) / temperature
    total = jnp.sum(jnp.where(mask, jax.nn.softplus(lse - positive), 0.0))
    return total, jnp.sum(mask).astype(total.dtype)
