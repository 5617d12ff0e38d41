"""Train steps for SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins, VICReg,
MoCo v3 and supervised metric learning.

Each step is a pure function of (state, local batch) written for one
device's shard and wrapped as ``jax.jit(jax.shard_map(...))`` over the
``"data"`` mesh axis: the state is replicated (``P()``), the batch split
(``P("data")``). The kernels, called with ``axis_name="data"``, return the
loss of the whole global batch; BatchNorm uses global statistics. Under
``shard_map``'s replication check the gradient of a replicated parameter is
already the full gradient, so no collective is applied to it.

Augmentation keys depend only on (state.key, step, global example index), so
a run on 8 devices and one on 1 device with the same global batch see the
same views and produce the same parameters.
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
from jax.sharding import PartitionSpec as P

import jaxmetric
from jaxmetric import augment, parallel
from jaxmetric.distances import l2_normalize
from jaxmetric.queue import ema_update, enqueue
from jaxmetric.train.state import AXIS, TrainState, merge_model

StepFn = Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict[str, jax.Array]]]


def _view_keys(state: TrainState, local_batch: int, view: int) -> jax.Array:
    """One key per local example for view ``view``, from its global index."""
    step_key = jax.random.fold_in(state.key, state.step)
    index = parallel.anchor_index(local_batch, AXIS)
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(step_key, i), view))(index)


def _two_views(state: TrainState, aug: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    b = x.shape[0]
    return (
        augment.batch_views(aug, _view_keys(state, b, 0), x),
        augment.batch_views(aug, _view_keys(state, b, 1), x),
    )


def _all_finite(*trees: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _apply(
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
    counts the non-finite ones."""
    guard = config.get("nan_guard", True)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ok = _all_finite(loss, grads)
    new = state.replace(params=params, batch_stats=new_stats, opt_state=opt_state, **replace)
    kept = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state) if guard else new
    return kept.replace(
        step=state.step + 1,
        skipped=state.skipped + (~ok).astype(jnp.int32),
        consecutive_skipped=jnp.where(ok, 0, state.consecutive_skipped + 1).astype(jnp.int32),
    )


def _forward(graphdef, params, batch_stats, x):
    model = merge_model(graphdef, params, batch_stats)
    h, z = model(x, train=True)
    return h, z, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


def simclr_step(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation
) -> StepFn:
    """SimCLR (Chen et al. 2020): NT-Xent between two views of each example,
    2N - 2 negatives from the global batch."""
    aug, temperature = config.augment, config.simclr.temperature
    block_size = config.simclr.get("block_size", 0) or None

    def step(state: TrainState, x: jax.Array, y: jax.Array):
        del y
        b = x.shape[0]
        v1, v2 = _two_views(state, aug, x)

        def loss_fn(params):
            # Both views in one forward pass: BN statistics over all 2N views.
            _, z, stats = _forward(graphdef, params, state.batch_stats, jnp.concatenate([v1, v2]))
            z1, z2 = z[:b], z[b:]
            loss = jaxmetric.simclr_loss(
                z1, z2, temperature=temperature, axis_name=AXIS, block_size=block_size
            )
            return loss, stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new = _apply(config, state, tx, loss, grads, stats)
        return new, {"loss": loss}

    return step


def moco_step(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation
) -> StepFn:
    """MoCo v2 (Chen et al. 2020): queries from the online encoder, keys from
    the momentum encoder (EMA of the online parameters, updated before the
    keys are computed, as in MoCo's code), negatives from the queue, which
    then receives the keys of the whole global batch."""
    aug, m = config.augment, config.moco

    def step(state: TrainState, x: jax.Array, y: jax.Array):
        del y
        b = x.shape[0]
        v1, v2 = _two_views(state, aug, x)
        target_params = ema_update(state.target_params, state.params, m.momentum)
        if m.symmetric:
            _, k, target_stats = _forward(
                graphdef, target_params, state.target_batch_stats, jnp.concatenate([v2, v1])
            )
        else:
            _, k, target_stats = _forward(graphdef, target_params, state.target_batch_stats, v2)
        k = jax.lax.stop_gradient(l2_normalize(k))
        queue = state.queue

        def loss_fn(params):
            views = jnp.concatenate([v1, v2]) if m.symmetric else v1
            _, q, stats = _forward(graphdef, params, state.batch_stats, views)
            loss = jaxmetric.moco_loss(
                q,
                k,
                queue.embeddings,
                temperature=m.temperature,
                queue_mask=queue.valid,
                axis_name=AXIS,
            )
            return loss, stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if m.symmetric:
            # One write per view keeps the queue's order independent of the
            # device count: [all k(v2) of the global batch], [all k(v1)].
            new_queue = enqueue(enqueue(queue, k[:b], axis_name=AXIS), k[b:], axis_name=AXIS)
        else:
            new_queue = enqueue(queue, k, axis_name=AXIS)
        new = _apply(
            config,
            state,
            tx,
            loss,
            grads,
            stats,
            target_params=target_params,
            target_batch_stats=target_stats,
            queue=new_queue,
        )
        return new, {"loss": loss}

    return step


