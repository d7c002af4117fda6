"""Static publication figures with matplotlib: per-layer z→z heatmaps and the Experiment-A
flow-consistency summary.

Figures are built on a bare `matplotlib.figure.Figure` (no pyplot, no global backend
state), so nothing has to be closed and no interactive backend is ever touched. The output
format follows the file suffix (`SUFFIXES`); PNG is written at 200 dpi.

Orientation of every heatmap: image row i = source token i, column j = target token j,
i.e. the image data is exactly `z2z_matrix(result, l, route)` ([S_src, S_tgt]).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import baselines
from ..errors import LIGError
from ..files import write_atomic
from .result import layers as result_layers
from .result import load_result, measure_matrix, routes, z2z_matrix, z2z_targets

SUFFIXES = (".png", ".pdf", ".svg")
PNG_DPI = 200
SIGNED_CMAP = "RdBu_r"
ABSOLUTE_CMAP = "viridis"
_TEXT_LIMIT = 90  # characters of the input text shown in a suptitle
_MAX_COLS = 3  # heatmaps per figure row
_TITLE_POINTS = 10

# Experiment A: the order of the 24 pairs (docs/spec.md §10) and how each baseline is shown, from
# the comparison's own variant tables.
LAYER, ATT, MLP = baselines.of("z2z"), baselines.of("z2u"), baselines.of("u2z")
_GROUP_ORDER = tuple(v.group for v in LAYER)  # as the reference's CSV spells them
_GROUP_LABELS = {v.group: f"LIG({v.label})" for v in LAYER}
_ATT_ORDER = tuple(v.reference_name for v in ATT)
_ATT_LABELS = {v.reference_name: v.label for v in ATT}
_ATT_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
_MLP_ORDER = tuple(v.reference_name for v in MLP)
_MLP_LABELS = {v.reference_name: v.label for v in MLP}
_MLP_HATCHES = ("", "///", "..", "xx")


# ----------------------------------------------------------------------------- output


def check_suffix(out: str | Path) -> str:
    """The output format ("png" | "pdf" | "svg") from `out`'s suffix; LIGError otherwise."""
    suffix = Path(out).suffix.lower()
    if suffix not in SUFFIXES:
        raise LIGError(f"cannot write a figure to {out}: unknown suffix {suffix or '(none)'!r}; "
                       f"allowed: {', '.join(SUFFIXES)}")
    return suffix[1:]


def save_figure(fig: Figure, out: str | Path) -> Path:
    """Write `fig` to `out` in the format its suffix names (PNG at `PNG_DPI`); returns out."""
    fmt = check_suffix(out)
    return write_atomic(out, lambda fh: fig.savefig(fh, format=fmt,
                                                    dpi=PNG_DPI if fmt == "png" else "figure"))


def _display(token: str) -> str:
    """A token as a one-line label (newlines and tabs escaped, empty shown as '')."""
    text = str(token).replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text or "''"


