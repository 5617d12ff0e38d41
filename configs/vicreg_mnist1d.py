"""VICReg on MNIST-1D: the 1-D CNN + a 2-layer expander (BN, 256 -> 128);
invariance, variance and covariance terms with the paper's weights 25 / 25
/ 1 over the global batch; Adam; the MNIST-1D views of the SimCLR recipe.
"""

from jaxmetric.train.config import base_config


def get_config():
    c = base_config()
    c.method = "vicreg"
    c.dataset.name = "mnist1d"
    c.model.encoder = "cnn1d"
    c.model.init = "torch"
    c.model.head = "simclr"
    c.model.head_hidden = 256
    c.model.head_bn = True
    c.model.embed_dim = 128
    c.augment.kind = "mnist1d"
    c.vicreg.sim_weight = 25.0
    c.vicreg.var_weight = 25.0
    c.vicreg.cov_weight = 1.0
    c.batch_size = 512
    c.num_steps = 2000
    c.log_every = 500
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.eval.reference.name = "MNIST-1D notebook"
    c.eval.reference["raw-input kNN (k=10)"] = 0.596
    return c
