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

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("byol")
    c.model.head_hidden = 4096
    c.model.head_layers = 2
    c.model.embed_dim = 256
    c.model.predictor = "mlp"
    c.model.predictor_hidden = 4096
    c.model.predictor_bn = True
    c.byol.base_momentum = 0.99
    c.byol.final_momentum = 1.0
    c.optimizer.learning_rate = 1.0
    c.optimizer.weight_decay = 1e-5
    return c
