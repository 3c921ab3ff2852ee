"""What /proc/cpuinfo says about this CPU: its flags and its model name (read once; None / "" elsewhere).

The one reader of /proc/cpuinfo: the precision rule (:mod:`zerohar.model.precision`), the per-machine timing
(:mod:`zerohar.model.tuning`, which keys its kept results by both) and the speed figures ask it.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def proc_flags() -> frozenset[str] | None:
    """Every flag of the first `flags` line of /proc/cpuinfo, or None where that cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The first `model name` of /proc/cpuinfo ("Intel(R) Xeon(R) Processor"), or "" where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        return ""
