"""A one-minute, offline demo of the jaxmetric losses (``make demo``).

It builds a synthetic labelled data set in NumPy, trains a small Flax NNX MLP
with several losses in turn (optax Adam, ``jax.lax.scan`` over jitted steps),
and prints the held-out precision@1 of each embedding beside that of the raw
inputs. With more than one device it also trains one loss data-parallel under
``jax.jit(jax.shard_map(...))`` and checks its gradient against one device.

The data: 10 classes, each a mixture of 3 Gaussian modes in an 8-d latent
space, lifted non-linearly (``tanh`` of a random linear map) to 32 signal
dimensions, joined by 64 dimensions of isotropic nuisance noise, and rotated
at random into 96 input dimensions, so no input axis is pure signal. Cosine
nearest neighbours on the raw inputs are dominated by the noise; a good
embedding learns to ignore it.

Run::

    python -m jaxmetric.demo [--steps 400] [--seed 0] [--cpu-devices 8]

Needs nothing beyond jax, flax, optax and numpy, and no network.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

import jaxmetric

NUM_CLASSES = 10
CLASSES_PER_BATCH = 8
PER_CLASS = 16  # batch = 8 classes x 16 examples = 128 (divisible by 1, 2, 4, 8)
EMBED_DIM = 32
HIDDEN = 128
LEARNING_RATE = 3e-3
LOG_EVERY = 100  # steps per jitted scan chunk and progress line
AUG_NOISE = 1.0  # std of the fresh nuisance noise of each SimCLR view


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A synthetic labelled data set with a train / test split.

    Attributes:
      x_train, x_test: [N, 96] float32 inputs.
      y_train, y_test: [N] int32 class labels.
      nuisance_basis: [96, 64] orthonormal columns spanning the noise
        directions; SimCLR's "augmentation" re-draws noise along them.
      signal_test: [N, 32] the noise-free signal of the test inputs, for
        reference (an oracle that knows which directions are noise).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    nuisance_basis: np.ndarray
    signal_test: np.ndarray


def make_dataset(
    seed: int,
    *,
    num_classes: int = NUM_CLASSES,
    modes: int = 3,
    latent_dim: int = 8,
    signal_dim: int = 32,
    nuisance_dim: int = 64,
    train_per_class: int = 250,
    test_per_class: int = 150,
    within_std: float = 0.5,
    noise_std: float = 1.0,
) -> Dataset:
    """Builds the Gaussian-mixture data set described in the module docstring.

    Args:
      seed: NumPy seed; the same seed gives the same data.
      num_classes: number of classes.
      modes: Gaussian modes per class in the latent space.
      latent_dim: dimension of the latent space.
      signal_dim: dimension the latent points are lifted to (through tanh).
      nuisance_dim: number of pure-noise dimensions.
      train_per_class, test_per_class: examples per class in each split.
      within_std: std of each mode in the latent space.
      noise_std: std of the nuisance noise.

    Returns:
      A ``Dataset``; test classes are the training classes (held-out examples).
    """
    rng = np.random.default_rng(seed)
    dim = signal_dim + nuisance_dim
    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    lift = rng.normal(size=(latent_dim, signal_dim)) / np.sqrt(latent_dim)
    centers = rng.normal(size=(num_classes, 1, latent_dim))
    centers = centers + 0.6 * rng.normal(size=(num_classes, modes, latent_dim))
    per_class = train_per_class + test_per_class
    mode = rng.integers(modes, size=(num_classes, per_class))
    z = centers[np.arange(num_classes)[:, None], mode]
    z = z + within_std * rng.normal(size=(num_classes, per_class, latent_dim))
    signal = np.tanh(z @ lift)  # [C, n, signal_dim]
    noise = noise_std * rng.normal(size=(num_classes, per_class, nuisance_dim))
    x = np.concatenate([signal, noise], axis=-1) @ rotation.T
    x = x.astype(np.float32)
    y = np.broadcast_to(np.arange(num_classes, dtype=np.int32)[:, None], (num_classes, per_class))
    train, test = slice(0, train_per_class), slice(train_per_class, None)
    return Dataset(
        x_train=x[:, train].reshape(-1, dim),
        y_train=y[:, train].reshape(-1),
        x_test=x[:, test].reshape(-1, dim),
        y_test=y[:, test].reshape(-1),
        nuisance_basis=rotation[:, signal_dim:].astype(np.float32),
        signal_test=signal[:, test].reshape(-1, signal_dim).astype(np.float32),
    )


def precision_at_1(x: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest-neighbour precision@1 under cosine similarity.

    Args:
      x: [N, D] embeddings.
      labels: [N] integer labels.

    Returns:
      The fraction of rows whose most similar other row has the same label.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.mean(labels[np.argmax(sim, axis=1)] == labels))


def sample_batches(labels: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """P x K sampling: ``steps`` batches of 8 classes x 16 examples, as indices.

    Returns:
      [steps, 128] int indices into the training set, grouped by class.
    """
    by_class = [np.flatnonzero(labels == c) for c in range(NUM_CLASSES)]
    batches = np.empty((steps, CLASSES_PER_BATCH * PER_CLASS), dtype=np.int64)
    for step in range(steps):
        classes = rng.choice(NUM_CLASSES, CLASSES_PER_BATCH, replace=False)
        batches[step] = np.concatenate(
            [rng.choice(by_class[c], PER_CLASS, replace=False) for c in classes]
        )
    return batches


def make_model(in_dim: int, seed: int) -> nnx.Module:
    """A 2-layer Flax NNX MLP: Linear(in, 128) -> GELU -> Linear(128, 32)."""

    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.hidden = nnx.Linear(in_dim, HIDDEN, rngs=rngs)
            self.out = nnx.Linear(HIDDEN, EMBED_DIM, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return self.out(jax.nn.gelu(self.hidden(x)))

    return MLP(nnx.Rngs(seed))


# Maps inputs [b, 96] to embeddings [b, 32] (the merged NNX model).
Embed = Callable[[jax.Array], jax.Array]
# A recipe's objective: (embed, x, labels, key, axis_name) -> scalar loss.
Objective = Callable[[Embed, jax.Array, jax.Array, jax.Array, str | None], jax.Array]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One loss of the demo: a name, its settings in words, its objective."""

    name: str
    settings: str
    objective: Objective


