"""VICReg on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem, a
3-layer expander (2048, BN), invariance / variance / covariance weights
25 / 25 / 1 (Bardes et al. 2022), LARS 0.3 x B / 256, weight decay 1e-4:
solo-learn's CIFAR recipe. Not run here.

Views: BYOL's asymmetric pair, which VICReg follows (Bardes et al. 2022,
appendix C.1, and its code's ``augmentations.TrainTransform``): crop 0.08-1,
flip, colour jitter p=0.8, grayscale p=0.2, Gaussian blur p=1.0 / 0.1 and
solarisation p=0.0 / 0.2 on views 1 / 2 (``SSL_VIEWS["byol"]``).
Differences from the paper's views: colour jitter saturation 0.4 (strength
0.5) instead of 0.2; a 3 x 3 blur kernel at 32x32. solo-learn's CIFAR
recipe uses crop 0.2-1, no blur and solarisation 0.1 on both views.
"""

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("vicreg", views="byol")
    c.model.head_hidden = 2048
    c.model.head_layers = 3
    c.model.embed_dim = 2048
    c.vicreg.sim_weight = 25.0
    c.vicreg.var_weight = 25.0
    c.vicreg.cov_weight = 1.0
    c.optimizer.learning_rate = 0.3
    c.optimizer.weight_decay = 1e-4
    return c
