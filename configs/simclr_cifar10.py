"""SimCLR on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem,
2-layer projection head (2048 -> 128, BN), global BN, temperature 0.5, LARS
with learning rate 0.3 x B / 256, weight decay 1e-6 (not on biases / BN),
10 warm-up epochs then cosine, colour jitter strength 0.5 and no blur
(Chen et al. 2020, appendix B.9). Batch 1024 (512-4096 all work: the loss
gathers negatives from every device).

Needs CIFAR-10 prepared for ``tfds.data_source`` in ``dataset.data_dir``.
"""

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("simclr", batch_size=1024)
    c.model.head_hidden = 2048
    c.model.head_layers = 2
    c.model.embed_dim = 128
    c.simclr.temperature = 0.5
    c.optimizer.learning_rate = 0.3
    c.optimizer.weight_decay = 1e-6
    c.optimizer.trust_coefficient = 0.001  # SimCLR's LARS (optax's default)
    return c
