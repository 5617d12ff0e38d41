"""Writes a folder of images, or NumPy arrays and labels, as a TFDS ArrayRecord
dataset, without TensorFlow.

Why: ``tfds build`` needs TensorFlow, and so does ``tfds.features.Image`` to
encode an image array; given JPEG or PNG bytes it stores them as they are. Here
the images are already encoded (the files of a folder, stored byte for byte)
or are encoded with OpenCV (arrays), so TensorFlow is not needed. The dataset
has the same features as one that ``tfds build`` writes (ImageNet's, for
example): ``image`` (``tfds.features.Image``, JPEG or PNG bytes), ``label``
(``tfds.features.ClassLabel``) and, for a folder, ``file_name``
(``tfds.features.Text``). So ``jaxmetric.data.sources.tfds``
(``tfds.data_source``) reads both kinds the same way; it decodes the images
with OpenCV.

``prepare_folder`` reads the ``torchvision.datasets.ImageFolder`` layout::

    folder/<split>/<class_name>/<image>.{jpg,jpeg,png}

``prepare_arrays`` takes ``{split: (images, labels)}``; ``prepare_idx``
reads a folder of MNIST-style IDX files (``read_idx``) into it, e.g.
Fashion-MNIST (``prepare_fashion_mnist``). They write
``data_dir/<name>/1.0.0/`` and return ``name``; train on it with
``--config.dataset.name=tfds --config.dataset.tfds_name=<name>
--config.dataset.data_dir=<data_dir>``. TFDS shuffles the records while it
writes them.

Command line::

    python -m jaxmetric.data.prepare --folder=DIR --name=NAME --data_dir=DIR
    python -m jaxmetric.data.prepare fashion_mnist --data_dir=DIR [--idx_dir=DIR]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import gzip
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

# The version folder every dataset is written in: data_dir/<name>/1.0.0/.
DATASET_VERSION = "1.0.0"
# File name endings prepare_folder reads (case-insensitive), as ImageFolder
# would for JPEG and PNG.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
_SPLIT = re.compile(r"\w+")
_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png"}
_JPEG_QUALITY = 95


# --------------------------------------------------------------------------
# Checks shared by both entry points.


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"`name`={name!r} is not a valid dataset name: use a snake_case identifier "
            "(lower-case letters, digits and single underscores, starting with a letter), "
            "e.g. 'my_images'."
        )
    import tensorflow_datasets as tfds

    if name in tfds.list_builders(with_community_datasets=False):
        # tfds.data_source would look for that builder's version, not ours.
        raise ValueError(
            f"`name`={name!r} is the name of a dataset that TFDS knows; "
            f"tfds.data_source would look for TFDS's own {name!r}, not this one. "
            "Choose another name, e.g. 'my_" + name + "'."
        )


def _check_split_name(split: Any, argument: str) -> None:
    if not isinstance(split, str) or not _SPLIT.fullmatch(split):
        raise ValueError(
            f"`{argument}`: split name {split!r} must be letters, digits and underscores, "
            "e.g. 'train' or 'test'."
        )


def _clear_target(data_dir: str, name: str, overwrite: bool) -> None:
    """Refuses to write over an existing ``data_dir/name`` unless ``overwrite``,
    and then removes it only if it holds nothing but prepared TFDS versions."""
    target = os.path.join(os.fspath(data_dir), name)
    if not os.path.exists(target):
        return
    if not overwrite:
        raise ValueError(
            f"`name`={name!r}: {target} already exists in `data_dir`. Pass overwrite=True "
            "(--overwrite) to replace that dataset, or choose another name."
        )
    for entry in os.listdir(target):
        path = os.path.join(target, entry)
        is_version = os.path.isfile(os.path.join(path, "dataset_info.json"))
        if not (is_version or entry.startswith("incomplete.")):
            raise ValueError(
                f"`name`={name!r}: {target} is not a dataset this module wrote ({entry!r} "
                "is not a prepared TFDS version); it is left as it is. Choose another "
                "`name` or `data_dir`."
            )
    shutil.rmtree(target)


# --------------------------------------------------------------------------
# The TFDS builder, defined per call so that several datasets can be prepared
# in one process.


def _write(
    data_dir: str,
    name: str,
    features: dict[str, Any],
    generators: Mapping[str, Callable[[], Iterator[tuple[Any, dict[str, Any]]]]],
    description: str,
) -> None:
    """Writes ``data_dir/name/DATASET_VERSION`` as ArrayRecord, with the
    label index of every split (``jaxmetric.data.sources``)."""
    import tensorflow_datasets as tfds

    dataset_name = name

    class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = dataset_name
        VERSION = tfds.core.Version(DATASET_VERSION)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=description,
                features=tfds.features.FeaturesDict(features),
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(split) for split in generators}

        def _generate_examples(self, split):
            yield from generators[split]()

    builder = _Builder(data_dir=os.fspath(data_dir), file_format="array_record")
    # TFDS shuffles a split in memory up to 1 GB and spills bigger ones to
    # disk through TensorFlow's file API (tf.io.gfile), which is not
    # installed: keep every split in memory instead (it holds the split's
    # encoded bytes, e.g. 3 GB for 100,000 JPEGs of 31 KB).
    from tensorflow_datasets.core import shuffle

    limit = shuffle.MAX_MEM_BUFFER_SIZE
    shuffle.MAX_MEM_BUFFER_SIZE = 1 << 62
    try:
        builder.download_and_prepare()
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE = limit
    if "label" in features:
        # Opening each split once writes its label index beside the files,
        # so the trainer's first open is as fast as any later one.
        from jaxmetric.data import sources

        for split in generators:
            sources.tfds(name, split, data_dir=os.fspath(data_dir))


# --------------------------------------------------------------------------
# Arrays.


def _encode(image: np.ndarray, image_format: str) -> bytes:
    """PNG (lossless) or JPEG (quality 95) bytes of an RGB(A) / grayscale
    uint8 image, with OpenCV (which expects BGR(A))."""
    import cv2

    if image.ndim == 3 and image.shape[-1] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    elif image.ndim == 3:
        image = image[..., 0]
    if image_format == "png":
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image))
    else:
        params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image), params)
    if not ok:
        raise ValueError(
            f"OpenCV could not encode an image of shape {image.shape} as {image_format}."
        )
    return encoded.tobytes()


def _check_images(images: Any, argument: str) -> tuple[list[np.ndarray], set[tuple[int, ...]]]:
    """The images of one split as a list of [H, W] / [H, W, C] uint8 arrays,
    and the set of their shapes (as [H, W, C])."""
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(
                f"`{argument}` images: an array must be [N, H, W] or [N, H, W, C], "
                f"got shape {images.shape}."
            )
        if images.dtype != np.uint8:
            raise ValueError(
                f"`{argument}` images are {images.dtype}; uint8 is required "
                "(values in [0, 255]: e.g. np.clip(x * 255, 0, 255).astype(np.uint8))."
            )
        images = list(images)
    elif isinstance(images, Sequence):
        images = list(images)
    else:
        raise ValueError(
            f"`{argument}` images must be a uint8 array [N, H, W(, C)] or a list of "
            f"[H, W(, C)] arrays, got {type(images).__name__}."
        )
    shapes = set()
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"`{argument}` image {i} must be an array [H, W(, C)], got {shape}.")
        if image.dtype != np.uint8:
            raise ValueError(
                f"`{argument}` image {i} is {image.dtype}; uint8 is required "
                "(values in [0, 255]: e.g. np.clip(x * 255, 0, 255).astype(np.uint8))."
            )
        if image.ndim == 2:
            image = images[i] = image[..., None]
        if image.shape[-1] not in (1, 3, 4) or 0 in image.shape:
            raise ValueError(
                f"`{argument}` image {i} has shape {image.shape}: 1, 3 or 4 channels "
                "(grayscale, RGB, RGBA) and a non-empty height and width are required."
            )
        shapes.add(image.shape)
    return images, shapes


def _check_labels(labels: Any, n: int, argument: str, num_classes: int | None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"`{argument}` labels must be a 1-D array of ints, got {labels.dtype} "
            f"of shape {labels.shape}."
        )
    if len(labels) != n:
        raise ValueError(
            f"`{argument}`: {n} images but {len(labels)} labels; they must have the same length."
        )
    if len(labels) and labels.min() < 0:
        raise ValueError(f"`{argument}` labels must be >= 0, got {labels.min()}.")
    if num_classes is not None and len(labels) and labels.max() >= num_classes:
        raise ValueError(
            f"`{argument}` label {labels.max()} is out of range for the {num_classes} "
            "`class_names`."
        )
    return labels.astype(np.int64)


def prepare_arrays(
    data_dir: str | os.PathLike,
    name: str,
    splits: Mapping[str, tuple[np.ndarray | Sequence[np.ndarray], np.ndarray]],
    *,
    class_names: Sequence[str] | None = None,
    image_format: str = "png",
    overwrite: bool = False,
) -> str:
    """Writes NumPy images and labels as the TFDS ArrayRecord dataset ``name``.

    Each image is encoded with OpenCV: PNG (lossless: decoding gives back the
    array exactly) or JPEG (quality 95). The features are ``image``
    (``tfds.features.Image`` of shape [H, W, C], or [None, None, C] when the
    sizes vary) and ``label`` (``tfds.features.ClassLabel``).

    Args:
      data_dir: the TFDS data directory to write ``<name>/1.0.0/`` in (the
        trainer's ``dataset.data_dir``).
      name: the dataset's name, a snake_case identifier that is not one of
        TFDS's own datasets (the trainer's ``dataset.tfds_name``).
      splits: ``{split: (images, labels)}``. ``images``: uint8 RGB [N, H, W, 3]
        (RGBA: C=4), grayscale [N, H, W] or [N, H, W, 1], or a list of [H, W(, C)]
        arrays of varying sizes; the same number of channels in every split.
        ``labels``: ints [N] in [0, num_classes).
      class_names: the name of each class (label i is ``class_names[i]``).
        Default: ``"0"``, ``"1"``, ... up to the largest label.
      image_format: ``"png"`` or ``"jpeg"`` (no alpha channel).
      overwrite: replace ``data_dir/name`` if it holds a dataset already
        (otherwise that is an error).

    Returns:
      ``name``, for ``tfds.data_source(name, data_dir=data_dir)``.

    Raises:
      ValueError: a ``name`` that is not a snake_case identifier or is a TFDS
        dataset, ``data_dir/name`` already there (without ``overwrite``), an
        unknown ``image_format``, an empty ``splits``, images that are not
        uint8 or have other than 1, 3 or 4 channels (or different channels
        across splits), images and labels of different lengths, labels that
        are not ints in range, ``class_names`` that are not unique, a split
        name that is not letters, digits and underscores.
    """
    _check_name(name)
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"`image_format` must be 'png' or 'jpeg', got {image_format!r}.")
    if not isinstance(splits, Mapping) or not splits:
        raise ValueError("`splits` must be a non-empty dict {split: (images, labels)}.")
    num_classes = None
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if not class_names or len(set(class_names)) != len(class_names):
            raise ValueError(f"`class_names` must be non-empty and unique, got {class_names!r}.")
        num_classes = len(class_names)

    data: dict[str, tuple[list[np.ndarray], np.ndarray]] = {}
    shapes: set[tuple[int, ...]] = set()
    for split, pair in splits.items():
        argument = f"splits[{split!r}]"
        _check_split_name(split, "splits")
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"`{argument}` must be a pair (images, labels).")
        images, split_shapes = _check_images(pair[0], argument)
        if not images:
            raise ValueError(f"`{argument}` has no images.")
        labels = _check_labels(pair[1], len(images), argument, num_classes)
        data[split] = images, labels
        shapes |= split_shapes
    channels = {shape[-1] for shape in shapes}
    if len(channels) > 1:
        raise ValueError(
            f"`splits`: the images have {sorted(channels)} channels; one number of "
            "channels is required for the whole dataset."
        )
    (num_channels,) = channels
    if image_format == "jpeg" and num_channels == 4:
        raise ValueError("`image_format`='jpeg' cannot store an alpha channel; use 'png'.")
    if class_names is None:
        num_classes = 1 + max(int(labels.max()) for _, labels in data.values())

    import tensorflow_datasets as tfds

    # A fixed [H, W, C] when every image has it (as CIFAR-10's), else [None, None, C].
    shape = next(iter(shapes)) if len(shapes) == 1 else (None, None, num_channels)
    label = (
        tfds.features.ClassLabel(names=class_names)
        if class_names is not None
        else tfds.features.ClassLabel(num_classes=num_classes)
    )
    features = {
        "image": tfds.features.Image(shape=shape, encoding_format=image_format),
        "label": label,
    }

    def examples(split: str) -> Callable[[], Iterator[tuple[int, dict[str, Any]]]]:
        images, labels = data[split]

        def generate():
            for i, (image, y) in enumerate(zip(images, labels, strict=True)):
                yield i, {"image": _encode(image, image_format), "label": int(y)}

        return generate

    _clear_target(data_dir, name, overwrite)
    _write(
        data_dir,
        name,
        features,
        {split: examples(split) for split in data},
        f"NumPy arrays written by jaxmetric.data.prepare.prepare_arrays ({image_format}).",
    )
    return name


# --------------------------------------------------------------------------
# A folder of image files.


def _list_subfolders(path: str) -> list[str]:
    return sorted(
        e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=True) and e.name[0] != "."
    )


def _list_images(path: str) -> list[str]:
    """The JPEG and PNG files under ``path``, in sub-folders too (as
    ImageFolder reads them), sorted."""
    found = []
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d[0] != ".")
        found += [
            os.path.join(root, f)
            for f in sorted(files)
            if f[0] != "." and f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    return found


def _inspect(path: str) -> tuple[str, int, int, int]:
    """(``"jpeg"`` or ``"png"``, height, width, channels) of one file, as the
    reader will see it: the format from the file's first bytes, the rest from
    decoding it as TFDS's reader does (``cv2.imdecode``, ``IMREAD_UNCHANGED``)."""
    import cv2

    with open(path, "rb") as f:
        data = f.read()
    fmt = next((v for k, v in _MAGIC.items() if data.startswith(k)), None)
    if fmt is None:
        raise ValueError(f"`folder`: {path} is not a JPEG or PNG file (by its content).")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"`folder`: {path} cannot be decoded (a damaged or truncated file?).")
    if image.dtype != np.uint8:
        raise ValueError(
            f"`folder`: {path} has {image.dtype} pixels (a 16-bit PNG?); 8-bit images are "
            "required. Convert it, or read the folder yourself and use prepare_arrays."
        )
    height, width = image.shape[:2]
    return fmt, height, width, 1 if image.ndim == 2 else int(image.shape[-1])


