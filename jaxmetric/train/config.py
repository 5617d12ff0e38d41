"""The trainer's config schema, its defaults and its validation.

Recipes in ``configs/`` start from ``base_config()`` and override fields.
``validate_config`` runs before anything is built or compiled and raises a
ValueError that names the offending field.
"""

from __future__ import annotations

import ml_collections

from jaxmetric import augment
from jaxmetric.data.sources import SOURCES
from jaxmetric.models import check_model_config, model_config

METHODS = ("simclr", "moco", "supervised")
OPTIMIZERS = ("lars", "sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
LR_SCALINGS = ("none", "linear", "sqrt")
SUPERVISED_LOSSES = (
    "triplet_margin_loss",
    "contrastive_loss",
    "angular_loss",
    "ntxent_loss",
)


def base_config() -> ml_collections.ConfigDict:
    """Every field the trainer reads, with the MNIST-1D SimCLR defaults."""
    c = ml_collections.ConfigDict()
    c.method = "simclr"
    c.seed = 0
    c.batch_size = 512  # global, over all devices and processes
    c.num_steps = 2000
    c.num_devices = 0  # 0: every device; n: the first n (tests, debugging)
    c.multihost = False  # call jax.distributed.initialize() first
    c.log_every = 100
    c.eval_every = 0  # kNN monitor on the held-out split; 0: only at the end
    c.checkpoint_every = 0  # 0: only at the end
    c.keep_checkpoints = 2

    c.dataset = ml_collections.ConfigDict(
        {
            "name": "mnist1d",
            "seed": 42,  # MNIST-1D's published generation seed; digits split seed
            "test_fraction": 0.5,
            "tfds_name": "",
            "train_split": "train",
            "test_split": "test",
            "data_dir": "",
            "image_key": "image",
            "label_key": "label",
            "image_size": 0,  # TFDS: resize images to this square size on the host (0: keep)
        }
    )
    c.model = model_config()
    c.augment = augment.augment_config()

    c.simclr = ml_collections.ConfigDict({"temperature": 0.1})
    c.moco = ml_collections.ConfigDict(
        {"queue_size": 4096, "momentum": 0.99, "temperature": 0.2, "symmetric": False}
    )
    c.supervised = ml_collections.ConfigDict(
        {
            "loss": "triplet_margin_loss",
            "loss_kwargs": ml_collections.ConfigDict({"margin": 0.2, "mining": "batch_hard"}),
            "samples_per_class": 4,
        }
    )
    c.optimizer = ml_collections.ConfigDict(
        {
            "name": "adam",
            "learning_rate": 1e-3,
            "lr_scaling": "none",  # "linear": lr * batch / 256 (SimCLR's LARS rule)
            "schedule": "constant",
            "warmup_steps": 0,
            "weight_decay": 0.0,
            "momentum": 0.9,
            "nesterov": False,
            "trust_coefficient": 0.001,
        }
    )
    c.eval = ml_collections.ConfigDict(
        {
            "knn_k": 10,
            "linear_probe": True,
            "max_examples": 0,  # 0: the whole split
            "batch_size": 1024,
            "retrieval": False,  # MAP@R etc. on the held-out split (supervised)
            # Published reference numbers printed beside ours (fractions).
            "reference": ml_collections.ConfigDict(
                {"name": "", "linear_probe_accuracy": -1.0, "knn_accuracy": -1.0}
            ),
        }
    )
    return c


def _positive_int(c, name: str, value) -> None:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def validate_config(c: ml_collections.ConfigDict, num_devices: int, process_count: int = 1) -> None:
    """Checks a config against the device count; raises ValueError naming
    the first bad field. Runs before any model is built or compiled."""
    if c.method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {c.method!r}.")
    for name in ("batch_size", "num_steps", "log_every"):
        _positive_int(c, name, c[name])
    if c.num_devices < 0:
        raise ValueError(f"`num_devices` must be >= 0, got {c.num_devices!r}.")
    if c.batch_size % num_devices:
        raise ValueError(
            f"`batch_size`={c.batch_size} must be divisible by the number of devices {num_devices}."
        )
    if c.batch_size % process_count:
        raise ValueError(
            f"`batch_size`={c.batch_size} must be divisible by the process count {process_count}."
        )
    if c.dataset.name not in SOURCES:
        raise ValueError(f"`dataset.name` must be one of {SOURCES}, got {c.dataset.name!r}.")
    if c.dataset.name == "tfds" and not c.dataset.tfds_name:
        raise ValueError("`dataset.tfds_name` must name a TFDS dataset when `dataset.name`='tfds'.")
    check_model_config(c.model)
    augment.check_augment_config(c.augment)
    if c.method in ("simclr", "moco") and c.augment.kind == "none":
        raise ValueError(f"`augment.kind` must not be 'none' for method {c.method!r} (two views).")
    if c.method == "simclr" and c.simclr.temperature <= 0:
        raise ValueError(f"`simclr.temperature` must be > 0, got {c.simclr.temperature!r}.")
    if c.method == "moco":
        m = c.moco
        _positive_int(c, "moco.queue_size", m.queue_size)
        if m.queue_size % c.batch_size:
            raise ValueError(
                f"`moco.queue_size`={m.queue_size} must be a multiple of the global batch "
                f"`batch_size`={c.batch_size} (keys are written one global batch at a time)."
            )
        if not 0.0 <= m.momentum <= 1.0:
            raise ValueError(f"`moco.momentum` must be in [0, 1], got {m.momentum!r}.")
        if m.temperature <= 0:
            raise ValueError(f"`moco.temperature` must be > 0, got {m.temperature!r}.")
    if c.method == "supervised":
        s = c.supervised
        if s.loss not in SUPERVISED_LOSSES:
            raise ValueError(
                f"`supervised.loss` must be one of {SUPERVISED_LOSSES}, got {s.loss!r}."
            )
        if s.samples_per_class < 2:
            raise ValueError(
                f"`supervised.samples_per_class` must be >= 2, got {s.samples_per_class!r}."
            )
        if c.batch_size % s.samples_per_class:
            raise ValueError(
                f"`batch_size`={c.batch_size} must be a multiple of "
                f"`supervised.samples_per_class`={s.samples_per_class}."
            )
    o = c.optimizer
    if o.name not in OPTIMIZERS:
        raise ValueError(f"`optimizer.name` must be one of {OPTIMIZERS}, got {o.name!r}.")
    if o.schedule not in SCHEDULES:
        raise ValueError(f"`optimizer.schedule` must be one of {SCHEDULES}, got {o.schedule!r}.")
    if o.lr_scaling not in LR_SCALINGS:
        raise ValueError(
            f"`optimizer.lr_scaling` must be one of {LR_SCALINGS}, got {o.lr_scaling!r}."
        )
    if o.learning_rate <= 0:
        raise ValueError(f"`optimizer.learning_rate` must be > 0, got {o.learning_rate!r}.")
    if o.weight_decay < 0:
        raise ValueError(f"`optimizer.weight_decay` must be >= 0, got {o.weight_decay!r}.")
    if not 0 <= o.warmup_steps < c.num_steps and o.schedule == "warmup_cosine":
        raise ValueError(
            f"`optimizer.warmup_steps`={o.warmup_steps} must be in [0, num_steps={c.num_steps})."
        )
    if c.eval.knn_k <= 0:
        raise ValueError(f"`eval.knn_k` must be > 0, got {c.eval.knn_k!r}.")
