"""Experiment A's quantities for one sentence, through the one compute core.

Per sentence and layer (docs/spec.md §10): layer-direct z→z, z→u and u→z under every
baseline of `baselines.TABLE` (residual on), computed by `engine.compute` — the same core
`explain` uses, on any family with the ATT/MLP split, encoders and decoders — plus the
composed z→z of every (ATT, MLP) pair. With `--measures`, the context-mixing measures and
their rollouts (`lig_jax.measures`) come from the same hidden states (records:
`measure/<name>` [L, S_src, S_tgt]; rollout/lig composes the default z→z baseline).
Steps follow the reference's rule on each path;
chunk sizes come from the fixed `--memory-budget` (128MB unless given), not from free
memory, so the sums are the same on every machine. On a ("data", "model") mesh
(`lig_jax.mesh`) the data axis deals sentences — to processes (`mesh/processes.py`),
then to the rows of each process's mesh (`mesh/rows.py`) — and the model axis splits
the blocks; the numbers do not depend on the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from .. import baselines, engine
from ..attribution import compose
from ..config import LIGConfig
from ..loading import LoadedModel
from ..measures.names import is_heads, measure_list
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
    # context-mixing measures beside LIG: a normalised comma list (`--measures`), "" none
    measures: str = ""

    @property
    def measure_names(self) -> list[str]:
        return measure_list(self.measures)


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
        out = record_arrays(done)
        names = self.settings.measure_names
        if names:
            lig = done.maps[f"z2z/{LIGConfig.baseline_layer}"]
            measured = engine.measures(layers, names, dict(enumerate(lig)))
            out.update(measure_arrays(measured, self.layers))
        return out


def measure_arrays(measured: dict[int, dict[str, np.ndarray]], layers: list[int]
                   ) -> dict[str, np.ndarray]:
    """measure/<name> [L, S_src, S_tgt] for every [S, S] map (per-head views left out)."""
    names = [k for k in measured[layers[0]] if not is_heads(k)]
    return {f"measure/{k}": np.stack([measured[l][k] for l in layers]).astype(np.float64)
            for k in names}


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