def supervised_step(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation
) -> StepFn:
    """Supervised metric learning: any label-based kernel loss (with its
    miner, e.g. triplet + batch-hard) on one (optionally augmented) view."""
    aug, s = config.augment, config.supervised
    loss_name, kwargs = s.loss, dict(s.loss_kwargs.to_dict())
    loss_fn_kernel = getattr(jaxmetric.losses, loss_name)

    def step(state: TrainState, x: jax.Array, y: jax.Array):
        b = x.shape[0]
        v = augment.batch_views(aug, _view_keys(state, b, 0), x)

        def loss_fn(params):
            _, z, stats = _forward(graphdef, params, state.batch_stats, v)
            return loss_fn_kernel(z, y, axis_name=AXIS, **kwargs), stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new = _apply(config, state, tx, loss, grads, stats)
        return new, {"loss": loss}

    return step


def momentum_schedule(base: float, final: float, step: jax.Array, num_steps: int) -> jax.Array:
    r"""BYOL's cosine schedule of the EMA momentum, from ``base`` to ``final``:

    .. math::
        \tau_k = \tau_f - (\tau_f - \tau_b) \frac{\cos(\pi k / K) + 1}{2}

    (Grill et al. 2020, section 3.2; MoCo v3 uses the same schedule).
    """
    frac = jnp.clip(step.astype(jnp.float32) / max(num_steps, 1), 0.0, 1.0)
    return final - (final - base) * (jnp.cos(math.pi * frac) + 1.0) / 2.0


def _forward_views(graphdef, params, batch_stats, views, *, predict: bool):
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


def _momentum_targets(config, graphdef, state: TrainState, views, base: float, final: float):
    """EMA update of the target network (before the forward pass, as in
    ``moco_step``: the target used at step k is the EMA including the online
    parameters after step k - 1, which is BYOL's end-of-step update), then
    its projections of every view, without gradient."""
    tau = momentum_schedule(base, final, state.step, config.num_steps)
    target_params = ema_update(state.target_params, state.params, tau)
    targets, _, target_stats = _forward_views(
        graphdef, target_params, state.target_batch_stats, views, predict=False
    )
    return [jax.lax.stop_gradient(t) for t in targets], target_params, target_stats, tau


