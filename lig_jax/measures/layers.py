"""The measures of one sentence over its requested layers (the compute core's measure step).

Per-layer maps are computed where they are asked for, and at every lower layer a
requested rollout composes (blocks 0 … max layer); results come back cut to the real
tokens, float64, keyed by the names of `names.OUTPUTS` (per layer) and `rollout/<name>`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..errors import LIGError
from . import zeroing
from .maps import layer_maps
from .names import OUTPUTS, ROLLOUT_OF, needed_maps
from .rollout import lig_shares, rollout, with_residual

CHEAP = ("attention", "attention_norm", "alti")


def column_bytes(s: int, d: int, itemsize: int) -> int:
    """Working memory of one target column of attention_norm/ALTI ([S, d] a few times)."""
    return itemsize * 6 * s * d


@partial(jax.jit, static_argnames=("graphdef", "names", "chunk"))
def _maps(graphdef: nnx.GraphDef, state: nnx.State, z: jax.Array, key_mask: jax.Array,
          names: tuple[str, ...], chunk: int) -> dict[str, jax.Array]:
    return layer_maps(nnx.merge(graphdef, state), z, key_mask, names, chunk)


def measure_layers(model: nnx.Module, hidden: jax.Array, key_mask: jax.Array, length: int,
                   layers: list[int], names: list[str], dtype: Any, budget: int,
                   ffn: int | None = None, z2z: dict[int, np.ndarray] | None = None
                   ) -> dict[int, dict[str, np.ndarray]]:
    """{layer: {output name: array}} for every requested layer.

    model: its blocks (parameters where loading placed them); hidden [≥ max+1, S_b, d]:
    z^(0) … z^(max layer) of the padded sentence, `key_mask` [S_b] its real rows,
    `length` of them; names: measures and rollouts (`names.measure_list`); z2z: LIG's
    z→z [S, S] per layer (for rollout/lig, which needs every layer 0 … l)."""
    wanted = needed_maps(names)
    top = max(layers)
    at: dict[str, list[int]] = {}
    for m in wanted:
        rolled = any(ROLLOUT_OF.get(r) == m for r in names)
        at[m] = list(range(top + 1)) if rolled else sorted(set(layers))
    s, sb, d = length, hidden.shape[1], hidden.shape[-1]
    itemsize = jnp.dtype(dtype).itemsize
    col_chunk = int(max(1, min(sb, budget // column_bytes(sb, d, itemsize))))
    maps: dict[int, dict[str, np.ndarray]] = {}
    for l in sorted({l for ls in at.values() for l in ls}):
        block = model.layers[l]
        graphdef, state = nnx.split(block)
        state = jax.tree.map(lambda a: a.astype(dtype), state)
        z = hidden[l].astype(dtype)
        here = {}
        cheap = tuple(m for m in CHEAP if l in at.get(m, ()))
        if cheap:
            for k, v in _maps(graphdef, state, z, key_mask, cheap, col_chunk).items():
                v = np.asarray(v, np.float64)
                here[k] = v[..., :s, :s]
        if l in at.get("value_zeroing", ()):
            here["value_zeroing"], here["value_zeroing_raw"] = zeroing.value_zeroing(
                graphdef, state, z, key_mask, zeroing.visible(block, s), budget,
                block.num_heads, 2 * (ffn or 4 * d))
        maps[l] = here
    asked = {o for m in names if m in OUTPUTS for o in OUTPUTS[m]}
    out = {l: {k: v for k, v in maps.get(l, {}).items() if k in asked} for l in layers}
    for r in names:
        if r not in ROLLOUT_OF:
            continue
        base = ROLLOUT_OF[r]
        if base == "z2z":  # every layer 0 … top (`names.check_lig_rollout`)
            if z2z is None or any(k not in z2z for k in range(top + 1)):
                raise LIGError("rollout/lig needs LIG's z→z at layers 0.."
                               f"{top}; it has {sorted(z2z or [])}")
            chain = [lig_shares(z2z[k]) for k in range(top + 1)]
        else:
            chain = [maps[k][base] for k in range(top + 1)]
            if base == "attention":
                chain = [with_residual(m) for m in chain]
        rolled = rollout(chain)
        for l in layers:
            out[l][r] = rolled[l]
    return out
