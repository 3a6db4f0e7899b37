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


# ---------------------------------------------------------------------------- content digests


def _edit_floats(path: Path, tensor: torch.Tensor, n: int = 8) -> None:
    """Change ``n`` floats of ``tensor``'s data where it lies in the file (in place, same size)."""
    raw = path.read_bytes()
    data = tensor.detach().contiguous().numpy().tobytes()
    at = raw.find(data[: 4 * n])
    assert at >= 0, "the tensor's bytes are not in the file"
    edited = (np.frombuffer(data[: 4 * n], dtype=np.float32) * 1.01 + 1e-3).astype(np.float32).tobytes()
    path.write_bytes(raw[:at] + edited + raw[at + len(edited):])


def test_an_edited_saved_model_is_refused_naming_the_file(tmp_path):
    f = TitansForecaster(**TINY).fit(_long())
    path = f.save(tmp_path / "model.pt")
    weight = max(f.model_.state_dict().values(), key=lambda t: t.numel() if t.dtype == torch.float32 else 0)
    _edit_floats(path, weight)
    with pytest.raises(ValueError, match=rf"^{path} failed its content check: .*SHA-256 mismatch.*edited or "
                                         rf"corrupted after it was saved"):
        TitansForecaster.load(path)
    # the history too (a value of a series)
    path = f.save(tmp_path / "model2.pt")
    _edit_floats(path, torch.from_numpy(f.history_["values"][0][:, 0].copy()), n=4)
    with pytest.raises(ValueError, match="failed its content check"):
        TitansForecaster.load(path)
    # a digest removed by hand is refused too (format 3 files always carry one)
    payload = torch.load(f.save(tmp_path / "m3.pt"), weights_only=True)
    del payload["digest"]
    torch.save(payload, tmp_path / "m3.pt")
    with pytest.raises(ValueError, match=r"failed its content check: .*SHA-256 missing"):
        TitansForecaster.load(tmp_path / "m3.pt")


@pytest.mark.parametrize("tz", [lambda tz: tz[:-1], lambda tz: [*tz, ""]])
def test_per_series_lists_of_other_lengths_are_refused(tmp_path, tz):
    """A file whose digest matches but whose per-series time zones are one short or one too many
    (written by a broken writer) is refused by name, never loaded with a series' zone dropped."""
    from titans_ts.integrity import content_digest

    f = TitansForecaster(**TINY).fit(_long())
    payload = torch.load(f.save(tmp_path / "model.pt"), weights_only=True)
    del payload["digest"]
    payload["tz"] = tz(payload["tz"])
    payload["digest"] = content_digest(payload)
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"does not fit together: the per-series lists have different lengths"):
        TitansForecaster.load(tmp_path / "model.pt")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def test_malicious_or_random_files_are_refused_without_the_weights_only_false_advice(tmp_path, capsys):
    from titans_ts.cli import main

    evil = tmp_path / "evil.pt"
    torch.save({"format": "titans-ts-forecaster/3", "x": _Evil()}, evil)
    rnd = tmp_path / "random.pt"
    rnd.write_bytes(np.random.default_rng(0).bytes(5000))
    for path, why in ((evil, r"holds a Python object that is not plain data \(posix\.system\)"),
                      (rnd, "not a readable torch file")):
        with pytest.raises(ValueError, match=why) as info:
            TitansForecaster.load(path)
        assert "weights_only" not in str(info.value) and str(path) in str(info.value)
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "ltsf" / "ETTh1_96_96.yaml"
    torch.save({"state_dict": {"w": _Evil()}, "hyper_parameters": {}}, tmp_path / "evil.ckpt")
    for ckpt in (tmp_path / "evil.ckpt", rnd):
        assert main(["test", "--config", str(recipe), "--ckpt_path", str(ckpt)]) == 2
        err = capsys.readouterr().err
        assert f"--ckpt_path {ckpt}" in err and "weights_only" not in err, err


# ------------------------------------------------------------------------ Lightning checkpoints


