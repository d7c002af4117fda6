"""The ("data", "model") mesh itself: its text form "DxM", building it over devices, and
the two placements the compute core asks for (replicated, and split along the data axis).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import LIGError

DATA, MODEL = "data", "model"

MESH_FORMAT = "DxM (data × model devices, e.g. 2x4)"


def parse_mesh(text: str) -> tuple[int, int]:
    """"2x4" → (2, 4); one-line LIGError otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise LIGError(f"mesh {text!r} is not of the form {MESH_FORMAT}")
    return int(m.group(1)), int(m.group(2))


def make_mesh(shape: tuple[int, int] | str, devices: Sequence[Any] | None = None) -> Mesh:
    """A ("data", "model") mesh over the first D·M of `devices` (default: all devices,
    every host's under multi-host)."""
    d, m = parse_mesh(shape) if isinstance(shape, str) else shape
    devs = list(jax.devices() if devices is None else devices)
    if d * m > len(devs):
        hint = ("; on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N in the "
                "environment gives N devices" if devs[0].platform == "cpu" else "")
        raise LIGError(f"mesh {d}x{m} needs {d * m} devices, {len(devs)} available "
                       f"({devs[0].platform}); choose D·M ≤ {len(devs)}{hint}")
    return Mesh(np.asarray(devs[:d * m]).reshape(d, m), (DATA, MODEL))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def along_data(mesh: Mesh, rank: int = 1) -> NamedSharding:
    """Leading axis split over the data axis (targets, or sentences)."""
    return NamedSharding(mesh, P(DATA, *([None] * (rank - 1))))
