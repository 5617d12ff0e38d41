"""``jaxmetric.queue`` (renamed ``jaxmetric.memory``) is a deprecated alias that warns."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import jaxmetric as jm


def test_queue_alias_warns_and_re_exports_memory():
    with warnings.catch_warnings():  # The first import (if it is the first) warns too.
        warnings.simplefilter("ignore", DeprecationWarning)
        import jaxmetric.queue as alias

    with pytest.warns(DeprecationWarning, match="jaxmetric.memory"):
        importlib.reload(alias)
    for name in ("MemoryQueue", "init_queue", "enqueue", "ema_update"):
        assert getattr(alias, name) is getattr(jm.memory, name) is getattr(jm, name)


def test_importing_jaxmetric_does_not_warn():
    code = "import jaxmetric, jaxmetric.memory, jaxmetric.losses"
    subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], check=True)
