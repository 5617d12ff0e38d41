"""Time and peak memory of `jaxmetric.metrics.retrieval_metrics` at 20k x 20k.

Each case runs in its own process (``python benchmarks/metrics_memory.py
--case NAME``) under an address-space cap (`_subprocess_cases.py`, which
also defines the peak RSS growth: compilation and every temporary of the
evaluation, not the input embeddings nor JAX itself); the parent collects
one JSON line per case and writes ``benchmarks/results/metrics_memory.json``.

Usage:
  python benchmarks/metrics_memory.py            # every case, writes the JSON
  python benchmarks/metrics_memory.py --n 2000   # smaller, for a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _subprocess_cases as cases  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "metrics_memory.json"
MEMORY_CAP_BYTES = 16 * 2**30  # Address space; the measured growth is the number that matters.

# name: (leave-one-out, metric, block_size, CPU devices the query blocks are split over)
CASES = {
    "loo_cosine_b128_1dev": (True, "cosine", 128, 1),
    "loo_cosine_b128_2dev": (True, "cosine", 128, 2),
    "query_vs_reference_euclidean_b128_2dev": (False, "euclidean", 128, 2),
}


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

    rss_before = cases.status_kib("VmRSS")
    # One call, compilation included (about 1 s).
    metrics, seconds, peak_growth_mib = cases.measure(
        lambda: retrieval_metrics(
            query, query_labels, reference, reference_labels, metric=metric, block_size=block_size
        )
    )
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
        "peak_rss_growth_mib": round(peak_growth_mib, 1),
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
        cases.cap_memory(MEMORY_CAP_BYTES)
        print(json.dumps(run_case(args.case, args.n, args.dim, args.num_classes)))
        return

    results = []
    for name in args.cases:
        extra = ["--n", str(args.n), "--dim", str(args.dim), "--num-classes", str(args.num_classes)]
        result = cases.run_case(__file__, name, extra)
        print(json.dumps({k: v for k, v in result.items() if k != "metrics"}), flush=True)
        results.append(result)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "retrieval_metrics time and peak RSS growth",
        "machine": cases.machine(),
        "results": results,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
