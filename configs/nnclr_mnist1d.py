"""NNCLR on MNIST-1D: SimCLR's recipe (the 1-D CNN, the views, Adam) with the
nearest neighbour of each view in a support queue of the last 2,048
embeddings (four batches) as the other view's positive (Dwibedi et al. 2021).
No prediction head: MNIST-1D's recipes keep the SimCLR projector alone."""

from jaxmetric.train.config import mnist1d_ssl_config


def get_config():
    c = mnist1d_ssl_config("nnclr")
    c.log_every = 100
    c.model.embed_dim = 16
    c.nnclr.queue_size = 2048
    c.nnclr.temperature = 0.2
    c.optimizer.learning_rate = 3e-3
    return c
