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
        "target_tokens": [1, 2], "target_head": 0, "measures": [],
        "include_residual_connection": False,
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
        (["--baseline-att", "bogus"], "Unknown --baseline-att 'bogus'. Allowed:"),
        (["--granularity", "att,heads"], "Unknown --granularity 'heads'"),
        (["--layers", "7"], "--layers index 7 is out of range. Allowed: 0..1"),
        (["--layers", "a,b"], "--layers takes comma-separated integers"),
        (["--target-tokens", "50"], "--target-tokens index 50 is out of range"),
        (["--target-head", "9"], "--target-head index 9 is out of range. Allowed: 0..3"),
        (["--steps", "1"], "--steps must be >= 2"),
        (["--rule", "simpson"], "Unknown --rule 'simpson'"),
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


def test_explain_batch_writes_in_file_order_and_resumes(tiny_bert, tmp_path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("The cat sat.\n\nA dog barked loudly.\nHi.\n")
    out = tmp_path / "out.jsonl"
    args = ["explain-batch", str(src), "-o", str(out), "--model", str(tiny_bert), "--steps", "2",
            "--layers", "0", "-q", "--skip-bad-lines"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 2, 3]  # file order, the empty line left out
    full = out.read_text()
    # a crash mid-write: drop the last record and leave a torn line behind
    lines = full.splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:20])
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    again = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["index"] for r in again] == [0, 2, 3]
    by_index = {r["index"]: r["result"]["layers"] for r in records}
    for r in again:
        assert r["result"]["layers"]["0"]["z2z"]["matrix"] == by_index[r["index"]]["0"]["z2z"][
            "matrix"]


@pytest.mark.parametrize("change,needle", [
    (["--steps", "3"], "--steps 2 there, 3 now"),
    (["--layers", "1"], "--layers 0 there, 1 now"),
    (["--model", "bert-base-uncased"], "bert-base-uncased now"),
    (["--baseline-layer", "zero"], "--baseline-layer self_input_token there, zero now"),
])
def test_explain_batch_refuses_to_resume_with_other_settings(batch_run, change, needle):
    """A rerun into the same results with settings that change the numbers: one line naming
    the flag, exit 2, the file untouched."""
    src, out, args = batch_run
    before = out.read_bytes()
    res = runner.invoke(app, [*args, *change])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("error: ") and "other settings" in res.stderr
    assert needle in res.stderr and "--restart" in res.stderr
    assert out.read_bytes() == before


@pytest.fixture
def batch_run(tiny_bert, tmp_path):
    """Two sentences explained into out.jsonl: (input file, results, the arguments)."""
    src = tmp_path / "in.txt"
    src.write_text("The cat sat.\nA dog barked.\n")
    out = tmp_path / "out.jsonl"
    args = ["explain-batch", str(src), "-o", str(out), "--model", str(tiny_bert), "--steps",
            "2", "--layers", "0", "--granularity", "layer", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return src, out, args


def test_explain_batch_resume_checks_the_lines(batch_run) -> None:
    """An edited line that has a result is refused (named by line and index); appended lines
    are computed alone; --restart starts over; a results file without its settings file
    (an older lig-jax) is refused rather than resumed blindly."""
    src, out, args = batch_run
    first = out.read_text().splitlines()
    src.write_text("The cat sat.\nA dog barked twice.\n")
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert "line 2 (index 1) differs" in res.stderr and "--restart" in res.stderr
    src.write_text("The cat sat.\nA dog barked.\nHi.\n")
    res = runner.invoke(app, [*args[:-1]])
    assert res.exit_code == 0, res.output
    assert "2 already in" in res.stderr and "1 to do" in res.stderr
    lines = out.read_text().splitlines()
    assert lines[:2] == first and json.loads(lines[2])["index"] == 2
    res = runner.invoke(app, [*args, "--restart", "--steps", "3"])
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert all(r["result"]["config"]["num_steps"] == 3 for r in records)
    src.write_text("The cat sat.\n")
    res = runner.invoke(app, [*args, "--steps", "3"])
    assert res.exit_code == 2 and "holds results for indices 1, 2" in res.stderr, res.output
    assert "has 1 line now" in res.stderr
    (out.parent / (out.name + ".settings.json")).unlink()
    res = runner.invoke(app, [*args, "--steps", "3"])
    assert res.exit_code == 2 and "not the settings they were computed with" in res.stderr


def test_explain_batch_names_a_bad_line_before_computing(tiny_bert, tmp_path) -> None:
    """Empty and over-long lines: `line N: …` and exit 2 before any sentence is computed
    (no output file); --skip-bad-lines computes the rest and counts what it left out."""
    src = tmp_path / "in.txt"
    src.write_text("The cat sat.\n" + "word " * 600 + "\n\nHi.\n")
    out = tmp_path / "out.jsonl"
    base = ["explain-batch", str(src), "-o", str(out), "--model", str(tiny_bert), "--steps",
            "2", "--layers", "0"]
    res = runner.invoke(app, [*base, "-q"])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith("error: line 2 (index 1): text is ")
    assert "tokens long" in res.stderr
    assert "nothing was computed" in res.stderr and not out.exists()
    res = runner.invoke(app, [*base, "--skip-bad-lines"])
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["index"] for x in out.read_text().splitlines()] == [0, 3]
    assert "left out 2 bad lines (2, 3)" in res.stderr


