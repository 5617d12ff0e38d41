"""Data sources: bundled offline sets (MNIST-1D, scikit-learn digits) and
TFDS ``data_source`` (ArrayRecord, no TensorFlow).

Every source is returned as a ``Split``: random-access ``x`` / ``y``. The
offline sets are NumPy arrays held in memory; a TFDS split is wrapped so that
only the records a batch needs are read.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxmetric.data import images

SOURCES = ("mnist1d", "digits", "tfds")
# ``dataset.class_split``: "" keeps the stored splits; "first_half" pools them
# and splits by class (``class_split``).
CLASS_SPLITS = ("", "first_half")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Attributes:
      x: inputs, an array [N, ...] or a random-access record source.
      y: int labels [N] (NumPy).
      num_classes: number of classes.
    """

    x: Any
    y: np.ndarray
    num_classes: int

    def __len__(self) -> int:
        return len(self.y)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(np.asarray(self.x[0]).shape)

    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stacks the examples at the indices ``idx``."""
        if isinstance(self.x, np.ndarray):
            return self.x[idx], self.y[idx]
        return np.stack([np.asarray(self.x[int(i)]) for i in idx]), self.y[idx]


def _check_finite(x: np.ndarray, name: str) -> np.ndarray:
    # A run never trains on NaNs: refuse bad data before any step.
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise ValueError(f"The {name} data contain NaN or Inf values.")
    return x


@functools.cache
def mnist1d(seed: int = 42) -> tuple[Split, Split]:
    """MNIST-1D (Greydanus 2020) generated offline: 4,000 train / 1,000 test
    signals of length 40, 10 classes.

    Uses ``mnist1d.data.make_dataset(get_dataset_args())``, which builds the
    standard dataset from its templates with the published seed (42); it
    never downloads (``get_dataset`` would). Generated once per process
    (a few seconds) and cached; the arrays are read-only.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    data = make_dataset(args)
    x = _check_finite(np.asarray(data["x"], np.float32), "MNIST-1D")
    x_test = _check_finite(np.asarray(data["x_test"], np.float32), "MNIST-1D")
    x.flags.writeable = False
    x_test.flags.writeable = False
    return (
        Split(x, np.asarray(data["y"], np.int32), 10),
        Split(x_test, np.asarray(data["y_test"], np.int32), 10),
    )


def digits(test_fraction: float = 0.5, seed: int = 0) -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes), pixels
    scaled to [0, 1], split per class (stratified) into train and held-out
    test with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`dataset.test_fraction` must be in (0, 1), got {test_fraction!r}.")
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return Split(x_tr, y_tr, 10), Split(x_te, y_te, 10)


class TfdsRecords(Sequence):
    """Random access to the images of a TFDS split, read lazily.

    ``read(indices)`` returns the stored records (encoded bytes for a
    ``tfds.features.Image`` feature, read without decoding; arrays for a
    ``tfds.features.Tensor``); ``decode(record, index)`` turns one into a uint8
    [H, W, C] array. The source is opened on first use in each process, so
    the object pickles to the input pipeline's worker processes.
    """

    def __init__(self, name: str, split: str, data_dir: str | None, image_key: str) -> None:
        self.name, self.split, self.data_dir, self.image_key = name, split, data_dir, image_key
        self._source = None
        self._encoded: bool | None = None
        self._channels = 3
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_source": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        # Unpickled in a worker's main thread: import TFDS here, because
        # grain's read-ahead threads would otherwise import it concurrently
        # on first use, and TFDS's lazy imports deadlock under that.
        import tensorflow_datasets  # noqa: F401

        self.__dict__.update(state)
        self._lock = threading.Lock()

    def source(self):
        """The TFDS data source (opened once per process)."""
        if self._source is not None:
            return self._source
        with self._lock:
            if self._source is not None:
                return self._source
            import tensorflow_datasets as tfds_lib

            feature = _data_source(self.name, self.split, self.data_dir).dataset_info.features[
                self.image_key
            ]
            self._encoded = isinstance(feature, tfds_lib.features.Image)
            self._channels = int(feature.shape[-1]) if feature.shape else 3
            decoders = {self.image_key: tfds_lib.decode.SkipDecoding()} if self._encoded else None
            self._source = _data_source(self.name, self.split, self.data_dir, decoders=decoders)
        return self._source

    def __len__(self) -> int:
        return len(self.source())

    def read(self, indices: Sequence[int]) -> list[Any]:
        """The stored records at ``indices``, in one batched read."""
        source = self.source()
        return [r[self.image_key] for r in source.__getitems__([int(i) for i in indices])]

    def decode(self, record: Any, index: int) -> np.ndarray:
        """One stored record -> uint8 [H, W, C].

        Raises:
          CorruptRecordError: naming the dataset, split and record index.
        """
        self.source()
        if not self._encoded:
            x = np.asarray(record)
            return x if x.ndim == 3 else x.reshape(*x.shape[:2], -1)
        try:
            return images.decode(record, self._channels)
        except images.CorruptImageError as err:
            raise CorruptRecordError(
                f"dataset {self.name!r}, split {self.split!r}, record {index}: {err}. "
                "Set `data.skip_corrupt=True` to skip such records (they are counted in the log)."
            ) from err

    def __getitem__(self, i):
        return self.decode(self.read([i])[0], int(i))


