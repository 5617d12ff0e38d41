"""Test set-up: 8 simulated CPU devices and fast XLA compiles."""

import os
import tempfile

# Most of the suite's time is XLA compiling many small programs that then run
# once or a few times. On CPU these flags cut that compile time 3-5x (eight
# loss value-and-grads: 4.4 s -> 0.9 s), and the suite's programs run no
# slower for it (the property tests, which run each program 200 times: 175 s
# -> 79 s of test time). No test depends on them: each compares with a
# reference or with another run under the same flags, and the subprocesses
# some tests start inherit them.
#   - LLVM at -O0 instead of -O2;
#   - the loop emitters instead of the MLIR fusion emitters, which compile
#     slower, also the ResNet recipe steps of test_configs when two workers
#     share the cores (189 s against 228 s for its 17 recipe steps);
#   - each program as one LLVM module instead of parallel splits, whose set-up
#     costs more than it saves on two cores.
_FAST_COMPILE_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_parallel_codegen_split_count=1",
)
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *_FAST_COMPILE_FLAGS]).strip()
# Most of the suite's time is XLA compiling. A persistent compilation cache
# shared by the xdist workers and by the subprocesses some tests start (the
# crash-safety, two-process and notebook tests run the same programs in
# fresh processes) compiles each program once. Keys are the HLO, the
# compile options and the jax version, so a stale entry is never reused.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxmetric-test-xla-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402

# Must run before any JAX operation creates the backend.
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")


import importlib.util  # noqa: E402

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Deselects the ``torch`` tests (PyTorch / PML parity) where torch is not
    installed, so a run in ``.venv`` neither skips nor fails them: ``make
    test`` runs them in ``.venv-bench`` (``-m torch``; docs/testing.md)."""
    if importlib.util.find_spec("torch") is not None:
        return
    deselected = [item for item in items if item.get_closest_marker("torch")]
    if deselected:
        items[:] = [item for item in items if not item.get_closest_marker("torch")]
        config.hook.pytest_deselected(items=deselected)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    """A data_dir holding ``variable_size_images``, a real TFDS ArrayRecord
    dataset (tests/datasets.py), written once per test process."""
    from tests.datasets import write_variable_size_images

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    write_variable_size_images(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def jpeg_dir(tmp_path_factory):
    """A data_dir holding ``jpeg_images`` (encoded JPEGs of varying sizes,
    tests/datasets.py), written once per test process."""
    from tests.datasets import write_jpeg_images

    data_dir = str(tmp_path_factory.mktemp("jpeg"))
    write_jpeg_images(data_dir)
    return data_dir
