"""An explanation as arrays (`Result`), and its binary file (.npz).

`explain` computes a `Result`: the JSON schema's metadata (`meta`: text, tokens, model,
config, boundaries, quadrature, timings, versions) and, per layer, numpy arrays

    z2z            [S_src, S_tgt]     matrix[i][j]: source i → target j (after any fix)
    z2z_composed   [S_src, T]         Σ_h z→u(h) × u→z(slice h)
    z2u            [T, H, S_src]      per (target, head) source scores (after any fix)
    u2z            [T, w]             per target, u→z contributions
    <q>_completeness/<name>           per column: ig_sum, scalar_change, weight_sum,
                                      relative_error (+ steps_used, converged for auto)
    attention, alti, value_zeroing, … [S_src, S_tgt]   context-mixing measures
    attention_heads, …                [H, S_src, S_tgt]
    rollout/<name>                    [S_input, S_tgt]   (`lig_jax.measures`)

`schema.explanation` turns it into the reference's JSON dict; `save_npz` writes it as one
.npz (keys `layers/<l>/<name>` and `meta`, a JSON string), so a 2,048-token result is
megabytes of arrays instead of a gigabyte of JSON text; rollouts are stored as
`rollout/<name>/<l>`. `schema.load` reads either file
into the JSON schema (for view, plot and compare).
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LIGError
from .files import write_atomic
from .measures.names import ARRAYS, ROLLOUT_PREFIX

FORMAT = "lig-jax result"
VERSION = 1
QUANTITIES = ("z2z", "z2z_composed", "z2u", "u2z")
MAPS = QUANTITIES + ARRAYS


def npz_key(layer: int, name: str) -> str:
    """The .npz key of array `name` of `layer`: layers/<l>/<name>, rollout/<name>/<l>."""
    if name.startswith(ROLLOUT_PREFIX):
        return f"{name}/{layer}"
    return f"layers/{layer}/{name}"


def from_npz_key(key: str) -> tuple[int, str] | None:
    """(layer, name) of an .npz key (`npz_key`'s inverse), None if it is neither form."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == "layers" and parts[1].isdigit():
        return int(parts[1]), "/".join(parts[2:])
    if len(parts) == 3 and parts[0] == "rollout" and parts[2].isdigit():
        return int(parts[2]), f"{ROLLOUT_PREFIX}{parts[1]}"
    return None


@dataclass
class Result:
    """meta: JSON-able metadata (see the module doc; `meta["format"]` also holds the
    layout, head count, selected heads and decoder flags the JSON builder needs);
    layers: layer index → name → array."""

    meta: dict[str, Any]
    layers: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def tokens(self) -> list[str]:
        return self.meta["tokens"]


def completeness(prefix: str, sums: np.ndarray, change: np.ndarray, weight_sum: np.ndarray,
                 steps: np.ndarray | None = None, converged: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """Per-column completeness arrays: Σ attributions vs the scalar's change × Σw."""
    from .steps import relative_error

    out = {f"{prefix}_completeness/ig_sum": np.asarray(sums, np.float64),
           f"{prefix}_completeness/scalar_change": np.asarray(change, np.float64),
           f"{prefix}_completeness/weight_sum": np.asarray(weight_sum, np.float64),
           f"{prefix}_completeness/relative_error": relative_error(sums, change, weight_sum)}
    if converged is not None:
        out[f"{prefix}_completeness/steps_used"] = np.asarray(steps, np.int64)
        out[f"{prefix}_completeness/converged"] = np.asarray(converged, bool)
    return out


# A column counts toward the completeness verdict when its scalar change |f(x) − f(x′)| is
# at least this share of the largest change of its quantity in its layer: a relative error
# of a near-zero change is rounding (one head reads 645 where Δf = 2.7e-5).
RELEVANT_CHANGE = 1e-3
SUMMARY_QUANTITIES = ("z2z", "z2u", "u2z")


def completeness_summary(layers: dict[int, dict[str, np.ndarray]], targets: list[int],
                         heads: list[int], tol: float) -> dict[str, Any]:
    """The IG convergence delta of a whole result, per quantity: how many columns (one IG
    problem each: a target, or a (target, head) pair), how many count (|Δf| ≥
    `RELEVANT_CHANGE` × the layer's largest), the worst relative completeness error among
    those and where, how many exceed `tol`, and how many an auto step plan left
    unconverged (None for a fixed step count)."""
    out: dict[str, Any] = {"tolerance": tol, "relevant_change": RELEVANT_CHANGE}
    for q in SUMMARY_QUANTITIES:
        head = f"{q}_completeness/"
        per = {l: a for l, a in layers.items() if head + "relative_error" in a}
        if not per:
            continue
        columns = counted = above = 0
        unconverged: int | None = None
        worst: tuple[float, dict[str, int]] | None = None
        for l, a in per.items():
            err = np.asarray(a[head + "relative_error"], np.float64)
            change = np.abs(np.asarray(a[head + "scalar_change"], np.float64))
            finite = np.isfinite(change)
            largest = float(change[finite].max()) if finite.any() else 0.0
            # a column whose change or error is not finite always counts (and fails)
            broken = ~finite | ~np.isfinite(err)
            keep = ((change >= RELEVANT_CHANGE * largest) & (change > 0)) | broken
            columns += err.size
            counted += int(keep.sum())
            above += int((keep & ~(err <= tol)).sum())
            if head + "converged" in a:
                unconverged = (unconverged or 0) + int((~a[head + "converged"]).sum())
            if keep.any():
                masked = np.where(keep, np.nan_to_num(err, nan=np.inf), -1.0)
                at = np.unravel_index(int(np.argmax(masked)), err.shape)
                if worst is None or masked[at] > worst[0]:
                    where = {"layer": int(l)}
                    if q == "z2z":  # columns are targets (every token)
                        where["target"] = int(at[0])
                    else:
                        where["target"] = int(targets[at[0]])
                        if q == "z2u":
                            where["head"] = int(heads[at[1]])
                    worst = (float(masked[at]), where)
        worst_err = None if worst is None or not np.isfinite(worst[0]) else worst[0]
        out[q] = {"columns": columns, "counted": counted,
                  "worst_relative_error": worst_err,
                  "worst_at": None if worst is None else worst[1],
                  "above_tolerance": above, "unconverged": unconverged}
    return out


def merge_summaries(summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One `completeness_summary` over many sentences (index → summary): counts added, the
    worst column kept with its sentence's index in `worst_at`."""
    out: dict[str, Any] = {}
    for index, summary in summaries.items():
        for key, value in summary.items():
            if key not in SUMMARY_QUANTITIES:
                out.setdefault(key, value)
                continue
            have = out.setdefault(key, {"columns": 0, "counted": 0, "worst_relative_error": None,
                                        "worst_at": None, "above_tolerance": 0,
                                        "unconverged": None})
            for k in ("columns", "counted", "above_tolerance"):
                have[k] += value[k]
            if value["unconverged"] is not None:
                have["unconverged"] = (have["unconverged"] or 0) + value["unconverged"]
            err = value["worst_relative_error"]
            if err is not None and (have["worst_relative_error"] is None
                                    or err > have["worst_relative_error"]):
                have["worst_relative_error"] = err
                have["worst_at"] = {"index": index, **value["worst_at"]}
    return out


NPZ_DTYPES = ("float32", "float16")
# What reading a damaged .npz (a zip archive) can raise, beyond LIGError.
NPZ_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, RuntimeError,
              NotImplementedError, zipfile.BadZipFile, zlib.error, struct.error)


def save_npz(result: Result, path: str | Path, dtype: str = "float32") -> Path:
    """Write `result` to `path` atomically (`files.write_atomic`), compressed; the maps
    (`MAPS`) in `dtype` — float16 halves the file again, at about 3 significant digits
    (the completeness arrays and the raw value-zeroing distances, often below float16's
    normal range, stay as computed). LIGError if it cannot."""
    if dtype not in NPZ_DTYPES:
        raise LIGError(f"Unknown npz dtype {dtype!r}. Allowed: {', '.join(NPZ_DTYPES)}")
    arrays = {}
    for l, entries in result.layers.items():
        for k, v in entries.items():
            if k in MAPS and dtype == "float16" and not k.endswith("_raw"):
                big = float(np.max(np.abs(v))) if np.size(v) else 0.0
                if big > np.finfo(np.float16).max:
                    raise LIGError(f"layer {l} {k} reaches {big:.3g}, beyond float16's "
                                   f"{np.finfo(np.float16).max:.0f}; write float32")
                v = np.asarray(v, np.float16)
            arrays[npz_key(l, k)] = v
    arrays["meta"] = np.asarray(json.dumps(result.meta, ensure_ascii=False))
    return write_atomic(path, lambda fh: np.savez_compressed(fh, **arrays))


def load_npz(path: str | Path) -> Result:
    """Read a file written by `save_npz`; one-line `LIGError`s for anything else."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "meta" not in data.files:
                raise LIGError(f"{path} is not a lig-jax result (.npz without 'meta')")
            meta = json.loads(str(data["meta"]))
            layers: dict[int, dict[str, np.ndarray]] = {}
            for key in data.files:
                if key == "meta":
                    continue
                at = from_npz_key(key)
                if at is None:
                    raise LIGError(f"{path} has an unexpected array {key!r} (expected "
                                   "layers/<l>/<name> or rollout/<name>/<l>)")
                layers.setdefault(at[0], {})[at[1]] = data[key]
    except FileNotFoundError:
        raise LIGError(f"result file not found: {path}") from None
    except NPZ_ERRORS as e:
        raise LIGError(f"{path} is not a readable .npz result ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else 'corrupted'})") from None
    fmt = meta.get("format", {}) if isinstance(meta, dict) else {}
    if not isinstance(fmt, dict) or fmt.get("name") != FORMAT:
        raise LIGError(f"{path} is not a lig-jax result (its meta has no format "
                       f"{FORMAT!r})")
    if fmt.get("version") != VERSION:
        raise LIGError(f"{path} is format version {fmt.get('version')}; this lig-jax reads "
                       f"version {VERSION}")
    return Result(meta, dict(sorted(layers.items())))
