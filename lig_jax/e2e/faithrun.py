"""`faithfulness()`: a corpus → per sentence, every method's faithfulness metrics → a table.

    OUT/run.json                      the settings that fix the numbers (checked on resume)
    OUT/records/sentence_00042.json   one sentence: value, curves, metrics, bounds
    OUT/table.json, OUT/table.csv     per method and metric: mean and 95 % bootstrap interval
    OUT/curves.png                    mean comprehensiveness / sufficiency against k

Records are written atomically, one per sentence, so a run killed at any moment resumes
where it stopped (the default) and gives the same table; a folder holding a run with other
settings or another corpus is refused. `limit` is not a setting: a run over the first N
sentences is extended by running it again with a larger limit (or none); the table covers
every record in the folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import LIGConfig
from ..errors import LIGError
from ..files import file_sha256, output_folder, write_atomic, write_text
from .faithfulness import LEVELS, METRICS, bootstrap, candidates, score_sentence
from .names import DECODER_TARGETS, DEFAULT_IG_RULE, DEFAULT_IG_STEPS, DEFAULT_OUTPUT, method_list

FORMAT = "lig-jax faithfulness run"
RECORDS = "records"
Progress = Callable[[str], None]


def _record(root: Path, index: int) -> Path:
    return root / RECORDS / f"sentence_{index:05d}.json"


def _open(root: Path, manifest: dict[str, Any]) -> set[int]:
    """Create the run folder or check its settings; the sentences already done."""
    path = root / "run.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise LIGError(f"{path} is not a readable run manifest ({type(e).__name__})"
                           ) from None
        diff = [k for k in sorted(set(old) | set(manifest)) if old.get(k) != manifest.get(k)]
        if diff:
            shown = "; ".join(f"{k}: {old.get(k)!r} there, {manifest.get(k)!r} now"
                              for k in diff[:3])
            raise LIGError(f"{root} holds a faithfulness run with other settings ({shown}); "
                           "use another --out folder or the same settings")
    (root / RECORDS).mkdir(parents=True, exist_ok=True)
    if not path.exists():
        write_text(path, json.dumps(manifest, indent=2) + "\n")
    done = set()
    for p in (root / RECORDS).glob("sentence_*.json"):
        try:
            json.loads(p.read_text())
            done.add(int(p.stem.split("_")[1]))
        except (ValueError, OSError, IndexError):
            p.unlink(missing_ok=True)  # not a whole record: computed again
    return done


def faithfulness(data: str, *, out: str | Path, model: str | None = None,
                 methods: str | list[str] | None = None, target: str | None = None,
                 output: str = DEFAULT_OUTPUT, ablation: str = "delete",
                 num_steps: int | str = DEFAULT_IG_STEPS, rule: str = DEFAULT_IG_RULE,
                 baseline: str = "zero", lig_steps: int | str = LIGConfig.num_steps,
                 limit: int | None = None, mesh: str | None = None, chunk: int = 64,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Faithfulness of `methods` on the sentences of corpus `data` (a file of any format
    `lig_jax.data.read_corpus` reads, or "demo"), written to the folder `out` (see the
    module doc); returns the table. `limit`: the first N sentences. `mesh`: "DxM", the
    perturbation batches split over its data axis. `chunk`: perturbations per call."""
    from ..data.readers import read_corpus
    from ..loading import load_model
    from ..mesh import make_mesh
    from .attribute import attribute, target_for
    from .perturb import ABLATIONS, Evaluator

    say = progress or (lambda _m: None)
    names = method_list(methods)
    if ablation not in ABLATIONS:
        from ..errors import choice_error

        raise choice_error("ablation", ablation, ABLATIONS)
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise LIGError(f"limit must be a positive integer. Got: {limit!r}")
    root = output_folder(Path(out))
    corpus = read_corpus(data)
    sentences = list(corpus.sentences)[:limit]
    lm = load_model(model)
    mesh_obj = make_mesh(mesh) if mesh is not None else None
    lm_eval = load_model(model, mesh_obj) if mesh_obj is not None else lm
    decoder = lm.family.architecture == "decoder"
    if decoder and ablation != "delete":
        raise LIGError(f"--ablation {ablation} applies to encoders; decoders delete the "
                       "removed tokens")
    manifest = {"format": FORMAT, "model": lm.name, "checkpoint_sha256": lm.checkpoint_hash,
                "data_sha256": file_sha256(corpus.path),
                "methods": names, "target": target, "output": output, "ablation": ablation,
                "num_steps": num_steps, "rule": rule, "baseline": baseline,
                "lig_steps": lig_steps, "levels": list(LEVELS)}
    done = _open(root, manifest)
    from ..api import tokenize
    from ..engine import bucket_length
    from ..lm_head import lm_head

    t0 = time.perf_counter()
    for i, sent in enumerate(sentences):
        if i in done:
            continue
        text = " ".join(sent.words)
        ids, _ = tokenize(lm, text)
        tgt = target_for(lm, ids, target, output)
        if tgt.kind == "continuation":
            raise LIGError("faithfulness needs a one-column target of the input itself "
                           "(next, token:, contrast: or an encoder target), not "
                           "continuation: (for one of its tokens use token:<id>)")
        att = attribute(input_ids=ids, model=model, target=tgt, output=output,
                        methods=names, num_steps=num_steps, rule=rule, baseline=baseline,
                        lig_steps=lig_steps, bucket=True)
        head = lm_head(lm_eval) if tgt.kind in DECODER_TARGETS else None
        ev = Evaluator(lm_eval, tgt, ablation, length=bucket_length(len(ids),
                                                                    lm.config.max_tokens),
                       unembed=None if head is None else head.unembed,
                       softcap=None if head is None else head.softcap, chunk=chunk,
                       mesh=mesh_obj)
        cand = candidates(lm, tgt, decoder)
        value = float(att.arrays["target/values"][0])
        res = score_sentence(ev, value, {m: att.scores(m)[:, 0] for m in names}, cand)
        record = {"index": i, "text": text, "input_ids": ids,
                  "target": att.meta["target"], "value": value,
                  "candidates": res.candidates, "curves": res.curves,
                  "metrics": res.metrics, "bounds": res.bounds, "calls": ev.calls}
        write_text(_record(root, i), json.dumps(record) + "\n")
        say(f"sentence {i + 1}/{len(sentences)}: {len(ids)} tokens, {ev.calls} batched "
            f"calls ({time.perf_counter() - t0:.0f}s)")
    table = summarise(root, names)
    write_text(root / "table.json", json.dumps(table, indent=2) + "\n")
    write_text(root / "table.csv", table_csv(table))
    plot_curves(root, names, root / "curves.png")
    return table


