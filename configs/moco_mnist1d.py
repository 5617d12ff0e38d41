"""MoCo v2 on MNIST-1D: the 1-D CNN + MoCo v2 MLP head (16-d), a queue of
negatives and a momentum encoder, the MNIST-1D views of the SimCLR recipe.

Runs in about a minute on a 2-core CPU.
"""

from jaxmetric.train.config import base_config


def get_config():
    c = base_config()
    c.method = "moco"
    c.dataset.name = "mnist1d"
    c.model.encoder = "cnn1d"
    c.model.init = "torch"
    c.model.head = "moco_v2"
    c.model.head_hidden = 128
    c.model.embed_dim = 16
    c.augment.kind = "mnist1d"
    c.augment.offset = 0.5
    c.augment.noise = 0.1
    c.moco.queue_size = 2048  # about half the 4,000 training signals
    c.moco.momentum = 0.99
    c.moco.temperature = 0.1
    c.moco.symmetric = True
    c.batch_size = 256
    c.num_steps = 2000
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 3e-3
    c.eval.reference.name = "MNIST-1D notebook"
    c.eval.reference["raw-input kNN (k=10)"] = 0.596
    return c
