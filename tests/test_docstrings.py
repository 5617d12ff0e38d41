"""Docstring examples run, and every public kernel documents formula and reference."""

from __future__ import annotations

import doctest
import inspect

import pytest

import jaxmetric as jm
from jaxmetric import distances, losses, memory, mining, parallel
from jaxmetric.losses import angular, contrastive, moco, npair, ntxent, triplet

MODULES = [distances, mining, parallel, memory, angular, contrastive, moco, npair, ntxent, triplet]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


@pytest.mark.parametrize("name", losses.__all__)
def test_every_loss_documents_formula_shapes_and_reference(name):
    doc = inspect.getdoc(getattr(jm, name))
    assert ".. math::" in doc
    assert "Args:" in doc and "Returns:" in doc
    assert "Reference" in doc
    assert "[" in doc  # Shapes such as [B, D].


def test_public_functions_have_docstrings():
    for module in [distances, mining, parallel, memory]:
        for name, obj in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(obj):
                continue
            if obj.__module__ != module.__name__:
                continue
            assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"
