"""Turning one layer's arrays into the reference's JSON blocks (spec §9), plus our extras.

Orientation everywhere: `matrix[i][j]` = source i → target j.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .attribution import compose
from .steps import StepResult, relative_error

DESC_Z2Z = "Layer-whole IG (z -> z){block}, L2-scalarized"
DESC_Z2Z_BLOCK = {"pre_ln_decoder": ", decoder block",
                  "pre_post_ln_decoder": ", Gemma3 pre+post-LN block"}
DESC_Z2U = "ATT IG (z -> u), L2-scalarized"
DESC_Z2U_DECODER = "ATT IG (z -> u), causal decoder; per-head token scores"
DESC_Z2U_FIX = {"itb_zero_ratio": " (ITB-zeroRatio)", "itb_map_ratio": " (ITB-mapRatio)"}
DESC_U2Z = "MLP IG (u -> z), L2-scalarized"
DESC_U2Z_DECODER = "MLP IG (u -> z), post-attn u to z^(l+1), L2-scalarized"
DECODER_LAYOUTS = ("pre_ln_decoder", "pre_post_ln_decoder")
DESC_COMPOSED = "Composed z -> z: sum over heads of ATT IG (z -> u) x MLP IG (u -> z) slice"


def floats(a: np.ndarray) -> list:
    return np.asarray(a, np.float64).tolist()


def scalar_or_list(a: np.ndarray) -> float | list:
    a = np.asarray(a, np.float64).ravel()
    return float(a[0]) if np.all(a == a[0]) else a.tolist()


def layer_of(res: StepResult, l: int) -> StepResult:
    """The slice of a layer-stacked result for layer position l."""
    return StepResult(tuple(a[l] for a in res.arrays), res.steps[l], res.weight_sum[l],
                      None if res.converged is None else res.converged[l], res.rule)


def completeness(sums: np.ndarray, change: np.ndarray, res: StepResult) -> dict[str, Any]:
    """Σ attributions vs. the scalar's change × Σw, per column."""
    rel = relative_error(sums, change, res.weight_sum)
    out = {"ig_sum": floats(sums), "scalar_change": floats(change),
           "weight_sum": scalar_or_list(res.weight_sum),
           "relative_error": floats(rel), "max_relative_error": float(np.max(rel))}
    if res.converged is not None:
        out["steps_used"] = res.steps.tolist()
        out["converged"] = res.converged.tolist()
    return out


def z2z_block(matrix: np.ndarray, raw: StepResult, baseline: str, tokens: list[str],
              targets: list[int], layout: str = "post_ln_encoder") -> dict[str, Any]:
    """matrix [S, S] (after any fix); raw: the unfixed run's columns and L_j."""
    s = matrix.shape[0]
    cols, total = raw.arrays
    return {
        "baseline": baseline,
        "description": DESC_Z2Z.format(block=DESC_Z2Z_BLOCK.get(layout, "")),
        "shape": [s, s],
        "matrix": floats(matrix),
        "token_to_token": [
            {"target_token_idx": j, "target_token": tokens[j], "contributions": [
                {"source_token_idx": i, "source_token": tokens[i], "value": float(matrix[i, j])}
                for i in targets]}
            for j in targets
        ],
        "rule": raw.rule,
        "completeness": completeness(cols.sum(axis=1), total, raw),
    }


def z2u_blocks(scores: np.ndarray, raw: StepResult, baseline: str, targets: list[int],
               heads: list[int], decoder: bool = False) -> list[dict[str, Any]]:
    """scores [T, Hs, S] → one `z2u` block per target (raw: signed sums and f per column)."""
    _, signed, change = raw.arrays
    rel = relative_error(signed, change, raw.weight_sum)
    desc = DESC_Z2U_DECODER if decoder else DESC_Z2U + DESC_Z2U_FIX.get(baseline, "")
    out = []
    for ti in range(len(targets)):
        heads_out = {}
        for hi, h in enumerate(heads):
            comp = {"ig_sum": float(signed[ti, hi]), "scalar_change": float(change[ti, hi]),
                    "relative_error": float(rel[ti, hi])}
            if raw.converged is not None:
                comp.update(steps_used=int(raw.steps[ti, hi]),
                            weight_sum=float(raw.weight_sum[ti, hi]),
                            converged=bool(raw.converged[ti, hi]))
            heads_out[str(h)] = {"contributions": floats(scores[ti, hi]),
                                 "token_l2_norm": float(np.linalg.norm(scores[ti, hi])),
                                 "completeness": comp}
        out.append({"baseline": baseline, "description": desc, "heads": heads_out,
                    "rule": raw.rule, "weight_sum": scalar_or_list(raw.weight_sum[ti])})
    return out


def u2z_blocks(res: StepResult, baseline: str, layout: str = "post_ln_encoder",
               num_heads: int = 1, ig_sum_as_total: bool = False) -> list[dict[str, Any]]:
    """One `u2z` block per target from contributions [T, w] and the true gaps [T].

    Decoders add the reference's `max_abs_error`; Gemma3 its `input_width`/`head_shape`.
    `ig_sum_as_total` (reference quirk, GPT-2/Llama): `l2_total` reports Σc instead of
    the gap ‖h(u) − h(u′)‖ (completeness is always against the true gap).
    """
    contrib, total = res.arrays
    rel = relative_error(contrib.sum(axis=1), total, res.weight_sum)
    decoder = layout in DECODER_LAYOUTS
    out = []
    for t in range(contrib.shape[0]):
        ig_sum = float(contrib[t].sum())
        err = ig_sum - float(total[t])
        comp = {"error": err, "mean_abs_error": abs(err),
                "expected": float(total[t] * res.weight_sum[t]),
                "relative_error": float(rel[t]), "weight_sum": float(res.weight_sum[t])}
        if decoder:
            comp["max_abs_error"] = abs(err)
        if res.converged is not None:
            comp.update(steps_used=int(res.steps[t]), converged=bool(res.converged[t]))
        block = {"baseline": baseline,
                 "description": DESC_U2Z_DECODER if decoder else DESC_U2Z,
                 "contributions": floats(contrib[t]),
                 "l2_total": ig_sum if ig_sum_as_total else float(total[t]),
                 "completeness": comp, "rule": res.rule}
        if layout == "pre_post_ln_decoder":
            width = contrib.shape[1]
            block["input_width"] = width
            block["head_shape"] = [num_heads, width // num_heads]
        out.append(block)
    return out


def composed_block(scores: np.ndarray, contributions: np.ndarray, num_heads: int,
                   baseline_att: str, baseline_mlp: str, targets: list[int]) -> dict[str, Any]:
    """scores [T, H, S] (z→u, all heads), contributions [T, d] (u→z) → composed [S, T]."""
    per_slice = compose.head_slices(contributions, num_heads)  # [T, H]
    prod = compose.compose(np.transpose(scores, (1, 2, 0)), per_slice)  # [S, T]
    return {"baseline_att": baseline_att, "baseline_mlp": baseline_mlp,
            "description": DESC_COMPOSED, "shape": list(prod.shape),
            "target_token_idx": targets, "matrix": floats(prod)}
