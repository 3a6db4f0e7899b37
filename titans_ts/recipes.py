"""Recipes: YAML files of the Lightning CLI (``titans-ts fit --config RECIPE``), read, overridden,
trained and tested from Python. Shared by the benchmark runner, the tuner and the quickstart.

    cfg = load_recipe("recipes/ltsf/ETTh1_96_96.yaml", ["model.memory.max_lr=0.02"])
    model, dm, trainer, metrics, seconds = train_and_test(cfg, run_dir)

Overrides are dotted keys (``model.memory.depth``) with values, given either as ``key=value``
strings (the value parsed as YAML, as on a command line) or as a mapping of Python values.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import platform
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

__all__ = ["parse_overrides", "set_dotted", "load_recipe", "packaged_recipe", "build_in_dir",
           "train_and_test", "window_errors", "residual_band", "band_coverage", "drop_last_metrics", "part_metrics",
           "repeat_last_window_errors", "machine_description", "DROP_LAST_BATCH", "TEST_PARTS"]

# The test batch size of the Informer-lineage loaders (Time-Series-Library's default), which
# tested with drop_last=True and so scored only the first len // 32 * 32 windows: recorded beside
# the protocol's every-window metrics as a diagnostic.
DROP_LAST_BATCH = 32
# the test windows cut, in time order, into this many contiguous parts (where the error sits)
TEST_PARTS = 10


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``{"a.b": 1, "c": [1, 2]}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"an override is key.path=value, got {item!r}")
        path, raw = item.split("=", 1)
        out[path] = yaml.safe_load(raw)
    return out


def set_dotted(cfg: Mapping, values: Mapping[str, Any], known: Iterable[str] | None = None,
               what: str = "recipe") -> dict:
    """A copy of ``cfg`` with each ``{dotted key: value}`` set (missing or null mappings on the
    way are created). With ``known``, the first part of every key must be one of them."""
    out = copy.deepcopy(dict(cfg))
    known = None if known is None else set(known)
    for key, value in values.items():
        parts = key.split(".")
        if known is not None and parts[0] not in known:
            raise ValueError(f"unknown {what} key {parts[0]!r} (in {key!r}); known: {sorted(known)}")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ValueError(f"cannot set {key!r}: {'.'.join(parts[:i + 1])} is {child!r}, "
                                 f"not a mapping")
            else:
                child = node[part] = dict(child)
            node = child
        node[parts[-1]] = value
    return out


def load_recipe(config: str | os.PathLike | Mapping, sets: Sequence[str] = ()) -> dict:
    """A recipe (a YAML file, or a dict) with ``key=value`` overrides applied."""
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"recipe not found: {path}")
        cfg = yaml.safe_load(path.read_text())
    else:
        cfg = copy.deepcopy(dict(config))
    if not isinstance(cfg, dict):
        raise ValueError(f"recipe {config!r} is not a mapping")
    return set_dotted(cfg, parse_overrides(sets))


def packaged_recipe(name: str = "ETTh1_96_96") -> dict:
    """A recipe shipped inside the package (``titans_ts/recipes_data/<name>.yaml``, a copy of
    the repository's ``recipes/ltsf/<name>.yaml``): what ``titans-ts quickstart`` runs."""
    text = (resources.files("titans_ts") / "recipes_data" / f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def build_in_dir(cfg: Mapping, run_dir: str | os.PathLike):
    """The Lightning CLI objects of a recipe dict (``cli.model``, ``cli.datamodule``,
    ``cli.trainer``), with everything the run writes (checkpoints, the resolved recipe) under
    ``run_dir``. A recipe the CLI rejects raises a ``ValueError`` with its reason."""
    from .lightning_cli import build_from_recipe

    recipe = copy.deepcopy(dict(cfg))
    trainer_cfg = recipe.setdefault("trainer", {})
    trainer_cfg["default_root_dir"] = str(run_dir)
    for cb in trainer_cfg.get("callbacks") or []:
        if isinstance(cb, dict) and str(cb.get("class_path", "")).endswith("ModelCheckpoint"):
            cb.setdefault("init_args", {})["dirpath"] = os.path.join(run_dir, "checkpoints")
    path = os.path.join(run_dir, "recipe.yaml")
    Path(path).write_text(yaml.safe_dump(recipe, sort_keys=False))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            cli = build_from_recipe(path)
    except SystemExit as e:  # the Lightning CLI rejects the configuration (usage, error)
        lines = err.getvalue().strip().splitlines()
        reason = " ".join(ln for ln in lines if ln.startswith("error:")) or \
            (lines[-1] if lines else f"exit status {e.code}")
        raise ValueError(f"the Lightning CLI rejected the recipe: {reason}") from None
    sys.stderr.write(err.getvalue())
    return cli


def train_and_test(cfg: Mapping, run_dir: str | os.PathLike):
    """Train a recipe dict (checkpoints under ``run_dir``) with
    :func:`titans_ts.training.fit_module` on the trainer the recipe configures (its budget,
    clipping, early stopping and checkpointing), which restores the best checkpoint's weights
    (loaded with ``weights_only=True``), and test them. Returns ``(model, datamodule, trainer,
    metrics, fit seconds)``; the metrics hold the test's and the tested weights' validation
    MSE / MAE."""
    from .training import fit_module, quiet_lightning

    cli = build_in_dir(cfg, run_dir)
    model, dm, trainer = cli.model, cli.datamodule, cli.trainer
    t0 = time.perf_counter()
    fit_module(model, dm, trainer=trainer)
    fit_s = time.perf_counter() - t0
    with quiet_lightning(False):
        res = trainer.test(model, dm, verbose=False)[0]
        # the selection metrics: the tested weights on the validation split, in the test's
        # units (val_loss is in the training loss's, which differs between recipes)
        val = trainer.validate(model, dm, verbose=False)[0]
    res = dict(res, val_mse=val["val_mse"], val_mae=val["val_mae"])
    return model, dm, trainer, res, fit_s


# ---------------------------------------------------------------------------- per-window errors


def _point_forecasts(net, dataset, batch_size: int):
    """Per batch of ``dataset``'s windows, in order: the point forecast, the target and the
    observed mask (float, 1 where observed), all [B, H, C] on the network's device."""
    import torch

    from .datasets.windows import exog_of, window_loader

    device = next(net.parameters()).device
    net.eval()
    with torch.no_grad():
        for batch in window_loader(dataset, batch_size, False):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = net(batch["past"], batch.get("past_mask"), time_index=batch.get("time_index"),
                      exog=exog_of(batch))
            target, mask = batch["future"], batch.get("future_mask")
            m = torch.ones_like(target) if mask is None else mask.to(target.dtype)
            yield net.point_forecast(out), target, m


def window_errors(net, dataset, batch_size: int = 256):
    """Per window of ``dataset``: the point forecast's squared-error sum, absolute-error sum and
    observed-value count, three float64 tensors [N] in window order."""
    import torch

    se, ae, n = [], [], []
    for pred, target, m in _point_forecasts(net, dataset, batch_size):
        err = ((pred - target) * m).double()
        se.append((err ** 2).sum((1, 2)).cpu())
        ae.append(err.abs().sum((1, 2)).cpu())
        n.append(m.double().sum((1, 2)).cpu())
    return torch.cat(se), torch.cat(ae), torch.cat(n)


def residual_band(net, dataset, level: float = 80.0, batch_size: int = 256):
    """An interval for a point forecast from its errors on ``dataset`` (the validation windows):
    per forecast step and channel, the ``(100 - level) / 2`` and ``(100 + level) / 2``
    percentiles of the residuals ``truth - forecast`` over the windows' observed values. Returns
    ``(low, high)``, float32 [H, C] on the CPU, to add to a point forecast: an empirical
    interval, whose coverage on other data is what ``band_coverage`` measures."""
    import torch

    if not 0 < level < 100:
        raise ValueError(f"level must be a percentage strictly between 0 and 100, got {level!r}")
    res = [torch.where(m > 0, target - pred, torch.nan).cpu()
           for pred, target, m in _point_forecasts(net, dataset, batch_size)]
    if not res:
        raise ValueError("residual_band needs at least one window; the dataset has none")
    r = torch.cat(res).double()
    if torch.isnan(r).all(0).any():
        raise ValueError("residual_band: a forecast step and channel has no observed value in any window")
    q = torch.tensor([(100 - level) / 200, (100 + level) / 200], dtype=r.dtype)
    low, high = torch.nanquantile(r, q, dim=0).float()
    return low, high


def band_coverage(net, dataset, low, high, batch_size: int = 256) -> float:
    """The share of ``dataset``'s observed values inside ``[forecast + low, forecast + high]``
    (``low`` / ``high``: [H, C] offsets, e.g. from ``residual_band``)."""
    inside, count = 0.0, 0.0
    for pred, target, m in _point_forecasts(net, dataset, batch_size):
        lo, hi = low.to(pred.device), high.to(pred.device)
        hit = ((target >= pred + lo) & (target <= pred + hi)).to(m.dtype) * m
        inside += float(hit.sum())
        count += float(m.sum())
    if count == 0:
        raise ValueError("band_coverage: the dataset has no observed value")
    return inside / count


def repeat_last_window_errors(dataset, batch_size: int = 1024):
    """``window_errors`` of the repeat-last baseline (every future step = last observed value)."""
    import torch

    from .baselines import repeat_last
    from .datasets.windows import window_loader

    se, ae, n = [], [], []
    for batch in window_loader(dataset, batch_size, False):
        target, mask = batch["future"], batch.get("future_mask")
        m = torch.ones_like(target) if mask is None else mask.to(target.dtype)
        f = repeat_last(batch["past"], target.shape[1], batch.get("past_mask"))
        err = torch.where(m > 0, f - target, torch.zeros_like(target)).double()
        se.append((err ** 2).sum((1, 2)))
        ae.append(err.abs().sum((1, 2)))
        n.append(m.double().sum((1, 2)))
    return torch.cat(se), torch.cat(ae), torch.cat(n)


def drop_last_metrics(se, ae, n, batch_size: int = DROP_LAST_BATCH) -> dict | None:
    """MSE / MAE over the windows a ``drop_last=True`` loader of ``batch_size`` keeps (the first
    ``len // batch_size * batch_size``); None when it would keep none."""
    kept = len(se) // batch_size * batch_size
    if kept == 0:
        return None
    count = float(n[:kept].sum().clamp_min(1.0))
    return {"batch_size": batch_size, "windows": kept, "mse": float(se[:kept].sum()) / count,
            "mae": float(ae[:kept].sum()) / count}


def part_metrics(se, ae, n, parts: int = TEST_PARTS) -> list[dict]:
    """MSE / MAE over ``parts`` contiguous, near-equal runs of windows in time order (window
    indices ``first`` .. ``last``, both included): where in the test period the error sits."""
    N = len(se)
    if not 1 <= parts <= N:
        raise ValueError(f"parts must be between 1 and the number of windows {N}, got {parts}")
    out = []
    for i in range(parts):
        a, b = i * N // parts, (i + 1) * N // parts
        count = float(n[a:b].sum().clamp_min(1.0))
        out.append({"first": a, "last": b - 1, "values": int(n[a:b].sum()),
                    "mse": float(se[a:b].sum()) / count, "mae": float(ae[a:b].sum()) / count})
    return out


def machine_description() -> str:
    """Architecture, CPU model (where the OS names it), torch build and thread count: training
    on a small set can land on other numbers on another CPU (its float kernels round
    differently, and early stopping amplifies that), so rows say where they ran."""
    import torch

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    parts = [platform.machine(), cpu, f"torch {torch.__version__}", f"{torch.get_num_threads()} threads"]
    return ", ".join(p for p in parts if p)