def _shorten(text: str, limit: int = _TEXT_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- layers


# Beyond this many tokens on an axis a heatmap gets sparse tick labels (at most MAX_TICKS,
# each "index token") and a robust colour scale (clipped at the ROBUST_PERCENTILE-th
# percentile of |values|, said in the colour bar's label).
SPARSE_FROM = 64
MAX_TICKS = 40
ROBUST_PERCENTILE = 99.0


def parse_window(text: str | None, size: int | None = None) -> tuple[int, int] | None:
    """"i:j" → (i, j), tokens i..j−1 (either end may be omitted); checked against `size`."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        lo = int(parts[0]) if parts[0].strip() else 0
        hi = int(parts[1]) if parts[1].strip() else (size if size is not None else 1 << 30)
    except ValueError:
        raise LIGError(f"--window takes i:j (tokens i..j-1, 0-based), e.g. 0:64. Got: "
                       f"{text!r}") from None
    if size is not None:
        hi = min(hi, size)
    if lo < 0 or hi <= lo:
        raise LIGError(f"--window {text} is empty or negative; give 0 ≤ i < j"
                       + (f" ≤ {size}" if size is not None else ""))
    return lo, hi


def _panel(result: dict[str, Any], index: int, route: str, absolute: bool,
           window: tuple[int, int] | None = None
           ) -> tuple[np.ndarray, list[str], list[str]]:
    """(data [S_src, S_tgt], source labels [S_src], target labels [S_tgt]) of one layer;
    `window` (i, j) keeps the sources and targets among tokens i..j−1. Labels carry the
    token index where the axis will get sparse ticks."""
    matrix = z2z_matrix(result, index, route)
    tokens = [_display(t) for t in result["tokens"]]
    cols = z2z_targets(result, index, route)
    lo, hi = window or (0, len(tokens))
    rows = list(range(lo, min(hi, len(tokens))))
    keep = [c for c, j in enumerate(cols) if lo <= j < hi]
    if not rows or not keep:
        raise LIGError(f"--window {lo}:{hi} holds no token of layer {index} (tokens "
                       f"0..{len(tokens) - 1})")
    data = matrix[np.ix_(rows, keep)]
    data = np.abs(data) if absolute else data
    sparse = max(len(rows), len(keep)) > SPARSE_FROM

    def label(i: int) -> str:
        return f"{i} {tokens[i]}" if sparse else tokens[i]

    return data, [label(i) for i in rows], [label(cols[c]) for c in keep]


def _measure_panel(result: dict[str, Any], index: int, name: str,
                   window: tuple[int, int] | None = None
                   ) -> tuple[np.ndarray, list[str], list[str]]:
    """`_panel` of context-mixing measure `name` ([S_src, S_tgt], values ≥ 0)."""
    matrix = measure_matrix(result, index, name)
    tokens = [_display(t) for t in result["tokens"]]
    lo, hi = window or (0, len(tokens))
    rows = list(range(lo, min(hi, len(tokens))))
    if not rows:
        raise LIGError(f"--window {lo}:{hi} holds no token (tokens 0..{len(tokens) - 1})")
    sparse = len(rows) > SPARSE_FROM
    labels = [f"{i} {tokens[i]}" if sparse else tokens[i] for i in rows]
    return matrix[np.ix_(rows, rows)], labels, labels


def _baselines(result: dict[str, Any], shown: Sequence[int], route: str) -> str:
    """'baseline X' (direct) or 'ATT baseline X, MLP baseline Y' (composed), joined with '/'
    where layers differ."""
    shown = [l for l in shown if route in routes(result, l)]
    if not shown:  # a result of measures alone
        return "no LIG map in the result"
    if route == "direct":
        names = {str(result["layers"][str(l)]["z2z"].get("baseline")) for l in shown}
        return "baseline " + " / ".join(sorted(names))
    blocks = [result["layers"][str(l)]["z2z_composed"] for l in shown]
    att = " / ".join(sorted({str(b.get("baseline_att")) for b in blocks}))
    mlp = " / ".join(sorted({str(b.get("baseline_mlp")) for b in blocks}))
    return f"ATT baseline {att}, MLP baseline {mlp}"


def _suptitle(result: dict[str, Any], shown: Sequence[int], route: str, absolute: bool,
              width: float) -> str:
    """Route, baseline(s), model and text, wrapped to a figure `width` inches wide."""
    what = "|z→z|" if absolute else "z→z"
    kind = "layer-direct IG" if route == "direct" else "composed ATT × MLP IG"
    model = result.get("model") or "model ?"
    lines = [f"{what} attribution, {route} route ({kind}; {_baselines(result, shown, route)})"
             f" — {model}", f"“{_shorten(result.get('text', ''))}”"]
    chars = max(30, int(width * 72 / (_TITLE_POINTS * 0.55)))
    return "\n".join(textwrap.fill(line, chars, break_long_words=False,
                                   break_on_hyphens=False) for line in lines)


def _cell_inches(n: int) -> float:
    """Side of one heatmap cell in inches for an n-token axis (whole panel ≤ ~5 in)."""
    return min(0.3, 5.0 / max(n, 1))


def _tick_points(cell: float) -> float:
    return max(2.0, min(8.0, cell * 72 * 0.75))


def _norm(panels: Sequence[np.ndarray], absolute: bool) -> tuple[Normalize, str]:
    """One colour scale for all panels: [0, m] if absolute, else [-m, m] centred at 0, with
    m the largest |value| — or, on panels beyond `SPARSE_FROM` tokens, its
    `ROBUST_PERCENTILE`-th percentile (one outlier would wash the rest out); the second
    item says so for the colour bar ("" when not clipped)."""
    finite = [np.abs(p[np.isfinite(p)]) for p in panels]
    top = max((float(f.max()) for f in finite if f.size), default=0.0) or 1.0
    note = ""
    if max(max(p.shape) for p in panels) > SPARSE_FROM:
        values = np.concatenate([f.ravel() for f in finite])
        q = float(np.percentile(values, ROBUST_PERCENTILE)) if values.size else 0.0
        if 0.0 < q < top:
            note = (f"clipped at the {ROBUST_PERCENTILE:g}th percentile of |values|, "
                    f"{q:.3g} (max {top:.3g})")
            top = q
    norm = Normalize(0.0, top) if absolute else Normalize(-top, top)
    return norm, note


def _ticks(n: int) -> list[int]:
    """Tick positions on an n-cell axis: every cell, or at most MAX_TICKS evenly spaced."""
    if n <= SPARSE_FROM:
        return list(range(n))
    return list(range(0, n, math.ceil(n / MAX_TICKS)))


def _draw_heatmap(ax: Axes, data: np.ndarray, rows: list[str], cols: list[str],
                  norm: Normalize, cmap: str, fontsize: float) -> None:
    ax.imshow(data, cmap=cmap, norm=norm, interpolation="nearest", aspect="equal",
              origin="upper")
    xs, ys = _ticks(len(cols)), _ticks(len(rows))
    size = fontsize if len(xs) == len(cols) and len(ys) == len(rows) else 6.0
    ax.set_xticks(xs)
    ax.set_xticklabels([cols[k] for k in xs], rotation=60, ha="right",
                       rotation_mode="anchor", fontsize=size, parse_math=False)
    ax.set_yticks(ys)
    ax.set_yticklabels([rows[k] for k in ys], fontsize=size, parse_math=False)
    ax.tick_params(length=2, pad=1.5)


def _default_layers(result: dict[str, Any], route: str) -> list[int]:
    """The layers that have `route` (all layers if none has it, so the reader names it)."""
    present = result_layers(result)
    return [l for l in present if route in routes(result, l)] or present


SCALES = ("shared", "layer")


def layers_figure(result: dict[str, Any] | str | Path, *, layers: list[int] | None = None,
                  route: str = "direct", absolute: bool = False,
                  scale: str = "shared", window: tuple[int, int] | None = None,
                  measure: str | None = None) -> Figure:
    """The per-layer heatmap grid as a Figure (not saved).

    One heatmap per layer in `layers` (default: all layers that have `route`), image data
    [S_src, S_tgt] = `z2z_matrix(result, l, route)` (|·| if `absolute`); diverging colours
    centred at 0 for signed values, sequential for absolute ones. `scale="shared"`: one
    colour scale and bar for every layer (magnitudes compare across layers);
    `scale="layer"`: each layer its own scale and bar (a quiet layer next to a loud one
    still shows its pattern). `window` (i, j): tokens i..j−1 only. Beyond `SPARSE_FROM`
    tokens the ticks are sparse ("index token") and the colour scale robust (`_norm`).
    `measure`: a context-mixing measure of the result (`explain --measures`) drawn beside
    LIG, one row per layer (LIG's panel, then the measure's), each on its own colour
    scale (their units differ). Missing layers / routes / measures and non-lig inputs
    raise a one-line LIGError.
    """
    if scale not in SCALES:
        raise LIGError(f"unknown colour scale {scale!r}; allowed: {', '.join(SCALES)}")
    result = load_result(result)
    shown = _default_layers(result, route) if layers is None else [int(l) for l in layers]
    if not shown:
        raise LIGError("no layers to plot")
    panels, titles, signs = [], [], []
    for l in shown:
        if measure is None or route in routes(result, l):  # a measures-only result: alone
            panels.append(_panel(result, l, route, absolute, window))
            titles.append(f"layer {l}" if measure is None else f"layer {l}: LIG z→z ({route})")
            signs.append(absolute)
        if measure is not None:
            panels.append(_measure_panel(result, l, measure, window))
            titles.append(f"layer {l}: {measure}")
            signs.append(True)
    if measure is not None:
        scale = "layer"
    ncols = 2 if measure is not None else min(_MAX_COLS, len(shown))
    nrows = math.ceil(len(panels) / ncols)
    n_src = max(p[0].shape[0] for p in panels)
    n_tgt = max(p[0].shape[1] for p in panels)
    cell = _cell_inches(max(n_src, n_tgt))
    pad = 6 * _tick_points(cell) / 72 + 0.5  # room for the longest tick labels
    per_layer = scale == "layer"
    width = ncols * (n_tgt * cell + pad + (0.9 if per_layer else 0)) + 1.2
    height = nrows * (n_src * cell + pad + 0.3) + 0.9
    fig = Figure(figsize=(width, height), layout="constrained")
    shared, shared_note = _norm([p[0] for p in panels], absolute)
    cmap = ABSOLUTE_CMAP if absolute else SIGNED_CMAP
    axes = [fig.add_subplot(nrows, ncols, k + 1) for k in range(len(panels))]
    label = ("|attribution| (source i → target j)" if absolute
             else "attribution (source i → target j)")
    for k, (ax, title, positive, (data, rows, cols)) in enumerate(
            zip(axes, titles, signs, panels, strict=True)):
        cmap = ABSOLUTE_CMAP if positive else SIGNED_CMAP
        norm, note = _norm([data], positive) if per_layer else (shared, shared_note)
        _draw_heatmap(ax, data, rows, cols, norm, cmap, _tick_points(cell))
        ax.set_title(title, fontsize=10)
        if k % ncols == 0:
            ax.set_ylabel("source i", fontsize=9)
        if k + ncols >= len(panels):
            ax.set_xlabel("target j", fontsize=9)
        if per_layer:
            bar = fig.colorbar(ScalarMappable(norm, cmap), ax=ax, shrink=0.85, aspect=20,
                               pad=0.02, extend=_extend(note, positive))
            if note:
                bar.set_label(textwrap.fill(note, 40), fontsize=7)
    if not per_layer:
        bar = fig.colorbar(ScalarMappable(shared, cmap), ax=axes, shrink=0.85, aspect=30,
                           pad=0.02, extend=_extend(shared_note, absolute))
        bar.set_label(label + (f"\n{textwrap.fill(shared_note, 50)}" if shared_note else ""),
                      fontsize=9)
    title = _suptitle(result, shown, route, absolute, width)
    if window is not None:
        title += f"\n(tokens {window[0]}..{min(window[1], len(result['tokens'])) - 1})"
    if measure is not None:
        title += f"\n(beside each layer: {measure}; every panel on its own colour scale)"
    elif per_layer:
        title += "\n(each layer on its own colour scale)"
    fig.suptitle(title, fontsize=_TITLE_POINTS, parse_math=False)
    return fig


def _extend(note: str, absolute: bool) -> str:
    """The colour bar's arrows: values beyond a clipped scale exist."""
    return "neither" if not note else ("max" if absolute else "both")


def plot_layers(result: dict[str, Any] | str | Path, out: str | Path, *,
                layers: list[int] | None = None, route: str = "direct",
                absolute: bool = False, scale: str = "shared",
                window: tuple[int, int] | None = None, measure: str | None = None) -> Path:
    """Write the per-layer z→z heatmaps of `result` to `out` (.png | .pdf | .svg), with
    `measure` beside each layer if given."""
    check_suffix(out)
    return save_figure(layers_figure(result, layers=layers, route=route, absolute=absolute,
                                     scale=scale, window=window, measure=measure), out)


# ----------------------------------------------------------------------------- flow


def _number(value: Any) -> float:
    """A CSV cell as a float ('' or None → NaN)."""
    if value in ("", None):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LIGError(f"not a number in the comparison CSV: {value!r}") from None


def _flow_rows(rows: list[dict] | str | Path) -> list[dict]:
    """Rows from a CSV path (checked by `read_rows`) or a list of dicts (checked here)."""
    from ..experiment.flow import COLUMNS, read_rows

    if isinstance(rows, (str, Path)):
        rows = read_rows(rows)
    if not rows:
        raise LIGError("the comparison has no rows")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise LIGError(f"not comparison rows (missing columns: {', '.join(missing)})")
    return list(rows)


def _rank(value: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(value), "") if value in order else (len(order), value)


def _ordered(rows: list[dict]) -> list[dict]:
    """Rows sorted by layer-direct group, then ATT, then MLP baseline (docs/spec.md §10 order)."""
    return sorted(rows, key=lambda r: (_rank(str(r["layer_ig_baseline_group"]), _GROUP_ORDER),
                                       _rank(str(r["att_ig_baseline"]), _ATT_ORDER),
                                       _rank(str(r["mlp_ig_baseline"]), _MLP_ORDER)))


def _styles(values: Sequence[str], order: Sequence[str], styles: Sequence[str]
            ) -> dict[str, str]:
    """A style per distinct value: known ones in docs/spec.md §10 order first, then the rest."""
    names = sorted(set(values), key=lambda v: _rank(v, order))
    return {v: styles[k % len(styles)] for k, v in enumerate(names)}


def _positions(rows: list[dict]) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """x of each bar [N] (a one-bar gap between groups) and (group, first x, last x)."""
    xs, spans, x = [], [], 0.0
    for k, r in enumerate(rows):
        group = str(r["layer_ig_baseline_group"])
        if k and group != spans[-1][0]:
            x += 1.0
        if not spans or group != spans[-1][0]:
            spans.append((group, x, x))
        spans[-1] = (group, spans[-1][1], x)
        xs.append(x)
        x += 1.0
    return np.asarray(xs), spans


def _pair_label(row: dict) -> str:
    """The ATT+MLP part of a pair name (the group is shown above the bars)."""
    name = str(row["pair_name"])
    return name.split(" | ", 1)[1] if " | " in name else name


def _draw_bars(ax: Axes, rows: list[dict], xs: np.ndarray, mean: str, std: str,
               colours: dict[str, str], hatches: dict[str, str]) -> None:
    heights = [_number(r[mean]) for r in rows]
    errors = [_number(r[std]) for r in rows]
    bars = ax.bar(xs, heights, width=0.8, yerr=errors, capsize=2,
                  color=[colours[str(r["att_ig_baseline"])] for r in rows],
                  edgecolor="black", linewidth=0.5, error_kw={"elinewidth": 0.8},
                  label=mean)
    for patch, r in zip(bars.patches, rows, strict=True):
        patch.set_hatch(hatches[str(r["mlp_ig_baseline"])])
        patch.set_gid(str(r["pair_key"]))


def _separate_groups(ax: Axes, spans: list[tuple[str, float, float]]) -> None:
    for _, _, last in spans[:-1]:
        ax.axvline(last + 1.0, color="0.6", linewidth=0.6, linestyle="--")
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)


