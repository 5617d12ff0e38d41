# ---
# jupyter:
#   accelerator: None
#   colab:
#     provenance: []
#   jupytext:
#     notebook_metadata_filter: accelerator,colab,kernelspec,language_info
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   language_info:
#     name: python
# ---

# %% [markdown]
# # Supervised metric learning: retrieval and verification
#
# Train an embedding of scikit-learn's 8x8 digits with the **triplet loss** (batch-hard
# mining on class-balanced batches) using jaxmetric's trainer and the recipe
# `configs/triplet_digits.py`, then measure it the way metric-learning papers do:
#
# - **retrieval** (each held-out image queries the others): precision@1, R-precision,
#   MAP@R, recall@K (Musgrave et al., "A Metric Learning Reality Check", 2020);
# - **verification** (are two images the same digit?): ROC AUC, TAR at a given FAR, the
#   best-accuracy threshold;
# - a **nearest-neighbour grid** to see what the numbers mean.
#
# Runs on CPU in a minute; nothing is downloaded.

# %% tags=["parameters"]
import sys

SMALL = False  # True: 150 training steps (the tests set this)

if "google.colab" in sys.modules:
    # Colab only (never in the tests): fetch jaxmetric with its configs/ and install it.
    import subprocess

    JAXMETRIC_REPO = "https://github.com/jaxmetric/jaxmetric"
    subprocess.run(["git", "clone", "-q", "--depth=1", JAXMETRIC_REPO, "/content/jaxmetric"])
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-e", "/content/jaxmetric"], check=True
    )
    sys.path.insert(0, "/content/jaxmetric")

# %%
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np

import jaxmetric
from jaxmetric import metrics
from jaxmetric.train import evaluate_cli, train_and_evaluate

print("devices:", jax.devices())
RESULTS = {}

# %%
import pathlib

from jaxmetric.train.config import load_recipe


def find_repo() -> pathlib.Path:
    """The jaxmetric checkout (for configs/): here, above here, or Colab's clone."""
    here = pathlib.Path.cwd()
    for root in (here, *here.parents, pathlib.Path("/content/jaxmetric")):
        if (root / "configs" / "default.py").exists():
            return root
    raise FileNotFoundError("configs/ not found: run this notebook inside a jaxmetric checkout.")


# %% [markdown]
# ## Train
#
# An MLP (64 -> 256 -> 128) with a linear 64-d embedding; each batch holds 8 digits x 8
# images so every anchor has positives. The trainer prints held-out MAP@R against raw
# pixels at the end.

# %%
config = load_recipe(find_repo() / "configs" / "triplet_digits.py")
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
print(f"held-out split: {z.shape[0]} images, {z.shape[1]}-d embeddings")

# %% [markdown]
# ## Retrieval
#
# Leave-one-out within the held-out split, cosine similarity. R is the number of other
# images of the query's digit; MAP@R rewards ranking all R of them first.

# %%
ret = metrics.retrieval_metrics(z, y)
raw_ret = metrics.retrieval_metrics(emb.test_inputs, y)
print(f"{'metric':14s} {'embeddings':>10s} {'raw pixels':>10s}")
for key in ("precision_at_1", "r_precision", "map_at_r", "recall_at_1", "recall_at_4"):
    print(f"{key:14s} {ret[key]:10.3f} {raw_ret[key]:10.3f}")
RESULTS.update(
    map_at_r=ret["map_at_r"],
    precision_at_1=ret["precision_at_1"],
    raw_map_at_r=raw_ret["map_at_r"],
)

# %% [markdown]
# ## Verification
#
# Every pair of held-out images, scored by cosine similarity; positive pairs show the
# same digit. TAR @ FAR = f: the fraction of positive pairs accepted at the threshold
# that accepts at most a fraction f of the negative pairs.

# %%
scores, same = metrics.verification_pairs(z, y)  # all N (N - 1) / 2 pairs
ver = metrics.verification_metrics(scores, same, far_targets=(1e-3, 1e-2, 1e-1))
raw_scores, _ = metrics.verification_pairs(emb.test_inputs, y)
raw_ver = metrics.verification_metrics(raw_scores, same, far_targets=(1e-3, 1e-2, 1e-1))
print(f"{int(same.sum())} positive and {int((~same).sum())} negative pairs")
print(f"{'metric':16s} {'embeddings':>10s} {'raw pixels':>10s}")
for key in ("roc_auc", "tar_at_far_0.001", "tar_at_far_0.01", "tar_at_far_0.1", "best_accuracy"):
    print(f"{key:16s} {ver[key]:10.3f} {raw_ver[key]:10.3f}")
print(f"best-accuracy threshold: cos >= {ver['best_accuracy_threshold']:.3f}")
RESULTS.update(roc_auc=ver["roc_auc"], raw_roc_auc=raw_ver["roc_auc"])

# %% [markdown]
# ## Nearest neighbours
#
# Each row: a held-out query (left, framed black) and its 6 nearest other held-out images
# by cosine similarity in the embedding; green frames share the query's digit, red ones do
# not.

# %%
num_queries, k = 8, 6
queries = np.random.default_rng(0).choice(len(y), num_queries, replace=False)
sim = np.array(jaxmetric.pairwise_similarities(z[queries], z, metric="cosine"))  # [8, N]
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
print(f"{100 * RESULTS['grid_hit_rate']:.0f}% of the neighbours shown share the query's digit")
