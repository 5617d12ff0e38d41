"""Datasets the tests write to disk: real TFDS ArrayRecord files, made
without TensorFlow."""

import os

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


def _png(rng: np.random.Generator, h: int, w: int, channels: int) -> bytes:
    import cv2

    image = rng.integers(0, 256, (h, w, channels)).astype(np.uint8)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _mock_builder(base, version):
    """A builder with ``base``'s name, version and features (one of TFDS's own
    builders) whose records are generated here instead of downloaded, so that
    ``tfds.data_source(base.name, data_dir=...)`` reads it with TFDS's own
    builder. ``labels[split]`` gives each record's label."""
    from tensorflow_datasets.core import load

    class Mock(base, skip_registration=True):
        name = load.builder_cls(base.name).name
        VERSION = tfds.core.Version(version)
        SUPPORTED_VERSIONS = []
        labels: dict[str, list[int]] = {}

        def _split_generators(self, dl_manager):
            del dl_manager
            return {s: self._generate_examples(s) for s in self.labels}

        def _generate_examples(self, split):
            rng = np.random.default_rng(sorted(self.labels).index(split))
            names = self.info.features["label"].names
            for i, y in enumerate(self.labels[split]):
                image = _jpeg(rng)
                example = {
                    "image": image,
                    "label": int(y),
                    "bbox": tfds.features.BBox(0.1, 0.2, 0.8, 0.9),
                }
                if self.name == "caltech_birds2011":
                    example |= {
                        "image/filename": f"{split}/{i}.jpg",
                        "label_name": names[y],
                        "segmentation_mask": _png(rng, 8, 8, 1),
                    }
                else:  # cars196
                    example["id"] = f"{split}_{i:05d}"
                yield f"{split}/{i}", example

    return Mock


# Labels of the mock CUB-200-2011 / Cars196 records: every class boundary of
# MLRC's split (0, C/2 - 1, C/2, C - 1) in both stored splits, and random ones.
def mock_labels(num_classes: int, n: int, seed: int) -> list[int]:
    half = num_classes // 2
    rng = np.random.default_rng(seed)
    return [0, half - 1, half, num_classes - 1, *rng.integers(0, num_classes, n - 4).tolist()]


def write_mock_tfds(data_dir: str, name: str, sizes=(14, 10)) -> str:
    """Writes a few records of TFDS's ``caltech_birds2011`` or ``cars196`` in
    ``data_dir``, with TFDS's own features and version (JPEG images made with
    OpenCV; no download, no TensorFlow); returns ``name``."""
    from tensorflow_datasets.image_classification import caltech_birds, cars196

    base, version = {
        "caltech_birds2011": (caltech_birds.CaltechBirds2011, "0.2.0"),
        "cars196": (cars196.Cars196, "2.1.0"),
    }[name]
    builder_cls = _mock_builder(base, version)
    num_classes = 200 if name == "caltech_birds2011" else 196
    builder_cls.labels = {
        split: mock_labels(num_classes, n, seed)
        for seed, (split, n) in enumerate(zip(("train", "test"), sizes, strict=True))
    }
    builder_cls(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return name


# (class_id, super_class_id) per image, ids from 1 as in Ebay_*.txt.
SOP_LISTS = {
    "train": [(1, 1), (1, 1), (2, 3), (2, 3), (3, 12)],
    "test": [(4, 5), (4, 5), (22_634, 12)],  # the last class of SOP
}


def write_fake_sop(root):
    """A tiny copy of what Stanford_Online_Products.zip extracts to, in
    ``root``: Ebay_train.txt / Ebay_test.txt and a JPEG per line (one
    grayscale, sizes vary); returns (its folder, {split: [(class_id,
    super_class_id, JPEG bytes)]})."""
    import cv2

    from jaxmetric.data import sop

    base = os.path.join(root, "Stanford_Online_Products")
    rng = np.random.default_rng(0)
    written, image_id = {}, 1
    for split, rows in SOP_LISTS.items():
        lines = ["image_id class_id super_class_id path"]
        written[split] = []
        for k, (class_id, super_id) in enumerate(rows):
            folder = f"{sop.SUPER_CLASSES[super_id - 1]}_final"
            path = f"{folder}/{class_id:06d}_{k}.JPG"
            shape = (9 + k, 12) if k == 1 else (10 + k, 8 + k, 3)
            image = rng.integers(0, 256, shape).astype(np.uint8)
            os.makedirs(os.path.join(base, folder), exist_ok=True)
            ok, data = cv2.imencode(".jpg", image)
            assert ok
            with open(os.path.join(base, path), "wb") as f:
                f.write(data.tobytes())
            lines.append(f"{image_id} {class_id} {super_id} {path}")
            image_id += 1
            written[split].append((class_id, super_id, data.tobytes()))
        with open(os.path.join(base, sop.LISTS[split]), "w") as f:
            f.write("\n".join(lines) + "\n")
    return base, written
