"""Data: sources (TFDS ``data_source``, bundled MNIST-1D and digits) and grain
input pipelines."""

from jaxmetric import _extras

# grain and cv2 at import; absl, tensorflow_datasets, mnist1d and sklearn
# (the digits set) where a source or a preparation needs them.
with _extras.requires(
    "jaxmetric.data", "grain", "cv2", "absl", "tensorflow_datasets", "mnist1d", "sklearn"
):
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
