"""Barlow Twins on MNIST-1D: the 1-D CNN + a 2-layer projector (BN,
256 -> 128); the cross-correlation of the two views over the global batch
towards the identity, lambda = 5e-3; Adam; the MNIST-1D views of the SimCLR
recipe.
"""

from jaxmetric.train.config import mnist1d_ssl_config


def get_config():
    c = mnist1d_ssl_config("barlow_twins")
    c.model.head_hidden = 256
    c.model.head_bn = True
    c.model.embed_dim = 128
    c.barlow_twins.lambda_offdiag = 5e-3
    c.optimizer.learning_rate = 1e-3
    return c
