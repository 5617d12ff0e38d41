"""The default recipe, run by ``make demo``: SimCLR on MNIST-1D (it is
``simclr_mnist1d.py``)."""

import pathlib

from jaxmetric.train.config import load_recipe


def get_config():
    return load_recipe(pathlib.Path(__file__).resolve().parent / "simclr_mnist1d.py")
