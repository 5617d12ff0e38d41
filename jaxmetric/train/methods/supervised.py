"""Supervised metric learning: any label-based kernel loss
(``jaxmetric.losses.LABEL_LOSSES``, e.g. triplet + batch-hard mining) or
proxy loss (``PROXY_LOSSES``: the proxies are the model's ``proxies``
parameter, ``model.num_proxies`` of them, trained with it) on one
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

# Losses of (embeddings, labels, proxies [C, D]), the proxies a parameter.
PROXY_LOSSES = ("proxy_anchor_loss", "proxy_nca_loss")


def make_step(config, graphdef, tx):
    aug, s = config.augment, config.supervised
    loss_fn_kernel = getattr(losses, s.loss)
    kwargs = dict(s.loss_kwargs.to_dict())
    proxy = s.loss in PROXY_LOSSES

    def step(state, x, y):
        v = augment.batch_views(aug, parts.view_keys(state, x.shape[0], 0), x)

        def embed_fn(params, chunk):  # chunk [c, ...] -> z [c, D] (and the proxies)
            _, z, stats = parts.forward(graphdef, params, state.batch_stats, chunk)
            return ((z, params["proxies"]) if proxy else z), stats

        def loss_fn(z, labels):
            if proxy:
                embeddings, proxies = z
                return loss_fn_kernel(embeddings, labels, proxies, axis_name=AXIS, **kwargs)
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
    # A label loss's hyper-parameters are its spec's: its array inputs (`mask`,
    # `pairs`, `reference_embeddings`, ...) are not settable from a config.
    if s.loss in losses.LABEL_LOSSES:
        params = losses.LABEL_LOSSES[s.loss].hyper_params
    else:
        params = set(inspect.signature(fn).parameters) - {"embeddings", "labels", "proxies"}
        params -= {"mask", "axis_name"}
    for name in kwargs:
        if name not in params:
            raise ValueError(
                f"`supervised.loss_kwargs.{name}` is not a hyper-parameter of {s.loss}."
            )
    emb = jax.ShapeDtypeStruct((s.samples_per_class * 2, config.model.embed_dim), jnp.float32)
    labels = jax.ShapeDtypeStruct(emb.shape[:1], jnp.int32)
    proxies = (
        [jax.ShapeDtypeStruct((config.model.num_proxies, emb.shape[1]), jnp.float32)]
        if s.loss in PROXY_LOSSES
        else []
    )
    try:
        jax.eval_shape(lambda e, y, *p: fn(e, y, *p, **kwargs), emb, labels, *proxies)
    except (ValueError, TypeError) as err:
        raise ValueError(f"`supervised.loss_kwargs`: {err}") from err


def validate(config) -> None:
    s = config.supervised
    fields.choice("supervised.loss", s.loss, (*losses.LABEL_LOSSES, *PROXY_LOSSES))
    if s.loss in PROXY_LOSSES:
        if config.model.get("num_proxies", 0) <= 0:
            raise ValueError(
                f"`model.num_proxies` must be the number of training classes (> 0) for "
                f"`supervised.loss`={s.loss!r}, got {config.model.get('num_proxies', 0)!r}."
            )
        if config.model.head == "none":
            raise ValueError(
                f"`model.head` must not be 'none' for `supervised.loss`={s.loss!r} "
                "(the proxies have `model.embed_dim` columns)."
            )
        if config.grad_cache.chunk_size:
            raise ValueError(
                f"`grad_cache.chunk_size`={config.grad_cache.chunk_size}: gradient caching "
                f"does not support `supervised.loss`={s.loss!r}; set it to 0."
            )
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
