"""The encoder explain and Experiment A against an earlier commit, side by side in one run.

    python scripts/bench_vs_commit.py [--rev 911b89c] [--repeats 3] [--rounds 2]
                                      [--cases explain29,explain128,experiment14]

The earlier commit's tree is exported with `git archive` into a temporary folder and
imported from there (PYTHONPATH) in its own worker processes; the working tree's code runs
in workers of the same kind. Workers alternate (old, new, old, new, … for `--rounds`
rounds), so drifts of a shared machine hit both sides alike; each side's figure is its best
over the rounds. Cases (all-MiniLM-L6-v2, the defaults of each commit: 32 steps, default
baselines, float32):

- explain29: `explain` of a 29-token sentence, every layer, every granularity;
- explain128: `explain` of a 128-token text, layer 0, every granularity;
- experiment14: `run_experiment` on the first 14 demo sentences, one device, with a
  persistent compilation cache in a fresh folder (as the CLI keeps one) — cold (the first
  run: compilation included) and warm (the same run again into a fresh folder: the
  programs come from the cache, as for a second CLI run). The table's figure is warm.

explain cases are warm: one call compiles, then the best of `--repeats` calls. The script
prints one table (seconds, and new / old) and, with `--json`, writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("the old man saw a small dog near the river and we walked home after the long "
         "day while birds sang in tall trees by quiet water").split()
CASES = ("explain29", "explain128", "experiment14")

WORKER = r'''
import json, os, sys, tempfile, time
import jax
jax.config.update("jax_compilation_cache_dir", None)
import lig_jax
from lig_jax.loading import load_model
case, repeats, words = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
lm = load_model(None)

def text_of(n):
    # common one-token words until the tokenizer gives exactly n tokens ([CLS]/[SEP] incl.)
    out, i = [], 0
    while len(lm.tokenizer(" ".join(out))["input_ids"]) < n:
        out.append(words[i % len(words)]); i += 1
    assert len(lm.tokenizer(" ".join(out))["input_ids"]) == n, n
    return " ".join(out)

res = {"file": lig_jax.__file__}
if case.startswith("explain"):
    n = int(case[len("explain"):])
    kw = {} if n < 100 else {"layers": [0]}
    text = text_of(n)
    lig_jax.explain(text, granularity="all", **kw)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); lig_jax.explain(text, granularity="all", **kw)
        times.append(time.perf_counter() - t0)
    res["seconds"] = min(times)
else:
    from lig_jax.experiment.runner import run_experiment
    n = int(case[len("experiment"):])
    # A persistent compilation cache in a fresh folder, as the CLI keeps one: the first
    # run compiles and fills it (cold), the second reads it (warm) — also where a commit
    # builds new jitted closures per run, which its in-memory cache would not reuse.
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp())
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    for label in ("cold", "warm"):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            run_experiment("demo", None, out, end=n, progress=False)
            res[label] = time.perf_counter() - t0
    res["seconds"] = res["warm"]
print("RESULT " + json.dumps(res))
'''


def export(rev: str, into: Path) -> Path:
    """The tree of `rev` as plain files under `into`."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                         capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    return into


def run_worker(tree: Path, case: str, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONWARNINGS": "ignore"}
    env.pop("XLA_FLAGS", None)
    p = subprocess.run([sys.executable, "-c", WORKER, case, str(repeats), " ".join(WORDS)],
                       cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True)
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode != 0 or not line:
        raise SystemExit(f"worker failed ({tree}, {case}):\n{p.stderr[-3000:]}")
    res = json.loads(line[-1][len("RESULT "):])
    if not Path(res["file"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"worker imported {res['file']}, not the tree {tree}")
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default="911b89c")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    bad = [c for c in cases if c not in CASES]
    if bad:
        raise SystemExit(f"unknown case {bad[0]!r}; choose from {', '.join(CASES)}")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = export(args.rev, Path(tmp))
        for case in cases:
            best: dict[str, dict] = {}
            for r in range(args.rounds):
                for side, tree in (("old", old), ("new", ROOT)):
                    t0 = time.perf_counter()
                    res = run_worker(tree, case, args.repeats)
                    print(f"  {case} round {r + 1} {side}: {res['seconds']:.3f} s "
                          f"(worker {time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                          flush=True)
                    if side not in best or res["seconds"] < best[side]["seconds"]:
                        best[side] = res
            rows.append({"case": case, "old": best["old"], "new": best["new"],
                         "ratio": best["new"]["seconds"] / best["old"]["seconds"]})
    print(f"\nnew = working tree at {head}, old = {args.rev}; seconds (best of "
          f"{args.rounds} alternating rounds); ratio = new / old (< 1.05: no slower)\n")
    print("| case | old | new | new / old |")
    print("|---|---:|---:|---:|")
    for row in rows:
        extra = ""
        if "cold" in row["old"]:
            extra = (f" (cold: {row['old']['cold']:.2f} vs {row['new']['cold']:.2f}, "
                     f"{row['new']['cold'] / row['old']['cold']:.2f}×)")
        print(f"| {row['case']}{extra} | {row['old']['seconds']:.3f} | "
              f"{row['new']['seconds']:.3f} | {row['ratio']:.2f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