def _scan_folder(folder: str, splits: Sequence[str] | None):
    """{split: [(path, class_name)]} and the sorted class names of every split."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"`folder`={folder!r} is not a directory.")
    if splits is None:
        splits = _list_subfolders(folder)
        if not splits:
            raise ValueError(
                f"`folder`={folder!r} has no split folders; the layout is "
                "folder/<split>/<class_name>/<image>.{jpg,jpeg,png}."
            )
    elif isinstance(splits, str) or not splits:
        raise ValueError(f"`splits` must be a non-empty list of split names, got {splits!r}.")
    files: dict[str, list[tuple[str, str]]] = {}
    for split in splits:
        _check_split_name(split, "splits")
        split_dir = os.path.join(folder, split)
        if not os.path.isdir(split_dir):
            raise ValueError(f"`splits`: {split!r} is not a folder of `folder`={folder!r}.")
        classes = _list_subfolders(split_dir)
        if not classes:
            raise ValueError(
                f"`folder`: the split folder {split_dir} has no class folders; the layout "
                "is folder/<split>/<class_name>/<image>.{jpg,jpeg,png}."
            )
        files[split] = []
        for class_name in classes:
            images = _list_images(os.path.join(split_dir, class_name))
            if not images:
                raise ValueError(
                    f"`folder`: the class folder {os.path.join(split_dir, class_name)} has no "
                    f"images (files ending in {', '.join(IMAGE_EXTENSIONS)})."
                )
            files[split] += [(path, class_name) for path in images]
    class_names = sorted({c for pairs in files.values() for _, c in pairs})
    return files, class_names


def _folder_format(folder: str, paths: list[str]) -> tuple[str, tuple[int | None, ...]]:
    """The one encoding format of all the files and their image shape
    [H, W, C] (H and W None if they vary)."""
    workers = min(32, (os.cpu_count() or 1) + 4)
    found: list[tuple[str, int, int, int]] = []
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # cv2 releases the GIL.
        for start in range(0, len(paths), 4096):  # Not a million futures at once.
            found += pool.map(_inspect, paths[start : start + 4096])
    formats = collections.Counter(fmt for fmt, *_ in found)
    if len(formats) > 1:
        minority = min(formats, key=formats.get)
        example = next(p for p, (fmt, *_) in zip(paths, found, strict=True) if fmt == minority)
        raise ValueError(
            f"`folder`={folder!r} mixes JPEG and PNG files ({formats['jpeg']} JPEG, "
            f"{formats['png']} PNG, by content; the {minority.upper()} ones include {example}); "
            "a dataset stores one encoding format, and the files are stored as they are, never "
            "re-encoded. Convert the fewer ones, or read the images yourself and use "
            "prepare_arrays."
        )
    channels = collections.Counter(c for *_, c in found)
    if 4 in channels and len(channels) > 1:
        example = next(p for p, (*_, c) in zip(paths, found, strict=True) if c == 4)
        raise ValueError(
            f"`folder`={folder!r} mixes images with an alpha channel ({channels[4]}, e.g. "
            f"{example}) and without ({len(paths) - channels[4]}); a dataset has one number "
            "of channels. Convert them, or read the images yourself and use prepare_arrays."
        )
    # Grayscale images in a colour dataset are read back with 3 equal channels.
    sizes = {(h, w) for _, h, w, _ in found}
    height, width = next(iter(sizes)) if len(sizes) == 1 else (None, None)
    return next(iter(formats)), (height, width, max(channels))


def prepare_folder(
    data_dir: str | os.PathLike,
    name: str,
    folder: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    overwrite: bool = False,
) -> str:
    """Writes a folder of JPEG or PNG files as the TFDS ArrayRecord dataset ``name``.

    The layout is ``torchvision.datasets.ImageFolder``'s, one folder per split:
    ``folder/<split>/<class_name>/<image>.{jpg,jpeg,png}`` (case-insensitive;
    sub-folders of a class folder are read too, hidden files and other files
    are skipped). The class names are the class folders of every split,
    sorted, and an image's label is its class's index there: the same as
    ImageFolder's when every split has the same classes, and one labelling
    when they differ (metric learning's disjoint train and test classes).

    Each file's bytes are stored as they are, never re-encoded, in the
    features ``image`` (``tfds.features.Image`` of shape [H, W, C], or
    [None, None, C] when the sizes vary), ``label``
    (``tfds.features.ClassLabel``) and ``file_name`` (the path relative to
    ``folder``, e.g. ``"train/cat/001.jpg"``). Every file is decoded once
    first (with OpenCV, in threads), to check that it decodes and to find the
    encoding format (from the files' content) and the channels: 1 if every
    image is grayscale, 3 if some are colour (grayscale ones are then read back
    with 3 equal channels), 4 if every image has an alpha channel.

    Args:
      data_dir: the TFDS data directory to write ``<name>/1.0.0/`` in (the
        trainer's ``dataset.data_dir``).
      name: the dataset's name, a snake_case identifier that is not one of
        TFDS's own datasets (the trainer's ``dataset.tfds_name``).
      folder: the folder that holds one folder per split.
      splits: the split folders to read (default: every sub-folder of ``folder``).
      overwrite: replace ``data_dir/name`` if it holds a dataset already
        (otherwise that is an error).

    Returns:
      ``name``, for ``tfds.data_source(name, data_dir=data_dir)``.

    Raises:
      ValueError: a ``name`` that is not a snake_case identifier or is a TFDS
        dataset, ``data_dir/name`` already there (without ``overwrite``), a
        ``folder`` that is not a directory or has no split folders, a split
        in ``splits`` that is not there, a split folder with no class folders,
        a class folder with no images, a file that is not a JPEG or PNG or does
        not decode or is not 8-bit, a folder that mixes JPEG and PNG files
        (store one format: convert the fewer ones), or mixes images with and
        without an alpha channel.
    """
    _check_name(name)
    folder = os.fspath(folder)
    files, class_names = _scan_folder(folder, splits)
    paths = [path for pairs in files.values() for path, _ in pairs]
    image_format, shape = _folder_format(folder, paths)

    import tensorflow_datasets as tfds

    features = {
        "image": tfds.features.Image(shape=shape, encoding_format=image_format),
        "label": tfds.features.ClassLabel(names=class_names),
        "file_name": tfds.features.Text(),
    }
    index = {c: i for i, c in enumerate(class_names)}

    def examples(split: str) -> Callable[[], Iterator[tuple[str, dict[str, Any]]]]:
        def generate():
            for path, class_name in files[split]:
                rel = os.path.relpath(path, folder).replace(os.sep, "/")
                with open(path, "rb") as f:
                    image = f.read()
                yield rel, {"image": image, "label": index[class_name], "file_name": rel}

        return generate

    _clear_target(data_dir, name, overwrite)
    _write(
        data_dir,
        name,
        features,
        {split: examples(split) for split in files},
        f"The image folder {os.path.abspath(folder)}, written by "
        "jaxmetric.data.prepare.prepare_folder (file bytes as they are).",
    )
    return name


# --------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST).

# IDX type codes (the magic number's third byte) -> big-endian NumPy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# The file prefix of each split in the MNIST layout: <prefix>-images-idx3-ubyte(.gz).
IDX_SPLITS = {"train": "train", "test": "t10k"}
# Where Debian's `dataset-fashion-mnist` package puts the four files.
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
# Zalando's label names, in label order (TFDS's fashion_mnist uses the same).
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# The dataset name prepare_fashion_mnist writes (TFDS's own "fashion_mnist" is
# taken: tfds.data_source would look for that builder's files).
FASHION_MNIST_NAME = "fashion_mnist_idx"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (LeCun's MNIST format), gzip-compressed or not.

    The format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B
    int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions
    d, then d big-endian uint32 sizes and the values in C order, big-endian.
    MNIST's images are ``0x00000803`` (uint8, [N, 28, 28]), its labels
    ``0x00000801`` (uint8, [N]). A file is gzip when it starts with gzip's
    magic bytes, whatever its name.

    Args:
      path: the file (e.g. ``train-images-idx3-ubyte.gz``).

    Returns:
      The array, in native byte order (uint8 stays uint8).

    Raises:
      ValueError: naming ``path``, for a file that is not IDX (bad magic
        number, unknown type code) or whose length disagrees with its header.

    Example:
      >>> import gzip, os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
      >>> with gzip.open(path, "wb") as f:
      ...     _ = f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9]))
      >>> read_idx(path)
      array([7, 0, 9], dtype=uint8)
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise ValueError(f"`path`={path!r}: a damaged gzip file ({err}).") from err
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"`path`={path!r} is not an IDX file (magic number {data[:4].hex() or 'missing'}; "
            "expected 0000 then a type code (08 uint8 ... 0e float64) and the number of "
            "dimensions, e.g. 00000803 for MNIST images)."
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"`path`={path!r}: the IDX header is truncated.")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != size:
        raise ValueError(
            f"`path`={path!r}: the header says shape {shape} ({size} bytes of {dtype.name}), "
            f"the file holds {len(data) - header} bytes after it."
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(idx_dir: str, prefix: str, kind: str) -> str:
    """``<prefix>-<kind>-ubyte`` in ``idx_dir``, gzip-compressed or not."""
    for name in (f"{prefix}-{kind}-ubyte.gz", f"{prefix}-{kind}-ubyte"):
        path = os.path.join(idx_dir, name)
        if os.path.isfile(path):
            return path
    raise ValueError(
        f"`idx_dir`={idx_dir!r} has no {prefix}-{kind}-ubyte(.gz); the MNIST layout is "
        "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz."
    )


def prepare_idx(
    data_dir: str | os.PathLike,
    name: str,
    idx_dir: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> str:
    """Writes a folder of MNIST-layout IDX files as the TFDS ArrayRecord dataset ``name``.

    Reads ``{train,t10k}-images-idx3-ubyte(.gz)`` (uint8 [N, H, W]) and
    ``{train,t10k}-labels-idx1-ubyte(.gz)`` (uint8 [N]) with ``read_idx``
    and writes them with ``prepare_arrays`` as the splits ``train`` and
    ``test``: ``image`` a lossless PNG of [H, W, 1] uint8 (read back exactly),
    ``label`` a ``tfds.features.ClassLabel``. MNIST, Fashion-MNIST and
    KMNIST come in this layout.

    Args:
      data_dir: the TFDS data directory to write ``<name>/1.0.0/`` in.
      name: the dataset's name (snake_case, not one of TFDS's own).
      idx_dir: the folder of the four IDX files.
      class_names: one name per label (default: "0", "1", ...).
      overwrite: replace ``data_dir/name`` if it holds a dataset already.

    Returns:
      ``name``.

    Raises:
      ValueError: a missing file in ``idx_dir``, a file that is not IDX, images
        that are not uint8 [N, H, W], or what ``prepare_arrays`` refuses
        (labels out of range for ``class_names``, an existing dataset).
    """
    _check_name(name)
    idx_dir = os.fspath(idx_dir)
    if not os.path.isdir(idx_dir):
        raise ValueError(f"`idx_dir`={idx_dir!r} is not a directory.")
    splits = {}
    for split, prefix in IDX_SPLITS.items():
        images = read_idx(_idx_file(idx_dir, prefix, "images-idx3"))
        labels = read_idx(_idx_file(idx_dir, prefix, "labels-idx1"))
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"`idx_dir`: the {prefix} images must be uint8 [N, H, W], got "
                f"{images.dtype} of shape {images.shape}."
            )
        splits[split] = (images, labels)
    return prepare_arrays(data_dir, name, splits, class_names=class_names, overwrite=overwrite)


def prepare_fashion_mnist(
    data_dir: str | os.PathLike,
    idx_dir: str | os.PathLike = FASHION_MNIST_DEBIAN_DIR,
    *,
    name: str = FASHION_MNIST_NAME,
    overwrite: bool = False,
) -> str:
    """Fashion-MNIST (Xiao et al. 2017) from its IDX files as a TFDS ArrayRecord dataset.

    ``prepare_idx`` with Zalando's ten class names: ``train`` 60,000 and
    ``test`` 10,000 images, 28x28x1 uint8. The files come with Debian's
    package (``apt-get install dataset-fashion-mnist``, in
    ``FASHION_MNIST_DEBIAN_DIR``) or from the authors' repository; nothing
    downloads here. Train on it with ``--config.dataset.data_dir=<data_dir>``
    (``configs/triplet_fashion_mnist.py`` reads ``name``'s default).

    Args:
      data_dir: the TFDS data directory to write ``<name>/1.0.0/`` in.
      idx_dir: the folder of ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.
      name: the dataset's name (TFDS's own ``fashion_mnist`` is taken).
      overwrite: replace ``data_dir/name`` if it holds a dataset already.

    Returns:
      ``name``.

    Reference:
      Xiao, Rasul, Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
      Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017.
    """
    return prepare_idx(
        data_dir, name, idx_dir, class_names=FASHION_MNIST_CLASSES, overwrite=overwrite
    )


# --------------------------------------------------------------------------
# Command line.


def _config_lines(name: str, data_dir: str, sizes: Mapping[str, int], fixed_size: bool) -> str:
    lines = [
        f"--config.dataset.name=tfds --config.dataset.tfds_name={name} "
        f"--config.dataset.data_dir={data_dir}"
    ]
    train = "train" if "train" in sizes else next(iter(sizes))
    others = [s for s in sizes if s != train]
    test = next((s for s in ("test", "validation", "val") if s in others), None)
    test = test or (others[0] if others else train)
    if train != "train":
        lines.append(f"--config.dataset.train_split={train}")
    if test != "test":
        lines.append(f"--config.dataset.test_split={test}")
    if not fixed_size:
        lines.append("--config.dataset.image_size=SIZE  # the images vary in size")
    return " \\\n  ".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m jaxmetric.data.prepare --folder=DIR --name=NAME --data_dir=DIR``:
    ``prepare_folder``; ``python -m jaxmetric.data.prepare fashion_mnist
    --data_dir=DIR [--idx_dir=DIR] [--name=NAME]``: ``prepare_fashion_mnist``.
    Then prints the records per split and the config flags that train on the
    dataset. A ValueError exits with status 1 and its message."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxmetric.data.prepare",
        description="Writes an ImageFolder-style folder (folder/<split>/<class>/<image>), or "
        "Fashion-MNIST's IDX files, as a TFDS ArrayRecord dataset, without TensorFlow.",
    )
    parser.add_argument(
        "dataset",
        nargs="?",
        choices=["fashion_mnist"],
        help="fashion_mnist: the IDX files in --idx_dir (instead of --folder).",
    )
    parser.add_argument("--folder", help="folder/<split>/<class>/<image>.")
    parser.add_argument(
        "--idx_dir",
        default=FASHION_MNIST_DEBIAN_DIR,
        help="fashion_mnist: the folder of {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "
        f"(default: {FASHION_MNIST_DEBIAN_DIR}, Debian's dataset-fashion-mnist).",
    )
    parser.add_argument(
        "--name", help=f"Dataset name (snake_case; fashion_mnist: {FASHION_MNIST_NAME})."
    )
    parser.add_argument("--data_dir", required=True, help="TFDS data directory to write in.")
    parser.add_argument(
        "--splits", default=None, help="Comma-separated split folders (default: all)."
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace a dataset of that name in data_dir."
    )
    args = parser.parse_args(argv)
    if args.dataset is None and not (args.folder and args.name):
        parser.error("--folder and --name are required (or the dataset: fashion_mnist).")
    if args.dataset is not None and (args.folder or args.splits):
        parser.error(f"{args.dataset} reads --idx_dir, not --folder / --splits.")
    splits = args.splits.split(",") if args.splits else None
    data_dir = os.path.abspath(args.data_dir)
    try:
        if args.dataset == "fashion_mnist":
            args.name = args.name or FASHION_MNIST_NAME
            prepare_fashion_mnist(data_dir, args.idx_dir, name=args.name, overwrite=args.overwrite)
        else:
            prepare_folder(
                data_dir, args.name, args.folder, splits=splits, overwrite=args.overwrite
            )
    except ValueError as err:
        sys.exit(f"jaxmetric.data.prepare: {err}")

    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(os.path.join(data_dir, args.name, DATASET_VERSION))
    sizes = {split: int(info.num_examples) for split, info in builder.info.splits.items()}
    image = builder.info.features["image"]
    print(
        f"Prepared {args.name} in {data_dir} (ArrayRecord; {image.encoding_format} images, "
        f"{image.shape[-1]} channels; {builder.info.features['label'].num_classes} classes):"
    )
    for split, n in sizes.items():
        print(f"  {split}: {n} records")
    print(
        "Train on it with these flags (after python -m jaxmetric.main --config=... --workdir=...):"
    )
    print("  " + _config_lines(args.name, data_dir, sizes, image.shape[0] is not None))


if __name__ == "__main__":
    main()
