"""The memory queue (jaxmetric.MemoryQueue, init_queue, enqueue) and the EMA update.

The queue is used through its top-level names (``jm.MemoryQueue``,
``jm.init_queue``, ``jm.enqueue``, ``jm.ema_update``), whichever module holds it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import jaxmetric as jm


def test_enqueue_wraps_around_like_a_ring_buffer():
    size, dim, batch = 12, 3, 4
    queue = jm.init_queue(size, dim)
    assert not np.asarray(queue.valid).any()
    reference = np.zeros((size, dim), np.float32)
    reference_labels = np.full(size, -1)
    pointer = 0
    rng = np.random.default_rng(0)
    enqueue = jax.jit(jm.enqueue)
    for step in range(5):  # 20 keys into 12 slots: wraps after step 3.
        keys = rng.normal(size=(batch, dim)).astype(np.float32)
        labels = np.arange(batch) + 10 * step
        queue = enqueue(queue, keys, labels)
        for row in range(batch):  # Plain ring buffer, one slot at a time.
            reference[pointer] = keys[row]
            reference_labels[pointer] = labels[row]
            pointer = (pointer + 1) % size
        np.testing.assert_array_equal(np.asarray(queue.embeddings), reference)
        np.testing.assert_array_equal(np.asarray(queue.labels), reference_labels)
        assert int(queue.pointer) == pointer
    assert np.asarray(queue.valid).all()
    # After 5 writes of 4 into 12 slots, the oldest survivor is step 2's batch.
    assert sorted(np.asarray(queue.labels) // 10) == [2] * 4 + [3] * 4 + [4] * 4


def test_enqueue_masked_rows_become_invalid_slots():
    queue = jm.init_queue(8, 2, key=jax.random.key(0))
    assert np.asarray(queue.valid).all()
    queue = jm.enqueue(queue, jnp.ones((4, 2)), mask=jnp.array([True, False, True, False]))
    np.testing.assert_array_equal(
        np.asarray(queue.valid), [True, False, True, False, True, True, True, True]
    )


def test_queue_size_must_be_a_multiple_of_the_global_batch():
    queue = jm.init_queue(10, 4)
    with pytest.raises(ValueError, match="multiple of the global batch"):
        jm.enqueue(queue, jnp.zeros((4, 4)))
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    queue = jm.init_queue(16, 4)  # Divisible by the local batch 4, not by 8 x 4.
    mapped = jax.shard_map(
        lambda q, k: jm.enqueue(q, k, axis_name="data"),
        mesh=mesh,
        in_specs=(P(), P("data")),
        out_specs=P(),
    )
    with pytest.raises(ValueError, match="K=16.*global batch 32"):
        mapped(queue, jnp.zeros((32, 4)))


def test_sharded_enqueue_equals_single_device():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    queue = jm.init_queue(64, 4, key=jax.random.key(1))
    keys = jax.random.normal(jax.random.key(2), (16, 4))
    labels = jnp.arange(16)
    mapped = jax.jit(
        jax.shard_map(
            lambda q, k, y: jm.enqueue(q, k, y, axis_name="data"),
            mesh=mesh,
            in_specs=(P(), P("data"), P("data")),
            out_specs=P(),
        )
    )
    sharded = mapped(queue, keys, labels)
    single = jm.enqueue(queue, keys, labels)
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(sharded.pointer) == 16
    # Under pmap every replica holds the same queue.
    pmapped = jax.pmap(
        lambda q, k, y: jm.enqueue(q, k, y, axis_name="data"),
        axis_name="data",
        in_axes=(None, 0, 0),
    )(queue, keys.reshape(8, 2, 4), labels.reshape(8, 2))
    for device in range(8):
        np.testing.assert_array_equal(np.asarray(pmapped.embeddings[device]), single.embeddings)


def test_enqueue_stores_no_gradient():
    queue = jm.init_queue(4, 2)

    def through_queue(keys):
        return jnp.sum(jm.enqueue(queue, keys).embeddings)

    np.testing.assert_array_equal(jax.grad(through_queue)(jnp.ones((4, 2))), 0.0)


@pytest.mark.parametrize("momentum", [0.0, 0.9, 0.999, 1.0])
def test_ema_update_matches_formula(momentum):
    rng = np.random.default_rng(0)
    target = {"w": rng.normal(size=(3, 2)), "b": {"c": rng.normal(size=(2,))}}
    online = jax.tree.map(lambda a: a + rng.normal(size=a.shape), target)
    updated = jm.ema_update(target, online, momentum)
    for t, o, u in zip(
        jax.tree.leaves(target), jax.tree.leaves(online), jax.tree.leaves(updated), strict=True
    ):
        np.testing.assert_allclose(u, momentum * t + (1 - momentum) * o, rtol=1e-6)
    # The same as optax's EMA with that step size, and usable under jit with a
    # traced momentum (for a schedule).
    traced = jax.jit(jm.ema_update)(target, online, jnp.float32(momentum))
    for a, b in zip(jax.tree.leaves(traced), jax.tree.leaves(updated), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    via_optax = optax.incremental_update(online, target, 1 - momentum)
    for a, b in zip(jax.tree.leaves(via_optax), jax.tree.leaves(updated), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_ema_update_rejects_bad_momentum():
    with pytest.raises(ValueError, match="momentum"):
        jm.ema_update({"w": 1.0}, {"w": 2.0}, 1.5)


def test_moco_loss_with_a_queue_state():
    """One MoCo step's bookkeeping: loss against the queue, then enqueue the keys."""
    queue = jm.init_queue(16, 8, key=jax.random.key(0))
    q, k = jax.random.normal(jax.random.key(1), (2, 4, 8))
    loss = jm.moco_loss(q, k, queue.embeddings, queue_mask=queue.valid)
    queue = jm.enqueue(queue, jm.l2_normalize(k))
    assert np.isfinite(float(loss)) and int(queue.pointer) == 4
    np.testing.assert_allclose(
        np.asarray(queue.embeddings[:4]), np.asarray(jm.l2_normalize(k)), rtol=1e-6
    )


