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
# # jaxmetric quickstart: metric-learning losses in your own Flax model
#
# jaxmetric's losses are pure functions of arrays: `loss(embeddings, labels, ...) -> scalar`.
# They need none of jaxmetric's models, trainers or configs, so they drop into any
# JAX training loop. This notebook
#
# 1. calls a few losses on plain arrays,
# 2. trains a **Flax NNX** model with the triplet loss (batch-hard mining),
# 3. trains a **Flax Linen** model with supervised NT-Xent,
# 4. explains **mining**: which negatives are hard, semi-hard and easy for one anchor,
# 5. trains the same model with **six losses** (one of them self-supervised) and compares
#    them on held-out retrieval,
# 6. trains **data-parallel** under `jax.jit(jax.shard_map(...))` and checks that the loss
#    and its gradient equal those of one device.
#
# It runs on CPU in a few minutes (any runtime works; no accelerator needed).

# %% tags=["parameters"]
import sys

SMALL = False  # True: fewer training steps (the tests set this)

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
import jax

# Without an accelerator, split the CPU into 4 devices so that section 7 has devices to
# shard over. This must run before JAX starts; a TPU or GPU runtime keeps its own devices.
jax.config.update("jax_num_cpu_devices", 4)

# %%
import functools
import itertools
import math

import flax.linen as nn
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

import jaxmetric
from jaxmetric import augment, data, metrics

print("jax", jax.__version__, "| devices:", jax.devices())
RESULTS = {}  # numbers the tests check

# %% [markdown]
# ## 1. A loss is a function of arrays
#
# Embeddings `[B, D]` (float32, bfloat16 or float16) and integer labels `[B]` in, a float32
# scalar out. Hyper-parameters are keyword-only Python values, so everything is `jit`-able
# and differentiable.

# %%
emb = jax.random.normal(jax.random.key(0), (32, 16))
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
        print(f"{name:22s} {float(value):.4f}")

# %% [markdown]
# ## 2. Data: scikit-learn's 8x8 digits
#
# 1,797 images of 10 digits, bundled with scikit-learn (nothing to download), split in
# half per class by `jaxmetric.data.digits`. Training batches come from
# `jaxmetric.data.class_balanced_batches`: 8 digits x 16 images each, so every anchor has
# positives. We score embeddings by **MAP@R** and **precision@1** on the held-out half
# (leave-one-out: each test image queries all the others; Musgrave et al. 2020), with
# `jaxmetric.metrics.retrieval_metrics`, the function the trainer and `jaxmetric evaluate`
# use. Raw pixels are the baseline.

# %%
train, test = data.digits(test_fraction=0.5, seed=0)  # images [N, 8, 8] in [0, 1], labels [N]
x_train, y_train = train.x.reshape(len(train), 64), train.y
x_test, y_test = test.x.reshape(len(test), 64), test.y
STEPS = 100 if SMALL else 600
BATCH = 128


def batches(seed=0):
    """Endless class-balanced batches of the training half: 8 digits x 16 images."""
    for idx in data.class_balanced_batches(y_train, BATCH, samples_per_class=16, seed=seed):
        yield x_train[idx], y_train[idx]


raw = metrics.retrieval_metrics(x_test, y_test)
RESULTS["raw_map_at_r"] = raw["map_at_r"]
RESULTS["raw_precision_at_1"] = raw["precision_at_1"]
print(f"{len(y_train)} training and {len(y_test)} held-out images")
print(f"raw pixels: held-out MAP@R {raw['map_at_r']:.3f}, precision@1 {raw['precision_at_1']:.3f}")

# %% [markdown]
# ## 3. A Flax NNX model with the triplet loss
#
# An ordinary NNX module; the loss is called on its output inside the loss function.
# `mining="batch_hard"` takes, for every anchor, its farthest positive and closest negative
# in the batch (Hermans et al. 2017).


# %%
class Embedder(nnx.Module):
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


