"""Optional dependencies: the trainer pieces name the extra that provides them.

The kernels (losses, miners, distances, ``parallel``, the queue, ``search``,
``metrics``) need only the core install (jax, numpy, optax). The models, data
pipelines, trainer, plots and CLI need the ``[train]`` extra. Each of them
does its imports inside ``with requires(...)`` (or calls ``require``) at its
top, so importing one without the extra fails at once with the command that
installs it, not deep inside (or only later, at a lazy import) with a bare
``ModuleNotFoundError``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(what: str, *modules: str, extra: str = "train") -> None:
    """Raises unless every one of ``modules`` is installed.

    Only looks the modules up (``importlib.util.find_spec``), nothing is
    imported, so a heavy package that a piece imports lazily (inside a
    function) costs nothing here.

    Args:
      what: the piece that needs them, for the message (e.g. "jaxmetric.train").
      modules: module names (``"flax"``, ``"orbax.checkpoint"``).
      extra: the extra of ``pyproject.toml`` that installs them.

    Raises:
      ModuleNotFoundError: (an ``ImportError``) naming the missing modules and
        ``pip install 'jaxmetric[extra]'``.
    """
    missing = [m for m in modules if not _installed(m)]
    if missing:
        raise ModuleNotFoundError(
            f"{what} needs the [{extra}] extra ({', '.join(missing)} not installed); "
            f"install it with: pip install 'jaxmetric[{extra}]'",
            name=missing[0],
        )


@contextlib.contextmanager
def requires(what: str, *modules: str, extra: str = "train") -> Iterator[None]:
    """``require(what, *modules, extra=extra)`` on entering; the ``with`` body
    holds the piece's imports (so they stay imports at the top of the module)."""
    require(what, *modules, extra=extra)
    yield
