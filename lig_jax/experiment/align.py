"""Dependency alignment of attribution maps (Clark et al. 2019, "What does BERT look at?").

For a word-level map W [U_src, U_tgt] (`words.to_words`) and a gold dependency arc
dependent d → head h (h ≠ root):
- dep→head is right when the highest-scoring source word for target d is h;
- head→dep is right when the highest-scoring source word for target h is d.
Candidates are the sentence's other words (not the target itself, not special-token
units). Accuracy = right / arcs, overall and per relation. The fixed-offset baseline
predicts the word at a fixed offset k (|k| ≤ 5, k ≠ 0) as the head (dep→head) or the
dependent (head→dep); per relation and overall the best k is reported.

Maps per layer: layer-direct z→z (3 baselines), composed z→z (8 variants), z→u per
head h for each ATT baseline (source i → head h's output at target j), and every
context-mixing measure and rollout the run computed (`measure/<name>`, kind "measure";
the raw value-zeroing distances are left out: they rank as value zeroing does).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import LIGError
from ..measures.names import is_view
from ..words import aggregate, aggregation
from .flow import ATT, LAYER, MLP
from .store import Record, Store

MEASURE = "measure/"
OFFSETS = tuple(k for k in range(-5, 6) if k != 0)
DIRECTIONS = ("dep2head", "head2dep")
CSV_COLUMNS = ("map", "kind", "layer", "head", "direction", "relation", "n_arcs", "accuracy",
               "offset_baseline", "best_offset")


def _arcs(record: Record, unit_word: list[int]) -> list[tuple[int, int, str]]:
    """Gold arcs as (dependent unit, head unit, relation) among words that have tokens."""
    heads, relns = record.meta.get("heads"), record.meta.get("relns")
    if heads is None:
        raise LIGError(f"sentence {record.index} has no dependency heads (plain-text "
                       "corpus?); alignment needs a dependency corpus")
    unit_of_word = {w: u for u, w in enumerate(unit_word) if w >= 0}
    arcs = []
    for w, h in enumerate(heads):
        if h == 0 or w not in unit_of_word or (h - 1) not in unit_of_word:
            continue
        arcs.append((unit_of_word[w], unit_of_word[h - 1], relns[w]))
    return arcs


def _top_sources(w: np.ndarray, words_mask: np.ndarray) -> np.ndarray:
    """[..., U_src, U_tgt] → best source unit per target [..., U_tgt] (self, specials out)."""
    u = w.shape[-1]
    allowed = words_mask[:, None] & ~np.eye(u, dtype=bool)
    return np.argmax(np.where(allowed, w, -np.inf), axis=-2)


def _maps(record: Record, summ: np.ndarray, mean: np.ndarray) -> dict[tuple, np.ndarray]:
    """(name, kind, head) → word maps [L, U, U]."""
    def words(m: np.ndarray) -> np.ndarray:
        return aggregate(m, summ, mean)

    out = {}
    for v in LAYER:
        out[(f"z2z/{v.name}", "z2z_direct", -1)] = words(record.array(f"z2z/{v.name}"))
    for a in ATT:
        for m in MLP:
            key = f"composed/{a.name}/{m.name}"
            out[(key, "z2z_composed", -1)] = words(record.array(key))
    for key in sorted(k for k in record.arrays if k.startswith(MEASURE)):
        if not is_view(key):
            out[(key, "measure", -1)] = words(record.array(key))
    for a in ATT:
        scores = record.array(f"z2u/{a.name}")  # [L, T, H, S]
        per_head = np.transpose(scores, (2, 0, 3, 1))  # [H, L, S_src, T]
        for h, m in enumerate(words(per_head)):
            out[(f"z2u/{a.name}", "z2u_head", h)] = m
    return out


def alignment(records: Iterable[Record]) -> dict:
    """Counts → accuracies for every map, layer, direction and relation, plus baselines."""
    right: dict[tuple, np.ndarray] = {}
    total: dict[str, int] = {}
    offset_right: dict[str, np.ndarray] = {}
    n_sent = 0
    for rec in records:
        summ, mean, unit_word = aggregation(rec.meta["word_ids"])
        arcs = _arcs(rec, unit_word)
        if not arcs:
            continue
        n_sent += 1
        words_mask = np.asarray(unit_word) >= 0
        dep = np.asarray([a[0] for a in arcs])
        head = np.asarray([a[1] for a in arcs])
        rels = np.asarray([a[2] for a in arcs])
        masks = {r: rels == r for r in set(rels.tolist())} | {"ALL": np.ones(len(arcs), bool)}
        for r, sel in masks.items():
            total[r] = total.get(r, 0) + int(sel.sum())
            hits = np.asarray([np.sum(sel & (head == dep + k)) for k in OFFSETS])
            offset_right[r] = offset_right.get(r, 0) + hits
        for key, w in _maps(rec, summ, mean).items():
            top = _top_sources(w, words_mask)  # [L, U]
            d2h = top[:, dep] == head[None]  # [L, arcs]
            h2d = top[:, head] == dep[None]
            for r, sel in masks.items():
                counts = np.stack([d2h[:, sel].sum(axis=1), h2d[:, sel].sum(axis=1)])
                right[(*key, r)] = right.get((*key, r), 0) + counts  # [2, L]
    if n_sent == 0:
        raise LIGError("no sentence with dependency arcs among the records")
    rows = []
    for (name, kind, h, rel), counts in sorted(right.items(), key=lambda x: x[0]):
        n = total[rel]
        best = int(np.argmax(offset_right[rel]))
        base = float(offset_right[rel][best] / n)
        for di, direction in enumerate(DIRECTIONS):
            for layer, c in enumerate(counts[di]):
                rows.append({"map": name, "kind": kind, "layer": layer,
                             "head": "" if h < 0 else h, "direction": direction,
                             "relation": rel, "n_arcs": n, "accuracy": float(c / n),
                             "offset_baseline": base, "best_offset": OFFSETS[best]})
    return {"sentences": n_sent, "rows": rows}


def align_store(folder: str | Path) -> dict:
    store = Store(folder)
    store.manifest()
    if not store.done():
        raise LIGError(f"{folder} has no finished sentence yet")
    return alignment(store)


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def summary(result: dict, relations: int = 8) -> str:
    """Plain-text summary: per relation (most frequent first) the best map of each kind
    in each direction next to the offset baseline; then per-layer overall accuracy of the
    z→z maps."""
    rows = result["rows"]
    n_of = {r["relation"]: r["n_arcs"] for r in rows}
    rels = ["ALL"] + sorted((r for r in n_of if r != "ALL"), key=lambda r: (-n_of[r], r))
    lines = [f"dependency alignment over {result['sentences']} sentences "
             "(accuracy, best map/layer[/head]; offset baseline)"]
    lines.append(f"{'relation':<12}{'n':>6}  {'direction':<9} {'best z→z map':<44}"
                 f"{'best z→u head':<34}{'offset':>12}")
    for rel in rels[:relations + 1]:
        for direction in DIRECTIONS:
            sel = [r for r in rows if r["relation"] == rel and r["direction"] == direction]
            best = {}
            for kind in ("z2z", "z2u"):
                cand = [r for r in sel if r["kind"].startswith(kind)]
                b = max(cand, key=lambda r: (r["accuracy"], -r["layer"]))
                tail = f" h{b['head']}" if b["head"] != "" else ""
                best[kind] = f"{b['accuracy']:.3f} {b['map']} L{b['layer']}{tail}"
            base = sel[0]
            lines.append(f"{rel:<12}{n_of[rel]:>6}  {direction:<9} {best['z2z']:<44}"
                         f"{best['z2u']:<34}{base['offset_baseline']:>7.3f} "
                         f"({base['best_offset']:+d})")
    layers = sorted({r["layer"] for r in rows})
    lines.append("")
    lines.append("overall dep→head accuracy per layer: " + ", ".join(
        f"L{layer} " + " ".join(
            f"{r['map'].split('/', 1)[1]}={r['accuracy']:.2f}" for r in rows
            if r["relation"] == "ALL" and r["direction"] == "dep2head"
            and r["kind"] == "z2z_direct" and r["layer"] == layer) for layer in layers))
    table = measure_table(result)
    if table:
        lines += ["", table]
    return "\n".join(lines)


def measure_table(result: dict, direction: str = "dep2head") -> str:
    """Overall (ALL relations) accuracy of LIG's direct z→z maps and of every measure,
    maps × layers, in one `direction`; "" when the run computed no measures."""
    rows = [r for r in result["rows"] if r["relation"] == "ALL"
            and r["direction"] == direction and r["kind"] in ("z2z_direct", "measure")]
    if not any(r["kind"] == "measure" for r in rows):
        return ""
    layers = sorted({r["layer"] for r in rows})
    names = list(dict.fromkeys(r["map"] for r in rows))
    acc = {(r["map"], r["layer"]): r["accuracy"] for r in rows}
    width = max(len(n) for n in names) + 2
    arrow = "dep→head" if direction == "dep2head" else "head→dep"
    lines = [f"{arrow} accuracy (all relations), maps × layers "
             f"(offset baseline {rows[0]['offset_baseline']:.3f})",
             "map".ljust(width) + "".join(f"L{layer}".rjust(7) for layer in layers)]
    for n in names:
        lines.append(n.ljust(width) + "".join(
            f"{acc[(n, layer)]:7.3f}" if (n, layer) in acc else "      -" for layer in layers))
    return "\n".join(lines)
