"""Speed and memory of jaxmetric's losses against PyTorch peers, one process per case.

Forward + backward (gradient with respect to the embeddings) after warm-up;
median, min and max over repeated runs; peak RSS growth of the process over
its state after building the inputs. Every case runs in its own subprocess
with an address-space cap, so a peer that asks for tens of GB is recorded as
"out of memory" instead of taking the machine down. The GEMM ceiling of the
machine is measured in the same run and each result is reported as a ratio to
its matmul floor (the FLOPs of its GEMMs at that ceiling).

    python benchmarks/bench.py                      # all cases -> benchmarks/results/bench.json
    python benchmarks/bench.py --only ntxent_4096   # cases whose name contains the string
    python benchmarks/bench.py --only ntxent_4096_jaxmetric,ntxent_4096_torch_dense
                                                    # several strings (gemm_jax always runs)
    python benchmarks/bench.py --list

PyTorch and pytorch-metric-learning come from the benchmark venv (`make bench`
creates it); they are never dependencies of the package. No time is asserted
anywhere: the numbers go to JSON and the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
DIM = 128


@dataclass
class Case:
    name: str
    kind: str  # ntxent | triplet_batch_hard | triplet_semi_hard | angular | contrastive | gemm
    # jaxmetric (the default call, no block_size) | jaxmetric_dense (block_size=None) |
    # jaxmetric_blockwise (block_size=512) | optax | pml | torch_dense | jax | torch
    impl: str
    size: int  # pairs N for ntxent (2N embeddings), batch B otherwise
    classes: int = 0
    repeats: int = 5
    extra: dict = field(default_factory=dict)


def _cases() -> list[Case]:
    cases = [Case("gemm_jax", "gemm", "jax", 4096), Case("gemm_torch", "gemm", "torch", 4096)]
    for n in (256, 1024, 4096):
        impls = ("jaxmetric", "jaxmetric_dense", "jaxmetric_blockwise", "optax", "torch_dense")
        for impl in (*impls, "pml"):
            cases.append(
                Case(f"ntxent_{n}_{impl}", "ntxent", impl, n, repeats=5 if n < 4096 else 3)
            )
    # The sub-100 ms cases: 20 timed runs, so the median is not one slow call's.
    for impl in ("jaxmetric", "pml"):
        for name, kind, size, classes in (
            ("triplet_batch_hard_2048", "triplet_batch_hard", 2048, 64),
            ("triplet_semi_hard_512", "triplet_semi_hard", 512, 32),
            ("angular_512", "angular", 512, 32),
            ("contrastive_512", "contrastive", 512, 32),
        ):
            cases.append(Case(f"{name}_{impl}", kind, impl, size, classes, repeats=20))
    # What block_size="auto" chooses against the dense path, for the other losses
    # of the family (labels: ntxent_loss and supcon_loss, B rows of 64 classes;
    # moco_loss: B queries against a queue of K = extra["queue"] keys).
    for impl in ("jaxmetric", "jaxmetric_dense"):
        for size in (256, 4096):
            for kind in ("ntxent_labels", "supcon"):
                cases.append(Case(f"{kind}_{size}_{impl}", kind, impl, size, 64, repeats=5))
        cases.append(
            Case(f"moco_256_{impl}", "moco", impl, 256, repeats=10, extra={"queue": 16384})
        )
    # 2N = 65,536 embeddings: the dense similarity matrix alone would be 17 GB.
    cases.append(
        Case(
            "ntxent_32768_jaxmetric_blockwise",
            "ntxent",
            "jaxmetric_blockwise",
            32768,
            repeats=1,
            extra={"block_size": 512},
        )
    )
    return cases


def _flops(case: Case) -> float:
    """FLOPs of the GEMMs of forward + backward: the floor no implementation beats."""
    if case.kind == "gemm":
        return 2.0 * case.size**3
    if case.kind == "moco":  # [B, K] logits, and the queries' gradient only
        return 2 * 2.0 * case.size * case.extra["queue"] * DIM
    rows = 2 * case.size if case.kind == "ntxent" else case.size
    # Forward: the [rows, rows] similarity GEMM; backward: two more of the same size.
    gemms = 3 if case.kind != "angular" else 6  # angular forms anchor and candidate Grams
    return gemms * 2.0 * rows * rows * DIM


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------
# Child: build one case, time it, print JSON.


def _labels(rng, size, classes):
    import numpy as np

    per_class = size // classes
    labels = np.repeat(np.arange(classes), per_class)
    labels = np.concatenate([labels, rng.integers(0, classes, size - labels.size)])
    return rng.permutation(labels)


def _build_jax(case: Case, emb, labels):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import jaxmetric as jm

    n = case.size
    # The default call takes no block_size; the others name theirs.
    tiling = {"jaxmetric_dense": {"block_size": None}, "jaxmetric_blockwise": {"block_size": 512}}
    tiling = {**tiling.get(case.impl, {}), **{k: v for k, v in case.extra.items() if k != "queue"}}
    if case.kind == "ntxent":
        if case.impl == "optax":
            ids = jnp.concatenate([jnp.arange(n), jnp.arange(n)])

            def loss(e):
                return optax.losses.ntxent(e, ids, temperature=0.1)
        else:

            def loss(e):
                return jm.simclr_loss(e[:n], e[n:], temperature=0.1, **tiling)
    elif case.kind in ("ntxent_labels", "supcon"):
        fn = jm.ntxent_loss if case.kind == "ntxent_labels" else jm.supcon_loss

        def loss(e):
            return fn(e, labels, temperature=0.1, **tiling)
    elif case.kind == "moco":
        rng = np.random.default_rng(1)
        keys = jnp.asarray(emb + 0.5 * rng.normal(size=emb.shape), jnp.float32)
        queue = jnp.asarray(rng.normal(size=(case.extra["queue"], DIM)), jnp.float32)

        def loss(e):
            return jm.moco_loss(e, keys, queue, temperature=0.2, **tiling)
    elif case.kind == "triplet_batch_hard":

        def loss(e):
            return jm.triplet_margin_loss(e, labels, margin=0.05, mining="batch_hard")
    elif case.kind == "triplet_semi_hard":

        def loss(e):
            return jm.triplet_margin_loss(e, labels, margin=0.05, mining="semi_hard")
    elif case.kind == "angular":

        def loss(e):
            return jm.angular_loss(e, labels)
    elif case.kind == "contrastive":

        def loss(e):
            return jm.contrastive_loss(e, labels)
    else:
        raise ValueError(case.kind)
    step = jax.jit(jax.value_and_grad(loss))
    x = jnp.asarray(emb)
    labels = jnp.asarray(labels)

    def run():
        value, grad = step(x)
        grad.block_until_ready()
        return float(value), grad

    return run


def _build_torch(case: Case, emb, labels):
    import torch

    torch.set_num_threads(THREADS)
    device = os.environ.get("BENCH_TORCH_DEVICE", "cpu")
    n = case.size
    x = torch.tensor(emb, device=device, requires_grad=True)
    y = torch.tensor(labels, device=device)
    if case.impl == "torch_dense":

        def loss_fn(e):
            z = torch.nn.functional.normalize(e, dim=1)
            sim = z @ z.T / 0.1
            eye = torch.eye(2 * n, dtype=torch.bool, device=device)
            sim = sim.masked_fill(eye, float("-inf"))
            target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(device)
            return torch.nn.functional.cross_entropy(sim, target)
    else:
        from pytorch_metric_learning import losses, miners

        if case.kind == "ntxent":
            pml_loss = losses.NTXentLoss(temperature=0.1)
            ids = torch.cat([torch.arange(n), torch.arange(n)]).to(device)

            def loss_fn(e):
                return pml_loss(e, ids)
        elif case.kind == "triplet_batch_hard":
            pml_loss, miner = losses.TripletMarginLoss(margin=0.05), miners.BatchHardMiner()

            def loss_fn(e):
                return pml_loss(e, y, miner(e, y))
        elif case.kind == "triplet_semi_hard":
            pml_loss = losses.TripletMarginLoss(margin=0.05)
            miner = miners.TripletMarginMiner(margin=0.05, type_of_triplets="semihard")

            def loss_fn(e):
                return pml_loss(e, y, miner(e, y))
        elif case.kind == "angular":
            pml_loss = losses.AngularLoss(alpha=40)

            def loss_fn(e):
                return pml_loss(torch.nn.functional.normalize(e, dim=1), y)
        elif case.kind == "contrastive":
            pml_loss = losses.ContrastiveLoss()

            def loss_fn(e):
                return pml_loss(e, y)
        else:
            raise ValueError(case.kind)

    def run():
        x.grad = None
        value = loss_fn(x)
        value.backward()
        return float(value), x.grad.cpu().numpy().copy()

    return run


def _build_gemm(case: Case):
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.normal(size=(case.size, case.size)).astype(np.float32)
    b = rng.normal(size=(case.size, case.size)).astype(np.float32)
    if case.impl == "torch":
        import torch

        torch.set_num_threads(THREADS)
        ta, tb = torch.tensor(a), torch.tensor(b)
        return lambda: (0.0, (ta @ tb))
    import jax
    import jax.numpy as jnp

    ja, jb = jnp.asarray(a), jnp.asarray(b)
    mm = jax.jit(jnp.matmul)
    return lambda: (0.0, mm(ja, jb).block_until_ready())


def child(case: Case) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    rows = 2 * case.size if case.kind == "ntxent" else case.size
    emb = rng.normal(size=(rows, DIM)).astype(np.float32)
    if case.kind == "ntxent":  # Two correlated views, as SimCLR sees them.
        emb[case.size :] = emb[: case.size] + 0.5 * emb[case.size :]
    labels = _labels(rng, rows, max(case.classes, 1)).astype(np.int32)
    if case.kind == "gemm":
        run = _build_gemm(case)
    elif case.impl in ("torch_dense", "pml", "torch"):
        run = _build_torch(case, emb, labels)
    else:
        run = _build_jax(case, emb, labels)
    baseline = _current_rss()
    start = time.perf_counter()
    value, grad = run()  # Warm-up (and compilation).
    first = time.perf_counter() - start
    for _ in range(2):  # The first calls after compilation still allocate.
        run()
    times = []
    for _ in range(case.repeats):
        start = time.perf_counter()
        value, grad = run()
        times.append(time.perf_counter() - start)
    result = {
        "value": value,
        "first_call_s": first,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": times,
        "peak_rss_growth_bytes": max(0, _rss_bytes() - baseline),
    }
    if case.kind != "gemm":
        grad = np.asarray(grad)
        result["grad_checksum"] = float(np.abs(grad).sum())
        if case.kind == "ntxent" and case.size == 4096:  # For the dense == tiled checks.
            np.save(RESULTS / f"grad_{case.name}.npy", grad)
    return result


# ---------------------------------------------------------------------------
# Parent: run every case in its own process, collect, print.


def _run_case(case: Case, memory_gb: float, timeout_s: float) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(asdict(case))]
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))

    def limit():
        cap = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, preexec_fn=limit
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "timeout_s": timeout_s}
    if proc.returncode != 0:
        err = proc.stderr[-2000:]
        oom = any(
            s in err
            for s in (
                "MemoryError",
                "out of memory",
                "RESOURCE_EXHAUSTED",
                "std::bad_alloc",
                "Cannot allocate",
                "DefaultCPUAllocator",
            )
        )
        return {"status": "out of memory" if oom else "error", "stderr_tail": err[-600:]}
    return {"status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1])}


def _agreement(results: list[dict]) -> dict:
    """The default and the blockwise call against the dense one at N=4096: value
    and gradient differences."""
    import numpy as np

    by_name = {r["name"]: r for r in results if r["status"] == "ok"}
    dense = "ntxent_4096_jaxmetric_dense"
    checks = {}
    for other, label in (("jaxmetric", "default"), ("jaxmetric_blockwise", "blockwise")):
        other = f"ntxent_4096_{other}"
        if dense not in by_name or other not in by_name:
            continue
        grad_dense = np.load(RESULTS / f"grad_{dense}.npy")
        grad_other = np.load(RESULTS / f"grad_{other}.npy")
        checks[f"ntxent_4096_{label}_vs_dense_value_abs_diff"] = abs(
            by_name[dense]["value"] - by_name[other]["value"]
        )
        checks[f"ntxent_4096_{label}_vs_dense_grad_max_abs_diff"] = float(
            np.abs(grad_dense - grad_other).max()
        )
    return checks


def _selected(cases: list[Case], only: str) -> list[Case]:
    """The cases whose name contains one of the comma-separated strings, and
    gemm_jax, which measures the ceiling the floors are computed from."""
    wanted = [w for w in only.split(",") if w] or [""]
    chosen = [c for c in cases if any(w in c.name for w in wanted)]
    if chosen and not any(c.kind == "gemm" for c in chosen):
        chosen.insert(0, next(c for c in cases if c.name == "gemm_jax"))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        default="",
        help="run the cases whose name contains one of these comma-separated strings "
        "(and gemm_jax, for the floor)",
    )
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--memory-gb", type=float, default=16.0, help="address-space cap per case")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--out", default=str(RESULTS / "bench.json"))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(child(Case(**json.loads(args.child)))))
        return
    cases = _selected(_cases(), args.only)
    if args.list:
        print("\n".join(c.name for c in cases))
        return
    results = []
    ceiling = None
    load_before = os.getloadavg()[0]  # Other jobs on the machine move every time.
    for case in cases:
        print(f"{case.name:<40}", end=" ", flush=True)
        result = {**asdict(case), **_run_case(case, args.memory_gb, args.timeout)}
        if result["status"] == "ok" and case.kind == "gemm":
            result["gflops"] = _flops(case) / result["min_s"] / 1e9
            ceiling = max(ceiling or 0.0, result["gflops"])
        results.append(result)
        if result["status"] == "ok":
            rss = result["peak_rss_growth_bytes"] / 2**20
            print(f"median {result['median_s'] * 1e3:9.1f} ms  peak RSS +{rss:8.0f} MiB")
        else:
            print(result["status"])
    for result in results:
        if ceiling and result["status"] == "ok" and result["kind"] != "gemm":
            floor_s = _flops(Case(**{k: result[k] for k in asdict(cases[0])})) / (ceiling * 1e9)
            result["floor_s"] = floor_s
            result["ratio_to_floor"] = result["median_s"] / floor_s
    report_checks = _agreement(results)
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": THREADS,
            "python": sys.version.split()[0],
        },
        "gemm_ceiling_gflops": ceiling,
        "load_average": [load_before, os.getloadavg()[0]],
        "checks": report_checks,
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nGEMM ceiling {ceiling or float('nan'):.1f} GFLOP/s; wrote {args.out}")


if __name__ == "__main__":
    main()
