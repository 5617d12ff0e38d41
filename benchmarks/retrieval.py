"""Retrieval at benchmark scale: jaxmetric against faiss-cpu and pytorch-metric-learning.

Three comparisons, side by side in one run, each case in its own subprocess
under a memory cap (`_subprocess_cases.py`):

- ``metrics``: leave-one-out P@1, R-precision and MAP@R over N x 128
  clustered embeddings (100 classes, so R = N / 100 - 1), N = 10k, 20k, 60k:
  `jaxmetric.metrics.retrieval_metrics` on one CPU device and on two
  (``jax_num_cpu_devices=2``: the query blocks split over both cores), and
  PML 2.9's ``AccuracyCalculator(k="max_bin_count")`` on faiss-cpu; and
  60,502 embeddings with classes shaped like Stanford Online Products' test
  split (2-12 images a product), where R is small.
  Embeddings are L2-normalised, so PML's default Euclidean faiss search and
  jaxmetric's cosine give the same ranking; the values are compared.
- ``knn``: 10k queries against 100k references, k = 10, cosine:
  `jaxmetric.search.knn` (compiled, automatic blocks) against faiss
  ``IndexFlatIP`` on normalised rows; the neighbour sets are compared.
- ``knn_1m``: 10k queries against 1M references through
  `jaxmetric.search.Index` (gallery put on the device once, queries in
  blocks) and faiss ``IndexFlatIP``; time and peak RSS growth over the state
  with the gallery built.

Times: the first call (jaxmetric compiles then) and the best of the next
ones. Two threads for every library (the machine's cores). Writes
``benchmarks/results/retrieval.json`` and prints a Markdown table.

    python benchmarks/retrieval.py                 # every case
    python benchmarks/retrieval.py --only knn      # cases whose name contains it
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _subprocess_cases as cases  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "retrieval.json"
MEMORY_CAP_BYTES = 20 * 2**30
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
DIM = 128
NUM_CLASSES = 100
K = 10
REPEATS = 2

CASES: dict[str, dict] = {}
for _n in (10_000, 20_000, 60_000):
    for _impl in ("jaxmetric_1dev", "jaxmetric_2dev", "pml"):
        CASES[f"metrics_{_n // 1000}k_{_impl}"] = {"kind": "metrics", "impl": _impl, "n": _n}
# Stanford Online Products' test split: 60,502 images of 11,316 products (2-12 each).
for _impl in ("jaxmetric_1dev", "jaxmetric_2dev", "pml"):
    CASES[f"metrics_sop_{_impl}"] = {"kind": "metrics", "impl": _impl, "n": 60_502, "sop": True}
for _impl in ("jaxmetric_1dev", "faiss"):
    CASES[f"knn_100k_{_impl}"] = {"kind": "knn", "impl": _impl, "n": 100_000}
for _impl in ("jaxmetric_1dev", "faiss"):
    CASES[f"knn_1m_{_impl}"] = {"kind": "knn", "impl": _impl, "n": 1_000_000}


def _normalized(x):
    import numpy as np

    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def sop_labels(n: int, rng):
    """Labels shaped like Stanford Online Products' test split: classes of
    2 to 12 rows, 5.35 on average (60,502 / 11,316)."""
    import numpy as np

    sizes = np.minimum(2 + rng.poisson(3.35, n // 2), 12)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n) + 1]
    return rng.permutation(np.repeat(np.arange(len(sizes)), sizes)[:n])


def clustered(n: int, seed: int = 0, sop: bool = False):
    """N x 128 embeddings (L2-normalised) and labels: 100 equal classes, or
    with ``sop`` classes shaped like Stanford Online Products'."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = sop_labels(n, rng) if sop else np.arange(n) % NUM_CLASSES
    centers = rng.normal(size=(int(labels.max()) + 1, DIM)).astype(np.float32)
    x = centers[labels] + 1.5 * rng.normal(size=(n, DIM)).astype(np.float32)
    return _normalized(x), labels


def uniform_sphere(n: int, seed: int):
    import numpy as np

    return _normalized(np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32))


def _timed(fn) -> tuple[object, float, float, float]:
    """(result, first call s, best later call s, peak RSS growth MiB over all)."""
    import time

    first_out, first, growth = cases.measure(fn)
    later = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        later.append(time.perf_counter() - start)
    return first_out, first, min(later), growth


def _jax(devices: int):
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", devices)
    return jax


def metrics_case(impl: str, n: int, sop: bool = False) -> dict:
    x, labels = clustered(n, sop=sop)
    if impl.startswith("jaxmetric"):
        jax = _jax(2 if impl.endswith("2dev") else 1)
        from jaxmetric.metrics import retrieval_metrics

        xd, yd = jax.device_put(x), jax.device_put(labels)
        out, first, best, growth = _timed(lambda: retrieval_metrics(xd, yd, metric="cosine"))
        values = {k: out[k] for k in ("precision_at_1", "r_precision", "map_at_r")}
    else:
        import faiss
        import torch
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        torch.set_num_threads(THREADS)
        faiss.omp_set_num_threads(THREADS)
        calc = AccuracyCalculator(
            include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
            k="max_bin_count",
        )
        xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
        out, first, best, growth = _timed(lambda: calc.get_accuracy(xt, yt))
        values = {
            "precision_at_1": out["precision_at_1"],
            "r_precision": out["r_precision"],
            "map_at_r": out["mean_average_precision_at_r"],
        }
    return {"first_s": first, "seconds": best, "peak_rss_growth_mib": growth, "values": values}


