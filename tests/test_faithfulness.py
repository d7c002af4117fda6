"""Faithfulness metrics (`lig_jax.e2e.faithfulness`, `lig-jax faithfulness`): perturbations
against one-by-one evaluations, the greedy bounds against every ordering, resume after
SIGKILL with the same table, a simulated 4-device mesh equal to one device, bad input."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_attribute import _decoder

from lig_jax.e2e.attribute import attribute
from lig_jax.e2e.faithfulness import (
    LEVELS,
    greedy_bounds,
    level_sizes,
    ordering,
)
from lig_jax.e2e.faithrun import faithfulness, records
from lig_jax.errors import LIGError

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ("Tea is served in the garden", "The old man sat", "Rain fell on the quiet town")


@pytest.fixture(scope="module")
def causal(tmp_path_factory) -> Path:
    return _decoder(tmp_path_factory.mktemp("faith_causal"), "llama", 7, num_key_value_heads=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faith_corpus") / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path


def _value(folder: str, ids: list[int], token: int) -> float:
    """The logit of `token` after `ids`, computed alone (no batching, no padding)."""
    a = attribute(input_ids=ids, model=folder, target=f"token:{token}",
                  methods="grad_x_input")
    return float(a.arrays["target/values"][0])


def test_run_metrics_against_one_by_one(causal, corpus, tmp_path) -> None:
    """Each record's comprehensiveness, sufficiency and leave-one-out drops equal the
    target re-evaluated on each perturbed id list separately; AOPCs are their means."""
    folder = str(causal)
    table = faithfulness(str(corpus), out=tmp_path / "run", model=folder,
                         methods="grad_x_input,attnlrp", limit=2)
    recs = records(tmp_path / "run")
    assert [r["index"] for r in recs] == [0, 1] and table["sentences"] == 2
    for r in recs:
        ids, token = r["input_ids"], r["target"]["columns"][0]["token_id"]
        value = r["value"]
        assert np.isclose(value, _value(folder, ids, token), rtol=1e-5)
        n = len(ids) - 1  # a decoder without a start token keeps its first token
        assert r["candidates"] == n
        scores = attribute(input_ids=ids, model=folder, methods="attnlrp").scores(
            "attnlrp")[:, 0]
        order = ordering(scores, np.arange(len(ids)) > 0)
        for level, m in zip(range(len(LEVELS)), level_sizes(n), strict=True):
            if level not in (0, 4, 9):
                continue
            top = set(order[:m].tolist())
            without = [t for i, t in enumerate(ids) if i not in top]
            only = [t for i, t in enumerate(ids) if i in top or i == 0]
            comp = value - _value(folder, without, token)
            suff = value - _value(folder, only, token)
            assert np.isclose(r["curves"]["attnlrp"]["comp"][level], comp, rtol=1e-4,
                              atol=1e-5)
            assert np.isclose(r["curves"]["attnlrp"]["suff"][level], suff, rtol=1e-4,
                              atol=1e-5)
        met = r["metrics"]["attnlrp"]
        assert np.isclose(met["aopc_comp"], np.mean(r["curves"]["attnlrp"]["comp"]))
        b = r["bounds"]
        assert np.isclose(met["norm_comp"], (met["aopc_comp"] - b["comp_min"])
                          / (b["comp_max"] - b["comp_min"]))
    rows = {(x["method"], x["metric"]): x for x in table["rows"]}
    mean = np.mean([r["metrics"]["grad_x_input"]["loo_tau"] for r in recs])
    assert np.isclose(rows["grad_x_input", "loo_tau"]["mean"], mean)
    assert (tmp_path / "run" / "table.csv").read_text().startswith("method,metric,mean")
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000


def test_greedy_bounds_exact_for_two_and_inside_every_ordering() -> None:
    """With n ≤ 2 candidates the greedy bounds are the exact extremes over all
    orderings; with more they lie within them (f here: a random set function)."""
    rng = np.random.default_rng(0)
    for n in (2, 4):
        table = {}

        def f(keeps, n=n, table=table):
            out = []
            for k in keeps:
                key = tuple(bool(x) for x in k)
                table.setdefault(key, rng.normal())
                out.append([table[key]])
            return np.asarray(out)
        cand = np.array([False] + [True] * n)
        value = float(f([np.ones(n + 1, bool)])[0, 0])
        b = greedy_bounds(f, value, cand)
        aopcs = {"comp": [], "suff": []}
        for perm in itertools.permutations(range(1, n + 1)):
            order = np.asarray(perm)
            for kind in ("comp", "suff"):
                vals = []
                for m in level_sizes(n):
                    top = np.zeros(n + 1, bool)
                    top[order[:m]] = True
                    keep = ~top if kind == "comp" else (~cand | top)
                    vals.append(value - f([keep])[0, 0])
                aopcs[kind].append(np.mean(vals))
        for kind in ("comp", "suff"):
            lo, hi = min(aopcs[kind]), max(aopcs[kind])
            if n <= 2:
                assert np.isclose(b[f"{kind}_max"], hi) and np.isclose(b[f"{kind}_min"], lo)
            assert lo - 1e-12 <= b[f"{kind}_min"] <= b[f"{kind}_max"] <= hi + 1e-12


def test_bad_input(causal, corpus, tmp_path) -> None:
    folder = str(causal)
    for kwargs, message in ((dict(ablation="mask"), "applies to encoders"),
                            (dict(ablation="blank"), "Unknown ablation 'blank'"),
                            (dict(target='continuation:" on"'), "not continuation"),
                            (dict(limit=0), "limit must be a positive integer")):
        with pytest.raises(LIGError, match=message):
            faithfulness(str(corpus), out=tmp_path / "bad", model=folder,
                         methods="grad_x_input", **kwargs)
    faithfulness(str(corpus), out=tmp_path / "one", model=folder, methods="grad_x_input",
                 limit=1)
    with pytest.raises(LIGError, match="other settings"):
        faithfulness(str(corpus), out=tmp_path / "one", model=folder, methods="attnlrp",
                     limit=1)


def _cli(args: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lig_jax.cli", "faithfulness", *args],
                            cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_cli_resumes_after_sigkill_with_the_same_table(causal, corpus, tmp_path) -> None:
    """A run killed (SIGKILL) after its first record resumes to the uninterrupted run's
    CSV; a bad option is one line, exit 2."""
    args = [str(corpus), "--model", str(causal), "--methods", "grad_x_input,attnlrp"]
    whole = _cli([*args, "--out", str(tmp_path / "whole"), "-q"])
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    killed = _cli([*args, "--out", str(tmp_path / "killed")])
    first = tmp_path / "killed" / "records" / "sentence_00000.json"
    deadline = time.time() + 600
    while not first.exists() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert first.exists()
    done = sorted(p.name for p in (tmp_path / "killed" / "records").glob("*.json"))
    assert len(done) < len(SENTENCES)  # killed before the end
    again = _cli([*args, "--out", str(tmp_path / "killed"), "-q"])
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert (tmp_path / "killed" / "table.csv").read_text() == \
        (tmp_path / "whole" / "table.csv").read_text()
    assert "aopc_comp" in out
    bad = _cli([*args, "--out", str(tmp_path / "bad"), "--ablation", "mask"])
    _, err = bad.communicate(timeout=600)
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("[")]
    assert bad.returncode == 2 and len(lines) == 1 and "applies to encoders" in lines[0]


@pytest.mark.slow
def test_four_device_mesh_equals_one_device(causal, corpus, tmp_path) -> None:
    """--mesh 4x1 on 4 simulated CPU devices: every record equal to the 1-device run."""
    args = [str(corpus), "--model", str(causal), "--methods", "grad_x_input", "-q"]
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    one = _cli([*args, "--out", str(tmp_path / "one")], env=env)
    assert one.wait(timeout=900) == 0, one.stderr.read()
    four = _cli([*args, "--out", str(tmp_path / "four"), "--mesh", "4x1", "--chunk", "8"],
                env=env)
    assert four.wait(timeout=900) == 0, four.stderr.read()
    for a, b in zip(records(tmp_path / "one"), records(tmp_path / "four"), strict=True):
        assert a["input_ids"] == b["input_ids"]
        for m in a["curves"]:
            for kind in ("comp", "suff"):
                np.testing.assert_allclose(b["curves"][m][kind], a["curves"][m][kind],
                                           rtol=1e-5, atol=1e-6)
        assert json.dumps(a["bounds"]) and np.allclose(list(b["bounds"].values()),
                                                       list(a["bounds"].values()),
                                                       rtol=1e-5, atol=1e-6)
