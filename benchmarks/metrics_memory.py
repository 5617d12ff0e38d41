"""Time and peak memory of `jaxmetric.metrics.retrieval_metrics` at 20k x 20k.

Each case runs in its own process (``python benchmarks/metrics_memory.py
--case NAME``) under an address-space cap; the parent collects one JSON line
per case and writes ``benchmarks/results/metrics_memory.json``. Peak memory
growth is the process's peak resident set size (``VmHWM``, reset through
``/proc/self/clear_refs`` just before the call where the kernel allows it)
minus its resident set size before the call, so it counts the compilation
and every temporary of the blockwise evaluation, but not the input
embeddings nor JAX itself.

Usage:
  python benchmarks/metrics_memory.py            # every case, writes the JSON
  python benchmarks/metrics_memory.py --n 2000   # smaller, for a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "metrics_memory.json"
MEMORY_CAP_BYTES = 16 * 2**30  # Address space; the measured growth is the number that matters.

# name: (leave-one-out, metric, block_size, CPU devices the query blocks are split over)
CASES = {
    "loo_cosine_b128_1dev": (True, "cosine", 128, 1),
    "loo_cosine_b128_2dev": (True, "cosine", 128, 2),
    "query_vs_reference_euclidean_b128_2dev": (False, "euclidean", 128, 2),
}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Resets VmHWM to the current RSS (Linux >= 4.0).
        return True
    except OSError:
        return False


def run_case(name: str, n: int, dim: int, num_classes: int) -> dict:
    loo, metric, block_size, num_devices = CASES[name]
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", num_devices)
    import numpy as np

    from jaxmetric.metrics import retrieval_metrics

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(num_classes, dim)).astype(np.float32)
    labels = np.arange(n) % num_classes
    x = centers[labels] + 1.5 * rng.normal(size=(n, dim)).astype(np.float32)
    query = jax.device_put(x)
    query_labels = jax.device_put(labels)
    reference = reference_labels = None
    if not loo:
        ref_labels = rng.permutation(labels)
        reference = jax.device_put(
            centers[ref_labels] + 1.5 * rng.normal(size=(n, dim)).astype(np.float32)
        )
        reference_labels = jax.device_put(ref_labels)
    jax.block_until_ready((query, reference))

    rss_before = _status_kib("VmRSS")
    reset = _reset_peak()
    hwm_before = _status_kib("VmHWM")
    start = time.perf_counter()
    metrics = retrieval_metrics(
        query, query_labels, reference, reference_labels, metric=metric, block_size=block_size
    )
    seconds = time.perf_counter() - start  # One call, compilation included (about 1 s).
    peak_growth_kib = _status_kib("VmHWM") - (rss_before if reset else hwm_before)
    return {
        "case": name,
        "num_queries": n,
        "num_references": n,
        "dim": dim,
        "num_classes": num_classes,
        "leave_one_out": loo,
        "metric": metric,
        "block_size": block_size,
        "cpu_devices": num_devices,
        "seconds": round(seconds, 2),
        "rss_before_mib": round(rss_before / 1024, 1),
        "peak_rss_growth_mib": round(peak_growth_kib / 1024, 1),
        "peak_reset_via_clear_refs": reset,
        "metrics": metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), help="run one case in this process")
    parser.add_argument("--n", type=int, default=20_000, help="queries (and references)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=sorted(CASES))
    args = parser.parse_args()

    if args.case:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))
        print(json.dumps(run_case(args.case, args.n, args.dim, args.num_classes)))
        return

    results = []
    for name in args.cases:
        cmd = [sys.executable, __file__, "--case", name, "--n", str(args.n)]
        cmd += ["--dim", str(args.dim), "--num-classes", str(args.num_classes)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            tail = proc.stderr.strip().splitlines()[-3:]
            oom = "MemoryError" in proc.stderr or "RESOURCE_EXHAUSTED" in proc.stderr
            result = {"case": name, "error": "out of memory" if oom else "failed", "tail": tail}
        print(json.dumps({k: v for k, v in result.items() if k != "metrics"}), flush=True)
        results.append(result)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "retrieval_metrics time and peak RSS growth",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "results": results,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
