"""jaxmetric.data.prepare: folders and arrays written as TFDS ArrayRecord
datasets without TensorFlow, read back with tfds.data_source and compared
with the files and arrays they came from."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxmetric.data import prepare, sources


def _rgb(rng, h, w):
    return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)


def _write_file(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _jpeg(image):  # image: RGB [H, W, 3] or grayscale [H, W].
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _png(image):
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".png", image)[1].tobytes()


def _records(name, split, data_dir, **kwargs):
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False, **kwargs)
    return [source[i] for i in range(len(source))]


@pytest.fixture
def jpeg_folder(tmp_path):
    """folder/<split>/<class>/<file>: JPEGs of varying sizes, one grayscale,
    the test split's classes not all the train split's (cat, owl vs cat, dog),
    plus files that are not images. Returns (folder, {relative path: bytes})."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    files = {
        "train/cat/a.jpg": _jpeg(_rgb(rng, 12, 9)),
        "train/cat/b.JPEG": _jpeg(_rgb(rng, 7, 15)),
        "train/cat/more/c.jpeg": _jpeg(_rgb(rng, 10, 10)),  # sub-folders count (ImageFolder)
        "train/dog/d.jpg": _jpeg(_rgb(rng, 9, 11)),
        "train/dog/gray.jpg": _jpeg(rng.integers(0, 256, (8, 6)).astype(np.uint8)),
        "test/cat/e.jpg": _jpeg(_rgb(rng, 13, 8)),
        "test/owl/f.jpg": _jpeg(_rgb(rng, 6, 6)),
    }
    for rel, data in files.items():
        _write_file(folder / rel, data)
    _write_file(folder / "train/dog/notes.txt", b"not an image")
    _write_file(folder / "train/dog/.hidden.jpg", b"skipped")
    return folder, files


