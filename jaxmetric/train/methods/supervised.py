"""Supervised metric learning: any label-based kernel loss
(``jaxmetric.losses.LABEL_LOSSES``, e.g. triplet + batch-hard mining) on one
(optionally augmented) view of class-balanced batches."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import ml_collections

from jaxmetric import augment, losses
from jaxmetric.train import fields
from jaxmetric.train.methods import parts
from jaxmetric.train.methods.base import Method
from jaxmetric.train.state import AXIS


def make_step(config, graphdef, tx):
    aug, s = config.augment, config.supervised
    loss_fn_kernel = getattr(losses, s.loss)
    kwargs = dict(s.loss_kwargs.to_dict())

    def step(state, x, y):
        v = augment.batch_views(aug, parts.view_keys(state, x.shape[0], 0), x)

        def embed_fn(params, chunk):  # chunk [c, ...] -> z [c, D]
            _, z, stats = parts.forward(graphdef, params, state.batch_stats, chunk)
            return z, stats

        def loss_fn(z, labels):
            return loss_fn_kernel(z, labels, axis_name=AXIS, **kwargs)

        (loss, stats), grads = parts.value_and_grad(config, embed_fn, loss_fn, state.params, v, y)
        return parts.apply_update(config, state, tx, loss, grads, stats), {"loss": loss}

    return step


def _check_loss_kwargs(config: ml_collections.ConfigDict) -> None:
    """``supervised.loss_kwargs`` against the kernel: unknown names and bad
    values (e.g. an unknown ``mining``) fail here, by tracing the loss on
    abstract inputs (``jax.eval_shape``: nothing is compiled or run)."""
    s = config.supervised
    fn = getattr(losses, s.loss)
    kwargs = dict(s.loss_kwargs.to_dict())
    params = inspect.signature(fn).parameters
    for name in kwargs:
        if name not in params or name in ("embeddings", "labels", "mask", "axis_name"):
            raise ValueError(
                f"`supervised.loss_kwargs.{name}` is not a hyper-parameter of {s.loss}."
            )
    emb = jax.ShapeDtypeStruct((s.samples_per_class * 2, config.model.embed_dim), jnp.float32)
    labels = jax.ShapeDtypeStruct(emb.shape[:1], jnp.int32)
    try:
        jax.eval_shape(lambda e, y: fn(e, y, **kwargs), emb, labels)
    except (ValueError, TypeError) as err:
        raise ValueError(f"`supervised.loss_kwargs`: {err}") from err


def validate(config) -> None:
    s = config.supervised
    fields.choice("supervised.loss", s.loss, tuple(losses.LABEL_LOSSES))
    if s.samples_per_class < 2:
        raise ValueError(
            f"`supervised.samples_per_class` must be >= 2, got {s.samples_per_class!r}."
        )
    if config.batch_size % s.samples_per_class:
        raise ValueError(
            f"`batch_size`={config.batch_size} must be a multiple of "
            f"`supervised.samples_per_class`={s.samples_per_class}."
        )
    _check_loss_kwargs(config)


METHOD = Method(
    name="supervised",
    title="supervised",
    make_step=make_step,
    defaults={
        "loss": "triplet_margin_loss",
        "loss_kwargs": {"margin": 0.2, "mining": "batch_hard"},
        "samples_per_class": 4,
    },
    validate=validate,
    two_views=False,
    class_balanced=True,
    grad_cache=True,
)