def knn_case(impl: str, n: int) -> dict:
    import numpy as np

    queries, reference = uniform_sphere(10_000, 1), uniform_sphere(n, 2)
    if impl.startswith("jaxmetric"):
        jax = _jax(1)
        if n <= 100_000:
            from jaxmetric.search import knn

            search = jax.jit(lambda q, r: knn(q, r, K))
            qd, rd = jax.device_put(queries), jax.device_put(reference)

            def run():
                return np.asarray(jax.block_until_ready(search(qd, rd))[1])
        else:
            from jaxmetric.search import Index

            index = Index(DIM)
            index.add(reference)
            del reference

            def run():
                return index.search(queries, K)[1]
    else:
        import faiss

        faiss.omp_set_num_threads(THREADS)
        index = faiss.IndexFlatIP(DIM)
        index.add(reference)
        del reference

        def run():
            return index.search(queries, K)[1]

    idx, first, best, growth = _timed(run)
    # Saved for the parent's agreement check (the neighbours of 200 queries).
    return {
        "first_s": first,
        "seconds": best,
        "peak_rss_growth_mib": growth,
        "neighbours_head": np.asarray(idx)[:200].tolist(),
    }


def child(name: str) -> dict:
    cases.cap_memory(MEMORY_CAP_BYTES)
    spec = CASES[name]
    if spec["kind"] == "metrics":
        out = metrics_case(spec["impl"], spec["n"], spec.get("sop", False))
    else:
        out = knn_case(spec["impl"], spec["n"])
    return {
        "case": name,
        **spec,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()},
    }


def _overlap(a: list, b: list) -> float:
    return sum(len(set(x) & set(y)) for x, y in zip(a, b, strict=True)) / sum(len(x) for x in a)


def _table(results: list[dict]) -> str:
    by = {r["case"]: r for r in results}
    lines = [
        "| comparison | jaxmetric, 1 device | 2 CPU devices | peer | peer's time | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def sec(r):
        return f"{r['seconds']:.2f} s" if r and "seconds" in r else (r or {}).get("error", "-")

    for n in ("10k", "20k", "60k", "sop"):
        one, two, peer = (
            by.get(f"metrics_{n}_{i}") for i in ("jaxmetric_1dev", "jaxmetric_2dev", "pml")
        )
        ratio = "-"
        if one and two and peer and all("seconds" in r for r in (one, two, peer)):
            ratio = (
                f"{one['seconds'] / peer['seconds']:.2f}x / {two['seconds'] / peer['seconds']:.2f}x"
            )
        what = "SOP-shaped, N = 60,502" if n == "sop" else f"N = {n}, 100 classes"
        row = [f"retrieval metrics, {what}", sec(one), sec(two), "PML + faiss", sec(peer), ratio]
        lines.append("| " + " | ".join(row) + " |")
    for n in ("100k", "1m"):
        one, peer = by.get(f"knn_{n}_jaxmetric_1dev"), by.get(f"knn_{n}_faiss")
        ratio = "-"
        if one and peer and "seconds" in one and "seconds" in peer:
            ratio = f"{one['seconds'] / peer['seconds']:.2f}x"
        mem = ""
        if one and "peak_rss_growth_mib" in one:
            mem = f" ({one['peak_rss_growth_mib'] / 1024:.2f} GiB peak growth)"
        row = [f"knn, 10k x {n}, k = {K}", sec(one) + mem, "-", "faiss IndexFlatIP", sec(peer)]
        lines.append("| " + " | ".join([*row, ratio]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), help="run one case in this process")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(child(args.case)))
        return

    results = []
    for name in CASES:
        if args.only not in name:
            continue
        result = cases.run_case(__file__, name)
        print(json.dumps({k: v for k, v in result.items() if k != "neighbours_head"}), flush=True)
        results.append(result)
    by = {r["case"]: r for r in results}
    agreement = {}
    for n in ("100k", "1m"):
        ours, theirs = by.get(f"knn_{n}_jaxmetric_1dev"), by.get(f"knn_{n}_faiss")
        if ours and theirs and "neighbours_head" in ours and "neighbours_head" in theirs:
            agreement[f"knn_{n}_neighbour_overlap"] = _overlap(
                ours["neighbours_head"], theirs["neighbours_head"]
            )
    for n in ("10k", "20k", "60k", "sop"):
        ours, theirs = by.get(f"metrics_{n}_jaxmetric_1dev"), by.get(f"metrics_{n}_pml")
        if ours and theirs and "values" in ours and "values" in theirs:
            agreement[f"metrics_{n}_max_abs_difference"] = max(
                abs(ours["values"][k] - theirs["values"][k]) for k in ours["values"]
            )
    for r in results:
        r.pop("neighbours_head", None)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "retrieval: jaxmetric vs faiss-cpu and PML",
        "machine": cases.machine(),
        "threads": THREADS,
        "results": results,
        "agreement": agreement,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(agreement, indent=2))
    print(_table(results))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
