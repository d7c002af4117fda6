"""The README's command blocks run as written, in order, in a fresh copy of the repository.

Marked `readme` (left out of the default run: it creates a virtualenv and installs lig-jax
into it, as the README's first command does, which takes minutes). CI runs it after the
suite: `python -m pytest -m readme tests/test_readme.py`.

Every ```bash block is run line by line in one shell (`set -e`), the ```python block with
the fresh virtualenv's python, in README order. Two kinds of line are changed, each listed
here (the test fails when a listed line is no longer in the README, so the lists cannot
go stale): SKIP (the test suite itself, which CI runs as its own step) and SMALL (slow
lines, run with smaller settings).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = {"bash scripts/test.sh": "the test suite: CI's own step"}
SMALL = {
    "lig-jax experiment run --data demo --out runs/demo":
        "lig-jax experiment run --data demo --out runs/demo --end 5 --steps 4",
    "lig-jax explain \"The capital of France is Paris.\" --model smollm2-135m --layers 0,15,29 "
    "-o out.json":
        "lig-jax explain \"The capital of France is Paris.\" --model smollm2-135m --layers 0,29 "
        "--steps 4 -o out.json",
    "lig-jax explain \"The capital of France is Paris.\" --model gemma3-270m --layers 0,17 "
    "-o out.json":
        "lig-jax explain \"The capital of France is Paris.\" --model gemma3-270m --layers 0,17 "
        "--steps 4 -o out.json",
}
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]


def command(line: str) -> str:
    """A README line without its trailing `# comment`."""
    return re.sub(r"\s+#\s.*$", "", line).rstrip()


def script(text: str) -> str:
    """The README's blocks as one bash script (SKIP left out, SMALL substituted)."""
    out = ["set -euo pipefail", "set -x"]
    for kind, body in blocks(text):
        if kind == "python":
            out += [".venv/bin/python - <<'PY'", body.rstrip(), "PY"]
            continue
        for line in body.splitlines():
            cmd = command(line)
            if not cmd or cmd.startswith("#") or cmd in SKIP:
                continue
            out.append(SMALL.get(cmd, line))
    return "\n".join(out) + "\n"


def test_the_lists_name_lines_that_are_in_the_readme() -> None:
    lines = {command(ln) for kind, body in blocks(README.read_text(encoding="utf-8"))
             for ln in body.splitlines()}
    for listed in (*SKIP, *SMALL):
        assert listed in lines, f"README no longer has: {listed}"
    first = [command(ln) for ln in blocks(README.read_text(encoding="utf-8"))[0][1].splitlines()]
    assert first[0].startswith("bash scripts/demo.sh"), "the first block installs"


def _copy_of_the_repository(dest: Path) -> None:
    """The files a clone has (tracked, and new files git does not ignore)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.mark.readme
def test_readme_commands_run_in_a_fresh_copy(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy")
    repo = tmp_path / "repo"
    _copy_of_the_repository(repo)
    (repo / "readme.sh").write_text(script(README.read_text(encoding="utf-8")))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "LIG_VENV")}
    env["HF_HUB_OFFLINE"] = "1"
    res = subprocess.run(["bash", "readme.sh"], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=3000)
    assert res.returncode == 0, res.stderr[-6000:]
    # the install prints no setuptools warnings framed like errors
    assert "BuildBackendWarning" not in res.stderr and "SetuptoolsDeprecationWarning" not in \
        res.stderr, res.stderr[:6000]
    for name in ("out.json", "zero.json", "gl.json", "auto.json", "long.npz", "results.jsonl",
                 "diff.json", "r.html", "fig.png", "fig.pdf", "quiet.png", "s1.html",
                 "runs/demo/flow.csv", "flow.png", "s3.html"):
        assert (repo / name).is_file() and (repo / name).stat().st_size > 0, name
