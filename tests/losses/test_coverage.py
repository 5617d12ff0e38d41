"""Every public loss has cases in the registry, and every test family runs it.

A new name in ``jaxmetric.losses.__all__`` without cases in
tests/losses/cases.py, or left out of a family, fails here, naming the loss
and the family; so does a loss without a reference test module. Also the
kernel contract's signature: every loss takes ``mask`` and ``axis_name``.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re

import pytest

from jaxmetric import losses
from tests.losses import cases

# family -> the module that runs it (each parametrises its tests over its ``CASES``).
FAMILY_MODULES = {
    cases.SHARDED: "tests.losses.test_contract_sharded",
    cases.ROBUSTNESS: "tests.losses.test_contract_robustness",
    cases.PROPERTIES: "tests.losses.test_contract_properties",
    cases.BAD_INPUTS: "tests.losses.test_contract_bad_inputs",
}
HERE = pathlib.Path(__file__).parent


def test_every_family_has_a_module():
    assert set(FAMILY_MODULES) == set(cases.FAMILIES)


@pytest.mark.parametrize("name", losses.__all__)
def test_every_public_loss_has_cases(name):
    assert name in cases.losses_with_cases(), (
        f"{name} has no case in tests/losses/cases.py: add its cases (kind, hyper-parameters)"
    )


@pytest.mark.parametrize("family", cases.FAMILIES)
@pytest.mark.parametrize("name", losses.__all__)
def test_every_public_loss_is_in_every_family(name, family):
    module = importlib.import_module(FAMILY_MODULES[family])
    assert module.FAMILY == family
    tested = {case.loss for case in module.CASES}
    assert name in tested, (
        f"{name} is not tested by the {family!r} family ({FAMILY_MODULES[family]}): "
        f"give one of its cases in tests/losses/cases.py that family"
    )


def _reference_modules() -> dict[str, str]:
    """test module -> its text, for the per-loss reference test modules."""
    return {
        path.name: path.read_text()
        for path in sorted(HERE.glob("test_*.py"))
        if not path.name.startswith(("test_contract_", "test_coverage", "test_pml_"))
    }


@pytest.mark.parametrize("name", losses.__all__)
def test_every_public_loss_has_reference_tests(name):
    calls = re.compile(rf"\b(jm|jaxmetric|losses)\.{name}\b")
    found = [module for module, text in _reference_modules().items() if calls.search(text)]
    assert found, f"{name} is called by no reference test module tests/losses/test_<module>.py"


@pytest.mark.parametrize("name", losses.__all__)
def test_loss_signature_takes_mask_and_axis_name(name):
    """The kernel contract: every loss takes ``mask`` and ``axis_name``."""
    params = inspect.signature(getattr(losses, name)).parameters
    assert "mask" in params and "axis_name" in params, name
