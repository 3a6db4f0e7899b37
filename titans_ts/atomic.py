"""Writing user files atomically: the file at ``path`` is either the old one or the complete new
one, never a truncated mix, whatever fails or is killed midway.

The content goes to a temporary file in the same folder, is flushed and ``fsync``-ed, then
renamed over ``path`` (``os.replace``: atomic on POSIX and Windows), and the folder is
``fsync``-ed so that the rename survives a crash. A failure removes the temporary file and
leaves the previous ``path`` untouched. Errors name the path and the reason in one line; a full
disk reads ``no space left on device: <path>`` (also when the writer, e.g. ``torch.save``'s zip
writer, wraps the operating system's error in its own).

* Only regular files are replaced: a ``path`` that is a device (``/dev/full``), a FIFO or a
  socket is refused (renaming over it would swap the device node for a file).
* A symlink is written through: the temporary file goes next to the link's final target,
  which is replaced; the link stays a link (a dangling link gets its target created).
* A writer killed outright (SIGKILL, power loss) cannot remove its temporary file. Temporary
  files are named ``.<name>.<host>-<pid>-<random>.tmp``; the next write of the same file
  removes those of this host whose process no longer runs (files of live writers, and of other
  hosts sharing the folder, are left alone).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write", "save_figure", "write_target"]

#: what a path is when it is not a regular file (for the refusal's message)
_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _fail(err: OSError, path: Path, what: str) -> OSError:
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        reason = "no space left on device" if err.errno == errno.ENOSPC else "disk quota exceeded"
        return OSError(err.errno, f"{reason}: {path} (nothing was written; the previous file, if any, "
                                  f"is unchanged)")
    kind = type(err) if type(err) is not OSError else OSError
    reason = err.strerror or str(err)
    return kind(err.errno, f"cannot write {path}: {what}{reason}") if err.errno else \
        kind(f"cannot write {path}: {what}{reason}")


def _os_error(err: BaseException | None) -> OSError | None:
    """The operating system's error behind ``err``: itself, or one it was raised from or while
    handling (torch's zip writer turns a failed write into a RuntimeError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno:
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform / file system lets a folder be synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_target(path: str | os.PathLike) -> Path:
    """The file a write of ``path`` replaces: ``path`` itself, or the final target of a symlink.
    Raises ``OSError`` naming ``path`` when it is a folder or not a regular file."""
    path = Path(path)
    target = path
    if path.is_symlink():
        try:
            target = Path(os.path.realpath(path, strict=False))
            if target.is_symlink():  # realpath stops at a loop
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
        except OSError as err:
            raise OSError(err.errno, f"cannot write {path}: {err.strerror or err} (a loop of "
                                     f"symbolic links)") from None
    if target.is_dir():
        raise IsADirectoryError(21, f"cannot write {path}: it is a folder; give a file name")
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):  # (a new file; or its folder's problem, said below)
        return target
    except OSError as err:
        raise _fail(err, path, "") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        via = f" (the target of the symlink {path})" if target != path else ""
        shown = target if target != path else path
        raise OSError(errno.EINVAL, f"cannot write {shown}{via}: it is {kind}, not a regular file; "
                                    f"titans-ts replaces regular files only. Give the name of a file")
    return target


def _remove_stale(folder: Path, name: str) -> None:
    """Remove temporary files of ``name`` left by writers of this host that no longer run."""
    pattern = re.compile(rf"\.{re.escape(name)}\.([0-9a-f]{{8}})-(\d+)-[0-9a-f]+\.tmp")
    host = _host_tag()
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            found = pattern.fullmatch(entry.name)
            if not found or found.group(1) != host:
                continue
            pid = int(found.group(2))
            try:
                os.kill(pid, 0)
                continue  # a live writer
            except ProcessLookupError:
                pass
            except OSError:  # (another user's live process)
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def atomic_write(path: str | os.PathLike, write: Callable[[IO], object], binary: bool = True) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, then move it onto ``path``.

    The parent folder is created if needed. Raises ``OSError`` (its subclass for the cause:
    ``PermissionError``, ``IsADirectoryError``, ...) whose message names ``path``. Returns
    ``path`` (a symlink stays one: its target holds the new content)."""
    path = Path(path)
    target = write_target(path)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _fail(err, path, f"cannot create its folder {folder}: ") from None
    _remove_stale(folder, target.name)
    tmp = folder / f".{target.name}.{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as err:
        raise _fail(err, path, "") from None
    try:
        try:
            fh = os.fdopen(fd, "wb" if binary else "w")
        except BaseException:
            os.close(fd)
            raise
        with fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if str(err).startswith("cannot write") or isinstance(err, KeyboardInterrupt):
            raise
        # an operating-system error, or one a writer wrapped (torch's zip writer: a RuntimeError)
        cause = _os_error(err) if isinstance(err, (OSError, RuntimeError)) else None
        if cause is not None:
            raise _fail(cause, path, "") from err
        raise
    _fsync_dir(folder)
    return path


def save_figure(fig, out: str | os.PathLike, **kwargs) -> Path:
    """``fig.savefig`` to ``out`` atomically (the format from the file's suffix, png if none)."""
    out = Path(out)
    fmt = out.suffix[1:].lower() or "png"
    return atomic_write(out, lambda fh: fig.savefig(fh, format=fmt, **kwargs))