def test_explain_batch_takes_explain_options(tiny_bert, tmp_path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("The cat sat.\n")
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["explain-batch", str(src), "-o", str(out), "--model",
                              str(tiny_bert), "--steps", "2", "--layers", "1", "-q",
                              "--granularity", "att", "--baseline-att", "zero",
                              "--target-tokens", "1", "--target-head", "0"])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())["result"]
    assert result["config"]["baseline_att"] == "zero" and result["config"]["layers"] == [1]
    assert list(result["layers"]["1"]["targets"]) == ["1"]
    assert list(result["layers"]["1"]["targets"]["1"]["z2u"]["heads"]) == ["0"]


def test_view_and_plot_read_an_explain_batch_file(tiny_bert, tmp_path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("The cat sat.\nA dog barked.\n")
    out = tmp_path / "out.jsonl"
    res = runner.invoke(app, ["explain-batch", str(src), "-o", str(out), "--model",
                              str(tiny_bert), "--steps", "2", "--layers", "0", "-q"])
    assert res.exit_code == 0, res.output
    page = tmp_path / "v" / "page.html"
    res = runner.invoke(app, ["view", str(out), "--index", "1", "-o", str(page)])
    assert res.exit_code == 0, res.output
    assert "barked" in page.read_text() or "bark" in page.read_text()
    res = runner.invoke(app, ["plot", str(out), "--index", "0", "-o", str(tmp_path / "p.png"),
                              "--scale", "layer"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    for args, needle in ((["view", str(out), "--index", "5"], "has no result with index 5"),
                         (["view", str(out)], "choose a record with --index N"),
                         (["plot", str(out), "--index", "0", "--scale", "x"],
                          "unknown colour scale 'x'")):
        res = runner.invoke(app, [*args, "-o", str(tmp_path / "w.png")])
        assert res.exit_code == 2 and res.stderr.startswith("error: ") and needle in res.stderr


def test_ctrl_c_inside_an_ignored_callback_prints_nothing_and_still_stops() -> None:
    """CI once saw `Exception ignored in: <function _xla_gc_callback …>` and a traceback
    before the interrupt line: Ctrl-C had landed in JAX's gc hook. Reproduced exactly by
    a SIGINT raised inside a __del__, in a fresh process with the default SIGINT handler."""
    import signal

    script = """
import signal, sys
from lig_jax.cli_common import ctrl_c_between_records

class Finalised:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)

try:
    with ctrl_c_between_records() as check:
        Finalised()  # dropped at once: the interrupt lands in __del__, which Python ignores
        print("went on", flush=True)
        check()
        print("not stopped", flush=True)
except KeyboardInterrupt:
    print("stopped", flush=True)
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
assert sys.unraisablehook is sys.__unraisablehook__
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["went", "on", "stopped"] and res.stderr == "", res


def test_ctrl_c_says_what_is_on_disk_and_the_rerun_resumes(tiny_bert, tmp_path) -> None:
    import os
    import signal
    import time

    src = tmp_path / "in.txt"
    # each line in a new length bucket: after the first record the run is compiling the
    # next line's programs for seconds, and is interrupted there
    n = 3
    src.write_text("".join("word " * (3 + 8 * i) + "end.\n" for i in range(n)))
    out = tmp_path / "out.jsonl"
    args = [sys.executable, "-m", "lig_jax.cli", "explain-batch", str(src), "-o", str(out),
            "--model", str(tiny_bert), "--steps", "2", "--layers", "0", "--granularity",
            "layer", "-q"]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    # a pytest-xdist worker ignores SIGINT, and a child inherits that: restore the default
    # so that the child's Python turns SIGINT into KeyboardInterrupt, as in a terminal
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and (
            not out.exists() or not out.read_text().count("\n")):
        time.sleep(0.2)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().startswith("interrupted: ") and "run the same command again" in err
    assert len(err.strip().splitlines()) == 1, err
    kept = [json.loads(x)["index"] for x in out.read_text().splitlines()]
    assert 0 < len(kept) < n and kept == list(range(len(kept)))
    res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert [json.loads(x)["index"] for x in out.read_text().splitlines()] == list(range(n))


def test_completeness_is_on_the_screen_and_strict_exits_3(tiny_bert, tmp_path) -> None:
    """After an explain, one stderr line per quantity with the worst relative completeness
    error; columns --steps auto leaves unconverged are counted there (even under -q);
    --strict exits 3 once the result is written; the JSON carries the same summary."""
    out = tmp_path / "r.json"
    base = ["explain", "The cat sat.", "--model", str(tiny_bert), "--layers", "0",
            "--target-tokens", "1,2", "-o", str(out)]
    res = runner.invoke(app, [*base, "--steps", "8"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("completeness ")]
    assert [ln.split(":")[0] for ln in lines] == ["completeness z→z", "completeness z→u",
                                                  "completeness u→z"]
    summary = json.loads(out.read_text())["completeness"]
    assert f"{summary['z2z']['worst_relative_error']:.3g}" in lines[0]
    assert summary["z2u"]["columns"] == 2 * 4 and summary["u2z"]["columns"] == 2
    strict = [*base, "--steps", "auto", "--max-steps", "16", "--auto-tol", "1e-9", "-q",
              "--strict"]
    res = runner.invoke(app, strict)
    assert res.exit_code == 3, res.output
    assert "not converged at --max-steps" in res.stderr and "strict: " in res.stderr
    summary = json.loads(out.read_text())["completeness"]
    assert summary["z2z"]["unconverged"] > 0 and summary["tolerance"] == 1e-9
    res = runner.invoke(app, [*base, "--steps", "64", "-q", "--strict", "--auto-tol", "0.5"])
    assert res.exit_code == 0, res.output


def test_version_models_and_switches_in_help() -> None:
    """--version; `models` lists every family's model types and every bundled alias; help
    shows switches without a type."""
    from lig_jax.loading import BUNDLED
    from lig_jax.models import FAMILIES
    from lig_jax.version import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"lig-jax {__version__}"
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    for f in FAMILIES:
        assert ", ".join(f.model_types) in res.stdout
    for b in BUNDLED:
        assert all(name in res.stdout for name in b.names)
    res = runner.invoke(app, ["explain", "--help"])
    assert res.exit_code == 0 and "--no-residual" in res.stdout
    assert "<bool>" not in res.stdout and "--steps <str>" in res.stdout


def test_unknown_model_names_the_choices(tmp_path) -> None:
    res = runner.invoke(app, ["explain", "x", "--model", str(tmp_path / "nope"), "-q"])
    assert res.exit_code == 2
    assert ".gguf file" in res.stderr and "smollm2-135m" in res.stderr
    assert "lig-jax models" in res.stderr


def test_restart_keeps_the_old_results_until_a_new_one_is_ready(batch_run) -> None:
    """--restart that fails before computing anything (a bad line) leaves the old results
    and their settings as they were."""
    src, out, args = batch_run
    before = out.read_bytes()
    side = out.parent / (out.name + ".settings.json")
    settings = side.read_bytes()
    src.write_text("The cat sat.\n\n")
    res = runner.invoke(app, [*args, "--restart"])
    assert res.exit_code == 2 and "line 2 (index 1)" in res.stderr
    assert out.read_bytes() == before and side.read_bytes() == settings


def test_flag_names_leave_paths_alone() -> None:
    from lig_jax.cli_common import flag_names

    assert flag_names("cannot read /x/max_steps.txt") == "cannot read /x/max_steps.txt"
    assert flag_names("cannot read max_steps.txt") == "cannot read max_steps.txt"
    assert flag_names("max_steps must be an integer >= 16") == "--max-steps must be an " \
        "integer >= 16"
