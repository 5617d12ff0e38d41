"""MoCo v2 on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem,
MoCo v2 MLP head (512 -> 128), queue K = 4096, momentum 0.99, temperature
0.2, SGD 0.06 x B / 256 with momentum 0.9, weight decay 5e-4, cosine decay;
MoCo v2's augmentations (crop 0.2-1, jitter 0.4 ~ strength 0.5, grayscale
0.2; no blur at 32x32). For ImageNet use K = 65536 and momentum 0.999.

Needs CIFAR-10 prepared for ``tfds.data_source`` in ``dataset.data_dir``.
"""

from jaxmetric.train.config import CIFAR10_TRAIN_EXAMPLES, base_config


def get_config():
    c = base_config()
    c.method = "moco"
    c.dataset.name = "tfds"
    c.dataset.tfds_name = "cifar10"
    c.model.encoder = "resnet18"
    c.model.stem = "cifar"
    c.model.head = "moco_v2"
    c.model.head_hidden = 512
    c.model.embed_dim = 128
    c.model.dtype = "bfloat16"
    c.augment.kind = "simclr_image"
    c.augment.simclr_image.size = 32
    c.augment.simclr_image.crop_scale = (0.2, 1.0)
    c.augment.simclr_image.jitter_strength = 0.5
    c.augment.simclr_image.blur_prob = 0.0
    c.moco.queue_size = 4096
    c.moco.momentum = 0.99
    c.moco.temperature = 0.2
    c.batch_size = 512
    steps_per_epoch = CIFAR10_TRAIN_EXAMPLES // c.batch_size
    c.num_steps = 800 * steps_per_epoch
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.06
    c.optimizer.lr_scaling = "linear"
    c.optimizer.schedule = "cosine"
    c.optimizer.weight_decay = 5e-4
    c.optimizer.momentum = 0.9
    c.eval_every = 50 * steps_per_epoch
    c.checkpoint_every = 10 * steps_per_epoch
    c.eval.max_examples = 10_000
    return c
