"""SimSiam on MNIST-1D: the 1-D CNN + a 2-layer projector with BN on its
hidden layer and on its output (128 -> 64) and a bottleneck predictor
(64 -> 16 -> 64, BN); stop-gradient on the targets, no momentum encoder;
Adam; the MNIST-1D views of the SimCLR recipe.
"""

from jaxmetric.train.config import base_config


def get_config():
    c = base_config()
    c.method = "simsiam"
    c.dataset.name = "mnist1d"
    c.model.encoder = "cnn1d"
    c.model.init = "torch"
    c.model.head = "simclr"
    c.model.head_hidden = 128
    c.model.head_bn = True
    c.model.head_final_bn = True
    c.model.embed_dim = 64
    c.model.predictor = "mlp"
    c.model.predictor_hidden = 16
    c.augment.kind = "mnist1d"
    c.batch_size = 512
    c.num_steps = 2000
    c.log_every = 500
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.eval.reference.name = "MNIST-1D notebook"
    c.eval.reference["raw-input kNN (k=10)"] = 0.596
    return c
