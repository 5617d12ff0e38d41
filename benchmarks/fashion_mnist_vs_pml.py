"""Fashion-MNIST metric learning: jaxmetric's trainer against PyTorch + PML, side by side.

The same run on both sides: a 3-stage CNN ([conv3x3 (no bias) -> BatchNorm ->
ReLU -> max-pool 2x2] with 32, 64, 128 channels, global average pooling, a
linear 64-d embedding; PyTorch's default init on both), pixels / 255, batches
of 128 with 16 images of each of 8 classes, Adam 1e-3, 1,000 steps, and two
losses:

- ``triplet``: triplet margin loss, margin 0.2, batch-hard mining (jaxmetric:
  ``triplet_margin_loss(mining="batch_hard")``; PML:
  ``TripletMarginLoss(margin=0.2)`` on ``BatchHardMiner()``'s triplets);
- ``multi_similarity``: ``multi_similarity_loss`` (alpha 2, beta 50, base 0.5,
  miner epsilon 0.1); PML: ``MultiSimilarityLoss()`` on
  ``MultiSimilarityMiner()``'s pairs.

jaxmetric trains with its trainer (``jaxmetric.train.train_and_evaluate`` on
``configs/{loss}_fashion_mnist.py``: the class-balanced sampler, the input
pipeline over the ArrayRecord dataset that ``python -m jaxmetric.data.prepare
fashion_mnist`` writes), PML with PyTorch (CPU) in the usual way: the arrays
in memory (read from the same IDX files), a ``DataLoader`` with PML's
``MPerClassSampler(m=16)``, the miner then the loss each step.

Each run is a subprocess (``--case``); the runs alternate between the two
sides, so a load on the machine from other work falls on both alike, and each
records ``os.getloadavg()`` before and after. Per run: time per step in the
steady state (median and mean of the step times after the first
``WARMUP_STEPS``; a step is the batch, the forward and backward pass and the
update, as each side's loop runs it), the time to the end of the first step
from the process's start (imports, data, model, compilation), and the
test-split embeddings (eval mode), saved. Both sides' embeddings are then
scored by the same evaluator, ``jaxmetric.metrics.retrieval_metrics``
(leave-one-out within the 10,000 test images, cosine: MAP@R, P@1,
R-precision), and also by PML's ``AccuracyCalculator`` (on L2-normalised
embeddings, the same ranking). Writes ``benchmarks/results/fashion_mnist_vs_pml.json``
and prints a Markdown table (mean +- standard deviation over the seeds).

    python benchmarks/fashion_mnist_vs_pml.py                  # 2 losses x 3 seeds x 2 sides
    python benchmarks/fashion_mnist_vs_pml.py --steps=20 --seeds=0 --losses=triplet
    python benchmarks/fashion_mnist_vs_pml.py --table results/fashion_mnist_vs_pml.json

Runs in ``.venv-bench`` (jaxmetric, torch, PML); ``make bench-fashion-mnist``
prepares the dataset first if it is missing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

_T0 = time.perf_counter()  # The child's start: its time to the first step counts from here.

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _subprocess_cases as cases  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fashion_mnist_vs_pml.json"
DATA_DIR = ROOT / "workdirs" / "tfds"
WORKDIR = ROOT / "workdirs" / "bench-fashion-mnist"
IDX_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
LOSSES = ("triplet", "multi_similarity")
IMPLS = ("jaxmetric", "pml")
WARMUP_STEPS = 20
METRICS = ("map_at_r", "precision_at_1", "r_precision")


def recipe(loss: str) -> Path:
    return ROOT / "configs" / f"{loss}_fashion_mnist.py"


def _steady(times: list[float]) -> dict[str, float]:
    """Median and mean seconds per step after the warm-up steps."""
    steady = times[WARMUP_STEPS:] if len(times) > WARMUP_STEPS + 1 else times[1:] or times
    return {"step_s_median": statistics.median(steady), "step_s_mean": statistics.fmean(steady)}


# --------------------------------------------------------------------------
# jaxmetric: the trainer on the recipe.


def run_jaxmetric(loss: str, seed: int, steps: int, data_dir: str, out: Path) -> dict:
    import numpy as np

    from jaxmetric.data import input_pipeline, sources
    from jaxmetric.train import create_train_state, evaluate, trainer
    from jaxmetric.train.config import load_recipe
    from jaxmetric.train.optim import make_optimizer
    from jaxmetric.train.steps import make_embed_fn

    config = load_recipe(recipe(loss))
    config.dataset.data_dir = data_dir
    config.seed = seed
    config.num_steps = steps
    t_import = time.perf_counter() - _T0
    stamps: list[float] = []
    state, _ = trainer.train_and_evaluate(
        config,
        str(out / "workdir"),
        run_eval=False,
        progress=False,
        hooks=[lambda done: stamps.append(time.perf_counter())],
    )
    # The test split's embeddings, in eval mode (running BatchNorm statistics).
    _, test = sources.load(config.dataset)
    tx, _ = make_optimizer(config.optimizer, config.batch_size, config.num_steps)
    graphdef, _ = create_train_state(config, input_pipeline.input_shape(config, test), tx)
    _, z, y, _ = evaluate.embed_split(
        config, make_embed_fn(config, graphdef), state.params, state.batch_stats, test
    )
    np.savez(out / "embeddings.npz", embeddings=z, labels=y)
    times = list(np.diff([_T0, *stamps]))
    return {"import_s": t_import, "first_step_s": stamps[0] - _T0, "step_times": times}


# --------------------------------------------------------------------------
# PyTorch + PML: the twin network and the usual loop.


def torch_cnn(widths=(32, 64, 128), embed_dim: int = 64):
    """jaxmetric's ``CNN2D`` + linear head in PyTorch: [conv3x3 (padding 1, no
    bias) -> BatchNorm2d -> ReLU -> MaxPool2d(2)] per width, the mean over
    H and W, then Linear(widths[-1], embed_dim); PyTorch's default init
    (U(+-1/sqrt(fan_in)), which ``model.init="torch"`` reproduces)."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c_in = [], 1
            for c in widths:
                layers += [
                    nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                ]
                c_in = c
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(c_in, embed_dim)

        def forward(self, x):
            return self.head(torch.mean(self.features(x), dim=(2, 3)))

    return Net()


