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


JPEG_SPLITS = {"train": 48, "test": 16, "damaged": 12}
DAMAGED_RECORDS = 2  # of the "damaged" split, truncated JPEGs


def _jpeg(rng: np.random.Generator) -> bytes:
    """A JPEG of smooth random content, 40-72 px a side (independently)."""
    import cv2

    h, w = rng.integers(40, 73, size=2)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    image = cv2.resize(small, (int(w), int(h)), interpolation=cv2.INTER_CUBIC)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


class JpegImages(tfds.core.GeneratorBasedBuilder):
    """A real ArrayRecord dataset of encoded JPEGs of varying sizes, in the
    format ``tfds build`` gives ImageNet (``tfds.features.Image``), written
    without TensorFlow: the JPEGs are encoded with OpenCV and the Image
    feature stores encoded bytes as they are. Labels 0-2; the "damaged"
    split also holds ``DAMAGED_RECORDS`` truncated JPEGs, labelled 3."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(num_classes=4),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {s: self._generate_examples(s, n) for s, n in JPEG_SPLITS.items()}

    def _generate_examples(self, split, n):
        rng = np.random.default_rng(list(JPEG_SPLITS).index(split))
        for i in range(n):
            data = _jpeg(rng)
            damaged = split == "damaged" and i < DAMAGED_RECORDS
            if damaged:
                yield i, {"image": data[: len(data) // 3], "label": 3}
            else:
                yield i, {"image": data, "label": i % 3}


def write_jpeg_images(data_dir: str) -> str:
    """Prepares ``jpeg_images`` in ``data_dir``; returns its name."""
    JpegImages(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return "jpeg_images"
