"""Flow consistency (docs/spec.md §10): layer-direct z→z against the 8 composed z→z variants.

24 pairs = 3 layer-direct baselines × 4 ATT baselines × 2 MLP baselines. Per pair, for
every sentence, layer l and target column j: a = Z_direct[l, :, j], b = Z_composed[l, :, j]
(skipped when a ≡ 0; a sentence whose direct maps are all zero is skipped whole);
l2 = ‖a − b‖₂ (absolute), corr = Pearson(a, b) (NaN → 1 if a ≈ b else 0). Mean and
population std over all (sentence, layer, target) triples.

Unlike the reference (docs/spec.md §13-B5), both routes are on the same sub-word tokens of the same
record; `level="word"` aggregates both to words the same way (`words.to_words`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .. import baselines
from ..baselines import Baseline
from ..errors import LIGError
from ..words import aggregate, aggregation
from .store import Record, Store

# The 24 pairs' three tables, in the reference's order (`baselines.TABLE`).
LAYER = baselines.of("z2z")
ATT = baselines.of("z2u")
MLP = baselines.of("u2z")
COLUMNS = ("pair_name", "pair_key", "layer_ig_baseline_group", "layer_ig_baseline",
           "att_ig_baseline", "mlp_ig_baseline", "split", "sample_start", "sample_end",
           "layer_ig_dir_suffix", "composed_dir_suffix", "n_pairs", "n_samples", "l2_mean",
           "l2_std", "corr_mean", "corr_std")
TABLE_COLUMNS = ("rank_in_group", "layer_ig_baseline_group", "layer_ig_baseline",
                 "att_ig_baseline", "mlp_ig_baseline", "l2_mean", "n_pairs", "pair_name")
LEVELS = ("subword", "word")
NUMERIC_COLUMNS = ("n_pairs", "n_samples", "l2_mean", "l2_std", "corr_mean", "corr_std")


def pairs() -> list[tuple[Baseline, Baseline, Baseline]]:
    return [(lv, av, mv) for lv in LAYER for av in ATT for mv in MLP]


def pair_key(lv: Baseline, av: Baseline, mv: Baseline) -> str:
    """The reference's key of a pair, e.g. `lig_zero_att0_mlp0`."""
    return f"{lv.tag}_{av.tag}_{mv.tag}"


PAIR_KEYS = frozenset(pair_key(*p) for p in pairs())