# ----------------------------------------------------------------------------
# Bad input: a ValueError (or TypeError) at trace time naming the argument.
# ----------------------------------------------------------------------------

EMB = jnp.ones((6, 4))
LABELS = jnp.array([0, 0, 1, 1, 2, 2])
# (call, the argument the message must name in backticks)
NAMED_ARGUMENT_CASES = [
    (lambda: jm.init_queue(0, 4), "size"),
    (lambda: jm.init_queue(4, 0), "dim"),
    (lambda: jm.enqueue(jm.init_queue(6, 4), jnp.ones(4)), "keys"),
    (lambda: jm.enqueue(jm.init_queue(6, 3), EMB), "keys"),
    (lambda: jm.enqueue(jm.init_queue(12, 4), EMB, LABELS.astype(jnp.float32)), "labels"),
    (lambda: jm.enqueue(jm.init_queue(12, 4), EMB, LABELS[:5]), "labels"),
    (lambda: jm.enqueue(jm.init_queue(12, 4), EMB, mask=jnp.ones(4, bool)), "mask"),
    (lambda: jm.enqueue(jm.init_queue(12, 4), EMB, axis_name="data"), "axis_name"),
    (lambda: jm.ema_update({"w": EMB}, {"w": EMB}, momentum=1.5), "momentum"),
    (lambda: jm.ema_update({"w": EMB}, {"w": EMB}, momentum=-0.1), "momentum"),
]


@pytest.mark.parametrize(
    "call, argument",
    [
        pytest.param(call, argument, id=f"queue-{i}-{argument}")
        for i, (call, argument) in enumerate(NAMED_ARGUMENT_CASES)
    ],
)
def test_rejects_bad_input_naming_the_argument(call, argument):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        call()


def test_queue_arguments():
    with pytest.raises(ValueError, match="`size` must be > 0"):
        jm.init_queue(0, 4)
    with pytest.raises(ValueError, match="`keys` have dimension 4"):
        jm.enqueue(jm.init_queue(6, 3), EMB)


def test_enqueue_axis_name_outside_a_mapped_context():
    with pytest.raises(ValueError, match="`axis_name`='batch' is not bound"):
        jm.enqueue(jm.init_queue(6, 4), EMB, axis_name="batch")
