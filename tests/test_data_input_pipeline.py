"""The image input pipeline on a real ArrayRecord dataset of JPEGs: batches
against direct reads + jaxmetric.data.images, the same with any number of
workers or processes, resumable, and bad records named or skipped."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxmetric.data import images, input_pipeline, sources
from tests.datasets import DAMAGED_RECORDS, JPEG_SPLITS

NAME = "jpeg_images"
VIEWS = input_pipeline.Transform("views", 24, 2)


def _batches(split, batch=8, **kwargs):
    indices = input_pipeline.shuffled_indices(len(split), batch, seed=5)
    return input_pipeline.batches(split, indices, seed=5, transform=VIEWS, **kwargs)


def _take(it, n):
    try:
        return [next(it) for _ in range(n)]
    finally:
        it.close()


def test_views_are_crops_of_the_decoded_records_seeded_by_step_and_row(jpeg_dir):
    split = sources.tfds(NAME, "train", data_dir=jpeg_dir)
    ref = tfds.data_source(NAME, split="train", data_dir=jpeg_dir, download=False)
    indices = input_pipeline.shuffled_indices(len(split), 8, seed=5)
    for step, batch in enumerate(_take(_batches(split, workers=0), 3)):
        assert batch["x"].shape == (8, 2, 24, 24, 3) and batch["x"].dtype == np.uint8
        for row, i in enumerate(indices[step]):
            # TFDS's own decoder (OpenCV) gives the image the crops are cut from.
            want = images.train_views(np.random.default_rng([5, step, row]), ref[i]["image"], 24, 2)
            np.testing.assert_array_equal(batch["x"][row], want)
            assert batch["y"][row] == ref[i]["label"]


def test_batches_are_the_same_with_any_number_of_workers_or_processes(jpeg_dir):
    split = sources.tfds(NAME, "train", data_dir=jpeg_dir)
    one = _take(_batches(split, workers=0), 4)
    two_workers = _take(_batches(split, workers=2), 4)
    halves = [
        _take(_batches(split, workers=0, process_index=p, process_count=2), 4) for p in range(2)
    ]
    for k in range(4):
        for key in ("x", "y"):
            np.testing.assert_array_equal(two_workers[k][key], one[k][key])
            joined = np.concatenate([halves[0][k][key], halves[1][k][key]])
            np.testing.assert_array_equal(joined, one[k][key])


def test_the_state_is_the_step_and_resumes_exactly(jpeg_dir):
    split = sources.tfds(NAME, "train", data_dir=jpeg_dir)
    it = _batches(split, workers=2)
    _take(it, 3)
    assert it.get_state() == {"step": 3}
    want = _take(it, 2)  # After close, `next` restarts the workers where it was.
    fresh = _batches(split, workers=0)
    fresh.set_state({"step": 3})
    for w, got in zip(want, _take(fresh, 2), strict=True):
        np.testing.assert_array_equal(got["x"], w["x"])
    with pytest.raises(ValueError, match="data-iterator state"):
        fresh.set_state({"next_index": 4})


def test_eval_batches_are_the_split_in_order_centre_cropped(jpeg_dir):
    split = sources.tfds(NAME, "test", data_dir=jpeg_dir)
    ref = tfds.data_source(NAME, split="test", data_dir=jpeg_dir, download=False)
    transform = input_pipeline.Transform("eval", 20, crop_fraction=0.875)
    it = input_pipeline.eval_batches(split, 6, num_examples=14, transform=transform, workers=2)
    got = list(it)
    assert [len(b["y"]) for b in got] == [6, 6, 2]
    x = np.concatenate([b["x"] for b in got])
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in got]), split.y[:14])
    for i in range(14):
        np.testing.assert_array_equal(x[i], images.eval_view(ref[i]["image"], 20, 0.875))


def _damaged(split):
    bad = []
    for i in range(len(split)):
        try:
            split.x[i]
        except sources.CorruptRecordError:
            bad.append(i)
    return bad


def test_a_corrupt_record_is_named_or_skipped_and_counted(jpeg_dir):
    split = sources.tfds(NAME, "damaged", data_dir=jpeg_dir)
    bad = _damaged(split)
    assert len(bad) == DAMAGED_RECORDS and set(split.y[bad]) == {3}
    n = JPEG_SPLITS["damaged"]
    with pytest.raises(sources.CorruptRecordError, match=rf"'{NAME}', split 'damaged', record"):
        _take(_batches(split, batch=n, workers=0), 1)
    try:
        _take(_batches(split, batch=n, workers=2), 1)
    except sources.CorruptRecordError as err:  # Raised in a worker, re-raised here.
        assert f"record {bad[0]}" in str(err) or f"record {bad[1]}" in str(err)
    else:
        raise AssertionError("a corrupt record passed without skip_corrupt")
    # Skipped: each batch is one epoch (every record once); the damaged ones are
    # replaced by good ones, and counted.
    for batch in _take(_batches(split, batch=n, workers=2, skip_corrupt=True), 3):
        assert batch["corrupt"] == DAMAGED_RECORDS and len(batch["y"]) == n
        assert 3 not in batch["y"]


def test_input_shape_is_what_the_encoder_sees_whatever_the_stored_size(jpeg_dir):
    from jaxmetric.train import base_config

    config = base_config()
    split = sources.tfds(NAME, "damaged", data_dir=jpeg_dir)  # Record 0 may be damaged.
    config.augment.kind = "simclr_image"
    config.augment.simclr_image.size = 12
    assert input_pipeline.input_shape(config, split) == (12, 12, 3)
    config.augment.kind = "none"
    config.dataset.image_size = 20
    assert input_pipeline.input_shape(config, split) == (20, 20, 3)
    config.augment.kind = "simclr_image"
    digits, _ = sources.digits()
    assert input_pipeline.input_shape(config, digits) == (12, 12, 1)
    mnist1d, _ = sources.mnist1d()
    assert input_pipeline.input_shape(base_config(), mnist1d) == (40,)


def test_varying_sizes_without_a_size_say_which_field_to_set(jpeg_dir):
    split = sources.tfds(NAME, "train", data_dir=jpeg_dir)
    indices = input_pipeline.shuffled_indices(len(split), 8, seed=0)
    it = input_pipeline.batches(split, indices, seed=0, workers=0)
    with pytest.raises(ValueError, match="`dataset.image_size`"):
        _take(it, 1)
