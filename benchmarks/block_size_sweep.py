"""The measurements behind block_size="auto": each loss of the NT-Xent family, dense
against tiles of 128 / 256 / 512 / 1024 rows and one tile of every row, at several
batch sizes.

Forward + backward (gradient with respect to the embeddings, f32, D = 128) in
one process; the minimum over 7 calls after 2 warm-up calls of the process's
CPU time (``time.process_time``, every thread), which moves much less than
the wall time when other jobs share the machine. No time is asserted
anywhere: JSON to benchmarks/results/block_size_sweep.json, a table on stdout.

    python benchmarks/block_size_sweep.py                 # every loss
    python benchmarks/block_size_sweep.py --only supcon   # one of them
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxmetric as jm

RESULTS = Path(__file__).resolve().parent / "results"
DIM = 128
BLOCKS = (None, 128, 256, 512, 1024)


def _cpu_ms(fn, x, reps: int = 7) -> float:
    for _ in range(2):
        jax.block_until_ready(fn(x))
    times = []
    for _ in range(reps):
        start = time.process_time()
        jax.block_until_ready(fn(x))
        times.append(time.process_time() - start)
    return min(times) * 1e3


def _cases(rng):
    """(loss, size label, rows, loss of (embeddings, block_size))."""
    for n in (4, 32, 128, 512, 2048):  # SimCLR: n pairs, 2n views

        def simclr(e, block_size, n=n):
            return jm.simclr_loss(e[:n], e[n:], block_size=block_size)

        yield "simclr", f"N={n} pairs", 2 * n, simclr
    for b in (64, 512, 2048, 8192):  # 64 classes
        y = jnp.asarray(rng.integers(0, 64, b), jnp.int32)
        for name, fn in (("ntxent", jm.ntxent_loss), ("supcon", jm.supcon_loss)):

            def labelled(e, block_size, fn=fn, y=y):
                return fn(e, y, block_size=block_size)

            yield name, f"B={b}", b, labelled
    for b, k in ((32, 4096), (256, 16384), (256, 65536), (1024, 16384)):
        keys = jnp.asarray(rng.normal(size=(b, DIM)), jnp.float32)
        queue = jnp.asarray(rng.normal(size=(k, DIM)), jnp.float32)

        def moco(e, block_size, keys=keys, queue=queue):
            return jm.moco_loss(e, keys, queue, block_size=block_size)

        yield "moco", f"B={b} K={k}", b, moco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="losses whose name contains this")
    parser.add_argument("--out", default=str(RESULTS / "block_size_sweep.json"))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    load_before = os.getloadavg()[0]
    print("| loss | size | " + " | ".join(str(b) for b in BLOCKS) + " | one tile | auto |")
    print("| --- | --- |" + " --- |" * (len(BLOCKS) + 2))
    for name, size, num_rows, loss in _cases(rng):
        if args.only not in name:
            continue
        x = jnp.asarray(rng.normal(size=(num_rows, DIM)), jnp.float32)
        times = {}
        for label, block_size in (
            *((str(b), b) for b in BLOCKS),
            ("one tile", num_rows),
            ("auto", "auto"),
        ):
            step = jax.jit(jax.value_and_grad(lambda e, b=block_size, f=loss: f(e, b)))
            times[label] = _cpu_ms(step, x)
        rows.append({"loss": name, "size": size, "cpu_ms": times})
        print(f"| {name} | {size} | " + " | ".join(f"{t:.2f}" for t in times.values()) + " |")
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_average": [load_before, os.getloadavg()[0]],
        "unit": "ms of process CPU time, min over 7 calls",
        "results": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(
        f"\nload average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
