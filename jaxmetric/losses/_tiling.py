"""Rows and tiles shared by the tiled NT-Xent algorithms.

A ``Rows`` holds a block of embeddings with the integer metadata that decides
each pair's role: labels (a candidate of another label is a negative), the
validity mask and the global row index (an anchor never pairs with itself).
``tiles`` pads the rows to a multiple of the tile size, the padding masked
out, and ``tile_masks`` gives one tile's positive and negative masks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Rows(NamedTuple):
    """A block of rows (anchors or candidates): embeddings [m, D] and per-row metadata."""

    emb: jax.Array
    labels: jax.Array  # [m] int32; negatives are candidates of another label
    mask: jax.Array  # [m] bool, valid rows
    index: jax.Array  # [m] int32 global index (to skip an anchor's own column)

    @property
    def meta(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(labels, mask, index), the non-differentiable part."""
        return self.labels, self.mask, self.index


def pad_rows(x: jax.Array, multiple: int, value) -> jax.Array:
    pad = (-x.shape[0]) % multiple
    if not pad:
        return x
    widths = [(0, pad)] + [(0, 0)] * (x.ndim - 1)
    return jnp.pad(x, widths, constant_values=value)


def tiles(rows: Rows, block: int) -> Rows:
    """Pads rows to a multiple of ``block`` (padding masked out) and splits them into tiles."""

    def tile(x, value):
        x = pad_rows(x, block, value)
        return x.reshape(x.shape[0] // block, block, *x.shape[1:])

    values = {"emb": 0.0, "labels": -1, "mask": False, "index": -1}
    return Rows(**{k: tile(v, values[k]) for k, v in rows._asdict().items()})


def tile_masks(a: Rows, c: Rows) -> tuple[jax.Array, jax.Array]:
    """Positive and negative masks of one [br, bc] tile."""
    valid = a.mask[:, None] & c.mask[None, :]
    same = a.labels[:, None] == c.labels[None, :]
    not_self = a.index[:, None] != c.index[None, :]
    return same & not_self & valid, ~same & valid
