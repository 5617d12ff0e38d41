"""Docstring examples run, and every public kernel documents formula and reference.

The modules are discovered, not listed: every module of ``jaxmetric`` outside
the non-kernel packages below (models, data, training, CLI, plots) and every
module inside a kernel package (``jaxmetric.losses.*``, ``jaxmetric.metrics.*``)
has its examples run, so a new kernel module is covered when it is added.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import jaxmetric as jm
from jaxmetric import losses

# Top-level modules and packages of jaxmetric that are not kernels (they may
# need the [train] extras); ``queue`` is the deprecated alias of ``memory``.
NOT_KERNELS = {"augment", "data", "demo", "main", "models", "plots", "queue", "train"}


def _kernel_modules() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(jm.__path__, prefix="jaxmetric."):
        if info.name.removeprefix("jaxmetric.") in NOT_KERNELS:
            continue
        names.append(info.name)
        if info.ispkg:  # A package (losses, metrics, ...): all its modules.
            package = importlib.import_module(info.name)
            walk = pkgutil.walk_packages(package.__path__, prefix=info.name + ".")
            names.extend(sub.name for sub in walk)
    return sorted(names)


KERNEL_MODULES = _kernel_modules()
# Modules whose names have no private part: their public functions need docstrings.
PUBLIC_MODULES = [
    name for name in KERNEL_MODULES if not any(p.startswith("_") for p in name.split("."))
]


def test_discovery_finds_the_kernel_layer():
    for name in ("distances", "mining", "parallel", "memory", "losses.ntxent", "losses.xbm"):
        assert f"jaxmetric.{name}" in KERNEL_MODULES
    assert any(name.startswith("jaxmetric.metrics") for name in KERNEL_MODULES)
    outside = ("jaxmetric.train", "jaxmetric.models", "jaxmetric.queue")
    assert not any(name.startswith(outside) for name in KERNEL_MODULES)


@pytest.mark.parametrize("name", KERNEL_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("name", losses.__all__)
def test_every_loss_documents_formula_shapes_and_reference(name):
    doc = inspect.getdoc(getattr(jm, name))
    assert ".. math::" in doc
    assert "Args:" in doc and "Returns:" in doc
    assert "Reference" in doc
    assert "[" in doc  # Shapes such as [B, D].


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_functions_have_docstrings(name):
    module = importlib.import_module(name)
    for attr, obj in vars(module).items():
        if attr.startswith("_") or not inspect.isfunction(obj):
            continue
        if obj.__module__ != module.__name__:
            continue
        assert inspect.getdoc(obj), f"{module.__name__}.{attr} has no docstring"
