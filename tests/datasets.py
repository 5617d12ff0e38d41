"""Datasets the tests write to disk: real TFDS ArrayRecord files, made
without TensorFlow."""

import numpy as np
import tensorflow_datasets as tfds


class VariableSizeImages(tfds.core.GeneratorBasedBuilder):
    """A real ArrayRecord dataset, written without TensorFlow: uint8 images
    of varying sizes (as ImageNet's) stored as raw bytes, 3 classes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(None, None, 3), dtype=np.uint8, encoding="bytes"
                    ),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(23, 0), "test": self._generate_examples(7, 1)}

    def _generate_examples(self, n, seed):
        rng = np.random.default_rng(seed)
        for i in range(n):
            h, w = rng.integers(9, 21, size=2)
            image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
            yield i, {"image": image, "label": i % 3}


def write_variable_size_images(data_dir: str) -> str:
    """Prepares ``variable_size_images`` in ``data_dir``; returns its name."""
    VariableSizeImages(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return "variable_size_images"
