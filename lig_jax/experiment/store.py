"""The on-disk store of an experiment run: a manifest and one record file per sentence.

    DIR/run.json                     what fixes the numbers (model, data, settings)
    DIR/records/sample_00042.npz     sentence 42: metadata + every matrix (float32)

A record is written to a hidden temporary file in the same folder, flushed to disk, then
renamed over its final name (`os.replace`, atomic on POSIX), and the folder entry is
synced. A run killed at any moment therefore leaves only whole records (and perhaps a
stale temporary file, which the next run of the same process index removes): finished
work is never lost and never half-written. Several processes (hosts) write into one
store without coordination: every sentence has its own file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LIGError
from ..results import NPZ_ERRORS

MANIFEST = "run.json"
RECORDS = "records"
FORMAT_VERSION = 2  # 2: record keys are the baselines' names (`baselines.py`)


def _v1_key(key: str) -> str:
    """A format-1 record key in today's names: format 1 called the ITB baseline "itb"
    (z2z/itb, composed/itb/…, total/z2z_itb, …)."""
    parts = key.split("/")
    parts = ["self_input_token" if p == "itb" else p for p in parts]
    if parts[0] == "total" and parts[-1].endswith("_itb"):
        parts[-1] = parts[-1][:-len("itb")] + "self_input_token"
    return "/".join(parts)


RANGE = ("start", "end")  # the sentences asked for so far (a run may be extended)


def _widened(old: dict[str, Any], new: dict[str, Any], root: Path) -> dict[str, int]:
    """The range of sentences a run covers once extended by `new`'s: the union of the two
    ranges, which must overlap or touch (a run covers one contiguous range)."""
    if not all(k in old and k in new for k in RANGE):
        return {}
    values = [old["start"], old["end"], new["start"], new["end"]]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise LIGError(f"{root}/{MANIFEST} is damaged: its start/end are not integers")
    (a, b), (c, d) = values[:2], values[2:]
    if c > b + 1 or a > d + 1:
        raise LIGError(f"{root} holds sentences {a}..{b}; it can be extended by a range "
                       f"that overlaps or continues it, not {c}..{d} (use another --out "
                       "folder)")
    return {"start": min(a, c), "end": max(b, d)}


def _brief(value: Any, most: int = 60) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= most else text[: most - 1] + "…"


def record_name(index: int) -> str:
    return f"sample_{index:05d}.npz"


@dataclass
class Record:
    """One sentence: `meta` (index, words, heads, relns, tokens, word_ids, …) and arrays;
    `source` names it in errors (its file)."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    source: str = "the record"

    @property
    def index(self) -> int:
        return int(self.meta["index"])

    def array(self, key: str) -> np.ndarray:
        """The array `key` (e.g. "z2z/zero"); one `LIGError` line if the record lacks it."""
        try:
            return self.arrays[key]
        except KeyError:
            raise LIGError(f"{self.source} has no array {key!r}; delete it and run again to "
                           "recompute that sentence") from None


# The trailing axes of each kind of record array (S = the sentence's tokens).
_MAP_DIMS = {"z2z": "LSS", "composed": "LSS", "z2u": "LSHS", "u2z": "LSW", "measure": "LSS"}


