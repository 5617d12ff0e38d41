"""Optimisers and learning-rate schedules (optax) from ``config.optimizer``."""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections
import optax


def decay_mask(params: Any) -> Any:
    """True for weight matrices / conv kernels, False for biases and
    BatchNorm scales and offsets, which SimCLR / LARS exclude from weight
    decay and from the trust ratio."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params
    )


def learning_rate(
    cfg: ml_collections.ConfigDict, batch_size: int, num_steps: int
) -> optax.Schedule:
    """The schedule: base lr (scaled by batch size if asked) with constant,
    cosine or linear-warmup + cosine decay to 0 over ``num_steps``."""
    base = cfg.learning_rate
    if cfg.lr_scaling == "linear":
        base = base * batch_size / 256  # SimCLR: 0.3 x B / 256
    elif cfg.lr_scaling == "sqrt":
        base = base * math.sqrt(batch_size)  # SimCLR: 0.075 x sqrt(B)
    if cfg.schedule == "constant":
        return optax.constant_schedule(base)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(base, num_steps)
    return optax.warmup_cosine_decay_schedule(
        0.0, base, max(cfg.warmup_steps, 1), max(num_steps, cfg.warmup_steps + 1), end_value=0.0
    )


def make_optimizer(
    cfg: ml_collections.ConfigDict, batch_size: int, num_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, schedule) for ``config.optimizer``.

    - "lars": ``optax.lars`` with weight decay and trust ratio on kernels
      only (SimCLR appendix B.9 / You et al. 2017).
    - "sgd": SGD with momentum; weight decay as an L2 term on kernels.
    - "adam": Adam; weight decay (if any) as an L2 term on kernels, as
      PyTorch's ``Adam(weight_decay=...)``.
    - "adamw": AdamW, decoupled decay on kernels.
    """
    lr = learning_rate(cfg, batch_size, num_steps)
    wd = cfg.weight_decay
    if cfg.name == "lars":
        tx = optax.lars(
            lr,
            weight_decay=wd,
            weight_decay_mask=decay_mask,
            trust_coefficient=cfg.trust_coefficient,
            trust_ratio_mask=decay_mask,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
        )
    elif cfg.name == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(wd, decay_mask),
            optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov),
        )
    elif cfg.name == "adam":
        tx = optax.chain(optax.add_decayed_weights(wd, decay_mask), optax.adam(lr))
    else:
        tx = optax.adamw(lr, weight_decay=wd, mask=decay_mask)
    return tx, lr
