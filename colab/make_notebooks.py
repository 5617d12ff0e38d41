"""Writes the notebooks of this folder (without outputs) from the cells below.

Edit the cells here, then run ``.venv/bin/python colab/make_notebooks.py``; the
``.ipynb`` files are generated and committed. Every notebook's first code
cell holds ``SMALL = False`` (``tests/test_notebooks.py`` sets it to True to
run each notebook on CPU in seconds) and, in Colab only, the install.
"""

from __future__ import annotations

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent

# The repository a Colab runtime clones (for the library and configs/).
REPO_URL = "https://github.com/jaxmetric/jaxmetric"


def setup_cell(purpose: str) -> str:
    """The first code cell: the SMALL flag and the Colab-only install."""
    return f'''import sys

SMALL = False  # True: {purpose} (the tests set this)

if "google.colab" in sys.modules:
    # Colab only (never in the tests): fetch jaxmetric with its configs/ and install it.
    import subprocess

    JAXMETRIC_REPO = "{REPO_URL}"
    subprocess.run(["git", "clone", "-q", "--depth=1", JAXMETRIC_REPO, "/content/jaxmetric"])
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-e", "/content/jaxmetric"], check=True
    )
    sys.path.insert(0, "/content/jaxmetric")'''


FIND_REPO = '''import importlib.util
import pathlib


def find_repo() -> pathlib.Path:
    """The jaxmetric checkout (for configs/): here, above here, or Colab's clone."""
    here = pathlib.Path.cwd()
    for root in (here, *here.parents, pathlib.Path("/content/jaxmetric")):
        if (root / "configs" / "default.py").exists():
            return root
    raise FileNotFoundError("configs/ not found: run this notebook inside a jaxmetric checkout.")


def load_recipe(name: str):
    """``get_config()`` of configs/<name>.py."""
    spec = importlib.util.spec_from_file_location(name, find_repo() / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()'''