def check_record(meta: Any, arrays: dict[str, np.ndarray], index: int, source: str) -> None:
    """One `LIGError` line unless a record read from disk is well-formed: its metadata
    (index, tokens, word ids, words) and every map's shape against its tokens, numeric and
    finite."""
    bad = f"{source} is malformed"
    if not isinstance(meta, dict) or meta.get("index") != index:
        raise LIGError(f"{bad} (its metadata is not the record of sentence {index}); delete "
                       "it and run again to recompute that sentence")
    tokens = meta.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str)
                                                             for t in tokens):
        raise LIGError(f"{bad}: 'tokens' is not a list of strings")
    s = len(tokens)
    def ints(value: Any, low: int, high: int) -> bool:
        return isinstance(value, list) and all(
            isinstance(i, int) and not isinstance(i, bool) and low <= i <= high
            for i in value)

    words = meta.get("words")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise LIGError(f"{bad}: 'words' is not a list of the sentence's words")
    ids = meta.get("word_ids")
    if not ints(ids, -1, len(words) - 1) or len(ids) != s:
        raise LIGError(f"{bad}: 'word_ids' is not one word index (or -1) per token")
    heads, relns = meta.get("heads"), meta.get("relns")
    if heads is not None and (not ints(heads, 0, len(words)) or len(heads) != len(words)):
        raise LIGError(f"{bad}: 'heads' is not one head (0..{len(words)}) per word")
    if (heads is not None or relns is not None) and (
            not isinstance(relns, list) or len(relns) != len(words)
            or not all(isinstance(r, str) for r in relns)):
        raise LIGError(f"{bad}: 'relns' is not one relation name per word")
    for key, a in arrays.items():
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise LIGError(f"{bad}: {key} is not numeric")
        dims = _MAP_DIMS.get(key.split("/")[0])
        if dims is None:
            continue
        ok = a.ndim == len(dims) and all(n == s for n, d in zip(a.shape, dims, strict=True)
                                         if d == "S")
        if not ok:
            raise LIGError(f"{bad}: {key} has shape {list(a.shape)}, expected "
                           f"[{', '.join(str(s) if d == 'S' else d for d in dims)}] for "
                           f"{s} tokens")
        if not np.isfinite(a).all():
            raise LIGError(f"{bad}: {key} holds non-finite numbers (NaN or infinity)")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, tag: str) -> None:
    """Write `data` to `path` so that `path` is either absent or complete."""
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Store:
    """A run folder. `tag` names this writer's temporary files (one per process)."""

    def __init__(self, root: str | os.PathLike, tag: str = "p0"):
        self.root = Path(root)
        self.records = self.root / RECORDS
        self.tag = tag
        self._version: int | None = None  # the manifest's format_version, once read

    # --------------------------------------------------------------- manifest
    def read_manifest(self) -> dict[str, Any] | None:
        path = self.root / MANIFEST
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            raise LIGError(f"{path} is not a readable run manifest "
                           f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                           ) from None
        if not isinstance(manifest, dict):
            raise LIGError(f"{path} is not a run manifest (a {type(manifest).__name__}, "
                           "expected an object)")
        return manifest

    def open(self, manifest: dict[str, Any], resume: bool) -> None:
        """Create the store, or check that an existing one was made with these settings."""
        old = self.read_manifest()
        if old is not None:
            if not resume:
                raise LIGError(f"{self.root} already holds a run; resume it (the default) "
                               "or choose another --out folder")
            # the data may move (its sha256 is compared) and the range of sentences may
            # grow (the run is extended); everything else must match
            diff = [k for k in sorted(set(old) | set(manifest))
                    if k not in ("data_path", *RANGE) and old.get(k) != manifest.get(k)]
            if diff:
                shown = "; ".join(f"{k}: {_brief(old.get(k))} there, "
                                  f"{_brief(manifest.get(k))} now" for k in diff)
                raise LIGError(f"{self.root} holds a run with other settings ({shown}); use "
                               "another --out folder or the same settings")
            wider = _widened(old, manifest, self.root)
            if any(old.get(k) != v for k, v in wider.items()):
                old.update(wider)  # extended: the manifest covers every sentence asked for
                write_atomic(self.root / MANIFEST,
                             (json.dumps(old, indent=2) + "\n").encode(), self.tag)
        self.records.mkdir(parents=True, exist_ok=True)
        for stale in self.records.glob(f".*.{self.tag}.tmp"):
            stale.unlink(missing_ok=True)
        if old is None:
            write_atomic(self.root / MANIFEST,
                         (json.dumps(manifest, indent=2) + "\n").encode(), self.tag)

    def _format_version(self) -> int:
        if self._version is None:
            self._version = int((self.read_manifest() or {}).get("format_version", 1))
        return self._version

    def manifest(self) -> dict[str, Any]:
        m = self.read_manifest()
        if m is None:
            raise LIGError(f"{self.root} is not an experiment run folder (no {MANIFEST}); "
                           "make one with `lig-jax experiment run`")
        return m

    # ---------------------------------------------------------------- records
    def done(self) -> set[int]:
        """Indices of the sentences with a record."""
        if not self.records.is_dir():
            return set()
        out = set()
        for p in self.records.glob("sample_*.npz"):
            try:
                out.add(int(p.stem.split("_")[1]))
            except (IndexError, ValueError):
                continue
        return out

    def write(self, record: Record) -> None:
        buf = io.BytesIO()
        arrays = {k.replace("/", "."): np.asarray(v, np.float32)
                  for k, v in record.arrays.items()}
        np.savez_compressed(buf, __meta__=np.frombuffer(
            json.dumps(record.meta).encode(), np.uint8), **arrays)
        write_atomic(self.records / record_name(record.index), buf.getvalue(), self.tag)

    def read(self, index: int) -> Record:
        path = self.records / record_name(index)
        try:
            with np.load(path) as z:
                meta = json.loads(bytes(z["__meta__"]).decode())
                arrays = {k.replace(".", "/"): z[k] for k in z.files if k != "__meta__"}
            if self._format_version() == 1:
                arrays = {_v1_key(k): v for k, v in arrays.items()}
        except FileNotFoundError:
            raise LIGError(f"no record for sentence {index} in {self.root}") from None
        except NPZ_ERRORS as e:
            raise LIGError(f"{path} is corrupted ({type(e).__name__}); delete it and run "
                           "again to recompute that sentence") from None
        check_record(meta, arrays, index, str(path))
        return Record(meta, arrays, str(path))

    def __iter__(self) -> Iterator[Record]:
        for index in sorted(self.done()):
            yield self.read(index)
