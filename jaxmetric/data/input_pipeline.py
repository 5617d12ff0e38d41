"""grain input pipelines: shuffled or class-balanced batches, read, decoded
and cropped in worker processes, sharded per process, deterministic.

A pipeline is a ``grain.MapDataset`` indexed by the step: batch ``k`` is a
pure function of (seed, k) — which records, and every random crop, whose
generator is seeded by (seed, k, the example's row in the global batch). So
the iterator's state is just the next step: a resumed run sees exactly the
batches an uninterrupted one would, with any number of workers or
processes, and the checkpoint holds ``{"step": k}``.

Each process reads only its own rows of every global batch
(``process_index`` / ``process_count``). With ``workers`` > 0 the batches are
made by that many processes (``IterDataset.mp_prefetch``, as big_vision and
MaxText do); with 0, by one background thread. Either way the next batches
are ready while the devices run the current step. Images travel as uint8.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import grain
import numpy as np

from jaxmetric import augment
from jaxmetric.data import images

AUTO = -1  # ``data.workers``: the CPU count for stored records, 0 for in-memory arrays.


def _process_rows(global_batch: int, process_index: int, process_count: int) -> slice:
    if global_batch % process_count:
        raise ValueError(
            f"`batch_size`={global_batch} must be divisible by the process count {process_count}."
        )
    per = global_batch // process_count
    return slice(process_index * per, (process_index + 1) * per)


# --------------------------------------------------------------------------- indices


def shuffled_indices(num_examples: int, global_batch: int, *, seed: int) -> grain.MapDataset:
    """Global batch ``k`` of record indices, for every step ``k``: every epoch
    is a fresh permutation (grain reshuffles each repetition) and batches run
    across epoch boundaries, so every batch is full."""
    return (
        grain.MapDataset.range(num_examples)
        .shuffle(seed=seed)
        .repeat()
        .batch(global_batch, drop_remainder=True)
    )


def class_balanced_indices(
    labels: np.ndarray, samples_per_class: int, global_batch: int, seed: int, step: int
) -> np.ndarray:
    """Indices of the global batch ``step``: global_batch / m classes drawn
    without replacement, m examples of each (with replacement only for classes
    smaller than m). A pure function of (seed, step)."""
    classes = np.unique(labels)
    num_classes = global_batch // samples_per_class
    rng = np.random.default_rng([seed, step])
    chosen = rng.choice(classes, size=num_classes, replace=num_classes > len(classes))
    out = []
    for c in chosen:
        members = np.flatnonzero(labels == c)
        out.append(rng.choice(members, samples_per_class, replace=len(members) < samples_per_class))
    return np.concatenate(out).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class _ClassBalanced:
    labels: np.ndarray
    samples_per_class: int
    global_batch: int
    seed: int

    def __call__(self, step: int) -> np.ndarray:
        return class_balanced_indices(
            self.labels, self.samples_per_class, self.global_batch, self.seed, step
        )


def class_balanced_index_batches(
    labels: np.ndarray, global_batch: int, *, samples_per_class: int, seed: int
) -> grain.MapDataset:
    """Global batch ``k`` of a class-balanced sampler (m per class), for
    supervised metric learning: every anchor has m - 1 positives."""
    if samples_per_class < 2:
        raise ValueError(
            f"`supervised.samples_per_class` must be >= 2 (an anchor needs a positive), "
            f"got {samples_per_class!r}."
        )
    if global_batch % samples_per_class:
        raise ValueError(
            f"`batch_size`={global_batch} must be a multiple of "
            f"`supervised.samples_per_class`={samples_per_class}."
        )
    fn = _ClassBalanced(np.asarray(labels), samples_per_class, global_batch, seed)
    return grain.MapDataset.range(0, 2**62).map(fn)


# --------------------------------------------------------------------------- host transforms


@dataclasses.dataclass(frozen=True)
class Transform:
    """What the pipeline does to each example on the host.

    Attributes:
      kind: "none" (the stored example), "views" (``num_views`` random-resized
        crops to ``size`` with flips: [V, size, size, C]) or "eval" (the
        centred ``crop_fraction`` square resized to ``size``; ``size`` 0 keeps
        the stored size).
    """

    kind: str = "none"
    size: int = 0
    num_views: int = 1
    crop_scale: tuple[float, float] = images.CROP_SCALE
    flip: bool = True
    crop_fraction: float = 1.0

    @property
    def identity(self) -> bool:
        return self.kind == "none" or (self.kind == "eval" and not self.size)

    def __call__(self, rng: np.random.Generator | None, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = image[..., None]
        if self.kind == "views":
            return images.train_views(
                rng, image, self.size, self.num_views, scale=self.crop_scale, flip=self.flip
            )
        if self.kind == "eval" and self.size:
            return images.eval_view(image, self.size, self.crop_fraction)
        return image


def train_transform(config: Any, num_views: int) -> Transform:
    """The host transform of training batches under ``config``: the image
    views' crops and flips where the pipeline cuts them
    (``augment.crops_on_host``), else the evaluation transform."""
    if augment.crops_on_host(config.augment):
        p = config.augment.simclr_image
        return Transform("views", p.size, num_views, tuple(p.crop_scale), bool(p.flip))
    return eval_transform(config)


def eval_transform(config: Any) -> Transform:
    """The host transform of evaluation inputs: the centred
    ``dataset.eval_crop`` square of each image resized to the encoder's
    input (``augment.simclr_image.size`` for image views, else
    ``dataset.image_size``; 0: as stored)."""
    if augment.crops_on_host(config.augment):
        size = config.augment.simclr_image.size
    else:
        size = config.dataset.image_size
    return Transform("eval", size, crop_fraction=config.dataset.eval_crop)


def input_shape(config: Any, split: Any) -> tuple[int, ...]:
    """The shape of one example as the encoder sees it: the evaluation
    transform of the split's first decodable example (image views have that
    shape too), whatever size the images are stored at."""
    if hasattr(split.x, "read"):
        example, _, _ = BatchReader(split, Transform(), 0, slice(None), True)._decode(0)
    else:
        example = np.asarray(split.x[0])
    return tuple(eval_transform(config)(None, example).shape)


@dataclasses.dataclass
class BatchReader:
    """Makes batch ``step`` of this process from its record indices: reads
    the records (one batched read), decodes them, applies ``transform`` and
    stacks them. Picklable, so it runs in grain's worker processes.

    An undecodable record raises ``sources.CorruptRecordError`` (naming the
    dataset, split and index) unless ``skip_corrupt``; then the next
    decodable record takes its place and ``"corrupt"`` counts the batch's
    replaced records.
    """

    split: Any
    transform: Transform
    seed: int
    rows: slice
    skip_corrupt: bool = False

    def _decode(self, index: int) -> tuple[np.ndarray, int, int]:
        """(image, index used, corrupt records passed over)."""
        records = self.split.x
        n = len(records)
        for skipped in range(n):
            i = (index + skipped) % n
            try:
                return records.decode(records.read([i])[0], i), i, skipped
            except ValueError:
                if not self.skip_corrupt:
                    raise
        raise ValueError(f"dataset {records.name!r}, split {records.split!r}: no decodable record.")

    def __call__(self, step: int, global_indices: np.ndarray) -> dict[str, Any]:
        idx = np.asarray(global_indices, np.int64)[self.rows]
        split, corrupt = self.split, 0
        if not hasattr(split.x, "read"):  # In-memory arrays.
            x, y = split.take(idx)
            if not self.transform.identity:
                x = self._transform_all(step, x)
            return {"x": x, "y": np.asarray(y, np.int32), "corrupt": np.int32(0)}
        records = split.x
        raw = records.read(idx)
        out, used = [], []
        for row, (i, rec) in enumerate(zip(idx, raw, strict=True)):
            try:
                image, j = records.decode(rec, int(i)), int(i)
            except ValueError:
                if not self.skip_corrupt:
                    raise
                image, j, _ = self._decode(int(i) + 1)
                corrupt += 1
            out.append(self.transform(self._rng(step, row), image))
            used.append(j)
        x = _stack(out, records)
        return {
            "x": x,
            "y": split.y[np.asarray(used)].astype(np.int32),
            "corrupt": np.int32(corrupt),
        }

    def _rng(self, step: int, row: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, step, (self.rows.start or 0) + row])

    def _transform_all(self, step: int, x: np.ndarray) -> np.ndarray:
        return np.stack([self.transform(self._rng(step, r), e) for r, e in enumerate(x)])


def _stack(examples: list[np.ndarray], records: Any) -> np.ndarray:
    shapes = {e.shape for e in examples}
    if len(shapes) > 1:
        raise ValueError(
            f"dataset {records.name!r}, split {records.split!r}: images of varying sizes "
            f"{sorted(shapes)[:3]}... cannot be batched as stored; set `dataset.image_size` "
            "(or use `augment.kind`='simclr_image', whose crops have one size)."
        )
    return np.stack(examples)


@dataclasses.dataclass(frozen=True)
class _ReadStep:
    indices: grain.MapDataset
    reader: BatchReader

    def __call__(self, step: int) -> dict[str, Any]:
        return self.reader(step, self.indices[step])


def resolve_workers(workers: int, split: Any) -> int:
    """``workers``, with ``AUTO`` (-1) resolved: the CPU count for records
    that must be read and decoded, 0 for in-memory arrays."""
    if workers != AUTO:
        return workers
    if not hasattr(split.x, "read"):
        return 0
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _absl_flags_ready() -> None:
    """grain's worker processes read absl flags (their defaults); outside an
    absl app (a notebook, a library user's script) nothing has parsed them,
    and reading one raises. Mark them parsed, keeping every default."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class Batches(Iterator):
    """An endless iterator over ``make(step)`` for step = 0, 1, ..., made
    ahead by ``workers`` processes (or one thread). ``get_state()`` is
    ``{"step": next step}``; ``set_state`` restarts the pipeline there."""

    def __init__(
        self,
        make: Callable[[int], Any],
        *,
        workers: int = 0,
        prefetch: int = 2,
        start: int = 0,
        length: int | None = None,
    ) -> None:
        self._make, self._workers, self._prefetch = make, workers, prefetch
        self._length = length
        self._step = start
        self._it = None

    def _open(self):
        end = self._length if self._length is not None else 2**62
        # One reading thread, `prefetch` batches ahead (grain's defaults, 16
        # threads and 500 elements, would hold hundreds of whole batches per
        # worker and, with workers, oversubscribe the cores: 2 workers ran
        # slower than 1). With workers, each runs this in its own process.
        read = grain.ReadOptions(
            num_threads=1 if self._prefetch else 0, prefetch_buffer_size=self._prefetch
        )
        ds = grain.MapDataset.range(self._step, end).map(self._make).to_iter_dataset(read)
        if self._workers > 0:
            _absl_flags_ready()
            options = grain.MultiprocessingOptions(
                num_workers=self._workers, per_worker_buffer_size=max(1, self._prefetch)
            )
            ds = ds.mp_prefetch(options)
        return iter(ds)

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._open()
        item = next(self._it)
        self._step += 1
        return item

    def get_state(self) -> dict[str, int]:
        return {"step": self._step}

    def set_state(self, state: dict[str, Any]) -> None:
        if "step" not in state:
            raise ValueError(
                f"Unrecognised data-iterator state {sorted(state)} (a checkpoint from before "
                "the step-indexed pipeline); start a new workdir."
            )
        self._step = int(state["step"])
        self.close()

    def close(self) -> None:
        """Stops the worker processes (a new ``next`` restarts them)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "close"):
            it.close()


def batches(
    split: Any,
    indices: grain.MapDataset,
    *,
    seed: int,
    transform: Transform = Transform(),
    process_index: int = 0,
    process_count: int = 1,
    workers: int = 0,
    prefetch: int = 2,
    skip_corrupt: bool = False,
) -> Batches:
    """Batches ``{"x", "y", "corrupt"}`` of this process's rows of each
    global batch of ``indices`` (a MapDataset indexed by step), read from
    ``split`` and transformed in ``workers`` processes."""
    global_batch = len(indices[0])
    rows = _process_rows(global_batch, process_index, process_count)
    reader = BatchReader(split, transform, seed, rows, skip_corrupt)
    return Batches(
        _ReadStep(indices, reader), workers=resolve_workers(workers, split), prefetch=prefetch
    )


def _index_rows(indices: grain.MapDataset, rows: slice) -> Batches:
    return Batches(_Rows(indices, rows), prefetch=0)


@dataclasses.dataclass(frozen=True)
class _Rows:
    indices: grain.MapDataset
    rows: slice

    def __call__(self, step: int) -> np.ndarray:
        return np.asarray(self.indices[step], np.int64)[self.rows]


def shuffled_batches(
    num_examples: int,
    global_batch: int,
    *,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Batches:
    """An endless iterator of this process's index rows [global_batch /
    process_count] of ``shuffled_indices``."""
    rows = _process_rows(global_batch, process_index, process_count)
    return _index_rows(shuffled_indices(num_examples, global_batch, seed=seed), rows)


def class_balanced_batches(
    labels: np.ndarray,
    global_batch: int,
    *,
    samples_per_class: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Batches:
    """An endless iterator of this process's rows of class-balanced index
    batches (m per class, ``class_balanced_index_batches``)."""
    rows = _process_rows(global_batch, process_index, process_count)
    indices = class_balanced_index_batches(
        labels, global_batch, samples_per_class=samples_per_class, seed=seed
    )
    return _index_rows(indices, rows)


def eval_batches(
    split: Any,
    batch_size: int,
    *,
    num_examples: int,
    transform: Transform = Transform(),
    workers: int = 0,
    prefetch: int = 2,
) -> Batches:
    """The first ``num_examples`` of ``split`` in order, in batches of
    ``batch_size`` (the last one shorter), evaluation-transformed."""
    reader = BatchReader(split, transform, 0, slice(None))
    return Batches(
        _EvalStep(reader, batch_size, num_examples),
        workers=resolve_workers(workers, split),
        prefetch=prefetch,
        length=-(-num_examples // batch_size),
    )


@dataclasses.dataclass(frozen=True)
class _EvalStep:
    reader: BatchReader
    batch_size: int
    num_examples: int

    def __call__(self, step: int) -> dict[str, Any]:
        start = step * self.batch_size
        return self.reader(step, np.arange(start, min(start + self.batch_size, self.num_examples)))