class CorruptRecordError(ValueError):
    """A record of a dataset that cannot be decoded."""


def _prepare_hint(name: str, data_dir: str | None) -> str:
    where = data_dir or "~/tensorflow_datasets"
    return (
        f"Prepare it once as ArrayRecord (possibly on another machine, with TensorFlow): "
        f"`tfds build {name} --file_format=array_record --data_dir={where}`; or, from a "
        f"folder of images (no TensorFlow): `python -m jaxmetric.data.prepare --folder=DIR "
        f"--name={name} --data_dir={where}`; then set `dataset.data_dir` to that folder."
    )


def _data_source(name: str, split: str, data_dir: str | None, **kwargs):
    """``tfds.data_source`` with errors that say which field is wrong and
    how to prepare the dataset, instead of TFDS's list of every dataset."""
    import tensorflow_datasets as tfds_lib

    try:
        return tfds_lib.data_source(name, split=split, data_dir=data_dir, download=False, **kwargs)
    except tfds_lib.core.registered.DatasetNotFoundError as err:
        raise ValueError(
            f"`dataset.tfds_name`={name!r}: no such dataset is prepared in "
            f"`dataset.data_dir`={data_dir!r} (and TFDS has no builder of that name). "
            + _prepare_hint(name, data_dir)
        ) from err
    except (NotImplementedError, FileNotFoundError) as err:
        # A registered dataset with no ArrayRecord files there (TFDS reports
        # the default TFRecord format as unsupported for random access).
        raise ValueError(
            f"`dataset.tfds_name`={name!r}: no ArrayRecord copy in "
            f"`dataset.data_dir`={data_dir!r}. " + _prepare_hint(name, data_dir)
        ) from err
    except ValueError as err:
        if "split" in str(err).lower():
            raise ValueError(f"dataset {name!r}, split {split!r}: {err}") from err
        raise


def _read_labels(source: Any, label_key: str) -> np.ndarray:
    chunk = 4096
    labels = np.empty(len(source), np.int32)
    for start in range(0, len(source), chunk):
        idx = range(start, min(start + chunk, len(source)))
        labels[start : idx.stop] = [r[label_key] for r in source.__getitems__(idx)]
    return labels


def _label_index(source: Any, split: str, label_key: str) -> tuple[str, str] | None:
    """(path, fingerprint) of the label index of ``split`` beside the
    dataset's files, or None where they are not in a local folder. The
    fingerprint (record count, the split's files' sizes and times) tells a
    stale index from a current one."""
    info = getattr(source, "dataset_info", None)
    folder = os.fspath(info.data_dir) if info is not None else ""
    if not folder or not os.path.isdir(folder):
        return None
    base = split.split("[")[0]
    files = sorted(f for f in os.listdir(folder) if f"-{base}." in f and "array_record" in f)
    stats = [(f, os.stat(os.path.join(folder, f))) for f in files]
    fingerprint = json.dumps(
        [len(source), label_key, [(f, st.st_size, st.st_mtime_ns) for f, st in stats]]
    )
    digest = hashlib.sha1(f"{split}/{label_key}".encode()).hexdigest()[:12]
    return os.path.join(folder, f"jaxmetric-labels-{base}-{digest}.npz"), fingerprint


def _labels(source: Any, split: str, label_key: str) -> np.ndarray:
    """Every label of a split, from its image source (``TfdsRecords``: encoded
    images are not decoded). The first open reads them (batched reads:
    about 60 us a record) and writes a label index beside the dataset's
    files (``jaxmetric-labels-<split>-*.npz``); later opens, on any host
    sharing the folder, load that (milliseconds for a million records)."""
    index = _label_index(source, split, label_key)
    if index is not None and os.path.exists(index[0]):
        try:
            with np.load(index[0]) as cached:
                if str(cached["fingerprint"]) == index[1]:
                    return cached["labels"]
        except (OSError, ValueError, KeyError):
            pass  # A torn or foreign file: read the labels again.
    labels = _read_labels(source, label_key)
    if index is not None:
        tmp = f"{index[0]}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, labels=labels, fingerprint=np.asarray(index[1]))
            os.replace(tmp, index[0])  # Atomic: several hosts may write it.
        except OSError:
            pass  # A read-only dataset folder: no index, the next open reads again.
    return labels


def tfds(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    image_key: str = "image",
    label_key: str = "label",
) -> Split:
    """A TFDS split via ``tfds.data_source`` (ArrayRecord, no TensorFlow).

    The dataset must already be prepared in ``data_dir`` (nothing downloads
    at run time; a missing one raises a ValueError saying how to prepare it).
    Labels are read once, without decoding the images; images are read
    (and decoded, in the input pipeline's workers) per batch.
    """
    records = TfdsRecords(name, split, data_dir, image_key)
    source = records.source()
    info = getattr(source, "dataset_info", None)
    num_classes = 0
    if info is not None and label_key in info.features:
        num_classes = int(info.features[label_key].num_classes)
    labels = _labels(source, split, label_key)
    if not num_classes:
        num_classes = int(labels.max()) + 1 if len(labels) else 0
    return Split(records, labels, num_classes)


