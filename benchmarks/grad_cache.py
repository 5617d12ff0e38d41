"""Peak memory and step time of `jaxmetric.chunked_value_and_grad` against batch size.

Two models, each step with and without chunks (gradient caching) and the
same SimCLR loss (``simclr_loss``, ``block_size=512`` so the loss itself is
memory-linear and the encoder's activations are what is measured):

- ``mlp``: the activation-heavy MLP of issue 17, 1,024-d inputs, 8 dense
  layers of width 4,096 with ReLU, then a linear projection to 128. The
  batch counts the rows through the encoder: batch B = B/2 pairs, two views
  each (SimCLR on two views), so batch 8,192 is 4,096 pairs.
- ``resnet18``: SimCLR with jaxmetric's ResNet-18 (CIFAR stem) at 32 x 32 px
  and a 2-layer projection head (512 -> 512 -> 128, BatchNorm), float32,
  BatchNorm in training mode; batch B = B/2 pairs, two views each (the
  images through the encoder). With chunks each chunk's BatchNorm uses the
  statistics of its own images (the updated statistics come back stacked
  over the chunks as ``has_aux``); without, those of the whole batch.

Each case runs in its own process (``--case NAME``) under an address-space
cap (``RLIMIT_AS``), as ``metrics_memory.py`` and ``bench.py`` do; a case
that runs out of memory is recorded as "out of memory". Peak memory growth
is the process's peak resident set size (``VmHWM``, reset through
``/proc/self/clear_refs`` just before the step) minus its resident set size
before the step: the parameters, inputs and the compiled program are
already there, so it counts the step's own buffers (activations, gradients,
temporaries). The step time is one step after compilation (compile time is
reported apart). The machine is shared and has 2 cores: times are
indicative.

Usage:
  python benchmarks/grad_cache.py               # every case, writes the JSON and the plot
  python benchmarks/grad_cache.py --quick       # small batches, for a quick look
  python benchmarks/grad_cache.py --replot      # redraw the plot from the JSON
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _subprocess_cases as cases  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "grad_cache.json"
PLOT = ROOT / "docs" / "grad_cache_memory.png"
GiB = 2**30

MLP_IN, MLP_WIDTH, MLP_LAYERS, EMB = 1024, 4096, 8, 128
IMAGE = 32
LOSS_BLOCK = 512
TEMPERATURE = 0.1

# Address-space caps (virtual memory, which runs ahead of the resident set):
# the MLP's cap leaves room for the plain step; ResNet-18's is set so that
# the plain step at batch 2,048 does not fit.
CAPS_GIB = {"mlp": 16.0, "resnet18": 12.0}
# chunked_value_and_grad's `unroll`: XLA's CPU backend runs a convolution's
# weight gradient inside a rolled loop on a naive path (see its docstring), so
# the ResNet's chunks are unrolled; the MLP's loop stays rolled.
UNROLL = {"mlp": 1, "resnet18": True}

# (model, batch, chunk): chunk 0 is the plain jax.value_and_grad.
FULL = [
    *[("mlp", b, c) for b in (1024, 2048, 4096, 8192) for c in (0, 512)],
    *[("resnet18", b, c) for b in (256, 512, 1024, 2048) for c in (0, 128)],
]
QUICK = [("mlp", 1024, 0), ("mlp", 1024, 256), ("resnet18", 128, 0), ("resnet18", 128, 64)]


def case_name(model: str, batch: int, chunk: int) -> str:
    return f"{model}_b{batch}_" + (f"chunk{chunk}" if chunk else "plain")


def _mlp_setup(batch: int):
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), MLP_LAYERS + 2)
    dims = [MLP_IN] + [MLP_WIDTH] * MLP_LAYERS + [EMB]
    params = {
        f"w{i}": jax.random.normal(keys[i], (a, b), jnp.float32) / jnp.sqrt(a)
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True))
    }
    views = jax.random.normal(keys[-1], (batch // 2, 2, MLP_IN), jnp.float32)

    def embed(params, x):  # [c, 2, MLP_IN] -> [c, 2, EMB]
        h = x
        for i in range(MLP_LAYERS):
            h = jax.nn.relu(h @ params[f"w{i}"])
        return h @ params[f"w{MLP_LAYERS}"]

    return params, views, embed, False


def _resnet_setup(batch: int):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxmetric.models import Embedder, ResNet, simclr_head

    model = Embedder(
        ResNet(18, stem="cifar", rngs=nnx.Rngs(0)),
        simclr_head(512, hidden=512, out_features=EMB, rngs=nnx.Rngs(1)),
    )
    # Plain dicts and a copy per call, as the trainer (jaxmetric.train.state).
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)
    views = jax.random.uniform(jax.random.key(2), (batch // 2, 2, IMAGE, IMAGE, 3), jnp.float32)

    def embed(params, x):  # [c, 2, 32, 32, 3] -> ([c, 2, EMB], updated BatchNorm stats)
        module = nnx.merge(graphdef, params, stats, copy=True)
        _, z = module(x.reshape(-1, *x.shape[2:]), train=True)
        return z.reshape(x.shape[0], 2, -1), nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))

    return params, views, embed, True


def run_case(model: str, batch: int, chunk: int) -> dict:
    import jax

    jax.config.update("jax_platforms", "cpu")
    import jaxmetric as jm

    params, views, embed, has_aux = (_mlp_setup if model == "mlp" else _resnet_setup)(batch)

    def loss_fn(z):
        return jm.simclr_loss(z[:, 0], z[:, 1], temperature=TEMPERATURE, block_size=LOSS_BLOCK)

    if chunk:
        # Chunks of `chunk` images: chunk / 2 pairs of inputs.
        step = jm.chunked_value_and_grad(
            embed, loss_fn, chunk_size=chunk // 2, has_aux=has_aux, unroll=UNROLL[model]
        )
    elif has_aux:

        def plain(params, x):
            z, stats = embed(params, x)
            return loss_fn(z), stats

        step = jax.value_and_grad(plain, has_aux=True)
    else:
        step = jax.value_and_grad(lambda p, x: loss_fn(embed(p, x)))
    jax.block_until_ready((params, views))

    start = time.perf_counter()
    compiled = jax.jit(step).lower(params, views).compile()
    compile_s = time.perf_counter() - start

    rss_before = cases.status_kib("VmRSS")
    reset = cases.reset_peak()
    hwm_before = cases.status_kib("VmHWM")
    start = time.perf_counter()
    out, grads = jax.block_until_ready(compiled(params, views))
    step_s = time.perf_counter() - start
    peak_growth_kib = cases.status_kib("VmHWM") - (rss_before if reset else hwm_before)
    loss = out[0] if has_aux else out
    grad_norm = float(sum((g.astype("float32") ** 2).sum() for g in jax.tree.leaves(grads)) ** 0.5)
    return {
        "case": case_name(model, batch, chunk),
        "model": model,
        "batch": batch,
        "pairs": batch // 2,
        "chunk": chunk,
        "method": (
            f"chunked_value_and_grad (chunks of {chunk}, unroll={UNROLL[model]})"
            if chunk
            else "value_and_grad"
        ),
        "status": "ok",
        "compile_s": round(compile_s, 2),
        "step_s": round(step_s, 2),
        "rss_before_mib": round(rss_before / 1024, 1),
        "peak_rss_growth_mib": round(peak_growth_kib / 1024, 1),
        "peak_reset_via_clear_refs": reset,
        "loss": float(loss),
        "grad_norm": grad_norm,
    }


# ---------------------------------------------------------------------------
# Parent: every case in its own process, the JSON, the plot.

OOM_MARKERS = (
    "MemoryError",
    "out of memory",
    "Out of memory",
    "RESOURCE_EXHAUSTED",
    "std::bad_alloc",
    "Cannot allocate",
    "Resource temporarily unavailable",
)


def _run(model: str, batch: int, chunk: int, timeout_s: float) -> dict:
    name = case_name(model, batch, chunk)
    cmd = [sys.executable, __file__, "--case", model, str(batch), str(chunk)]

    def limit():
        cap = int(CAPS_GIB[model] * GiB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    base = {"case": name, "model": model, "batch": batch, "pairs": batch // 2, "chunk": chunk}
    base["memory_cap_gib"] = CAPS_GIB[model]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, preexec_fn=limit, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return {**base, "status": "timeout", "timeout_s": timeout_s}
    wall = round(time.perf_counter() - start, 1)
    if proc.returncode != 0:
        err = proc.stderr[-3000:]
        oom = proc.returncode == -6 and "alloc" in err or any(m in err for m in OOM_MARKERS)
        return {
            **base,
            "status": "out of memory" if oom else "error",
            "returncode": proc.returncode,
            "stderr_tail": err[-600:],
            "wall_s": wall,
        }
    return {**base, **json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in results})
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        rows = [r for r in results if r["model"] == model]
        for chunk in sorted({r["chunk"] for r in rows}):
            sel = sorted((r for r in rows if r["chunk"] == chunk), key=lambda r: r["batch"])
            label = f"chunks of {chunk}" if chunk else "plain value_and_grad"
            ok = [r for r in sel if r["status"] == "ok"]
            ax.plot(
                [r["batch"] for r in ok],
                [r["peak_rss_growth_mib"] / 1024 for r in ok],
                marker="o",
                label=label,
            )
            for r in sel:
                if r["status"] == "out of memory":
                    ax.scatter([r["batch"]], [r["memory_cap_gib"]], marker="x", color="red", s=60)
                    ax.annotate(
                        "out of memory",
                        (r["batch"], r["memory_cap_gib"]),
                        textcoords="offset points",
                        xytext=(-70, -14),
                        color="red",
                    )
        cap = rows[0]["memory_cap_gib"]
        if any(r["status"] == "out of memory" for r in rows):
            ax.axhline(cap, color="grey", linestyle=":", linewidth=1)
        else:
            ax.set_ylim(0, None)
        title = {
            "mlp": "MLP 8 x 4,096 (1,024-d inputs), SimCLR",
            "resnet18": "ResNet-18, 32 px, SimCLR",
        }[model]
        ax.set_title(title + f"\n(each step in a process capped at {cap:g} GiB of address space)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch (images / rows through the encoder)")
        ax.set_ylabel("peak RSS growth of one step (GiB)")
        ax.set_xticks(sorted({r["batch"] for r in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=3, metavar=("MODEL", "BATCH", "CHUNK"))
    parser.add_argument("--quick", action="store_true", help="small batches only")
    parser.add_argument("--only", choices=("mlp", "resnet18"), help="one model")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--replot", action="store_true", help="only redraw the plot from --out")
    args = parser.parse_args()

    if args.case:
        model, batch, chunk = args.case[0], int(args.case[1]), int(args.case[2])
        print(json.dumps(run_case(model, batch, chunk)))
        return
    if args.replot:
        plot(json.loads(args.out.read_text())["results"], args.plot)
        print(f"wrote {args.plot}")
        return

    cases = QUICK if args.quick else FULL
    if args.only:
        cases = [c for c in cases if c[0] == args.only]
    results = []
    for model, batch, chunk in cases:
        result = _run(model, batch, chunk, args.timeout)
        print(json.dumps({k: v for k, v in result.items() if k != "stderr_tail"}), flush=True)
        results.append(result)

    for r in results:  # memory with chunks as a fraction of the plain step's
        plain = next(
            (
                p
                for p in results
                if p["model"] == r["model"] and p["batch"] == r["batch"] and p["chunk"] == 0
            ),
            None,
        )
        if r["chunk"] and r["status"] == "ok" and plain and plain["status"] == "ok":
            r["peak_rss_growth_vs_plain"] = round(
                r["peak_rss_growth_mib"] / plain["peak_rss_growth_mib"], 3
            )
            r["step_time_vs_plain"] = round(r["step_s"] / plain["step_s"], 3)

    payload = {
        "benchmark": "chunked_value_and_grad (gradient caching): peak RSS growth and step time",
        "loss": f"simclr_loss(temperature={TEMPERATURE}, block_size={LOSS_BLOCK}), two views",
        "memory_caps_gib": CAPS_GIB,
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "note": "shared 2-core machine: step times are indicative",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    plot(results, args.plot)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
