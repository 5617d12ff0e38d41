"""Input-pipeline throughput: jaxmetric's grain + OpenCV pipeline against a
PyTorch DataLoader (PIL) on the same JPEG bytes, the time to open a split,
and the trainer's images/s against the pipeline's own.

Writes (once; reused while present) two TFDS ArrayRecord datasets under
``--data_dir``, without TensorFlow:

- ``input_bench_jpeg_20000``: 20,000 synthetic JPEGs (quality 90) whose sides
  vary in 240-288 px independently, 10 classes. The content is smooth colour
  fields (bicubic-upsampled random low-resolution images), a finer texture,
  filled shapes and lines and mild noise: it compresses like a photograph,
  not like white noise.
- ``input_bench_jpeg_20000_x5``: the same 20,000 JPEGs' bytes five times
  (100,000 records), for opening a split against decoding it.

Then, each case in its own subprocess (load average recorded beside it):

1. ``jaxmetric``: ``input_pipeline.batches`` of ``sources.tfds(...)``,
   decode + random-resized crop to 224 + flip (``Transform("views", 224, 1)``),
   batch 64, 1 and 2 grain worker processes.
2. ``pytorch``: ``torch.utils.data.DataLoader(batch_size=64, shuffle=True)``,
   1 and 2 workers, over a Dataset that reads record i's JPEG bytes from the
   same ArrayRecord files (``tfds.data_source`` with ``SkipDecoding``, opened
   lazily in each worker), decodes with PIL, crops with torchvision's
   ``RandomResizedCrop`` algorithm (``get_params`` + PIL crop + bilinear
   resize, copied here: torchvision is not installed) and flips.
3. One process, no workers: per-image cost of each step (OpenCV decode and
   crop, PIL decode and crop) on a few hundred records.
4. Opening: ``sources.tfds`` (reads every label without decoding) on the
   100,000 records, with the files evicted from the page cache
   (``posix_fadvise(DONTNEED)`` on them only) and cached, against decoding
   all 100,000 images with ``jaxmetric.data.images.decode`` in one process;
   the ratio, and both extrapolated by record count to ImageNet's 1,281,167.
5. The trainer: SimCLR (``train_and_evaluate``) on the 20,000 JPEGs with a
   tiny 2-D CNN, ``data.workers=2``, wall time per step after warm-up,
   against the pipeline alone making the same batches (2 views at the
   trainer's size, 2 workers) in the same run.

Warm-up batches (and the workers' start-up) are excluded; each throughput
case then runs for ``--seconds`` (15 s; ``--quick``: tiny datasets and
about 1 s). JSON (with the machine and library versions) goes to ``--out``;
a Markdown table is printed.

    .venv-bench/bin/python benchmarks/input_pipeline.py            # make bench-input
    .venv-bench/bin/python benchmarks/input_pipeline.py --quick    # checks that it runs

PyTorch comes from the benchmark venv only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import io
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT / "workdirs" / "bench-input-data"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "input_pipeline.json"
QUICK_OUT = ROOT / "benchmarks" / "results" / "input_pipeline_quick.json"

IMAGENET_TRAIN = 1_281_167
NUM_CLASSES = 10
JPEG_QUALITY = 90
SIDES = (240, 288)  # each side drawn independently, inclusive
REPEATS = 5  # the open-vs-decode dataset: the JPEGs' bytes this many times
CROP = 224
BATCH = 64
VERSION = "1.0.0"
CASE_TIMEOUT_S = 3600.0  # any case, however it hangs
# torchvision.transforms.RandomResizedCrop's defaults (jaxmetric's too).
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
LIBRARIES = (
    "jaxmetric",
    "jax",
    "jaxlib",
    "grain",
    "tensorflow-datasets",
    "array-record",
    "opencv-python-headless",
    "numpy",
    "pillow",
    "torch",
)


@dataclasses.dataclass(frozen=True)
class Sizes:
    records: int  # the JPEG dataset
    seconds: float  # timed work per throughput case
    warmup: int  # batches excluded after the first
    per_image: int  # records of the one-process breakdown
    train_size: int  # SimCLR view size (trainer and its pipeline-alone twin)
    train_batch: int
    train_steps: int
    train_warmup: int  # steps excluded (compilation, workers starting)
    # A case that makes no batch (no training step: the first one compiles)
    # for this long is recorded as stalled.
    stall_s: float
    train_stall_s: float


FULL = Sizes(
    records=20_000,
    seconds=15.0,
    warmup=5,
    per_image=500,
    train_size=64,
    train_batch=128,
    train_steps=40,
    train_warmup=10,
    stall_s=120.0,
    train_stall_s=300.0,
)
QUICK = Sizes(
    records=640,
    seconds=1.0,
    warmup=2,
    per_image=50,
    train_size=64,
    train_batch=32,
    train_steps=8,
    train_warmup=3,
    stall_s=60.0,
    train_stall_s=180.0,
)


# --------------------------------------------------------------------------- datasets


def jpeg_name(records: int) -> str:
    return f"input_bench_jpeg_{records}"


def repeated_name(records: int) -> str:
    return f"{jpeg_name(records)}_x{REPEATS}"


def synthetic_jpeg(rng: np.random.Generator) -> bytes:
    """One JPEG (quality 90) of random height and width in ``SIDES``: a
    bicubic-upsampled random 3-8 px colour field, a finer upsampled texture,
    2-7 filled circles, rectangles or lines, and Gaussian noise (sigma 5)."""
    import cv2

    h, w = (int(v) for v in rng.integers(SIDES[0], SIDES[1] + 1, size=2))
    gh, gw = (int(v) for v in rng.integers(3, 9, size=2))
    low = rng.integers(0, 256, (gh, gw, 3), dtype=np.uint8)
    base = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    th, tw = (int(v) for v in rng.integers(24, 64, size=2))
    texture = rng.normal(0.0, 18.0, (th, tw, 3)).astype(np.float32)
    base += cv2.resize(texture, (w, h), interpolation=cv2.INTER_CUBIC)
    image = np.clip(base, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 8))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.integers(10, min(h, w) // 2))
        kind = int(rng.integers(3))
        if kind == 0:
            cv2.circle(image, (x, y), s, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            corner = (x + s, y + int(rng.integers(10, 80)))
            cv2.rectangle(image, (x, y), corner, colour, -1, cv2.LINE_AA)
        else:
            end = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(1, 6)), cv2.LINE_AA)
    noisy = image + rng.normal(0.0, 5.0, image.shape).astype(np.float32)
    image = np.clip(noisy, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return encoded.tobytes()


def _version_dir(data_dir: Path, name: str) -> Path:
    return data_dir / name / VERSION


def _prepared_records(data_dir: Path, name: str) -> int | None:
    """The train split's record count of a prepared dataset, None if absent."""
    if not (_version_dir(data_dir, name) / "dataset_info.json").is_file():
        return None
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder_from_directory(str(_version_dir(data_dir, name)))
        return int(builder.info.splits["train"].num_examples)
    except Exception:  # An incomplete or foreign folder: written again.
        return None


