"""One benchmark case per subprocess, under a memory cap, with its peak RSS growth.

Shared by the benchmarks that measure memory (`metrics_memory.py`,
`retrieval.py`, `kmeans.py`, `grad_cache.py`): a case runs in a fresh
process (``python SCRIPT --case NAME ...``) whose address space is capped, so
a case that asks for too much is recorded as "out of memory" instead of
taking the machine down, and prints its result as the last line of JSON.

Peak growth is the process's peak resident set size (``VmHWM``, reset
through ``/proc/self/clear_refs`` just before the measured call where the
kernel allows it) minus its resident set size before the call: it counts
compilation and every temporary, not the inputs built before.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(``fn()``, seconds, peak RSS growth in MiB) of one call."""
    rss_before = status_kib("VmRSS")
    reset = reset_peak()
    hwm_before = status_kib("VmHWM")
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    growth = status_kib("VmHWM") - (rss_before if reset else hwm_before)
    return out, seconds, growth / 1024


def cap_memory(cap_bytes: int) -> None:
    """Caps this process's address space (call first thing in a case)."""
    resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))


def run_case(script: str, name: str, args: Sequence[str] = (), timeout_s: float = 3600) -> dict:
    """Runs ``python script --case name *args``; its last stdout line as a dict,
    or ``{"case": name, "error": "out of memory" | "failed" | "timeout"}``."""
    cmd = [sys.executable, script, "--case", name, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"case": name, "error": "timeout"}
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    oom = any(s in proc.stderr for s in ("MemoryError", "RESOURCE_EXHAUSTED", "std::bad_alloc"))
    tail = proc.stderr.strip().splitlines()[-3:]
    return {"case": name, "error": "out of memory" if oom else "failed", "tail": tail}


def machine() -> dict:
    """Where the numbers were measured."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
