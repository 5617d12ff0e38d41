"""The pieces that training methods build their steps from.

A step is a pure function of (state, local batch) written for one device's
shard; ``jaxmetric.train.steps.make_train_step`` wraps it as
``jax.jit(jax.shard_map(...))`` over the ``"data"`` mesh axis: the state is
replicated (``P()``), the batch split (``P("data")``). The kernels, called
with ``axis_name="data"``, return the loss of the whole global batch;
BatchNorm uses global statistics. Under ``shard_map``'s replication check the
gradient of a replicated parameter is already the full gradient, so no
collective is applied to it.

Augmentation keys depend only on (state.key, step, global example index), so
a run on 8 devices and one on 1 device with the same global batch see the
same views and produce the same parameters.

Gradient caching (``config.grad_cache.chunk_size`` > 0): `value_and_grad`
runs the encoder in chunks of the per-device batch
(``jaxmetric.chunked_value_and_grad``); the views are computed before, by the
same code, so the augmentation keys do not depend on the chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

import jaxmetric
from jaxmetric import augment, parallel
from jaxmetric.train import fields
from jaxmetric.train.methods.base import StepFn
from jaxmetric.train.state import AXIS, TrainState, merge_model


def view_keys(state: TrainState, local_batch: int, view: int) -> jax.Array:
    """One key per local example for view ``view``, from its global index."""
    step_key = jax.random.fold_in(state.key, state.step)
    index = parallel.anchor_index(local_batch, AXIS)
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(step_key, i), view))(index)


def two_views(state: TrainState, aug: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The two augmented views of the local batch ``x`` (x [B, 2, ...] where
    the pipeline cut the crops: ``augment.crops_on_host``)."""
    b = x.shape[0]
    return (
        augment.batch_views(aug, view_keys(state, b, 0), x, 0),
        augment.batch_views(aug, view_keys(state, b, 1), x, 1),
    )


def grad_cache_unroll(config: ml_collections.ConfigDict) -> int | bool:
    """``config.grad_cache.unroll`` resolved: "auto" is True on the CPU
    backend (XLA's CPU convolutions take their fast path only outside
    loops; see ``jaxmetric.chunked_value_and_grad``), else 1."""
    unroll = config.grad_cache.unroll
    if unroll == "auto":
        return True if jax.default_backend() == "cpu" else 1
    return unroll


def value_and_grad(
    config: ml_collections.ConfigDict,
    embed_fn: Callable[[Any, Any], tuple[Any, Any]],
    loss_fn: Callable[..., jax.Array],
    params: Any,
    inputs: Any,
    *loss_args: Any,
) -> tuple[tuple[jax.Array, Any], Any]:
    """``((loss, new batch stats), grads)`` of ``loss_fn(embed_fn(params,
    inputs)[0], *loss_args)``, whole batch or in chunks.

    ``embed_fn(params, inputs) -> (embeddings, new batch stats)``: a
    training-mode forward pass; ``inputs`` and every leaf of ``embeddings``
    have the (local) batch as their leading axis (e.g. views stacked
    [b, V, ...] -> z [b, V, D]). ``loss_args`` (labels, targets) are passed
    whole to ``loss_fn``.

    ``config.grad_cache.chunk_size`` = 0: ``jax.value_and_grad`` of the whole
    batch (the plain step). > 0: ``jaxmetric.chunked_value_and_grad`` with
    chunks of that many rows of the per-device batch: the same loss and
    gradient up to float rounding when the model has no BatchNorm; with
    BatchNorm each chunk is normalised with its own statistics (global over
    the devices: chunk k of every device together), and the new batch stats
    are the mean over the chunks of each chunk's update.
    """
    chunk_size = config.grad_cache.chunk_size
    if chunk_size:
        chunked = jaxmetric.chunked_value_and_grad(
            embed_fn,
            loss_fn,
            chunk_size=chunk_size,
            has_aux=True,
            unroll=grad_cache_unroll(config),
        )
        (loss, stats), grads = chunked(params, inputs, *loss_args)
        return (loss, jax.tree.map(lambda s: jnp.mean(s, axis=0), stats)), grads

    def whole(p):
        embeddings, stats = embed_fn(p, inputs)
        return loss_fn(embeddings, *loss_args), stats

    return jax.value_and_grad(whole, has_aux=True)(params)


