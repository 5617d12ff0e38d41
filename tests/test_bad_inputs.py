"""Bad input, table-driven over every public function: a ValueError (or
TypeError) at trace time whose message names the argument, never a shape
trace from deep inside XLA. The trainer's config likewise, field by field,
before any data is loaded or anything is compiled."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import pytest

import jaxmetric as jm
from jaxmetric import losses
from jaxmetric.train import base_config
from jaxmetric.train import trainer as trainer_module

EMB = jnp.ones((6, 4))
LABELS = jnp.array([0, 0, 1, 1, 2, 2])
W = jnp.ones((3, 4))
QUEUE = jnp.ones((8, 4))
# The third positional argument of the losses that take one, by its name.
THIRD = {
    "proxies": W,
    "weights": W,
    "memory": jm.init_queue(4, 4),
    "queue": QUEUE,
    "support": QUEUE,
}


def _spec(name: str):
    """(call(first, second, **kw), first name, second name, second is labels)."""
    fn = getattr(losses, name)
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    first, second = params[0].name, params[1].name
    extra = [THIRD[p.name] for p in params[2:]]
    return (lambda a, b, **kw: fn(a, b, *extra, **kw)), first, second, second == "labels"


def _cases():
    """(id, loss name, first, second, kwargs, the argument the error must name)."""
    out = []
    for name in losses.__all__:
        fn = getattr(losses, name)
        _, first, second, labelled = _spec(name)
        sig = inspect.signature(fn).parameters
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
        if "labels" in sig and not labelled:  # npair's optional labels
            table += [
                ("labels_length", EMB, EMB, {"labels": LABELS[:5]}, "labels"),
                ("labels_float", EMB, EMB, {"labels": LABELS.astype(jnp.float32)}, "labels"),
            ]
        if "temperature" in sig:
            table += [
                ("temperature_zero", EMB, other, {"temperature": 0.0}, "temperature"),
                ("temperature_negative", EMB, other, {"temperature": -0.5}, "temperature"),
            ]
        for arg in ("metric", "mining", "reduction"):
            if arg in sig:
                table.append((f"unknown_{arg}", EMB, other, {arg: "nonsense"}, arg))
        for arg in ("margin", "pos_margin", "neg_margin", "l2_reg", "m"):
            if arg in sig:
                table.append((f"negative_{arg}", EMB, other, {arg: -1.0}, arg))
        for arg in ("alpha", "beta", "gamma", "scale"):
            if arg in sig and name != "angular_loss":
                table.append((f"nonpositive_{arg}", EMB, other, {arg: 0.0}, arg))
        out += [pytest.param(name, *row[1:], id=f"{name}-{row[0]}") for row in table]
    return out


@pytest.mark.parametrize("name, first, second, kwargs, argument", _cases())
def test_loss_rejects_bad_input_naming_the_argument(name, first, second, kwargs, argument):
    call = _spec(name)[0]
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call(first, second, **kwargs)


@pytest.mark.parametrize("name", losses.__all__)
def test_loss_errors_surface_at_trace_time_under_jit(name):
    call, _, _, labelled = _spec(name)
    second = LABELS[:5] if labelled else EMB[:5]
    with pytest.raises((ValueError, TypeError), match=r"`\w+`"):
        jax.jit(call)(EMB, second)


EXTRA_LOSS_CASES = [
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

DISTANCE_CASES = [
    (lambda: jm.pairwise_distances(jnp.ones(3)), "x"),
    (lambda: jm.pairwise_distances(EMB, jnp.ones((3, 5))), "y"),
    (lambda: jm.pairwise_distances(EMB, jnp.ones(4)), "y"),
    (lambda: jm.pairwise_distances(EMB, metric="manhattan"), "metric"),
    (lambda: jm.pairwise_distances(EMB.astype(jnp.int32)), "x"),
    (lambda: jm.pairwise_similarities(jnp.ones((2, 3, 4))), "x"),
    (lambda: jm.pairwise_similarities(EMB, metric="euclidean"), "metric"),
]

DIST = jnp.ones((6, 6))
POS, NEG = jm.mining.pair_masks(LABELS)
MINING_CASES = [
    (lambda: jm.mining.pair_masks(LABELS[:, None]), "labels"),
    (lambda: jm.mining.pair_masks(LABELS.astype(jnp.float32)), "labels"),
    (lambda: jm.mining.pair_masks(LABELS, LABELS[:, None]), "reference_labels"),
    (lambda: jm.mining.pair_masks(LABELS, mask=jnp.ones(5, bool)), "mask"),
    (
        lambda: jm.mining.pair_masks(LABELS, LABELS[:4], reference_mask=jnp.ones(6, bool)),
        "reference_mask",
    ),
    (lambda: jm.mining.batch_hard(jnp.ones(6), POS, NEG), "dist"),
    (lambda: jm.mining.batch_hard(DIST, POS[:, :5], NEG), "positive_mask"),
    (lambda: jm.mining.batch_hard(DIST, POS, NEG[:5]), "negative_mask"),
    (lambda: jm.mining.hard_triplet_mask(DIST[:, :5], POS, NEG), "positive_mask"),
    (lambda: jm.mining.semi_hard_triplet_mask(DIST, POS, NEG, margin=-0.1), "margin"),
    (lambda: jm.mining.semi_hard_triplet_mask(DIST, POS[0], NEG, margin=0.1), "positive_mask"),
    (lambda: jm.mining.facenet_semi_hard(DIST, POS, NEG[:, :2]), "negative_mask"),
    (lambda: jm.mining.multi_similarity_mask(DIST, POS, NEG, epsilon=-1.0), "epsilon"),
    (lambda: jm.mining.multi_similarity_mask(jnp.ones(6), POS, NEG), "sim"),
    (lambda: jm.mining.triplet_mask(POS, NEG[:5]), "negative_mask"),
]

QUEUE_CASES = [
    (lambda: jm.init_queue(0, 4), "size"),
    (lambda: jm.init_queue(4, 0), "dim"),
    (lambda: jm.enqueue(jm.init_queue(6, 4), jnp.ones(4)), "keys"),
    (lambda: jm.enqueue(jm.init_queue(6, 3), EMB), "keys"),
    (lambda: jm.enqueue(jm.init_queue(12, 4), EMB, LABELS.astype(jnp.float32)), "labels"),
    (lambda: jm.enqueue(jm.init_queue(12, 4), EMB, LABELS[:5]), "labels"),
    (lambda: jm.enqueue(jm.init_queue(12, 4), EMB, mask=jnp.ones(4, bool)), "mask"),
    (lambda: jm.enqueue(jm.init_queue(12, 4), EMB, axis_name="data"), "axis_name"),
    (lambda: jm.ema_update({"w": EMB}, {"w": EMB}, momentum=1.5), "momentum"),
    (lambda: jm.ema_update({"w": EMB}, {"w": EMB}, momentum=-0.1), "momentum"),
]


@pytest.mark.parametrize(
    "call, argument",
    [
        pytest.param(call, argument, id=f"{group}-{i}-{argument}")
        for group, cases in [
            ("loss", EXTRA_LOSS_CASES),
            ("distance", DISTANCE_CASES),
            ("mining", MINING_CASES),
            ("queue", QUEUE_CASES),
        ]
        for i, (call, argument) in enumerate(cases)
    ],
)
def test_kernel_rejects_bad_input_naming_the_argument(call, argument):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call()


# ----------------------------------------------------------------------------
# The trainer's config.
# ----------------------------------------------------------------------------

# (field, bad value, method the field matters for, what the message must say)
CONFIG_CASES = [
    ("method", "dino_v9", "simclr", "`method`"),
    ("batch_size", 0, "simclr", "`batch_size`"),
    ("batch_size", 12, "simclr", "`batch_size`=12 must be divisible by the number of devices 8"),
    ("num_steps", 0, "simclr", "`num_steps`"),
    ("num_steps", -5, "simclr", "`num_steps`"),
    ("log_every", 0, "simclr", "`log_every`"),
    ("num_devices", -1, "simclr", "`num_devices`"),
    ("num_devices", 99, "simclr", "`num_devices`"),
    ("seed", -1, "simclr", "`seed`"),
    ("eval_every", -1, "simclr", "`eval_every`"),
    ("checkpoint_every", -2, "simclr", "`checkpoint_every`"),
    ("keep_checkpoints", 0, "simclr", "`keep_checkpoints`"),
    ("max_consecutive_skipped", -1, "simclr", "`max_consecutive_skipped`"),
    ("dataset.name", "mnist2d", "simclr", "`dataset.name`"),
    ("dataset.name", "tfds", "simclr", "`dataset.tfds_name`"),
    ("dataset.test_fraction", 1.5, "supervised", "`dataset.test_fraction`"),
    ("dataset.image_size", -1, "simclr", "`dataset.image_size`"),
    ("model.encoder", "vit", "simclr", "`model.encoder`"),
    ("model.head", "mlp9", "simclr", "`model.head`"),
    ("model.init", "xavier", "simclr", "`model.init`"),
    ("model.dtype", "float8", "simclr", "`model.dtype`"),
    ("model.embed_dim", 0, "simclr", "`model.embed_dim`"),
    ("augment.kind", "mixup", "simclr", "`augment.kind`"),
    ("augment.kind", "none", "simclr", "`augment.kind`"),
    ("augment.max_shift", -1, "simclr", "`augment.max_shift`"),
    ("augment.slope_std", -0.1, "simclr", "`augment.slope_std`"),
    ("simclr.temperature", 0.0, "simclr", "`simclr.temperature`"),
    ("simclr.block_size", -4, "simclr", "`simclr.block_size`"),
    ("moco.queue_size", 1000, "moco", "`moco.queue_size`=1000"),
    ("moco.queue_size", 0, "moco", "`moco.queue_size`"),
    ("moco.momentum", 1.5, "moco", "`moco.momentum`"),
    ("moco.temperature", -0.1, "moco", "`moco.temperature`"),
    ("supervised.loss", "hinge_loss", "supervised", "`supervised.loss`"),
    ("supervised.samples_per_class", 1, "supervised", "`supervised.samples_per_class`"),
    ("supervised.samples_per_class", 3, "supervised", "`supervised.samples_per_class`=3"),
    ("supervised.loss_kwargs.mining", "semihard", "supervised", "`mining`"),
    ("supervised.loss_kwargs.margin", -1.0, "supervised", "`margin`"),
    ("supervised.loss_kwargs.temperature", 0.1, "supervised", "`supervised.loss_kwargs"),
    ("optimizer.name", "rmsprop", "simclr", "`optimizer.name`"),
    ("optimizer.schedule", "step", "simclr", "`optimizer.schedule`"),
    ("optimizer.lr_scaling", "log", "simclr", "`optimizer.lr_scaling`"),
    ("optimizer.learning_rate", 0.0, "simclr", "`optimizer.learning_rate`"),
    ("optimizer.weight_decay", -1e-4, "simclr", "`optimizer.weight_decay`"),
    ("optimizer.momentum", 1.0, "simclr", "`optimizer.momentum`"),
    ("optimizer.warmup_steps", -1, "simclr", "`optimizer.warmup_steps`"),
    ("optimizer.trust_coefficient", 0.0, "simclr", "`optimizer.trust_coefficient`"),
    ("eval.knn_k", 0, "simclr", "`eval.knn_k`"),
    ("eval.batch_size", 0, "simclr", "`eval.batch_size`"),
    ("eval.max_examples", -1, "simclr", "`eval.max_examples`"),
]


def _set(config, field, value):
    node = config
    *parents, leaf = field.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value


@pytest.mark.parametrize(
    "field, value, method, match",
    [pytest.param(*case, id=f"{case[0]}={case[1]!r}") for case in CONFIG_CASES],
)
def test_bad_config_field_fails_before_data_and_compilation(
    monkeypatch, tmp_path, field, value, method, match
):
    config = base_config()
    config.method = method
    config.batch_size = 16
    config.num_devices = 8
    config.moco.queue_size = 64
    if method == "supervised":
        config.dataset.name = "digits"
        config.augment.kind = "none"
    if field == "optimizer.trust_coefficient":
        config.optimizer.name = "lars"
    if field == "optimizer.warmup_steps":
        config.optimizer.schedule = "warmup_cosine"

    def fail(*args, **kwargs):
        raise AssertionError("data loaded or a step compiled before the config was validated")

    monkeypatch.setattr(trainer_module.sources, "load", fail)
    monkeypatch.setattr(trainer_module, "make_train_step", fail)
    monkeypatch.setattr(trainer_module, "create_train_state", fail)
    _set(config, field, value)
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        trainer_module.train_and_evaluate(config, str(tmp_path))
    # Nothing was written either: no checkpoint directory, no logs.
    assert not (tmp_path / "checkpoints").exists()


def test_good_config_passes_validation():
    from jaxmetric.train import validate_config

    for method in ("simclr", "moco", "supervised"):
        config = base_config()
        config.method = method
        config.batch_size = 16
        config.moco.queue_size = 64
        if method == "supervised":
            config.augment.kind = "none"
        validate_config(config, num_devices=8)
