"""The memory budget: how many bytes one chunk of the computation may use (`--memory-budget`,
or a share of the device's free memory), and the free memory of the host and the device.
"""

from __future__ import annotations

import os
import re

import jax

from .errors import LIGError

# The default budget is this share of the free memory of the default device.
DEFAULT_SHARE = 0.4
MIN_BUDGET = 64 * 2**20
UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30,
         "GB": 2**30, "T": 2**40, "TB": 2**40}


def free_host_memory() -> int:
    """The machine's available memory in bytes (MemAvailable; sysconf elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def free_memory() -> int:
    """Free bytes of the default device: `memory_stats()` on accelerators, the machine's
    available memory on the CPU."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    except Exception:  # backends without memory stats
        pass
    return free_host_memory()


def parse_bytes(value: int | str) -> int:
    """An amount of memory: an int (bytes) or a string such as "4GB", "512M", "1.5G"."""
    if isinstance(value, bool):
        raise LIGError(f"memory budget must be a size such as 4GB or 512MB. Got: {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(value))
        unit = m.group(2).upper() if m else None
        if m is None or unit not in UNITS:
            raise LIGError(f"memory budget must be a size such as 4GB, 512MB or a number of "
                           f"bytes. Got: {value!r}")
        n = int(float(m.group(1)) * UNITS[unit])
    if n < MIN_BUDGET:
        raise LIGError(f"memory budget must be at least 64MB. Got: {value!r}")
    return n


def memory_budget(value: int | str | None = None) -> int:
    """Bytes the working set of one chunk may use: `value`, or by default
    `DEFAULT_SHARE` of the default device's free memory (at least 64 MB)."""
    if value is not None:
        return parse_bytes(value)
    return max(MIN_BUDGET, int(free_memory() * DEFAULT_SHARE))
