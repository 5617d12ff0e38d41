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

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("barlow_twins")
    c.model.head_hidden = 2048
    c.model.head_layers = 3
    c.model.embed_dim = 2048
    c.barlow_twins.lambda_offdiag = 5e-3
    c.optimizer.learning_rate = 0.3
    c.optimizer.weight_decay = 1e-4
    return c
