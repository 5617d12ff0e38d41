"""The package installs light: the core needs jax, numpy and optax; the trainer is an extra.

- ``pyproject.toml``: the core requirements hold none of the trainer's
  packages, the ``[train]`` extra holds them;
- with every ``[train]``-only module blocked, the kernels (losses, metrics,
  search, miners, the queue) import and run, and each trainer piece raises an
  ``ImportError`` that says ``pip install 'jaxmetric[train]'``;
- ``python -m build`` makes an sdist (with the LICENSE) and, from it, a wheel
  whose core ``Requires-Dist`` is the core list; the wheel, installed alone,
  is the whole package.
"""

from __future__ import annotations

import email
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

CORE = {"jax", "numpy", "optax"}
# Distributions only the trainer needs, and the modules they provide.
TRAIN_ONLY = {
    "tensorflow-datasets": "tensorflow_datasets",
    "grain": "grain",
    "scikit-learn": "sklearn",
    "matplotlib": "matplotlib",
    "orbax-checkpoint": "orbax",
    "tensorboardx": "tensorboardX",
    "mnist1d": "mnist1d",
    "flax": "flax",
    "opencv-python-headless": "cv2",
    "ml-collections": "ml_collections",
    "absl-py": "absl",
    "tqdm": "tqdm",
}
# absl-py is also a dependency of optax (a core requirement), so it is only
# [train]-only as a direct requirement: it cannot be blocked.
BLOCKED = sorted(set(TRAIN_ONLY.values()) - {"absl"})
TRAINER_PIECES = (
    "jaxmetric.train",
    "jaxmetric.data",
    "jaxmetric.models",
    "jaxmetric.plots",
    "jaxmetric.main",
)


def _name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip()).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def test_core_requirements_are_the_kernels_only():
    core = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert core == CORE
    assert not core & set(TRAIN_ONLY)
    assert not any("opencv" in name for name in core)


def test_train_extra_holds_the_trainer_stack_and_dev_holds_train():
    extras = PYPROJECT["project"]["optional-dependencies"]
    train = {_name(r) for r in extras["train"]}
    assert set(TRAIN_ONLY) <= train
    assert "jaxmetric[train]" in extras["dev"]
    assert {"build", "setuptools", "pytest"} <= {_name(r) for r in extras["dev"]}


def test_license_is_the_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.splitlines()) == 202  # The text of apache.org/licenses/LICENSE-2.0.txt.


# Run in a fresh interpreter that has only the core install: the kernels run,
# the trainer pieces name the extra. (The README's venv measurement ran this
# code in a real core-only venv.)
CORE_CHECK = textwrap.dedent(
    """
    import importlib, inspect, os, sys, tempfile

    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxmetric as jm
    from jaxmetric import distances, metrics, mining, parallel, search

    TRAIN_ONLY = {train_only!r}
    TRAINER_PIECES = {trainer_pieces!r}

    emb = jax.random.normal(jax.random.key(0), (16, 8))
    labels = jnp.arange(16) % 4
    z1, z2 = emb[:8], emb[8:]
    queue = jm.init_queue(16, 8, key=jax.random.key(1))
    queue = jm.enqueue(queue, z2, labels[:8])
    # [C, D] weights / proxies (12 rows: also 4 classes x 3 sub-centres) and
    # soft_triple_loss's centres (4 classes x its 10 per class).
    class_rows = jax.random.normal(jax.random.key(4), (12, 8))
    centers = jax.random.normal(jax.random.key(5), (40, 8))
    # Every loss, called with its positional (array) arguments by name.
    arguments = {{
        "embeddings": emb, "labels": labels, "weights": class_rows, "proxies": class_rows,
        "centers": centers, "memory": queue, "z1": z1, "z2": z2, "support": queue.embeddings,
        "queries": z1, "keys": z2, "queue": queue.embeddings, "anchors": z1,
        "positives": z2, "predictions": z1, "targets": z2,
    }}
    calls = {{}}
    for name in jm.losses.__all__:
        loss = getattr(jm, name)
        required = [
            p.name
            for p in inspect.signature(loss).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
        ]
        unknown = [p for p in required if p not in arguments]
        assert not unknown, (name, unknown)
        calls[name] = (loss, required)
    # One program for all of them: one compile instead of one per operation.
    values = jax.jit(
        lambda a: {{n: loss(*(a[p] for p in req)) for n, (loss, req) in calls.items()}}
    )(arguments)
    values["simclr_grad"] = jnp.sum(jax.grad(jm.simclr_loss)(z1, z2))
    values["distances"] = jnp.sum(distances.pairwise_distances(emb))
    for name, value in values.items():
        assert np.isfinite(float(value)), (name, value)
    assert float(values["triplet_margin_loss"]) > 0 and float(values["simclr_loss"]) > 0
    pos, neg = mining.pair_masks(labels)
    assert pos.shape == (16, 16) and parallel.axis_size(None) == 1

    target = jm.ema_update({{"w": jnp.zeros(3)}}, {{"w": jnp.ones(3)}}, 0.9)
    np.testing.assert_allclose(target["w"], 0.1, rtol=1e-6)
    assert int(queue.pointer) == 8 and bool(queue.valid.all())

    scores = metrics.retrieval_metrics(emb, labels)
    assert 0.0 <= scores["precision_at_1"] <= 1.0, scores
    assert 0.0 <= metrics.knn_accuracy(emb, labels, emb, labels, k=3) <= 1.0
    assert 0.0 <= metrics.linear_probe_accuracy(emb, labels, emb, labels, max_steps=20) <= 1.0
    assert metrics.kmeans(emb, 4, key=jax.random.key(2)).labels.shape == (16,)
    dist, idx = search.knn(emb[:4], emb, 3)
    assert idx.shape == (4, 3) and (np.asarray(idx[:, 0]) == np.arange(4)).all()
    index = search.Index(8)
    index.add(emb, labels)
    with tempfile.TemporaryDirectory() as tmp:
        index.save(os.path.join(tmp, "gallery.npz"))
        loaded = search.Index.load(os.path.join(tmp, "gallery.npz"))
    _, found, found_labels = loaded.search(emb[:2], 3)
    assert found.shape == (2, 3) and found_labels.shape == (2, 3)

    for piece in TRAINER_PIECES:
        try:
            importlib.import_module(piece)
        except ImportError as err:
            assert "pip install 'jaxmetric[train]'" in str(err), (piece, str(err))
        else:
            raise AssertionError(piece + " imported without the [train] extra")
    augment = importlib.import_module("jaxmetric.augment")  # The views are pure JAX.
    assert augment.mnist1d_view(jax.random.key(3), jnp.ones(40)).shape == (40,)
    try:
        augment.augment_config()
    except ImportError as err:
        assert "pip install 'jaxmetric[train]'" in str(err), str(err)
    else:
        raise AssertionError("augment_config ran without ml_collections")

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in TRAIN_ONLY)
    assert not loaded, loaded
    print("core check passed:", jm.__file__)
    """
).format(train_only=BLOCKED, trainer_pieces=TRAINER_PIECES)

