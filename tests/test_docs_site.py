"""The documentation site (mkdocs.yml) builds with ``mkdocs build --strict``,
offline, and its API reference documents every public name.

The names are read from ``jaxmetric.__all__`` and from the ``__all__`` of each
package the API pages render (functions and classes), so a new export that
the reference does not show fails here. The mkdocstrings headings carry the
object's full path as their HTML id (``id="jaxmetric.losses.simclr_loss"``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import pathlib
import re
import subprocess
import sys

import pytest

import jaxmetric

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _api_ids(site: pathlib.Path) -> set[str]:
    ids: set[str] = set()
    for page in (site / "api").rglob("*.html"):
        ids |= set(re.findall(r'id="(jaxmetric[\w.]*)"', page.read_text()))
    return ids


def _rendered_modules() -> list[str]:
    """The modules that the API pages render (``::: jaxmetric.x``)."""
    names = []
    for page in sorted((DOCS / "api").glob("*.md")):
        names += re.findall(r"^::: (jaxmetric[\w.]*)\s*$", page.read_text(), flags=re.M)
    return names


def test_every_public_name_is_in_the_api_reference(site):
    ids = _api_ids(site)
    modules = _rendered_modules()
    assert {"jaxmetric.losses", "jaxmetric.mining", "jaxmetric.train"} <= set(modules)
    # Top level: each name of jaxmetric.__all__ is a rendered module or an
    # entry of one (the losses under jaxmetric.losses, MemoryQueue under
    # jaxmetric.memory, ...).
    missing = [
        n
        for n in jaxmetric.__all__
        if f"jaxmetric.{n}" not in modules and not any(f"{m}.{n}" in ids for m in modules)
    ]
    assert not missing, f"jaxmetric.__all__ names without an API entry: {missing}"
    # Each rendered package's own exports (its functions and classes; constants
    # and submodules have no docstring of their own).
    for module_name in modules:
        if module_name == "jaxmetric":  # rendered without members: checked above
            continue
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert f"{module_name}.{name}" in ids, f"{module_name}.{name} is not documented"


def test_every_public_module_has_an_api_page():
    # A top-level module of the package is rendered, but for the CLI and the
    # deprecated alias of ``memory``.
    modules = set(_rendered_modules())
    for path in (ROOT / "jaxmetric").iterdir():
        name = path.stem
        if name.startswith("_") or name in {"main", "queue"}:
            continue
        if path.suffix == ".py" or (path / "__init__.py").exists():
            assert f"jaxmetric.{name}" in modules, f"jaxmetric.{name} has no docs/api page"


def test_the_site_loads_nothing_from_the_network(site):
    # No web fonts, scripts or stylesheets from a CDN: the pages work offline.
    for page in site.rglob("*.html"):
        text = page.read_text()
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//[^"]+"', text)
        assert not remote, f"{page.relative_to(site)} loads {remote}"


def test_relative_links_of_the_guides_resolve():
    # mkdocs leaves links outside docs/ (../README.md, ../configs/) to the
    # repository (validation.links.not_found: info); they must exist there.
    link = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
    broken = []
    for page in sorted(DOCS.rglob("*.md")):
        for target in link.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
