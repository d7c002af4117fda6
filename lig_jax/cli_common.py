"""What both command-line apps (`lig-jax …`, `lig-jax experiment …`) share: the one-line
error exit, destinations checked before any work, progress lines, the interrupt message
and help texts reflowed for the terminal."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path

import typer

from .errors import LIGError
from .files import output_file, output_folder


def fail(message: str) -> None:
    """`error: message` on stderr, exit status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def destination(path: Path | None, *, folder: bool = False) -> Path | None:
    """A file (or, `folder`, a folder) destination checked before any work: missing
    folders are created; one-line exit 2 if it cannot be written."""
    if path is None:
        return None
    try:
        return output_folder(path) if folder else output_file(path)
    except LIGError as e:
        fail(str(e))
    return None


def interrupted(what: str) -> None:
    """Ctrl-C: say what is on disk and how to go on; exit status 130."""
    typer.echo(f"interrupted: {what}", err=True)
    raise typer.Exit(130)


def progress(quiet: bool) -> tuple[Callable[[str], None], float]:
    """(say, start): `say(msg)` prints `[  12.3s] msg` on stderr unless quiet."""
    start = time.perf_counter()

    def say(msg: str) -> None:
        if not quiet:
            typer.echo(f"[{time.perf_counter() - start:6.1f}s] {msg}", err=True)

    return say, start


def reflow_help(app: typer.Typer) -> None:
    """Commands' help from their docstrings with each paragraph on one logical line, so
    the terminal wraps it (rather than keeping the source's line breaks)."""
    for info in app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc:
            paragraphs = inspect.cleandoc(doc).split("\n\n")
            info.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