class RecordSubset(Sequence):
    """Chosen records of one or more ``TfdsRecords`` splits, as one split.

    Record ``i`` is record ``index[i]`` of ``parts[part[i]]``. It reads and
    decodes as ``TfdsRecords`` does (batched reads, one per part; errors
    name the stored split and its record index), and pickles to the input
    pipeline's workers.
    """

    def __init__(
        self, parts: Sequence[TfdsRecords], part: np.ndarray, index: np.ndarray, split: str
    ) -> None:
        if len(part) != len(index):
            raise ValueError(f"`part` has {len(part)} entries, `index` {len(index)}.")
        self.parts = list(parts)
        self.part = np.asarray(part, np.int32)
        self.index = np.asarray(index, np.int64)
        self.name = self.parts[0].name
        self.split = split

    def __len__(self) -> int:
        return len(self.index)

    def read(self, indices: Sequence[int]) -> list[Any]:
        """The stored records at ``indices``: one batched read per part."""
        indices = np.asarray(indices, np.int64)
        out: list[Any] = [None] * len(indices)
        for p, records in enumerate(self.parts):
            rows = np.flatnonzero(self.part[indices] == p)
            if len(rows):
                for row, record in zip(rows, records.read(self.index[indices[rows]]), strict=True):
                    out[row] = record
        return out

    def decode(self, record: Any, index: int) -> np.ndarray:
        """One stored record -> uint8 [H, W, C] (``TfdsRecords.decode`` of its part)."""
        return self.parts[self.part[index]].decode(record, int(self.index[index]))

    def __getitem__(self, i):
        return self.decode(self.read([i])[0], int(i))


def class_split(splits: Sequence[Split], *, kind: str = "first_half") -> tuple[Split, Split]:
    """The records of TFDS ``splits`` pooled, then split by class.

    ``"first_half"``: with C the number of classes (the ``ClassLabel``'s), the
    records labelled 0 .. C/2 - 1 (C/2 rounded down) form the train split,
    those labelled C/2 .. C - 1 the test split; labels are kept as stored.
    "A Metric Learning Reality Check" (Musgrave et al. 2020) and the papers
    before it split CUB-200-2011 (classes 0-99 / 100-199) and Cars196 (0-97 /
    98-195) this way; each split keeps the stored order of its records,
    split by split. Only the labels are read (no image is decoded).

    Args:
      splits: ``Split``s of one TFDS dataset (``tfds``), e.g. train and test
        (``load`` passes one when ``dataset.train_split`` = ``test_split``,
        a dataset whose one split holds every class).
      kind: ``"first_half"``.

    Returns:
      (train, test) ``Split``s over ``RecordSubset``s, ``num_classes`` C each.

    Raises:
      ValueError: an unknown ``kind``, ``splits`` not read from TFDS records,
        or splits with different numbers of classes.
    """
    if kind != "first_half":
        raise ValueError(f"`dataset.class_split` must be one of {CLASS_SPLITS}, got {kind!r}.")
    if not splits or not all(isinstance(s.x, TfdsRecords) for s in splits):
        raise ValueError("`dataset.class_split` needs the splits of a TFDS dataset.")
    counts = {s.num_classes for s in splits}
    if len(counts) != 1:
        raise ValueError(f"`dataset.class_split`: the splits have {sorted(counts)} classes.")
    (num_classes,) = counts
    labels = np.concatenate([s.y for s in splits])
    part = np.concatenate([np.full(len(s), p, np.int32) for p, s in enumerate(splits)])
    index = np.concatenate([np.arange(len(s), dtype=np.int64) for s in splits])
    parts = [s.x for s in splits]
    stored = "+".join(s.x.split for s in splits)
    half = num_classes // 2
    out = []
    for name, chosen in (("train", labels < half), ("test", labels >= half)):
        records = RecordSubset(parts, part[chosen], index[chosen], f"{stored}[{name} classes]")
        out.append(Split(records, labels[chosen], num_classes))
    return out[0], out[1]


def load(cfg) -> tuple[Split, Split]:
    """(train, test) splits for ``config.dataset``."""
    if cfg.name == "mnist1d":
        return mnist1d(cfg.seed)
    if cfg.name == "digits":
        return digits(cfg.test_fraction, cfg.seed)
    if cfg.name == "tfds":
        kw = {
            "data_dir": cfg.data_dir or None,
            "image_key": cfg.image_key,
            "label_key": cfg.label_key,
        }
        train = tfds(cfg.tfds_name, cfg.train_split, **kw)
        kind = cfg.get("class_split", "")
        if kind and cfg.test_split == cfg.train_split:  # one split holds every class
            return class_split([train], kind=kind)
        test = tfds(cfg.tfds_name, cfg.test_split, **kw)
        return class_split([train, test], kind=kind) if kind else (train, test)
    raise ValueError(f"`dataset.name` must be one of {SOURCES}, got {cfg.name!r}.")
