"""A `Result` (arrays) → the reference's JSON schema (docs/spec.md §9), plus our extras.

Orientation everywhere: `matrix[i][j]` = source i → target j. Extra keys beyond the
reference's: `rule`, `completeness` blocks, `z2z_composed`, the top-level `completeness`
summary (`results.completeness_summary`), `quadrature`, `timings`, `versions`. With
`lists=False` matrices and contribution vectors stay numpy arrays (the schema for reading
large .npz results without building Python lists). `load` reads any result file (.json,
.npz) into the schema (explain-batch's JSON Lines files: `batchfile`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LIGError
from .files import read_result_bytes
from .measures.names import DESCRIPTIONS
from .results import Result, load_npz
from .validation import check_result

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
META_KEYS = ("config", "boundaries")
TAIL_KEYS = ("completeness", "quadrature", "timings", "versions")


def floats(a: np.ndarray) -> list:
    return np.asarray(a, np.float64).tolist()


def scalar_or_list(a: np.ndarray) -> float | list:
    a = np.asarray(a, np.float64).ravel()
    return float(a[0]) if np.all(a == a[0]) else a.tolist()


def _completeness(arrays: dict[str, np.ndarray], prefix: str, index: tuple = ()
                  ) -> dict[str, np.ndarray]:
    """The completeness arrays of `prefix`, sliced at `index` (one target, one head)."""
    head = f"{prefix}_completeness/"
    return {k[len(head):]: v[index] for k, v in arrays.items() if k.startswith(head)}


def _column_block(c: dict[str, np.ndarray]) -> dict[str, Any]:
    out = {"ig_sum": floats(c["ig_sum"]), "scalar_change": floats(c["scalar_change"]),
           "weight_sum": scalar_or_list(c["weight_sum"]),
           "relative_error": floats(c["relative_error"]),
           "max_relative_error": float(np.max(c["relative_error"]))}
    if "converged" in c:
        out["steps_used"] = c["steps_used"].tolist()
        out["converged"] = c["converged"].tolist()
    return out


def z2z_block(arrays: dict, baseline: str, tokens: list[str], targets: list[int],
              layout: str, rule: str, vec: Callable) -> dict[str, Any]:
    matrix = arrays["z2z"]
    s = matrix.shape[0]
    return {
        "baseline": baseline,
        "description": DESC_Z2Z.format(block=DESC_Z2Z_BLOCK.get(layout, "")),
        "shape": [s, s],
        "matrix": vec(matrix),
        "token_to_token": [
            {"target_token_idx": j, "target_token": tokens[j], "contributions": [
                {"source_token_idx": i, "source_token": tokens[i], "value": float(matrix[i, j])}
                for i in targets]}
            for j in targets
        ],
        "rule": rule,
        "completeness": _column_block(_completeness(arrays, "z2z")),
    }


def z2u_block(arrays: dict, t: int, baseline: str, heads: list[int], decoder: bool, rule: str,
              vec: Callable) -> dict[str, Any]:
    """The `z2u` block of the t-th target."""
    scores = arrays["z2u"][t]  # [Hs, S]
    desc = DESC_Z2U_DECODER if decoder else DESC_Z2U + DESC_Z2U_FIX.get(baseline, "")
    per_target = _completeness(arrays, "z2u", (t,))  # arrays [Hs], sliced once per target
    c = {k: np.asarray(v).tolist() for k, v in per_target.items()}
    heads_out = {}
    for hi, h in enumerate(heads):
        comp = {"ig_sum": float(c["ig_sum"][hi]), "scalar_change": float(c["scalar_change"][hi]),
                "relative_error": float(c["relative_error"][hi])}
        if "converged" in c:
            comp.update(steps_used=int(c["steps_used"][hi]),
                        weight_sum=float(c["weight_sum"][hi]), converged=bool(c["converged"][hi]))
        heads_out[str(h)] = {"contributions": vec(scores[hi]),
                             "token_l2_norm": float(np.linalg.norm(scores[hi])),
                             "completeness": comp}
    return {"baseline": baseline, "description": desc, "heads": heads_out, "rule": rule,
            "weight_sum": scalar_or_list(per_target["weight_sum"])}


def u2z_block(arrays: dict, t: int, baseline: str, layout: str, num_heads: int,
              ig_sum_as_total: bool, rule: str, vec: Callable) -> dict[str, Any]:
    """The t-th target's `u2z` block. Decoders add the reference's `max_abs_error`;
    Gemma3 its `input_width`/`head_shape`. `ig_sum_as_total` (reference quirk, GPT-2/Llama):
    `l2_total` reports Σc instead of the gap ‖h(u) − h(u′)‖ (completeness is always against
    the true gap)."""
    contrib = arrays["u2z"][t]
    c = _completeness(arrays, "u2z", (t,))
    ig_sum, total = float(c["ig_sum"]), float(c["scalar_change"])
    err = ig_sum - total
    comp = {"error": err, "mean_abs_error": abs(err),
            "expected": total * float(c["weight_sum"]),
            "relative_error": float(c["relative_error"]), "weight_sum": float(c["weight_sum"])}
    decoder = layout in DECODER_LAYOUTS
    if decoder:
        comp["max_abs_error"] = abs(err)
    if "converged" in c:
        comp.update(steps_used=int(c["steps_used"]), converged=bool(c["converged"]))
    block = {"baseline": baseline, "description": DESC_U2Z_DECODER if decoder else DESC_U2Z,
             "contributions": vec(contrib), "l2_total": ig_sum if ig_sum_as_total else total,
             "completeness": comp, "rule": rule}
    if layout == "pre_post_ln_decoder":
        width = contrib.shape[0]
        block["input_width"] = width
        block["head_shape"] = [num_heads, width // num_heads]
    return block


def explanation(result: Result, lists: bool = True) -> dict[str, Any]:
    """The JSON-schema dict of `result` (key order as the reference's, then our extras)."""
    meta, fmt = result.meta, result.meta["format"]
    cfg, tokens = meta["config"], meta["tokens"]
    targets, heads, layout = cfg["target_tokens"], fmt["heads"], fmt["layout"]
    rules = {p: q["rule"] for p, q in meta["quadrature"].items()}
    decoder = layout in DECODER_LAYOUTS
    vec = floats if lists else (lambda a: np.asarray(a))
    out_layers: dict[str, Any] = {}
    for l, arrays in result.layers.items():
        entry: dict[str, Any] = {"layer_idx": l}
        if "z2z" in arrays:
            entry["z2z"] = z2z_block(arrays, cfg["baseline_layer"], tokens, targets, layout,
                                     rules["z2z"], vec)
        if "z2u" in arrays or "u2z" in arrays:
            entry["targets"] = {}
            for t, j in enumerate(targets):
                tgt: dict[str, Any] = {"target_token_idx": j, "target_token": tokens[j]}
                if "z2u" in arrays:
                    tgt["z2u"] = z2u_block(arrays, t, cfg["baseline_att"], heads, decoder,
                                           rules["z2u"], vec)
                if "u2z" in arrays:
                    tgt["u2z"] = u2z_block(arrays, t, cfg["baseline_mlp"], layout,
                                           fmt["num_heads"], fmt["ig_sum_as_total"],
                                           rules["u2z"], vec)
                entry["targets"][str(j)] = tgt
        if "z2z_composed" in arrays:
            prod = arrays["z2z_composed"]
            entry["z2z_composed"] = {"baseline_att": cfg["baseline_att"],
                                     "baseline_mlp": cfg["baseline_mlp"],
                                     "description": DESC_COMPOSED, "shape": list(prod.shape),
                                     "target_token_idx": targets, "matrix": vec(prod)}
        measured = {k: v for k, v in arrays.items() if k in DESCRIPTIONS}
        if measured:
            entry["measures"] = {k: {"description": DESCRIPTIONS[k], "shape": list(v.shape),
                                     "matrix": vec(v)} for k, v in measured.items()}
        out_layers[str(l)] = entry
    head = {k: meta[k] for k in ("text", "tokens", "words", "word_ids", "word_level", "model",
                                 "model_type", "architecture") if k in meta}
    return {**head, **{k: meta[k] for k in META_KEYS}, "layers": out_layers,
            **{k: meta[k] for k in TAIL_KEYS if k in meta}}


def load(source: str | Path | dict[str, Any], lists: bool = False) -> dict[str, Any]:
    """A result in the JSON schema from a .json file, a .npz file or a dict, checked by
    `validation.check_result` (one `LIGError` line for anything unreadable or malformed).

    For .npz the matrices stay numpy arrays unless `lists` (cheap for large results)."""
    if isinstance(source, dict):
        return check_result(source)
    path = Path(source)
    if path.suffix.lower() == ".npz":
        result = load_npz(path)
        try:
            obj = explanation(result, lists=lists)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise LIGError(f"{path} is a damaged lig-jax result: its arrays do not match its "
                           f"meta ({type(e).__name__})") from None
        return check_result(obj, str(path))
    data = read_result_bytes(path)
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as e:
        raise LIGError(f"{source} is not valid JSON: {e.msg} at line {e.lineno} "
                       f"column {e.colno}") from None
    except UnicodeDecodeError:
        raise LIGError(f"{source} is not valid JSON: not UTF-8 text") from None
    except RecursionError:
        raise LIGError(f"{source} is not valid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise LIGError(f"{source} is not valid JSON: {str(e).splitlines()[0]}") from None
    return check_result(obj, str(source))
