"""The one entry point of the tiled NT-Xent algorithms: the mean of its terms.

``ntxent_loss``, ``simclr_loss`` and ``moco_loss`` (and through
``ntxent_loss``'s spec, ``xbm_loss``) call ``tiled_ntxent`` with named
arguments; it picks the algorithm:

- ``ring=True``: ``_lse_tiles``, [block, block] tiles with a running
  log-sum-exp while the candidate blocks travel around the devices;
- one device, the anchors their own candidates, one given positive per row
  (SimCLR) and ``_symmetric_tiles.symmetric_applies(temperature)``:
  ``_symmetric_tiles``, only the tiles on and above the diagonal of S;
- otherwise ``_fused_slabs``: slabs of ``block_size`` anchor rows against all
  candidates, value and gradient in one pass.

All three give the dense loss's value and gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import parallel
from jaxmetric.losses import _fused_slabs, _lse_tiles, _symmetric_tiles
from jaxmetric.losses._tiling import Rows


def _global_mean(total: jax.Array, count: jax.Array, axis_name: str | None) -> jax.Array:
    return parallel.safe_divide(
        parallel.global_sum(total, axis_name), parallel.global_sum(count, axis_name)
    )


def takes_symmetric_tiles(temperature: float, *, axis_name: str | None, ring: bool) -> bool:
    """Whether ``tiled_ntxent`` takes the symmetric tiles when the anchors are
    their own candidates (``candidates=None``) and each has a given ``partner``.

    A caller whose candidates would be built from other arrays (SimCLR's
    gathered views) asks first, so it builds them only when they are used.
    """
    return not ring and axis_name is None and _symmetric_tiles.symmetric_applies(temperature)


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
        if axis_name is not None:
            raise ValueError("Under `axis_name` (no ring) pass the gathered `candidates`.")
        if partner is not None and takes_symmetric_tiles(
            temperature, axis_name=axis_name, ring=ring
        ):
            total, count = _symmetric_tiles.symmetric_ntxent(
                anchors.emb, partner, anchors.labels, anchors.mask, temperature, block_size
            )
            return parallel.safe_divide(total, count)
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
    )
    return _global_mean(total, count, axis_name)
