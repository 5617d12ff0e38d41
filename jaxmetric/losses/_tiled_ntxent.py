"""The one entry point of the tiled NT-Xent algorithms: the mean of its terms.

``ntxent_loss``, ``supcon_loss``, ``simclr_loss`` and ``moco_loss`` (and
through the specs, ``xbm_loss``) call ``tiled_ntxent`` with named
arguments; it picks the algorithm:

- ``ring=True``: ``_lse_tiles``, [block, block] tiles with a running
  log-sum-exp while the candidate blocks travel around the devices;
- the anchors their own candidates, one given positive per row (SimCLR)
  and ``_symmetric_tiles.symmetric_applies(temperature)``:
  ``_symmetric_tiles``, each pair of tiles of S formed once, on one device
  or shared out over the devices under ``axis_name``;
- otherwise ``_fused_slabs``: slabs of ``block_size`` anchor rows against all
  candidates, value and gradient in one pass (NT-Xent's or SupCon's terms).

All three give the dense loss's value and gradient. ``check_block_size``
validates a loss's ``block_size`` and ``choose_block_size`` says what
"auto", the default, stands for.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxmetric import parallel
from jaxmetric.losses import _fused_slabs, _lse_tiles, _symmetric_tiles
from jaxmetric.losses._tiling import Rows


def check_block_size(block_size) -> None:
    """``block_size`` must be "auto", None or a positive int (ValueError naming it)."""
    if block_size is None or (isinstance(block_size, str) and block_size == "auto"):
        return
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        block_size = repr(block_size)  # Reported below as given.
    elif block_size > 0:
        return
    raise ValueError(f'`block_size` must be "auto", None or a positive int, got {block_size}.')


# What "auto" stands for (choose_block_size); measured in docs/benchmarks.md.
CPU_SYMMETRIC_ONE_TILE = 2048
CPU_SYMMETRIC_BLOCK = 256
CPU_SLAB_BLOCK = 128
CPU_DENSE_ENTRIES = 2**16
ACCELERATOR_DENSE_ENTRIES = 2**26
ACCELERATOR_BLOCK = 1024


def choose_block_size(
    block_size, *, rows: int, candidates: int, symmetric: bool = False
) -> int | None:
    """The block size a call runs with: ``block_size``, or what "auto" stands for.

    ``rows``: the anchors of this device; ``candidates``: what each anchor is
    compared with (every device's rows, or a queue); ``symmetric``: the call
    takes the symmetric tiles (``takes_symmetric_tiles``). Why (forward +
    backward, f32, D = 128, on the 2-core CPU; benchmarks/block_size_sweep.py,
    docs/benchmarks.md):

    - CPU, symmetric tiles (SimCLR): faster than the dense path from 256
      views on (2.6x at 256, 3.7x at 4,096), even below. Up to
      ``CPU_SYMMETRIC_ONE_TILE`` views in all, one tile (one row block per
      device): XLA then forms each exp once for the value and the gradient
      (1,024 views: 5.2 ms against 10.6 ms in 256-row blocks, 16.6 ms
      dense; 2,048: 23 against 33 ms). Beyond, 256-row blocks, whose tiles
      stay in cache (4,096 views: 108 ms, one tile 139 ms, dense 400 ms).
    - CPU, row slabs (NT-Xent with labels, SupCon, MoCo's queue): the dense
      path for tiny batches (at most ``CPU_DENSE_ENTRIES`` logits, where the
      two are even), 128-row slabs beyond (2,048 rows: 1.8x faster than
      dense, 8,192: 1.6-1.8x; MoCo's 256 x 16,384: 1.4x).
    - GPU / TPU: not measured yet. One large GEMM keeps an accelerator busier
      than a loop of small ones, so the dense path while its logits are
      small, ``ACCELERATOR_BLOCK`` rows beyond, where memory decides.
    """
    if not (isinstance(block_size, str) and block_size == "auto"):
        return block_size
    if jax.default_backend() == "cpu":
        if symmetric:
            if candidates <= CPU_SYMMETRIC_ONE_TILE:
                return candidates
            return CPU_SYMMETRIC_BLOCK
        return None if rows * candidates <= CPU_DENSE_ENTRIES else CPU_SLAB_BLOCK
    return None if rows * candidates <= ACCELERATOR_DENSE_ENTRIES else ACCELERATOR_BLOCK


def _global_mean(total: jax.Array, count: jax.Array, axis_name: str | None) -> jax.Array:
    return parallel.safe_divide(
        parallel.global_sum(total, axis_name), parallel.global_sum(count, axis_name)
    )


def takes_symmetric_tiles(temperature: float, *, ring: bool) -> bool:
    """Whether ``tiled_ntxent`` takes the symmetric tiles when the anchors are
    their own candidates (``candidates=None``) and each has a given ``partner``.

    A caller whose candidates would be built from other arrays (SimCLR's
    gathered views) asks first, so it builds them only when they are used.
    """
    return not ring and _symmetric_tiles.symmetric_applies(temperature)


def tiled_ntxent(
    anchors: Rows,
    candidates: Rows | None = None,
    *,
    temperature: float,
    block_size: int,
    partner: jax.Array | None = None,
    axis_name: str | None = None,
    ring: bool = False,
    candidate_grad: bool = True,
    supcon: bool = False,
) -> jax.Array:
    """Mean NT-Xent term over the valid positive pairs of the global batch.

    Args:
      anchors: the local anchor rows (unit norm), with their labels, validity
        and global index.
      candidates: every candidate (gathered from all devices where needed).
        None: the anchors are their own candidates, on one device or, with
        ``ring``, as the local block that travels around the devices.
      temperature: T > 0.
      block_size: rows per tile or slab.
      partner: [b, D] the single positive of each anchor (SimCLR's other
        view, MoCo's key); candidates are then negatives where their label
        differs. None: the positives are the candidates of the anchor's label
        (other than itself).
      axis_name: mapped axis; the mean runs over the global batch.
      ring: pass the candidate blocks around the devices with ``ppermute``.
      candidate_grad: False skips the candidates' gradient (a MoCo queue).
      supcon: SupCon's terms instead of NT-Xent's (no ``partner``, no
        ``ring``): the positives in the denominator, the mean over the anchors
        that have a positive.

    Returns:
      A float32 scalar; 0.0 when no positive pair is valid.
    """
    if ring:
        if candidates is not None:
            raise ValueError("`ring`=True starts from the anchors' own block: no `candidates`.")
        meta = anchors.meta
        x = anchors.emb
        tiling = (temperature, block_size, axis_name, ring)
        lse = _lse_tiles.negative_lse(x, x, meta, meta, *tiling)
        if partner is None:
            total, count = _lse_tiles.positive_terms(x, x, lse, meta, meta, *tiling)
            return _global_mean(jnp.sum(total), jnp.sum(count), axis_name)
        positive = jnp.sum(x * partner, axis=1) / temperature
        terms = jax.nn.softplus(lse - positive)
        return parallel.reduce_losses(terms, anchors.mask, "mean", axis_name)
    if candidates is None:
        if partner is not None and takes_symmetric_tiles(temperature, ring=ring):
            total, count = _symmetric_tiles.symmetric_ntxent(
                anchors.emb,
                partner,
                anchors.labels,
                anchors.mask,
                temperature,
                block_size,
                axis_name,
            )
            return _global_mean(total, count, axis_name)
        if axis_name is not None:
            raise ValueError("Under `axis_name` (no ring) pass the gathered `candidates`.")
        candidates = anchors
    total, count = _fused_slabs.fused_ntxent(
        anchors.emb,
        candidates.emb,
        partner,
        anchors.meta,
        candidates.meta,
        temperature,
        block_size,
        candidate_grad,
        supcon,
    )
    return _global_mean(total, count, axis_name)