def quickstart() -> list:
    return [
        new_markdown_cell(
            """# jaxmetric quickstart: metric-learning losses in your own Flax model

jaxmetric's losses are pure functions of arrays: `loss(embeddings, labels, ...) -> scalar`.
They need none of jaxmetric's models, trainers or configs, so they drop into any
JAX training loop. This notebook

1. calls a few losses on plain arrays,
2. trains a **Flax NNX** model with the triplet loss (batch-hard mining),
3. trains a **Flax Linen** model with supervised NT-Xent,
4. explains **mining**: which negatives are hard, semi-hard and easy for one anchor.

It runs on CPU in about a minute (any runtime works; no accelerator needed)."""
        ),
        new_code_cell(setup_cell("fewer training steps"), metadata={"tags": ["parameters"]}),
        new_code_cell(
            """import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import jaxmetric
from jaxmetric import metrics

print("jax", jax.__version__, "| devices:", jax.devices())
RESULTS = {}  # numbers the tests check"""
        ),
        new_markdown_cell(
            """## 1. A loss is a function of arrays

Embeddings `[B, D]` (float32, bfloat16 or float16) and integer labels `[B]` in, a float32
scalar out. Hyper-parameters are keyword-only Python values, so everything is `jit`-able
and differentiable."""
        ),
        new_code_cell(
            """emb = jax.random.normal(jax.random.key(0), (32, 16))
labels = jnp.arange(32) % 4


@jax.jit  # one compilation for all of them (each would also work on its own, jitted or not)
def some_losses(emb, labels):
    return {
        "triplet, batch-hard": jaxmetric.triplet_margin_loss(emb, labels, mining="batch_hard"),
        "triplet, semi-hard": jaxmetric.triplet_margin_loss(emb, labels, mining="semi_hard"),
        "contrastive": jaxmetric.contrastive_loss(emb, labels),
        "NT-Xent with labels": jaxmetric.ntxent_loss(emb, labels, temperature=0.1),
        "multi-similarity": jaxmetric.multi_similarity_loss(emb, labels),
        "gradient of triplet": jax.grad(jaxmetric.triplet_margin_loss)(emb, labels),
    }


for name, value in some_losses(emb, labels).items():
    if value.ndim:
        print(f"{name:22s} shape {value.shape}, finite: {bool(jnp.all(jnp.isfinite(value)))}")
    else:
        print(f"{name:22s} {float(value):.4f}")"""
        ),
        new_markdown_cell(
            """## 2. Data: scikit-learn's 8x8 digits

1,797 images of 10 digits, bundled with scikit-learn (nothing to download), split in
half per class. We score embeddings by **MAP@R** on the held-out half (leave-one-out:
each test image queries all the others; Musgrave et al. 2020), with
`jaxmetric.metrics.retrieval_metrics`. Raw pixels are the baseline."""
        ),
        new_code_cell(
            """from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

digits = load_digits()
x = (digits.data / 16.0).astype(np.float32)  # [1797, 64], pixels in [0, 1]
y = digits.target.astype(np.int32)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, random_state=0, stratify=y)
STEPS = 100 if SMALL else 600
BATCH = 128


def batches(seed=0):
    \"\"\"Random batches of the training half (each holds ~13 images per digit).\"\"\"
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.choice(len(x_train), BATCH, replace=False)
        yield x_train[idx], y_train[idx]


def map_at_r(embeddings):
    return metrics.retrieval_metrics(embeddings, y_test)["map_at_r"]


RESULTS["raw_map_at_r"] = map_at_r(x_test)
print(f"raw pixels: held-out MAP@R {RESULTS['raw_map_at_r']:.3f}")"""
        ),
        new_markdown_cell(
            """## 3. A Flax NNX model with the triplet loss

An ordinary NNX module; the loss is called on its output inside the loss function.
`mining="batch_hard"` takes, for every anchor, its farthest positive and closest negative
in the batch (Hermans et al. 2017)."""
        ),
        new_code_cell(
            """class Embedder(nnx.Module):
    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(din, 256, rngs=rngs)
        self.out = nnx.Linear(256, dout, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


model = Embedder(64, 64, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, x, labels):
    def loss_fn(model):
        return jaxmetric.triplet_margin_loss(model(x), labels, margin=0.2, mining="batch_hard")

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


RESULTS["nnx_map_at_r_before"] = map_at_r(model(x_test))
for step, (xb, yb) in zip(range(1, STEPS + 1), batches(seed=0), strict=False):
    loss = train_step(model, optimizer, xb, yb)
    if step % (STEPS // 4) == 0:
        print(f"step {step:4d}  triplet loss {float(loss):.4f}")
RESULTS["nnx_map_at_r"] = map_at_r(model(x_test))
print(
    f"NNX + triplet: held-out MAP@R {RESULTS['nnx_map_at_r_before']:.3f} (untrained) "
    f"-> {RESULTS['nnx_map_at_r']:.3f}"
)"""
        ),
        new_markdown_cell(
            """## 4. A Flax Linen model with supervised NT-Xent

The same idea with Linen's `init` / `apply` and a plain optax loop. `ntxent_loss` with
labels treats every other image of the same digit as a positive."""
        ),
        new_code_cell(
            """class LinenEmbedder(nn.Module):
    dim: int = 64

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.dim)(nn.relu(nn.Dense(256)(x)))


linen_model = LinenEmbedder()
params = linen_model.init(jax.random.key(1), x_train[:1])
tx = optax.adam(1e-3)
opt_state = tx.init(params)


@jax.jit
def linen_step(params, opt_state, x, labels):
    def loss_fn(params):
        return jaxmetric.ntxent_loss(linen_model.apply(params, x), labels, temperature=0.1)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


RESULTS["linen_map_at_r_before"] = map_at_r(linen_model.apply(params, x_test))
for step, (xb, yb) in zip(range(1, STEPS + 1), batches(seed=1), strict=False):
    params, opt_state, loss = linen_step(params, opt_state, xb, yb)
    if step % (STEPS // 4) == 0:
        print(f"step {step:4d}  NT-Xent loss {float(loss):.4f}")
RESULTS["linen_map_at_r"] = map_at_r(linen_model.apply(params, x_test))
print(
    f"Linen + NT-Xent: held-out MAP@R {RESULTS['linen_map_at_r_before']:.3f} (untrained) "
    f"-> {RESULTS['linen_map_at_r']:.3f}"
)"""
        ),
        new_markdown_cell(
            """## 5. Mining: hard, semi-hard and easy negatives

For an anchor *a* and a positive *p* (same label), a negative *n* (another label) is

- **hard** if it is closer to the anchor than the positive: d(a, n) < d(a, p);
- **semi-hard** if it is farther, but within the margin: d(a, p) < d(a, n) < d(a, p) + margin
  (FaceNet, Schroff et al. 2015);
- **easy** otherwise: its triplet already has zero loss and gives no gradient.

`jaxmetric.mining` returns these sets as fixed-shape boolean masks `[anchor, positive, negative]`
(never a variable-length list, so they work under `jit` and `shard_map`). Below, a toy batch
of 2-D embeddings; the anchor's positive is its farthest one (the batch-hard positive)."""
        ),
        new_code_cell(
            """rng = np.random.default_rng(13)
centers = np.array([[0.0, 0.0], [1.6, 0.2], [0.6, 1.5]])
toy_labels = np.repeat(np.arange(3), 12)
toy = (centers[toy_labels] + 0.45 * rng.normal(size=(36, 2))).astype(np.float32)
margin = 0.5


@jax.jit
def mine(points, labels):
    dist = jaxmetric.pairwise_distances(points)  # euclidean, [36, 36]
    pos, neg = jaxmetric.mining.pair_masks(labels)  # [36, 36] bool each
    hard = jaxmetric.mining.hard_triplet_mask(dist, pos, neg)  # [36, 36, 36]: [a, p, n]
    semi = jaxmetric.mining.semi_hard_triplet_mask(dist, pos, neg, margin=margin)
    p_idx, n_idx, ok = jaxmetric.mining.batch_hard(dist, pos, neg)  # [36] each
    return dist, pos, neg, hard, semi, p_idx, n_idx


dist, pos, neg, hard, semi, p_idx, n_idx = mine(toy, toy_labels)

a = int(np.argmin(np.linalg.norm(toy[:12] - centers[0], axis=1)))  # central in class 0
p = int(p_idx[a])  # its farthest positive
kind = np.where(
    np.asarray(hard[a, p]), "hard", np.where(np.asarray(semi[a, p]), "semi-hard", "easy")
)
negatives = np.flatnonzero(np.asarray(neg[a]))
counts = {k: int(np.sum(kind[negatives] == k)) for k in ("hard", "semi-hard", "easy")}
RESULTS["mining_counts"] = counts
RESULTS["num_negatives"] = len(negatives)
print(f"anchor {a}, positive {p}: d(a, p) = {float(dist[a, p]):.2f}, margin {margin}")
print("negatives:", counts, "| batch-hard negative:", int(n_idx[a]))

fig, ax = plt.subplots(figsize=(6, 6))
colors = {"hard": "tab:red", "semi-hard": "tab:orange", "easy": "tab:gray"}
for k, c in colors.items():
    sel = negatives[kind[negatives] == k]
    ax.scatter(toy[sel, 0], toy[sel, 1], c=c, s=40, label=f"{k} negative ({len(sel)})")
same = np.flatnonzero(np.asarray(pos[a]))
ax.scatter(toy[same, 0], toy[same, 1], c="tab:blue", s=40, label="positive")
ax.scatter(*toy[a], marker="*", s=300, c="black", label="anchor")
ax.plot(*zip(toy[a], toy[p], strict=True), c="tab:blue", lw=2, label="batch-hard positive")
ax.scatter(
    *toy[int(n_idx[a])],
    s=160,
    facecolors="none",
    edgecolors="black",
    lw=2,
    label="batch-hard negative",
)
for r, style in ((float(dist[a, p]), "-"), (float(dist[a, p]) + margin, "--")):
    ax.add_patch(plt.Circle(toy[a], r, fill=False, ls=style, color="black", alpha=0.5))
ax.set_aspect("equal")
ax.set_title("d(a, p) (solid) and d(a, p) + margin (dashed) around the anchor")
ax.legend(loc="upper left", fontsize="small", bbox_to_anchor=(1.0, 1.0))
plt.show()"""
        ),
        new_markdown_cell(
            """`triplet_margin_loss(..., mining=...)` uses exactly these masks: `"all"` every valid
triplet, `"hard"` the red ones, `"semi_hard"` the orange ones, `"batch_hard"` one triplet per
anchor (farthest positive, closest negative). Next: `simclr_tpu.ipynb` (self-supervised
training with jaxmetric's trainer on any devices) and `metric_learning_retrieval.ipynb`
(retrieval and verification numbers)."""
        ),
    ]


