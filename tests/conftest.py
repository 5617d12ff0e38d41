"""Test set-up: 8 simulated CPU devices and float64 available on request."""

import os

# Keep XLA from grabbing both cores per device thread pool on CI's 2-core box.
os.environ.setdefault("XLA_FLAGS", "")

import jax  # noqa: E402

# Must run before any JAX operation creates the backend.
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")
