"""One declaration of every explain option (`config.LIGConfig`): the API's keywords, the
CLI's flags and the experiment's defaults agree with it, and no default is written twice."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest
import typer.main

from lig_jax import api
from lig_jax.cli import app
from lig_jax.config import LIGConfig, cli_fields, cli_value, flag_of, from_cli
from lig_jax.errors import LIGError
from lig_jax.experiment.cli import app as experiment_app
from lig_jax.experiment.compute import Settings

PACKAGE = Path(api.__file__).resolve().parent


def _command(typer_app, name: str):
    return typer.main.get_command(typer_app).commands[name]


@pytest.mark.parametrize("fn", [api.explain])
def test_api_keywords_are_the_config_fields_with_its_defaults(fn) -> None:
    params = inspect.signature(fn).parameters
    # the input (text, or input_ids) and the API-only arguments are not options
    inputs = ("text", "input_ids", "config", "progress")
    keywords = {n: p for n, p in params.items() if n not in inputs}
    assert list(keywords) == [f.name for f in fields(LIGConfig)]
    for f in fields(LIGConfig):
        assert keywords[f.name].default == f.default, f.name


@pytest.mark.parametrize("command", ["explain", "explain-batch"])
def test_cli_flags_are_the_config_fields_with_its_defaults(command: str) -> None:
    options = {p.name: p for p in _command(app, command).params}
    for f in cli_fields():
        opt = options[f.name]
        assert opt.opts == [flag_of(f.name)], f.name
        default = cli_value(f.name, f.default)
        assert opt.default == (str(default) if f.metadata["cli_type"] is str
                               and default is not None else default), f.name
        assert from_cli(f.name, opt.default) == f.default, f.name
        assert opt.help == f.metadata["help"]
    assert "bucket" not in options  # the API-only option has no flag


def test_the_experiment_and_plan_take_the_step_default_from_the_config() -> None:
    run = {p.name: p for p in _command(experiment_app, "run").params}
    plan = {p.name: p for p in _command(app, "plan").params}
    assert run["steps"].default == Settings.steps == LIGConfig.num_steps
    assert plan["steps"].default == LIGConfig.num_steps
    assert run["memory_budget"].default == f"{Settings.chunk_mb}MB"


def test_cli_values_are_parsed_in_one_place() -> None:
    assert from_cli("num_steps", "auto") == "auto" and from_cli("num_steps", "8") == 8
    assert from_cli("layers", "0, 3") == [0, 3] and from_cli("layers", "all") is None
    assert from_cli("include_residual_connection", True) is False
    with pytest.raises(LIGError, match="--steps takes an integer or 'auto'"):
        from_cli("num_steps", "many")
    with pytest.raises(LIGError, match="--target-tokens takes comma-separated integers"):
        from_cli("target_tokens", "1,x")


@pytest.mark.parametrize("name, pattern", [
    ("num_steps", r"steps\w*\s*(:[^=\n]*)?=\s*(option\()?['\"]?32\b|steps\W+32\b"),
    ("auto_tol", r"tol\w*\s*(:[^=\n]*)?=\s*(option\()?0\.01\b"),
    ("max_steps", r"max_steps\w*\s*(:[^=\n]*)?=\s*(option\()?512\b"),
])
def test_each_default_is_written_once(name: str, pattern: str) -> None:
    """The literal default of the step options stands in their declaration only."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line) and not line.lstrip().startswith("#"):
                found.append(f"{path.relative_to(PACKAGE)}:{k}: {line.strip()}")
    declared = [x for x in found if x.startswith("config.py:") and f"{name}:" in x]
    assert len(declared) == 1 and found == declared, found
