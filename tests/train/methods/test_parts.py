"""The step building blocks of jaxmetric/train/methods/parts.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxmetric.train.methods.parts import momentum_schedule


def test_momentum_schedule_is_byols_cosine():
    # tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 (Grill et al. 2020, 3.2).
    steps = jnp.asarray([0, 25, 50, 100, 150], jnp.int32)
    got = np.asarray(momentum_schedule(0.99, 1.0, steps, 100))
    want = 1 - 0.01 * (np.cos(np.pi * np.minimum(np.asarray(steps), 100) / 100) + 1) / 2
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert got[0] == np.float32(0.99) and got[-1] == 1.0
