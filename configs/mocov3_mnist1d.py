"""MoCo v3 on MNIST-1D: the 1-D CNN + a 2-layer projector (BN, 128 -> 32,
BN on the output) and a predictor (32 -> 128 -> 32, BN) on the online
branch; keys from the momentum encoder (cosine schedule 0.99 -> 1), the
other keys of the global batch as negatives (no queue), symmetric InfoNCE
x 2T; Adam; the MNIST-1D views of the SimCLR recipe.
"""

from jaxmetric.train.config import mnist1d_ssl_config


def get_config():
    c = mnist1d_ssl_config("mocov3")
    c.model.head_bn = True
    c.model.head_final_bn = True
    c.model.embed_dim = 32
    c.model.predictor = "mlp"
    c.model.predictor_hidden = 128
    c.mocov3.temperature = 0.2
    c.mocov3.base_momentum = 0.99
    c.optimizer.learning_rate = 1e-2
    return c