def _legend(ax: Axes, colours: dict[str, str], hatches: dict[str, str]) -> None:
    handles = [Patch(facecolor=c, edgecolor="black", linewidth=0.5,
                     label=f"ATT({_ATT_LABELS.get(v, v)})") for v, c in colours.items()]
    handles += [Patch(facecolor="white", edgecolor="black", linewidth=0.5, hatch=h,
                      label=f"MLP({_MLP_LABELS.get(v, v)})") for v, h in hatches.items()]
    ax.legend(handles=handles, fontsize=7, ncols=len(handles), loc="lower center",
              bbox_to_anchor=(0.5, 1.09), frameon=False, handlelength=1.6,
              columnspacing=1.0)


def _group_axis(ax: Axes, spans: list[tuple[str, float, float]]) -> None:
    """Group names (layer-direct baseline) centred above each group of bars."""
    top = ax.secondary_xaxis("top")
    top.set_xticks([(a + b) / 2 for _, a, b in spans])
    top.set_xticklabels([f"{_GROUP_LABELS.get(g, g)}" for g, _, _ in spans], fontsize=9)
    top.tick_params(length=0)


def _values(rows: list[dict], column: str) -> str:
    seen = list(dict.fromkeys(str(r[column]) for r in rows))
    return " / ".join(seen)


