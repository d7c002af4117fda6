"""One validation of a result in the JSON schema, shared by every reader (view, plot,
compare, explain-batch records, Experiment-A records shown as results).

`check_result(obj, name)` returns `obj` when it is a well-formed lig result and otherwise
raises one `LIGError` line naming the file, the place (`layers["3"].z2z.matrix`) and what
was expected. Checked: the top level (an object with a non-empty `tokens` list of strings
and a non-empty `layers` object keyed by layer numbers); per layer, every block a reader
uses — `z2z.matrix` [S, S], `z2z_composed.matrix` [S, T] with its `target_token_idx`,
per target (a token index) `z2u.heads[h].contributions` [S] and `u2z.contributions` [w] —
numeric, of the right shape, and finite. Orientation: `matrix[i][j]` = source i → target j.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import LIGError
from .measures.names import is_heads


def _numeric(value: Any, where: str, name: str, ndim: int) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise LIGError(f"{name}: {where} is not a numeric array (ragged, or holds "
                       "something other than numbers)") from None
    if a.ndim != ndim:
        raise LIGError(f"{name}: {where} has {a.ndim} dimension{'s' * (a.ndim != 1)}, "
                       f"expected {ndim}")
    if not np.isfinite(a).all():
        raise LIGError(f"{name}: {where} holds non-finite numbers (NaN or infinity)")
    return a


def _object(value: Any, where: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LIGError(f"{name}: {where} is a {type(value).__name__}, expected an object")
    return value


def _index(key: Any, where: str, name: str, size: int, what: str) -> int:
    try:
        i = int(key)
        if isinstance(key, bool) or isinstance(key, float) or str(i) != str(key).strip():
            raise ValueError
    except (TypeError, ValueError):
        raise LIGError(f"{name}: {where} key {key!r} is not a {what} number") from None
    if not 0 <= i < size:
        raise LIGError(f"{name}: {where} {what} {i} is out of range (0..{size - 1})")
    return i


def _check_target(t: Any, where: str, name: str, s: int) -> None:
    t = _object(t, where, name)
    if "z2u" in t:
        z2u = _object(t["z2u"], f"{where}.z2u", name)
        heads = _object(z2u.get("heads"), f"{where}.z2u.heads", name)
        for h, block in heads.items():
            _index(h, f"{where}.z2u.heads", name, 1 << 30, "head")
            at = f"{where}.z2u.heads[{h!r}]"
            c = _numeric(_object(block, at, name).get("contributions"),
                         f"{at}.contributions", name, 1)
            if c.shape[0] != s:
                raise LIGError(f"{name}: {at}.contributions has {c.shape[0]} values, "
                               f"expected one per token ({s})")
    if "u2z" in t:
        u2z = _object(t["u2z"], f"{where}.u2z", name)
        _numeric(u2z.get("contributions"), f"{where}.u2z.contributions", name, 1)


def _check_layer(entry: Any, where: str, name: str, s: int) -> None:
    entry = _object(entry, where, name)
    if "z2z" in entry:
        at = f"{where}.z2z"
        m = _numeric(_object(entry["z2z"], at, name).get("matrix"), f"{at}.matrix", name, 2)
        if m.shape != (s, s):
            raise LIGError(f"{name}: {at}.matrix is {m.shape[0]}×{m.shape[1]}, expected "
                           f"{s}×{s} (one row and column per token)")
    if "z2z_composed" in entry:
        at = f"{where}.z2z_composed"
        block = _object(entry["z2z_composed"], at, name)
        m = _numeric(block.get("matrix"), f"{at}.matrix", name, 2)
        cols = block.get("target_token_idx", list(range(s)))
        if not isinstance(cols, list):
            raise LIGError(f"{name}: {at}.target_token_idx is not a list")
        for c in cols:
            _index(c, f"{at}.target_token_idx", name, s, "token")
        if m.shape != (s, len(cols)):
            raise LIGError(f"{name}: {at}.matrix is {m.shape[0]}×{m.shape[1]}, expected "
                           f"{s}×{len(cols)} (tokens × target columns)")
    if "measures" in entry:
        for key, block in _object(entry["measures"], f"{where}.measures", name).items():
            at = f"{where}.measures[{key!r}]"
            m = _numeric(_object(block, at, name).get("matrix"), f"{at}.matrix", name,
                         3 if is_heads(key) else 2)
            if m.shape[-2:] != (s, s):
                raise LIGError(f"{name}: {at}.matrix ends in {m.shape[-2]}×{m.shape[-1]}, "
                               f"expected {s}×{s} (one row and column per token)")
    if "targets" in entry:
        for j, t in _object(entry["targets"], f"{where}.targets", name).items():
            _index(j, f"{where}.targets", name, s, "token")
            _check_target(t, f"{where}.targets[{j!r}]", name, s)


def check_result(obj: Any, name: str = "the result") -> dict[str, Any]:
    """`obj` if it is a well-formed lig result; else one `LIGError` line (see the module)."""
    if not isinstance(obj, dict):
        raise LIGError(f"{name} is not a lig result: the top level is a "
                       f"{type(obj).__name__}, not an object (as written by `lig-jax explain`)")
    tokens = obj.get("tokens")
    if not isinstance(tokens, list) or not tokens:
        raise LIGError(f"{name} is not a lig result: no top-level 'tokens' list (as written "
                       "by `lig-jax explain`)")
    if not all(isinstance(t, str) for t in tokens):
        raise LIGError(f"{name}: tokens holds something other than strings")
    layers = obj.get("layers")
    if not isinstance(layers, dict):
        raise LIGError(f"{name} is not a lig result: no top-level 'layers' object (as "
                       "written by `lig-jax explain`)")
    if not layers:
        raise LIGError(f"{name} has no layers")
    for key, entry in layers.items():
        _index(key, "layers", name, 1 << 30, "layer")
        _check_layer(entry, f"layers[{key!r}]", name, len(tokens))
    for key in ("config", "boundaries", "completeness"):
        if key in obj and not isinstance(obj[key], dict):
            raise LIGError(f"{name}: {key} is a {type(obj[key]).__name__}, expected an object")
    return obj
