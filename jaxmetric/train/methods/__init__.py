"""The training methods: one module each, found by name.

A module of this package that defines ``METHOD`` (a `Method`) is a training
method: ``config.method = "<name>"`` selects it, ``config.<name>`` holds its
fields, and every list of methods (the config schema, validation, the train
state's extra fields, ``benchmarks/compare.py``) derives from this registry.
Adding a method is adding a module here (see CONTRIBUTING.md).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from jaxmetric.train.methods.base import Method, StepFn

__all__ = ["Method", "StepFn", "all_methods", "get", "names"]

# Modules of this package that are building blocks, not methods.
_NOT_METHODS = ("base", "parts")


@functools.cache
def _registry() -> dict[str, Method]:
    # Imported on first use, not at import time: the method modules import
    # the train state, which imports the models, and the config schema
    # imports this package.
    found: dict[str, Method] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_METHODS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        method = getattr(module, "METHOD", None)
        if not isinstance(method, Method):
            raise TypeError(f"{module.__name__} defines no `METHOD = Method(...)`.")
        if method.name != info.name:
            raise ValueError(f"{module.__name__} declares the method name {method.name!r}.")
        found[method.name] = method
    return found


def all_methods() -> tuple[Method, ...]:
    """Every registered method, by name."""
    return tuple(_registry().values())


def names() -> tuple[str, ...]:
    """The valid values of ``config.method``."""
    return tuple(_registry())


def get(name: str) -> Method:
    """The method called ``name``; ValueError naming ``method`` otherwise."""
    methods = _registry()
    if name not in methods:
        raise ValueError(f"`method` must be one of {tuple(methods)}, got {name!r}.")
    return methods[name]
