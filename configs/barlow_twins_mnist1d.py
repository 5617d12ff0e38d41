"""Barlow Twins on MNIST-1D: the 1-D CNN + a 2-layer projector (BN,
256 -> 128); the cross-correlation of the two views over the global batch
towards the identity, lambda = 5e-3; Adam; the MNIST-1D views of the SimCLR
recipe.
"""

from jaxmetric.train.config import base_config


def get_config():
    c = base_config()
    c.method = "barlow_twins"
    c.dataset.name = "mnist1d"
    c.model.encoder = "cnn1d"
    c.model.init = "torch"
    c.model.head = "simclr"
    c.model.head_hidden = 256
    c.model.head_bn = True
    c.model.embed_dim = 128
    c.augment.kind = "mnist1d"
    c.barlow_twins.lambda_offdiag = 5e-3
    c.batch_size = 512
    c.num_steps = 2000
    c.log_every = 500
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.eval.reference.name = "MNIST-1D notebook"
    c.eval.reference["raw-input kNN (k=10)"] = 0.596
    return c
