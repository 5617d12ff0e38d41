"""Barlow Twins on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR
stem, a 3-layer projector (2048 -> 2048 -> 2048, BN + ReLU between), lambda
5e-3 on the cross-correlation of the global batch, LARS 0.3 x B / 256 with
trust coefficient 0.02, weight decay 1e-4 (not on biases / BN), 10 warm-up
epochs then cosine over 1000 epochs: solo-learn's CIFAR recipe (da Costa et
al. 2022) for Zbontar et al. 2021 (whose ImageNet projector is 3 x 8192).

Views: BYOL's asymmetric pair, as the paper's (Zbontar et al. 2021,
section 3, image augmentations: BYOL's parameters; the code's
``Transform``): crop 0.08-1, flip, colour jitter p=0.8, grayscale p=0.2,
Gaussian blur p=1.0 / 0.1 and solarisation p=0.0 / 0.2 on views 1 / 2
(``SSL_VIEWS["byol"]``).

solo-learn also multiplies the loss by 0.1 (``scale_loss``); the loss here
is the paper's, unscaled. Differences from the paper's views: colour jitter
saturation 0.4 (strength 0.5) instead of 0.2; a 3 x 3 blur kernel at 32x32.
solo-learn's CIFAR views drop the blur on both views.

Needs CIFAR-10 prepared for ``tfds.data_source`` in ``dataset.data_dir``.
"""

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("barlow_twins", views="byol")
    c.model.head_hidden = 2048
    c.model.head_layers = 3
    c.model.embed_dim = 2048
    c.barlow_twins.lambda_offdiag = 5e-3
    c.optimizer.learning_rate = 0.3
    c.optimizer.weight_decay = 1e-4
    return c
