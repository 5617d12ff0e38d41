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
# - a **searchable gallery** (`jaxmetric.search.Index`) and its nearest-neighbour grid;
# - **open-set matching**: a calibrated threshold that answers "no match" for a digit the
#   gallery has never seen.
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
# ## A searchable gallery
#
# `jaxmetric.search.Index` holds a gallery of embeddings with their labels and finds the
# k nearest gallery rows of each query exactly (blockwise, on the accelerator; sharded
# over devices with `mesh=`), and saves / loads atomically. Here the gallery is the
# training split and the queries are held-out images. Each row: a query (left, framed
# black) and its 6 nearest gallery images; green frames share the query's digit, red
# ones do not.

# %%
from jaxmetric.search import Index

gallery = Index(z.shape[1], metric="cosine")
gallery.add(emb.train_embeddings, labels=emb.train_labels)
gallery.save(f"{workdir}/gallery.npz")
gallery = Index.load(f"{workdir}/gallery.npz")

num_queries, k = 8, 6
queries = np.random.default_rng(0).choice(len(y), num_queries, replace=False)
dist, neighbours, neighbour_labels = gallery.search(z[queries], k)
query_images = emb.test_inputs.reshape(-1, 8, 8)
gallery_images = emb.train_inputs.reshape(-1, 8, 8)

fig, axes = plt.subplots(num_queries, k + 1, figsize=(1.2 * (k + 1), 1.2 * num_queries))
for row, q in enumerate(queries):
    for col in range(k + 1):
        ax = axes[row, col]
        image = query_images[q] if col == 0 else gallery_images[neighbours[row, col - 1]]
        ax.imshow(image, cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
        hit = col > 0 and neighbour_labels[row, col - 1] == y[q]
        color = "black" if col == 0 else ("tab:green" if hit else "tab:red")
        for spine in ax.spines.values():
            spine.set_color(color)
            spine.set_linewidth(3)
axes[0, 0].set_title("query", fontsize=9)
for col in range(1, k + 1):
    axes[0, col].set_title(f"#{col}", fontsize=9)
fig.tight_layout()
plt.show()
RESULTS["grid_hit_rate"] = float(np.mean(neighbour_labels == y[queries][:, None]))
print(f"{100 * RESULTS['grid_hit_rate']:.0f}% of the neighbours shown share the query's digit")

# %% [markdown]
# ## Open-set matching: "no match"
#
# Identification in the open world: a query whose identity is not in the gallery must
# be rejected, not given the nearest wrong label. Leave digit 9 out of the gallery,
# calibrate a distance threshold on pairs of the training split (`metrics.calibrate`:
# the largest threshold with FAR <= 1% there, with a bootstrap interval), and match the
# held-out images: `metrics.match` returns the nearest gallery row's label when it lies
# within the threshold, else -1. `metrics.open_set_identification` reports the FRVT 1:N
# figures: FPIR (unknown queries accepted) and FNIR (known queries missed).

# %%
UNKNOWN = 9
known = emb.train_labels != UNKNOWN
open_gallery = Index(z.shape[1], metric="cosine")
open_gallery.add(emb.train_embeddings[known], labels=emb.train_labels[known])

train_scores, train_same = metrics.verification_pairs(
    emb.train_embeddings[known], emb.train_labels[known], num_pairs=20_000
)
cal = metrics.calibrate(1.0 - np.asarray(train_scores), train_same, target_far=0.01)
print(
    f"threshold: cosine distance <= {cal.threshold:.3f}; on the calibration pairs "
    f"FAR {cal.far:.4f} {tuple(round(v, 4) for v in cal.far_interval)}, TAR {cal.tar:.3f}"
)
matched = metrics.match(open_gallery, z, cal.threshold)
is_unknown = y == UNKNOWN
RESULTS["unknown_rejected"] = float(np.mean(matched[is_unknown] == -1))
RESULTS["known_correct"] = float(np.mean(matched[~is_unknown] == y[~is_unknown]))
print(f"digit {UNKNOWN} (not in the gallery): {100 * RESULTS['unknown_rejected']:.0f}% get -1")
print(f"other digits: {100 * RESULTS['known_correct']:.0f}% get their own label")
frvt = metrics.open_set_identification(open_gallery, z, y, threshold=cal.threshold)
print({k: round(v, 3) if isinstance(v, float) else v for k, v in frvt.items()})