def _all_finite(*trees: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def apply_update(
    config: ml_collections.ConfigDict,
    state: TrainState,
    tx: optax.GradientTransformation,
    loss: jax.Array,
    grads: Any,
    new_stats: Any,
    **replace: Any,
) -> TrainState:
    """Applies the update unless the loss or a gradient is NaN / Inf (then
    the state is kept, only ``step``, ``skipped`` and ``consecutive_skipped``
    advance). ``config.nan_guard=False`` applies every update but still
    counts the non-finite ones. ``replace``: further state fields the step
    changed (target network, queue), kept back with the rest on a bad step."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ok = _all_finite(loss, grads)
    new = state.replace(params=params, batch_stats=new_stats, opt_state=opt_state, **replace)
    kept = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state) if config.nan_guard else new
    return kept.replace(
        step=state.step + 1,
        skipped=state.skipped + (~ok).astype(jnp.int32),
        consecutive_skipped=jnp.where(ok, 0, state.consecutive_skipped + 1).astype(jnp.int32),
    )


def forward(graphdef: nnx.GraphDef, params: Any, batch_stats: Any, x: jax.Array):
    """(features h, embeddings z, new batch stats) of one training-mode pass."""
    model = merge_model(graphdef, params, batch_stats)
    h, z = model(x, train=True)
    return h, z, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


def forward_predict(graphdef: nnx.GraphDef, params: Any, batch_stats: Any, x: jax.Array):
    """(embeddings z, predictions q(z), new batch stats) of one training-mode
    pass; q is the identity when the model has no predictor."""
    model = merge_model(graphdef, params, batch_stats)
    _, z = model(x, train=True)
    p = model.predict(z, train=True) if model.predictor is not None else z
    return z, p, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


def forward_views(graphdef: nnx.GraphDef, params: Any, batch_stats: Any, views, *, predict: bool):
    """Runs the model on each view with BatchNorm statistics of that view
    alone (global over the devices), as the BYOL, SimSiam, Barlow Twins,
    VICReg and MoCo v3 code does with one forward pass per view.

    The views go through ``jax.vmap`` rather than a Python loop: per-view
    statistics, but one copy of the network in the compiled graph. The
    running statistics take one update with the mean of the views' batch
    statistics (PyTorch updates them once per pass, in turn; they only serve
    evaluation).

    Returns ([z per view], [prediction per view, or None], new batch stats).
    """

    def one(v):
        model = merge_model(graphdef, params, batch_stats)
        _, z = model(v, train=True)
        p = model.predict(z, train=True) if predict else z
        return z, p, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))

    z, p, stats = jax.vmap(one)(jnp.stack(views))
    stats = jax.tree.map(lambda s: jnp.mean(s, axis=0), stats)
    n = len(views)
    return [z[i] for i in range(n)], [p[i] if predict else None for i in range(n)], stats


def momentum_schedule(base: float, final: float, step: jax.Array, num_steps: int) -> jax.Array:
    r"""BYOL's cosine schedule of the EMA momentum, from ``base`` to ``final``:

    .. math::
        \tau_k = \tau_f - (\tau_f - \tau_b) \frac{\cos(\pi k / K) + 1}{2}

    (Grill et al. 2020, section 3.2; MoCo v3 uses the same schedule).
    """
    frac = jnp.clip(step.astype(jnp.float32) / max(num_steps, 1), 0.0, 1.0)
    return final - (final - base) * (jnp.cos(math.pi * frac) + 1.0) / 2.0


def _momentum_targets(config, graphdef, state: TrainState, views, base: float, final: float):
    """EMA update of the target network (before the forward pass, as in
    MoCo's step: the target used at step k is the EMA including the online
    parameters after step k - 1, which is BYOL's end-of-step update), then
    its projections of every view, without gradient."""
    tau = momentum_schedule(base, final, state.step, config.num_steps)
    target_params = jaxmetric.ema_update(state.target_params, state.params, tau)
    targets, _, target_stats = forward_views(
        graphdef, target_params, state.target_batch_stats, views, predict=False
    )
    return [jax.lax.stop_gradient(t) for t in targets], target_params, target_stats, tau


def momentum_predictor_step(
    config: ml_collections.ConfigDict,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    schedule: ml_collections.ConfigDict,
    loss_of: Callable[[jax.Array, jax.Array], jax.Array],
) -> StepFn:
    """A step whose online predictions of each view regress or contrast the
    momentum (EMA) target's projections of the other view, symmetrically:
    ``loss_of(p1, t2) + loss_of(p2, t1)`` (BYOL, MoCo v3). The target's
    momentum follows a cosine schedule from ``schedule.base_momentum`` to
    ``schedule.final_momentum``."""
    aug = config.augment

    def step(state: TrainState, x: jax.Array, y: jax.Array):
        del y
        views = two_views(state, aug, x)
        (t1, t2), target_params, target_stats, tau = _momentum_targets(
            config, graphdef, state, views, schedule.base_momentum, schedule.final_momentum
        )

        def embed_fn(params, chunk):  # chunk [c, 2, ...] -> predictions (p1, p2)
            _, p, stats = forward_views(
                graphdef, params, state.batch_stats, [chunk[:, 0], chunk[:, 1]], predict=True
            )
            return tuple(p), stats

        def loss_fn(predictions, t1, t2):
            p1, p2 = predictions
            return loss_of(p1, t2) + loss_of(p2, t1)

        # The target branch stays one full-batch forward pass without gradient.
        (loss, stats), grads = value_and_grad(
            config, embed_fn, loss_fn, state.params, jnp.stack(views, axis=1), t1, t2
        )
        new = apply_update(
            config,
            state,
            tx,
            loss,
            grads,
            stats,
            target_params=target_params,
            target_batch_stats=target_stats,
        )
        return new, {"loss": loss, "momentum": tau}

    return step


def paired_views_step(
    config: ml_collections.ConfigDict,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_of: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    predict: bool = False,
) -> StepFn:
    """A step for a loss of the two views' embeddings (Barlow Twins, VICReg)
    or, with ``predict``, of (z1, z2, p1, p2) (SimSiam): one network, no EMA,
    one forward pass per view."""
    aug = config.augment

    def step(state: TrainState, x: jax.Array, y: jax.Array):
        del y
        views = two_views(state, aug, x)

        def embed_fn(params, chunk):  # chunk [c, 2, ...] -> (z1, z2[, p1, p2])
            z, p, stats = forward_views(
                graphdef, params, state.batch_stats, [chunk[:, 0], chunk[:, 1]], predict=predict
            )
            return (*z, *p) if predict else tuple(z), stats

        def loss_fn(outputs):
            return loss_of(*outputs)

        (loss, stats), grads = value_and_grad(
            config, embed_fn, loss_fn, state.params, jnp.stack(views, axis=1)
        )
        new = apply_update(config, state, tx, loss, grads, stats)
        return new, {"loss": loss}

    return step


def momentum_fields(schedule_name: str) -> Callable[[ml_collections.ConfigDict], None]:
    """A ``validate`` of ``<schedule_name>.base_momentum`` / ``final_momentum`` in [0, 1]."""

    def validate(config: ml_collections.ConfigDict) -> None:
        block = config[schedule_name]
        for name in ("base_momentum", "final_momentum"):
            fields.unit_interval(f"{schedule_name}.{name}", block[name])

    return validate
