"""Bad input raises a ValueError (or TypeError) at trace time naming the argument.

A table derived from each loss's signature, for the primary case of every
loss of the registry (wrong ranks and dtypes, labels and masks of another
length, an unbound ``axis_name``, non-positive temperatures, unknown names,
negative margins, non-positive scales), the same under ``jit``, and
hand-written cases with the message they must give.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import pytest

import jaxmetric as jm
from tests.losses import cases

FAMILY = "bad_inputs"
CASES = cases.for_family(FAMILY)

EMB = jnp.ones((6, 4))
LABELS = jnp.array([0, 0, 1, 1, 2, 2])
W = jnp.ones((3, 4))
QUEUE = jnp.ones((8, 4))


def _call(case: cases.Case):
    """call(first, second, **kwargs): second is the labels of a labelled case,
    else the second array (another view, keys, positives)."""

    def call(first, second, **kwargs):
        return case.call(
            first,
            None if case.labelled else second,
            second if case.labelled else None,
            weights=W,
            queue=QUEUE,
            memory=jm.init_queue(4, 4),
            **kwargs,
        )

    return call


def _table():
    """(id, case, first, second, kwargs, the argument the error must name)."""
    out = []
    for case in CASES:
        params = inspect.signature(case.fn).parameters
        positional = [
            p.name
            for p in params.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        first, second = positional[:2]
        labelled = case.labelled
        other = LABELS if labelled else EMB
        table = [
            ("rank1", jnp.ones(6), other, {}, first),
            ("rank3", jnp.ones((6, 4, 1)), other, {}, first),
            ("int_embeddings", EMB.astype(jnp.int32), other, {}, first),
            ("mask_length", EMB, other, {"mask": jnp.ones(5, bool)}, "mask"),
            ("mask_rank", EMB, other, {"mask": jnp.ones((6, 1), bool)}, "mask"),
            ("axis_name_unbound", EMB, other, {"axis_name": "data"}, "axis_name"),
        ]
        if labelled:
            table += [
                ("labels_length", EMB, LABELS[:5], {}, "labels"),
                ("labels_rank", EMB, LABELS[:, None], {}, "labels"),
                ("labels_float", EMB, LABELS.astype(jnp.float32), {}, "labels"),
            ]
        else:
            table += [
                ("second_rank1", EMB, jnp.ones(6), {}, second),
                ("second_batch", EMB, EMB[:5], {}, second),
                ("second_dim", EMB, EMB[:, :3], {}, second),
            ]
        if "labels" in params and not labelled:  # npair's optional labels
            table += [
                ("labels_length", EMB, EMB, {"labels": LABELS[:5]}, "labels"),
                ("labels_float", EMB, EMB, {"labels": LABELS.astype(jnp.float32)}, "labels"),
            ]
        if "temperature" in params:
            table += [
                ("temperature_zero", EMB, other, {"temperature": 0.0}, "temperature"),
                ("temperature_negative", EMB, other, {"temperature": -0.5}, "temperature"),
            ]
        for arg in ("metric", "mining", "reduction"):
            if arg in params:
                table.append((f"unknown_{arg}", EMB, other, {arg: "nonsense"}, arg))
        for arg in ("margin", "pos_margin", "neg_margin", "l2_reg", "m"):
            if arg in params:
                table.append((f"negative_{arg}", EMB, other, {arg: -1.0}, arg))
        for arg in ("alpha", "beta", "gamma", "scale"):
            if arg in params and case.loss != "angular_loss":
                table.append((f"nonpositive_{arg}", EMB, other, {arg: 0.0}, arg))
        out += [pytest.param(case, *row[1:], id=f"{case.loss}-{row[0]}") for row in table]
    return out


@pytest.mark.parametrize("case, first, second, kwargs, argument", _table())
def test_loss_rejects_bad_input_naming_the_argument(case, first, second, kwargs, argument):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        _call(case)(first, second, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[case.loss for case in CASES])
def test_loss_errors_surface_at_trace_time_under_jit(case):
    second = LABELS[:5] if case.labelled else EMB[:5]
    with pytest.raises((ValueError, TypeError), match=r"`\w+`"):
        jax.jit(_call(case))(EMB, second)


LABELLED = [case for case in CASES if case.labelled]


@pytest.mark.parametrize("case", LABELLED, ids=[case.loss for case in LABELLED])
def test_label_losses_check_shapes(case):
    loss = _call(case)
    with pytest.raises(ValueError, match="`embeddings` must be 2-D"):
        loss(jnp.ones((6,)), LABELS)
    with pytest.raises(ValueError, match="`embeddings` must be 2-D"):
        loss(jnp.ones((6, 4, 1)), LABELS)
    with pytest.raises(ValueError, match="`labels` has length 5"):
        loss(EMB, LABELS[:5])
    with pytest.raises(ValueError, match="`labels` must be 1-D"):
        loss(EMB, LABELS[:, None])
    with pytest.raises(ValueError, match="`labels` must be integers"):
        loss(EMB, LABELS.astype(jnp.float32))
    with pytest.raises(ValueError, match="`embeddings` must be a floating"):
        loss(EMB.astype(jnp.int32), LABELS)
    with pytest.raises(ValueError, match=r"`mask` must have shape \(6,\)"):
        loss(EMB, LABELS, mask=jnp.ones(5, bool))
    # The same errors surface under jit, at trace time.
    with pytest.raises(ValueError, match="`labels` has length 5"):
        jax.jit(loss)(EMB, LABELS[:5])


WITH_TEMPERATURE = [
    case for case in CASES if "temperature" in inspect.signature(case.fn).parameters
]


@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_temperature_must_be_positive(temperature):
    for case in WITH_TEMPERATURE:
        second = LABELS if case.labelled else EMB
        with pytest.raises(ValueError, match="`temperature` must be > 0"):
            _call(case)(EMB, second, temperature=temperature)


# (call, the argument the message must name in backticks)
NAMED_ARGUMENT_CASES = [
    (lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 4), loss="npair"), "loss"),
    (lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 3)), "memory.embeddings"),
    (lambda: jm.proxy_anchor_loss(EMB, LABELS, jnp.ones((3, 5))), "proxies"),
    (lambda: jm.proxy_nca_loss(EMB, LABELS, jnp.ones(3)), "proxies"),
    (lambda: jm.arcface_loss(EMB, LABELS, jnp.ones((3, 2))), "weights"),
    (lambda: jm.cosface_loss(EMB, LABELS, jnp.ones((2, 3, 4))), "weights"),
    (lambda: jm.moco_loss(EMB, EMB, jnp.ones((8, 3))), "queue"),
    (lambda: jm.moco_loss(EMB, EMB, jnp.ones(8)), "queue"),
    (lambda: jm.moco_loss(EMB, EMB, QUEUE, queue_mask=jnp.ones(7, bool)), "queue_mask"),
    (lambda: jm.angular_loss(EMB, LABELS, alpha=95.0), "alpha"),
    (lambda: jm.ntxent_loss(EMB, LABELS, block_size=0), "block_size"),
    (lambda: jm.simclr_loss(EMB, EMB, block_size=-2), "block_size"),
]


@pytest.mark.parametrize(
    "call, argument",
    [
        pytest.param(call, argument, id=f"loss-{i}-{argument}")
        for i, (call, argument) in enumerate(NAMED_ARGUMENT_CASES)
    ],
)
def test_kernel_rejects_bad_input_naming_the_argument(call, argument):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call()


A, B4 = jnp.ones((4, 3)), jnp.ones((4, 3))
# id -> (call, the message: a regular expression)
MESSAGE_CASES = {
    # Unknown names.
    "triplet-unknown-metric": (
        lambda: jm.triplet_margin_loss(EMB, LABELS, metric="l1"),
        "Unknown `metric`",
    ),
    "triplet-unknown-mining": (
        lambda: jm.triplet_margin_loss(EMB, LABELS, mining="semihard"),
        "Unknown `mining` 'semihard'",
    ),
    "triplet-unknown-reduction": (
        lambda: jm.triplet_margin_loss(EMB, LABELS, reduction="avg"),
        "Unknown `reduction`",
    ),
    "contrastive-unknown-metric": (
        lambda: jm.contrastive_loss(EMB, LABELS, metric="dot"),
        "Unknown `metric`",
    ),
    "contrastive-unknown-reduction": (
        lambda: jm.contrastive_loss(EMB, LABELS, reduction="max"),
        "Unknown `reduction`",
    ),
    # Hyper-parameters of the seed losses.
    "triplet-margin": (
        lambda: jm.triplet_margin_loss(EMB, LABELS, margin=-0.1),
        "`margin` must be >= 0",
    ),
    "contrastive-neg_margin": (
        lambda: jm.contrastive_loss(EMB, LABELS, neg_margin=-1.0),
        "`neg_margin` must be >= 0",
    ),
    "contrastive-pos_margin": (
        lambda: jm.contrastive_loss(EMB, LABELS, pos_margin=-1.0),
        "`pos_margin` must be >= 0",
    ),
    **{
        f"angular-alpha{alpha}": (
            lambda alpha=alpha: jm.angular_loss(EMB, LABELS, alpha=alpha),
            "`alpha` must be in",
        )
        for alpha in (0.0, 90.0, -5.0)
    },
    "npair-l2_reg": (lambda: jm.npair_loss(EMB, EMB, l2_reg=-1.0), "`l2_reg` must be >= 0"),
    # Shapes of the pair losses.
    "simclr-shapes": (
        lambda: jm.simclr_loss(EMB, EMB[:5]),
        "`z1` and `z2` must have the same shape",
    ),
    "simclr-rank": (lambda: jm.simclr_loss(EMB[0], EMB[0]), "`z1` must be 2-D"),
    "npair-shapes": (lambda: jm.npair_loss(EMB, EMB[:, :3]), "`anchors` and `positives`"),
    "npair-labels": (lambda: jm.npair_loss(EMB, EMB, labels=LABELS[:5]), "`labels` has length 5"),
    "moco-keys": (lambda: jm.moco_loss(EMB, EMB[:4], EMB), "`queries` and `keys`"),
    "moco-queue": (lambda: jm.moco_loss(EMB, EMB, jnp.ones((8, 3))), "`queue` rows"),
    "moco-queue_mask": (
        lambda: jm.moco_loss(EMB, EMB, jnp.ones((8, 4)), queue_mask=jnp.ones(7, bool)),
        r"`queue_mask` must have shape \(8,\)",
    ),
    # axis_name outside a mapped context.
    **{
        f"{name}-axis_name": (call, "`axis_name`='data' is not bound")
        for name, call in {
            "ntxent": lambda: jm.ntxent_loss(EMB, LABELS, axis_name="data"),
            "triplet": lambda: jm.triplet_margin_loss(EMB, LABELS, axis_name="data"),
            "moco": lambda: jm.moco_loss(EMB, EMB, EMB, axis_name="data"),
            "simclr": lambda: jm.simclr_loss(EMB, EMB, axis_name="data"),
            "npair": lambda: jm.npair_loss(EMB, EMB, axis_name="data"),
            "byol": lambda: jm.byol_loss(A, B4, axis_name="data"),
        }.items()
    },
    # The losses beyond the seeds.
    "supcon-temperature": (
        lambda: jm.supcon_loss(EMB, LABELS, temperature=0.0),
        "`temperature` must be > 0",
    ),
    "snn-temperature": (
        lambda: jm.soft_nearest_neighbor_loss(EMB, LABELS, temperature=-1.0),
        "`temperature`",
    ),
    "proxy_nca-temperature": (
        lambda: jm.proxy_nca_loss(EMB, LABELS, W, temperature=0.0),
        "`temperature`",
    ),
    "multi_similarity-alpha": (
        lambda: jm.multi_similarity_loss(EMB, LABELS, alpha=0.0),
        "`alpha` must be > 0",
    ),
    "multi_similarity-beta": (
        lambda: jm.multi_similarity_loss(EMB, LABELS, beta=-1.0),
        "`beta` must be > 0",
    ),
    "multi_similarity-epsilon": (
        lambda: jm.multi_similarity_loss(EMB, LABELS, epsilon=-0.1),
        "`epsilon` must be >= 0",
    ),
    "circle-gamma": (lambda: jm.circle_loss(EMB, LABELS, gamma=0.0), "`gamma` must be > 0"),
    "circle-m": (lambda: jm.circle_loss(EMB, LABELS, m=-0.1), "`m` must be >= 0"),
    "lifted-neg_margin": (
        lambda: jm.lifted_structure_loss(EMB, LABELS, neg_margin=-1.0),
        "`neg_margin`",
    ),
    "proxy_anchor-alpha": (
        lambda: jm.proxy_anchor_loss(EMB, LABELS, W, alpha=0.0),
        "`alpha` must be > 0",
    ),
    "proxy_anchor-margin": (
        lambda: jm.proxy_anchor_loss(EMB, LABELS, W, margin=-0.1),
        "`margin` must be >= 0",
    ),
    "proxy_anchor-proxies": (
        lambda: jm.proxy_anchor_loss(EMB, LABELS, jnp.ones((3, 5))),
        r"`proxies` must have",
    ),
    "proxy_nca-proxies": (
        lambda: jm.proxy_nca_loss(EMB, LABELS, jnp.ones((3,))),
        r"`proxies` must be 2-D",
    ),
    "arcface-weights": (
        lambda: jm.arcface_loss(EMB, LABELS, jnp.ones((3, 2))),
        r"`weights` must have",
    ),
    "arcface-margin": (
        lambda: jm.arcface_loss(EMB, LABELS, W, margin=2.0),
        r"`margin` is in radians",
    ),
    "arcface-scale": (lambda: jm.arcface_loss(EMB, LABELS, W, scale=0.0), r"`scale` must be > 0"),
    "cosface-margin": (
        lambda: jm.cosface_loss(EMB, LABELS, W, margin=-0.1),
        r"`margin` must be >= 0",
    ),
    "xbm-loss": (
        lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 4), loss="npair"),
        "Unknown `loss`",
    ),
    "xbm-unknown-hyper": (
        lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 4), loss="supcon", margin=1.0),
        "Unknown hyper-parameter `margin`",
    ),
    "xbm-temperature": (
        lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 4), loss="supcon", temperature=0.0),
        "`temperature` must be > 0",
    ),
    "xbm-memory": (
        lambda: jm.xbm_loss(EMB, LABELS, jm.init_queue(4, 3)),
        "`memory.embeddings` has",
    ),
    # The non-contrastive SSL losses and MoCo v3.
    "byol-shapes": (lambda: jm.byol_loss(A, B4[:3]), "`predictions` and `targets`"),
    "simsiam-rank": (lambda: jm.simsiam_loss(A[0], B4), "`predictions` must be 2-D"),
    "barlow_twins-lambda_offdiag": (
        lambda: jm.barlow_twins_loss(A, B4, lambda_offdiag=-1.0),
        "`lambda_offdiag`",
    ),
    "barlow_twins-epsilon": (lambda: jm.barlow_twins_loss(A, B4, epsilon=0.0), "`epsilon`"),
    "vicreg-var_weight": (lambda: jm.vicreg_loss(A, B4, var_weight=-1.0), "`var_weight`"),
    "vicreg-mask": (lambda: jm.vicreg_loss(A, B4, mask=jnp.ones(3, bool)), "`mask`"),
    "mocov3-temperature": (lambda: jm.mocov3_loss(A, B4, temperature=0.0), "`temperature`"),
    "mocov3-keys": (
        lambda: jm.mocov3_loss(A, B4.astype(jnp.int32)),
        "`keys` must be a floating",
    ),
}


@pytest.mark.parametrize("name", list(MESSAGE_CASES))
def test_bad_input_message(name):
    call, match = MESSAGE_CASES[name]
    with pytest.raises(ValueError, match=match):
        call()