def test_folder_stores_the_file_bytes_and_their_class_indices(jpeg_folder, tmp_path):
    folder, files = jpeg_folder
    data_dir = str(tmp_path / "tfds")
    assert prepare.prepare_folder(data_dir, "pets", folder) == "pets"

    # One labelling over both splits: cat, dog, owl (sorted class folders).
    classes = ["cat", "dog", "owl"]
    for split in ("train", "test"):
        got = _records("pets", split, data_dir, decoders={"image": tfds.decode.SkipDecoding()})
        # TFDS shuffles the records: match them to the files by content.
        by_bytes = {r["image"]: (r["label"], r["file_name"].decode()) for r in got}
        want = {
            data: (classes.index(rel.split("/")[1]), rel)
            for rel, data in files.items()
            if rel.startswith(split + "/")
        }
        assert len(got) == len(want) and by_bytes == want

    info = tfds.builder_from_directory(os.path.join(data_dir, "pets", "1.0.0")).info
    assert info.features["label"].names == classes
    assert info.features["image"].encoding_format == "jpeg"
    assert info.features["image"].shape == (None, None, 3)

    # Decoded by the project's reader: the grayscale JPEG has 3 equal channels.
    train = sources.tfds("pets", "train", data_dir=data_dir)
    names = [r["file_name"].decode() for r in _records("pets", "train", data_dir)]
    gray = train.x[names.index("train/dog/gray.jpg")]
    ref = cv2.imdecode(np.frombuffer(files["train/dog/gray.jpg"], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert gray.shape == (8, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(gray[..., c], ref)
    assert train.num_classes == 3 and sorted(train.y) == [0, 0, 0, 1, 1]


def test_png_folder_decodes_to_the_original_arrays(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {f"train/{c}/{i}.png": _rgb(rng, 5 + i, 4 + 2 * i) for c in "ab" for i in range(3)}
    arrays["val/b/x.png"] = _rgb(rng, 3, 3)
    for rel, image in arrays.items():
        _write_file(tmp_path / "f" / rel, _png(image))
    data_dir = str(tmp_path / "tfds")
    prepare.prepare_folder(data_dir, "pngs", tmp_path / "f", splits=["train"])
    records = _records("pngs", "train", data_dir)
    assert len(records) == 6
    for r in records:
        rel = r["file_name"].decode()
        np.testing.assert_array_equal(r["image"], arrays[rel])
        assert r["label"] == "ab".index(rel.split("/")[1])
    assert not os.path.exists(os.path.join(data_dir, "pngs", "1.0.0", "pngs-val.array_record"))


def test_arrays_round_trip_exactly_as_png(tmp_path):
    rng = np.random.default_rng(2)
    x_train = rng.integers(0, 256, (10, 6, 7, 3)).astype(np.uint8)
    y_train = rng.integers(0, 4, 10)
    x_test = [_rgb(rng, 4 + i, 9 - i) for i in range(5)]  # varying sizes
    y_test = np.array([3, 0, 1, 1, 2])
    data_dir = str(tmp_path)
    names = ["w", "x", "y", "z"]
    prepare.prepare_arrays(
        data_dir, "arrs", {"train": (x_train, y_train), "test": (x_test, y_test)}, class_names=names
    )
    for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        skip = {"image": tfds.decode.SkipDecoding()}
        stored = _records("arrs", split, data_dir, decoders=skip)
        # The stored bytes are PNGs of the arrays (OpenCV decodes them to BGR).
        got = sorted(
            (
                cv2.imdecode(np.frombuffer(r["image"], np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
            ).tobytes()
            + bytes([r["label"]])
            for r in stored
        )
        want = sorted(x.tobytes() + bytes([int(y)]) for x, y in zip(xs, ys, strict=True))
        assert got == want
        decoded = _records("arrs", split, data_dir)
        assert sorted(r["image"].tobytes() for r in decoded) == sorted(x.tobytes() for x in xs)
    info = tfds.builder_from_directory(os.path.join(data_dir, "arrs", "1.0.0")).info
    assert info.features["label"].names == names
    assert info.features["image"].encoding_format == "png"


def test_grayscale_arrays_and_jpeg(tmp_path):
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (4, 5, 6)).astype(np.uint8)  # [N, H, W]
    prepare.prepare_arrays(tmp_path, "gray", {"train": (gray, np.arange(4))})
    records = _records("gray", "train", str(tmp_path))
    assert sorted(r["image"].tobytes() for r in records) == sorted(g.tobytes() for g in gray)
    assert all(r["image"].shape == (5, 6, 1) for r in records)
    feature = tfds.builder_from_directory(str(tmp_path / "gray" / "1.0.0")).info.features
    assert feature["label"].num_classes == 4 and feature["image"].shape == (5, 6, 1)

    # JPEG: smooth images with different channels come back close, in RGB order.
    ramp = np.linspace(0, 255, 16)
    smooth = np.stack(
        [np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, 255 - ramp) / 2, np.full((16, 16), 40)],
        -1,
    ).astype(np.uint8)
    prepare.prepare_arrays(tmp_path, "smooth", {"train": (smooth[None], [0])}, image_format="jpeg")
    (record,) = _records("smooth", "train", str(tmp_path))
    assert np.abs(record["image"].astype(int) - smooth).mean() < 3


def test_existing_dataset_needs_overwrite(tmp_path):
    x = np.zeros((2, 3, 3, 3), np.uint8)
    prepare.prepare_arrays(tmp_path, "again", {"train": (x, [0, 1])})
    with pytest.raises(ValueError, match=r"`name`='again': .*already exists.*overwrite=True"):
        prepare.prepare_arrays(tmp_path, "again", {"train": (x, [0, 1])})
    prepare.prepare_arrays(tmp_path, "again", {"train": (x[:1] + 7, [1])}, overwrite=True)
    (record,) = _records("again", "train", str(tmp_path))
    assert record["label"] == 1 and (record["image"] == 7).all()
    # A folder of that name that is not a dataset is never removed.
    _write_file(tmp_path / "mine" / "keep.txt", b"x")
    with pytest.raises(ValueError, match=r"`name`='mine': .*not a dataset this module wrote"):
        prepare.prepare_arrays(tmp_path, "mine", {"train": (x, [0, 1])}, overwrite=True)
    assert (tmp_path / "mine" / "keep.txt").exists()


def _folder_error(tmp_path, layout: dict[str, bytes], match: str, **kwargs):
    for rel, data in layout.items():
        _write_file(tmp_path / "f" / rel, data)
    os.makedirs(tmp_path / "f", exist_ok=True)
    with pytest.raises(ValueError, match=match):
        prepare.prepare_folder(tmp_path / "out", "bad", tmp_path / "f", **kwargs)
    assert not (tmp_path / "out" / "bad").exists()


_JPG = _jpeg(np.zeros((4, 4, 3), np.uint8))
_PNG = _png(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize(
    "layout, match, kwargs",
    [
        ({}, r"`folder`=.* has no split folders", {}),
        (
            {"train/readme.txt": b"x"},
            r"`folder`: the split folder .*train has no class folders",
            {},
        ),
        ({"train/cat/readme.txt": b"x"}, r"`folder`: the class folder .*cat has no images", {}),
        (
            {"train/cat/a.jpg": _JPG},
            r"`splits`: 'val' is not a folder of `folder`",
            {"splits": ["val"]},
        ),
        (
            {"train/cat/a.jpg": _JPG, "train/cat/b.jpg": _JPG, "train/dog/c.png": _PNG},
            r"`folder`=.* mixes JPEG and PNG files \(2 JPEG, 1 PNG, by content; the PNG .*c\.png\)",
            {},
        ),
        ({"train/cat/a.jpg": b"GIF89a..."}, r"`folder`: .*a\.jpg is not a JPEG or PNG", {}),
        ({"train/cat/a.jpg": _JPG[: len(_JPG) // 2]}, r"`folder`: .*a\.jpg cannot be decoded", {}),
        (
            {"train/cat/a.png": cv2.imencode(".png", np.zeros((3, 3), np.uint16))[1].tobytes()},
            r"`folder`: .*a\.png has uint16 pixels",
            {},
        ),
        (
            {
                "train/cat/a.png": _PNG,
                "train/cat/b.png": cv2.imencode(".png", np.zeros((3, 3, 4), np.uint8))[1].tobytes(),
            },
            r"`folder`=.* mixes images with an alpha channel \(1, e\.g\. .*b\.png",
            {},
        ),
    ],
)
def test_folder_errors_name_the_argument(tmp_path, layout, match, kwargs):
    _folder_error(tmp_path, layout, match, **kwargs)


def test_missing_folder_and_bad_names(tmp_path):
    with pytest.raises(ValueError, match=r"`folder`=.*nope' is not a directory"):
        prepare.prepare_folder(tmp_path, "ok_name", tmp_path / "nope")
    x = np.zeros((2, 3, 3), np.uint8)
    for name in ("MyImages", "my-images", "2images", "my__images", ""):
        with pytest.raises(ValueError, match=rf"`name`={name!r} is not a valid dataset name"):
            prepare.prepare_arrays(tmp_path, name, {"train": (x, [0, 1])})
    with pytest.raises(ValueError, match=r"`name`='mnist' is the name of a dataset that TFDS"):
        prepare.prepare_arrays(tmp_path, "mnist", {"train": (x, [0, 1])})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "splits, kwargs, match",
    [
        (
            {"train": (np.zeros((3, 4, 4), np.uint8), [0, 1])},
            {},
            r"`splits\['train'\]`: 3 images but 2 labels",
        ),
        (
            {"train": (np.zeros((2, 4, 4, 3), np.float32), [0, 1])},
            {},
            r"`splits\['train'\]` images are float32; uint8 is required",
        ),
        (
            {"test": ([np.zeros((4, 4), np.uint8), np.zeros((5, 4), np.int64)], [0, 1])},
            {},
            r"`splits\['test'\]` image 1 is int64; uint8 is required",
        ),
        (
            {"train": (np.zeros((2, 4, 4, 2), np.uint8), [0, 1])},
            {},
            r"`splits\['train'\]` image 0 has shape \(4, 4, 2\)",
        ),
        (
            {
                "train": (np.zeros((1, 4, 4), np.uint8), [0]),
                "test": (np.zeros((1, 4, 4, 3), np.uint8), [0]),
            },
            {},
            r"`splits`: the images have \[1, 3\] channels",
        ),
        (
            {"train": (np.zeros((2, 4, 4), np.uint8), [0, 2])},
            {"class_names": ["a", "b"]},
            r"`splits\['train'\]` label 2 is out of range for the 2 `class_names`",
        ),
        (
            {"train": (np.zeros((2, 4, 4), np.uint8), [0.0, 1.0])},
            {},
            r"`splits\['train'\]` labels must be a 1-D array of ints",
        ),
        (
            {"train": (np.zeros((2, 4, 4), np.uint8), [0, 1])},
            {"image_format": "webp"},
            r"`image_format` must be 'png' or 'jpeg'",
        ),
        (
            {"train": (np.zeros((2, 4, 4, 4), np.uint8), [0, 1])},
            {"image_format": "jpeg"},
            r"`image_format`='jpeg' cannot store an alpha channel",
        ),
        ({"train": (np.zeros((0, 4, 4), np.uint8), [])}, {}, r"`splits\['train'\]` has no images"),
        ({}, {}, r"`splits` must be a non-empty dict"),
    ],
)
def test_array_errors_name_the_argument(tmp_path, splits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        prepare.prepare_arrays(tmp_path, "bad", splits, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_command_line(jpeg_folder, tmp_path):
    folder, files = jpeg_folder
    data_dir = tmp_path / "tfds"
    cmd = [sys.executable, "-m", "jaxmetric.data.prepare", f"--folder={folder}", "--name=pets"]
    done = subprocess.run(
        [*cmd, f"--data_dir={data_dir}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "train: 5 records" in done.stdout and "test: 2 records" in done.stdout
    assert (
        "--config.dataset.name=tfds --config.dataset.tfds_name=pets "
        f"--config.dataset.data_dir={data_dir}"
    ) in done.stdout
    assert "--config.dataset.image_size=" in done.stdout  # the sizes vary
    assert len(tfds.data_source("pets", split="train", data_dir=str(data_dir))) == 5
    # A ValueError is a one-line exit, not a traceback.
    with pytest.raises(SystemExit, match=r"jaxmetric.data.prepare: `name`='pets': .*already"):
        prepare.main([f"--folder={folder}", "--name=pets", f"--data_dir={data_dir}"])


def test_a_split_over_tfds_in_memory_shuffle_limit_prepares_without_tensorflow(
    tmp_path, monkeypatch
):
    # TFDS spills a split over its limit (1 GB) to disk with tf.io.gfile;
    # with the limit at 1 KB, these 2 KB of PNGs would need TensorFlow.
    from tensorflow_datasets.core import shuffle

    monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 1 << 10)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (12, 8, 8, 3)).astype(np.uint8)
    y = np.arange(12) % 3
    prepare.prepare_arrays(str(tmp_path), "big_split", {"train": (x, y)})
    stored = _records("big_split", "train", str(tmp_path))
    assert sorted(r["image"].tobytes() for r in stored) == sorted(e.tobytes() for e in x)
    assert shuffle.MAX_MEM_BUFFER_SIZE == 1 << 10  # TFDS's setting is put back.


# --------------------------------------------------------------------------
# IDX files (Fashion-MNIST).


def _write_idx(path, array, *, compress=True):
    """An IDX file written from its definition (independent of read_idx): two
    zero bytes, the type code, the rank, big-endian uint32 sizes, big-endian values."""
    import gzip
    import struct

    codes = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    _write_file(path, gzip.compress(data) if compress else data)


def _fashion_idx_dir(root, rng, n_train=40, n_test=10, shape=(28, 28)):
    """The four files of Fashion-MNIST's layout; returns the folder and the arrays."""
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, (n, *shape)).astype(np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y)
        arrays[split] = (x, y)
    return root, arrays


def test_read_idx_reads_what_the_format_defines(tmp_path):
    rng = np.random.default_rng(7)
    cases = {
        "images-idx3-ubyte.gz": (rng.integers(0, 256, (3, 5, 4)).astype(np.uint8), True),
        "labels-idx1-ubyte": (np.array([9, 0, 3], np.uint8), False),  # not compressed
        "ints-idx2": (rng.integers(-(2**30), 2**30, (2, 3)).astype(np.int32), True),
        "floats-idx1": (rng.normal(size=4).astype(np.float32), False),
    }
    for name, (array, compress) in cases.items():
        _write_idx(tmp_path / name, array, compress=compress)
        got = prepare.read_idx(tmp_path / name)
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)
    _write_file(tmp_path / "bad-magic", b"\x00\x00\x07\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match=r"`path`=.*bad-magic' is not an IDX file"):
        prepare.read_idx(tmp_path / "bad-magic")
    _write_file(tmp_path / "short", b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02")
    with pytest.raises(ValueError, match=r"shape \(5,\) \(5 bytes of uint8\), the file holds 2"):
        prepare.read_idx(tmp_path / "short")


def test_fashion_mnist_from_idx_files_records_equal_the_arrays(tmp_path):
    rng = np.random.default_rng(8)
    idx_dir, arrays = _fashion_idx_dir(tmp_path / "idx", rng, n_train=12, n_test=5, shape=(6, 4))
    data_dir = str(tmp_path / "tfds")
    assert prepare.prepare_fashion_mnist(data_dir, idx_dir) == prepare.FASHION_MNIST_NAME
    builder = tfds.builder_from_directory(
        os.path.join(data_dir, prepare.FASHION_MNIST_NAME, prepare.DATASET_VERSION)
    )
    assert builder.info.features["label"].names == list(prepare.FASHION_MNIST_CLASSES)
    assert builder.info.features["image"].shape == (6, 4, 1)
    for split, (x, y) in arrays.items():
        got = _records(prepare.FASHION_MNIST_NAME, split, data_dir)
        # TFDS shuffles the records: compare the sorted (image bytes, label) pairs.
        stored = sorted((r["image"].tobytes(), int(r["label"])) for r in got)
        want = [(xi[..., None].tobytes(), int(yi)) for xi, yi in zip(x, y, strict=True)]
        assert stored == sorted(want)
        # What the trainer reads by name from data_dir: images [H, W, 1] and labels.
        split_data = sources.tfds(prepare.FASHION_MNIST_NAME, split, data_dir=data_dir)
        assert sorted(split_data.y.tolist()) == sorted(y.tolist())
        assert split_data.x[0].shape == (6, 4, 1) and split_data.x[0].dtype == np.uint8
    # The command line: the same files, another name, then a missing folder.
    prepare.main(["fashion_mnist", f"--idx_dir={idx_dir}", "--name=fm", f"--data_dir={data_dir}"])
    assert len(tfds.data_source("fm", split="test", data_dir=data_dir)) == 5
    os.remove(idx_dir / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(SystemExit, match=r"`idx_dir`=.* has no t10k-labels-idx1-ubyte"):
        prepare.main(["fashion_mnist", f"--idx_dir={idx_dir}", f"--data_dir={tmp_path}/x"])
