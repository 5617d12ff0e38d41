"""The trainer's config: a bad field fails, naming it, before any data is
loaded or anything is compiled (field by field).

The kernels' bad-input tests live beside their modules:
tests/losses/test_contract_bad_inputs.py and tests/test_{distances,mining,memory}.py.
"""

from __future__ import annotations

import pytest

from jaxmetric.train import base_config
from jaxmetric.train import trainer as trainer_module

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
    ("augment.mnist1d.max_shift", -1, "simclr", "`augment.mnist1d.max_shift`"),
    ("augment.mnist1d.slope_std", -0.1, "simclr", "`augment.mnist1d.slope_std`"),
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
    # An array input of the loss, not a hyper-parameter a config can set.
    ("supervised.loss_kwargs.pairs", 1, "supervised", "`supervised.loss_kwargs.pairs`"),
    ("supervised.loss_kwargs.mask", 1, "supervised", "`supervised.loss_kwargs.mask`"),
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
