"""jaxmetric.data.sop: a tiny archive laid out as Stanford_Online_Products.zip,
prepared and read back by TFDS's own ``stanford_online_products`` builder."""

import os
import zipfile

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxmetric.data import sop, sources

# (class_id, super_class_id) per image, ids from 1 as in Ebay_*.txt.
LISTS = {
    "train": [(1, 1), (1, 1), (2, 3), (2, 3), (3, 12)],
    "test": [(4, 5), (4, 5), (sop.NUM_CLASSES, 12)],
}


def _write_folder(root):
    """Stanford_Online_Products/ with the two lists and a JPEG per line
    (one grayscale); returns {split: [(class_id, super_class_id, image)]}."""
    base = os.path.join(root, "Stanford_Online_Products")
    rng = np.random.default_rng(0)
    written, image_id = {}, 1
    for split, rows in LISTS.items():
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


def _zip(folder, path):
    with zipfile.ZipFile(path, "w") as z:
        for dirpath, _, files in os.walk(folder):
            for name in files:
                full = os.path.join(dirpath, name)
                z.write(full, os.path.relpath(full, os.path.dirname(folder)))
    return path


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_prepared_sop_is_tfds_stanford_online_products(tmp_path, kind):
    folder, written = _write_folder(tmp_path / "src")
    source = _zip(folder, tmp_path / "Stanford_Online_Products.zip") if kind == "zip" else folder
    data_dir = str(tmp_path / "tfds")
    assert sop.prepare_sop(data_dir, source) == "stanford_online_products"
    for split, rows in written.items():
        # Read by TFDS's own builder, as after `tfds build stanford_online_products`.
        ref = tfds.data_source(
            "stanford_online_products", split=split, data_dir=data_dir, download=False
        )
        got = sorted(
            (int(r["class_id"]), int(r["super_class_id/num"]), int(r["super_class_id"]))
            + (r["image"].tobytes(),)
            for r in (ref[i] for i in range(len(ref)))
        )
        want = []
        for class_id, super_id, data in rows:
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            rgb = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
            want.append((class_id - 1, super_id - 1, super_id - 1, rgb.tobytes()))
        assert got == sorted(want)
        # The trainer's source: labels from `class_id`, images as stored.
        split_data = sources.tfds(
            "stanford_online_products", split, data_dir=data_dir, label_key="class_id"
        )
        assert split_data.num_classes == sop.NUM_CLASSES
        assert sorted(split_data.y.tolist()) == sorted(c - 1 for c, _, _ in rows)
    names = tfds.builder("stanford_online_products", data_dir=data_dir).info.features
    assert names["super_class_id"].names == list(sop.SUPER_CLASSES)
    with pytest.raises(ValueError, match="already exists"):
        sop.prepare_sop(data_dir, source)


def test_bad_archives_are_named(tmp_path):
    folder, _ = _write_folder(tmp_path / "src")
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(ValueError, match="`source`=.*neither"):
        sop.prepare_sop(data_dir, tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="holds no Ebay_train.txt"):
        sop.prepare_sop(data_dir, tmp_path)  # a folder without the lists
    os.remove(os.path.join(folder, "bicycle_final", "000001_0.JPG"))
    with pytest.raises(ValueError, match="1 images of Ebay_train.txt are not there"):
        sop.prepare_sop(data_dir, folder)
    with open(os.path.join(folder, "Ebay_test.txt"), "a") as f:
        f.write("99 0 1 fan_final/x.JPG\n")
    with pytest.raises(ValueError, match="Ebay_test.txt line 5: class_id must be"):
        sop.read_list(sop._Source(folder), "test")
    with pytest.raises(SystemExit, match="jaxmetric.data.sop: `source`"):
        sop.main([f"--source={tmp_path / 'nothing_here'}", f"--data_dir={data_dir}"])
