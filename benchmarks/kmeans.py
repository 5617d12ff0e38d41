"""k-means at 100,000 x 128, k = 1,000: jaxmetric against faiss and scikit-learn.

The same data (100 Gaussian blobs in 128-D, fixed seed), the same initial
centroids (k distinct rows drawn with a fixed NumPy seed), the same number
of Lloyd iterations (20; the data needs about 30 to converge, so no
library stops early), 2 threads each (the whole 2-core machine):

- jaxmetric: ``kmeans(x, k, num_iters=20, init=centroids, tol=0.0)``, called
  twice: the first call compiles, the second is the time; on one CPU device
  (XLA's 2 threads) and on 2 CPU devices (``jax_num_cpu_devices=2``: the
  rows split over them);
- faiss: ``faiss.Kmeans(d, k, niter=20, max_points_per_centroid=N)`` (no
  subsampling), ``omp_set_num_threads(2)``, ``train(x, init_centroids=...)``;
- scikit-learn: ``KMeans(k, init=centroids, n_init=1, max_iter=20, tol=0,
  algorithm="lloyd")`` under ``threadpool_limits(2)``.

jaxmetric and scikit-learn end with one more assignment (the labels and
inertia of the final centroids): 21 passes over the data. faiss's
``train`` makes 20 (its objective is that of the last assignment, before
the last update); the final inertia of its centroids is computed after the
timing with one ``index.search`` (timed apart, ``final_assign_seconds``).

Two extra jaxmetric rows time the seeding alone at k = 1,000 (``num_iters=0``):
``init="k-means++"`` (k sequential passes over the data) and ``init="random"``.

Each case runs in its own process (``python benchmarks/kmeans.py --case
NAME``), ``--repeats`` times (3), round-robin over the cases; the parent
collects one JSON line per run, keeps the run of least wall time of each case
(the machine may be shared with other work), writes
``benchmarks/results/kmeans.json`` (every run's times included) and prints a
Markdown table. Peak memory growth is the process's peak resident set size
(``VmHWM``, reset through ``/proc/self/clear_refs`` just before the timed
calls where the kernel allows it) minus its resident set size before them:
it counts every
temporary, not the input data nor the libraries; for jaxmetric it is that of
both calls, compilation included (the second call reuses what the allocator
kept), and ``xla_temp_mib`` is the compiled program's own temporary buffers
(``memory_analysis().temp_size_in_bytes``).

Needs faiss-cpu and scikit-learn in the benchmark venv.

Usage:
  python benchmarks/kmeans.py                      # every case, writes the JSON
  python benchmarks/kmeans.py --n 20000 --k 200    # smaller, for a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _subprocess_cases as cases  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "kmeans.json"
THREADS = 2
CASES = (
    "jaxmetric",
    "jaxmetric_2dev",
    "faiss",
    "sklearn",
    "jaxmetric_seed_k-means++",
    "jaxmetric_seed_random",
)


def make_data(n: int, dim: int, k: int, num_blobs: int, seed: int):
    """[n, dim] float32 blobs (centres N(0, 1), spread 1) and k distinct rows as init."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_blobs, dim)).astype(np.float32)
    x = centres[rng.integers(0, num_blobs, n)] + rng.normal(size=(n, dim)).astype(np.float32)
    init = x[rng.choice(n, k, replace=False)].copy()
    return x, init


def inertia_of(x, centroids) -> float:
    """Sum of squared distances to the nearest centroid, in float64 (NumPy, blockwise)."""
    import numpy as np

    c = centroids.astype(np.float64)
    c_sq = (c * c).sum(1)
    total = 0.0
    for i in range(0, len(x), 4096):
        b = x[i : i + 4096].astype(np.float64)
        d = (b * b).sum(1)[:, None] + c_sq[None] - 2.0 * b @ c.T
        total += float(np.maximum(d.min(1), 0.0).sum())
    return total


