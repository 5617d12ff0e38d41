"""jaxmetric.data.sop: a tiny archive laid out as Stanford_Online_Products.zip,
prepared and read back by TFDS's own ``stanford_online_products`` builder."""

import os
import zipfile

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxmetric.data import sop, sources
from tests.datasets import write_fake_sop


def _zip(folder, path):
    with zipfile.ZipFile(path, "w") as z:
        for dirpath, _, files in os.walk(folder):
            for name in files:
                full = os.path.join(dirpath, name)
                z.write(full, os.path.relpath(full, os.path.dirname(folder)))
    return path


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_prepared_sop_is_tfds_stanford_online_products(tmp_path, kind):
    folder, written = write_fake_sop(tmp_path / "src")
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
    folder, _ = write_fake_sop(tmp_path / "src")
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
