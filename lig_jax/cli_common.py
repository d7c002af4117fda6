"""What both command-line apps (`lig-jax …`, `lig-jax experiment …`) share: the one-line
error exit, destinations checked before any work, progress lines, the interrupt message
and help texts reflowed for the terminal."""

from __future__ import annotations

import contextlib
import inspect
import signal
import sys
import time
from collections.abc import Callable, Iterator
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


def reflow_help(app: typer.Typer) -> None:
    """Commands' help from their docstrings with each paragraph on one logical line, so
    the terminal wraps it (rather than keeping the source's line breaks)."""
    for info in app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc:
            paragraphs = inspect.cleandoc(doc).split("\n\n")
            info.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
