"""BYOL on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem, a
2-layer projector (4096 -> 256, BN) and predictor (256 -> 4096 -> 256, BN),
target momentum on the cosine schedule 0.99 -> 1, LARS 1.0 x B / 256 with
trust coefficient 0.02, weight decay 1e-5 (not on biases / BN), 10 warm-up
epochs then cosine over 1000 epochs: solo-learn's CIFAR recipe (da Costa et
al. 2022), which follows Grill et al. 2020 at CIFAR scale.

Differences from the paper: both views use the same augmentation
distribution (SimCLR's views, crop 0.08-1, jitter strength 0.5, grayscale
0.2; BYOL's asymmetric blur / solarisation is not implemented; at 32x32 the
paper's CIFAR runs use no blur either).

Needs CIFAR-10 prepared for ``tfds.data_source`` in ``dataset.data_dir``.
"""

from jaxmetric.train.config import base_config

EPOCH = 50_000


def get_config():
    c = base_config()
    c.method = "byol"
    c.dataset.name = "tfds"
    c.dataset.tfds_name = "cifar10"
    c.model.encoder = "resnet18"
    c.model.stem = "cifar"
    c.model.head = "simclr"
    c.model.head_hidden = 4096
    c.model.head_layers = 2
    c.model.head_bn = True
    c.model.embed_dim = 256
    c.model.predictor = "mlp"
    c.model.predictor_hidden = 4096
    c.model.predictor_bn = True
    c.model.dtype = "bfloat16"
    c.augment.kind = "simclr_image"
    c.augment.size = 32
    c.augment.crop_scale = (0.08, 1.0)
    c.augment.jitter_strength = 0.5
    c.augment.blur_prob = 0.0
    c.byol.base_momentum = 0.99
    c.byol.final_momentum = 1.0
    c.batch_size = 512
    steps_per_epoch = EPOCH // c.batch_size
    c.num_steps = 1000 * steps_per_epoch
    c.optimizer.name = "lars"
    c.optimizer.learning_rate = 1.0
    c.optimizer.lr_scaling = "linear"
    c.optimizer.schedule = "warmup_cosine"
    c.optimizer.warmup_steps = 10 * steps_per_epoch
    c.optimizer.weight_decay = 1e-5
    c.optimizer.trust_coefficient = 0.02
    c.optimizer.momentum = 0.9
    c.log_every = 100
    c.eval_every = 50 * steps_per_epoch
    c.checkpoint_every = 10 * steps_per_epoch
    c.eval.max_examples = 10_000
    return c
