"""Writing user files atomically: the file at ``path`` is either the old one or the complete new
one, never a truncated mix, whatever fails or is killed midway.

The content goes to a temporary file in the same folder, is flushed and ``fsync``-ed, then
renamed over ``path`` (``os.replace``: atomic on POSIX and Windows), and the folder is
``fsync``-ed so that the rename survives a crash. A failure removes the temporary file and
leaves the previous ``path`` untouched. Errors name the path and the reason in one line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write", "save_figure"]


def _fail(err: OSError, path: Path, what: str) -> OSError:
    kind = type(err) if type(err) is not OSError else OSError
    reason = err.strerror or str(err)
    return kind(err.errno, f"cannot write {path}: {what}{reason}") if err.errno else \
        kind(f"cannot write {path}: {what}{reason}")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform / file system lets a folder be synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = True) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, then move it onto ``path``.

    The parent folder is created if needed. Raises ``OSError`` (its subclass for the cause:
    ``PermissionError``, ``IsADirectoryError``, ...) whose message names ``path``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, f"cannot write {path}: it is a folder; give a file name")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _fail(err, path, f"cannot create its folder {folder}: ") from None
    tmp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        raise _fail(err, path, "") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not str(err).startswith("cannot write"):
            raise _fail(err, path, "") from err
        raise
    _fsync_dir(folder)
    return path


def save_figure(fig, out: str | os.PathLike, **kwargs) -> Path:
    """``fig.savefig`` to ``out`` atomically (the format from the file's suffix, png if none)."""
    out = Path(out)
    fmt = out.suffix[1:].lower() or "png"
    return atomic_write(out, lambda fh: fig.savefig(fh, format=fmt, **kwargs))
