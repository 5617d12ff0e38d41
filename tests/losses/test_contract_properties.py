"""Property-based tests (hypothesis) of the loss cases of the registry.

For random batches (batch 1, 2 and 8; label layouts: all distinct, all
equal, one singleton class, two classes, random; scales 1e-6 to 1e6;
identical, zero and half-zero embeddings; random padding masks; see
tests/harness.py), in float32, bfloat16 and float16, at temperature 0.01
(the lowest asked for):

- the value and every gradient are finite;
- a batch with nothing valid (every row masked) gives 0 and a zero gradient,
  and so does a batch without a positive pair, for the losses whose formula
  has no term then;
- masked rows get exactly zero gradient.

Speed: XLA compiles each case once, for three fixed batch shapes (batch 1,
2 and 8) and every dtype inside that one function; hypothesis draws only
the data (NumPy, from a drawn seed) and every example fills all three
shapes. ``derandomize=True``: the same 200 examples on every run, so CI is
reproducible (``JAXMETRIC_PROPERTY_EXAMPLES=20`` while developing).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from tests.harness import PROPERTY_SETTINGS, property_batches, property_examples
from tests.losses import cases

FAMILY = "properties"
CASES = cases.for_family(FAMILY)

DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
TEMPERATURE = 0.01  # the lowest the contract asks for: the hardest case
F16_MAX = 1e4  # float16 holds at most 65504: its inputs are clipped to this


def partner(e):
    """The second element of pair i: a function of row i only, so masking
    row i masks the whole pair. Built in float32 and then cast like ``e``,
    so its gradient meets ``e``'s in float32."""
    return 0.5 * e[:, ::-1]


@functools.cache
def _compiled(case: cases.Case):
    """One jitted function per case, for all three batch shapes: value and
    gradients, stacked per shape. The largest batch runs in every dtype, the
    batches of 1 and 2 in float32 (compiling is what costs time here)."""

    def one(e, y, m, w, extra, dtype):
        def loss(e, w):
            second = partner(e)
            if dtype == jnp.float16:
                e, w, second = (jnp.clip(a, -F16_MAX, F16_MAX) for a in (e, w, second))
            return case.call(
                e.astype(dtype),
                second.astype(dtype),
                y,
                weights=w.astype(dtype),
                queue=extra["queue"],
                queue_mask=extra["queue_mask"],
                memory=extra["memory"],
                mask=m,
                temperature=TEMPERATURE,
            )

        value, (ge, gw) = jax.value_and_grad(loss, argnums=(0, 1))(e, w)
        return value, ge.astype(jnp.float32), gw.astype(jnp.float32)

    @jax.jit
    def run(batches):
        out = []
        for i, (e, y, m, w, extra) in enumerate(batches):
            dtypes = DTYPES if i == len(batches) - 1 else DTYPES[:1]
            results = [one(e, y, m, w, extra, dtype) for dtype in dtypes]
            out.append(tuple(jnp.stack(r) for r in zip(*results, strict=True)))
        return out

    return run


@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
@PROPERTY_SETTINGS
@given(example=property_examples())
def test_loss_properties(case, example):
    layout = example[0]
    batches = property_batches(example)
    results = jax.device_get(_compiled(case)(batches))
    for (_, y, m, _, _), (values, grads, wgrads) in zip(batches, results, strict=True):
        context = f"{case.name}: layout={layout}, mask={m.tolist()}, values={values.tolist()}"
        assert np.isfinite(values).all(), context
        assert np.isfinite(grads).all(), context
        assert np.isfinite(wgrads).all(), context
        # Masked rows get exactly zero gradient.
        assert not grads[:, ~m].any(), context
        # Nothing valid: no row, or (for the losses built on such terms) no
        # positive pair / no negative pair among the valid rows.
        valid_labels = y[m].tolist()
        has_positive = len(set(valid_labels)) < len(valid_labels)
        has_negative = len(set(valid_labels)) > 1
        nothing = (
            not m.any()
            or (case.zero_without_positive and not has_positive)
            or (case.zero_without_negative and not has_negative)
        )
        if nothing:
            assert not values.any(), context
            assert not grads.any(), context
            assert not wgrads.any(), context
