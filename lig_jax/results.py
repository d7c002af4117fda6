"""An explanation as arrays (`Result`), and its binary file (.npz).

`explain` computes a `Result`: the JSON schema's metadata (`meta`: text, tokens, model,
config, boundaries, quadrature, timings, versions) and, per layer, numpy arrays

    z2z            [S_src, S_tgt]     matrix[i][j]: source i → target j (after any fix)
    z2z_composed   [S_src, T]         Σ_h z→u(h) × u→z(slice h)
    z2u            [T, H, S_src]      per (target, head) source scores (after any fix)
    u2z            [T, w]             per target, u→z contributions
    <q>_completeness/<name>           per column: ig_sum, scalar_change, weight_sum,
                                      relative_error (+ steps_used, converged for auto)

`report.explanation` turns it into the reference's JSON dict; `save_npz` writes it as one
.npz (keys `layers/<l>/<name>` and `meta`, a JSON string), so a 2,048-token result is
megabytes of arrays instead of a gigabyte of JSON text. `report.load` reads either file
into the JSON schema (for view, plot and compare).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LIGError
from .files import write_atomic

FORMAT = "lig-jax result"
VERSION = 1
QUANTITIES = ("z2z", "z2z_composed", "z2u", "u2z")


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


def save_npz(result: Result, path: str | Path) -> Path:
    """Write `result` to `path` atomically (`files.write_atomic`); LIGError if it cannot."""
    arrays = {f"layers/{l}/{k}": v for l, entries in result.layers.items()
              for k, v in entries.items()}
    arrays["meta"] = np.asarray(json.dumps(result.meta, ensure_ascii=False))
    return write_atomic(path, lambda fh: np.savez(fh, **arrays))


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
                parts = key.split("/", 2)
                if len(parts) != 3 or parts[0] != "layers" or not parts[1].isdigit():
                    raise LIGError(f"{path} has an unexpected array {key!r} (expected "
                                   "layers/<l>/<name>)")
                layers.setdefault(int(parts[1]), {})[parts[2]] = data[key]
    except FileNotFoundError:
        raise LIGError(f"result file not found: {path}") from None
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as e:
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