def column_metrics(direct: np.ndarray, composed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column j of [L, S, S] maps (source axis 1): (l2 [n], corr [n]) over the columns
    whose direct part is not all zero, in (layer, target) order."""
    a = np.swapaxes(np.asarray(direct, np.float64), 1, 2).reshape(-1, direct.shape[1])
    b = np.swapaxes(np.asarray(composed, np.float64), 1, 2).reshape(-1, composed.shape[1])
    keep = np.any(a != 0.0, axis=1)
    a, b = a[keep], b[keep]
    l2 = np.linalg.norm(a - b, axis=1)
    ac, bc = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((ac * ac).sum(axis=1)) * np.sqrt((bc * bc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.clip((ac * bc).sum(axis=1) / den, -1.0, 1.0)
    bad = ~np.isfinite(corr)
    if bad.any():
        close = np.array([np.allclose(x, y) for x, y in zip(a[bad], b[bad], strict=True)])
        corr[bad] = np.where(close, 1.0, 0.0)
    return l2, corr


def _maps(record: Record, level: str) -> dict[str, np.ndarray]:
    keys = [f"z2z/{v.name}" for v in LAYER] + [f"composed/{a.name}/{m.name}"
                                               for a in ATT for m in MLP]
    out = {k: record.array(k) for k in keys}
    if level == "word":
        summ, mean, _ = aggregation(record.meta["word_ids"])
        out = {k: aggregate(v, summ, mean) for k, v in out.items()}
    return out


def flow_rows(records: Iterable[Record], manifest: dict, level: str = "subword",
              split: str | None = None) -> list[dict]:
    """The 24 CSV rows (docs/spec.md §10 columns) over `records`."""
    if level not in LEVELS:
        raise LIGError(f"unknown level {level!r}; allowed: {', '.join(LEVELS)}")
    acc: dict[str, list[list[np.ndarray]]] = {pair_key(*p): [[], []] for p in pairs()}
    samples: dict[str, set[int]] = {k: set() for k in acc}
    for rec in records:
        maps = _maps(rec, level)
        for lv, a, m in pairs():
            direct = maps[f"z2z/{lv.name}"]
            if not np.any(direct != 0.0):
                continue
            l2, corr = column_metrics(direct, maps[f"composed/{a.name}/{m.name}"])
            k = pair_key(lv, a, m)
            acc[k][0].append(l2)
            acc[k][1].append(corr)
            if len(l2):
                samples[k].add(rec.index)
    settings = manifest.get("settings", {})
    model = str(manifest.get("model", "")).rstrip("/").split("/")[-1]
    prefix = f"steps{settings.get('steps')}_{model}_maxlen{settings.get('max_length')}"
    split = split or Path(str(manifest.get("data_path", "data"))).name.split(".")[0]
    rows = []
    for lv, a, m in pairs():
        k = pair_key(lv, a, m)
        l2 = np.concatenate(acc[k][0]) if acc[k][0] else np.zeros(0)
        corr = np.concatenate(acc[k][1]) if acc[k][1] else np.zeros(0)
        n = int(l2.size)
        rows.append({
            "pair_name": f"LIG({lv.label}) | ATT({a.label})+MLP({m.label})",
            "pair_key": k,
            "layer_ig_baseline_group": lv.group, "layer_ig_baseline": lv.reference_name,
            "att_ig_baseline": a.reference_name, "mlp_ig_baseline": m.reference_name,
            "split": split,
            "sample_start": manifest.get("start"), "sample_end": manifest.get("end"),
            "layer_ig_dir_suffix": f"{prefix}_z_to_z_layer_ig_baseline_{lv.reference_name}",
            "composed_dir_suffix": f"z_to_z_ATT_{a.reference_name}_MLP_{m.reference_name}",
            "n_pairs": n, "n_samples": len(samples[k]),
            "l2_mean": float(l2.mean()) if n else "", "l2_std": float(l2.std()) if n else "",
            "corr_mean": float(corr.mean()) if n else "",
            "corr_std": float(corr.std()) if n else "",
        })
    return rows


def compare_store(folder: str | Path, level: str = "subword", split: str | None = None
                  ) -> list[dict]:
    store = Store(folder)
    manifest = store.manifest()
    if not store.done():
        raise LIGError(f"{folder} has no finished sentence yet")
    return flow_rows(store, manifest, level, split)


def rows_to_csv(rows: list[dict], columns: tuple[str, ...] = COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r[c] for c in columns})
    return buf.getvalue()


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a comparison CSV (checked for the docs/spec.md §10 columns)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            header = tuple(rows[0].keys()) if rows else ()
    except FileNotFoundError:
        raise LIGError(f"comparison CSV not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LIGError(f"{path} is not a readable comparison CSV ({type(e).__name__})"
                       ) from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise LIGError(f"{path} is not a comparison CSV (missing columns: {', '.join(missing)})")
    for n, r in enumerate(rows, 2):
        for c in COLUMNS:
            value = r.get(c)
            if value is None:
                raise LIGError(f"{path} line {n} has fewer cells than the header")
            if c in NUMERIC_COLUMNS and value != "":
                try:
                    number = float(value) if c not in ("n_pairs", "n_samples") else int(value)
                    if not math.isfinite(number) or number < 0 and c not in ("corr_mean",):
                        raise ValueError
                except ValueError:
                    raise LIGError(f"{path} line {n}: {c} is {value!r}, not a finite number"
                                   f"{'' if c == 'corr_mean' else ' ≥ 0'}") from None
        if r["pair_key"] not in PAIR_KEYS:
            raise LIGError(f"{path} line {n}: unknown pair_key {r['pair_key']!r}")
    return rows


def top_table(rows: list[dict], top: int = 3) -> list[dict]:
    """Per layer-direct baseline group (sorted), the `top` pairs with the smallest l2_mean;
    rows with an empty l2_mean or n_pairs 0 are dropped (docs/spec.md §10 export_decomp_table)."""
    if top < 1:
        raise LIGError(f"--top must be at least 1, got {top}")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["l2_mean"] in ("", None) or int(r["n_pairs"]) == 0:
            continue
        groups.setdefault(r["layer_ig_baseline_group"], []).append(r)
    out = []
    for g in sorted(groups):
        ranked = sorted(groups[g], key=lambda r: float(r["l2_mean"]))[:top]
        for rank, r in enumerate(ranked, 1):
            out.append({"rank_in_group": rank, **{c: r[c] for c in TABLE_COLUMNS[1:]}})
    return out
