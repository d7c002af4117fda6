"""Files: the cache folder, content digests, and output destinations checked before work.

Every command that writes (a result, a run folder, a CSV, a page, a figure) passes its
destination through `output_file` or `output_folder` before it computes anything: missing
parent folders are created, and a destination that cannot be written is refused with one
`LIGError` line naming the path and the reason. `write_text` replaces a file atomically,
so an interrupted write never leaves half a result.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import LIGError


def cache_dir() -> Path:
    """$LIG_JAX_CACHE, else $XDG_CACHE_HOME/lig_jax (~/.cache/lig_jax)."""
    root = os.environ.get("LIG_JAX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "lig_jax")
    return Path(root)


def enable_compilation_cache() -> None:
    """Persist compiled XLA programs under `cache_dir()/xla`, so a second command-line run
    does not compile again (the CLIs call this; a library user opts in)."""
    import jax

    try:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "xla"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except Exception:  # an older jax without these options: just compile
        pass


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (read in 4 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def read_result_bytes(path: Path | str) -> bytes:
    """The bytes of a result file; one `LIGError` line if it is missing or unreadable."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise LIGError(f"result file not found: {path}") from None
    except OSError as e:
        raise LIGError(f"cannot read {path}: {e.strerror or e}") from None


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__


def _make_folder(folder: Path, dest: Path) -> None:
    for p in (folder, *folder.parents):
        if p.exists() and not p.is_dir():
            raise LIGError(f"cannot write {dest}: {p} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LIGError(f"cannot write {dest}: cannot create the folder {folder} "
                       f"({_reason(e)})") from None


def _probe(folder: Path, dest: Path) -> None:
    """Create and remove a file in `folder` (permission bits alone do not say: root,
    capabilities, read-only mounts)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".lig-jax-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise LIGError(f"cannot write {dest}: {folder} is not writable ({_reason(e)})"
                       ) from None


def output_file(path: Path | str) -> Path:
    """A file destination, checked: its folder exists (created if missing) and takes new
    files, the path is not a folder, and an existing file can be replaced."""
    path = Path(path)
    if path.is_dir():
        raise LIGError(f"cannot write {path}: it is a folder; give a file name")
    folder = path.parent
    _make_folder(folder, path)
    _probe(folder, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise LIGError(f"cannot write {path}: the file is read-only")
    return path


def output_folder(path: Path | str) -> Path:
    """A folder destination (created with its parents if missing) that takes new files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise LIGError(f"cannot write {path}: it is a file, not a folder")
    _make_folder(path, path)
    _probe(path, path)
    return path


def _new_file_mode() -> int:
    """0o666 less the umask: the mode `open(path, "w")` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path | str, fill: Callable[[BinaryIO], None]) -> Path:
    """Write a checked destination atomically: `fill(fh)` writes a temporary file in the
    same folder (flushed to disk), which then replaces `path` (keeping an existing file's
    mode; a new file gets the umask's). An interrupted write leaves `path` as it was."""
    path = output_file(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else _new_file_mode()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fill(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        raise LIGError(f"cannot write {path}: {_reason(e)}") from None
    return path


def write_text(path: Path | str, text: str) -> Path:
    """`write_atomic` of `text` in UTF-8."""
    return write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))