def records(root: Path) -> list[dict[str, Any]]:
    """The run's records, in sentence order."""
    out = []
    for p in sorted((Path(root) / RECORDS).glob("sentence_*.json")):
        out.append(json.loads(p.read_text()))
    return out


def summarise(root: Path, names: list[str]) -> dict[str, Any]:
    """Per method and metric: mean, 95 % bootstrap interval, sentences counted."""
    recs = records(root)
    rows = []
    for m in names:
        for metric in METRICS:
            v = np.array([r["metrics"][m][metric] for r in recs], np.float64)
            mean, lo, hi = bootstrap(v)
            rows.append({"method": m, "metric": metric, "mean": mean, "low": lo, "high": hi,
                         "sentences": int(np.isfinite(v).sum())})
    return {"sentences": len(recs), "rows": rows}


def table_csv(table: dict[str, Any]) -> str:
    lines = ["method,metric,mean,ci_low,ci_high,sentences"]
    for r in table["rows"]:
        lines.append(f"{r['method']},{r['metric']},{r['mean']:.6g},{r['low']:.6g},"
                     f"{r['high']:.6g},{r['sentences']}")
    return "\n".join(lines) + "\n"


def format_table(table: dict[str, Any]) -> str:
    """Methods × metrics: mean [95 % interval]."""
    methods = list(dict.fromkeys(r["method"] for r in table["rows"]))
    head = f"{table['sentences']} sentences; mean [95% bootstrap interval]"
    lines = [head, f"{'method':<22}" + "".join(f"{m:>24}" for m in METRICS)]
    for m in methods:
        cells = []
        for metric in METRICS:
            r = next(x for x in table["rows"] if x["method"] == m and x["metric"] == metric)
            cells.append(f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}]")
        lines.append(f"{m:<22}" + "".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def plot_curves(root: Path, names: list[str], path: Path) -> Path:
    """Mean comprehensiveness and sufficiency against k, one line per method."""
    from matplotlib.figure import Figure

    recs = records(root)
    fig = Figure(figsize=(9, 3.6))
    for ax, kind, title in zip(fig.subplots(1, 2), ("comp", "suff"),
                               ("comprehensiveness (higher = better)",
                                "sufficiency (lower = better)"), strict=True):
        for m in names:
            curve = np.nanmean([r["curves"][m][kind] for r in recs], axis=0)
            ax.plot(LEVELS, curve, marker="o", label=m)
        ax.set_xlabel("% of tokens (top-ranked)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.tight_layout()
    return write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=150))
