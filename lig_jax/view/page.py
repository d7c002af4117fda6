"""The interactive HTML viewer: one self-contained page for an `explain` result.

`build_page(result)` returns a complete HTML document (no network access at view time: the
stylesheet, the script and the data are inlined) that shows the within-layer token→token
flows of every layer in the result. `write_page` writes it to a file and `notebook_html`
wraps it in an `<iframe srcdoc>` for Jupyter's `_repr_html_` (`FlowView(result)` in a cell).

Orientation is kept as in the JSON: `matrix[i][j]` = source token i → target token j; the
page never transposes. The embedded data (`<script type="application/json" id="lig-data">`)
has this shape (S tokens, T composed target columns, H heads):

    {"format": "lig-jax-view/1", "title", "text", "model", "tokens": [S] str,
     "special": [S] 0/1, "num_heads": H | null, "config": {...}, "layer_order": [L] int,
     "layers": {"<l>": {
        "direct":   {"baseline", "matrix": [S][S]},                      (if z2z)
        "composed": {"baseline_att", "baseline_mlp", "matrix": [S][T],
                     "targets": [T]},                                     (if z2z_composed)
        "targets":  {"<j>": {"target_token",
                             "z2u": {"baseline", "heads": [H'], "matrix": [H'][S]},
                             "u2z": {"baseline", "per_head": [H]}}}}}}   (each if present)

Floats are rounded to 6 significant digits.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LIGError
from ..files import write_text
from . import result as R

FORMAT = "lig-jax-view/1"
DIGITS = 6
SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "<s>", "</s>",
                            "<pad>", "<unk>", "<mask>", "<bos>", "<eos>"})
_SPECIAL_RE = re.compile(r"^\[.*\]$|^<.*>$", re.DOTALL)
_CONFIG_KEYS = ("num_steps", "granularity", "baseline_att", "baseline_mlp", "baseline_layer",
                "rule", "method", "dtype", "include_residual_connection", "target_head")


def is_special(token: str) -> bool:
    """Whether `token` is a special token ([CLS], </s>, <pad>, or any [..] / <..> token)."""
    return token in SPECIAL_TOKENS or bool(_SPECIAL_RE.match(token))


class _Raw:
    """Already-serialised JSON text (numeric arrays, written without json's float repr)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def _fmt(x: float) -> str:
    """One float as JSON with `DIGITS` significant digits (non-finite → null)."""
    return f"{x:.{DIGITS}g}" if math.isfinite(x) else "null"


def _numbers(array: np.ndarray) -> _Raw:
    """A 1-D or 2-D float array as compact JSON text, 6 significant digits."""
    a = np.asarray(array, np.float64)
    if a.ndim == 1:
        return _Raw("[" + ",".join(map(_fmt, a.tolist())) + "]")
    if a.ndim == 2:
        return _Raw("[" + ",".join("[" + ",".join(map(_fmt, row)) + "]"
                                   for row in a.tolist()) + "]")
    raise ValueError(f"expected a 1-D or 2-D array, got shape {a.shape}")


def _dumps(obj: Any) -> str:
    """Compact JSON of `obj`, where `_Raw` values are inserted verbatim."""
    if isinstance(obj, _Raw):
        return obj.text
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + _dumps(v)
                              for k, v in obj.items()) + "}"
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_dumps(v) for v in obj) + "]"
    if isinstance(obj, float) and not math.isfinite(obj):
        return "null"
    return json.dumps(obj, ensure_ascii=False)