def make_recipes(nuisance_basis: np.ndarray) -> list[Recipe]:
    """The losses the demo trains with, each through the public API."""
    basis = jnp.asarray(nuisance_basis)

    def triplet(mining: str) -> Objective:
        def objective(
            embed: Embed, x: jax.Array, labels: jax.Array, key: jax.Array, axis_name: str | None
        ) -> jax.Array:
            return jaxmetric.triplet_margin_loss(
                embed(x), labels, margin=0.2, mining=mining, axis_name=axis_name
            )

        return objective

    def contrastive(
        embed: Embed, x: jax.Array, labels: jax.Array, key: jax.Array, axis_name: str | None
    ) -> jax.Array:
        return jaxmetric.contrastive_loss(embed(x), labels, axis_name=axis_name)

    def ntxent(
        embed: Embed, x: jax.Array, labels: jax.Array, key: jax.Array, axis_name: str | None
    ) -> jax.Array:
        return jaxmetric.ntxent_loss(embed(x), labels, temperature=0.1, axis_name=axis_name)

    def simclr(
        embed: Embed, x: jax.Array, labels: jax.Array, key: jax.Array, axis_name: str | None
    ) -> jax.Array:
        # Labels unused. Each view re-draws noise along the nuisance
        # directions (the invariance an image augmentation would encode) and
        # adds a little isotropic jitter. A different key per device.
        key = jax.random.fold_in(key, jaxmetric.parallel.axis_index(axis_name))
        k1, k2, k3, k4 = jax.random.split(key, 4)

        def view(k_nuisance: jax.Array, k_jitter: jax.Array) -> jax.Array:
            nuisance = jax.random.normal(k_nuisance, (x.shape[0], basis.shape[1]))
            jitter = jax.random.normal(k_jitter, x.shape)
            return x + AUG_NOISE * nuisance @ basis.T + 0.05 * jitter

        return jaxmetric.simclr_loss(
            embed(view(k1, k2)), embed(view(k3, k4)), temperature=0.1, axis_name=axis_name
        )

    return [
        Recipe("triplet batch-hard", "margin=0.2, mining='batch_hard'", triplet("batch_hard")),
        Recipe("triplet semi-hard", "margin=0.2, mining='semi_hard'", triplet("semi_hard")),
        Recipe("contrastive", "pos_margin=0, neg_margin=1", contrastive),
        Recipe("ntxent (labels)", "temperature=0.1", ntxent),
        Recipe("simclr (no labels)", "temperature=0.1, 2 noisy views", simclr),
    ]


