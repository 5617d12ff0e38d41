"""SimCLR on ImageNet (Cloud TPU pod recipe): ResNet-50 with the ImageNet
stem, 2-layer head (2048 -> 128, BN), global BN, batch 4096, temperature 0.1,
LARS 0.3 x B / 256, weight decay 1e-6, 10 warm-up epochs then cosine over
100 epochs, colour jitter strength 1.0, Gaussian blur p=0.5, bfloat16
compute (Chen et al. 2020, section B.1 / appendix B).

Needs ``imagenet2012`` prepared for ``tfds.data_source``. The input
pipeline's workers (``data.workers``: every CPU of the host) decode each
JPEG and cut SimCLR's two random-resized crops of the original image
(Inception-style, at its own aspect ratio) to 224 with flips; colour jitter,
grayscale and blur run on device. Evaluation: the centred 87.5% of the
shorter side resized to 224 (256 -> 224). Multi-host pods: ``multihost=True``.
"""

from jaxmetric.train.config import base_config

EPOCH = 1_281_167


def get_config():
    c = base_config()
    c.method = "simclr"
    c.multihost = True
    c.dataset.name = "tfds"
    c.dataset.tfds_name = "imagenet2012"
    c.dataset.test_split = "validation"
    c.dataset.eval_crop = 0.875
    c.model.encoder = "resnet50"
    c.model.stem = "imagenet"
    c.model.head = "simclr"
    c.model.head_hidden = 2048
    c.model.head_layers = 2
    c.model.head_bn = True
    c.model.embed_dim = 128
    c.model.dtype = "bfloat16"
    c.augment.kind = "simclr_image"
    c.augment.simclr_image.size = 224
    c.augment.simclr_image.jitter_strength = 1.0
    c.augment.simclr_image.blur_prob = 0.5
    c.simclr.temperature = 0.1
    c.batch_size = 4096
    steps_per_epoch = EPOCH // c.batch_size
    c.num_steps = 100 * steps_per_epoch
    c.optimizer.name = "lars"
    c.optimizer.learning_rate = 0.3
    c.optimizer.lr_scaling = "linear"
    c.optimizer.schedule = "warmup_cosine"
    c.optimizer.warmup_steps = 10 * steps_per_epoch
    c.optimizer.weight_decay = 1e-6
    c.eval_every = 10 * steps_per_epoch
    c.checkpoint_every = steps_per_epoch
    c.eval.max_examples = 50_000
    c.eval.linear_probe = True
    return c
