"""`lig-jax experiment run`: every sentence of a corpus range → one record in a store.

Top-down: read the corpus → keep sentences start..end (inclusive, file indices) → drop
those with a record (resume) → this process's share (multi-host) → tokenise (sub-word
tokens + their word index) → length buckets (a bucket's sentences share compiled programs)
→ `SentenceComputer` (the compute core `engine.compute`, on this process's mesh) → one
atomic record per sentence, written as soon as it is done.
"""

from __future__ import annotations

import bisect
import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax

from ..data import Sentence, read_corpus
from ..engine import bucket_length
from ..errors import LIGError
from ..files import file_sha256
from ..loading import LoadedModel, load_model
from ..mesh import rows
from ..mesh.processes import process_mesh
from ..version import __version__
from .compute import SentenceComputer, Settings
from .store import FORMAT_VERSION, Record, Store


@dataclass(frozen=True)
class Tokenized:
    sentence: Sentence
    ids: list[int]
    tokens: list[str]
    word_ids: list[int]  # per token: index into sentence.words, −1 for special tokens
    truncated: bool

    @property
    def length(self) -> int:
        return len(self.ids)


def tokenize_words(lm: LoadedModel, sentence: Sentence, max_length: int) -> Tokenized:
    """text = " ".join(words) (docs/spec.md §10), truncated at `max_length` tokens; each sub-word
    token mapped to the word its first character belongs to."""
    text = " ".join(sentence.words)
    starts = list(itertools.accumulate((len(w) + 1 for w in sentence.words[:-1]), initial=0))
    limit = min(max_length, lm.config.max_tokens)
    enc = lm.tokenizer(text, truncation=False, return_offsets_mapping=True)
    truncated = len(enc["input_ids"]) > limit
    if truncated:  # let the tokenizer cut it, so the special tokens stay in place
        enc = lm.tokenizer(text, truncation=True, max_length=limit,
                           return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    # special tokens have an empty span; a sub-word belongs to the word its first char is in
    word_ids = [-1 if end <= start else bisect.bisect_right(starts, start) - 1
                for start, end in enc["offset_mapping"]]
    return Tokenized(sentence, ids, lm.tokenizer.convert_ids_to_tokens(ids), word_ids,
                     truncated)


def _settings(settings: Settings) -> dict[str, Any]:
    """The manifest's settings; `measures` only when some are asked for (so runs made
    before measures existed still resume)."""
    out = asdict(settings)
    if not out["measures"]:
        del out["measures"]
    return out


def deal(costs: dict[int, float], count: int | Sequence[int], rank: int) -> list[int]:
    """Greedy longest-first dealing of items (by cost) to workers — `count` of them, or
    one per entry of a list of capacities (a process's data rows; 0 takes nothing) — so
    that load / capacity stays level; worker `rank`'s items. Every process computes the
    same deal, so no coordination is needed."""
    caps = [1] * count if isinstance(count, int) else list(count)
    loads = [0.0] * len(caps)
    able = [i for i, c in enumerate(caps) if c > 0]
    mine = []
    for key in sorted(costs, key=lambda k: (-costs[k], k)):
        w = min(able, key=lambda i: ((loads[i] + costs[key]) / caps[i], i))
        loads[w] += costs[key]
        if w == rank:
            mine.append(key)
    return sorted(mine)


@dataclass
class RunSummary:
    selected: int
    already_done: int
    computed: int
    seconds: float
    tokens: int

    @property
    def sentences_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def run_experiment(
    data: str,
    model: str,
    out: str | os.PathLike,
    *,
    start: int = 0,
    end: int | None = None,
    fmt: str = "auto",
    skip_bad_lines: bool = False,
    settings: Settings | None = None,
    resume: bool = True,
    multi_host: bool = False,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    mesh: str | None = None,
    progress: bool = True,
    say: Callable[[str], None] = lambda _m: None,
    after_record: Callable[[], None] = lambda: None,
) -> RunSummary:
    """Compute and store every selected sentence's record; returns what was done.
    `mesh` "DxM": a (data, model) mesh over the first D·M devices of all processes
    (default: every device on the data axis); the data axis deals sentences — to the
    processes by their rows, then to each row as it comes free — and each sentence runs
    on its row's M devices. `after_record()` runs once each record is on disk (the CLI
    raises Ctrl-C there; the sentences already running still finish and are written)."""
    settings = settings or Settings()
    if settings.steps < 2:
        raise LIGError(f"--steps must be at least 2, got {settings.steps}")
    if settings.chunk_mb < 1 or settings.max_length < 3:
        raise LIGError("the chunk budget must be ≥ 1 MiB and --max-length ≥ 3")
    if multi_host:  # TPU pods / SLURM / … detect the rest; elsewhere give all three
        try:
            jax.distributed.initialize(coordinator, num_processes, process_id)
        except (RuntimeError, ValueError) as e:
            raise LIGError(f"jax.distributed.initialize failed: {str(e).splitlines()[0]} "
                           "(give --coordinator HOST:PORT --num-processes N --process-id I "
                           "where no cluster is detected)") from None
    rank, count = jax.process_index(), jax.process_count()
    corpus = read_corpus(data, fmt, skip_bad_lines=skip_bad_lines)
    if corpus.bad_lines:
        say(f"{corpus.path}: left out {corpus.skipped_sentences} sentences with "
            f"{corpus.bad_lines} malformed lines")
    last = max(s.index for s in corpus.sentences)
    end = last if end is None else end
    if start < 0 or end < start:
        raise LIGError(f"--start/--end must satisfy 0 ≤ start ≤ end; got {start}..{end} "
                       f"(the corpus has sentences 0..{last})")
    selected = [s for s in corpus.sentences if start <= s.index <= end]
    if not selected:
        raise LIGError(f"no sentence of {corpus.path} lies in {start}..{end} (the corpus has "
                       f"sentences 0..{last})")
    mesh_obj, row_counts = process_mesh(mesh)
    lm = load_model(model, mesh_obj)  # parameters straight to their shards
    manifest = {
        "format_version": FORMAT_VERSION, "lig_jax": __version__, "model": lm.name,
        "model_type": lm.model_type, "checkpoint_sha256": lm.checkpoint_hash,
        "data_path": str(Path(corpus.path).resolve()), "data_sha256": file_sha256(
            Path(corpus.path)), "data_format": corpus.format,
        "skip_bad_lines": skip_bad_lines, "start": start, "end": end,
        "settings": _settings(settings), "num_layers": lm.config.num_layers,
        "num_heads": lm.config.num_heads,
        "rules": {p: r for p, r in lm.family.reference_rules},
    }
    store = Store(out, tag=f"p{rank}")
    store.open(manifest, resume)
    done = store.done()
    pending = [s for s in selected if s.index not in done]
    items = {s.index: tokenize_words(lm, s, settings.max_length) for s in pending}
    costs = {i: float(bucket_length(t.length, lm.config.max_tokens)) ** 2
             for i, t in items.items()}
    mine = deal(costs, row_counts, rank)
    row_meshes = rows.data_rows(mesh_obj) if mesh_obj is not None else []
    computers = [SentenceComputer(rows.model_on_row(lm, mesh_obj, r), settings, r)
                 for r in row_meshes]
    by_bucket: dict[int, list[int]] = {}
    for i in mine:
        by_bucket.setdefault(bucket_length(items[i].length, lm.config.max_tokens), []).append(i)
    say(f"{len(selected)} sentences selected, {len(selected) - len(pending)} already done, "
        f"{len(mine)} to compute here (process {rank}/{count}, "
        f"{_rows_here(mesh_obj, row_counts)}, "
        f"buckets {sorted(by_bucket)})")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(mine), unit="sent", disable=not progress, dynamic_ncols=True)
    t0, n_tokens = time.perf_counter(), 0
    order = [i for length in sorted(by_bucket) for i in by_bucket[length]]

    def keep(i: int, arrays: dict[str, Any]) -> None:
        nonlocal n_tokens
        store.write(make_record(items[i], arrays))
        n_tokens += items[i].length
        bar.update(1)
        bar.set_postfix(tokens_per_s=f"{n_tokens / (time.perf_counter() - t0):.0f}")

    try:  # a bucket's sentences share compiled programs
        if computers:
            rows.over_rows(computers, order, lambda c, i: c.run(items[i].ids), keep,
                           after_record)
    finally:
        bar.close()
    return RunSummary(len(selected), len(selected) - len(pending), len(mine),
                      time.perf_counter() - t0, n_tokens)


def _rows_here(mesh: Any, row_counts: Sequence[int]) -> str:
    if mesh is None:
        return f"no row of the mesh here (rows per process: {row_counts})"
    d, m = mesh.devices.shape
    return f"mesh rows {d} of {sum(row_counts)}, {m} device{'s' * (m > 1)} each"


def make_record(t: Tokenized, arrays: dict[str, Any]) -> Record:
    s = t.sentence
    meta = {
        "index": s.index, "line": s.line, "words": list(s.words),
        "heads": None if s.heads is None else list(s.heads),
        "relns": None if s.relns is None else list(s.relns),
        "tokens": t.tokens, "token_ids": t.ids, "word_ids": t.word_ids,
        "truncated": t.truncated,
    }
    return Record(meta, arrays)

