"""The interactive HTML viewer: one self-contained page for an `explain` result.

`build_page(result)` returns a complete HTML document (no network access at view time: the
stylesheet, the script and the data are inlined) that shows the within-layer token→token
flows of every layer in the result. `write_page` writes it to a file and `notebook_html`
wraps it in an `<iframe srcdoc>` for Jupyter's `_repr_html_` (`view/notebook.py`).

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

Long inputs (more than `COMPACT_FROM` tokens) get a compact page: each route's matrix
keeps only the `TOP_K` strongest sources of every target column (by |value|), as
`"sparse": {"k", "idx": [T][k], "val": [T][k]}` with the exact column sums
`"sums": [T]` (Σ_i |matrix[i][j]|, for per-target normalisation), and each z→u block its
`TOP_K_Z2U` strongest sources per head; the full direct and composed matrices go to side files,
one per layer (`write_page`: PAGE.full.<l>.js, float32 in base64), which the page loads
for the layer on screen on request with a `<script src>` (a `file://` page may load
scripts beside it where `fetch()` may not). A 2,048-token layer
then makes a page of a few megabytes instead of hundreds.
"""

from __future__ import annotations

import base64
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
COMPACT_FROM = 256  # tokens; beyond, the page keeps top-k sources per target
TOP_K = 32
TOP_K_Z2U = 8
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


def _ints(array: np.ndarray) -> _Raw:
    """A 2-D integer array as compact JSON text."""
    return _Raw("[" + ",".join("[" + ",".join(map(str, row)) + "]"
                               for row in np.asarray(array).tolist()) + "]")


def _top_sources(matrix: np.ndarray, k: int) -> dict[str, Any]:
    """The `k` largest-|value| sources of each column of [S, T]: {"k", "idx": [T][k],
    "val": [T][k]} (sources in ascending order within a column)."""
    m = np.asarray(matrix, np.float64)
    k = min(k, m.shape[0])
    mag = np.where(np.isfinite(m), np.abs(m), -1.0)
    idx = np.sort(np.argpartition(-mag, k - 1, axis=0)[:k], axis=0).T  # [T, k]
    val = np.take_along_axis(m.T, idx, axis=1)
    return {"k": k, "idx": _ints(idx), "val": _numbers(val)}


def _route_block(matrix: np.ndarray, compact: bool) -> dict[str, Any]:
    """A route's matrix, whole, or (compact) as top-k sources per target with the exact
    column sums of |values|."""
    if not compact:
        return {"matrix": _numbers(matrix)}
    sums = np.nansum(np.abs(np.asarray(matrix, np.float64)), axis=0)
    return {"sparse": _top_sources(matrix, TOP_K), "sums": _numbers(sums)}


