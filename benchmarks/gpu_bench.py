"""The benchmark cases on one CUDA device: jaxmetric vs PyTorch peers, printed as a table.

Run it only where a GPU is lent (it is never part of the tests or CI):

    pip install -e . "jax[cuda13]" torch pytorch-metric-learning   # on the GPU machine
    python benchmarks/gpu_bench.py --out benchmarks/results/gpu.json

Each case runs in its own process (as in bench.py), timed after warm-up with
the device synchronised; PyTorch peers run on "cuda" when torch sees a GPU.
``--smoke`` runs tiny sizes on whatever device exists, to check the script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402


def _gpu_cases(smoke: bool) -> list[bench.Case]:
    scale = 16 if smoke else 1
    cases = [bench.Case("gemm_jax", "gemm", "jax", 8192 // scale)]
    for n in (4096, 16384, 65536):
        n //= scale
        impls = ["jaxmetric", "jaxmetric_blockwise", "torch_dense", "pml"]
        if n > 16384 // scale:
            impls = ["jaxmetric_blockwise"]  # The dense matrix no longer fits.
        for impl in impls:
            cases.append(bench.Case(f"ntxent_{n}_{impl}", "ntxent", impl, n, repeats=10))
    for impl in ("jaxmetric", "pml"):
        cases.append(
            bench.Case(
                f"triplet_batch_hard_{8192 // scale}_{impl}",
                "triplet_batch_hard",
                impl,
                8192 // scale,
                256,
            )
        )
        cases.append(
            bench.Case(
                f"triplet_semi_hard_{2048 // scale}_{impl}",
                "triplet_semi_hard",
                impl,
                2048 // scale,
                64,
            )
        )
        cases.append(
            bench.Case(f"angular_{2048 // scale}_{impl}", "angular", impl, 2048 // scale, 64)
        )
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--out", default=str(bench.RESULTS / "gpu.json"))
    args = parser.parse_args()
    bench.RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        import torch

        os.environ["BENCH_TORCH_DEVICE"] = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        torch = None
    import jax

    device = jax.devices()[0]
    if device.platform != "gpu" and not args.smoke:
        raise SystemExit(f"No GPU: JAX sees {device}. Use --smoke to try the script anyway.")
    rows = []
    for case in _gpu_cases(args.smoke):
        if case.impl in ("torch_dense", "pml") and torch is None:
            continue
        result = {**asdict(case), **bench._run_case(case, memory_gb=1e6, timeout_s=args.timeout)}
        rows.append(result)
        shown = (
            f"{result['median_s'] * 1e3:9.2f} ms (min {result['min_s'] * 1e3:.2f})"
            if result["status"] == "ok"
            else result["status"]
        )
        print(f"{case.name:<42} {shown}", flush=True)
    report = {
        "device": str(device),
        "torch_device": os.environ.get("BENCH_TORCH_DEVICE"),
        "platform": platform.platform(),
        "results": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
