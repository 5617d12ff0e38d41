"""MoCo v2 on MNIST-1D: the 1-D CNN + MoCo v2 MLP head (16-d), a queue of
negatives and a momentum encoder, the MNIST-1D views of the SimCLR recipe.

The queue holds 1,024 keys (two batches): with only 4,000 training signals a
larger queue holds older keys of the query's own signal, i.e. false
negatives, and learns worse. Runs in about 3 minutes on a 2-core CPU.
"""

from jaxmetric.train.config import mnist1d_ssl_config


def get_config():
    c = mnist1d_ssl_config("moco")
    c.model.head = "moco_v2"
    c.model.embed_dim = 16
    c.moco.queue_size = 1024
    c.moco.momentum = 0.99
    c.moco.temperature = 0.1
    c.moco.symmetric = True
    c.num_steps = 4000
    c.optimizer.learning_rate = 1e-2
    return c