# Prepended to CORE_CHECK: every [train]-only module becomes uninstallable.
BLOCKER = textwrap.dedent(
    """
    import sys

    class _BlockTrainExtra:
        blocked = {blocked!r}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
            return None

    already = sorted(m for m in sys.modules if m.split(".")[0] in _BlockTrainExtra.blocked)
    assert not already, already
    sys.meta_path.insert(0, _BlockTrainExtra())
    """
).format(blocked=BLOCKED)


def _run(code: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **kwargs.pop("env", {})}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, **kwargs
    )


def test_kernels_import_and_run_without_the_train_extra(tmp_path):
    proc = _run(BLOCKER + CORE_CHECK, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "core check passed" in proc.stdout


def test_the_blocker_blocks():
    # The check above would pass vacuously if the blocker let a module through.
    proc = _run(BLOCKER + "import flax")
    assert proc.returncode != 0 and "blocked" in proc.stderr
    proc = _run(BLOCKER + "import jaxmetric.train")
    assert proc.returncode != 0
    assert "pip install 'jaxmetric[train]'" in proc.stderr
    assert "flax" in proc.stderr


def _copy_source(dest: pathlib.Path) -> pathlib.Path:
    # Built from a copy: setuptools writes build/ and *.egg-info next to the
    # sources, and a stale build/ of the checkout must not leak into the wheel.
    src = dest / "src"
    shutil.copytree(
        ROOT / "jaxmetric", src / "jaxmetric", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    return src


def test_build_makes_an_sdist_and_a_wheel_that_installs(tmp_path):
    src = _copy_source(tmp_path)
    dist = tmp_path / "dist"
    # sdist first, then the wheel from the unpacked sdist (build's default), so
    # the wheel also proves the sdist complete. No isolation: no network.
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sdist,) = dist.glob("jaxmetric-*.tar.gz")
    (wheel,) = dist.glob("jaxmetric-*.whl")

    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"LICENSE", "pyproject.toml", "README.md", "jaxmetric/__init__.py"} <= names

    sources = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "jaxmetric").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    with zipfile.ZipFile(wheel) as whl:
        files = set(whl.namelist())
        (metadata_name,) = [n for n in files if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(whl.read(metadata_name))
    assert sources <= files, sorted(sources - files)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in files)
    requires = metadata.get_all("Requires-Dist")
    core = {_name(r) for r in requires if "extra ==" not in r}
    assert core == CORE, requires
    assert {_name(r) for r in requires if 'extra == "train"' in r} >= set(TRAIN_ONLY)
    assert metadata["License-Expression"] == "Apache-2.0"

    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + ["--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # jax and numpy from this venv; jaxmetric from the installed wheel only.
    code = (
        "import jaxmetric, jaxmetric.train.methods, jaxmetric.losses._tiled_ntxent\n"
        f"assert jaxmetric.__file__.startswith({str(target)!r}), jaxmetric.__file__\n"
        "import jax.numpy as jnp\n"
        "print(float(jaxmetric.simclr_loss(jnp.eye(4), jnp.eye(4))))\n"
    )
    proc = _run(code, cwd=tmp_path, env={"PYTHONPATH": str(target)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