def _momentum_predictor_step(
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
        views = _two_views(state, aug, x)
        (t1, t2), target_params, target_stats, tau = _momentum_targets(
            config, graphdef, state, views, schedule.base_momentum, schedule.final_momentum
        )

        def loss_fn(params):
            _, (p1, p2), stats = _forward_views(
                graphdef, params, state.batch_stats, views, predict=True
            )
            return loss_of(p1, t2) + loss_of(p2, t1), stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new = _apply(
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


def byol_step(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation
) -> StepFn:
    """BYOL (Grill et al. 2020): the online network's prediction of each view
    regresses the EMA target network's projection of the other view
    (symmetric loss, eq. 2); the target's momentum follows a cosine schedule
    from ``byol.base_momentum`` to ``byol.final_momentum``."""

    def loss_of(prediction, target):
        return jaxmetric.byol_loss(prediction, target, axis_name=AXIS)

    return _momentum_predictor_step(config, graphdef, tx, config.byol, loss_of)


def simsiam_step(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation
) -> StepFn:
    """SimSiam (Chen & He 2021): each view's prediction against the other
    view's projection behind a stop-gradient, no momentum encoder:
    L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2."""
    aug = config.augment

    def step(state: TrainState, x: jax.Array, y: jax.Array):
        del y
        views = _two_views(state, aug, x)

        def loss_fn(params):
            (z1, z2), (p1, p2), stats = _forward_views(
                graphdef, params, state.batch_stats, views, predict=True
            )
            loss = 0.5 * jaxmetric.simsiam_loss(p1, z2, axis_name=AXIS) + 0.5 * (
                jaxmetric.simsiam_loss(p2, z1, axis_name=AXIS)
            )
            return loss, stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new = _apply(config, state, tx, loss, grads, stats)
        return new, {"loss": loss}

    return step


def _paired_views_step(
    config: ml_collections.ConfigDict,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    loss_of: Callable[[jax.Array, jax.Array], jax.Array],
) -> StepFn:
    """A step for a loss of the two views' embeddings (Barlow Twins, VICReg):
    one network, both branches carry gradient, no predictor, no EMA."""
    aug = config.augment

    def step(state: TrainState, x: jax.Array, y: jax.Array):
        del y
        views = _two_views(state, aug, x)

        def loss_fn(params):
            (z1, z2), _, stats = _forward_views(
                graphdef, params, state.batch_stats, views, predict=False
            )
            return loss_of(z1, z2), stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new = _apply(config, state, tx, loss, grads, stats)
        return new, {"loss": loss}

    return step


def barlow_twins_step(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation
) -> StepFn:
    """Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two
    views' projections, over the global batch, towards the identity."""
    lam = config.barlow_twins.lambda_offdiag

    def loss_of(z1, z2):
        return jaxmetric.barlow_twins_loss(z1, z2, lambda_offdiag=lam, axis_name=AXIS)

    return _paired_views_step(config, graphdef, tx, loss_of)


def vicreg_step(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation
) -> StepFn:
    """VICReg (Bardes et al. 2022): invariance between the views, variance
    and covariance regularisers on each, over the global batch."""
    v = config.vicreg

    def loss_of(z1, z2):
        return jaxmetric.vicreg_loss(
            z1,
            z2,
            sim_weight=v.sim_weight,
            var_weight=v.var_weight,
            cov_weight=v.cov_weight,
            axis_name=AXIS,
        )

    return _paired_views_step(config, graphdef, tx, loss_of)


def mocov3_step(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, tx: optax.GradientTransformation
) -> StepFn:
    """MoCo v3 (Chen, Xie & He 2021): online encoder + predictor gives the
    queries, the momentum encoder (no predictor; cosine momentum schedule)
    the keys; no queue, the other keys of the global batch are the
    negatives; symmetric loss ctr(q1, k2) + ctr(q2, k1)."""
    c = config.mocov3

    def loss_of(queries, keys):
        return jaxmetric.mocov3_loss(queries, keys, temperature=c.temperature, axis_name=AXIS)

    return _momentum_predictor_step(config, graphdef, tx, c, loss_of)


STEPS = {
    "simclr": simclr_step,
    "moco": moco_step,
    "byol": byol_step,
    "simsiam": simsiam_step,
    "barlow_twins": barlow_twins_step,
    "vicreg": vicreg_step,
    "mocov3": mocov3_step,
    "supervised": supervised_step,
}


def make_train_step(
    config: ml_collections.ConfigDict,
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
) -> StepFn:
    """The jitted, sharded step for ``config.method``: (state, x, y) ->
    (state, {"loss"}), x and y sharded over ``"data"``, state replicated."""
    step = STEPS[config.method](config, graphdef, tx)
    sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=(P(), P()))
    return jax.jit(sharded)


def make_embed_fn(
    config: ml_collections.ConfigDict, graphdef: nnx.GraphDef
) -> Callable[[Any, Any, jax.Array], tuple[jax.Array, jax.Array]]:
    """Jitted (params, batch_stats, x) -> (features h, embeddings z) in
    evaluation mode (running BN statistics, no augmentation)."""

    @jax.jit
    def embed(params, batch_stats, x):
        model = merge_model(graphdef, params, batch_stats)
        x = jax.vmap(lambda e: augment.preprocess(config.augment, e))(x)
        return model(x, train=False)

    return embed