def run_case(name: str, n: int, dim: int, k: int, iters: int, num_blobs: int, seed: int) -> dict:
    import numpy as np

    x, init = make_data(n, dim, k, num_blobs, seed)
    out: dict = {"case": name}
    if name.startswith("jaxmetric"):
        import jax

        jax.config.update("jax_platforms", "cpu")
        # jaxmetric_2dev: the rows split over 2 CPU devices (one per core), as kmeans does
        # over all of jax.local_devices().
        jax.config.update("jax_num_cpu_devices", 2 if name == "jaxmetric_2dev" else 1)
        import jax.numpy as jnp

        from jaxmetric.metrics import kmeans

        xj = jax.device_put(x)
        if name in ("jaxmetric", "jaxmetric_2dev"):
            args = dict(num_iters=iters, init=jnp.asarray(init), tol=0.0)
        else:
            args = dict(num_iters=0, n_init=1, init=name.removeprefix("jaxmetric_seed_"))
        jax.block_until_ready(xj)
        rss_before = cases.status_kib("VmRSS")
        reset = cases.reset_peak()
        hwm_before = cases.status_kib("VmHWM")
        times = []
        for _ in range(2):  # The first call compiles.
            start, cpu = time.perf_counter(), time.process_time()
            result = jax.block_until_ready(kmeans(xj, k, key=jax.random.key(seed), **args))
            times.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
        # The first call's peak (compilation included): the second call reuses the memory
        # the allocator kept, so its RSS hardly grows.
        peak = cases.status_kib("VmHWM") - (rss_before if reset else hwm_before)
        fn = jax.jit(lambda x: kmeans(x, k, key=jax.random.key(seed), **args))
        temp = fn.lower(xj).compile().memory_analysis().temp_size_in_bytes
        centroids = np.asarray(result.centroids)
        out |= {
            "seconds": times[1],
            "cpu_seconds": cpu,
            "first_call_seconds": times[0],
            "compile_seconds": times[0] - times[1],
            "xla_temp_mib": round(temp / 2**20, 1),
            "iterations": int(result.num_iters),
            "reported_inertia": float(result.inertia),
            "cpu_devices": jax.local_device_count(),
            "jax_version": jax.__version__,
        }
    elif name == "faiss":
        import faiss

        faiss.omp_set_num_threads(THREADS)
        km = faiss.Kmeans(dim, k, niter=iters, seed=seed, max_points_per_centroid=n, verbose=False)
        rss_before = cases.status_kib("VmRSS")
        reset = cases.reset_peak()
        hwm_before = cases.status_kib("VmHWM")
        start, cpu = time.perf_counter(), time.process_time()
        km.train(x, init_centroids=init)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = cases.status_kib("VmHWM") - (rss_before if reset else hwm_before)
        start = time.perf_counter()
        dist, _ = km.index.search(x, 1)
        out |= {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "final_assign_seconds": time.perf_counter() - start,
            "iterations": len(km.obj),
            "reported_inertia": float(dist.astype(np.float64).sum()),
            "faiss_version": faiss.__version__,
        }
        centroids = km.centroids
    elif name == "sklearn":
        import sklearn
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        rss_before = cases.status_kib("VmRSS")
        reset = cases.reset_peak()
        hwm_before = cases.status_kib("VmHWM")
        with threadpool_limits(THREADS):
            start, cpu = time.perf_counter(), time.process_time()
            km = KMeans(k, init=init, n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd")
            km.fit(x)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = cases.status_kib("VmHWM") - (rss_before if reset else hwm_before)
        out |= {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "iterations": int(km.n_iter_),
            "reported_inertia": float(km.inertia_),
            "sklearn_version": sklearn.__version__,
        }
        centroids = km.cluster_centers_
    else:
        raise ValueError(name)
    out |= {
        "n": n,
        "dim": dim,
        "k": k,
        "num_iters": iters,
        "peak_rss_growth_mib": round(peak / 1024, 1),
        "peak_reset_via_clear_refs": reset,
        "inertia": inertia_of(x, np.asarray(centroids)),  # The same float64 check for all.
    }
    return out


def table(results: list[dict]) -> str:
    base = next((r for r in results if r["case"] == "sklearn" and "inertia" in r), None)
    lines = [
        "| library | Lloyd iterations | time | per iteration | CPU time (all threads) "
        "| first call (compile + run) | peak RSS growth | XLA temporaries | final inertia "
        "| vs scikit-learn | load average before | wall time of each run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['error']} |" + " |" * 10)
            continue
        iters = r["iterations"]
        per = f"{r['seconds'] / iters * 1000:.0f} ms" if iters else "-"
        compile_s = f"{r['first_call_seconds']:.2f} s" if "first_call_seconds" in r else "-"
        seconds = f"{r['seconds']:.2f} s"
        if "final_assign_seconds" in r:
            seconds += f" (+{r['final_assign_seconds']:.2f} s final assignment)"
        temp = f"{r['xla_temp_mib']:.0f} MiB" if "xla_temp_mib" in r else "-"
        each = ", ".join(f"{t['seconds']:.2f}" for t in r.get("runs", []) if t["seconds"])
        seeding_only = r["case"].startswith("jaxmetric_seed_")
        rel = "-" if seeding_only or not base else f"{r['inertia'] / base['inertia'] - 1:+.4%}"
        lines.append(
            f"| {r['case']} | {iters} | {seconds} | {per} | {r['cpu_seconds']:.2f} s "
            f"| {compile_s} | {r['peak_rss_growth_mib']:.0f} MiB | {temp} "
            f"| {r['inertia']:,.0f} | {rel} | {r.get('load_average_before', 0):.1f} "
            f"| {each} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=CASES, help="run one case in this process")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--num-blobs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case (best kept)")
    args = parser.parse_args()
    sizes = [args.n, args.dim, args.k, args.iters, args.num_blobs, args.seed]

    if args.case:
        print(json.dumps(run_case(args.case, *sizes)))
        return

    # Round-robin over the cases, --repeats times, each run in a fresh process; the best
    # wall time of each case is reported (the machine may be shared: a run that other work
    # slowed down is not the library's time), every run's times are kept in the JSON.
    runs: dict[str, list[dict]] = {name: [] for name in args.cases}
    for _ in range(args.repeats):
        for name in args.cases:
            cmd = [sys.executable, __file__, "--case", name, "--n", str(args.n)]
            cmd += ["--dim", str(args.dim), "--k", str(args.k), "--iters", str(args.iters)]
            cmd += ["--num-blobs", str(args.num_blobs), "--seed", str(args.seed)]
            load = os.getloadavg()[0]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                result = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                tail = proc.stderr.strip().splitlines()[-3:]
                result = {"case": name, "error": "failed", "tail": tail}
            result["load_average_before"] = load
            print(json.dumps(result), flush=True)
            runs[name].append(result)
    results = []
    for tries in runs.values():
        ok = [r for r in tries if "error" not in r]
        best = dict(min(ok, key=lambda r: r["seconds"]) if ok else tries[0])
        best["runs"] = [
            {key: r.get(key) for key in ("seconds", "cpu_seconds", "load_average_before")}
            for r in tries
        ]
        results.append(best)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "k-means: time, peak RSS growth and inertia from the same init",
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": THREADS,
            "python": platform.python_version(),
        },
        "results": results,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(table(results))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
