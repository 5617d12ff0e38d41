"""SimCLR on MNIST-1D: the 1-D CNN (125-d features) + MLP head to 16-d.

As the MNIST-1D SimCLR notebook (Greydanus 2020): PyTorch-style uniform
fan-in initialisation, trend-removed + circularly shifted + re-sloped views,
Adam. The views also get a random offset (+-1) and Gaussian noise (0.2) and
Adam runs at 1e-2: on the 2-core CPU this took the held-out kNN on z from
50% to 70% and the linear probe on h from 72% to 80% at 2,000 steps (T = 0.5,
batch 128, a cosine schedule and head BN each did worse).
"""

from jaxmetric.train.config import mnist1d_ssl_config


def get_config():
    c = mnist1d_ssl_config("simclr")
    c.log_every = 100
    c.model.embed_dim = 16
    c.augment.offset = 1.0
    c.augment.noise = 0.2
    c.simclr.temperature = 0.1
    c.optimizer.learning_rate = 1e-2
    c.eval.reference.name = "MNIST-1D SimCLR notebook"
    c.eval.reference.linear_probe_accuracy = 0.82
    return c
