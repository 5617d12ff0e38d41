"""The trainer's config schema, its defaults and its validation.

Recipes in ``configs/`` start from ``base_config()`` and override fields.
``validate_config`` runs before anything is built or compiled and raises a
ValueError that names the offending field.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import ml_collections

from jaxmetric import augment
from jaxmetric.data.sources import CLASS_SPLITS, SOURCES
from jaxmetric.models import check_model_config, model_config
from jaxmetric.train import fields, methods

OPTIMIZERS = ("lars", "sgd", "adam", "adamw")
CIFAR10_TRAIN_EXAMPLES = 50_000  # an epoch of the CIFAR-10 recipes
SCHEDULES = ("constant", "cosine", "warmup_cosine")
LR_SCALINGS = ("none", "linear", "sqrt")


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
            # Images: the evaluation input (and un-augmented training input)
            # is the centred `eval_crop` square of the shorter side, resized
            # to `image_size` (0: as stored); image views
            # (augment.simclr_image) use their own `size` instead.
            "image_size": 0,
            "eval_crop": 1.0,  # Inception / ImageNet: 0.875 (224 of 256)
            # TFDS: "first_half": the records of both splits together, the
            # first half of the classes (labels < num_classes / 2) to train,
            # the rest to test ("A Metric Learning Reality Check"'s CUB-200 /
            # Cars196 protocol); "": the splits as stored.
            "class_split": "",
        }
    )
    # The input pipeline (jaxmetric.data.input_pipeline).
    c.data = ml_collections.ConfigDict(
        {
            # Worker processes that read, decode and crop; -1: the CPU count
            # for TFDS records, 0 (a background thread) for in-memory arrays.
            "workers": -1,
            "prefetch": 2,  # batches made ahead (per worker)
            # An undecodable record: skip it (counted in the log) instead of
            # stopping with an error naming it.
            "skip_corrupt": False,
        }
    )
    c.model = model_config()
    c.augment = augment.augment_config()
    # Gradient caching (docs/training.md#gradient-caching): the encoder runs
    # in chunks of `chunk_size` rows of the per-device batch, the loss over
    # the whole batch; 0: off. `unroll`: the chunk loops' lax.scan unroll,
    # "auto" = True on the CPU backend (fast convolutions), else 1.
    # (Not type-safe: `unroll` takes "auto", a bool or an int.)
    c.grad_cache = ml_collections.ConfigDict({"chunk_size": 0, "unroll": "auto"}, type_safe=False)

    # One block per training method, ``config.<name>``, declared by its
    # module in jaxmetric/train/methods/.
    for method in methods.all_methods():
        c[method.name] = method.config_block()
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
    c.augment.mnist1d.offset = 1.0
    c.augment.mnist1d.noise = 0.2
    c.augment.mnist1d.stretch = 0.5
    c.batch_size = 512
    c.num_steps = 2000
    c.log_every = 500
    c.optimizer.name = "adam"
    c.eval.reference.name = "MNIST-1D notebook"
    c.eval.reference["raw-input kNN (k=10)"] = 0.596
    return c


# The image views of the self-supervised CIFAR-10 recipes as their papers
# define them (``cifar10_ssl_config(views=...)``): the ``augment.simclr_image``
# fields that differ between them. All: colour jitter p=0.8 at strength 0.5
# (brightness, contrast, saturation 0.4, hue 0.1), grayscale p=0.2, flip.
SSL_VIEWS = {
    # SimCLR (Chen et al. 2020, appendix B.9): no blur at 32x32, symmetric.
    "simclr": {"crop_scale": (0.08, 1.0), "blur_prob": 0.0, "solarize_prob": 0.0},
    # BYOL (Grill et al. 2020, appendix B, table 6; ImageNet, the paper has
    # no CIFAR pre-training): asymmetric, blur 1.0 / 0.1 and solarisation
    # 0.0 / 0.2 on views 1 / 2. Barlow Twins (Zbontar et al. 2021, section 3:
    # BYOL's parameters) and VICReg (Bardes et al. 2022, appendix C.1, and
    # its code's TrainTransform) use the same.
    "byol": {"crop_scale": (0.08, 1.0), "blur_prob": (1.0, 0.1), "solarize_prob": (0.0, 0.2)},
    # SimSiam's CIFAR views (Chen & He 2021, appendix D: "We do not use blur
    # augmentation" at 32x32; otherwise its ImageNet views, MoCo v2's, whose
    # blur is p=0.5 on both): crop 0.2-1, symmetric, no solarisation.
    "simsiam": {"crop_scale": (0.2, 1.0), "blur_prob": 0.0, "solarize_prob": 0.0},
}


def cifar10_ssl_config(
    method: str, batch_size: int = 512, *, views: str = "simclr"
) -> ml_collections.ConfigDict:
    """What the self-supervised CIFAR-10 TPU recipes share: ResNet-18 with the
    CIFAR stem in bfloat16, image views at 32x32 (jitter strength 0.5, the
    paper's crop, blur and solarisation: ``SSL_VIEWS[views]``), ``batch_size``
    for 1,000 epochs, LARS with linear lr scaling, 10 warm-up epochs then
    cosine, an eval every 50 epochs and a checkpoint every 10 (solo-learn's
    CIFAR setting, da Costa et al. 2022). Each recipe sets its head and
    method fields and its learning rate.
    Needs CIFAR-10 prepared for ``tfds.data_source`` in ``dataset.data_dir``.
    """
    fields.choice("views", views, tuple(SSL_VIEWS))
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
    c.augment.simclr_image.size = 32
    c.augment.simclr_image.jitter_strength = 0.5
    c.augment.simclr_image.update(SSL_VIEWS[views])
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


# The losses of the MLRC recipes (``mlrc_config``): the supervised kernel and
# its hyper-parameters, the papers' defaults (MLRC tuned each by Bayesian
# optimisation on validation folds; these are not its tuned values).
MLRC_LOSSES = {
    # Hermans et al. 2017: batch-hard mining; margin 0.2 (FaceNet's).
    "triplet": ("triplet_margin_loss", {"margin": 0.2, "mining": "batch_hard"}),
    # Wang et al. 2019: alpha 2, beta 50, base 0.5, with its miner (epsilon 0.1).
    "multi_similarity": (
        "multi_similarity_loss",
        {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1},
    ),
    # Hadsell et al. 2006 in PML's form: positives to 0, negatives beyond 1.
    "contrastive": ("contrastive_loss", {"pos_margin": 0.0, "neg_margin": 1.0}),
    # Kim et al. 2020: margin 0.1, alpha 32; one proxy per training class.
    "proxy_anchor": ("proxy_anchor_loss", {"margin": 0.1, "alpha": 32.0}),
}
MLRC_DIMS = (128, 512)


def mlrc_config(
    tfds_name: str,
    arg: str | None,
    *,
    train_examples: int,
    train_classes: int,
    reference_512: dict[str, float] | None = None,
) -> ml_collections.ConfigDict:
    """What the "A Metric Learning Reality Check" recipes (``configs/mlrc_*.py``)
    share: its protocol (Musgrave et al. 2020) with an ImageNet-pretrained
    ResNet-50 trunk (MLRC's is a BN-Inception network).

    - The encoder: torchvision's ResNet-50 weights (``model.pretrained``, a
      state dict file the user exports, see docs/datasets.md), its
      BatchNorm frozen (``model.freeze_bn``: running statistics, PML's
      ``freeze_trunk_batchnorm``), ImageNet input normalisation, then a
      linear embedding of ``dim`` (128 or 512) dimensions; bfloat16 compute.
      For ``proxy_anchor``, one proxy per training class, trained with the
      model at the same learning rate (the Proxy-Anchor paper multiplies
      the proxies' learning rate by 100: not done here).
    - Batches of 32: 8 classes x 4 samples (``supervised.samples_per_class``).
    - Views: random-resized crop of scale 0.16-1 to 227, horizontal flip;
      evaluation: the centred 227/256 of the shorter side, at 227.
    - Evaluation: MAP@R, R-precision and precision@1 on the test classes
      (leave-one-out, cosine), as MLRC reports them.
    - Adam at 1e-5, no weight decay, ``train_examples`` / 32 steps an epoch,
      100 epochs (not MLRC's tuned optimiser or its early stopping).

    Args:
      tfds_name: the TFDS dataset.
      arg: ``"<loss>,<dim>"`` (the recipe file's ``get_config`` argument:
        ``--config=configs/mlrc_cub200.py:multi_similarity,128``), loss one of
        ``MLRC_LOSSES``, dim one of ``MLRC_DIMS``; None: ``"triplet,512"``.
      train_examples: the train split's size (an epoch).
      train_classes: its classes (labels 0 .. train_classes - 1): the
        proxies of ``proxy_anchor`` (``model.num_proxies``).
      reference_512: MLRC's MAP@R per loss, "Concatenated (512-dim)" (four
        BN-Inception models of 128 dimensions, one per cross-validation
        fold, concatenated; hyper-parameters tuned), printed beside a
        512-dim run's as a reference point (not the same experiment).

    Returns:
      The config (the caller sets its split: ``dataset.class_split``, ...).

    Raises:
      ValueError: an ``arg`` that is not a known loss and dimension.
    """
    loss, _, dim = (arg or "triplet,512").partition(",")
    if loss not in MLRC_LOSSES or dim not in tuple(map(str, MLRC_DIMS)):
        raise ValueError(
            f"The recipe's argument must be '<loss>,<dim>' with loss in {tuple(MLRC_LOSSES)} "
            f"and dim in {MLRC_DIMS}, e.g. 'triplet,512'; got {arg!r}."
        )
    c = base_config()
    c.method = "supervised"
    c.dataset.name = "tfds"
    c.dataset.tfds_name = tfds_name
    c.dataset.eval_crop = 227 / 256
    c.model.encoder = "resnet50"
    c.model.stem = "imagenet"
    c.model.width = 64
    c.model.pretrained = "resnet50_torchvision.safetensors"
    c.model.freeze_bn = True
    c.model.input_norm = "imagenet"
    c.model.head = "linear"
    c.model.embed_dim = int(dim)
    c.model.dtype = "bfloat16"
    c.augment.kind = "simclr_image"
    c.augment.simclr_image.update(
        size=227, crop_scale=(0.16, 1.0), flip=True, jitter_prob=0.0, grayscale_prob=0.0
    )
    c.supervised.loss, kwargs = MLRC_LOSSES[loss]
    c.supervised.loss_kwargs = dict(kwargs)
    if loss == "proxy_anchor":
        c.model.num_proxies = train_classes
    c.supervised.samples_per_class = 4
    c.batch_size = 32
    steps_per_epoch = max(train_examples // c.batch_size, 1)
    c.num_steps = 100 * steps_per_epoch
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-5
    c.log_every = 100
    c.checkpoint_every = 5 * steps_per_epoch
    c.eval_every = 0
    c.eval.retrieval = True
    c.eval.linear_probe = False  # the test classes are not the train classes
    c.eval.batch_size = 256
    if int(dim) == 512 and loss in (reference_512 or {}):
        c.eval.reference.name = f"MLRC, {loss}, BN-Inception, concatenated 512-dim"
        c.eval.reference.map_at_r = reference_512[loss]
    return c


def _validate_method(c: ml_collections.ConfigDict, method: methods.Method) -> None:
    """What every method's declaration asks of the config, then its own checks."""
    if method.two_views and c.augment.kind == "none":
        raise ValueError(f"`augment.kind` must not be 'none' for method {c.method!r} (two views).")
    if method.needs_predictor and c.model.predictor == "none":
        raise ValueError(
            f"`model.predictor` must not be 'none' for method {c.method!r} (it needs a predictor)."
        )
    if method.queue:
        size = c[method.name].queue_size
        fields.positive_int(f"{method.name}.queue_size", size)
        if size % c.batch_size:
            raise ValueError(
                f"`{method.name}.queue_size`={size} must be a multiple of the global batch "
                f"`batch_size`={c.batch_size} (keys are written one global batch at a time)."
            )
    method.validate(c)


def _validate_grad_cache(c: ml_collections.ConfigDict, method, num_devices: int) -> None:
    """``grad_cache``: chunk_size >= 0, dividing the per-device batch, for a
    method that supports it; unroll "auto", a bool or a positive int."""
    g = c.grad_cache
    fields.non_negative_int("grad_cache.chunk_size", g.chunk_size)
    if not (g.unroll == "auto" or isinstance(g.unroll, bool)):
        fields.positive_int("grad_cache.unroll", g.unroll)
    if g.chunk_size == 0:
        return
    if not method.grad_cache:
        supported = tuple(m.name for m in methods.all_methods() if m.grad_cache)
        raise ValueError(
            f"`grad_cache.chunk_size`={g.chunk_size}: method {c.method!r} does not support "
            f"gradient caching (its loss does not couple the batch); methods that do: "
            f"{supported}. Set `grad_cache.chunk_size`=0."
        )
    per_device = c.batch_size // num_devices
    if per_device % g.chunk_size:
        raise ValueError(
            f"`grad_cache.chunk_size`={g.chunk_size} must divide the per-device batch "
            f"{per_device} (`batch_size`={c.batch_size} over {num_devices} devices)."
        )


def validate_config(c: ml_collections.ConfigDict, num_devices: int, process_count: int = 1) -> None:
    """Checks a config against the device count; raises ValueError naming
    the first bad field. Runs before any model is built or compiled."""
    method = methods.get(c.method)
    for name in ("batch_size", "num_steps", "log_every", "keep_checkpoints"):
        fields.positive_int(name, c[name])
    for name in ("num_devices", "seed", "eval_every", "checkpoint_every"):
        fields.non_negative_int(name, c[name])
    fields.non_negative_int("max_consecutive_skipped", c.max_consecutive_skipped)
    for name in ("multihost", "nan_guard", "allow_config_change"):
        fields.boolean(name, c[name])
    if c.batch_size % num_devices:
        raise ValueError(
            f"`batch_size`={c.batch_size} must be divisible by the number of devices {num_devices}."
        )
    if c.batch_size % process_count:
        raise ValueError(
            f"`batch_size`={c.batch_size} must be divisible by the process count {process_count}."
        )
    fields.choice("dataset.name", c.dataset.name, SOURCES)
    if c.dataset.name == "tfds" and not c.dataset.tfds_name:
        raise ValueError("`dataset.tfds_name` must name a TFDS dataset when `dataset.name`='tfds'.")
    if c.dataset.name == "digits" and not 0.0 < c.dataset.test_fraction < 1.0:
        raise ValueError(
            f"`dataset.test_fraction` must be in (0, 1), got {c.dataset.test_fraction!r}."
        )
    fields.choice("dataset.class_split", c.dataset.class_split, CLASS_SPLITS)
    if c.dataset.class_split and c.dataset.name != "tfds":
        raise ValueError(
            f"`dataset.class_split`={c.dataset.class_split!r} needs `dataset.name`='tfds', "
            f"got {c.dataset.name!r}."
        )
    fields.non_negative_int("dataset.image_size", c.dataset.image_size)
    if not 0.0 < c.dataset.eval_crop <= 1.0:
        raise ValueError(f"`dataset.eval_crop` must be in (0, 1], got {c.dataset.eval_crop!r}.")
    if not isinstance(c.data.workers, int) or c.data.workers < -1:
        raise ValueError(f"`data.workers` must be -1 (auto) or >= 0, got {c.data.workers!r}.")
    fields.non_negative_int("data.prefetch", c.data.prefetch)
    fields.boolean("data.skip_corrupt", c.data.skip_corrupt)
    check_model_config(c.model)
    augment.check_augment_config(c.augment)
    _validate_method(c, method)
    _validate_grad_cache(c, method, num_devices)
    o = c.optimizer
    fields.choice("optimizer.name", o.name, OPTIMIZERS)
    fields.choice("optimizer.schedule", o.schedule, SCHEDULES)
    fields.choice("optimizer.lr_scaling", o.lr_scaling, LR_SCALINGS)
    fields.positive("optimizer.learning_rate", o.learning_rate)
    fields.non_negative("optimizer.weight_decay", o.weight_decay)
    if not 0 <= o.warmup_steps < c.num_steps and o.schedule == "warmup_cosine":
        raise ValueError(
            f"`optimizer.warmup_steps`={o.warmup_steps} must be in [0, num_steps={c.num_steps})."
        )
    if not 0.0 <= o.momentum < 1.0:
        raise ValueError(f"`optimizer.momentum` must be in [0, 1), got {o.momentum!r}.")
    fields.non_negative_int("optimizer.warmup_steps", o.warmup_steps)
    if o.name == "lars":
        fields.positive("optimizer.trust_coefficient", o.trust_coefficient)
    fields.positive("eval.knn_k", c.eval.knn_k)
    fields.positive_int("eval.batch_size", c.eval.batch_size)
    fields.non_negative_int("eval.max_examples", c.eval.max_examples)


def load_recipe(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
    """``get_config()`` of a recipe file (``configs/<name>.py``), loaded by
    path as absl's ``--config`` flag does, so it works from any directory;
    ``get_config(arg)`` with an ``arg`` (``--config=<path>:<arg>``)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"`path`: no recipe file at {str(path)!r}.")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config() if arg is None else module.get_config(arg)
