"""The default recipe, run by ``make demo``: SimCLR on MNIST-1D.

It is ``simclr_mnist1d.py``; loaded by path so that this file works from any
working directory (absl loads config files by path, not as a package).
"""

import importlib.util
import os


def get_config():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simclr_mnist1d.py")
    spec = importlib.util.spec_from_file_location("simclr_mnist1d", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()
