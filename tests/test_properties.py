"""Property-based tests (hypothesis) of every public loss and miner.

For random batches (batch 1, 2 and 8; label layouts: all distinct, all
equal, one singleton class, two classes, random; scales 1e-6 to 1e6;
identical, zero and half-zero embeddings; random padding masks), in float32,
bfloat16 and float16, at temperature 0.01 (the lowest asked for):

- the value and every gradient are finite;
- a batch with nothing valid (every row masked) gives 0 and a zero gradient,
  and so does a batch without a positive pair, for the losses whose formula
  has no term then;
- masked rows get exactly zero gradient.

Speed: XLA compiles each loss once, for three fixed batch shapes (batch 1,
2 and 8) and every dtype inside that one function; hypothesis draws only
the data (NumPy, from a drawn seed) and every example fills all three
shapes. ``derandomize=True``: the
same 200 examples on every run, so CI is reproducible.
"""

from __future__ import annotations

import functools
import inspect
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxmetric as jm
from jaxmetric import losses

# At least 200 per loss in CI; fewer while developing (e.g. =20).
EXAMPLES = int(os.environ.get("JAXMETRIC_PROPERTY_EXAMPLES", "200"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)

BUCKETS = ((1, 16), (2, 2), (8, 6))  # (batch, dim): the only shapes compiled
C = 4  # classes of the proxies / class weights
K = 6  # slots of the MoCo queue and of the XBM memory
DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
TEMPERATURE = 0.01  # the lowest the issue asks for: the hardest case
F16_MAX = 1e4  # float16 holds at most 65504: its inputs are clipped to this


def _partner(e):
    """The second element of pair i: a function of row i only, so masking
    row i masks the whole pair. Built in float32 and then cast like ``e``,
    so its gradient meets ``e``'s in float32."""
    return 0.5 * e[:, ::-1]


# name -> (fn(e, y, mask, temperature, extra), takes a temperature,
#          0 when no positive pair exists, 0 when no negative exists)
def _label(fn, **kw):
    return lambda e, y, m, t, x: fn(e, y, mask=m, **kw)


def _label_t(fn, **kw):
    return lambda e, y, m, t, x: fn(e, y, mask=m, temperature=t, **kw)


def _pair(fn, **kw):
    return lambda e, y, m, t, x: fn(e, x["partner"], mask=m, **kw)


def _pair_t(fn, **kw):
    return lambda e, y, m, t, x: fn(e, x["partner"], mask=m, temperature=t, **kw)


VARIANTS = {
    **{
        f"triplet_{mining}": (_label(jm.triplet_margin_loss, mining=mining), False, True, True)
        for mining in jm.mining.TRIPLET_MINING
    },
    "triplet_soft_raw": (
        _label(jm.triplet_margin_loss, mining="batch_hard", soft=True, normalize=False),
        False,
        True,
        True,
    ),
    "triplet_sq_raw_sum": (
        _label(
            jm.triplet_margin_loss, metric="squared_euclidean", normalize=False, reduction="sum"
        ),
        False,
        True,
        True,
    ),
    "contrastive": (_label(jm.contrastive_loss), False, False, False),
    "angular": (_label(jm.angular_loss), False, True, True),
    "ntxent": (_label_t(jm.ntxent_loss), True, True, False),
    "ntxent_blocks": (_label_t(jm.ntxent_loss, block_size=2), True, True, False),
    "supcon": (_label_t(jm.supcon_loss), True, True, False),
    "multi_similarity": (_label(jm.multi_similarity_loss), False, False, False),
    "circle": (_label(jm.circle_loss), False, True, True),
    "lifted": (_label(jm.lifted_structure_loss), False, True, True),
    "snn": (_label_t(jm.soft_nearest_neighbor_loss), True, True, False),
    "proxy_anchor": (
        lambda e, y, m, t, x: jm.proxy_anchor_loss(e, y, x["w"], mask=m),
        False,
        False,
        False,
    ),
    "proxy_nca": (
        lambda e, y, m, t, x: jm.proxy_nca_loss(e, y, x["w"], mask=m, temperature=t),
        True,
        False,
        False,
    ),
    "arcface": (lambda e, y, m, t, x: jm.arcface_loss(e, y, x["w"], mask=m), False, False, False),
    "cosface": (lambda e, y, m, t, x: jm.cosface_loss(e, y, x["w"], mask=m), False, False, False),
    "xbm_contrastive": (
        lambda e, y, m, t, x: jm.xbm_loss(e, y, x["memory"], mask=m),
        False,
        False,
        False,
    ),
    "xbm_supcon": (
        lambda e, y, m, t, x: jm.xbm_loss(e, y, x["memory"], loss="supcon", mask=m, temperature=t),
        True,
        False,  # the memory may hold a positive
        False,
    ),
    "simclr": (_pair_t(jm.simclr_loss), True, False, False),
    "simclr_blocks": (_pair_t(jm.simclr_loss, block_size=2), True, False, False),
    "npair": (
        lambda e, y, m, t, x: jm.npair_loss(
            e, x["partner"], labels=y, mask=m, temperature=t, l2_reg=0.1
        ),
        True,
        False,
        False,
    ),
    "npair_normalized": (_pair_t(jm.npair_loss, normalize=True), True, False, False),
    "moco": (
        lambda e, y, m, t, x: jm.moco_loss(
            e, x["partner"], x["queue"], queue_mask=x["queue_mask"], mask=m, temperature=t
        ),
        True,
        False,
        False,
    ),
    "nnclr": (
        lambda e, y, m, t, x: jm.nnclr_loss(
            e, x["partner"], x["queue"], support_mask=x["queue_mask"], mask=m, temperature=t
        ),
        True,
        False,
        False,
    ),
    "moco_blocks": (
        lambda e, y, m, t, x: jm.moco_loss(
            e, x["partner"], x["queue"], mask=m, temperature=t, block_size=2
        ),
        True,
        False,
        False,
    ),
}
# The self-supervised losses without negatives (if this version has them).
_SSL = {
    "byol_loss": False,
    "simsiam_loss": False,
    "barlow_twins_loss": False,
    "vicreg_loss": False,
    "mocov3_loss": True,
}
for _name, _temp in _SSL.items():
    if hasattr(losses, _name):
        _fn = getattr(losses, _name)
        VARIANTS[_name.removesuffix("_loss")] = (
            (_pair_t if _temp else _pair)(_fn),
            _temp,
            False,
            False,
        )

# Which public loss each variant exercises: every one must be covered.
COVERS = {
    "triplet_margin_loss": "triplet_all",
    "contrastive_loss": "contrastive",
    "angular_loss": "angular",
    "ntxent_loss": "ntxent",
    "supcon_loss": "supcon",
    "multi_similarity_loss": "multi_similarity",
    "circle_loss": "circle",
    "lifted_structure_loss": "lifted",
    "soft_nearest_neighbor_loss": "snn",
    "proxy_anchor_loss": "proxy_anchor",
    "proxy_nca_loss": "proxy_nca",
    "arcface_loss": "arcface",
    "cosface_loss": "cosface",
    "xbm_loss": "xbm_contrastive",
    "simclr_loss": "simclr",
    "npair_loss": "npair",
    "moco_loss": "moco",
    "nnclr_loss": "nnclr",
    **{name: name.removesuffix("_loss") for name in _SSL},
}


def test_every_public_loss_is_covered():
    for name in losses.__all__:
        assert COVERS.get(name) in VARIANTS, f"{name} has no property test"


@functools.cache
def _compiled(name: str):
    """One jitted function per loss, for all three batch shapes: value and
    gradients, stacked per shape. The largest batch runs in every dtype, the
    batches of 1 and 2 in float32 (compiling is what costs time here)."""
    fn, takes_t, _, _ = VARIANTS[name]
    t = TEMPERATURE if takes_t else None

    def one(e, y, m, w, extra, dtype):
        def loss(e, w):
            partner = _partner(e)
            if dtype == jnp.float16:
                e, w, partner = (jnp.clip(a, -F16_MAX, F16_MAX) for a in (e, w, partner))
            cast = {**extra, "w": w.astype(dtype), "partner": partner.astype(dtype)}
            return fn(e.astype(dtype), y, m, t, cast)

        value, (ge, gw) = jax.value_and_grad(loss, argnums=(0, 1))(e, w)
        return value, ge.astype(jnp.float32), gw.astype(jnp.float32)

    @jax.jit
    def run(batches):
        out = []
        for i, (e, y, m, w, extra) in enumerate(batches):
            dtypes = DTYPES if i == len(batches) - 1 else DTYPES[:1]
            results = [one(e, y, m, w, extra, dtype) for dtype in dtypes]
            out.append(tuple(jnp.stack(r) for r in zip(*results, strict=True)))
        return out

    return run


LAYOUTS = ("distinct", "equal", "singleton", "two_classes", "random")
EMBEDDINGS = ("normal", "identical", "zero", "half_zero", "duplicated_pairs")
MASKS = ("all", "random", "none", "one")
SCALES = (1e-6, 1e-3, 1.0, 1e3, 1e6)


@st.composite
def batches(draw):
    """(layout, embeddings kind, mask kind, scale, seed): one of each
    drawn per example, applied to a batch of every shape."""
    return (
        draw(st.sampled_from(LAYOUTS)),
        draw(st.sampled_from(EMBEDDINGS)),
        draw(st.sampled_from(MASKS)),
        draw(st.sampled_from(SCALES)),
        draw(st.integers(0, 2**31 - 1)),
    )


def _labels(layout: str, b: int, rng: np.random.Generator) -> np.ndarray:
    if layout == "distinct":
        return rng.permutation(b)
    if layout == "equal":
        return np.full(b, rng.integers(0, C))
    if layout == "singleton":  # pairs of one class each, and one class of a single row
        y = np.arange(b) // 2
        y[-1] = b  # its own class (beyond the C classes of the proxy losses)
        return rng.permutation(y)
    if layout == "two_classes":
        return rng.integers(0, 2, size=b)
    return rng.integers(0, 3, size=b)


def _embeddings(kind: str, b: int, d: int, scale: float, rng: np.random.Generator):
    x = rng.normal(size=(b, d))
    if kind == "identical":
        x = np.tile(x[:1], (b, 1))
    elif kind == "zero":
        x = np.zeros((b, d))
    elif kind == "half_zero":
        x[::2] = 0.0
    elif kind == "duplicated_pairs":
        x[1::2] = x[: b // 2 * 2 : 2]
    return scale * x


def _mask(kind: str, b: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "all":
        return np.ones(b, bool)
    if kind == "none":
        return np.zeros(b, bool)
    if kind == "one":
        return np.arange(b) == rng.integers(0, b)
    return rng.random(b) < 0.6


def _draw_one(example, b: int, d: int):
    layout, kind, mask_kind, scale, seed = example
    rng = np.random.default_rng([seed, b])
    y = _labels(layout, b, rng).astype(np.int32)
    e = _embeddings(kind, b, d, scale, rng)
    m = _mask(mask_kind, b, rng)
    # Padding holds garbage that would move every value if it leaked in.
    e[~m] = rng.normal(size=(int((~m).sum()), d)) * 1e3
    extra = {
        "queue": rng.normal(size=(K, d)).astype(np.float32),
        "queue_mask": rng.random(K) < 0.7,
        "memory": jm.MemoryQueue(
            embeddings=rng.normal(size=(K, d)).astype(np.float32),
            labels=rng.integers(0, 3, size=K).astype(np.int32),
            valid=rng.random(K) < 0.7,
            pointer=np.zeros((), np.int32),
        ),
    }
    w = rng.normal(size=(C, d))
    return np.float32(e), y, m, np.float32(w), extra


def _draw(example):
    """One batch per shape in ``BUCKETS``."""
    return tuple(_draw_one(example, b, d) for b, d in BUCKETS)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@SETTINGS
@given(example=batches())
def test_loss_properties(name, example):
    layout = example[0]
    _, _, zero_without_positive, zero_without_negative = VARIANTS[name]
    batches = _draw(example)
    results = jax.device_get(_compiled(name)(batches))
    for (_, y, m, _, _), (values, grads, wgrads) in zip(batches, results, strict=True):
        context = f"{name}: layout={layout}, mask={m.tolist()}, values={values.tolist()}"
        assert np.isfinite(values).all(), context
        assert np.isfinite(grads).all(), context
        assert np.isfinite(wgrads).all(), context
        # Masked rows get exactly zero gradient.
        assert not grads[:, ~m].any(), context
        # Nothing valid: no row, or (for the losses built on such terms) no
        # positive pair / no negative pair among the valid rows.
        valid_labels = y[m].tolist()
        has_positive = len(set(valid_labels)) < len(valid_labels)
        has_negative = len(set(valid_labels)) > 1
        nothing = (
            not m.any()
            or (zero_without_positive and not has_positive)
            or (zero_without_negative and not has_negative)
        )
        if nothing:
            assert not values.any(), context
            assert not grads.any(), context
            assert not wgrads.any(), context


# ----------------------------------------------------------------------------
# Miners and distances.
# ----------------------------------------------------------------------------


@functools.cache
def _miners():
    def one(e, y, m):
        out = {}
        for metric in jm.distances.DISTANCE_METRICS:
            dist, vjp = jax.vjp(lambda e, metric=metric: jm.pairwise_distances(e, metric=metric), e)
            out[f"dist_{metric}"] = dist
            out[f"dist_grad_{metric}"] = vjp(jnp.ones_like(dist))[0]
        sim, vjp = jax.vjp(lambda e: jm.pairwise_similarities(e, metric="cosine"), e)
        out["sim_grad"] = vjp(jnp.ones_like(sim))[0]
        dist = out["dist_euclidean"]
        pos, neg = jm.mining.pair_masks(y, mask=m)
        out.update(pos=pos, neg=neg, sim=sim, dist=dist)
        out["all"] = jm.mining.triplet_mask(pos, neg)
        out["hard"] = jm.mining.hard_triplet_mask(dist, pos, neg)
        out["semi"] = jm.mining.semi_hard_triplet_mask(dist, pos, neg, margin=0.2)
        out["bh_pos"], out["bh_neg"], out["bh_valid"] = jm.mining.batch_hard(dist, pos, neg)
        out["fn_neg"], out["fn_valid"] = jm.mining.facenet_semi_hard(dist, pos, neg)
        out["ms_pos"], out["ms_neg"] = jm.mining.multi_similarity_mask(sim, pos, neg)
        return out

    return jax.jit(lambda batches: [one(e, y, m) for e, y, m, _, _ in batches])


@SETTINGS
@given(example=batches())
def test_miner_properties(example):
    batches = _draw(example)
    for (_, y, m, _, _), o in zip(batches, jax.device_get(_miners()(batches)), strict=True):
        _check_miners(y, m, o)


def _check_miners(y, m, o):
    b = len(y)
    for key, value in o.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.isfinite(value).all(), key
    for metric in jm.distances.DISTANCE_METRICS:
        dist = o[f"dist_{metric}"]
        assert (dist >= 0).all() and not np.diag(dist).any(), metric
    pos, neg, dist = o["pos"], o["neg"], o["dist"]
    valid = m[:, None] & m[None, :]
    same = y[:, None] == y[None, :]
    np.testing.assert_array_equal(pos, same & valid & ~np.eye(b, dtype=bool))
    np.testing.assert_array_equal(neg, ~same & valid)
    triplets = pos[:, :, None] & neg[:, None, :]
    np.testing.assert_array_equal(o["all"], triplets)
    assert not (o["hard"] & ~triplets).any() and not (o["semi"] & ~triplets).any()
    assert not (o["hard"] & o["semi"]).any()  # d(a,n) < d(a,p) vs d(a,n) > d(a,p)
    has_both = pos.any(1) & neg.any(1)
    np.testing.assert_array_equal(o["bh_valid"], has_both)
    rows = np.flatnonzero(has_both)
    p, n = o["bh_pos"][rows], o["bh_neg"][rows]
    assert pos[rows, p].all() and neg[rows, n].all()
    np.testing.assert_array_equal(dist[rows, p], np.where(pos, dist, -np.inf)[rows].max(1))
    np.testing.assert_array_equal(dist[rows, n], np.where(neg, dist, np.inf)[rows].min(1))
    np.testing.assert_array_equal(o["fn_valid"], pos & neg.any(1, keepdims=True))
    a, q = np.nonzero(o["fn_valid"])
    assert neg[a, o["fn_neg"][a, q]].all()
    assert not (o["ms_pos"] & ~pos).any() and not (o["ms_neg"] & ~neg).any()
    assert 0 <= o["bh_pos"].min() and o["bh_pos"].max() < b


def test_loss_signatures_take_mask_and_axis_name():
    """The kernel contract: every loss takes ``mask`` and ``axis_name``."""
    for name in losses.__all__:
        params = inspect.signature(getattr(losses, name)).parameters
        assert "mask" in params and "axis_name" in params, name
