"""Sharded == single device, for every case of the registry, under jax.shard_map and jax.pmap.

On 8 simulated CPU devices each loss is called with ``axis_name="data"`` on
the local shard of the outputs of a small model (tests/harness.py). It must
return, on every device, the value of the single-device loss on the
concatenated batch, and the gradient reaching the replicated parameters must
equal the single-device gradient: under shard_map with no collective on the
gradient, under pmap after the usual pmean. The parameters: the model, a
second branch for the second view (keys, targets, positives), the class
weights / proxies, and the model feeding the XBM memory (no gradient may
reach it through the memory). Classes of two, whose rows live on different
devices: every positive of an anchor sits on another device.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import pytest

import jaxmetric as jm
from tests.harness import MAPPERS, assert_sharded_equals_single, embed, sharded_data
from tests.losses import cases

FAMILY = "sharded"
CASES = cases.for_family(FAMILY)


@functools.cache
def model_loss(case: cases.Case):
    """fn(params, batch, replicated, axis_name): the case on the model's outputs."""

    def fn(params, batch, replicated, axis_name):
        x = batch["x"]
        first = embed(params, x[:, 0])
        second = embed(params, x[:, 1]) @ params["w3"]  # a second branch
        # The memory is produced from the replicated params (no gradient may
        # reach them through it), with labels shared with the batch.
        memory = jm.MemoryQueue(
            embeddings=embed(params, replicated["memory_x"]),
            labels=replicated["memory_labels"],
            valid=replicated["memory_valid"],
            pointer=jnp.zeros((), jnp.int32),
        )
        return case.call(
            first,
            second,
            batch["labels"],
            weights=params["classes"],
            queue=replicated["queue"],
            queue_mask=replicated["memory_valid"],
            memory=memory,
            mask=batch["mask"],
            axis_name=axis_name,
        )

    return fn


def nonzero_grads(case: cases.Case) -> tuple[str, ...]:
    """The parameters the case's gradient must reach (the others it may miss)."""
    names = ["w1", "w2"]
    if case.uses_second and case.grad_second:
        names.append("w3")
    if case.kind == cases.PARAMS:
        names.append("classes")
    return tuple(names)


@pytest.mark.parametrize("mapper", MAPPERS)
@pytest.mark.parametrize("masked", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize("case", CASES, ids=cases.ids(CASES))
def test_sharded_equals_single_device(case, masked, mapper):
    assert_sharded_equals_single(
        model_loss(case),
        sharded_data(seed=len(case.name) + masked, masked=masked),
        mapper,
        nonzero_grads=nonzero_grads(case),
        positive_value=case.nonnegative,
        rtol=case.grad_rtol,
    )
