"""Every reader of results answers a corrupted file in one line (exit 2), never a traceback.

200 seeded random corruptions — of an explain result as JSON, as .npz, of an explain-batch
.jsonl, of an Experiment-A run folder (manifest and records) and of a comparison CSV — fed
to the commands that read them: view, plot, compare, experiment compare/align/table. A
corruption may leave a file readable (exit 0, or compare's 1 for a difference); what may
not happen is an exception escaping the command or an error of more than one line.
"""

from __future__ import annotations

import copy
import io
import json
import random
import traceback
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lig_jax.cli import app
from lig_jax.experiment import flow
from lig_jax.experiment.store import Record, Store

runner = CliRunner()

JUNK = (None, "x", "", True, -1, 0, 1e300, 10**6, [], {}, [[1.0, 2.0], [3.0]], [["a"]],
        {"0": 1}, [1.0], float("nan"))


def _nodes(obj, path=()):
    """Every (path, value) inside a JSON document."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):  # a few items of long lists are enough
            yield from _nodes(v, (*path, i))


def mutate(doc, rng: random.Random):
    """A copy of a JSON document with one random structural change."""
    doc = copy.deepcopy(doc)
    nodes = [p for p, _ in _nodes(doc) if p]
    path = rng.choice(nodes)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    op = rng.choice(("delete", "junk", "junk", "shorten", "extend"))
    value = parent[key]
    if op == "delete":
        del parent[key]
    elif op in ("shorten", "extend") and isinstance(value, list) and value:
        if op == "shorten":
            del value[rng.randrange(len(value))]
        else:
            value.append(copy.deepcopy(rng.choice(value)))
    else:
        parent[key] = copy.deepcopy(rng.choice(JUNK))
    return doc


def mangle(data: bytes, rng: random.Random) -> bytes:
    """The bytes of a file truncated, overwritten in places, or with bytes inserted."""
    op = rng.choice(("truncate", "flip", "insert"))
    n = len(data)
    if op == "truncate":
        return data[: rng.randrange(n)]
    buf = bytearray(data)
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(n)] = rng.randrange(256)
        return bytes(buf)
    at = rng.randrange(n)
    return bytes(buf[:at]) + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + \
        bytes(buf[at:])


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def mutate_npz(path: Path, rng: random.Random) -> bytes:
    """An .npz result with its meta JSON mutated, an array reshaped, turned to strings or
    to NaN, or an array dropped — or its bytes mangled."""
    data = path.read_bytes()
    if rng.random() < 0.3:
        return mangle(data, rng)
    with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k] for k in z.files}
    op = rng.choice(("meta", "reshape", "strings", "nan", "drop"))
    keys = [k for k in arrays if k != "meta"]
    if op == "meta":
        arrays["meta"] = np.asarray(json.dumps(mutate(json.loads(str(arrays["meta"])), rng)))
    else:
        k = rng.choice(keys)
        if op == "reshape":
            arrays[k] = arrays[k].reshape(-1)[: max(1, arrays[k].size - 1)]
        elif op == "strings":
            arrays[k] = np.asarray(["x"] * max(1, arrays[k].size))
        elif op == "nan":
            arrays[k] = np.full_like(np.asarray(arrays[k], np.float64), np.nan)
        else:
            del arrays[k]
    return _npz_bytes(arrays)


def mutate_record(path: Path, rng: random.Random) -> bytes:
    """An Experiment-A record with its metadata mutated, an array reshaped or dropped — or
    its bytes mangled."""
    data = path.read_bytes()
    if rng.random() < 0.3:
        return mangle(data, rng)
    with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    op = rng.choice(("meta", "meta", "reshape", "drop", "nan"))
    k = rng.choice([k for k in arrays if k != "__meta__"])
    if op == "meta":
        arrays["__meta__"] = np.frombuffer(json.dumps(mutate(meta, rng)).encode(), np.uint8)
    elif op == "reshape":
        arrays[k] = arrays[k][..., :-1]
    elif op == "nan":
        arrays[k] = np.full_like(arrays[k], np.nan)
    else:
        del arrays[k]
    return _npz_bytes(arrays)


def mutate_csv(path: Path, rng: random.Random) -> bytes:
    data = path.read_bytes()
    if rng.random() < 0.4:
        return mangle(data, rng)
    lines = data.decode().splitlines()
    n = rng.randrange(len(lines))
    cells = lines[n].split(",")
    op = rng.choice(("cell", "drop_cell", "drop_line"))
    if op == "cell":
        cells[rng.randrange(len(cells))] = rng.choice(("x", "", "nan", "-1", "1e999", '"'))
        lines[n] = ",".join(cells)
    elif op == "drop_cell":
        del cells[rng.randrange(len(cells))]
        lines[n] = ",".join(cells)
    else:
        del lines[n]
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------------ valid inputs


@pytest.fixture(scope="module")
def sources(tiny_bert, tmp_path_factory) -> dict[str, Path]:
    """A valid result of each kind, and the checks that every reader accepts them."""
    from lig_jax.api import explain_arrays
    from lig_jax.batchfile import BatchWriter
    from lig_jax.results import save_npz
    from lig_jax.schema import explanation

    root = tmp_path_factory.mktemp("fuzz")
    res = explain_arrays("The cat sat.", model=str(tiny_bert), num_steps=2, layers=[0, 1])
    save_npz(res, root / "r.npz")
    doc = explanation(res)
    (root / "r.json").write_text(json.dumps(doc))
    with BatchWriter(root / "b.jsonl") as w:
        w.add(0, doc)
    rng = np.random.default_rng(0)
    store = Store(root / "run")
    store.open({"start": 0, "end": 1, "model": "m", "model_type": "bert",
                "settings": {"steps": 4}, "data_path": "/x/dev.conllu",
                "format_version": 2}, resume=True)
    for index, s in enumerate((6, 7)):
        arrays = {f"z2z/{v.name}": rng.normal(size=(2, s, s)) for v in flow.LAYER}
        for a in flow.ATT:
            arrays[f"z2u/{a.name}"] = rng.normal(size=(2, s, 2, s))
            for m in flow.MLP:
                arrays[f"composed/{a.name}/{m.name}"] = rng.normal(size=(2, s, s))
        for m in flow.MLP:
            arrays[f"u2z/{m.name}"] = rng.normal(size=(2, s, 8))
        meta = {"index": index, "words": [f"w{i}" for i in range(s - 3)],
                "heads": [2, 0, *([2] * (s - 5))],
                "relns": ["det", "root", *(["dobj"] * (s - 5))],
                "word_ids": [-1, 0, 0, *range(1, s - 3), -1],
                "tokens": [f"t{i}" for i in range(s)]}
        store.write(Record(meta, arrays))
    (root / "flow.csv").write_text(flow.rows_to_csv(flow.compare_store(root / "run")))
    for case in CASES.values():
        for args in case[1]:
            res = runner.invoke(app, _args(args, root, root / "out", f=root / case[0]))
            assert res.exit_code == 0, (args, res.output)
    return {"root": root}


# kind → (the file that is corrupted, relative to the root; the commands reading it)
CASES = {
    "json": ("r.json", (["view", "{f}", "-o", "{o}.html"], ["plot", "{f}", "-o", "{o}.png"],
                        ["compare", "{f}", "{root}/r.json", "--tol", "1e9"])),
    "npz": ("r.npz", (["view", "{f}", "-o", "{o}.html"], ["plot", "{f}", "-o", "{o}.png"],
                      ["compare", "{root}/r.json", "{f}", "--tol", "1e9"])),
    "jsonl": ("b.jsonl", (["view", "{f}", "--index", "0", "-o", "{o}.html"],
                          ["plot", "{f}", "--index", "0", "-o", "{o}.png"])),
    "manifest": ("run/run.json", (["experiment", "compare", "{d}"],
                                  ["view", "{d}", "--sentence", "1", "-o", "{o}.html"])),
    "record": ("run/records/sample_00001.npz", (
        ["experiment", "compare", "{d}"], ["experiment", "align", "{d}"],
        ["view", "{d}", "--sentence", "1", "-o", "{o}.html"],
        ["plot", "{d}", "--sentence", "1", "-o", "{o}.png"])),
    "csv": ("flow.csv", (["experiment", "table", "{f}"], ["plot", "{f}", "-o", "{o}.png"])),
}
COUNTS = {"json": 45, "npz": 40, "jsonl": 25, "manifest": 20, "record": 40, "csv": 30}
assert sum(COUNTS.values()) == 200


def _args(args: list[str], root: Path, out: Path, f: Path | None = None,
          d: Path | None = None) -> list[str]:
    return [a.format(f=f or root / "r.json", d=d or root / "run", o=out, root=root)
            for a in args]


def _corrupt(kind: str, path: Path, rng: random.Random) -> bytes:
    if kind == "npz":
        return mutate_npz(path, rng)
    if kind == "record":
        return mutate_record(path, rng)
    if kind == "csv":
        return mutate_csv(path, rng)
    text = path.read_bytes()
    if rng.random() < 0.3:
        return mangle(text, rng)
    if kind == "jsonl":
        record = json.loads(text)
        return (json.dumps(mutate(record, rng)) + "\n").encode()
    return json.dumps(mutate(json.loads(text), rng)).encode()


@pytest.mark.parametrize("kind", list(COUNTS))
def test_corrupted_results_get_one_line(sources, kind, tmp_path) -> None:
    import shutil

    root = sources["root"]
    rel, commands = CASES[kind]
    rng = random.Random(f"lig-jax fuzz {kind}")
    escaped = []
    for n in range(COUNTS[kind]):
        work = tmp_path / f"c{n}"
        shutil.copytree(root, work)
        target = work / rel
        target.write_bytes(_corrupt(kind, root / rel, rng))
        args = _args(rng.choice(commands), root, work / "out", f=target, d=work / "run")
        res = runner.invoke(app, args)
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        if (res.exception is not None and not isinstance(res.exception, SystemExit)) or \
                res.exit_code not in (0, 1, 2) or "Traceback" in res.output or \
                (res.exit_code == 2 and len(errors) != 1):
            tb = "".join(traceback.format_exception(res.exception)) if res.exception else ""
            escaped.append((n, args[:2], tb[-700:] or res.stderr[-300:]))
        shutil.rmtree(work)
    assert not escaped, escaped
