"""BYOL on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem, a
2-layer projector (4096 -> 256, BN) and predictor (256 -> 4096 -> 256, BN),
target momentum on the cosine schedule 0.99 -> 1, LARS 1.0 x B / 256 with
trust coefficient 0.02, weight decay 1e-5 (not on biases / BN), 10 warm-up
epochs then cosine over 1000 epochs: solo-learn's CIFAR recipe (da Costa et
al. 2022), which follows Grill et al. 2020 at CIFAR scale.

Views: the paper's asymmetric pair (Grill et al. 2020, appendix B, table 6):
crop 0.08-1, flip, colour jitter p=0.8, grayscale p=0.2, Gaussian blur p=1.0
on view 1 and 0.1 on view 2, solarisation p=0.0 on view 1 and 0.2 on view 2
(``SSL_VIEWS["byol"]``).

Differences from the paper: colour jitter saturation 0.4 (strength 0.5)
instead of 0.2; the blur kernel is 10% of the 32-pixel side (3 x 3).
solo-learn's CIFAR views drop the blur on both views (``blur_prob = 0.0``).

Needs CIFAR-10 prepared for ``tfds.data_source`` in ``dataset.data_dir``.
"""

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("byol", views="byol")
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
