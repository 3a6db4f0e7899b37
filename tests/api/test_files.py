"""Files the package writes and reads (issue 35): writes through a temporary file that never
replace what is not a regular file, write through symlinks, say "no space left on device" and
leave nothing behind; content digests of saved models and Lightning checkpoints (an edited
float is refused with a message naming the file); refusals of malicious or random checkpoints
without torch's "weights_only=False" advice; ``titans-ts data verify`` re-hashing every file."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from titans_ts import TitansForecaster, atomic
from titans_ts.atomic import atomic_write

TINY = dict(h=6, context_length=24, patch_len=8, stride=4, d_model=16, max_epochs=1,
            limit_train_batches=2, batch_size=16, memory=dict(heads=2, depth=1, expansion=1.0, chunk_size=4))


def _long(T=80):
    t = np.arange(T)
    return pd.concat([pd.DataFrame({"unique_id": f"s{k}", "ds": pd.date_range("2024-01-01", periods=T, freq="h"),
                                    "y": 10 + k + np.sin(2 * np.pi * t / 12)}) for k in range(2)],
                     ignore_index=True)


def _write(data: bytes):
    return lambda fh: fh.write(data)


# ----------------------------------------------------------------------------- atomic writes


def test_a_fifo_or_device_is_never_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match=rf"cannot write {fifo}: it is a FIFO \(named pipe\), not a regular file"):
        atomic_write(fifo, _write(b"x"))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == ["pipe"]
    if os.geteuid() == 0:  # a character device (a private copy of /dev/null), as root can make one
        dev = tmp_path / "null"
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        f = TitansForecaster(**TINY).fit(_long())
        with pytest.raises(OSError, match=rf"cannot write {dev}: it is a character device, not a regular file"):
            f.save(dev)
        assert stat.S_ISCHR(os.lstat(dev).st_mode)
        # a symlink to it is refused the same way (the write would go through to the device)
        link = tmp_path / "model.pt"
        link.symlink_to(dev)
        with pytest.raises(OSError, match="it is a character device, not a regular file"):
            f.save(link)
        assert stat.S_ISCHR(os.lstat(dev).st_mode) and link.is_symlink()
        assert sorted(os.listdir(tmp_path)) == ["model.pt", "null", "pipe"]


def test_a_symlinked_target_is_written_through(tmp_path):
    real = tmp_path / "models" / "m.pt"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "current.pt"
    link.symlink_to(Path("models") / "m.pt")  # relative, as ln -s makes them
    assert atomic_write(link, _write(b"new")) == link
    assert link.is_symlink() and real.read_bytes() == b"new"
    chain = tmp_path / "chain.pt"
    chain.symlink_to(link)  # a link to a link
    atomic_write(chain, _write(b"newer"))
    assert chain.is_symlink() and link.is_symlink() and real.read_bytes() == b"newer"
    dangling = tmp_path / "next.pt"
    dangling.symlink_to(tmp_path / "models" / "next-real.pt")
    atomic_write(dangling, _write(b"first"))
    assert dangling.is_symlink() and (tmp_path / "models" / "next-real.pt").read_bytes() == b"first"
    loop = tmp_path / "loop.pt"
    loop.symlink_to(loop)
    with pytest.raises(OSError, match=rf"cannot write {loop}: .*symbolic links"):
        atomic_write(loop, _write(b"x"))
    f = TitansForecaster(**TINY).fit(_long())
    f.save(link)
    assert link.is_symlink()
    pd.testing.assert_frame_equal(TitansForecaster.load(real).predict(), f.predict())
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m.pt", "next-real.pt"]


def test_no_space_left_reads_so_and_leaves_nothing(tmp_path, monkeypatch):
    """torch.save onto a full disk fails inside its zip writer (a RuntimeError whose context is
    the OSError); the message is "no space left on device: <path>" and nothing is left."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"previous")
    real_fdopen = os.fdopen

    class Full(io.RawIOBase):
        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def writable(self):
            return True

        def write(self, b):
            self.n += len(b)
            if self.n > 100:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.fh.write(b)

        def fileno(self):
            return self.fh.fileno()

        def flush(self):
            self.fh.flush()

        def close(self):
            super().close()
            self.fh.close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match=rf"] no space left on device: {path} \(nothing was written") as info:
        atomic_write(path, lambda fh: torch.save({"w": torch.zeros(1000)}, fh))
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"previous" and os.listdir(tmp_path) == ["model.pt"]


def test_temporary_files_of_killed_writers_are_removed(tmp_path):
    """A writer killed outright (SIGKILL) cannot clean up: its temporary file names its process,
    and the next write to the same file removes it once that process is gone."""
    path = tmp_path / "model.pt"
    code = ("import os, sys; from titans_ts.atomic import atomic_write\n"
            "def w(fh):\n    fh.write(b'half'); fh.flush(); os.kill(os.getpid(), 9)\n"
            f"atomic_write({str(path)!r}, w)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    assert proc.wait() == -9
    left = [p for p in os.listdir(tmp_path) if p != "model.pt"]
    assert len(left) == 1
    found = re.fullmatch(r"\.model\.pt\.([0-9a-f]+)-(\d+)-[0-9a-f]+\.tmp", left[0])
    assert found and int(found.group(2)) == proc.pid
    other = tmp_path / f".model.pt.{found.group(1)}-{os.getpid()}-00000000.tmp"
    other.write_bytes(b"a live writer's")  # (this process is alive: its file is kept)
    atomic_write(path, _write(b"done"))
    assert path.read_bytes() == b"done" and sorted(os.listdir(tmp_path)) == sorted(["model.pt", other.name])


def test_every_failure_path_removes_the_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    for fail in ("write", "replace", "interrupt"):
        def write(fh, fail=fail):
            fh.write(b"data")
            if fail == "write":
                raise ValueError("the payload cannot be written")
            if fail == "interrupt":
                raise KeyboardInterrupt
        with monkeypatch.context() as m:
            if fail == "replace":
                m.setattr(atomic.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
            with pytest.raises((ValueError, OSError, KeyboardInterrupt)):
                atomic_write(path, write)
        assert os.listdir(tmp_path) == [], fail
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: (_ for _ in ()).throw(OSError(errno.EMFILE, "Too many")))
    with pytest.raises(OSError, match=f"cannot write {path}"):
        atomic_write(path, _write(b"x"))
    assert os.listdir(tmp_path) == []
