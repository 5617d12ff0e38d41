"""Deprecated alias of ``jaxmetric.memory``: importing it warns.

The module was renamed because ``queue`` shadows the standard library's
module of that name. Import ``MemoryQueue``, ``init_queue``, ``enqueue`` and
``ema_update`` from ``jaxmetric.memory`` (or ``jaxmetric``) instead.
"""

from __future__ import annotations

import warnings

from jaxmetric.memory import MemoryQueue, ema_update, enqueue, init_queue

__all__ = ["MemoryQueue", "ema_update", "enqueue", "init_queue"]

warnings.warn(
    "`jaxmetric.queue` is deprecated: import from `jaxmetric.memory` (or `jaxmetric`) instead.",
    DeprecationWarning,
    stacklevel=2,
)