def write_jpeg_dataset(
    data_dir: Path, name: str, examples: Callable[[], Iterator[tuple[int, dict[str, Any]]]]
) -> None:
    """Writes ``data_dir/name/1.0.0`` (ArrayRecord): ``image`` (a
    ``tfds.features.Image`` of JPEG bytes stored as given: no TensorFlow is
    needed to encode them) and ``label`` (10 classes), one ``train`` split."""
    import tensorflow_datasets as tfds

    from jaxmetric.data import prepare

    if (data_dir / name).exists():
        shutil.rmtree(data_dir / name)
    features = {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
    }
    # jaxmetric.data.prepare's writer: it keeps TFDS's shuffle in memory
    # (splits over 1 GB would need TensorFlow).
    prepare._write(
        str(data_dir),
        name,
        features,
        {"train": examples},
        "Synthetic JPEGs of benchmarks/input_pipeline.py.",
    )


def _read_bytes(data_dir: Path, name: str, chunk: int = 1000) -> Iterator[tuple[bytes, int]]:
    """(JPEG bytes, label) of every record of a prepared dataset, in order."""
    import tensorflow_datasets as tfds

    source = tfds.data_source(
        name,
        split="train",
        data_dir=str(data_dir),
        decoders={"image": tfds.decode.SkipDecoding()},
        download=False,
    )
    for start in range(0, len(source), chunk):
        for r in source.__getitems__(range(start, min(start + chunk, len(source)))):
            yield r["image"], int(r["label"])


