"""Test set-up: 8 simulated CPU devices and float64 available on request."""

import os
import tempfile

# Keep XLA from grabbing both cores per device thread pool on CI's 2-core box.
os.environ.setdefault("XLA_FLAGS", "")
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
