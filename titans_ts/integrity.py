"""Content digests of the files the package writes and reads back: saved forecasters
(:mod:`titans_ts.forecaster.persistence`) and Lightning checkpoints.

A file read with ``torch.load(weights_only=True)`` cannot run code, but nothing in it says
whether its numbers are the ones that were written: a float edited by hand or flipped on disk
loads and forecasts (or trains on) something else. So every such file carries the SHA-256 of
its content, computed when it is written and checked when it is read; a mismatch is an error
naming the file.

The digest is taken over the loaded objects, not the file's bytes (torch's zip layout is not
canonical): :func:`content_digest` walks a checkpoint dict in a fixed order (mappings by key,
sequences in order) and hashes every tensor's dtype, shape and raw bytes, and every string,
number, bool and None with its type. An object of any other type contributes only its type's
name (such objects cannot be read back with ``weights_only=True`` anyway).

Lightning checkpoints get the digest in :meth:`TitansLightningModule.on_save_checkpoint
<titans_ts.model.lightning_module.TitansLightningModule.on_save_checkpoint>` (the last hook
before the file is written, so a checkpoint written by Lightning's own ``ModelCheckpoint`` or
``trainer.save_checkpoint`` has it too), under :data:`DIGEST_KEY`, one digest per part:

* ``state_dict``: the weights;
* ``hyper_parameters``: the settings the network is rebuilt from;
* ``rest``: everything else (optimiser and scheduler states, loops, callbacks, random streams),
  except Lightning's version string, which Lightning rewrites when it loads a file.

They are checked where the file is read: by :class:`VerifiedCheckpointIO` (the trainer's
checkpoint reader and writer in the CLI, the recipes and :func:`titans_ts.training.make_trainer`;
it also writes checkpoints atomically, :mod:`titans_ts.atomic`), by
``TitansLightningModule.load_from_checkpoint``, by :func:`load_checkpoint` (the forecaster's
best epoch), and, for a trainer with another checkpoint reader, by the module's
``on_load_checkpoint`` (weights and the rest; the hyper-parameters there may legitimately be
overridden by ``load_from_checkpoint(..., **kwargs)``). Checkpoints written before digests
existed (no :data:`DIGEST_KEY`) load as before.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

__all__ = ["DIGEST_KEY", "IntegrityError", "content_digest", "stamp_checkpoint", "verify_checkpoint",
           "load_failure", "load_checkpoint", "VerifiedCheckpointIO", "use_verified_io", "LOAD_ERRORS"]

DIGEST_KEY = "titans_ts_digest"
_PARTS = ("state_dict", "hyper_parameters")
#: entries a checkpoint's digest leaves out: the digest itself and what Lightning rewrites at load
_SKIPPED = (DIGEST_KEY, "pytorch-lightning_version")


class IntegrityError(ValueError):
    """A file's content does not match the digest written with it (edited or corrupted)."""