def prepare_datasets(data_dir: Path, records: int) -> dict[str, Any]:
    """Writes the JPEG dataset and its 5x copy unless they are there already."""
    data_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    name = jpeg_name(records)
    if _prepared_records(data_dir, name) != records:
        print(f"writing {records} JPEGs to {data_dir / name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()

        def jpegs():
            rng = np.random.default_rng(0)
            for i in range(records):
                yield i, {"image": synthetic_jpeg(rng), "label": int(rng.integers(NUM_CLASSES))}

        write_jpeg_dataset(data_dir, name, jpegs)
        out["wrote_jpeg_s"] = time.perf_counter() - t0
    big = repeated_name(records)
    # A JPEG dataset written again (say, a changed generator) stales its copy.
    if "wrote_jpeg_s" in out or _prepared_records(data_dir, big) != records * REPEATS:
        print(f"writing {records * REPEATS} records to {data_dir / big} ...", file=sys.stderr)
        t0 = time.perf_counter()

        def repeated():
            for rep in range(REPEATS):
                for i, (image, label) in enumerate(_read_bytes(data_dir, name)):
                    yield rep * records + i, {"image": image, "label": label}

        write_jpeg_dataset(data_dir, big, repeated)
        out["wrote_repeated_s"] = time.perf_counter() - t0
    sizes = [len(b) for b, _ in _read_bytes(data_dir, name)]
    out.update(
        jpeg={
            "name": name,
            "records": len(sizes),
            "mean_bytes": float(np.mean(sizes)),
            "files_bytes": _files_bytes(data_dir, name),
        },
        repeated={
            "name": big,
            "records": records * REPEATS,
            "files_bytes": _files_bytes(data_dir, big),
        },
    )
    return out


def _record_files(data_dir: Path, name: str) -> list[Path]:
    return sorted(p for p in _version_dir(data_dir, name).iterdir() if "array_record" in p.name)


def _files_bytes(data_dir: Path, name: str) -> int:
    return sum(p.stat().st_size for p in _record_files(data_dir, name))


def _cache_files(data_dir: Path, name: str) -> None:
    """Reads the dataset's files once, so every case finds them in the page cache."""
    for path in _record_files(data_dir, name):
        with open(path, "rb") as f:
            while f.read(1 << 23):
                pass


def _evict_files(data_dir: Path, name: str) -> None:
    """Drops this dataset's files (only them) from the page cache."""
    for path in _record_files(data_dir, name):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- measuring


class Watchdog:
    """Ends this case's process with a result saying so when no progress
    (``kick``) is seen for ``limit`` seconds: a hung pipeline is recorded,
    not waited on (the parent then kills the case's worker processes)."""

    def __init__(self, limit: float, what: str) -> None:
        self.limit, self.what, self.last = limit, what, time.monotonic()
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def kick(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(1.0):
            if time.monotonic() - self.last > self.limit:
                error = f"stalled: no {self.what} for {self.limit:.0f} s"
                print(_MARK + json.dumps({"error": error, "stalled": True}), flush=True)
                os._exit(3)


def _throughput(
    fetch: Callable[[], Any], p: dict[str, Any], check: Callable[[Any], None]
) -> dict[str, Any]:
    """Images/s of ``fetch`` (one batch per call) after the first batch and
    ``p["warmup"]`` more, over at least ``p["seconds"]`` and 3 batches. A
    batch that takes over ``p["stall_s"]`` ends the case as stalled."""
    batch, seconds, warmup = p["batch"], p["seconds"], p["warmup"]
    dog = Watchdog(p["stall_s"], "batch")
    t0 = time.perf_counter()
    check(fetch())
    first = time.perf_counter() - t0
    for _ in range(warmup):
        dog.kick()
        fetch()
    n, t0 = 0, time.perf_counter()
    while True:
        dog.kick()
        fetch()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= 3:
            break
    dog.stop()
    return {
        "images_per_s": n * batch / elapsed,
        "batches": n,
        "batch": batch,
        "seconds": elapsed,
        "first_batch_s": first,
        "warmup_batches": warmup,
    }


def _check_batch(shape: tuple[int, ...]) -> Callable[[Any], None]:
    def check(x: Any) -> None:
        x = np.asarray(x)
        if x.shape != shape or x.dtype != np.uint8:
            raise AssertionError(f"batch {x.dtype}{list(x.shape)}, expected uint8{list(shape)}")

    return check


def case_jaxmetric(p: dict[str, Any]) -> dict[str, Any]:
    """jaxmetric's pipeline: ``views`` random-resized crops to ``size`` + flips."""
    from jaxmetric.data import input_pipeline, sources

    t0 = time.perf_counter()
    split = sources.tfds(p["name"], "train", data_dir=p["data_dir"])
    open_s = time.perf_counter() - t0
    batch, size, views = p["batch"], p["size"], p["views"]
    it = input_pipeline.batches(
        split,
        input_pipeline.shuffled_indices(len(split), batch, seed=0),
        seed=0,
        transform=input_pipeline.Transform("views", size, views),
        workers=p["workers"],
        prefetch=2,
    )
    try:
        out = _throughput(lambda: next(it)["x"], p, _check_batch((batch, views, size, size, 3)))
    finally:
        it.close()
    return {**out, "open_s": open_s}


def random_resized_crop_params(
    width: int, height: int, scale=SCALE, ratio=RATIO
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` (torchvision 0.2x), with
    torch's generator: (top, left, h, w)."""
    import torch

    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            return i, j, h, w
    # Fallback to central crop.
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    return (height - h) // 2, (width - w) // 2, h, w


def pil_resized_crop(img, box: tuple[int, int, int, int], size: int):
    """torchvision's ``F.resized_crop`` on a PIL image: crop, then bilinear
    resize (Pillow's, antialiased when it shrinks)."""
    from PIL import Image

    top, left, h, w = box
    return img.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)


class TorchJpegs:
    """A map-style PyTorch Dataset over the ArrayRecord files: record i's
    JPEG bytes (``tfds.data_source`` with ``SkipDecoding``, opened lazily in
    each worker), PIL decode, RandomResizedCrop, horizontal flip (p=0.5)."""

    def __init__(self, name: str, data_dir: str, size: int = CROP) -> None:
        self.name, self.data_dir, self.size = name, data_dir, size
        self._source = None
        self._len = len(self._open())
        self._source = None  # Each worker opens its own.

    def _open(self):
        if self._source is None:
            import tensorflow_datasets as tfds

            self._source = tfds.data_source(
                self.name,
                split="train",
                data_dir=self.data_dir,
                decoders={"image": tfds.decode.SkipDecoding()},
                download=False,
            )
        return self._source

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        record = self._open()[int(i)]
        img = Image.open(io.BytesIO(record["image"])).convert("RGB")
        box = random_resized_crop_params(img.width, img.height)
        img = pil_resized_crop(img, box, self.size)
        if torch.rand(1).item() < 0.5:  # RandomHorizontalFlip
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.asarray(img)), int(record["label"])


def case_pytorch(p: dict[str, Any]) -> dict[str, Any]:
    import torch

    dataset = TorchJpegs(p["name"], p["data_dir"])
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=p["batch"],
        num_workers=p["workers"],
        shuffle=True,
        persistent_workers=p["workers"] > 0,
    )

    def endless():
        while True:
            yield from loader

    batches = endless()
    return _throughput(lambda: next(batches)[0], p, _check_batch((p["batch"], CROP, CROP, 3)))


def case_per_image(p: dict[str, Any]) -> dict[str, Any]:
    """Milliseconds per image of each step, in this one process (OpenCV
    single-threaded, as in the workers)."""
    import torch
    from PIL import Image

    from jaxmetric.data import images

    records = itertools.islice(_read_bytes(Path(p["data_dir"]), p["name"]), p["records"])
    data = [b for b, _ in records]
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    timings = {k: 0.0 for k in ("cv2_decode", "cv2_crop_flip", "pil_decode", "pil_crop_flip")}
    for b in data:
        t0 = time.perf_counter()
        x = images.decode(b)
        t1 = time.perf_counter()
        images.train_views(rng, x, CROP, 1)
        t2 = time.perf_counter()
        img = Image.open(io.BytesIO(b)).convert("RGB")
        t3 = time.perf_counter()
        view = pil_resized_crop(img, random_resized_crop_params(img.width, img.height), CROP)
        if torch.rand(1).item() < 0.5:
            view = view.transpose(Image.FLIP_LEFT_RIGHT)
        np.asarray(view)
        t4 = time.perf_counter()
        for key, dt in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            timings[key] += dt
    return {"records": len(data), **{f"{k}_ms": 1e3 * v / len(data) for k, v in timings.items()}}


def case_open(p: dict[str, Any]) -> dict[str, Any]:
    """``sources.tfds`` on the repeated dataset: first call in a fresh
    process (after evicting its files from the page cache when ``cold``, and
    deleting the label index that a first open writes when ``first``), then
    two more calls."""
    import tensorflow_datasets  # noqa: F401  (the import is not part of opening)

    from jaxmetric.data import sources

    data_dir = Path(p["data_dir"])
    if p["first"]:  # The split's first open ever: no label index beside it yet.
        for index in _version_dir(data_dir, p["name"]).glob("jaxmetric-labels-*"):
            index.unlink()
    if p["cold"]:
        _evict_files(data_dir, p["name"])
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        split = sources.tfds(p["name"], "train", data_dir=str(data_dir))
        times.append(time.perf_counter() - t0)
    return {
        "records": len(split),
        "first_s": times[0],
        "again_s": statistics.median(times[1:]),
        "cold": p["cold"],
        "first": p["first"],
    }


def case_decode(p: dict[str, Any]) -> dict[str, Any]:
    """Reads (SkipDecoding, batched) and decodes every record of the
    repeated dataset (or its first ``sample``) with ``images.decode``."""
    import tensorflow_datasets as tfds

    from jaxmetric.data import images

    source = tfds.data_source(
        p["name"],
        split="train",
        data_dir=p["data_dir"],
        decoders={"image": tfds.decode.SkipDecoding()},
        download=False,
    )
    total = len(source)
    n = min(p["sample"], total) if p["sample"] else total
    read_s = decode_s = 0.0
    pixels = 0
    for start in range(0, n, 1000):
        t0 = time.perf_counter()
        records = source.__getitems__(range(start, min(start + 1000, n)))
        t1 = time.perf_counter()
        for r in records:
            pixels += images.decode(r["image"]).shape[0]
        decode_s += time.perf_counter() - t1
        read_s += t1 - t0
    scale = total / n
    return {
        "records": total,
        "decoded": n,
        "extrapolated": n < total,
        "decode_s": decode_s * scale,
        "read_s": read_s * scale,
        "decode_ms_per_image": 1e3 * decode_s / n,
        "mean_height": pixels / n,
    }


def case_trainer(p: dict[str, Any]) -> dict[str, Any]:
    """SimCLR with a tiny 2-D CNN on the JPEG dataset: wall time per step
    (a hook after every step) after ``warmup`` steps."""
    from jaxmetric.train import config as config_lib
    from jaxmetric.train import trainer

    c = config_lib.base_config()
    c.method = "simclr"
    c.dataset.name = "tfds"
    c.dataset.tfds_name = p["name"]
    c.dataset.data_dir = p["data_dir"]
    c.dataset.test_split = "train"  # no evaluation is run
    c.augment.kind = "simclr_image"
    c.augment.simclr_image.size = p["size"]
    c.model.encoder = "cnn2d"
    c.model.cnn_widths = (8, 16)
    c.model.use_bn = False
    c.model.head_hidden = 64
    c.model.embed_dim = 32
    c.data.workers = p["workers"]
    c.data.prefetch = 2
    c.batch_size = p["batch"]
    c.num_steps = p["steps"]
    c.log_every = p["steps"]
    c.eval_every = 0
    c.checkpoint_every = 0
    stamps: list[float] = []  # perf_counter after each step, in the hook

    dog = Watchdog(p["stall_s"], "training step")

    def hook(done: int) -> None:
        stamps.append(time.perf_counter())
        dog.kick()

    # Measurement only: how long the loop waits in next(data iterator), by
    # wrapping the iterator the trainer makes (a private function; skipped
    # if it is gone).
    waits: list[float] = []
    make = getattr(trainer, "_make_iterator", None)
    if make is not None:
        trainer._make_iterator = lambda config, train: _TimedIterator(make(config, train), waits)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-input-train-") as workdir:
        trainer.train_and_evaluate(c, workdir, run_eval=False, progress=False, hooks=[hook])
    dog.stop()
    total = time.perf_counter() - t0
    warm = p["warmup"]
    steps = np.diff(stamps[warm - 1 :])
    timed = stamps[-1] - stamps[warm - 1]
    # waits[k] is the batch of step k + 1, fetched while step k runs.
    timed_waits = waits[warm : len(stamps)]
    return {
        "data_wait_fraction": sum(timed_waits) / timed if waits else None,
        "data_wait_ms_median": 1e3 * float(np.median(timed_waits)) if waits else None,
        "images_per_s": len(steps) * p["batch"] / timed,
        "timed_steps": len(steps),
        "warmup_steps": warm,
        "step_ms_median": 1e3 * float(np.median(steps)),
        "step_ms_max": 1e3 * float(np.max(steps)),
        "first_steps_s": stamps[warm - 1] - t0,
        "total_s": total,
        "batch": p["batch"],
        "encoder": "cnn2d, widths (8, 16), no BN",
    }


class _TimedIterator:
    """The trainer's data iterator, timing each ``next``."""

    def __init__(self, it: Any, waits: list[float]) -> None:
        self._it, self._waits = it, waits

    def __iter__(self):
        return self

    def __next__(self) -> Any:
        t0 = time.perf_counter()
        item = next(self._it)
        self._waits.append(time.perf_counter() - t0)
        return item

    def __getattr__(self, name: str) -> Any:
        return getattr(self._it, name)


CASES = {
    "jaxmetric": case_jaxmetric,
    "pytorch": case_pytorch,
    "per_image": case_per_image,
    "open": case_open,
    "decode": case_decode,
    "trainer": case_trainer,
}


# --------------------------------------------------------------------------- the run


def _run_case(case: str, params: dict[str, Any], retries: int = 0) -> dict[str, Any]:
    """One case in a fresh subprocess (its own process group, killed at the
    end with any worker it left); its result, the load average before and
    after it, its wall time and the peak RSS of its processes together.
    A case that stalls or fails is run again up to ``retries`` times (the
    result keeps the errors of the failed runs)."""
    result = _run_once(case, params)
    failed = []
    while "error" in result and len(failed) < retries:
        failed.append(result["error"])
        print(f"    {result['error']}; again", file=sys.stderr)
        result = _run_once(case, params)
    if failed:
        result["failed_runs"] = failed
    return result


def _run_once(case: str, params: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case]
    cmd += ["--params", json.dumps(params)]
    label = f"{case} " + " ".join(f"{k}={v}" for k, v in params.items() if k in _SHOWN)
    print(f"  {label} ...", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, start_new_session=True)
        peak = 0
        while proc.poll() is None and time.perf_counter() - t0 < CASE_TIMEOUT_S:
            peak = max(peak, _group_rss(proc.pid))
            time.sleep(0.5)
        _kill_group(proc.pid)
        proc.wait()
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = [ln for ln in stdout.splitlines() if ln.startswith(_MARK)]
    if not lines:
        tail = stderr.strip().splitlines()[-40:]
        print("\n".join(tail[-15:]), file=sys.stderr)
        raised = [ln for ln in tail if _RAISED.match(ln)]
        what = raised[-1] if raised else (tail[-1] if tail else "")
        if wall >= CASE_TIMEOUT_S:
            what = f"killed after {CASE_TIMEOUT_S:.0f} s"
        return {"error": f"exit status {proc.returncode}: {what}", "stderr_tail": tail}
    result = json.loads(lines[-1][len(_MARK) :])
    result.update(
        load_before=load,
        load_after=os.getloadavg()[0],
        wall_s=wall,
        peak_rss_mib=peak / 2**20,
    )
    rate = result.get("images_per_s")
    done = result["error"] if "error" in result else f"{wall:.1f} s"
    print(f"    {rate:.0f} images/s" if rate else f"    {done}", file=sys.stderr)
    return result


def _group_processes(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # pgrp
            pids.append(int(entry))
    return pids


def _group_rss(pgid: int) -> int:
    """Bytes resident in the process group's processes together."""
    total = 0
    for pid in _group_processes(pgid):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def _kill_group(pgid: int) -> None:
    """Kills what is left of a case's process group (its own processes only)."""
    if _group_processes(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


_MARK = "RESULT "
_RAISED = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b")
_SHOWN = ("name", "workers", "size", "views", "batch", "cold", "sample", "steps")


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg(),
    }


SECTIONS = ("throughput", "per_image", "open", "trainer")


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    seconds = args.seconds or sizes.seconds
    data_dir = Path(args.data_dir).resolve()
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    if only - set(SECTIONS):
        raise SystemExit(f"--only: unknown sections {sorted(only - set(SECTIONS))}; {SECTIONS}")
    out: dict[str, Any] = {
        "quick": args.quick,
        "machine": machine(),
        "settings": {**dataclasses.asdict(sizes), "seconds": seconds, "crop": CROP},
    }
    print("datasets ...", file=sys.stderr, flush=True)
    out["datasets"] = prepare_datasets(data_dir, sizes.records)
    name, big = jpeg_name(sizes.records), repeated_name(sizes.records)
    _cache_files(data_dir, name)
    common = {
        "data_dir": str(data_dir),
        "seconds": seconds,
        "warmup": sizes.warmup,
        "stall_s": sizes.stall_s,
    }
    retries = args.retries

    if "throughput" in only:
        rows = []
        for workers in (1, 2):
            p = {**common, "name": name, "batch": BATCH, "workers": workers}
            rows.append(
                {
                    "pipeline": "jaxmetric",
                    "workers": workers,
                    **_run_case("jaxmetric", {**p, "size": CROP, "views": 1}, retries),
                }
            )
            rows.append(
                {"pipeline": "pytorch", "workers": workers, **_run_case("pytorch", p, retries)}
            )
        out["throughput"] = rows
    if "per_image" in only:
        out["per_image"] = _run_case(
            "per_image", {"data_dir": str(data_dir), "name": name, "records": sizes.per_image}
        )
    if "open" in only:
        p = {"data_dir": str(data_dir), "name": big}
        # The split's first open (reads every label, writes the label index),
        # then a later open on a host whose page cache does not hold the
        # files, then one that does.
        first = _run_case("open", {**p, "cold": True, "first": True})
        cold = _run_case("open", {**p, "cold": True, "first": False})
        warm = _run_case("open", {**p, "cold": False, "first": False})
        decode = _run_case("decode", {**p, "sample": args.decode_sample})
        opening: dict[str, Any] = {"first": first, "cold": cold, "cached": warm, "decode": decode}
        if not any("error" in r for r in (first, cold, warm, decode)):
            scale = IMAGENET_TRAIN / decode["records"]
            opening["ratio_first"] = first["first_s"] / decode["decode_s"]
            opening["ratio_cached"] = warm["first_s"] / decode["decode_s"]
            opening["ratio_cold"] = cold["first_s"] / decode["decode_s"]
            opening["imagenet_extrapolated"] = {
                "records": IMAGENET_TRAIN,
                "open_first_s": first["first_s"] * scale,
                "open_cached_s": warm["first_s"] * scale,
                "open_cold_s": cold["first_s"] * scale,
                "decode_s": decode["decode_s"] * scale,
                "note": "by record count, at this dataset's image and record size "
                "(ImageNet's JPEGs are larger: decoding grows with it, the label index does not)",
            }
        out["open"] = opening
    if "trainer" in only:
        p = {
            **common,
            "name": name,
            "batch": sizes.train_batch,
            "size": sizes.train_size,
            "workers": 2,
        }
        pipe = _run_case("jaxmetric", {**p, "views": 2}, retries)
        train = _run_case(
            "trainer",
            {
                **p,
                "steps": sizes.train_steps,
                "warmup": sizes.train_warmup,
                "stall_s": sizes.train_stall_s,
            },
            retries,
        )
        result: dict[str, Any] = {"pipeline": pipe, "trainer": train}
        if "error" not in pipe and "error" not in train:
            result["ratio"] = train["images_per_s"] / pipe["images_per_s"]
        out["trainer"] = result
    out["load_average_end"] = os.getloadavg()
    return out


def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _secs(x: float) -> str:
    return f"{x:.2f} s" if x < 10 else f"{x:,.0f} s"


def _failures(row: dict[str, Any]) -> str:
    """ " (N failed runs: ...)" for a case that stalled or failed before its result."""
    failed = row.get("failed_runs", ())
    if not failed:
        return ""
    stalled = sum(e.startswith("stalled") for e in failed)
    return f" (after {len(failed)} failed run{'s' * (len(failed) > 1)}, {stalled} stalled)"


def _rate(row: dict[str, Any]) -> str:
    """images/s | peak RSS cells of a case (or its error), with its stalled runs."""
    note = _failures(row)
    if "error" in row:
        return f"{row['error']}{note} | "
    return f"{row['images_per_s']:,.0f}{note} | {row['peak_rss_mib']:,.0f} MiB"


def markdown(r: dict[str, Any]) -> str:
    m, lines = r["machine"], []
    d = r["datasets"]["jpeg"]
    lines.append(
        f"Machine: {m['cpu']}, {m['usable_cpus']} CPUs; {m['date']}; load average at the start "
        f"{m['load_average'][0]:.2f}. Dataset: {d['records']:,} JPEGs (quality {JPEG_QUALITY}, "
        f"sides {SIDES[0]}-{SIDES[1]} px), {d['mean_bytes'] / 1024:.1f} KiB each on average."
        + (" QUICK RUN (tiny sizes): not a measurement." if r["quick"] else "")
    )
    if "throughput" in r:
        lines += [
            "",
            f"**Decode + random-resized crop to {CROP} + flip, batch {BATCH}** (images/s)",
            "",
            "| pipeline | workers | images/s | vs PyTorch | first batch | peak RSS | load avg |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        torch_rate = {
            row["workers"]: row.get("images_per_s")
            for row in r["throughput"]
            if row["pipeline"] == "pytorch"
        }
        for row in r["throughput"]:
            label = {
                "jaxmetric": "jaxmetric (grain, OpenCV)",
                "pytorch": "PyTorch DataLoader (PIL)",
            }[row["pipeline"]]
            note = _failures(row)
            if "error" in row:
                lines.append(f"| {label} | {row['workers']} | {row['error']}{note} | | | | |")
                continue
            rate, ref = row["images_per_s"], torch_rate.get(row["workers"])
            vs = f"{rate / ref:.2f}x" if row["pipeline"] == "jaxmetric" and ref else "-"
            lines.append(
                f"| {label} | {row['workers']} | {_fmt(rate)}{note} | {vs} | "
                f"{_secs(row['first_batch_s'])} | {row['peak_rss_mib']:,.0f} MiB | "
                f"{row['load_before']:.1f}-{row['load_after']:.1f} |"
            )
    if "per_image" in r and "error" not in r["per_image"]:
        q = r["per_image"]
        lines += [
            "",
            f"**Per image, one process** ({q['records']} records, ms)",
            "",
            "| path | decode | crop + resize + flip | total |",
            "| --- | --- | --- | --- |",
        ]
        for label, key in (("OpenCV (jaxmetric)", "cv2"), ("PIL (torchvision's algorithm)", "pil")):
            dec, crop = q[f"{key}_decode_ms"], q[f"{key}_crop_flip_ms"]
            lines.append(f"| {label} | {dec:.2f} | {crop:.2f} | {dec + crop:.2f} |")
    o = r.get("open")
    if o and "ratio_cached" in o:
        dec, im = o["decode"], o["imagenet_extrapolated"]
        how = (
            f"a measured sample of {dec['decoded']:,}, extrapolated"
            if dec["extrapolated"]
            else "all of them, measured"
        )
        lines += [
            "",
            f"**Opening a split of {dec['records']:,} records** (`sources.tfds`: every label, "
            "no image decoded)",
            "",
            f"| | {dec['records']:,} records | ImageNet ({IMAGENET_TRAIN:,}), extrapolated |",
            "| --- | --- | --- |",
            f"| first open (reads every label, writes the label index) | "
            f"{_secs(o['first']['first_s'])} | {_secs(im['open_first_s'])} |",
            f"| later open, files in the page cache | {_secs(o['cached']['first_s'])} | "
            f"{_secs(im['open_cached_s'])} |",
            f"| later open, files evicted from the page cache | {_secs(o['cold']['first_s'])} | "
            f"{_secs(im['open_cold_s'])} |",
            f"| decode every image, one process ({how}) | {_secs(dec['decode_s'])} | "
            f"{_secs(im['decode_s'])} |",
            f"| open / decode | first {100 * o['ratio_first']:.1f}%; later "
            f"{100 * o['ratio_cached']:.2f}% (cached), {100 * o['ratio_cold']:.2f}% (evicted) | |",
        ]
    t = r.get("trainer")
    if t:
        pipe, train = t["pipeline"], t["trainer"]
        s = r["settings"]
        lines += [
            "",
            f"**SimCLR: 2 views at {s['train_size']} px, batch {s['train_batch']}, 2 workers** "
            "(images/s; one image = one example, two views)",
            "",
            "| | images/s | peak RSS |",
            "| --- | --- | --- |",
            f"| pipeline alone | {_rate(pipe)} |",
        ]
        what = "trainer"
        if "error" not in train:
            what += (
                f" ({train['encoder']}; {train['timed_steps']} steps after "
                f"{train['warmup_steps']}, median step {train['step_ms_median']:.0f} ms"
            )
            if train.get("data_wait_fraction") is not None:
                what += f", {100 * train['data_wait_fraction']:.0f}% of it waiting for data"
            what += ")"
        lines.append(f"| {what} | {_rate(train)} |")
        if "ratio" in t:
            lines.append(f"| trainer / pipeline | {100 * t['ratio']:.0f}% | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Tiny sizes: checks that it runs.")
    parser.add_argument("--data_dir", default=str(DEFAULT_DATA_DIR), help="Datasets (reused).")
    parser.add_argument("--out", default=None, help="JSON results (default: benchmarks/results/).")
    parser.add_argument("--seconds", type=float, default=0.0, help="Timed work per case.")
    parser.add_argument(
        "--decode_sample",
        type=int,
        default=0,
        help="Decode only this many of the 100,000 records and extrapolate (0: all).",
    )
    parser.add_argument(
        "--retries", type=int, default=1, help="Runs again a case that failed or stalled."
    )
    parser.add_argument("--only", default="", help=f"Comma-separated sections of {SECTIONS}.")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        result = CASES[args.case](json.loads(args.params))
        print(_MARK + json.dumps(result), flush=True)
        return
    results = run(args)
    out = Path(args.out) if args.out else (QUICK_OUT if args.quick else DEFAULT_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\nJSON: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