def simclr_tpu() -> list:
    return [
        new_markdown_cell(
            """# SimCLR on MNIST-1D, on whatever devices this runtime has

jaxmetric's trainer (`jaxmetric.train.train_and_evaluate`, the same code as
`jaxmetric train --config=configs/simclr_mnist1d.py`) splits each global batch over **all
devices**: one TPU chip (Colab's TPU runtime is a single v5e chip), several chips, a GPU or
the CPU. The step runs under `jax.jit(jax.shard_map(...))`; the NT-Xent loss gathers the
negatives of every device, so the result does not depend on the device count.

Then we embed both splits with the trained encoder, measure **kNN accuracy** against raw
signals, and draw a 2-D **map of the embeddings**. MNIST-1D (Greydanus 2020) is generated
locally by the `mnist1d` package: nothing is downloaded."""
        ),
        new_code_cell(
            setup_cell("60 training steps on a smaller batch"), metadata={"tags": ["parameters"]}
        ),
        new_code_cell(
            """import tempfile

import jax

from jaxmetric import metrics
from jaxmetric.plots import embedding_map_png
from jaxmetric.train import evaluate_cli, train_and_evaluate

devices = jax.devices()
print(f"{len(devices)} x {devices[0].platform} device(s):", devices)
RESULTS = {"num_devices": len(devices), "platform": devices[0].platform}"""
        ),
        new_code_cell(FIND_REPO),
        new_markdown_cell(
            """## The recipe

`configs/simclr_mnist1d.py`: a 1-D CNN encoder (125-d features) and an MLP projection head
to 16-d, Adam, batch 512, 2000 steps, two augmented views per signal. `batch_size` is the
**global** batch: it must be a multiple of the device count. On a TPU with a large model you
would also set `config.model.dtype = "bfloat16"` (parameters stay float32)."""
        ),
        new_code_cell(
            """config = load_recipe("simclr_mnist1d")
if SMALL:
    config.num_steps = 60
    config.batch_size = 256
    config.log_every = 20
    config.optimizer.learning_rate = 1e-3  # the recipe's 1e-2 pays off over 2000 steps, not 60
    config.eval.max_examples = 1000  # of each split
if config.batch_size % len(devices):
    config.batch_size = (config.batch_size // len(devices) + 1) * len(devices)
print(
    f"SimCLR: {config.num_steps} steps, global batch {config.batch_size} "
    f"({config.batch_size // len(devices)} per device), temperature {config.simclr.temperature}"
)"""
        ),
        new_markdown_cell(
            """## Train

The trainer writes checkpoints, TensorBoard events, `losses.jsonl`, `loss.png` and
`metrics.json` into the workdir, and prints its end-of-run table (kNN and linear probe
against the raw-signal baseline and the MNIST-1D notebook's published numbers)."""
        ),
        new_code_cell(
            """workdir = tempfile.mkdtemp(prefix="jaxmetric_simclr_")
# SMALL skips the trainer's end-of-run table: the cells below measure the same.
state, train_metrics = train_and_evaluate(config, workdir, run_eval=not SMALL)"""
        ),
        new_markdown_cell(
            """## kNN on the embeddings

`evaluate_cli.restore` rebuilds the model from the checkpoint (what `jaxmetric evaluate`
does); `embed_splits` embeds both splits in evaluation mode. A kNN classifier (k = 10,
cosine) fit on the training embeddings labels the held-out ones; no label was used in
training. The baseline is kNN on the raw signals (Euclidean, as the MNIST-1D paper)."""
        ),
        new_code_cell(
            """config, graphdef, state = evaluate_cli.restore(workdir)
emb = evaluate_cli.embed_splits(config, graphdef, state)
knn = metrics.knn_accuracy(
    emb.train_embeddings, emb.train_labels, emb.test_embeddings, emb.test_labels, k=10
)
knn_features = metrics.knn_accuracy(
    emb.train_features, emb.train_labels, emb.test_features, emb.test_labels, k=10
)
raw = metrics.knn_accuracy(
    emb.train_inputs, emb.train_labels, emb.test_inputs, emb.test_labels, k=10, metric="euclidean"
)
RESULTS.update(knn_accuracy=knn, knn_accuracy_features=knn_features, raw_knn_accuracy=raw)
print(f"kNN (k=10) on the {emb.test_embeddings.shape[1]}-d embeddings: {knn:.3f}")
print(f"kNN (k=10) on the {emb.test_features.shape[1]}-d encoder features: {knn_features:.3f}")
print(f"kNN (k=10) on the raw {emb.test_inputs.shape[1]}-d signals:  {raw:.3f}")"""
        ),
        new_markdown_cell(
            """## The embedding map

t-SNE of the held-out embeddings, coloured by the (unused in training) digit label. The
command line writes the same picture, with every metric of `jaxmetric.metrics`:
`jaxmetric evaluate --workdir <workdir>`."""
        ),
        new_code_cell(
            """from IPython.display import Image, display

path = embedding_map_png(
    emb.test_embeddings,
    emb.test_labels,
    f"{workdir}/embedding_map.png",
    method="pca" if SMALL else "tsne",
    title=f"SimCLR on MNIST-1D, step {emb.step}: held-out embeddings",
)
RESULTS["embedding_map_bytes"] = path.stat().st_size
display(Image(filename=str(path)))"""
        ),
    ]


