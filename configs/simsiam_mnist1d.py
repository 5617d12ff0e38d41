"""SimSiam on MNIST-1D: the 1-D CNN + a 2-layer projector with BN on its
hidden layer and on its output (128 -> 64) and a bottleneck predictor
(64 -> 16 -> 64, BN); stop-gradient on the targets, no momentum encoder;
Adam; the MNIST-1D views of the SimCLR recipe.
"""

from jaxmetric.train.config import mnist1d_ssl_config


def get_config():
    c = mnist1d_ssl_config("simsiam")
    c.model.head_bn = True
    c.model.head_final_bn = True
    c.model.embed_dim = 64
    c.model.predictor = "mlp"
    c.model.predictor_hidden = 16
    c.optimizer.learning_rate = 3e-3
    return c
