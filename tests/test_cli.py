"""The `lig-jax` command line: explain, describe; errors are one line on stderr, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lig_jax.cli import app

runner = CliRunner()


def test_explain_writes_json_file(tiny_bert, tmp_path) -> None:
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["explain", "The cat sat.", "--model", str(tiny_bert), "--steps",
                              "4", "--layers", "1", "--target-tokens", "1,2", "--target-head",
                              "0", "--baseline-att", "zero", "--baseline-mlp", "att_itb_a0",
                              "--baseline-layer", "itb_zero_ratio", "--no-residual", "--rule",
                              "midpoint", "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.endswith("}\n")
    r = json.loads(text)
    assert r["config"] == {
        "num_steps": 4, "granularity": ["att", "mlp", "layer"], "baseline_att": "zero",
        "baseline_mlp": "att_itb_a0", "baseline_layer": "itb_zero_ratio", "layers": [1],
        "target_tokens": [1, 2], "target_head": 0, "include_residual_connection": False,
        "rule": "midpoint", "method": "fast", "dtype": "float32", "reference_quirks": False,
    }
    assert r["quadrature"]["z2z"]["rule"] == "midpoint"
    assert set(r["layers"]["1"]["targets"]) == {"1", "2"}


def test_explain_prints_json_to_stdout(tiny_bert) -> None:
    res = runner.invoke(app, ["explain", "Hi there.", "--model", str(tiny_bert), "--steps", "2",
                              "--granularity", "layer", "--layers", "0", "-q"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["tokens"] == ["[CLS]", "hi", "there", ".", "[SEP]"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--baseline-att", "bogus"], "Unknown baseline_att 'bogus'. Allowed:"),
        (["--granularity", "att,heads"], "Unknown granularity 'heads'"),
        (["--layers", "7"], "layers index 7 is out of range. Allowed: 0..1"),
        (["--layers", "a,b"], "--layers takes comma-separated integers"),
        (["--target-tokens", "50"], "target_tokens index 50 is out of range"),
        (["--target-head", "9"], "target_head index 9 is out of range. Allowed: 0..3"),
        (["--steps", "1"], "num_steps must be >= 2"),
        (["--rule", "simpson"], "Unknown quadrature rule 'simpson'"),
    ],
)
def test_explain_bad_input_one_line(tiny_bert, args: list[str], needle: str) -> None:
    res = runner.invoke(app, ["explain", "The cat sat.", "--model", str(tiny_bert), "-q", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines


def test_explain_unknown_model_and_empty_text(tiny_bert) -> None:
    res = runner.invoke(app, ["explain", "x", "--model", "no-such-org/no-such-model", "-q"])
    assert res.exit_code == 2 and "unknown model 'no-such-org/no-such-model'" in res.stderr
    res = runner.invoke(app, ["explain", " ", "--model", str(tiny_bert), "-q"])
    assert res.exit_code == 2 and "text is empty" in res.stderr


def test_describe(tiny_bert) -> None:
    res = runner.invoke(app, ["describe", str(tiny_bert)])
    assert res.exit_code == 0
    d = json.loads(res.stdout)
    assert d["layout"] == "post_ln_encoder" and d["num_layers"] == 2


def test_console_script_help() -> None:
    res = subprocess.run([sys.executable, "-m", "lig_jax.cli", "explain", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for flag in ("--model", "--steps", "--granularity", "--baseline-att", "--baseline-mlp",
                 "--baseline-layer", "--layers", "--target-tokens", "--target-head",
                 "--no-residual", "--rule", "--output"):
        assert flag in res.stdout


def test_explain_batch_writes_and_resumes(tiny_bert, tmp_path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("The cat sat.\n\nA dog barked loudly.\nHi.\n")
    out = tmp_path / "out.jsonl"
    args = ["explain-batch", str(src), "-o", str(out), "--model", str(tiny_bert), "--steps", "2",
            "--layers", "0", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["index"] for r in records) == [0, 2, 3]
    full = out.read_text()
    # a crash mid-write: drop the last record and leave a torn line behind
    lines = full.splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:20])
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    again = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["index"] for r in again) == [0, 2, 3]
    by_index = {r["index"]: r["result"]["layers"] for r in records}
    for r in again:
        assert r["result"]["layers"]["0"]["z2z"]["matrix"] == by_index[r["index"]]["0"]["z2z"][
            "matrix"]