def metric_learning_retrieval() -> list:
    return [
        new_markdown_cell(
            """# Supervised metric learning: retrieval and verification

Train an embedding of scikit-learn's 8x8 digits with the **triplet loss** (batch-hard
mining on class-balanced batches) using jaxmetric's trainer and the recipe
`configs/triplet_digits.py`, then measure it the way metric-learning papers do:

- **retrieval** (each held-out image queries the others): precision@1, R-precision,
  MAP@R, recall@K (Musgrave et al., "A Metric Learning Reality Check", 2020);
- **verification** (are two images the same digit?): ROC AUC, TAR at a given FAR, the
  best-accuracy threshold;
- a **nearest-neighbour grid** to see what the numbers mean.

Runs on CPU in a minute; nothing is downloaded."""
        ),
        new_code_cell(setup_cell("150 training steps"), metadata={"tags": ["parameters"]}),
        new_code_cell(
            """import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np

from jaxmetric import metrics
from jaxmetric.train import evaluate_cli, train_and_evaluate

print("devices:", jax.devices())
RESULTS = {}"""
        ),
        new_code_cell(FIND_REPO),
        new_markdown_cell(
            """## Train

An MLP (64 -> 256 -> 128) with a linear 64-d embedding; each batch holds 8 digits x 8
images so every anchor has positives. The trainer prints held-out MAP@R against raw
pixels at the end."""
        ),
        new_code_cell(
            """config = load_recipe("triplet_digits")
if SMALL:
    config.num_steps = 150
    config.log_every = 50
    config.eval.max_examples = 400  # of each split
workdir = tempfile.mkdtemp(prefix="jaxmetric_triplet_")
# SMALL skips the trainer's end-of-run table: the cells below measure the same.
state, train_metrics = train_and_evaluate(config, workdir, run_eval=not SMALL)
config, graphdef, state = evaluate_cli.restore(workdir)
emb = evaluate_cli.embed_splits(config, graphdef, state)
z, y = emb.test_embeddings, emb.test_labels
print(f"held-out split: {z.shape[0]} images, {z.shape[1]}-d embeddings")"""
        ),
        new_markdown_cell(
            """## Retrieval

Leave-one-out within the held-out split, cosine similarity. R is the number of other
images of the query's digit; MAP@R rewards ranking all R of them first."""
        ),
        new_code_cell(
            """ret = metrics.retrieval_metrics(z, y)
raw_ret = metrics.retrieval_metrics(emb.test_inputs, y)
print(f"{'metric':14s} {'embeddings':>10s} {'raw pixels':>10s}")
for key in ("precision_at_1", "r_precision", "map_at_r", "recall_at_1", "recall_at_4"):
    print(f"{key:14s} {ret[key]:10.3f} {raw_ret[key]:10.3f}")
RESULTS.update(
    map_at_r=ret["map_at_r"],
    precision_at_1=ret["precision_at_1"],
    raw_map_at_r=raw_ret["map_at_r"],
)"""
        ),
        new_markdown_cell(
            """## Verification

Every pair of held-out images, scored by cosine similarity; positive pairs show the
same digit. TAR @ FAR = f: the fraction of positive pairs accepted at the threshold
that accepts at most a fraction f of the negative pairs."""
        ),
        new_code_cell(
            """scores, same = metrics.verification_pairs(z, y)  # all N (N - 1) / 2 pairs
ver = metrics.verification_metrics(scores, same, far_targets=(1e-3, 1e-2, 1e-1))
raw_scores, _ = metrics.verification_pairs(emb.test_inputs, y)
raw_ver = metrics.verification_metrics(raw_scores, same, far_targets=(1e-3, 1e-2, 1e-1))
print(f"{int(same.sum())} positive and {int((~same).sum())} negative pairs")
print(f"{'metric':16s} {'embeddings':>10s} {'raw pixels':>10s}")
for key in ("roc_auc", "tar_at_far_0.001", "tar_at_far_0.01", "tar_at_far_0.1", "best_accuracy"):
    print(f"{key:16s} {ver[key]:10.3f} {raw_ver[key]:10.3f}")
print(f"best-accuracy threshold: cos >= {ver['best_accuracy_threshold']:.3f}")
RESULTS.update(roc_auc=ver["roc_auc"], raw_roc_auc=raw_ver["roc_auc"])"""
        ),
        new_markdown_cell(
            """## Nearest neighbours

Each row: a held-out query (left, framed black) and its 6 nearest other held-out images
by cosine similarity in the embedding; green frames share the query's digit, red ones do
not."""
        ),
        new_code_cell(
            """num_queries, k = 8, 6
queries = np.random.default_rng(0).choice(len(y), num_queries, replace=False)
unit = z / np.linalg.norm(z, axis=1, keepdims=True)
sim = unit[queries] @ unit.T
sim[np.arange(num_queries), queries] = -np.inf  # leave the query itself out
neighbours = np.argsort(-sim, axis=1, kind="stable")[:, :k]
images = emb.test_inputs.reshape(-1, 8, 8)

fig, axes = plt.subplots(num_queries, k + 1, figsize=(1.2 * (k + 1), 1.2 * num_queries))
for row, (q, nbrs) in enumerate(zip(queries, neighbours, strict=True)):
    for col, idx in enumerate([q, *nbrs]):
        ax = axes[row, col]
        ax.imshow(images[idx], cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        color = "black" if col == 0 else ("tab:green" if y[idx] == y[q] else "tab:red")
        for spine in ax.spines.values():
            spine.set_color(color)
            spine.set_linewidth(3)
axes[0, 0].set_title("query", fontsize=9)
for col in range(1, k + 1):
    axes[0, col].set_title(f"#{col}", fontsize=9)
fig.tight_layout()
plt.show()
RESULTS["grid_hit_rate"] = float(np.mean(y[neighbours] == y[queries][:, None]))
print(f"{100 * RESULTS['grid_hit_rate']:.0f}% of the neighbours shown share the query's digit")"""
        ),
    ]


NOTEBOOKS = {
    "quickstart.ipynb": quickstart,
    "simclr_tpu.ipynb": simclr_tpu,
    "metric_learning_retrieval.ipynb": metric_learning_retrieval,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` (no outputs)."""
    nb = new_notebook(cells=NOTEBOOKS[name]())
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating gives the same file
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["accelerator"] = "TPU" if name == "simclr_tpu.ipynb" else "None"
    nb.metadata["colab"] = {"provenance": []}
    return nb


def main() -> None:
    for name in NOTEBOOKS:
        nb = build(name)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