def _toy_fit(root: Path, trainer=None):
    import lightning.pytorch as pl

    from titans_ts.datasets import WindowDataset
    from titans_ts.datasets.windows import window_loader
    from titans_ts.model.lightning_module import TitansLightningModule
    from titans_ts.training import make_trainer

    pl.seed_everything(0, verbose=False)
    t = np.arange(200)
    vals = np.stack([np.sin(t / 4), np.cos(t / 5)], 1).astype(np.float32)
    train, val = (window_loader(WindowDataset(vals[a:b], 32, 8), 16, False) for a, b in ((0, 150), (110, 200)))
    model = TitansLightningModule(32, 8, d_model=16, n_layers=1, patch_len=8, stride=4,
                                  memory=dict(heads=2, depth=1, chunk_size=4))
    trainer = trainer or make_trainer(max_epochs=1, patience=None, root_dir=root, limit_train_batches=2)
    trainer.fit(model, train, val)
    return model, trainer, val


def _edit_checkpoint_weights(path: Path) -> None:
    state = torch.load(path, weights_only=True)["state_dict"]
    _edit_floats(path, max(state.values(), key=lambda t: t.numel() if t.dtype == torch.float32 else 0))


def test_an_edited_lightning_checkpoint_is_refused_naming_the_file(tmp_path):
    import lightning.pytorch as pl

    from titans_ts.integrity import DIGEST_KEY
    from titans_ts.model.lightning_module import TitansLightningModule

    model, trainer, val = _toy_fit(tmp_path)
    ckpt = Path(trainer.checkpoint_callback.best_model_path)
    assert DIGEST_KEY in torch.load(ckpt, weights_only=True)
    before = trainer.test(model, val, ckpt_path=str(ckpt), weights_only=True, verbose=False)
    assert before and TitansLightningModule.load_from_checkpoint(ckpt, weights_only=True) is not None
    _edit_checkpoint_weights(ckpt)
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt} failed its content check: its weights differ"):
        trainer.test(model, val, ckpt_path=str(ckpt), weights_only=True, verbose=False)
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt} failed its content check"):
        TitansLightningModule.load_from_checkpoint(ckpt, weights_only=True)
    # a checkpoint written by Lightning's own trainer and ModelCheckpoint, read by a plain
    # trainer (Lightning's own checkpoint reader): the module's hook catches the edit
    plain = pl.Trainer(max_epochs=1, limit_train_batches=2, logger=False, enable_progress_bar=False,
                       enable_model_summary=False, default_root_dir=tmp_path / "plain")
    model, plain, val = _toy_fit(tmp_path, plain)
    ckpt = Path(plain.checkpoint_callback.best_model_path)
    assert DIGEST_KEY in torch.load(ckpt, weights_only=True)
    _edit_checkpoint_weights(ckpt)
    with pytest.raises(ValueError, match="failed its content check: its weights differ"):
        plain.test(model, val, ckpt_path=str(ckpt), weights_only=True, verbose=False)


def test_a_full_disk_during_training_names_the_checkpoint_and_leaves_no_truncated_file(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    def full(fd, mode):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fdopen", full)
    with pytest.raises(OSError, match=rf"no space left on device: {tmp_path}/checkpoints/epoch=0-step=2\.ckpt"):
        _toy_fit(tmp_path)
    monkeypatch.setattr(atomic.os, "fdopen", real_fdopen)
    assert list((tmp_path / "checkpoints").iterdir()) == []


@pytest.mark.slow
@pytest.mark.data
def test_cli_test_refuses_an_edited_checkpoint(tmp_path, data_root, capsys):
    import yaml

    from titans_ts.cli import main

    recipe = yaml.safe_load((Path(__file__).parents[2] / "recipes/ltsf/ETTh1_96_96.yaml").read_text())
    recipe["model"].update(d_model=16, n_layers=1, memory=dict(heads=2, depth=1, chunk_size=8))
    recipe["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=2,
                             default_root_dir=str(tmp_path / "run"))
    recipe["data"]["root"] = str(data_root)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    from titans_ts.integrity import VerifiedCheckpointIO
    from titans_ts.lightning_cli import build_from_recipe

    assert isinstance(build_from_recipe(cfg).trainer.strategy.checkpoint_io, VerifiedCheckpointIO)
    assert main(["fit", "--config", str(cfg)]) == 0
    ckpt = next((tmp_path / "run" / "checkpoints").glob("epoch=*.ckpt"))
    _edit_checkpoint_weights(ckpt)
    capsys.readouterr()
    assert main(["test", "--config", str(cfg), "--ckpt_path", str(ckpt), "--trainer.limit_test_batches=2"]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {ckpt} failed its content check: its weights differ" in err, err
