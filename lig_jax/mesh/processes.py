"""A multi-host run's mesh: which of the mesh's data rows this process computes."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

from ..errors import LIGError
from .layout import DATA, MODEL, make_mesh, parse_mesh


def process_mesh(shape: str | None = None) -> tuple[Mesh | None, list[int]]:
    """This process's part of the run's ("data", "model") mesh, and every process's number
    of data rows (sentences are dealt to processes in that proportion).

    `shape` "DxM" spans the first D·M devices of all processes (`jax.devices()`, every
    host's under multi-host) in D rows of M; a row is one model group and must lie within
    one process; this process's rows form its mesh (None if it has none: it then computes
    nothing). Default: every device of every process, each its own row (M = 1).
    """
    everything = jax.devices()
    d, m = parse_mesh(shape) if shape else (len(everything), 1)
    grid = np.asarray(make_mesh((d, m), everything).devices)
    owners = []
    for row in grid:
        procs = sorted({dev.process_index for dev in row})
        if len(procs) > 1:
            raise LIGError(f"mesh {d}x{m}: a model group of {m} devices would span processes "
                           f"{procs}; choose M dividing each host's "
                           f"{jax.local_device_count()} devices")
        owners.append(procs[0])
    counts = [owners.count(p) for p in range(jax.process_count())]
    mine = grid[[i for i, o in enumerate(owners) if o == jax.process_index()]]
    return (Mesh(mine, (DATA, MODEL)) if len(mine) else None), counts