def _flow_title(rows: list[dict]) -> str:
    span = " / ".join(dict.fromkeys(f"{r['sample_start']}–{r['sample_end']}" for r in rows))
    return (f"Experiment A: layer-direct vs composed z→z — split {_values(rows, 'split')}, "
            f"samples {span}, n_samples {_values(rows, 'n_samples')}, "
            f"n_pairs {_values(rows, 'n_pairs')} (sentence, layer, target) columns")


def _corr_limits(rows: list[dict]) -> tuple[float, float]:
    """y range of the Pearson panel: [-1, 1] widened to show every error bar whole."""
    mean = np.array([_number(r["corr_mean"]) for r in rows])
    std = np.nan_to_num(np.array([_number(r["corr_std"]) for r in rows]))
    ends = np.concatenate([mean - std, mean + std, [-1.0, 1.0]])
    ends = ends[np.isfinite(ends)]
    return float(ends.min()) - 0.05, float(ends.max()) + 0.05


def flow_figure(rows: list[dict] | str | Path) -> Figure:
    """The Experiment-A summary as a Figure (not saved): top panel mean L2 ± std, bottom
    panel mean Pearson ± std, one bar per pair [N = 24], grouped by layer-direct baseline,
    colour = ATT baseline, hatch = MLP baseline. Each bar's gid is its pair_key."""
    rows = _ordered(_flow_rows(rows))
    xs, spans = _positions(rows)
    colours = _styles([str(r["att_ig_baseline"]) for r in rows], _ATT_ORDER, _ATT_COLOURS)
    hatches = _styles([str(r["mlp_ig_baseline"]) for r in rows], _MLP_ORDER, _MLP_HATCHES)
    fig = Figure(figsize=(max(7.0, 0.42 * len(rows) + 2.0), 7.5), layout="constrained")
    l2_ax, corr_ax = fig.subplots(2, 1, sharex=True)
    _draw_bars(l2_ax, rows, xs, "l2_mean", "l2_std", colours, hatches)
    _draw_bars(corr_ax, rows, xs, "corr_mean", "corr_std", colours, hatches)
    for ax in (l2_ax, corr_ax):
        _separate_groups(ax, spans)
    l2_ax.set_ylabel("mean L2 distance (± std)", fontsize=9)
    l2_ax.set_ylim(bottom=0.0)
    corr_ax.set_ylabel("mean Pearson r (± std)", fontsize=9)
    corr_ax.axhline(0.0, color="black", linewidth=0.6)
    corr_ax.set_ylim(*_corr_limits(rows))
    corr_ax.set_xticks(xs)
    corr_ax.set_xticklabels([_pair_label(r) for r in rows], rotation=55, ha="right",
                            rotation_mode="anchor", fontsize=7)
    corr_ax.set_xlim(xs[0] - 0.7, xs[-1] + 0.7)
    _group_axis(l2_ax, spans)
    _legend(l2_ax, colours, hatches)
    fig.suptitle(_flow_title(rows), fontsize=10, parse_math=False)
    return fig


def plot_flow(rows: list[dict] | str | Path, out: str | Path) -> Path:
    """Write the Experiment-A summary of comparison CSV rows (or a CSV path) to `out`."""
    check_suffix(out)
    return save_figure(flow_figure(rows), out)