def run_pml(loss: str, seed: int, steps: int, idx_dir: str, out: Path) -> dict:
    import numpy as np
    import torch
    from pytorch_metric_learning import losses, miners, samplers

    from jaxmetric.data.prepare import read_idx

    t_import = time.perf_counter() - _T0
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (MPerClassSampler draws from np.random)

    def split(prefix):
        x = read_idx(os.path.join(idx_dir, f"{prefix}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(idx_dir, f"{prefix}-labels-idx1-ubyte.gz"))
        return torch.from_numpy(x[:, None].copy()), torch.from_numpy(y.astype(np.int64))

    x_train, y_train = split("train")
    x_test, y_test = split("t10k")
    batch, m = 128, 16
    sampler = samplers.MPerClassSampler(
        y_train, m=m, batch_size=batch, length_before_new_iter=steps * batch
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x_train, y_train),
        batch_size=batch,
        sampler=sampler,
        drop_last=True,
    )
    if loss == "triplet":
        loss_fn, miner = losses.TripletMarginLoss(margin=0.2), miners.BatchHardMiner()
    else:
        loss_fn, miner = losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner(epsilon=0.1)
    model = torch_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    stamps, losses_seen = [], []
    for x, y in loader:
        emb = model(x.float() / 255.0)
        value = loss_fn(emb, y, miner(emb, y))
        opt.zero_grad()
        value.backward()
        opt.step()
        stamps.append(time.perf_counter())
        if len(stamps) % 100 == 0:
            losses_seen.append([len(stamps), float(value)])
    model.eval()
    with torch.no_grad():
        z = torch.cat([model(x_test[i : i + 1000].float() / 255.0) for i in range(0, 10_000, 1000)])
    np.savez(out / "embeddings.npz", embeddings=z.numpy(), labels=y_test.numpy())
    times = list(np.diff([_T0, *stamps]))
    return {
        "import_s": t_import,
        "first_step_s": stamps[0] - _T0,
        "step_times": times,
        "losses": losses_seen,
        "torch_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------
# Scoring, the parent, the table.


def score(path: Path) -> dict:
    """The saved embeddings scored by jaxmetric and by PML's AccuracyCalculator."""
    import numpy as np
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    from jaxmetric.metrics import retrieval_metrics

    with np.load(path) as f:
        z, y = f["embeddings"], f["labels"]
    ours = retrieval_metrics(z, y, metric="cosine")
    zn = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
    )
    theirs = calc.get_accuracy(torch.from_numpy(zn), torch.from_numpy(y))
    theirs["map_at_r"] = theirs.pop("mean_average_precision_at_r")
    return {
        "jaxmetric_evaluator": {k: float(ours[k]) for k in METRICS},
        "pml_accuracy_calculator": {k: float(theirs[k]) for k in METRICS},
    }


def child(name: str, steps: int, data_dir: str, idx_dir: str) -> dict:
    impl, seed = name.rsplit("_seed", 1)
    impl, loss = impl.split("_", 1)
    out = WORKDIR / name
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    load = os.getloadavg()
    if impl == "jaxmetric":
        result = run_jaxmetric(loss, int(seed), steps, data_dir, out)
    else:
        result = run_pml(loss, int(seed), steps, idx_dir, out)
    times = result.pop("step_times")
    return {
        "case": name,
        "impl": impl,
        "loss": loss,
        "seed": int(seed),
        "steps": steps,
        **result,
        **_steady(times),
        "step_s_first10": times[:10],
        "loadavg_before": load,
        "loadavg_after": os.getloadavg(),
        "embeddings": str(out / "embeddings.npz"),
    }


def _mean_sd(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.fmean(values))} +- {fmt.format(statistics.stdev(values))}"


