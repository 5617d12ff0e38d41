"""Data: sources (TFDS ``data_source``, bundled MNIST-1D and digits) and grain
input pipelines."""

from jaxmetric.data import input_pipeline, sources
from jaxmetric.data.input_pipeline import class_balanced_batches, shuffled_batches
from jaxmetric.data.sources import Split, digits, load, mnist1d, tfds

__all__ = [
    "Split",
    "class_balanced_batches",
    "digits",
    "input_pipeline",
    "load",
    "mnist1d",
    "shuffled_batches",
    "sources",
    "tfds",
]
