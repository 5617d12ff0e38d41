"""Turns benchmarks/results/bench.json into the Markdown tables of the README.

python benchmarks/report.py [benchmarks/results/bench.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PEERS = {
    "ntxent": (
        "SimCLR NT-Xent",
        ["jaxmetric", "jaxmetric_dense", "jaxmetric_blockwise", "optax", "torch_dense", "pml"],
    ),
    "ntxent_labels": ("ntxent_loss, 64 classes", ["jaxmetric", "jaxmetric_dense"]),
    "supcon": ("supcon_loss, 64 classes", ["jaxmetric", "jaxmetric_dense"]),
    "moco": ("moco_loss, queue of 16,384", ["jaxmetric", "jaxmetric_dense"]),
    "triplet_batch_hard": ("triplet + batch-hard", ["jaxmetric", "pml"]),
    "triplet_semi_hard": ("triplet + semi-hard (all)", ["jaxmetric", "pml"]),
    "angular": ("angular", ["jaxmetric", "pml"]),
    "contrastive": ("contrastive", ["jaxmetric", "pml"]),
}


def _cell(result: dict | None) -> str:
    if result is None:
        return "-"
    if result["status"] != "ok":
        return result["status"]
    rss = result["peak_rss_growth_bytes"] / 2**20
    return f"{result['median_s'] * 1e3:.1f} ms ({rss:.0f} MiB)"


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/bench.json")
    report = json.loads(path.read_text())
    results = report["results"]
    index = {(r["kind"], r["size"], r["impl"]): r for r in results}
    print(
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs, "
        f"{report['machine']['threads']} threads; measured GEMM ceiling "
        f"{report['gemm_ceiling_gflops']:.0f} GFLOP/s"
        + (
            "; load average {:.1f} before, {:.1f} after.\n".format(*report["load_average"])
            if "load_average" in report
            else ".\n"
        )
    )
    for kind, (title, impls) in PEERS.items():
        sizes = sorted({r["size"] for r in results if r["kind"] == kind})
        for size in sizes:
            row = {impl: index.get((kind, size, impl)) for impl in impls}
            if all(v is None for v in row.values()):
                continue
            label = f"N={size} pairs" if kind == "ntxent" else f"B={size}"
            print(f"**{title}, {label}** (forward + backward, median; peak RSS growth)\n")
            # "jaxmetric" is the default call (no block_size): the others are
            # compared with it, or with the best jaxmetric row where it is absent.
            print("| implementation | time (RSS) | x floor | speed-up of jaxmetric |")
            print("| --- | --- | --- | --- |")
            ours = [
                v["median_s"]
                for k, v in row.items()
                if v and v["status"] == "ok" and k.startswith("jaxmetric")
            ]
            default = row.get("jaxmetric")
            if default and default["status"] == "ok":
                best = default["median_s"]
            else:
                best = min(ours) if ours else None
            for impl, result in row.items():
                if result is None:
                    continue
                ratio = f"{result['ratio_to_floor']:.2f}" if "ratio_to_floor" in result else "-"
                speedup = "-"
                if best and result["status"] == "ok" and result is not default:
                    speedup = f"{result['median_s'] / best:.1f}x"
                print(f"| {impl} | {_cell(result)} | {ratio} | {speedup} |")
            print()
    for key, value in report.get("checks", {}).items():
        print(f"- {key}: {value:.2e}")


if __name__ == "__main__":
    main()
