"""Multi-process data parallelism: two processes on localhost
(``jax.distributed.initialize``, CPU collectives over gloo), two CPU devices
each, run SimCLR train steps on one global batch, each process feeding only
its own rows (``jax.make_array_from_process_local_data``, as the trainer
does); the loss and the parameters equal those of one process with four
devices on the same data.

This file is also the worker: ``python tests/train/test_multiprocess.py PORT
PROCESS_ID OUT.npz``.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

STEPS = 3
BATCH = 16
LENGTH = 40


def _config():
    from jaxmetric.train import base_config

    c = base_config()
    c.method = "simclr"
    c.batch_size = BATCH
    # Small, so that three processes compile it quickly; BatchNorm in the
    # head makes its statistics global over both processes.
    c.model.encoder = "mlp"
    c.model.mlp_hidden = (16,)
    c.model.head_bn = True
    c.model.head_hidden = 16
    c.model.embed_dim = 8
    c.augment.mnist1d.noise = 0.05
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-2
    return c


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(STEPS, BATCH, LENGTH)).astype(np.float32)


def _train(process_index: int, process_count: int):
    """SimCLR steps on every device of every process; returns (losses,
    flat params) as NumPy on this process."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxmetric.data.input_pipeline import _process_rows
    from jaxmetric.train import create_train_state, make_mesh, make_train_step, validate_config
    from jaxmetric.train.optim import make_optimizer
    from jaxmetric.train.trainer import _global_batch

    config = _config()
    mesh = make_mesh(4)
    validate_config(config, mesh.size, process_count)
    tx, _ = make_optimizer(config.optimizer, config.batch_size, config.num_steps)
    graphdef, state = create_train_state(config, (LENGTH,), tx)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    step = make_train_step(config, graphdef, tx, mesh)
    rows = _process_rows(BATCH, process_index, process_count)
    losses = []
    for x in _data():
        local = x[rows]
        xs, ys = _global_batch(mesh, local, np.zeros(len(local), np.int32))
        state, metrics = step(state, xs, ys)
        losses.append(float(metrics["loss"]))
    leaves = jax.tree.leaves(state.params) + jax.tree.leaves(state.batch_stats)
    return np.asarray(losses), [np.asarray(leaf) for leaf in leaves]


def _worker(port: int, process_index: int, out: str) -> None:
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_num_cpu_devices", 2)
    jax.distributed.initialize(f"127.0.0.1:{port}", 2, process_index)
    assert jax.device_count() == 4 and jax.local_device_count() == 2
    losses, leaves = _train(process_index, 2)
    np.savez(out, losses=losses, **{f"leaf{i}": v for i, v in enumerate(leaves)})
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # Each worker sets its own device count; conftest's compile flags stay.
    env["XLA_FLAGS"] = " ".join(
        f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f
    )
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(port), str(i), str(tmp_path / f"p{i}.npz")],
            cwd=pathlib.Path(__file__).resolve().parents[2],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out

    # The single-process run: 4 of this process's 8 CPU devices.
    losses, leaves = _train(0, 1)
    for i in range(2):
        got = np.load(tmp_path / f"p{i}.npz")
        np.testing.assert_allclose(got["losses"], losses, rtol=1e-5, atol=1e-6)
        assert len(got.files) == len(leaves) + 1
        for j, leaf in enumerate(leaves):
            np.testing.assert_allclose(got[f"leaf{j}"], leaf, atol=1e-5, err_msg=f"leaf {j}")
    # The parameters moved: the comparison is not between two initial states.
    assert np.isfinite(losses).all() and losses[0] != losses[-1]


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
