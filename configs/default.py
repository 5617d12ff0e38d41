"""The default recipe (``make demo``): SimCLR on MNIST-1D."""

from configs.simclr_mnist1d import get_config as _simclr_mnist1d


def get_config():
    return _simclr_mnist1d()
