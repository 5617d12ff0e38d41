"""SimCLR on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem,
2-layer projection head (2048 -> 128, BN), global BN, temperature 0.5, LARS
with learning rate 0.3 x B / 256, weight decay 1e-6 (not on biases / BN),
10 warm-up epochs then cosine, colour jitter strength 0.5 and no blur
(Chen et al. 2020, appendix B.9). Batch 1024 (512-4096 all work: the loss
gathers negatives from every device).

Needs CIFAR-10 prepared for ``tfds.data_source`` in ``dataset.data_dir``.
"""

from jaxmetric.train.config import base_config

EPOCH = 50_000


def get_config():
    c = base_config()
    c.method = "simclr"
    c.dataset.name = "tfds"
    c.dataset.tfds_name = "cifar10"
    c.dataset.train_split = "train"
    c.dataset.test_split = "test"
    c.model.encoder = "resnet18"
    c.model.stem = "cifar"
    c.model.head = "simclr"
    c.model.head_hidden = 2048
    c.model.head_layers = 2
    c.model.head_bn = True
    c.model.embed_dim = 128
    c.model.dtype = "bfloat16"
    c.augment.kind = "simclr_image"
    c.augment.size = 32
    c.augment.crop_scale = (0.08, 1.0)
    c.augment.jitter_strength = 0.5
    c.augment.blur_prob = 0.0
    c.simclr.temperature = 0.5
    c.batch_size = 1024
    steps_per_epoch = EPOCH // c.batch_size
    c.num_steps = 1000 * steps_per_epoch
    c.optimizer.name = "lars"
    c.optimizer.learning_rate = 0.3
    c.optimizer.lr_scaling = "linear"
    c.optimizer.schedule = "warmup_cosine"
    c.optimizer.warmup_steps = 10 * steps_per_epoch
    c.optimizer.weight_decay = 1e-6
    c.optimizer.momentum = 0.9
    c.log_every = 100
    c.eval_every = 50 * steps_per_epoch
    c.checkpoint_every = 10 * steps_per_epoch
    c.eval.max_examples = 10_000
    return c
