"""Experiment A's quantities for one sentence, through the one compute core.

Per sentence and layer (docs/spec.md §10): layer-direct z→z, z→u and u→z under every
baseline of `baselines.TABLE` (residual on), computed by `engine.compute` — the same core
`explain` uses, on any family with the ATT/MLP split, encoders and decoders — plus the
composed z→z of every (ATT, MLP) pair. Steps follow the reference's rule on each path;
chunk sizes come from the fixed `--memory-budget` (128MB unless given), not from free
memory, so the sums are the same on every machine. On a ("data", "model") mesh
(`sharding.py`) the data axis deals sentences — to processes, then to the rows of each
process's mesh (`rows.py`) — and the model axis splits the blocks; the numbers do not
depend on the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from .. import baselines, engine, sharding
from ..attribution import compose
from ..config import LIGConfig
from ..errors import LIGError
from ..loading import LoadedModel
from ..quadrature import resolve_rule
from ..steps import step_plan

# Every baseline of every quantity (`baselines.TABLE`): what each record holds.
WANTED = {q: baselines.names(q) for q in ("z2z", "z2u", "u2z")}


@dataclass(frozen=True)
class Settings:
    """What fixes a run's numbers (kept in the store's manifest; a resume must match)."""

    steps: int = LIGConfig.num_steps
    max_length: int = 128
    # the memory budget of one chunk of nodes, in MiB (`--memory-budget`, the manifest's
    # "chunk_mb"); fixed, so the chunks (and the sums) are too
    chunk_mb: int = 128


def process_mesh(shape: str | None = None) -> tuple[Mesh | None, list[int]]:
    """This process's part of the run's ("data", "model") mesh, and every process's number
    of data rows (sentences are dealt to processes in that proportion).

    `shape` "DxM" spans the first D·M devices of all processes (`jax.devices()`, every
    host's under multi-host) in D rows of M; a row is one model group and must lie within
    one process; this process's rows form its mesh (None if it has none: it then computes
    nothing). Default: every device of every process, each its own row (M = 1).
    """
    everything = jax.devices()
    d, m = sharding.parse_mesh(shape) if shape else (len(everything), 1)
    grid = np.asarray(sharding.make_mesh((d, m), everything).devices)
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
    return (Mesh(mine, (sharding.DATA, sharding.MODEL)) if len(mine) else None), counts


class SentenceComputer:
    """One model's Experiment-A maps, sentence by sentence, on one mesh."""

    def __init__(self, lm: LoadedModel, settings: Settings, mesh: Mesh | None):
        self.lm, self.settings, self.mesh = lm, settings, mesh
        self.num_heads = lm.config.num_heads
        self.layers = list(range(lm.config.num_layers))
        self.plans = {p: step_plan(resolve_rule("reference", r), settings.steps)
                      for p, r in lm.family.reference_rules}

    def run(self, ids: list[int]) -> dict[str, np.ndarray]:
        """Every array of one sentence's record (float64, cut to its tokens)."""
        layers = engine.sentence_layers(self.lm, ids, self.layers, dtype=jnp.float32,
                                        budget=self.settings.chunk_mb * 2**20,
                                        mesh=self.mesh)
        s = len(ids)
        done = engine.compute(layers, WANTED, self.plans, list(range(s)),
                              list(range(self.num_heads)), residual=True)
        return record_arrays(done)


def record_arrays(done: engine.Computed) -> dict[str, np.ndarray]:
    """A record's arrays from the core's output.

    z2z/<b>: [L, S_src, S_tgt]; z2u/<b>: [L, T, H, S_src] (T = S targets);
    u2z/<b>: [L, T, w]; composed/<att>/<mlp>: [L, S_src, S_tgt] (docs/spec.md §7); and per
    raw run the completeness totals total/z2z_<raw> [L, T], total/z2u_sum_<raw> and
    total/z2u_<raw> [L, T, H], total/u2z_<raw> [L, T].
    """
    out = {k: np.asarray(v, np.float64) for k, v in done.maps.items()}
    for key, res in done.raw.items():
        quantity, raw = key.split("/")
        if quantity == "z2u":
            out[f"total/z2u_sum_{raw}"] = np.asarray(res.arrays[1], np.float64)
            out[f"total/z2u_{raw}"] = np.asarray(res.arrays[2], np.float64)
        else:
            out[f"total/{quantity}_{raw}"] = np.asarray(res.arrays[1], np.float64)
    n_layers = out["z2z/zero"].shape[0]
    for att in WANTED["z2u"]:
        for mlp in WANTED["u2z"]:
            out[f"composed/{att}/{mlp}"] = np.stack([
                compose.composed(out[f"z2u/{att}"][l], out[f"u2z/{mlp}"][l])
                for l in range(n_layers)]).astype(np.float64)
    return out
