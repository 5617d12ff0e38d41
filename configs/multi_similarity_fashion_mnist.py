"""``triplet_fashion_mnist.py`` with the multi-similarity loss (Wang et al.
2019: alpha 2, beta 50, base 0.5) on the pairs of its miner (epsilon 0.1):
PML's ``MultiSimilarityLoss()`` with ``MultiSimilarityMiner()``."""

import pathlib

from jaxmetric.train.config import load_recipe


def get_config():
    c = load_recipe(pathlib.Path(__file__).with_name("triplet_fashion_mnist.py"))
    c.supervised.loss = "multi_similarity_loss"
    c.supervised.loss_kwargs = {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1}
    return c
