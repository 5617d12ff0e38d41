# ---
# jupyter:
#   accelerator: TPU
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
# # SimCLR on MNIST-1D, on whatever devices this runtime has
#
# jaxmetric's trainer (`jaxmetric.train.train_and_evaluate`, the same code as
# `jaxmetric train --config=configs/simclr_mnist1d.py`) splits each global batch over **all
# devices**: one TPU chip (Colab's TPU runtime is a single v5e chip), several chips, a GPU or
# the CPU. The step runs under `jax.jit(jax.shard_map(...))`; the NT-Xent loss gathers the
# negatives of every device, so the result does not depend on the device count.
#
# Then we embed both splits with the trained encoder, measure **kNN accuracy** against raw
# signals, and draw a 2-D **map of the embeddings**. MNIST-1D (Greydanus 2020) is generated
# locally by the `mnist1d` package: nothing is downloaded.

# %% tags=["parameters"]
import sys

SMALL = False  # True: 60 training steps on a smaller batch (the tests set this)

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

from jaxmetric import metrics
from jaxmetric.plots import embedding_map_png
from jaxmetric.train import evaluate_cli, train_and_evaluate

devices = jax.devices()
print(f"{len(devices)} x {devices[0].platform} device(s):", devices)
RESULTS = {"num_devices": len(devices), "platform": devices[0].platform}

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
# ## The recipe
#
# `configs/simclr_mnist1d.py`: a 1-D CNN encoder (96 channels, 480-d features) and an MLP
# projection head to 32-d, Adam, batch 512, 2000 steps, two augmented views per signal.
# `batch_size` is the **global** batch: it must be a multiple of the device count. On a TPU
# with a large model you would also set `config.model.dtype = "bfloat16"` (parameters stay
# float32).

# %%
config = load_recipe(find_repo() / "configs" / "simclr_mnist1d.py")
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
)

# %% [markdown]
# ## Train
#
# The trainer writes checkpoints, TensorBoard events, `losses.jsonl`, `loss.png` and
# `metrics.json` into the workdir, and prints its end-of-run table (kNN and linear probe
# against the raw-signal baseline and the MNIST-1D notebook's published numbers).

# %%
workdir = tempfile.mkdtemp(prefix="jaxmetric_simclr_")
# SMALL skips the trainer's end-of-run table: the cells below measure the same.
state, train_metrics = train_and_evaluate(config, workdir, run_eval=not SMALL)

# %% [markdown]
# ## kNN on the embeddings
#
# `evaluate_cli.restore` rebuilds the model from the checkpoint (what `jaxmetric evaluate`
# does); `embed_splits` embeds both splits in evaluation mode. A kNN classifier (k = 10,
# cosine) fit on the training embeddings labels the held-out ones; no label was used in
# training. The baseline is kNN on the raw signals (Euclidean, as the MNIST-1D paper).

# %%
config, graphdef, state = evaluate_cli.restore(workdir)
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
print(f"kNN (k=10) on the raw {emb.test_inputs.shape[1]}-d signals:  {raw:.3f}")

# %% [markdown]
# ## The embedding map
#
# t-SNE of the held-out embeddings, coloured by the (unused in training) digit label. The
# command line writes the same picture, with every metric of `jaxmetric.metrics`:
# `jaxmetric evaluate --workdir <workdir>`.

# %%
from IPython.display import Image, display

path = embedding_map_png(
    emb.test_embeddings,
    emb.test_labels,
    f"{workdir}/embedding_map.png",
    method="pca" if SMALL else "tsne",
    title=f"SimCLR on MNIST-1D, step {emb.step}: held-out embeddings",
)
RESULTS["embedding_map_bytes"] = path.stat().st_size
display(Image(filename=str(path)))