def _check_shape(what: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
    if a.shape != shape:
        got = "×".join(map(str, a.shape)) or "a scalar"
        raise LIGError(f"{what} is {got}, expected {'×'.join(map(str, shape))}")


def _layer_payload(result: dict[str, Any], index: int, S: int,
                   heads: int | None) -> dict[str, Any]:
    """The view data of one layer (see the module docstring), checked."""
    entry = R.layer(result, index)
    out: dict[str, Any] = {}
    have = R.routes(result, index)
    if "direct" in have:
        out["direct"] = {"baseline": entry["z2z"].get("baseline"),
                         "matrix": _numbers(R.z2z_matrix(result, index, "direct"))}
    if "composed" in have:
        block = entry["z2z_composed"]
        out["composed"] = {"baseline_att": block.get("baseline_att"),
                           "baseline_mlp": block.get("baseline_mlp"),
                           "matrix": _numbers(R.z2z_matrix(result, index, "composed")),
                           "targets": R.z2z_targets(result, index, "composed")}
    tgts: dict[str, Any] = {}
    for j in R.targets(result, index):
        if not 0 <= j < S:
            raise LIGError(f"layer {index} has target {j}, out of range for {S} tokens")
        t = entry["targets"][str(j)]
        item: dict[str, Any] = {"target_token": t.get("target_token", result["tokens"][j])}
        if "z2u" in t:
            hs, z = R.z2u_heads(result, index, j)
            _check_shape(f"layer {index} target {j} z→u", z, (len(hs), S))
            item["z2u"] = {"baseline": t["z2u"].get("baseline"), "heads": hs,
                           "matrix": _numbers(z)}
        if "u2z" in t and heads:
            c = np.asarray(t["u2z"].get("contributions", []), np.float64)
            if c.ndim != 1 or c.size % heads:
                raise LIGError(f"layer {index} target {j} u→z has {c.size} contributions, "
                               f"not a multiple of {heads} heads")
            item["u2z"] = {"baseline": t["u2z"].get("baseline"),
                           "per_head": _numbers(R.u2z_per_head(result, index, j))}
        tgts[str(j)] = item
    if tgts:
        out["targets"] = tgts
    return out


def view_data(result: dict[str, Any] | str | Path, *, title: str | None = None,
              layers: Sequence[int] | None = None) -> dict[str, Any]:
    """The checked view payload of `result` (numeric arrays as `_Raw` JSON text)."""
    res = R.load_result(result)
    tokens = res["tokens"]
    if not tokens or not all(isinstance(t, str) for t in tokens):
        raise LIGError("the result's 'tokens' must be a non-empty list of strings")
    S = len(tokens)
    order = R.layers(res) if layers is None else [int(x) for x in layers]
    if not order:
        raise LIGError("no layers selected to view")
    heads = R.num_heads(res)
    payload_layers: dict[str, Any] = {}
    for index in order:
        payload_layers[str(index)] = _layer_payload(res, index, S, heads)
    if not any(payload_layers.values()):
        raise LIGError("the result has nothing to view: no z2z, z2z_composed or targets "
                       "blocks in its layers")
    cfg = res.get("config") or {}
    model = res.get("model")
    return {
        "format": FORMAT,
        "title": title or f"LIG flow — {model or 'model'}",
        "text": res.get("text"),
        "model": model,
        "tokens": list(tokens),
        "special": [int(is_special(t)) for t in tokens],
        "num_heads": heads,
        "config": {k: cfg[k] for k in _CONFIG_KEYS if k in cfg},
        "layer_order": order,
        "layers": payload_layers,
    }


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text for inside `<script>`: no `</script`, `<!--` (JSON: `<` only occurs in strings)."""
    return text.replace("<", "\\u003c")


def build_page(result: dict[str, Any] | str | Path, *, title: str | None = None,
               layers: Sequence[int] | None = None) -> str:
    """A complete, self-contained HTML document viewing `result` (a dict or a JSON path).

    `layers` restricts the page to some layers (all by default). Raises `LIGError` (one
    line) when `result` is not a lig result or a requested layer is missing.
    """
    data = view_data(result, title=title, layers=layers)
    data_json = _script_safe(_dumps(data))
    js = _asset("viewer.js").replace("</script", "<\\/script")
    css = _asset("viewer.css").replace("</style", "<\\/style")
    page_title = html.escape(data["title"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<link rel="icon" href="data:,">
<title>{page_title}</title>
<style>
{css}
</style>
</head>
<body>
<div id="lig-app" data-ready="0">
<noscript>This viewer needs JavaScript.</noscript>
</div>
<script type="application/json" id="lig-data">{data_json}</script>
<script>
{js}
</script>
</body>
</html>
"""


def write_page(result: dict[str, Any] | str | Path, out: str | Path, *,
               title: str | None = None, layers: Sequence[int] | None = None) -> Path:
    """Write `build_page(result)` to `out` (`files.write_text`: parents created, written
    atomically); returns the path."""
    return write_text(out, build_page(result, title=title, layers=layers))


def notebook_html(result: dict[str, Any] | str | Path, height: int = 640, *,
                  title: str | None = None, layers: Sequence[int] | None = None) -> str:
    """The page in an `<iframe srcdoc>` (sandboxed, scripts only), for `_repr_html_`."""
    page = build_page(result, title=title, layers=layers)
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #ddd" '
            'sandbox="allow-scripts" title="LIG flow viewer"></iframe>')


class FlowView:
    """A result for Jupyter: a cell ending in `FlowView(result)` shows the viewer inline."""

    def __init__(self, result: dict[str, Any] | str | Path, *, height: int = 640,
                 title: str | None = None, layers: Sequence[int] | None = None):
        self.result = R.load_result(result)
        self.height, self.title, self.layers = height, title, layers

    def _repr_html_(self) -> str:
        return notebook_html(self.result, self.height, title=self.title, layers=self.layers)

    def save(self, out: str | Path) -> Path:
        """Write the stand-alone page to `out`."""
        return write_page(self.result, out, title=self.title, layers=self.layers)
