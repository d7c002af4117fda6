"""How LIG and each context-mixing measure agree, per layer: rank correlations of one
result (`lig-jax correlate`), as the papers in this line report them.

For every layer holding LIG's z→z and a measure (both [S_src, S_tgt]), each target
column is one ranking of its sources: Spearman's ρ between LIG's column and the
measure's, over the sources the target can see (a decoder's sources ≤ target; a source
that both maps give exactly 0 — outside a sliding window — is left out), averaged
over the targets — once with every source, once without the target itself (the
diagonal, which dominates measures that include the residual). Rollouts are set against
LIG's own rollout (`rollout/lig`) where the result has it. Targets with fewer than three
sources (two without the diagonal), or a constant column, give no ρ and are left out of
the mean; `targets` says how many counted.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from .errors import LIGError
from .measures.names import ROLLOUT_PREFIX, is_view

COLUMNS = ("layer", "measure", "against", "spearman", "spearman_no_diagonal", "targets")


def _column_rho(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def layer_rho(lig: np.ndarray, other: np.ndarray, causal: bool) -> tuple[float, float, int]:
    """(mean ρ with the diagonal, mean ρ without it, targets counted) of two [S, S] maps."""
    lig, other = np.asarray(lig, np.float64), np.asarray(other, np.float64)
    s = lig.shape[0]
    full, nodiag = [], []
    for j in range(s):
        src = np.arange(j + 1) if causal else np.arange(s)
        src = src[(lig[src, j] != 0) | (other[src, j] != 0)]
        full.append(_column_rho(lig[src, j], other[src, j]))
        rest = src[src != j]
        nodiag.append(_column_rho(lig[rest, j], other[rest, j]) if rest.size >= 2
                      else float("nan"))
    counted = int(np.sum(np.isfinite(full)))

    def mean(values: list[float]) -> float:
        v = np.asarray(values)
        return float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")

    return mean(full), mean(nodiag), counted


def correlations(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (layer, measure): see the module doc and `COLUMNS`."""
    causal = result.get("architecture") == "decoder"
    rows = []
    for key in sorted(result["layers"], key=int):
        entry = result["layers"][key]
        measures = entry.get("measures", {})
        if "z2z" not in entry or not measures:
            continue
        lig = np.asarray(entry["z2z"]["matrix"], np.float64)
        for name, block in measures.items():
            if is_view(name) or name == "rollout/lig":
                continue
            against = "z2z"
            base = lig
            if name.startswith(ROLLOUT_PREFIX):
                if "rollout/lig" not in measures:
                    continue
                against, base = "rollout/lig", np.asarray(measures["rollout/lig"]["matrix"])
            rho, rho_nd, n = layer_rho(base, np.asarray(block["matrix"]), causal)
            rows.append({"layer": int(key), "measure": name, "against": against,
                         "spearman": rho, "spearman_no_diagonal": rho_nd, "targets": n})
    if not rows:
        raise LIGError("the result holds no layer with both LIG's z→z and a measure: run "
                       "explain with --granularity layer (or all) and --measures")
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Measures × layers, each cell `ρ / ρ without the diagonal`."""
    layers = sorted({r["layer"] for r in rows})
    names = list(dict.fromkeys(r["measure"] for r in rows))
    cell = {(r["measure"], r["layer"]): r for r in rows}
    width = max(len(n) for n in names) + 2

    def fmt(v: float) -> str:
        return "   nan" if not np.isfinite(v) else f"{v:+.3f}"

    lines = ["Spearman ρ between LIG (z→z; rollouts: rollout/lig) and each measure, mean "
             "over targets: with / without the diagonal",
             "measure".ljust(width) + "".join(f"layer {l}".ljust(17) for l in layers)]
    for n in names:
        parts = []
        for l in layers:
            r = cell.get((n, l))
            parts.append((f"{fmt(r['spearman'])} / {fmt(r['spearman_no_diagonal'])}"
                          if r else "-").ljust(17))
        lines.append(n.ljust(width) + "".join(parts))
    return "\n".join(lines)