RESULTS["nnx_map_at_r_before"] = metrics.retrieval_metrics(model(x_test), y_test)["map_at_r"]
for step, (xb, yb) in zip(range(1, STEPS + 1), batches(seed=0), strict=False):
    loss = train_step(model, optimizer, xb, yb)
    if step % (STEPS // 4) == 0:
        print(f"step {step:4d}  triplet loss {float(loss):.4f}")
RESULTS["nnx_map_at_r"] = metrics.retrieval_metrics(model(x_test), y_test)["map_at_r"]
print(
    f"NNX + triplet: held-out MAP@R {RESULTS['nnx_map_at_r_before']:.3f} (untrained) "
    f"-> {RESULTS['nnx_map_at_r']:.3f}"
)

# %% [markdown]
# ## 4. A Flax Linen model with supervised NT-Xent
#
# The same idea with Linen's `init` / `apply` and a plain optax loop. `ntxent_loss` with
# labels treats every other image of the same digit as a positive.


# %%
class LinenEmbedder(nn.Module):
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


def linen_map_at_r(params):
    return metrics.retrieval_metrics(linen_model.apply(params, x_test), y_test)["map_at_r"]


RESULTS["linen_map_at_r_before"] = linen_map_at_r(params)
for step, (xb, yb) in zip(range(1, STEPS + 1), batches(seed=1), strict=False):
    params, opt_state, loss = linen_step(params, opt_state, xb, yb)
    if step % (STEPS // 4) == 0:
        print(f"step {step:4d}  NT-Xent loss {float(loss):.4f}")
RESULTS["linen_map_at_r"] = linen_map_at_r(params)
print(
    f"Linen + NT-Xent: held-out MAP@R {RESULTS['linen_map_at_r_before']:.3f} (untrained) "
    f"-> {RESULTS['linen_map_at_r']:.3f}"
)

# %% [markdown]
# ## 5. Mining: hard, semi-hard and easy negatives
#
# For an anchor *a* and a positive *p* (same label), a negative *n* (another label) is
#
# - **hard** if it is closer to the anchor than the positive: d(a, n) < d(a, p);
# - **semi-hard** if it is farther, but within the margin: d(a, p) < d(a, n) < d(a, p) + margin
#   (FaceNet, Schroff et al. 2015);
# - **easy** otherwise: its triplet already has zero loss and gives no gradient.
#
# `jaxmetric.mining` returns these sets as fixed-shape boolean masks `[anchor, positive, negative]`
# (never a variable-length list, so they work under `jit` and `shard_map`). Below, a toy batch
# of 2-D embeddings; the anchor's positive is its farthest one (the batch-hard positive).

# %%
rng = np.random.default_rng(13)
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
plt.show()

# %% [markdown]
# `triplet_margin_loss(..., mining=...)` uses exactly these masks: `"all"` every valid
# triplet, `"hard"` the red ones, `"semi_hard"` the orange ones, `"batch_hard"` one triplet per
# anchor (farthest positive, closest negative).
#
# ## 6. Which loss? Six of them on the same model and data
#
# One training loop, the objective swapped: a fresh `Embedder` per loss, the same batches,
# the same number of steps. Five losses use the labels; **SimCLR** does not: it pulls
# together two random views of each image and pushes apart those of the other images of
# the batch. A view here is a random crop of 60% to all of the image
# (`jaxmetric.augment.random_resized_crop`, resized back to 8x8) plus a little pixel noise.
# Each objective is `(model, x, labels, key) -> scalar`.


# %%
def views(key, x):
    """A random view of each image of x [B, 64]: a crop resized back to 8x8, plus noise."""
    k_crop, k_noise = jax.random.split(key)

    def crop(k, image):
        return augment.random_resized_crop(k, image.reshape(8, 8, 1), 8, scale=(0.6, 1.0))

    cropped = jax.vmap(crop)(jax.random.split(k_crop, x.shape[0]), x).reshape(x.shape)
    return cropped + 0.1 * jax.random.normal(k_noise, x.shape)


def simclr(model, x, labels, key):  # labels unused
    k1, k2 = jax.random.split(key)
    return jaxmetric.simclr_loss(model(views(k1, x)), model(views(k2, x)), temperature=0.5)


def supervised(loss):
    """(embeddings, labels) -> scalar, as an objective (model, x, labels, key) -> scalar."""
    return lambda model, x, labels, key: loss(model(x), labels)


OBJECTIVES = {
    "triplet, batch-hard (margin 0.2)": supervised(
        functools.partial(jaxmetric.triplet_margin_loss, margin=0.2, mining="batch_hard")
    ),
    "triplet, semi-hard (margin 0.2)": supervised(
        functools.partial(jaxmetric.triplet_margin_loss, margin=0.2, mining="semi_hard")
    ),
    "contrastive (margins 0 / 1)": supervised(jaxmetric.contrastive_loss),
    "multi-similarity": supervised(jaxmetric.multi_similarity_loss),
    "NT-Xent with labels (T 0.1)": supervised(
        functools.partial(jaxmetric.ntxent_loss, temperature=0.1)
    ),
    "SimCLR, no labels (T 0.5)": simclr,
}


def fit(objective, *, seed=0):
    """A fresh Embedder trained STEPS steps on `objective`; returns it and its last loss."""
    model = Embedder(64, 64, rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, labels, key):
        loss, grads = nnx.value_and_grad(lambda m: objective(m, x, labels, key))(model)
        optimizer.update(model, grads)
        return loss

    keys = jax.random.split(jax.random.key(seed), STEPS)
    for key, (xb, yb) in zip(keys, batches(seed), strict=False):
        loss = step(model, optimizer, xb, yb, key)
    return model, float(loss)


rows = {"raw pixels (64-d)": (raw, float("nan"))}
for name, objective in OBJECTIVES.items():
    trained, last_loss = fit(objective)
    rows[name] = (metrics.retrieval_metrics(trained(x_test), y_test), last_loss)

print(f"{'':34s} {'last loss':>9s} {'P@1':>6s} {'MAP@R':>6s}   (held-out, {STEPS} steps)")
for name, (ret, last_loss) in rows.items():
    print(f"{name:34s} {last_loss:9.4f} {ret['precision_at_1']:6.3f} {ret['map_at_r']:6.3f}")
RESULTS["loss_table"] = {name: ret["map_at_r"] for name, (ret, _) in rows.items()}

# %% [markdown]
# On these digits every supervised loss lifts MAP@R far above the raw pixels within a few
# hundred steps. SimCLR, which never sees a label, gains much less: its embedding only knows
# what its views teach (on MNIST-1D, with views made for those signals, it does much
# better: `simclr_tpu.ipynb`). Precision@1 is near 1 for everything, raw pixels included:
# on digits the nearest neighbour is easy, ranking *all* the images of the digit first is
# not.
#
# ## 7. Data-parallel: `jax.jit(jax.shard_map(...))`
#
# Call the loss on each device's shard of the batch with `axis_name="data"`: the kernels
# gather the candidates (positives, negatives) of every device and return the loss of the
# **whole** global batch. Under `shard_map` the gradient that reaches the replicated
# parameters then already is the gradient of the global batch, so **put no `pmean` / `psum`
# on the gradients**. NNX models enter `shard_map` as a pure pytree of parameters
# (`nnx.split`, then `nnx.merge` inside the function).

# %%
num_devices = math.gcd(BATCH, jax.device_count())  # devices that split the batch evenly
mesh = jax.make_mesh(
    (num_devices,),
    ("data",),
    axis_types=(jax.sharding.AxisType.Auto,),
    devices=jax.devices()[:num_devices],
)
graphdef, params = nnx.split(Embedder(64, 64, rngs=nnx.Rngs(2)))
tx = optax.adam(1e-3)
opt_state = tx.init(params)


def loss_fn(params, x, labels, axis_name=None):
    embeddings = nnx.merge(graphdef, params)(x)  # this device's rows
    return jaxmetric.ntxent_loss(embeddings, labels, temperature=0.1, axis_name=axis_name)


@jax.jit
@functools.partial(
    jax.shard_map,
    mesh=mesh,
    in_specs=(P(), P(), P("data"), P("data")),  # parameters and optimizer state replicated
    out_specs=(P(), P(), P()),
)
def sharded_step(params, opt_state, x, labels):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, labels, "data")
    # No pmean / psum: `grads` already is the gradient of the global-batch loss.
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


# The same loss and gradient on one batch: split over the devices, and on one device.
xb, yb = next(batches(seed=3))
one_device = jax.jit(jax.value_and_grad(loss_fn))(params, xb, yb)
split = jax.jit(
    jax.shard_map(
        jax.value_and_grad(functools.partial(loss_fn, axis_name="data")),
        mesh=mesh,
        in_specs=(P(), P("data"), P("data")),
        out_specs=(P(), P()),
    )
)(params, xb, yb)
loss_diff = abs(float(one_device[0]) - float(split[0]))
grad_diff = max(
    float(jnp.max(jnp.abs(g1 - g2)))
    for g1, g2 in zip(jax.tree.leaves(one_device[1]), jax.tree.leaves(split[1]), strict=True)
)
print(f"{num_devices} devices, {BATCH // num_devices} rows each, axis_name='data'")
print(f"vs one device: |loss diff| {loss_diff:.1e}, max |grad diff| {grad_diff:.1e}")

for xb, yb in itertools.islice(batches(seed=2), STEPS):
    params, opt_state, loss = sharded_step(params, opt_state, xb, yb)
sharded = metrics.retrieval_metrics(nnx.merge(graphdef, params)(x_test), y_test)
print(f"NT-Xent, {num_devices} devices, {STEPS} steps: held-out MAP@R {sharded['map_at_r']:.3f}")
RESULTS.update(
    num_devices=num_devices,
    sharded_loss_diff=loss_diff,
    sharded_grad_diff=grad_diff,
    sharded_map_at_r=sharded["map_at_r"],
)

# %% [markdown]
# `jax.pmap` works too (there each device holds its own share of the gradient: `pmean` it
# as usual). `jaxmetric.train` runs whole recipes this way on any number of devices, with
# checkpoints and evaluation: `simclr_tpu.ipynb` (self-supervised, MNIST-1D) and
# `metric_learning_retrieval.ipynb` (supervised triplet, retrieval and verification numbers).
