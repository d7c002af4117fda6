"""Reading an `explain` result (docs/spec.md §9 schema) for the viewer and the figures.

Every accessor checks what it needs and raises a one-line `LIGError` that names what is
missing and what is there. Orientation: `matrix[i][j]` = source token i → target token j.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LIGError
from ..measures.names import is_view
from ..schema import load

ROUTES = ("direct", "composed")


def load_result(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A result dict from a JSON or .npz file (or a dict), checked to be a lig result."""
    return load(source)  # checked by validation.check_result; .npz arrays stay numpy


def layers(result: dict[str, Any]) -> list[int]:
    """Layer indices present, ascending."""
    return sorted(int(k) for k in result["layers"])


def layer(result: dict[str, Any], index: int) -> dict[str, Any]:
    entry = result["layers"].get(str(index))
    if entry is None:
        raise LIGError(f"the result has no layer {index}; layers present: "
                       f"{', '.join(map(str, layers(result)))}")
    return entry


def routes(result: dict[str, Any], index: int) -> list[str]:
    """Which z→z routes layer `index` has: "direct" (z2z), "composed" (z2z_composed)."""
    entry = layer(result, index)
    return [r for r, key in zip(ROUTES, ("z2z", "z2z_composed"), strict=True) if key in entry]


def _route_block(result: dict[str, Any], index: int, route: str) -> tuple[str, dict[str, Any]]:
    """(key, block) of layer `index`'s z→z by `route`; one-line errors if absent."""
    if route not in ROUTES:
        raise LIGError(f"unknown route {route!r}; allowed: {', '.join(ROUTES)}")
    entry = layer(result, index)
    key = "z2z" if route == "direct" else "z2z_composed"
    if key not in entry:
        have = routes(result, index)
        hint = ("explain with granularity layer" if route == "direct" else
                "explain with granularity att and mlp, all heads")
        raise LIGError(f"layer {index} has no {route} z→z ({hint}); routes present: "
                       f"{', '.join(have) or 'none'}")
    return key, entry[key]


def z2z_targets(result: dict[str, Any], index: int, route: str = "direct") -> list[int]:
    """The target token of each column of `z2z_matrix(result, index, route)`."""
    key, block = _route_block(result, index, route)
    s = len(result["tokens"])
    if route == "direct":
        return list(range(s))
    cols = [int(c) for c in block.get("target_token_idx", range(s))]
    if any(not 0 <= c < s for c in cols):
        raise LIGError(f"layer {index} {key} target_token_idx {cols} is out of range for "
                       f"{s} tokens")
    return cols


def z2z_matrix(result: dict[str, Any], index: int, route: str = "direct") -> np.ndarray:
    """[S_src, T] z→z of layer `index` by `route`, checked against the tokens and the
    target columns (`z2z_targets`: all S tokens for direct)."""
    key, block = _route_block(result, index, route)
    m = np.asarray(block["matrix"], np.float64)
    want = (len(result["tokens"]), len(z2z_targets(result, index, route)))
    if m.shape != want:
        got = "×".join(map(str, m.shape)) or "a scalar"
        raise LIGError(f"layer {index} {key} matrix is {got}, expected {want[0]}×{want[1]}")
    return m


def measure_names(result: dict[str, Any], index: int) -> list[str]:
    """Layer `index`'s context-mixing maps (attention, alti, …, rollout/…; per-head arrays
    and raw distances left out)."""
    return [n for n in layer(result, index).get("measures", {}) if not is_view(n)]


def measure_matrix(result: dict[str, Any], index: int, name: str) -> np.ndarray:
    """[S_src, S_tgt] map of measure `name` at layer `index`, checked against the tokens;
    one-line error if absent."""
    have = measure_names(result, index)
    if name not in have:
        raise LIGError(f"layer {index} has no measure {name!r} (explain with --measures); "
                       f"measures present: {', '.join(have) or 'none'}")
    s = len(result["tokens"])
    m = np.asarray(layer(result, index)["measures"][name]["matrix"], np.float64)
    if m.shape != (s, s):
        raise LIGError(f"layer {index} measure {name} is "
                       f"{'×'.join(map(str, m.shape))}, expected {s}×{s}")
    return m


def measures(result: dict[str, Any], index: int) -> dict[str, np.ndarray]:
    """Every map of `measure_names` at layer `index` by name, each `measure_matrix`."""
    return {n: measure_matrix(result, index, n) for n in measure_names(result, index)}


def targets(result: dict[str, Any], index: int) -> list[int]:
    """Target tokens with z→u / u→z blocks in layer `index`."""
    return sorted(int(k) for k in layer(result, index).get("targets", {}))


def _target(result: dict[str, Any], index: int, target: int) -> dict[str, Any]:
    entry = layer(result, index).get("targets", {}).get(str(target))
    if entry is None:
        have = targets(result, index)
        raise LIGError(f"layer {index} has no target {target}; targets present: "
                       f"{', '.join(map(str, have)) or 'none (explain with granularity att/mlp)'}")
    return entry


def z2u_heads(result: dict[str, Any], index: int, target: int) -> tuple[list[int], np.ndarray]:
    """(heads, scores [H, S_src]) of z→u for one target."""
    block = _target(result, index, target).get("z2u")
    if block is None:
        raise LIGError(f"layer {index}, target {target} has no z→u (explain with granularity "
                       "att)")
    heads = sorted(int(h) for h in block["heads"])
    return heads, np.asarray([block["heads"][str(h)]["contributions"] for h in heads],
                             np.float64)


def num_heads(result: dict[str, Any]) -> int | None:
    """Attention heads: a u→z `head_shape`, the boundaries, or the number of heads of a z→u
    block when the result has all of them (not with `target_head`)."""
    for entry in result["layers"].values():
        for t in entry.get("targets", {}).values():
            if "head_shape" in t.get("u2z", {}):
                return int(t["u2z"]["head_shape"][0])
    known = (result.get("boundaries") or {}).get("num_heads")
    if known:
        return int(known)
    if (result.get("config") or {}).get("target_head") is not None:
        return None
    for entry in result["layers"].values():
        for t in entry.get("targets", {}).values():
            if "z2u" in t:
                return len(t["z2u"]["heads"])
    return None


def u2z_per_head(result: dict[str, Any], index: int, target: int) -> np.ndarray:
    """u→z contributions of one target summed over the H contiguous slices of u [H]."""
    block = _target(result, index, target).get("u2z")
    if block is None:
        raise LIGError(f"layer {index}, target {target} has no u→z (explain with granularity "
                       "mlp)")
    c = np.asarray(block["contributions"], np.float64)
    h = num_heads(result)
    if not h or c.size % h:
        raise LIGError("the result does not say how many heads u→z has (no z→u blocks)")
    return c.reshape(h, -1).sum(axis=1)