def _feed(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.layout != torch.strided or t.device.type == "meta":
            h.update(f"<tensor {t.layout} {t.device.type}>".encode())
            return
        t = t.cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        try:
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        except (RuntimeError, TypeError):  # (a dtype without a byte view, e.g. quantised)
            raw = repr(t.tolist()).encode()
        h.update(raw)
    elif isinstance(obj, Mapping):
        keys = sorted(obj, key=lambda k: (type(k).__name__, repr(k)))
        h.update(f"{{{len(keys)}:".encode())
        for k in keys:
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)) and not isinstance(obj, torch.Size):
        h.update(f"[{len(obj)}:".encode())
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        h.update(f"s{len(data)}:".encode() + data)
    elif isinstance(obj, (bytes, bytearray)):
        h.update(f"b{len(obj)}:".encode() + bytes(obj))
    elif obj is None or isinstance(obj, (bool, int, float, complex, torch.Size, torch.dtype, torch.device)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
    else:
        h.update(f"<{type(obj).__module__}.{type(obj).__qualname__}>".encode())


def content_digest(obj: Any) -> str:
    """SHA-256 (hex) of ``obj``'s content (see the module docstring)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _part_digests(checkpoint: Mapping) -> dict[str, str]:
    rest = {k: v for k, v in checkpoint.items() if k not in _PARTS and k not in _SKIPPED}
    out = {part: content_digest(checkpoint[part]) for part in _PARTS if part in checkpoint}
    out["rest"] = content_digest(rest)
    return out


def stamp_checkpoint(checkpoint: dict) -> None:
    """Write the digests of ``checkpoint`` into it (the last step before it is saved)."""
    checkpoint.pop(DIGEST_KEY, None)
    checkpoint[DIGEST_KEY] = {"algorithm": "sha256", **_part_digests(checkpoint)}


def verify_checkpoint(checkpoint: Mapping, where: str | os.PathLike | None = None,
                      parts: tuple[str, ...] = (*_PARTS, "rest")) -> None:
    """Raise :class:`IntegrityError` (naming ``where``) if a part of ``checkpoint`` differs from
    the digest written with it; a checkpoint without digests (an earlier version's) passes."""
    stored = checkpoint.get(DIGEST_KEY) if isinstance(checkpoint, Mapping) else None
    if stored is None:
        return
    name = f"checkpoint {where}" if where is not None else "the checkpoint"
    if not isinstance(stored, Mapping) or stored.get("algorithm") != "sha256":
        raise IntegrityError(f"{name} has an unreadable content digest ({DIGEST_KEY}); it was changed "
                             f"after it was written: do not use it (train again, or restore a copy)")
    now = _part_digests(checkpoint)
    what = {"state_dict": "weights", "hyper_parameters": "hyper-parameters",
            "rest": "training state (optimiser, loops, callbacks)"}
    bad = [p for p in parts if p in stored and stored.get(p) != now.get(p)]
    bad += [p for p in parts if (p in stored) != (p in now)]
    if bad:
        listed = " and ".join(dict.fromkeys(what[p] for p in bad))
        raise IntegrityError(
            f"{name} failed its content check: its {listed} differ from what was written (SHA-256 "
            f"mismatch); the file was edited or corrupted after it was saved. Do not use it: "
            f"train again, or restore an intact copy")


def load_failure(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line, without torch's advice to
    load it with ``weights_only=False`` (which would run whatever code the file holds)."""
    text = str(err)
    if not text.startswith("Weights only load failed"):
        line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        return line[:200]
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds a Python object that is not plain data ({found.group(1)}); unpickling it could "
                f"run code, so it is refused")
    detail = [ln.strip() for ln in text.splitlines()[1:] if ln.strip() and "weights_only" not in ln
              and not ln.startswith("Please file an issue") and not ln.startswith("Check the documentation")]
    detail = [re.sub(r"^.*WeightsUnpickler error:\s*", "", ln) for ln in detail]
    reason = "; ".join(d for d in detail if d)[:200] or "not a torch file"
    return f"not a readable torch file ({reason})"


#: what torch.load raises for a file that is not a (complete) torch file
LOAD_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError,
               TypeError, KeyError, IndexError, AttributeError, UnicodeDecodeError)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint read with ``weights_only=True`` and its digests checked (errors name ``path``)."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(2, f"no such checkpoint file: {path}") from None
    except LOAD_ERRORS as err:
        raise ValueError(f"checkpoint {path} is not readable: {load_failure(err)}") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint {path} is not readable: it holds a {type(checkpoint).__name__}, "
                         f"not a checkpoint's mapping")
    verify_checkpoint(checkpoint, path)
    return checkpoint


class VerifiedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader and writer, with the package's guarantees: writes are atomic
    (:func:`titans_ts.atomic.atomic_write`: a full disk says so and leaves no truncated
    checkpoint under the real name), reads check the content digests, and a file that is not a
    checkpoint is refused in one line naming it (never with torch's advice to load it with
    ``weights_only=False``). Remote paths (``s3://...``) go through Lightning's own code."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        from .atomic import atomic_write

        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_write(path, lambda fh: torch.save(checkpoint, fh))

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None):
        if "://" not in str(path) and not Path(path).is_file():
            raise FileNotFoundError(2, f"no such checkpoint file: {path}")
        try:
            checkpoint = super().load_checkpoint(path, map_location, weights_only)
        except LOAD_ERRORS as err:
            raise ValueError(f"checkpoint {path} is not readable: {load_failure(err)}") from None
        verify_checkpoint(checkpoint, path)
        return checkpoint


def use_verified_io(trainer) -> None:
    """Give ``trainer`` the :class:`VerifiedCheckpointIO` unless it has a checkpoint reader other
    than Lightning's default (a user's plugin is left as it is)."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = VerifiedCheckpointIO()
