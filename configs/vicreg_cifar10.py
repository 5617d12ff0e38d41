"""VICReg on CIFAR-10 (Cloud TPU recipe): ResNet-18 with the CIFAR stem, a
3-layer expander (2048, BN), invariance / variance / covariance weights
25 / 25 / 1 (Bardes et al. 2022), LARS 0.3 x B / 256, weight decay 1e-4:
solo-learn's CIFAR recipe. Not run here.
"""

from jaxmetric.train.config import cifar10_ssl_config


def get_config():
    c = cifar10_ssl_config("vicreg")
    c.model.head_hidden = 2048
    c.model.head_layers = 3
    c.model.embed_dim = 2048
    c.vicreg.sim_weight = 25.0
    c.vicreg.var_weight = 25.0
    c.vicreg.cov_weight = 1.0
    c.optimizer.learning_rate = 0.3
    c.optimizer.weight_decay = 1e-4
    return c