def table(results: list[dict]) -> str:
    lines = [
        "| loss | side | MAP@R | P@1 | R-precision | s / step (median) | first step (s) "
        "| load avg |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {"jaxmetric": "jaxmetric (trainer)", "pml": "PML + PyTorch"}
    for loss in LOSSES:
        for impl in IMPLS:
            rows = [r for r in results if r.get("loss") == loss and r.get("impl") == impl]
            rows = [r for r in rows if "error" not in r]
            if not rows:
                continue
            m = [r["scores"]["jaxmetric_evaluator"] for r in rows]
            pct = [_mean_sd([100 * s[k] for s in m], "{:.1f}") for k in METRICS]
            step = _mean_sd([r["step_s_median"] for r in rows], "{:.3f}")
            first = _mean_sd([r["first_step_s"] for r in rows], "{:.1f}")
            load = _mean_sd([r["loadavg_before"][0] for r in rows], "{:.1f}")
            seeds = ",".join(str(r["seed"]) for r in rows)
            label = f"{names[impl]}, seeds {seeds}"
            lines.append(f"| {loss} | {label} | " + " | ".join([*pct, step, first, load]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help="run one case in this process")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--losses", default=",".join(LOSSES))
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--data_dir", default=str(DATA_DIR))
    parser.add_argument("--idx_dir", default=IDX_DIR)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--table", help="print the table of a JSON file written before")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())["results"]))
        return
    flags = [f"--steps={args.steps}", f"--data_dir={args.data_dir}", f"--idx_dir={args.idx_dir}"]
    if args.case:
        print(json.dumps(child(args.case, args.steps, args.data_dir, args.idx_dir)))
        return

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "Fashion-MNIST: jaxmetric trainer vs PyTorch + PML 2.9 (same CNN, loss, "
        "sampler, optimiser, steps)",
        "date": datetime.date.today().isoformat(),
        "machine": cases.machine(),
        "note": "The runs alternate between the sides; the machine may be shared, so each "
        "records os.getloadavg() before and after it.",
        "warmup_steps": WARMUP_STEPS,
        "results": [],
    }
    # Interleaved: seed by seed, loss by loss, jaxmetric then PML.
    for seed in args.seeds.split(","):
        for loss in args.losses.split(","):
            for impl in args.impls.split(","):
                name = f"{impl}_{loss}_seed{seed}"
                result = cases.run_case(__file__, name, flags)
                if "error" not in result:
                    result["scores"] = score(Path(result["embeddings"]))
                summary = {k: v for k, v in result.items() if k != "step_s_first10"}
                print(json.dumps(summary), flush=True)
                payload["results"].append(result)
                out.write_text(json.dumps(payload, indent=2) + "\n")  # After every run.
    print(table(payload["results"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
