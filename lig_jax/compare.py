"""Compare two LIG result files (docs/spec.md §9 schema), per layer and quantity.

Either file may come from this package or from the PyTorch reference; only the
quantities present in *both* are compared, so our extra keys (`z2z_composed`,
`completeness` blocks, `timings`, …) are simply ignored when the other side lacks them.

Quantities, per layer `l` (each is compared when present in both files):

- `z2z`           — `layers[l].z2z.matrix`, the full S×S matrix.
- `z2u`           — `targets[j].z2u.heads[h].contributions`, over the targets j and
  heads h present in both files, concatenated.
- `token_l2_norm` — `targets[j].z2u.heads[h].token_l2_norm`, same (j, h) pairs.
- `u2z`           — `targets[j].u2z.contributions`, over the common targets.
- `u2z.l2_total`  — `targets[j].u2z.l2_total`, over the common targets.
- `z2z_composed`  — `layers[l].z2z_composed.matrix` (this package's extra key).

Each row is `{"layer", "quantity", "n", "max_abs", "max_rel"}` with
`max_abs = max |a − b|` and `max_rel = max_abs / max |b|` over the `n` compared values.
When `b` is all zero the denominator falls back to `max |a|`, so `max_rel` is 0 when both
are all zero and 1 (a 100 % difference) otherwise. NaN in the same place in both files
counts as equal, as do equal infinities; any other non-finite difference is `inf`.

A layer present in only one file gets one row with quantity `"missing_in_b"` (the layer is
in `a` only) or `"missing_in_a"`, `n = 0` and zero differences: it is reported in the
table but cannot fail the tolerance check. Two files with no quantity in common at all are
an error, so that a comparison never passes without comparing anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LIGError
from .schema import load
from .validation import check_result

QUANTITIES = ("z2z", "z2u", "token_l2_norm", "u2z", "u2z.l2_total", "z2z_composed")
MISSING_IN_A = "missing_in_a"
MISSING_IN_B = "missing_in_b"
COLUMNS = ("layer", "quantity", "n", "max_abs", "max_rel")

_MISSING = object()


def _sort_key(key: str) -> tuple[int, int | str]:
    """Numeric keys ("2" < "10") before any non-numeric ones."""
    try:
        return (0, int(key))
    except ValueError:
        return (1, key)


def _sorted_keys(keys: Iterable[str]) -> list[str]:
    return sorted(keys, key=_sort_key)


def _get(obj: Any, path: Sequence[str], where: str, name: str) -> Any:
    """Follow `path` through nested dicts; `_MISSING` if a key is absent.

    A non-object found on the way is a malformed file and raises `LIGError`.
    """
    for i, key in enumerate(path):
        if not isinstance(obj, dict):
            at = ".".join([where, *path[:i]])
            raise LIGError(f"{name}: {at} is a {type(obj).__name__}, expected an object")
        if key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _array(value: Any, what: str, name: str) -> np.ndarray:
    """`value` as a float64 array; a ragged or non-numeric value raises `LIGError`."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise LIGError(f"{name}: {what} is not a numeric array") from None
    return arr


def _shape_check(xa: np.ndarray, xb: np.ndarray, what: str, names: Sequence[str]) -> None:
    if xa.shape != xb.shape:
        raise LIGError(f"shape mismatch in {what}: {names[0]} has {list(xa.shape)}, "
                       f"{names[1]} has {list(xb.shape)}")


def _differences(xa: np.ndarray, xb: np.ndarray) -> tuple[float, float]:
    """(max_abs, max_rel) of two same-shape arrays; see the module docstring."""
    if xa.size == 0:
        return 0.0, 0.0
    same = (xa == xb) | (np.isnan(xa) & np.isnan(xb))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(xa - xb))
    diff = np.where(np.isnan(diff), np.inf, diff)
    max_abs = float(diff.max())
    if max_abs == 0.0:
        return 0.0, 0.0
    finite_b = np.abs(xb[np.isfinite(xb)])
    denom = float(finite_b.max()) if finite_b.size else 0.0
    if denom == 0.0:
        finite_a = np.abs(xa[np.isfinite(xa)])
        denom = float(finite_a.max()) if finite_a.size else 0.0
    if denom == 0.0 or math.isinf(max_abs):
        return max_abs, math.inf
    return max_abs, max_abs / denom


