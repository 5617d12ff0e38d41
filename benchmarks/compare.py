"""Every self-supervised method on MNIST-1D: held-out kNN and linear probe.

Trains every self-supervised method of the registry
(``jaxmetric.train.methods``) that has a recipe ``configs/<method>_mnist1d.py``
with that recipe (each in its own
process, so compilation caches and memory do not carry over), evaluates on
the held-out split and writes ``benchmarks/results/compare_mnist1d.json``
and a Markdown table (also printed).

    python benchmarks/compare.py                       # all methods, the recipes' steps
    python benchmarks/compare.py --only byol,vicreg    # some of them
    python benchmarks/compare.py --steps 500           # a quick look (fewer steps)

kNN: k=10, cosine, on the embeddings z (projector output) and on the
encoder features h; linear probe on h (the trainer's metrics,
``jaxmetric.train.evaluate.run_metrics``). The raw-input row is kNN (k=10, euclidean) on the
signals, as the MNIST-1D notebook reports it. Times are wall-clock on
whatever machine runs it, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def ssl_methods() -> dict[str, str]:
    """name -> title of the self-supervised methods with an MNIST-1D recipe."""
    from jaxmetric.train import methods

    return {
        m.name: m.title
        for m in methods.all_methods()
        if m.two_views and (ROOT / "configs" / f"{m.name}_mnist1d.py").exists()
    }


def load_config(method: str):
    """``get_config()`` of ``configs/<method>_mnist1d.py``."""
    from jaxmetric.train.config import load_recipe

    return load_recipe(ROOT / "configs" / f"{method}_mnist1d.py")


def run_one(method: str, steps: int | None, out: str) -> None:
    """Trains and evaluates one method in this process; writes its JSON row."""
    from jaxmetric.train import train_and_evaluate

    config = load_config(method)
    if steps:
        config.num_steps = steps
        config.log_every = min(config.log_every, steps)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        _, metrics = train_and_evaluate(config, workdir, progress=False)
    row = {
        "method": method,
        "steps": int(config.num_steps),
        "batch_size": int(config.batch_size),
        "wall_s": round(time.perf_counter() - start, 1),
        **{k: float(v) for k, v in metrics.items() if k != "step"},
    }
    with open(out, "w") as f:
        json.dump(row, f)


def raw_baseline() -> float:
    """kNN (k=10, euclidean) on the raw held-out signals."""
    import numpy as np

    from jaxmetric import metrics
    from jaxmetric.data import sources

    train, test = sources.load(load_config("simclr").dataset)
    x_tr = np.asarray(train.x).reshape(len(train), -1)
    x_te = np.asarray(test.x).reshape(len(test), -1)
    return metrics.knn_accuracy(x_tr, train.y, x_te, test.y, k=10, metric="euclidean")


def table(rows: list[dict], raw: float, names: dict[str, str]) -> str:
    def pct(row, key):
        return f"{100 * row[key]:.1f}%" if key in row else "-"

    lines = [
        "| method | steps (batch) | kNN, embeddings z | kNN, features h | linear probe, h | time |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| raw input (40-d signal) | - | {100 * raw:.1f}% (euclidean) | - | - | - |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {names[r['method']]} | failed: {r['error']} | | | | |")
            continue
        lines.append(
            f"| {names[r['method']]} | {r['steps']} ({r['batch_size']}) "
            f"| {pct(r, 'knn_accuracy')} | {pct(r, 'knn_accuracy_features')} "
            f"| {pct(r, 'linear_probe_accuracy')} | {r['wall_s']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated methods (default: all)")
    parser.add_argument("--steps", type=int, default=0, help="override num_steps (0: recipe's)")
    parser.add_argument("--output", default=str(RESULTS / "compare_mnist1d.json"))
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # child process
    parser.add_argument("--row", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.steps or None, args.row)
        return

    names = ssl_methods()
    methods = [m for m in args.only.split(",") if m] or list(names)
    unknown = sorted(set(methods) - set(names))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {tuple(names)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in methods:
        print(f"== {method}", file=sys.stderr, flush=True)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            row_path = f.name
        cmd = [sys.executable, __file__, "--one", method, "--row", row_path]
        if args.steps:
            cmd += ["--steps", str(args.steps)]
        proc = subprocess.run(cmd, cwd=ROOT, check=False)
        try:
            with open(row_path) as f:
                rows.append(json.load(f))
        except (OSError, json.JSONDecodeError):
            rows.append({"method": method, "error": f"exit code {proc.returncode}"})
        finally:
            if os.path.exists(row_path):
                os.remove(row_path)
    raw = raw_baseline()
    result = {"dataset": "mnist1d", "raw_input_knn_accuracy": raw, "methods": rows}
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(table(rows, raw, names))
    print(f"\nJSON: {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
