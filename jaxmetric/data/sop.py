"""Stanford Online Products (SOP) as a TFDS ArrayRecord dataset, from the
archive you downloaded, without TensorFlow or a download.

SOP (Oh Song et al. 2016, "Deep Metric Learning via Lifted Structured
Feature Embedding") is 120,053 eBay product photos of 22,634 products
(classes) in 12 super-classes. Its archive, ``Stanford_Online_Products.zip``
(3.1 GB), extracts to::

    Stanford_Online_Products/
      Ebay_train.txt   Ebay_test.txt   (Ebay_info.txt, LICENSE, README)
      bicycle_final/111085122871_0.JPG  ...  toaster_final/...

Each list file has a header line ``image_id class_id super_class_id path``
and one line per image, e.g. ``1 1 1 bicycle_final/111085122871_0.JPG``;
ids start at 1. The train list holds classes 1-11,318 (59,551 images), the
test list classes 11,319-22,634 (60,502 images): disjoint classes, the split
that "A Metric Learning Reality Check" and the papers before it use.

TFDS has a ``stanford_online_products`` builder, but it downloads the
archive from an FTP address that no longer answers, and needs TensorFlow.
``prepare_sop`` writes the same dataset from a local copy (the ``.zip`` or
the folder it extracts to): TFDS's name, version (1.0.0) and features, so
``tfds.data_source("stanford_online_products", data_dir=...)`` (TFDS's own
builder) and the trainer read it as if ``tfds build`` had written it:

- ``image``: ``tfds.features.Image()``, the JPEG file's bytes as they are;
- ``class_id``: ``ClassLabel(num_classes=22634)``, the list's class_id - 1
  (train 0-11,317, test 11,318-22,633); the trainer's label
  (``dataset.label_key="class_id"``);
- ``super_class_id/num``: ``ClassLabel(num_classes=12)``, super_class_id - 1;
- ``super_class_id``: ``ClassLabel(names=SUPER_CLASSES)``, the same index.

Command line::

    python -m jaxmetric.data.sop --source=Stanford_Online_Products.zip --data_dir=DIR

Preparing holds one split's JPEG bytes in memory while TFDS shuffles it
(about 1.5 GB), as ``jaxmetric.data.prepare`` does.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

NAME = "stanford_online_products"
VERSION = "1.0.0"
NUM_CLASSES = 22_634
# TFDS's order: super_class_id 1 is "bicycle", ..., 12 is "toaster".
SUPER_CLASSES = (
    "bicycle",
    "cabinet",
    "chair",
    "coffee_maker",
    "fan",
    "kettle",
    "lamp",
    "mug",
    "sofa",
    "stapler",
    "table",
    "toaster",
)
LISTS = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}
_HEADER = ["image_id", "class_id", "super_class_id", "path"]


class _Source:
    """The files of the extracted folder or of the ``.zip``, by their path
    relative to the folder that holds ``Ebay_train.txt``."""

    def __init__(self, source: str) -> None:
        self.source = source
        if os.path.isdir(source):
            self.zip = None
            roots = [source, os.path.join(source, "Stanford_Online_Products")]
            self.root = next(
                (r for r in roots if os.path.isfile(os.path.join(r, LISTS["train"]))), None
            )
        elif zipfile.is_zipfile(source):
            self.zip = zipfile.ZipFile(source)
            members = [n for n in self.zip.namelist() if n.rsplit("/", 1)[-1] == LISTS["train"]]
            self.root = min(members, key=len)[: -len(LISTS["train"])] if members else None
        else:
            raise ValueError(
                f"`source`={source!r} is neither the folder Stanford_Online_Products.zip "
                "extracts to nor that .zip file."
            )
        if self.root is None:
            raise ValueError(
                f"`source`={source!r} holds no {LISTS['train']}: it must be "
                "Stanford_Online_Products.zip or the folder it extracts to."
            )

    def read(self, path: str) -> bytes:
        if self.zip is None:
            with open(os.path.join(self.root, path), "rb") as f:
                return f.read()
        return self.zip.read(self.root + path)

    def exists(self, path: str) -> bool:
        if self.zip is None:
            return os.path.isfile(os.path.join(self.root, path))
        try:
            self.zip.getinfo(self.root + path)
        except KeyError:
            return False
        return True


def read_list(source: _Source, split: str) -> list[tuple[int, int, str]]:
    """(class_id, super_class_id, path) of every line of a split's list, ids
    from 1 as written; checked."""
    name = LISTS[split]
    if not source.exists(name):
        raise ValueError(f"`source`={source.source!r} holds no {name}.")
    lines = source.read(name).decode("utf-8").splitlines()
    if not lines or lines[0].split() != _HEADER:
        raise ValueError(
            f"`source`: {name} must start with the header {' '.join(_HEADER)!r}, "
            f"got {lines[0] if lines else ''!r}."
        )
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 4:
                raise ValueError
            class_id, super_class_id, path = int(fields[1]), int(fields[2]), fields[3]
        except ValueError:
            raise ValueError(
                f"`source`: {name} line {number} is not 'image_id class_id super_class_id "
                f"path': {line!r}."
            ) from None
        if not 1 <= class_id <= NUM_CLASSES or not 1 <= super_class_id <= len(SUPER_CLASSES):
            raise ValueError(
                f"`source`: {name} line {number}: class_id must be in [1, {NUM_CLASSES}] and "
                f"super_class_id in [1, {len(SUPER_CLASSES)}], got {line!r}."
            )
        rows.append((class_id, super_class_id, path))
    missing = [p for _, _, p in rows if not source.exists(p)]
    if missing:
        raise ValueError(
            f"`source`: {len(missing)} images of {name} are not there, e.g. {missing[0]!r}."
        )
    return rows


def prepare_sop(
    data_dir: str | os.PathLike,
    source: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> str:
    """Writes Stanford Online Products as TFDS's ``stanford_online_products``
    (version 1.0.0, ArrayRecord) in ``data_dir``, from a local copy.

    Args:
      data_dir: the TFDS data directory to write ``stanford_online_products/1.0.0/``
        in (the trainer's ``dataset.data_dir``).
      source: ``Stanford_Online_Products.zip`` or the folder it extracts to
        (the one holding ``Ebay_train.txt``, or its parent).
      overwrite: replace a dataset already prepared there.

    Returns:
      ``"stanford_online_products"``, for ``tfds.data_source(name, data_dir=data_dir)``
      and ``dataset.tfds_name``.

    Raises:
      ValueError: ``source`` is not the archive or its folder, a list is
        missing or malformed (naming the file and line), an image it lists is
        missing, or the dataset is already there (without ``overwrite``).
    """
    from jaxmetric.data import prepare, sources

    src = _Source(os.fspath(source))
    rows = {split: read_list(src, split) for split in LISTS}

    import tensorflow_datasets as tfds

    features = {
        "class_id": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        "super_class_id/num": tfds.features.ClassLabel(num_classes=len(SUPER_CLASSES)),
        "super_class_id": tfds.features.ClassLabel(names=list(SUPER_CLASSES)),
        "image": tfds.features.Image(),
    }

    def examples(split: str) -> Callable[[], Iterator[tuple[int, dict[str, Any]]]]:
        def generate():
            for i, (class_id, super_class_id, path) in enumerate(rows[split]):
                yield (
                    i,
                    {
                        "class_id": class_id - 1,
                        "super_class_id/num": super_class_id - 1,
                        "super_class_id": super_class_id - 1,
                        "image": src.read(path),
                    },
                )

        return generate

    prepare._clear_target(data_dir, NAME, overwrite)
    prepare._write(
        os.fspath(data_dir),
        NAME,
        features,
        {split: examples(split) for split in LISTS},
        f"Stanford Online Products, written by jaxmetric.data.sop from {src.source}.",
    )
    for split in LISTS:  # The label index, so that the trainer's first open is fast.
        sources.tfds(NAME, split, data_dir=os.fspath(data_dir), label_key="class_id")
    return NAME


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m jaxmetric.data.sop --source=Stanford_Online_Products.zip
    --data_dir=DIR``: ``prepare_sop``, then the records per split. A
    ValueError exits with status 1 and its message."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxmetric.data.sop",
        description="Writes Stanford Online Products (the downloaded .zip or its folder) as "
        "TFDS's stanford_online_products, ArrayRecord, without TensorFlow.",
    )
    parser.add_argument("--source", required=True, help="Stanford_Online_Products.zip or folder.")
    parser.add_argument("--data_dir", required=True, help="TFDS data directory to write in.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a prepared copy.")
    args = parser.parse_args(argv)
    data_dir = os.path.abspath(args.data_dir)
    try:
        prepare_sop(data_dir, args.source, overwrite=args.overwrite)
    except ValueError as err:
        sys.exit(f"jaxmetric.data.sop: {err}")
    import tensorflow_datasets as tfds

    info = tfds.builder(NAME, data_dir=data_dir).info
    for split, split_info in info.splits.items():
        print(f"  {split}: {int(split_info.num_examples)} records")
    print(f"Prepared {NAME} in {data_dir}; train with --config.dataset.data_dir={data_dir}")


if __name__ == "__main__":
    main()
