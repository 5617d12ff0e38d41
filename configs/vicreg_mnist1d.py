"""VICReg on MNIST-1D: the 1-D CNN + a 2-layer expander (BN, 256 -> 128);
invariance, variance and covariance terms with the paper's weights 25 / 25
/ 1 over the global batch; Adam; the MNIST-1D views of the SimCLR recipe.
"""

from jaxmetric.train.config import mnist1d_ssl_config


def get_config():
    c = mnist1d_ssl_config("vicreg")
    c.model.head_hidden = 256
    c.model.head_bn = True
    c.model.embed_dim = 128
    c.vicreg.sim_weight = 25.0
    c.vicreg.var_weight = 25.0
    c.vicreg.cov_weight = 1.0
    c.optimizer.learning_rate = 1e-3
    return c