def _check_shape(what: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
    if a.shape != shape:
        got = "×".join(map(str, a.shape)) or "a scalar"
        raise LIGError(f"{what} is {got}, expected {'×'.join(map(str, shape))}")


def _layer_payload(result: dict[str, Any], index: int, S: int,
                   heads: int | None, compact: bool = False) -> dict[str, Any]:
    """The view data of one layer (see the module docstring), checked."""
    entry = R.layer(result, index)
    out: dict[str, Any] = {}
    have = R.routes(result, index)
    if "direct" in have:
        out["direct"] = {"baseline": entry["z2z"].get("baseline"),
                         **_route_block(R.z2z_matrix(result, index, "direct"), compact)}
    if "composed" in have:
        block = entry["z2z_composed"]
        out["composed"] = {"baseline_att": block.get("baseline_att"),
                           "baseline_mlp": block.get("baseline_mlp"),
                           **_route_block(R.z2z_matrix(result, index, "composed"), compact),
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
                           **({"sparse": _top_sources(z.T, TOP_K_Z2U)} if compact
                              else {"matrix": _numbers(z)})}
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
    measures = R.measures(result, index)
    if measures:
        out["measures"] = {name: _route_block(m, compact) for name, m in measures.items()}
    return out


def view_data(result: dict[str, Any] | str | Path, *, title: str | None = None,
              layers: Sequence[int] | None = None, full_file: str | None = None
              ) -> dict[str, Any]:
    """The checked view payload of `result` (numeric arrays as `_Raw` JSON text); compact
    beyond `COMPACT_FROM` tokens, naming the side file `full_file` (if any) that holds
    the full matrices."""
    return _view_data(R.load_result(result), title, layers, full_file)


def _view_data(res: dict[str, Any], title: str | None, layers: Sequence[int] | None,
               full_file: str | None) -> dict[str, Any]:
    """`view_data` of a result already loaded and checked; `full_file` names the side files
    (`<full_file>.<layer>.js`)."""
    tokens = res["tokens"]
    if not tokens or not all(isinstance(t, str) for t in tokens):
        raise LIGError("the result's 'tokens' must be a non-empty list of strings")
    S = len(tokens)
    order = R.layers(res) if layers is None else [int(x) for x in layers]
    if not order:
        raise LIGError("no layers selected to view")
    heads = R.num_heads(res)
    compact = S > COMPACT_FROM
    payload_layers: dict[str, Any] = {}
    for index in order:
        payload_layers[str(index)] = _layer_payload(res, index, S, heads, compact)
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
        "compact": {"top_k": TOP_K, "top_k_z2u": TOP_K_Z2U,
                    "full_files": {str(l): side_name(full_file, l) for l in order}
                    if full_file else None} if compact else None,
    }


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text for inside `<script>`: no `</script`, `<!--` (JSON: `<` only occurs in strings)."""
    return text.replace("<", "\\u003c")


def side_name(base: str, layer: int) -> str:
    """The side file of `layer` for a page whose side files are named after `base`."""
    return f"{base}.{layer}.js"


def full_data_script(result: dict[str, Any] | str | Path, layer: int) -> str:
    """One side file of a compact page: `window.LIG_FULL["<l>"] = {"<route>": {"shape":
    [S, T], "f32": base64 of the matrix as little-endian float32, row-major}}` for layer
    l's direct and composed matrices (a binary blob: the page decodes it in milliseconds,
    where the same numbers as JSON text take seconds to write and read). One file per
    layer, loaded for the layer on screen."""
    return _full_script(R.load_result(result), layer)


def _full_script(res: dict[str, Any], layer: int) -> str:
    routes: dict[str, Any] = {}
    for r in R.routes(res, layer):
        m = np.ascontiguousarray(R.z2z_matrix(res, layer, r), "<f4")
        routes[r] = {"shape": list(m.shape),
                     "f32": base64.b64encode(m.tobytes()).decode("ascii")}
    return ("window.LIG_FULL = window.LIG_FULL || {};\n"
            f"window.LIG_FULL[{json.dumps(str(layer))}] = {json.dumps(routes)};\n")


def build_page(result: dict[str, Any] | str | Path, *, title: str | None = None,
               layers: Sequence[int] | None = None, full_file: str | None = None) -> str:
    """A complete HTML document viewing `result` (a dict or a JSON path), self-contained
    but for the optional side file `full_file` of a compact page (module doc).

    `layers` restricts the page to some layers (all by default). Raises `LIGError` (one
    line) when `result` is not a lig result or a requested layer is missing.
    """
    return _page(R.load_result(result), title, layers, full_file)


def _page(res: dict[str, Any], title: str | None, layers: Sequence[int] | None,
          full_file: str | None) -> str:
    data = _view_data(res, title, layers, full_file)
    data_json = _script_safe(_dumps(data))
    js = _asset("viewer.js").replace("</script", "<\\/script")
    css = _asset("viewer.css").replace("</style", "<\\/style")
    page_title = html.escape(data["title"])
    # the side files may load as scripts: beside the page, as file: URLs or from its server
    extra_src = " 'self' file:" if data["compact"] and full_file else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'{extra_src}; img-src data:">
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
    atomically); returns the path. A compact page (beyond `COMPACT_FROM` tokens) gets its
    side files beside it, OUT.full.<layer>.js."""
    res = R.load_result(result)
    out = Path(out)
    if len(res["tokens"]) > COMPACT_FROM:
        base = out.name + ".full"
        for l in R.layers(res) if layers is None else [int(x) for x in layers]:
            write_text(out.with_name(side_name(base, l)), _full_script(res, l))
        return write_text(out, _page(res, title, layers, base))
    return write_text(out, _page(res, title, layers, None))


def notebook_html(result: dict[str, Any] | str | Path, height: int = 640, *,
                  title: str | None = None, layers: Sequence[int] | None = None) -> str:
    """The page in an `<iframe srcdoc>` (sandboxed, scripts only), for `_repr_html_`."""
    page = build_page(result, title=title, layers=layers)
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" '
            f'style="width:100%;height:{int(height)}px;border:1px solid #ddd" '
            'sandbox="allow-scripts" title="LIG flow viewer"></iframe>')
