"""grain input pipelines: shuffled or class-balanced batches of indices,
sharded per process, with a checkpointable iterator.

A pipeline yields the indices of this process's rows of each global batch;
``Split.take`` turns them into arrays. The iterator's state
(``get_state`` / ``set_state``) is saved with the train state, so a resumed
run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import grain
import numpy as np


def _process_rows(global_batch: int, process_index: int, process_count: int) -> slice:
    if global_batch % process_count:
        raise ValueError(
            f"`batch_size`={global_batch} must be divisible by the process count {process_count}."
        )
    per = global_batch // process_count
    return slice(process_index * per, (process_index + 1) * per)


def shuffled_batches(
    num_examples: int,
    global_batch: int,
    *,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
    """An endless iterator of index batches [global_batch / process_count].

    Every epoch is a fresh permutation of all examples (grain reshuffles each
    repetition); batches run across epoch boundaries, so every batch is
    full. Each process takes its own contiguous rows of the global batch.
    """
    rows = _process_rows(global_batch, process_index, process_count)
    ds = (
        grain.MapDataset.range(num_examples)
        .shuffle(seed=seed)
        .repeat()
        .batch(global_batch, drop_remainder=True)
        .map(lambda idx: np.asarray(idx, np.int64)[rows])
    )
    return iter(ds.to_iter_dataset())


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


def class_balanced_batches(
    labels: np.ndarray,
    global_batch: int,
    *,
    samples_per_class: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
    """An endless iterator of class-balanced index batches (m per class), for
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
    rows = _process_rows(global_batch, process_index, process_count)
    labels = np.asarray(labels)
    ds = grain.MapDataset.range(0, 2**62).map(
        lambda step: class_balanced_indices(labels, samples_per_class, global_batch, seed, step)[
            rows
        ]
    )
    return iter(ds.to_iter_dataset())
