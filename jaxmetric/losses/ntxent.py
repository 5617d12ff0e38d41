"""NT-Xent: the normalised temperature-scaled cross-entropy of SimCLR."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmetric import _checks, parallel
from jaxmetric.distances import l2_normalize
from jaxmetric.losses import _common
from jaxmetric.losses._tiled_ntxent import (
    check_block_size,
    choose_block_size,
    takes_symmetric_tiles,
    tiled_ntxent,
)
from jaxmetric.losses._tiling import Rows


def check(*, temperature: float, block_size: int | str | None) -> None:
    """Checks the hyper-parameters: T > 0; block_size "auto", None or a positive int."""
    _checks.check_positive(temperature, "temperature")
    check_block_size(block_size)


def terms(batch: _common.Batch, *, temperature: float, **_) -> tuple[jax.Array, jax.Array]:
    """Per positive pair NT-Xent terms [b, M] and their validity mask (dense)."""
    logits = batch.anchors @ batch.candidates.T / temperature  # [b, M]
    pos, neg = batch.pair_masks()
    # log sum over the anchor's negatives; the positive itself is added below,
    # the anchor's other positives are left out of the denominator.
    negative_lse = _common.masked_logsumexp(logits, neg, axis=1)
    # -log(e^s / (e^s + sum_n e^s_n)) = softplus(lse_neg - s)
    terms = jax.nn.softplus(negative_lse[:, None] - logits)
    return terms, pos


def tiled_value(
    batch: _common.Batch,
    axis_name: str | None,
    *,
    temperature: float,
    block_size: int | str | None,
    supcon: bool = False,
) -> jax.Array | None:
    """The mean NT-Xent (or SupCon) term of ``batch`` from row slabs, or None
    where ``block_size`` (after "auto") asks for the dense version."""
    block_size = choose_block_size(
        block_size, rows=batch.anchors.shape[0], candidates=batch.candidates.shape[0]
    )
    if block_size is None:
        return None
    anchors = Rows(batch.anchors, batch.labels, batch.mask, batch.anchor_index)
    num_candidates = batch.candidates.shape[0]
    candidates = Rows(
        batch.candidates,
        batch.candidate_labels,
        batch.candidate_mask,
        jnp.arange(num_candidates, dtype=jnp.int32),
    )
    return tiled_ntxent(
        anchors,
        candidates,
        temperature=temperature,
        block_size=block_size,
        axis_name=axis_name,
        supcon=supcon,
    )


def value(
    batch: _common.Batch,
    axis_name: str | None,
    *,
    temperature: float,
    block_size: int | str | None,
) -> jax.Array:
    """The mean of ``terms``: from row slabs, or dense for ``block_size=None``
    (same value and gradient)."""
    tiled = tiled_value(batch, axis_name, temperature=temperature, block_size=block_size)
    if tiled is not None:
        return tiled
    return _common.mean_over_valid(*terms(batch, temperature=temperature), axis_name)


def _check_ring(ring: bool, axis_name: str | None) -> None:
    if ring and axis_name is None:
        raise ValueError(
            "`ring`=True passes candidate blocks between devices: it needs `axis_name`."
        )


def ntxent_loss(
    embeddings: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 0.07,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
    block_size: int | str | None = "auto",
    ring: bool = False,
) -> jax.Array:
    r"""NT-Xent over positive pairs defined by labels.

    With cosine similarities :math:`s_{ij}` and temperature T, for every
    ordered positive pair (i, p), i != p, y_i = y_p:

    .. math::
        \ell(i, p) = -\log \frac{e^{s_{ip}/T}}
            {e^{s_{ip}/T} + \sum_{n: y_n \ne y_i} e^{s_{in}/T}}

    averaged over all positive pairs (anchors with more positives weigh more;
    the anchor's other positives are not in the denominator).

    Args:
      embeddings: [B, D] float32, bfloat16 or float16; cosine similarity.
      labels: [B] integer labels; equal labels are positives.
      temperature: T > 0.
      mask: [B] bool, valid rows. None: all valid.
      axis_name: mapped axis; positives and negatives come from all devices.
      block_size: how the loss is computed; every choice gives the same
        value and gradient. "auto" (default): the fastest for the shapes and
        the backend (on CPU: slabs of 128 rows, dense up to 2^16 logits; on
        GPU / TPU: dense up to 2^26 logits). None: the dense [B, B]
        similarity matrix and autodiff. An int: slabs of ``block_size``
        anchor rows, each against all candidates, with value and gradient
        computed together (three GEMMs, like the dense version), so memory
        grows as ``block_size`` x B, not B^2.
      ring: with ``axis_name``, pass candidate blocks from device to device
        with ``ppermute`` instead of gathering them all, so per-device memory
        does not grow with the number of devices: ``block_size`` x
        ``block_size`` tiles with a running log-sum-exp and recomputation in
        the backward pass (None: one tile per local block).

    Returns:
      A float32 scalar; 0.0 (zero gradient) when there is no positive pair.

    Example:
      >>> import jax.numpy as jnp, jaxmetric
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
      >>> loss = jaxmetric.ntxent_loss(x, jnp.array([0, 0, 1, 1]), temperature=0.5)

    Equals ``optax.losses.ntxent`` and PML's ``NTXentLoss(temperature)``
    wherever a positive pair exists (optax returns NaN when none does).

    Reference:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations", ICML 2020.
    """
    hyper = {"temperature": temperature, "block_size": block_size}
    if not ring:
        return _common.label_loss(SPEC, embeddings, labels, mask, axis_name, **hyper)
    # The ring passes the local rows around: no gathered candidates.
    check(**hyper)
    _check_ring(ring, axis_name)
    batch = _common.labelled_batch(
        embeddings, labels, mask, axis_name, normalize=True, gather=False
    )
    local = batch.anchors.shape[0]
    block_size = choose_block_size(
        block_size, rows=local, candidates=local * parallel.axis_size(axis_name)
    )
    return tiled_ntxent(
        Rows(batch.anchors, batch.labels, batch.mask, batch.anchor_index),
        temperature=temperature,
        block_size=block_size or local,
        axis_name=axis_name,
        ring=True,
    )


# ``ring`` is not a hyper-parameter of the spec: it changes where the
# candidates live, which the spec's batch (gathered candidates) fixes.
SPEC = _common.LabelLoss(ntxent_loss, check=check, terms=terms, value=value)


def _gathered_views(z1, z2, pair_id, mask, axis_name) -> Rows:
    """Both views of every device's pairs: the first views, then the second."""
    ids, pair_mask = parallel.gather(pair_id, axis_name), parallel.gather(mask, axis_name)
    return Rows(
        emb=jnp.concatenate([parallel.gather(z1, axis_name), parallel.gather(z2, axis_name)]),
        labels=jnp.concatenate([ids, ids]),
        mask=jnp.concatenate([pair_mask, pair_mask]),
        index=jnp.arange(2 * ids.shape[0], dtype=jnp.int32),
    )


def simclr_loss(
    z1: jax.Array,
    z2: jax.Array,
    *,
    temperature: float = 0.1,
    mask: jax.Array | None = None,
    axis_name: str | None = None,
    block_size: int | str | None = "auto",
    ring: bool = False,
) -> jax.Array:
    r"""SimCLR's NT-Xent for two views of N examples.

    Anchor z1_i has positive z2_i and the other 2N - 2 views as negatives
    (and z2_i symmetrically); with cosine similarity s and temperature T:

    .. math::
        L = \frac{1}{2N} \sum_{i=1}^{N} \big(\ell(z^1_i, z^2_i)
            + \ell(z^2_i, z^1_i)\big),\quad
        \ell(u, v) = -\log \frac{e^{s(u, v)/T}}{\sum_{w \ne u} e^{s(u, w)/T}}

    Under ``axis_name`` N is the global batch: with 8 devices of 512 local
    pairs every anchor sees 8,190 negatives.

    Args:
      z1: [N, D] first views (float32, bfloat16 or float16).
      z2: [N, D] second views, row i pairs with ``z1[i]``.
      temperature: T > 0 (SimCLR: 0.1 to 0.5).
      mask: [N] bool, valid pairs. None: all valid.
      axis_name: mapped axis; negatives come from all devices.
      block_size: how the loss is computed; every choice gives the same
        value and gradient. "auto" (default): the fastest for the shapes and
        the backend (on CPU: the tiles below, one tile up to 2,048 views and
        256 rows beyond; on GPU / TPU: dense up to 2^26 logits per device).
        None: the dense [2N, 2N] similarity matrix and autodiff. An int:
        value and gradient computed together, tile by tile, with memory
        O(``block_size`` x 2N). With T >= 1/30, S is
        symmetric and each pair of ``block_size`` x ``block_size`` tiles is
        formed once (two GEMMs' worth instead of three); under
        ``axis_name`` the devices share these tiles out, each forming 1/n of
        them from the gathered views, so the work per device falls as 1/n
        (the dense and slab versions do a [2N / n, 2N] slab each). With a
        smaller T: slabs of ``block_size`` rows against all 2N candidates
        (three GEMMs).
      ring: with ``axis_name``, pass the candidate blocks around the devices
        with ``ppermute`` instead of gathering them (Inf-CL), in
        ``block_size`` x ``block_size`` tiles with a running log-sum-exp and
        recomputation in the backward pass; per-device memory does not grow
        with the device count.

    Returns:
      A float32 scalar; 0.0 when no pair is valid.

    Example:
      >>> import jax, jaxmetric
      >>> z1, z2 = jax.random.normal(jax.random.key(0), (2, 8, 16))
      >>> loss = jaxmetric.simclr_loss(z1, z2, temperature=0.5)
      >>> tiled = jaxmetric.simclr_loss(z1, z2, temperature=0.5, block_size=4)
      >>> bool(abs(loss - tiled) < 1e-5)
      True

    Equals ``ntxent_loss(concat([z1, z2]), concat([arange(N), arange(N)]))``
    and PML's ``NTXentLoss`` with the same labels.

    Reference:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual
      Representations", ICML 2020, Algorithm 1.
    """
    check(temperature=temperature, block_size=block_size)
    _check_ring(ring, axis_name)
    z1, z2 = _checks.check_embedding_pair(z1, z2, "z1", "z2")
    num_pairs = z1.shape[0]
    mask = _checks.check_mask(mask, num_pairs)
    z1, z2 = l2_normalize(z1), l2_normalize(z2)
    pair_id = parallel.anchor_index(num_pairs, axis_name)
    global_pairs = num_pairs * parallel.axis_size(axis_name)
    # The label of a view is its pair: the other view is the only positive.
    views = Rows(
        emb=jnp.concatenate([z1, z2]),
        labels=jnp.concatenate([pair_id, pair_id]),
        mask=jnp.concatenate([mask, mask]),
        index=jnp.concatenate([pair_id, pair_id + global_pairs]),
    )
    symmetric = takes_symmetric_tiles(temperature, ring=ring)
    block_size = choose_block_size(
        block_size, rows=2 * num_pairs, candidates=2 * global_pairs, symmetric=symmetric
    )
    if block_size is None and not ring:
        candidates = _gathered_views(z1, z2, pair_id, mask, axis_name)
        batch = _common.Batch(
            anchors=views.emb,
            labels=views.labels,
            mask=views.mask,
            candidates=candidates.emb,
            candidate_labels=candidates.labels,
            candidate_mask=candidates.mask,
            anchor_index=views.index,
        )
        return value(batch, axis_name, temperature=temperature, block_size=None)

    # Each view's positive is the other view of its pair, which is local.
    partner = jnp.concatenate([z2, z1])
    # A ring, or the symmetric tiles: the views are their own candidates.
    candidates = None
    if not ring and not symmetric:
        candidates = _gathered_views(z1, z2, pair_id, mask, axis_name)
    return tiled_ntxent(
        views,
        candidates,
        temperature=temperature,
        block_size=block_size or views.emb.shape[0],
        partner=partner,
        axis_name=axis_name,
        ring=ring,
    )
