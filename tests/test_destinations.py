"""Every command that writes checks its destination before any work: one `error: cannot
write …` line and exit 2 when it cannot write there; missing parent folders are created
the same way everywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lig_jax.cli import app
from lig_jax.files import output_file, output_folder, write_text

runner = CliRunner()


def writing_commands(dest: str) -> list[list[str]]:
    """Each writing command with `dest` as its destination (inputs need not exist: the
    destination is checked first)."""
    return [
        ["explain", "The cat sat.", "-o", f"{dest}/r.json"],
        ["explain", "The cat sat.", "-o", f"{dest}/r.npz"],
        ["explain-batch", "in.txt", "-o", f"{dest}/r.jsonl"],
        ["describe", "-o", f"{dest}/d.json"],
        ["compare", "a.json", "b.json", "-o", f"{dest}/c.json"],
        ["view", "a.json", "-o", f"{dest}/v.html"],
        ["plot", "a.json", "-o", f"{dest}/p.png"],
        ["experiment", "run", "--data", "demo", "--out", f"{dest}/run"],
        ["experiment", "compare", "run", "--csv", f"{dest}/flow.csv"],
        ["experiment", "table", "flow.csv", "--csv", f"{dest}/t.csv"],
        ["experiment", "align", "run", "--csv", f"{dest}/a.csv"],
        ["experiment", "align", "run", "-o", f"{dest}/a.json"],
    ]


@pytest.mark.parametrize("args", writing_commands("blocker"), ids=lambda a: " ".join(a[:2]))
def test_unwritable_destination_is_one_line_exit_2(args, tmp_path, monkeypatch) -> None:
    """A destination below a regular file cannot be created, whoever runs the test."""
    monkeypatch.chdir(tmp_path)
    Path("blocker").write_text("a file, not a folder")
    Path("in.txt").write_text("The cat sat.\n")
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot write blocker/") and "not a folder" in lines[0]


def test_read_only_folder_without_root_powers(tmp_path) -> None:
    """chmod 555 as a user; as root only with the DAC capabilities dropped (setpriv)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: a read-only folder is writable")
        drop = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    for args in (["describe", "-o", "ro/x.json"],
                 ["experiment", "run", "--data", "demo", "--out", "ro/run"]):
        res = subprocess.run([*prefix, sys.executable, "-m", "lig_jax.cli", *args],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip().startswith("error: cannot write ro/"), res.stderr
        assert "Permission denied" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not any(ro.iterdir())  # no probe or partial file left behind


def test_missing_parent_folders_are_created(tiny_bert, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["describe", str(tiny_bert), "-o", "new/a/d.json"])
    assert res.exit_code == 0, res.output
    assert json.loads(Path("new/a/d.json").read_text())["layout"] == "post_ln_encoder"
    res = runner.invoke(app, ["explain", "The cat sat.", "--model", str(tiny_bert), "--steps",
                              "2", "--layers", "0", "-q", "-o", "r/one.json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["compare", "r/one.json", "r/one.json", "-o", "deep/er/c.json"])
    assert res.exit_code == 0, res.output
    assert Path("deep/er/c.json").is_file()
    res = runner.invoke(app, ["view", "r/one.json", "-o", "pages/v.html"])
    assert res.exit_code == 0 and Path("pages/v.html").is_file(), res.output


def test_files_helpers(tmp_path) -> None:
    from lig_jax.errors import LIGError

    folder = tmp_path / "x"
    assert output_folder(folder) == folder and folder.is_dir()
    with pytest.raises(LIGError, match="it is a folder"):
        output_file(folder)
    (tmp_path / "f").write_text("")
    with pytest.raises(LIGError, match="it is a file, not a folder"):
        output_folder(tmp_path / "f")
    target = tmp_path / "keep.txt"
    target.write_text("old")
    target.chmod(0o640)
    write_text(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "keep.txt", "x"]  # no leftovers
