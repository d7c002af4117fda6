"""What both command-line apps (`lig-jax …`, `lig-jax experiment …`) share: the one-line
error exit, destinations checked before any work, progress lines, the interrupt message
and help texts reflowed for the terminal."""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer

from .config import cli_fields, flag_of
from .errors import LIGError
from .files import output_file, output_folder


def flag_names(message: str) -> str:
    """`message` with the options named as flags (`--baseline-att`, not `baseline_att`).

    Keywords with an underscore are replaced wherever they stand as a word; plain words
    only where they name the option ("Unknown dtype 'x'", "layers index 7 …",
    "granularity is empty")."""
    for f in cli_fields():
        word, flag = f.name, flag_of(f.name)
        if word == "model":  # also a positional argument (describe MODEL): left as it is
            continue
        if "_" in word:
            message = re.sub(rf"(?<![\w./-]){word}(?![\w./-])", flag, message)
        else:
            message = re.sub(rf"^{word}(?= index| must| is empty)", flag, message)
            message = re.sub(rf"(?<=Unknown ){word}(?= ')", flag, message)
    return message


def fail(message: str) -> NoReturn:
    """`error: message` on stderr (options named as flags), exit status 2."""
    typer.echo(f"error: {flag_names(message)}", err=True)
    raise typer.Exit(2)


def destination(path: Path | None, *, folder: bool = False) -> Path | None:
    """A file (or, `folder`, a folder) destination checked before any work: missing
    folders are created; one-line exit 2 if it cannot be written."""
    if path is None:
        return None
    return output_folder(path) if folder else output_file(path)


def interrupted(what: str) -> None:
    """Ctrl-C: say what is on disk and how to go on; exit status 130."""
    typer.echo(f"interrupted: {what}", err=True)
    raise typer.Exit(130)


@contextlib.contextmanager
def ctrl_c_between_records() -> Iterator[Callable[[], None]]:
    """Ctrl-C remembered as well as raised, for loops that write one record at a time.

    A KeyboardInterrupt that lands inside a callback Python ignores (JAX's gc hook, a
    weakref finaliser) would otherwise print `Exception ignored in …` with a traceback and
    let the run go on. Inside this block such an interrupt prints nothing and is kept:
    the yielded `check()` raises it, and the loop calls it after each record. Nothing
    changes where the caller installed its own SIGINT handler (an embedding program)."""
    interrupts: list[bool] = []

    def on_sigint(signum: int, frame: object) -> None:
        interrupts.append(True)
        raise KeyboardInterrupt

    def check() -> None:
        if interrupts:
            raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield lambda: None
        return
    previous_hook = sys.unraisablehook

    def unraisable(info: object) -> None:
        if not (interrupts and getattr(info, "exc_type", None) is KeyboardInterrupt):
            previous_hook(info)

    signal.signal(signal.SIGINT, on_sigint)
    sys.unraisablehook = unraisable
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook


def progress(quiet: bool) -> tuple[Callable[[str], None], float]:
    """(say, start): `say(msg)` prints `[  12.3s] msg` on stderr unless quiet."""
    start = time.perf_counter()

    def say(msg: str) -> None:
        if not quiet:
            typer.echo(f"[{time.perf_counter() - start:6.1f}s] {msg}", err=True)

    return say, start


QUANTITY_NAMES = {"z2z": "z→z", "z2u": "z→u", "u2z": "u→z"}


def _where(at: dict[str, int]) -> str:
    parts = []
    if "index" in at:
        parts.append(f"line {at['index'] + 1} (index {at['index']})")
    parts += [f"{k} {at[k]}" for k in ("layer", "target", "head") if k in at]
    return ", ".join(parts)


def completeness_lines(summary: dict[str, Any]) -> tuple[list[str], bool]:
    """One line per quantity of a `results.completeness_summary` (the IG convergence
    delta: Σ attributions against the scalar's change), and whether any counted column
    is above the tolerance or any column unconverged."""
    tol, floor = summary["tolerance"], summary["relevant_change"]
    lines, bad = [], False
    for q, name in QUANTITY_NAMES.items():
        c = summary.get(q)
        if c is None:
            continue
        worst = c["worst_relative_error"]
        text = (f"completeness {name}: worst relative error {worst:.3g} ({_where(c['worst_at'])})"
                if worst is not None else f"completeness {name}: no column to judge")
        text += f"; {c['above_tolerance']} of {c['counted']} columns above --auto-tol {tol:g}"
        if c["counted"] < c["columns"]:
            text += (f" ({c['columns'] - c['counted']} more with |Δf| < {floor:g} of the "
                     "layer's largest, not counted)")
        if c["unconverged"]:
            text += f"; {c['unconverged']} not converged at --max-steps"
        lines.append(text)
        bad = bad or c["above_tolerance"] > 0 or bool(c["unconverged"])
    return lines, bad


def report_completeness(summary: dict[str, Any], quiet: bool, strict: bool) -> None:
    """Print the completeness lines on stderr (under -q only when something is off);
    `strict`: exit status 3 when a counted column is above the tolerance."""
    lines, bad = completeness_lines(summary)
    if bad or not quiet:
        for line in lines:
            typer.echo(line, err=True)
    above = sum(summary[q]["above_tolerance"] for q in QUANTITY_NAMES if q in summary)
    if strict and above:
        typer.echo(f"strict: {above} column{'s' * (above != 1)} above --auto-tol "
                   f"{summary['tolerance']:g} (the result is written); exit 3", err=True)
        raise typer.Exit(3)


def finish(app: typer.Typer) -> None:
    """Make every command of `app` a user-facing one: a `LIGError` it raises becomes one
    line, `error: …`, and exit status 2 (`fail`); its help comes from its docstring with
    each paragraph on one logical line, so the terminal wraps it."""
    for info in app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc:
            paragraphs = inspect.cleandoc(doc).split("\n\n")
            info.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
        if info.callback is not None:
            info.callback = _user_errors(info.callback)


def _user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LIGError as e:
            fail(str(e))
    return command
