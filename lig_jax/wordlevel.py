"""A token-level `Result` as a word-level one (`explain --words`), so the JSON, the .npz, the
viewer and the figures all show words.

Units are the text's whitespace-separated words plus each special token as a unit of its
own (`words.units`), the convention of Experiment A: attribution *from* a unit is the sum
over its sub-word sources, attribution *to* a unit the mean over its sub-word target
columns (Clark et al., 2019). Per quantity:

    z2z           [S, S]     → [U, U]
    z2z_composed  [S, T]     → [U, T_u]   (T_u: the units of the target tokens)
    z2u           [T, H, S]  → [T_u, H, U]
    u2z           [T, w]     → [T_u, w]   (mean over the unit's targets)

A unit's completeness is that of its sub-word columns: Σ attributions, scalar change and
Σw averaged, the relative error the worst of them (steps the most, converged only if all
converged). The top-level `completeness` summary stays the token-level one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .results import MAPS, QUANTITIES, Result
from .words import aggregation

MEASURE_MAPS = tuple(m for m in MAPS if m not in QUANTITIES)


def _target_mean(unit_of: np.ndarray, targets: list[int]) -> tuple[np.ndarray, list[int]]:
    """(mean matrix [T_u, T] over the target positions, the unit of each row)."""
    tunits = sorted({int(unit_of[j]) for j in targets})
    mean = np.zeros((len(tunits), len(targets)))
    for t, j in enumerate(targets):
        mean[tunits.index(int(unit_of[j])), t] = 1.0
    return mean / mean.sum(axis=1, keepdims=True), tunits


def _columns(arrays: dict[str, np.ndarray], prefix: str, mean: np.ndarray
             ) -> dict[str, np.ndarray]:
    """The completeness arrays of `prefix` over units (module doc), first axis = targets."""
    out = {}
    member = mean > 0  # [T_u, T]
    for key, a in arrays.items():
        if not key.startswith(f"{prefix}_completeness/"):
            continue
        name = key.rsplit("/", 1)[1]
        a = np.asarray(a)
        if name == "relative_error" or name == "steps_used":
            out[key] = np.stack([a[m].max(axis=0) for m in member])
        elif name == "converged":
            out[key] = np.stack([a[m].all(axis=0) for m in member])
        else:
            out[key] = np.tensordot(mean, a.astype(np.float64), axes=(1, 0))
    return out


def to_word_level(result: Result) -> Result:
    """The word-level `Result` of a token-level one (see the module doc)."""
    meta = result.meta
    word_ids = meta["word_ids"]
    summ, mean_src, unit_word = aggregation(word_ids)  # [U, S] each
    unit_of = summ.argmax(axis=0)
    tokens, words = meta["tokens"], meta["words"]
    labels = []
    for u, w in enumerate(unit_word):
        labels.append(words[w] if w >= 0 else tokens[int(np.flatnonzero(unit_of == u)[0])])
    cfg = meta["config"]
    targets = list(cfg["target_tokens"])
    t_mean, t_units = _target_mean(unit_of, targets)
    s_all = list(range(len(tokens)))
    all_mean, _ = _target_mean(unit_of, s_all)
    layers: dict[int, dict[str, np.ndarray]] = {}
    for l, arrays in result.layers.items():
        out: dict[str, np.ndarray] = {}
        if "z2z" in arrays:
            out["z2z"] = summ @ np.asarray(arrays["z2z"], np.float64) @ all_mean.T
            out.update(_columns(arrays, "z2z", all_mean))
        if "z2z_composed" in arrays:
            out["z2z_composed"] = summ @ np.asarray(arrays["z2z_composed"], np.float64) @ \
                t_mean.T
        if "z2u" in arrays:
            z2u = np.asarray(arrays["z2u"], np.float64)  # [T, H, S]
            out["z2u"] = np.einsum("ut,ths,vs->uhv", t_mean, z2u, summ)
            out.update(_columns(arrays, "z2u", t_mean))
        if "u2z" in arrays:
            out["u2z"] = t_mean @ np.asarray(arrays["u2z"], np.float64)
            out.update(_columns(arrays, "u2z", t_mean))
        for k, a in arrays.items():
            if k in MEASURE_MAPS:  # [S, S] or [H, S, S]: as z→z
                out[k] = np.einsum("us,...st,vt->...uv", summ, np.asarray(a, np.float64),
                                   all_mean)
        layers[l] = {k: v.astype(np.float32) if v.dtype == np.float64 and "completeness"
                     not in k else v for k, v in out.items()}
    kept = {k: v for k, v in meta.items() if k not in ("words", "word_ids")}
    new_meta: dict[str, Any] = {**kept, "tokens": labels,
                                "config": {**cfg, "target_tokens": t_units, "words": True},
                                "word_level": {"tokens": tokens, "words": words,
                                               "word_ids": word_ids, "unit_word": unit_word}}
    return Result(new_meta, layers)
