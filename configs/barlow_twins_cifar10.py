"""Barlow Twins on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR
stem, a 3-layer projector (2048 -> 2048 -> 2048, BN + ReLU between), lambda
5e-3 on the cross-correlation of the global batch, LARS 0.3 x B / 256 with
trust coefficient 0.02, weight decay 1e-4 (not on biases / BN), 10 warm-up
epochs then cosine over 1000 epochs: solo-learn's CIFAR recipe (da Costa et
al. 2022) for Zbontar et al. 2021 (whose ImageNet projector is 3 x 8192).

solo-learn also multiplies the loss by 0.1 (``scale_loss``); the loss here
is the paper's, unscaled.

Needs CIFAR-10 prepared for ``tfds.data_source`` in ``dataset.data_dir``.
"""

from jaxmetric.train.config import base_config

EPOCH = 50_000


def get_config():
    c = base_config()
    c.method = "barlow_twins"
    c.dataset.name = "tfds"
    c.dataset.tfds_name = "cifar10"
    c.model.encoder = "resnet18"
    c.model.stem = "cifar"
    c.model.head = "simclr"
    c.model.head_hidden = 2048
    c.model.head_layers = 3
    c.model.head_bn = True
    c.model.embed_dim = 2048
    c.model.dtype = "bfloat16"
    c.augment.kind = "simclr_image"
    c.augment.size = 32
    c.augment.crop_scale = (0.08, 1.0)
    c.augment.jitter_strength = 0.5
    c.augment.blur_prob = 0.0
    c.barlow_twins.lambda_offdiag = 5e-3
    c.batch_size = 512
    steps_per_epoch = EPOCH // c.batch_size
    c.num_steps = 1000 * steps_per_epoch
    c.optimizer.name = "lars"
    c.optimizer.learning_rate = 0.3
    c.optimizer.lr_scaling = "linear"
    c.optimizer.schedule = "warmup_cosine"
    c.optimizer.warmup_steps = 10 * steps_per_epoch
    c.optimizer.weight_decay = 1e-4
    c.optimizer.trust_coefficient = 0.02
    c.optimizer.momentum = 0.9
    c.log_every = 100
    c.eval_every = 50 * steps_per_epoch
    c.checkpoint_every = 10 * steps_per_epoch
    c.eval.max_examples = 10_000
    return c