def make_step(
    graphdef: Any, optimizer: Any, objective: Objective, axis_name: str | None
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A scan-able train step: (params, opt_state), (x, y, key) -> new state, loss."""

    def loss_fn(params: Any, x: jax.Array, labels: jax.Array, key: jax.Array) -> jax.Array:
        model = nnx.merge(graphdef, params)
        return objective(model, x, labels, key, axis_name)

    def step(carry: tuple[Any, Any], batch: tuple[jax.Array, ...]) -> tuple[Any, jax.Array]:
        params, opt_state = carry
        x, labels, key = batch
        loss, grads = jax.value_and_grad(loss_fn)(params, x, labels, key)
        # Under shard_map (check_vma=True) `grads` already is the gradient of
        # the global-batch loss on every device: no pmean / psum here.
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step, loss_fn


def train(
    recipe: Recipe,
    data: Dataset,
    *,
    steps: int,
    seed: int,
    mesh: Any = None,
    log_every: int = LOG_EVERY,
) -> tuple[np.ndarray, float]:
    """Trains a fresh MLP with ``recipe`` and embeds the test set.

    Args:
      recipe: the loss to train with.
      data: the data set.
      steps: number of optimiser steps (run in jitted ``scan`` chunks).
      seed: seed of the model, the batches and the augmentation keys.
      mesh: a 1-axis ``"data"`` mesh to train data-parallel under
        ``jax.shard_map``; None for one device.
      log_every: steps per chunk / progress line.

    Returns:
      The test embeddings [N, 32] and the last chunk's mean loss.
    """
    model = make_model(data.x_train.shape[1], seed)
    graphdef, params = nnx.split(model)
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(params)
    axis_name = None if mesh is None else "data"
    step, _ = make_step(graphdef, optimizer, recipe.objective, axis_name)

    def run_chunk(
        params: Any, opt_state: Any, xs: jax.Array, ys: jax.Array, keys: jax.Array
    ) -> tuple[Any, Any, jax.Array]:
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (xs, ys, keys))
        return params, opt_state, jnp.mean(losses)

    if mesh is not None:
        # Parameters, optimiser state and keys replicated; the batch axis of
        # xs [chunk, B, 96] and ys [chunk, B] split over the devices.
        run_chunk = jax.shard_map(
            run_chunk,
            mesh=mesh,
            in_specs=(P(), P(), P(None, "data"), P(None, "data"), P()),
            out_specs=(P(), P(), P()),
            check_vma=True,
        )
    run_chunk = jax.jit(run_chunk)

    rng = np.random.default_rng(seed)
    batches = sample_batches(data.y_train, steps, rng)
    keys = jax.random.split(jax.random.key(seed), steps)
    start = time.perf_counter()
    mean_loss = float("nan")
    for begin in range(0, steps, log_every):
        idx = batches[begin : begin + log_every]
        params, opt_state, mean_loss = run_chunk(
            params, opt_state, data.x_train[idx], data.y_train[idx], keys[begin : begin + len(idx)]
        )
        mean_loss = float(mean_loss)
        done = begin + len(idx)
        print(
            f"  {recipe.name:<22s} step {done:>5d}/{steps}  loss {mean_loss:.4f}"
            f"  ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    embed = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    return np.asarray(embed(params, data.x_test)), mean_loss


def check_data_parallel(recipe: Recipe, data: Dataset, mesh: Any, seed: int) -> tuple[float, float]:
    """Compares loss and gradient under shard_map with one device, on one batch.

    Returns:
      ``(|loss difference|, max |gradient difference|)``.
    """
    model = make_model(data.x_train.shape[1], seed)
    graphdef, params = nnx.split(model)
    idx = sample_batches(data.y_train, 1, np.random.default_rng(seed))[0]
    x, labels, key = data.x_train[idx], data.y_train[idx], jax.random.key(seed)
    _, loss_fn_single = make_step(graphdef, optax.adam(LEARNING_RATE), recipe.objective, None)
    _, loss_fn_sharded = make_step(graphdef, optax.adam(LEARNING_RATE), recipe.objective, "data")
    single = jax.jit(jax.value_and_grad(loss_fn_single))(params, x, labels, key)
    sharded = jax.jit(
        jax.shard_map(
            jax.value_and_grad(loss_fn_sharded),
            mesh=mesh,
            in_specs=(P(), P("data"), P("data"), P()),
            out_specs=(P(), P()),  # P(): the loss and grads are replicated.
            check_vma=True,
        )
    )(params, x, labels, key)
    loss_diff = abs(float(single[0]) - float(sharded[0]))
    grad_diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(single[1]), jax.tree.leaves(sharded[1]), strict=True)
    )
    return loss_diff, grad_diff


def _mesh_size(device_count: int, batch: int) -> int:
    """The largest device count <= ``device_count`` that divides the batch."""
    return max(n for n in range(1, device_count + 1) if batch % n == 0)


def main(argv: Sequence[str] | None = None) -> None:
    """Parses flags, trains each loss, prints the precision@1 table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per loss")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, models and batches")
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        help="simulate this many CPU devices (jax_num_cpu_devices) to show the "
        "data-parallel run; default: the devices JAX finds",
    )
    args = parser.parse_args(argv)
    if args.steps <= 0:
        parser.error(f"--steps must be > 0, got {args.steps}")

    total_start = time.perf_counter()
    if args.cpu_devices is not None:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    devices = jax.devices()
    print(
        f"jaxmetric {jaxmetric.__version__} demo | jax {jax.__version__} | "
        f"{len(devices)} x {devices[0].platform} device(s) | steps {args.steps} | seed {args.seed}"
    )

    data = make_dataset(args.seed)
    print(
        f"data: {NUM_CLASSES} classes x 3 modes, 96-d inputs (32 signal + 64 noise dims, rotated); "
        f"train {len(data.y_train)}, test {len(data.y_test)}; "
        f"model: MLP 96-{HIDDEN}-{EMBED_DIM}, adam {LEARNING_RATE:g}, "
        f"batch {CLASSES_PER_BATCH} classes x {PER_CLASS}"
    )
    recipes = make_recipes(data.nuisance_basis)
    rows: list[tuple[str, str, str, float]] = [
        ("raw inputs (96-d)", "-", "-", precision_at_1(data.x_test, data.y_test)),
        (
            "oracle: noise-free signal",
            "the 32 signal dims",
            "-",
            precision_at_1(data.signal_test, data.y_test),
        ),
    ]
    for recipe in recipes:
        start = time.perf_counter()
        embeddings, last_loss = train(recipe, data, steps=args.steps, seed=args.seed)
        p1 = precision_at_1(embeddings, data.y_test)
        rows.append((recipe.name, recipe.settings, f"{last_loss:.4f}", p1))
        print(f"  -> test precision@1 {p1:.3f} ({time.perf_counter() - start:.1f} s)")

    batch = CLASSES_PER_BATCH * PER_CLASS
    num = _mesh_size(len(devices), batch)
    if num > 1:
        mesh = jax.make_mesh(
            (num,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:num]
        )
        recipe = next(r for r in recipes if r.name.startswith("ntxent"))
        loss_diff, grad_diff = check_data_parallel(recipe, data, mesh, args.seed)
        print(
            f"data-parallel: jax.jit(jax.shard_map(..., check_vma=True)) over {num} devices, "
            f"axis_name='data', {batch // num} rows per device, no collective on the grads"
        )
        print(
            f"  vs one device on the same batch: |loss diff| {loss_diff:.1e}, "
            f"max |grad diff| {grad_diff:.1e}"
        )
        start = time.perf_counter()
        name = f"{recipe.name} x{num} dev"
        sharded = dataclasses.replace(recipe, name=name)
        embeddings, last_loss = train(sharded, data, steps=args.steps, seed=args.seed, mesh=mesh)
        p1 = precision_at_1(embeddings, data.y_test)
        rows.append((name, recipe.settings + ", shard_map", f"{last_loss:.4f}", p1))
        print(f"  -> test precision@1 {p1:.3f} ({time.perf_counter() - start:.1f} s)")
    else:
        print(
            "data-parallel: 1 device, skipped; rerun with --cpu-devices 8 to train "
            "ntxent under jax.shard_map over 8 simulated CPU devices"
        )

    header = ("loss", "settings", "final loss", "test P@1")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(3)]
    line = f"| {{:<{widths[0]}}} | {{:<{widths[1]}}} | {{:>{widths[2]}}} | {{:>8}} |"
    print()
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths), "-" * 8))
    for name, settings, loss, p1 in rows:
        print(line.format(name, settings, loss, f"{p1:.3f}"))
    last_chunk = args.steps - (args.steps - 1) // LOG_EVERY * LOG_EVERY
    print(
        f"\nfinal loss: mean over the last {last_chunk} steps. test P@1: "
        f"leave-one-out cosine nearest neighbour on the {len(data.y_test)} held-out examples.\n"
        f"Total wall time {time.perf_counter() - total_start:.1f} s."
    )


if __name__ == "__main__":
    main()