def _row(layer: str, quantity: str, xa: np.ndarray, xb: np.ndarray) -> dict[str, Any]:
    max_abs, max_rel = _differences(xa, xb)
    return {"layer": layer, "quantity": quantity, "n": int(xa.size),
            "max_abs": max_abs, "max_rel": max_rel}


def _matrix_row(la: dict, lb: dict, layer: str, key: str,
                names: Sequence[str]) -> dict[str, Any] | None:
    """Row for `layers[l].<key>.matrix`, or None when either file lacks it."""
    where = f"layers['{layer}']"
    ma = _get(la, (key, "matrix"), where, names[0])
    mb = _get(lb, (key, "matrix"), where, names[1])
    if ma is _MISSING or mb is _MISSING:
        return None
    what = f"layer {layer} {key}"
    xa = _array(ma, f"{where}.{key}.matrix", names[0])
    xb = _array(mb, f"{where}.{key}.matrix", names[1])
    _shape_check(xa, xb, what, names)
    return _row(layer, key, xa, xb)


def _target_rows(la: dict, lb: dict, layer: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows for the per-target quantities (z2u, token_l2_norm, u2z, u2z.l2_total)."""
    where = f"layers['{layer}']"
    ta = _get(la, ("targets",), where, names[0])
    tb = _get(lb, ("targets",), where, names[1])
    if ta is _MISSING or tb is _MISSING:
        return []
    for t, name in ((ta, names[0]), (tb, names[1])):
        if not isinstance(t, dict):
            raise LIGError(f"{name}: {where}.targets is a {type(t).__name__}, "
                           "expected an object")
    collected: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def add(quantity: str, va: Any, vb: Any, what: str) -> None:
        xa = _array(va, f"{where}.{what}", names[0])
        xb = _array(vb, f"{where}.{what}", names[1])
        _shape_check(xa, xb, f"layer {layer} {quantity} ({what})", names)
        pa, pb = collected.setdefault(quantity, ([], []))
        pa.append(xa.ravel())
        pb.append(xb.ravel())

    for j in _sorted_keys(set(ta) & set(tb)):
        tw = f"targets['{j}']"
        ha = _get(ta[j], ("z2u", "heads"), f"{where}.{tw}", names[0])
        hb = _get(tb[j], ("z2u", "heads"), f"{where}.{tw}", names[1])
        if ha is not _MISSING and hb is not _MISSING:
            for heads, name in ((ha, names[0]), (hb, names[1])):
                if not isinstance(heads, dict):
                    raise LIGError(f"{name}: {where}.{tw}.z2u.heads is a "
                                   f"{type(heads).__name__}, expected an object")
            for h in _sorted_keys(set(ha) & set(hb)):
                hw = f"{tw}.z2u.heads['{h}']"
                for quantity, key in (("z2u", "contributions"),
                                      ("token_l2_norm", "token_l2_norm")):
                    va = _get(ha[h], (key,), f"{where}.{hw}", names[0])
                    vb = _get(hb[h], (key,), f"{where}.{hw}", names[1])
                    if va is not _MISSING and vb is not _MISSING:
                        add(quantity, va, vb, f"{hw}.{key}")
        for quantity, key in (("u2z", "contributions"), ("u2z.l2_total", "l2_total")):
            va = _get(ta[j], ("u2z", key), f"{where}.{tw}", names[0])
            vb = _get(tb[j], ("u2z", key), f"{where}.{tw}", names[1])
            if va is not _MISSING and vb is not _MISSING:
                add(quantity, va, vb, f"{tw}.u2z.{key}")

    rows = []
    for quantity in QUANTITIES:
        if quantity in collected:
            pa, pb = collected[quantity]
            rows.append(_row(layer, quantity, np.concatenate(pa), np.concatenate(pb)))
    return rows


def _check_tokens(a: dict, b: dict, names: Sequence[str]) -> None:
    ta, tb = a["tokens"], b["tokens"]
    if ta == tb:
        return
    if len(ta) != len(tb):
        raise LIGError(f"tokens differ: {names[0]} has {len(ta)} tokens, "
                       f"{names[1]} has {len(tb)}")
    i = next(k for k, (x, y) in enumerate(zip(ta, tb, strict=True)) if x != y)
    raise LIGError(f"tokens differ at index {i}: {names[0]} has {ta[i]!r}, "
                   f"{names[1]} has {tb[i]!r}")


def compare_results(a: dict, b: dict, *,
                    names: Sequence[str] = ("a", "b")) -> list[dict[str, Any]]:
    """Per-layer, per-quantity differences between two lig result dicts.

    Returns rows `{"layer", "quantity", "n", "max_abs", "max_rel"}` ordered by layer
    (numerically) and then in the order of `QUANTITIES`; `max_rel = max_abs / max |b|`
    over the compared values (falls back to `max |a|` when `b` is all zero: 0 if both are
    all zero, else 1). Only quantities present in both results are compared; for
    per-target quantities only the targets (and heads) present in both. A layer present in
    one result only gives a row with quantity `"missing_in_b"` / `"missing_in_a"`, `n = 0`
    and zero differences (reported, never failing a tolerance).

    Raises `LIGError` (one line) when either dict is not a lig result, when the tokens
    differ, when a compared array's shape differs (naming layer, quantity and both shapes),
    on malformed values, or when nothing at all could be compared. `names` label the two
    inputs in error messages (file paths from `compare_files`).
    """
    if len(names) != 2:
        raise ValueError("names must hold exactly two labels")
    check_result(a, names[0])
    check_result(b, names[1])
    _check_tokens(a, b, names)
    layers_a, layers_b = a["layers"], b["layers"]
    rows: list[dict[str, Any]] = []
    compared = 0
    for layer in _sorted_keys(set(layers_a) | set(layers_b)):
        if layer not in layers_b or layer not in layers_a:
            quantity = MISSING_IN_B if layer not in layers_b else MISSING_IN_A
            rows.append({"layer": layer, "quantity": quantity, "n": 0,
                         "max_abs": 0.0, "max_rel": 0.0})
            continue
        la, lb = layers_a[layer], layers_b[layer]
        for obj, name in ((la, names[0]), (lb, names[1])):
            if not isinstance(obj, dict):
                raise LIGError(f"{name}: layers['{layer}'] is a {type(obj).__name__}, "
                               "expected an object")
        layer_rows = []
        z2z = _matrix_row(la, lb, layer, "z2z", names)
        if z2z is not None:
            layer_rows.append(z2z)
        layer_rows.extend(_target_rows(la, lb, layer, names))
        composed = _matrix_row(la, lb, layer, "z2z_composed", names)
        if composed is not None:
            layer_rows.append(composed)
        compared += len(layer_rows)
        rows.extend(layer_rows)
    if compared == 0:
        raise LIGError(f"nothing to compare: {names[0]} and {names[1]} have no layer "
                       "quantity (z2z, z2u, u2z, z2z_composed) in common")
    return rows


def compare_files(path_a: str | Path, path_b: str | Path) -> list[dict[str, Any]]:
    """Read two result files (JSON or .npz) and `compare_results` them (errors name the files)."""
    a = load(path_a)
    b = load(path_b)
    return compare_results(a, b, names=(str(path_a), str(path_b)))


def _fmt(value: float) -> str:
    return f"{value:.3e}" if math.isfinite(value) else str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as a plain aligned text table: layer, quantity, n, max_abs, max_rel.

    Text columns are left-aligned, numbers right-aligned; differences are in scientific
    notation (`1.234e-07`). No rows gives just the header.
    """
    cells = [list(COLUMNS)]
    for r in rows:
        cells.append([str(r["layer"]), str(r["quantity"]), str(r["n"]),
                      _fmt(float(r["max_abs"])), _fmt(float(r["max_rel"]))])
    widths = [max(len(row[c]) for row in cells) for c in range(len(COLUMNS))]
    lines = []
    for row in cells:
        parts = [row[c].ljust(widths[c]) if c < 2 else row[c].rjust(widths[c])
                 for c in range(len(COLUMNS))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
