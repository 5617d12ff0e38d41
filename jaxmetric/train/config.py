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

METHODS = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "mocov3", "supervised")
# Self-supervised methods (two augmented views) and those with a predictor head.
SSL_METHODS = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "mocov3")
PREDICTOR_METHODS = ("byol", "simsiam", "mocov3")
OPTIMIZERS = ("lars", "sgd", "adam", "adamw")
CIFAR10_TRAIN_EXAMPLES = 50_000  # an epoch of the CIFAR-10 recipes
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
    # A step whose loss or gradient is NaN / Inf is skipped (not applied) and
    # counted; this many in a row stop the run (0: never), the last good
    # checkpoint kept.
    c.nan_guard = True
    c.max_consecutive_skipped = 10
    # Resume a workdir whose checkpoint another config wrote (see
    # jaxmetric.train.checkpoint.RESUMABLE_FIELDS for the fields that may
    # always differ).
    c.allow_config_change = False

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

    # block_size 0: the dense loss; n: NT-Xent over tiles of n rows (memory
    # linear in the global batch, same value and gradient).
    c.simclr = ml_collections.ConfigDict({"temperature": 0.1, "block_size": 0})
    c.moco = ml_collections.ConfigDict(
        {"queue_size": 4096, "momentum": 0.99, "temperature": 0.2, "symmetric": False}
    )
    # Momentum: BYOL's cosine schedule from base to final (1.0) over num_steps.
    c.byol = ml_collections.ConfigDict({"base_momentum": 0.99, "final_momentum": 1.0})
    c.barlow_twins = ml_collections.ConfigDict({"lambda_offdiag": 5e-3})
    c.vicreg = ml_collections.ConfigDict(
        {"sim_weight": 25.0, "var_weight": 25.0, "cov_weight": 1.0}
    )
    c.mocov3 = ml_collections.ConfigDict(
        {"temperature": 0.2, "base_momentum": 0.99, "final_momentum": 1.0}
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


def mnist1d_ssl_config(method: str) -> ml_collections.ConfigDict:
    """What every self-supervised MNIST-1D recipe (``configs/*_mnist1d.py``)
    shares: the notebook's 1-D CNN with PyTorch's init, a 2-layer projector
    (128 hidden), batch 512, 2,000 steps, Adam, the raw-input kNN beside the
    results, and the MNIST-1D views: the notebook's detrend + circular shift
    + new slope, plus a random offset (+-1), Gaussian noise (0.2) and a
    time stretch (up to 1.5x either way, the generator's own dilation). On
    SimCLR the offset + noise took kNN on z from 50% to 70%, and the
    stretch from there to 77%. Each recipe sets its method's fields.
    """
    c = base_config()
    c.method = method
    c.dataset.name = "mnist1d"
    c.model.encoder = "cnn1d"
    c.model.init = "torch"
    c.model.head = "simclr"
    c.model.head_hidden = 128
    c.augment.kind = "mnist1d"
    c.augment.offset = 1.0
    c.augment.noise = 0.2
    c.augment.stretch = 0.5
    c.batch_size = 512
    c.num_steps = 2000
    c.log_every = 500
    c.optimizer.name = "adam"
    c.eval.reference.name = "MNIST-1D notebook"
    c.eval.reference["raw-input kNN (k=10)"] = 0.596
    return c


def cifar10_ssl_config(method: str, batch_size: int = 512) -> ml_collections.ConfigDict:
    """What the self-supervised CIFAR-10 TPU recipes share: ResNet-18 with the
    CIFAR stem in bfloat16, SimCLR's views at 32x32 (crop 0.08-1, jitter
    strength 0.5, no blur), ``batch_size`` for 1,000 epochs, LARS with linear
    lr scaling, 10 warm-up epochs then cosine, an eval every 50 epochs and a
    checkpoint every 10 (solo-learn's CIFAR setting, da Costa et al. 2022).
    Each recipe sets its head and method fields and its learning rate.
    Needs CIFAR-10 prepared for ``tfds.data_source`` in ``dataset.data_dir``.
    """
    c = base_config()
    c.method = method
    c.dataset.name = "tfds"
    c.dataset.tfds_name = "cifar10"
    c.model.encoder = "resnet18"
    c.model.stem = "cifar"
    c.model.head = "simclr"
    c.model.head_bn = True
    c.model.dtype = "bfloat16"
    c.augment.kind = "simclr_image"
    c.augment.size = 32
    c.augment.crop_scale = (0.08, 1.0)
    c.augment.jitter_strength = 0.5
    c.augment.blur_prob = 0.0
    c.batch_size = batch_size
    steps_per_epoch = CIFAR10_TRAIN_EXAMPLES // c.batch_size
    c.num_steps = 1000 * steps_per_epoch
    c.optimizer.name = "lars"
    c.optimizer.lr_scaling = "linear"
    c.optimizer.schedule = "warmup_cosine"
    c.optimizer.warmup_steps = 10 * steps_per_epoch
    c.optimizer.trust_coefficient = 0.02
    c.optimizer.momentum = 0.9
    c.log_every = 100
    c.eval_every = 50 * steps_per_epoch
    c.checkpoint_every = 10 * steps_per_epoch
    c.eval.max_examples = 10_000
    return c


def _positive_int(c, name: str, value) -> None:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def _non_negative_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")


def _boolean(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")


def _check_loss_kwargs(c: ml_collections.ConfigDict) -> None:
    """``supervised.loss_kwargs`` against the kernel: unknown names and bad
    values (e.g. an unknown ``mining``) fail here, by tracing the loss on
    abstract inputs (``jax.eval_shape``: nothing is compiled or run)."""
    import inspect

    import jax
    import jax.numpy as jnp

    from jaxmetric import losses

    fn = getattr(losses, c.supervised.loss)
    kwargs = dict(c.supervised.loss_kwargs.to_dict())
    params = inspect.signature(fn).parameters
    for name in kwargs:
        if name not in params or name in ("embeddings", "labels", "mask", "axis_name"):
            raise ValueError(
                f"`supervised.loss_kwargs.{name}` is not a hyper-parameter of {c.supervised.loss}."
            )
    emb = jax.ShapeDtypeStruct((c.supervised.samples_per_class * 2, c.model.embed_dim), jnp.float32)
    labels = jax.ShapeDtypeStruct(emb.shape[:1], jnp.int32)
    try:
        jax.eval_shape(lambda e, y: fn(e, y, **kwargs), emb, labels)
    except (ValueError, TypeError) as err:
        raise ValueError(f"`supervised.loss_kwargs`: {err}") from err


def _validate_noncontrastive(c: ml_collections.ConfigDict) -> None:
    """BYOL, SimSiam, Barlow Twins, VICReg and MoCo v3 fields."""
    if c.method in PREDICTOR_METHODS and c.model.predictor == "none":
        raise ValueError(
            f"`model.predictor` must not be 'none' for method {c.method!r} (it needs a predictor)."
        )
    if c.method in ("byol", "mocov3"):
        block = c[c.method]
        for name in ("base_momentum", "final_momentum"):
            if not 0.0 <= block[name] <= 1.0:
                raise ValueError(f"`{c.method}.{name}` must be in [0, 1], got {block[name]!r}.")
    if c.method == "mocov3" and c.mocov3.temperature <= 0:
        raise ValueError(f"`mocov3.temperature` must be > 0, got {c.mocov3.temperature!r}.")
    if c.method == "barlow_twins" and c.barlow_twins.lambda_offdiag < 0:
        raise ValueError(
            f"`barlow_twins.lambda_offdiag` must be >= 0, got {c.barlow_twins.lambda_offdiag!r}."
        )
    if c.method == "vicreg":
        for name in ("sim_weight", "var_weight", "cov_weight"):
            if c.vicreg[name] < 0:
                raise ValueError(f"`vicreg.{name}` must be >= 0, got {c.vicreg[name]!r}.")


def validate_config(c: ml_collections.ConfigDict, num_devices: int, process_count: int = 1) -> None:
    """Checks a config against the device count; raises ValueError naming
    the first bad field. Runs before any model is built or compiled."""
    if c.method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {c.method!r}.")
    for name in ("batch_size", "num_steps", "log_every"):
        _positive_int(c, name, c[name])
    if c.num_devices < 0:
        raise ValueError(f"`num_devices` must be >= 0, got {c.num_devices!r}.")
    for name in ("seed", "eval_every", "checkpoint_every", "max_consecutive_skipped"):
        _non_negative_int(name, c.get(name, 0))
    _positive_int(c, "keep_checkpoints", c.keep_checkpoints)
    for name in ("multihost", "nan_guard", "allow_config_change"):
        _boolean(name, c.get(name, False))
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
    if c.dataset.name == "digits" and not 0.0 < c.dataset.test_fraction < 1.0:
        raise ValueError(
            f"`dataset.test_fraction` must be in (0, 1), got {c.dataset.test_fraction!r}."
        )
    _non_negative_int("dataset.image_size", c.dataset.image_size)
    check_model_config(c.model)
    augment.check_augment_config(c.augment)
    if c.method in SSL_METHODS and c.augment.kind == "none":
        raise ValueError(f"`augment.kind` must not be 'none' for method {c.method!r} (two views).")
    if c.method == "simclr":
        if c.simclr.temperature <= 0:
            raise ValueError(f"`simclr.temperature` must be > 0, got {c.simclr.temperature!r}.")
        _non_negative_int("simclr.block_size", c.simclr.get("block_size", 0))
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
    _validate_noncontrastive(c)
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
    if not 0.0 <= o.momentum < 1.0:
        raise ValueError(f"`optimizer.momentum` must be in [0, 1), got {o.momentum!r}.")
    _non_negative_int("optimizer.warmup_steps", o.warmup_steps)
    if o.name == "lars" and not o.trust_coefficient > 0:
        raise ValueError(f"`optimizer.trust_coefficient` must be > 0, got {o.trust_coefficient!r}.")
    if c.eval.knn_k <= 0:
        raise ValueError(f"`eval.knn_k` must be > 0, got {c.eval.knn_k!r}.")
    _positive_int(c, "eval.batch_size", c.eval.batch_size)
    _non_negative_int("eval.max_examples", c.eval.max_examples)
    if c.method == "supervised":
        _check_loss_kwargs(c)
