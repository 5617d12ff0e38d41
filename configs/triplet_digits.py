"""Supervised metric learning on scikit-learn's 8x8 digits: triplet loss with
batch-hard mining on class-balanced batches (8 classes x 8 samples), MLP
encoder + linear embedding, MAP@R on the held-out half."""

from jaxmetric.train.config import base_config


def get_config():
    c = base_config()
    c.method = "supervised"
    c.dataset.name = "digits"
    c.dataset.test_fraction = 0.5
    c.dataset.seed = 0
    c.model.encoder = "mlp"
    c.model.mlp_hidden = (256, 128)
    c.model.head = "linear"
    c.model.embed_dim = 64
    c.model.init = "torch"
    c.augment.kind = "none"
    c.supervised.loss = "triplet_margin_loss"
    c.supervised.loss_kwargs.margin = 0.2
    c.supervised.loss_kwargs.mining = "batch_hard"
    c.supervised.samples_per_class = 8
    c.batch_size = 64
    c.num_steps = 1000
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.eval.retrieval = True
    c.eval.knn_k = 10
    return c
