"""BYOL on MNIST-1D: the 1-D CNN + a 2-layer projector (BN, 128 -> 32) and
a predictor (32 -> 128 -> 32, BN) on the online branch; the target network
is an EMA of the online one, its momentum on BYOL's cosine schedule from
0.99 to 1; symmetric normalised-MSE loss; Adam; the MNIST-1D views of the
SimCLR recipe.
"""

from jaxmetric.train.config import base_config


def get_config():
    c = base_config()
    c.method = "byol"
    c.dataset.name = "mnist1d"
    c.model.encoder = "cnn1d"
    c.model.init = "torch"
    c.model.head = "simclr"
    c.model.head_hidden = 128
    c.model.head_bn = True
    c.model.embed_dim = 32
    c.model.predictor = "mlp"
    c.model.predictor_hidden = 128
    c.augment.kind = "mnist1d"
    c.byol.base_momentum = 0.99
    c.batch_size = 512
    c.num_steps = 2000
    c.log_every = 500
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.eval.reference.name = "MNIST-1D notebook"
    c.eval.reference["raw-input kNN (k=10)"] = 0.596
    return c
