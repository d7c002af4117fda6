"""explain-batch's results file: JSON Lines records, and the settings file beside it.

    out.jsonl                 {"index": i, "result": …} per line, i = the 0-based input line
    out.jsonl.settings.json   the settings the records were computed with, and a digest of
                              every input line (written with the first record)

Numbering: record indices are 0-based; messages about the input file say `line N`
(1-based, as editors count) and name the index too. A rerun into the same file resumes:
`resume_state` refuses, in one line naming the difference, when the settings or an input
line that already has a result changed; appended lines are simply still to do.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LIGError
from .files import read_result_bytes, write_text

SETTINGS_FORMAT = 1


def settings_path(path: Path) -> Path:
    """The settings file that belongs to results file `path`."""
    return path.with_name(path.name + ".settings.json")


def line_digest(text: str) -> str:
    """A short content digest of one input line (sha256 of its UTF-8, 16 hex digits)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def span(values: list[int], most: int = 10) -> str:
    """`0, 2, 3` — at most `most` values, then how many more."""
    shown = ", ".join(str(v) for v in values[:most])
    return shown + (f", … {len(values) - most} more" if len(values) > most else "")


def batch_line(index: int, result: dict[str, Any]) -> str:
    """One record of an explain-batch file: {"index": i (0-based input line), "result"}."""
    return json.dumps({"index": index, "result": result}, ensure_ascii=False) + "\n"


class BatchWriter:
    """Appends records to an explain-batch file, each flushed to disk before `add`
    returns. The file is opened at the first record, and the settings file (`settings`,
    when given) written just before it: a run that fails before computing anything
    leaves no file behind."""

    def __init__(self, path: Path, settings: dict[str, Any] | None = None,
                 restart: bool = False):
        self.path, self._fh, self.settings, self.restart = path, None, settings, restart

    def add(self, index: int, result: dict[str, Any]) -> None:
        try:
            if self._fh is None:
                if self.settings is not None:
                    write_text(settings_path(self.path),
                               json.dumps(self.settings, indent=1, ensure_ascii=False) + "\n")
                # --restart: the old records go only now, with the first new one ready
                self._fh = self.path.open("w" if self.restart else "a", encoding="utf-8")
            self._fh.write(batch_line(index, result))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as e:
            raise LIGError(f"cannot write {self.path}: {e.strerror or e}") from None

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()


def _batch_records(path: Path, data: bytes):
    """(line number, index, record) of every complete line."""
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
            index = record["index"]
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise TypeError
            yield n, index, record
        except (ValueError, KeyError, TypeError):
            raise LIGError(f"{path} line {n} is not a lig-jax explain-batch record "
                           '({"index": i, "result": …})') from None


def finished_indices(path: Path) -> set[int]:
    """Indices already in an explain-batch file; a torn last line (a crash mid-write) is
    cut off so the rerun appends whole lines."""
    if not path.exists():
        return set()
    try:
        data = path.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]  # everything up to the last complete line
        if len(keep) != len(data):
            path.write_bytes(keep)
    except OSError as e:
        raise LIGError(f"cannot read {path}: {e.strerror or e}") from None
    return {index for _, index, _ in _batch_records(path, keep)}


def load_batch(path: str | Path, index: int) -> dict[str, Any]:
    """The result of input line `index` (0-based) of an explain-batch file."""
    path = Path(path)
    data = read_result_bytes(path)
    have = []
    for _, i, record in _batch_records(path, data[: data.rfind(b"\n") + 1]):
        if i == index:
            if not isinstance(record.get("result"), dict):
                raise LIGError(f"{path}: the record of index {index} holds no result")
            return record["result"]
        have.append(i)
    held = (f"indices {span(sorted(have))} (0-based input lines; {len(have)} record"
            f"{'s' * (len(have) != 1)})" if have else "no records")
    raise LIGError(f"{path} has no result with index {index} (line {index + 1}); it holds "
                   f"{held}")


@dataclass
class ResumeState:
    """What a rerun finds: the indices already done, and the settings file to write."""

    done: set[int]
    settings: dict[str, Any]


def _read_settings(path: Path) -> dict[str, Any] | None:
    side = settings_path(path)
    if not side.exists():
        return None
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        doc = None
    if not (isinstance(doc, dict) and isinstance(doc.get("settings"), dict)
            and isinstance(doc.get("lines"), list)):
        raise LIGError(f"{side} is not a lig-jax explain-batch settings file; rerun with "
                       "--restart to start over, or write to another -o")
    return doc


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "default" if value is None else str(value)


def resume_state(path: Path, settings: dict[str, Any], lines: list[str], *,
                 restart: bool = False, source: str = "the input") -> ResumeState:
    """Check a rerun into results file `path` before any work.

    `settings` maps each flag that changes the numbers (`--steps`, …) to its value;
    `lines` are the input's lines now. Refused (one `LIGError` line naming the difference):
    other settings than the file's, an input line changed or removed since its result was
    written, results without a settings file (written before lig-jax kept one). Lines
    added after the finished ones are still to do. `restart`: nothing counts as done, and
    `BatchWriter(..., restart=True)` replaces both files at the first new record (a run
    that fails before computing anything leaves the old results as they were)."""
    side = settings_path(path)
    doc = {"format": SETTINGS_FORMAT, "settings": settings,
           "lines": [line_digest(t) for t in lines]}
    if restart:
        return ResumeState(set(), doc)
    done = finished_indices(path)
    old = _read_settings(path)
    if not done:
        return ResumeState(done, doc)
    how = "rerun with --restart to start over, or write to another -o"
    if old is None:
        raise LIGError(f"{path} holds {len(done)} results but not the settings they were "
                       f"computed with ({side.name} is missing); {how}")
    missing = object()
    changed = [f"{k} not recorded there, {_show(v)} now" if old["settings"].get(k, missing)
               is missing else f"{k} {_show(old['settings'][k])} there, {_show(v)} now"
               for k, v in settings.items() if old["settings"].get(k, missing) != v]
    changed += [f"{k} {_show(v)} there, not given now" for k, v in old["settings"].items()
                if k not in settings]
    if changed:
        raise LIGError(f"{path} was computed with other settings ({'; '.join(changed)}); "
                       f"rerun with the same settings to resume, or {how}")
    gone = sorted(i for i in done if i >= len(lines))
    if gone:
        n = len(lines)
        raise LIGError(f"{path} holds results for indices {span(gone)} but {source} has "
                       f"{n} line{'s' * (n != 1)} now (indices 0..{n - 1}); {how}")
    digests = old["lines"]
    edited = sorted(i for i in done
                    if i >= len(digests) or digests[i] != doc["lines"][i])
    if edited:
        where = span([i + 1 for i in edited])
        raise LIGError(f"{source} changed since its results were written: line"
                       f"{'s' * (len(edited) > 1)} {where} (index "
                       f"{span(edited)}) differ{'s' * (len(edited) == 1)} from the text in "
                       f"{path}; {how}")
    return ResumeState(done, doc)
