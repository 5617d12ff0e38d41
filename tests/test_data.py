"""Data sources and grain pipelines against direct NumPy / TFDS reads."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxmetric.data import input_pipeline, sources


def test_mnist1d_is_the_generated_dataset():
    from mnist1d.data import get_dataset_args, make_dataset

    train, test = sources.mnist1d()
    ref = make_dataset(get_dataset_args())
    assert train.x.shape == (4000, 40) and test.x.shape == (1000, 40)
    np.testing.assert_array_equal(train.x, ref["x"].astype(np.float32))
    np.testing.assert_array_equal(test.y, ref["y_test"])
    assert train.num_classes == 10 and set(np.unique(train.y)) == set(range(10))


def test_digits_split_is_stratified_and_disjoint():
    from sklearn.datasets import load_digits

    train, test = sources.digits(test_fraction=0.5, seed=0)
    full = load_digits()
    assert len(train) + len(test) == len(full.target)
    assert train.x.max() <= 1.0 and train.example_shape == (8, 8)
    counts_tr = np.bincount(train.y, minlength=10)
    counts_all = np.bincount(full.target, minlength=10)
    assert np.all(np.abs(counts_tr - counts_all / 2) <= 1)
    # Each image appears once overall (rows are unique in digits).
    allx = np.concatenate([train.x, test.x]).reshape(len(full.target), -1)
    assert len(np.unique(allx, axis=0)) == len(np.unique(full.images.reshape(-1, 64), axis=0))


def test_shuffled_batches_cover_each_epoch_and_split_over_processes():
    n, batch = 24, 8
    it = input_pipeline.shuffled_batches(n, batch, seed=3)
    epoch1 = np.concatenate([next(it) for _ in range(3)])
    epoch2 = np.concatenate([next(it) for _ in range(3)])
    assert sorted(epoch1) == list(range(n)) and sorted(epoch2) == list(range(n))
    assert not np.array_equal(epoch1, epoch2)  # reshuffled each epoch
    procs = [
        input_pipeline.shuffled_batches(n, batch, seed=3, process_index=p, process_count=2)
        for p in range(2)
    ]
    first = np.concatenate([next(p) for p in procs])
    np.testing.assert_array_equal(first, epoch1[:batch])


def test_iterator_state_resumes_exactly():
    it = input_pipeline.shuffled_batches(50, 16, seed=0)
    for _ in range(5):
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(4)]
    fresh = input_pipeline.shuffled_batches(50, 16, seed=0)
    fresh.set_state(state)
    for w in want:
        np.testing.assert_array_equal(next(fresh), w)


def test_class_balanced_batches_have_m_per_class():
    labels = np.repeat(np.arange(10), 7)
    it = input_pipeline.class_balanced_batches(labels, 20, samples_per_class=4, seed=0)
    for _ in range(3):
        idx = next(it)
        counts = np.bincount(labels[idx], minlength=10)
        assert sorted(counts[counts > 0]) == [4] * 5
    with pytest.raises(ValueError, match="samples_per_class"):
        input_pipeline.class_balanced_batches(labels, 20, samples_per_class=3, seed=0)


def test_tfds_split_reads_records_and_labels_of_the_data_source(tfds_dir):
    name = "variable_size_images"
    split = sources.tfds(name, "train", data_dir=tfds_dir)
    ref = tfds.data_source(name, split="train", data_dir=tfds_dir, download=False)
    assert len(split) == 23 and split.num_classes == 3
    # Labels (read without decoding the images) are those of the decoded records.
    np.testing.assert_array_equal(split.y, [ref[i]["label"] for i in range(len(ref))])
    np.testing.assert_array_equal(split.x[5], ref[5]["image"])


def test_missing_dataset_or_split_says_what_to_do(tfds_dir, tmp_path):
    with pytest.raises(ValueError, match=r"`dataset.tfds_name`='no_such_set'.*tfds build"):
        sources.tfds("no_such_set", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"`dataset.tfds_name`='mnist': no ArrayRecord copy"):
        sources.tfds("mnist", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"split 'validation'"):
        sources.tfds("variable_size_images", "validation", data_dir=tfds_dir)


def test_the_first_open_writes_a_label_index_that_later_opens_read(tmp_path):
    import glob

    from tests.datasets import write_variable_size_images

    data_dir = str(tmp_path / "tfds")
    name = write_variable_size_images(data_dir)
    ref = tfds.data_source(name, split="train", data_dir=data_dir, download=False)
    want = [ref[i]["label"] for i in range(len(ref))]
    np.testing.assert_array_equal(sources.tfds(name, "train", data_dir=data_dir).y, want)
    (index,) = glob.glob(f"{data_dir}/{name}/*/jaxmetric-labels-train-*.npz")
    # Later opens read the index: a doctored one (same fingerprint) shows through.
    with np.load(index) as f:
        fingerprint = f["fingerprint"]
    np.savez(index, labels=np.arange(len(want)), fingerprint=fingerprint)
    np.testing.assert_array_equal(sources.tfds(name, "train", data_dir=data_dir).y, range(23))
    # An index of other files (another preparation) is not trusted, and is rewritten.
    np.savez(index, labels=np.arange(len(want)), fingerprint=np.asarray("[0]"))
    np.testing.assert_array_equal(sources.tfds(name, "train", data_dir=data_dir).y, want)
    with np.load(index) as f:
        assert str(f["fingerprint"]) == str(fingerprint)


@pytest.mark.parametrize("name,num_classes", [("caltech_birds2011", 200), ("cars196", 196)])
def test_first_half_class_split_pools_the_splits_and_splits_by_class(tmp_path, name, num_classes):
    import ml_collections

    from tests.datasets import write_mock_tfds

    data_dir = str(tmp_path)
    write_mock_tfds(data_dir, name)  # TFDS's own features and version, few records.
    cfg = ml_collections.ConfigDict(
        {"name": "tfds", "tfds_name": name, "train_split": "train", "test_split": "test",
         "data_dir": data_dir, "image_key": "image", "label_key": "label",
         "class_split": "first_half"}
    )  # fmt: skip
    train, test = sources.load(cfg)
    # The reference: every stored record, read and decoded by TFDS itself.
    stored = {}
    for split in ("train", "test"):
        ref = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        for i in range(len(ref)):
            stored[(split, i)] = (int(ref[i]["label"]), ref[i]["image"])
    half = num_classes // 2  # CUB-200: 100 (0-99 / 100-199); Cars196: 98 (0-97 / 98-195)
    seen = []
    for got, chosen in ((train, lambda y: y < half), (test, lambda y: y >= half)):
        assert got.num_classes == num_classes
        want = sorted(k for k, (y, _) in stored.items() if chosen(y))
        keys = [
            (("train", "test")[p], int(i)) for p, i in zip(got.x.part, got.x.index, strict=True)
        ]
        assert sorted(keys) == want and len(set(keys)) == len(keys)
        seen += keys
        records = got.x.read(np.arange(len(got)))
        for row, key in enumerate(keys):
            label, image = stored[key]
            assert got.y[row] == label
            np.testing.assert_array_equal(got.x.decode(records[row], row), image)
    assert sorted(seen) == sorted(stored)  # every record exactly once
    assert {0, half - 1} <= set(train.y.tolist()) and {half, num_classes - 1} <= set(test.y)
    # The trainer's input pipeline reads the pooled records as any split's.
    # One stored split that holds every class (train_split = test_split): once each.
    cfg.test_split = "train"
    one = [k for k in stored if k[0] == "train"]
    parts = [(got.x.part, got.x.index, got.y) for got in sources.load(cfg)]
    assert sorted(("train", int(i)) for p, idx, _ in parts for i in idx) == sorted(one)
    assert all(np.all(p == 0) for p, _, _ in parts)
    assert parts[0][2].max() < half <= parts[1][2].min()
    transform = input_pipeline.Transform("eval", 24)
    batch = next(iter(input_pipeline.eval_batches(test, 4, num_examples=4, transform=transform)))
    np.testing.assert_array_equal(batch["y"], test.y[:4])
    for row in range(4):
        np.testing.assert_array_equal(batch["x"][row], transform(None, stored[keys[row]][1]))
