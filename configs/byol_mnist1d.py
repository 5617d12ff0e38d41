"""BYOL on MNIST-1D: the 1-D CNN + a 2-layer projector (BN, 128 -> 32) and
a predictor (32 -> 128 -> 32, BN) on the online branch; the target network
is an EMA of the online one, its momentum on BYOL's cosine schedule from
0.99 to 1; symmetric normalised-MSE loss; Adam; the MNIST-1D views of the
SimCLR recipe.
"""

from jaxmetric.train.config import mnist1d_ssl_config


def get_config():
    c = mnist1d_ssl_config("byol")
    c.model.head_bn = True
    c.model.embed_dim = 32
    c.model.predictor = "mlp"
    c.model.predictor_hidden = 128
    c.byol.base_momentum = 0.99
    c.optimizer.learning_rate = 3e-3
    return c
