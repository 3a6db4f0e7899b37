"""Saving and loading a fitted :class:`TitansForecaster`: one file of tensors, numbers and strings
only, read back with ``torch.load(weights_only=True)`` (nothing is unpickled).

Saving is atomic (:func:`titans_ts.atomic.atomic_write`): an overwrite that fails midway leaves
the previous file as it was. Loading accepts only what :func:`save` writes: a file that is
empty, truncated, not a forecaster file, or holds keys or parameters ``save`` never writes is
refused with one clear message (a crafted file cannot set arbitrary attributes or methods).

The file carries the SHA-256 of its content (``digest``: :func:`titans_ts.integrity.content_digest`
of every other entry, weights, history and settings alike), written at save and checked at
load: a file edited or corrupted after it was saved (one float is enough) is refused with a
message naming it. Files of formats 1 and 2 (written before the digest) load unchecked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_write
from ..datasets.frames import polars_dtype_from_json, polars_dtype_to_json
from ..datasets.timeindex import dtype_from_name, dtype_name
from ..integrity import LOAD_ERRORS, IntegrityError, content_digest, load_failure
from .exog import ExogSpec
from .guard import NAIVES, report_from_json, report_to_json

__all__ = ["save", "load", "FORMAT", "FORMATS"]

FORMAT = "titans-ts-forecaster/3"
#: formats load() reads: 3 adds the content digest; 2 each series' units (centre and scale),
#: typed ids, integer time steps and the id / time dtypes; a format-1 file (no units: trained on
#: the raw values) loads with centre 0 and scale 1, which is exactly what it was fitted with
FORMATS = ("titans-ts-forecaster/1", "titans-ts-forecaster/2", FORMAT)

_PAYLOAD = {"format", "params", "tuple_params", "fitted", "state_dict", "stream_memory", "values",
            "masks", "index", "has_index", "tz", "loc", "scale", "index_kind", "memory_anchors", "digest",
            "static_real", "static_cat"}
_FITTED = {"freq_", "n_targets_", "n_inputs_", "channels_", "covariate_names_", "layout_", "flavour_",
           "time_col_", "best_val_loss_", "n_epochs_", "ids", "id_dtype_", "time_dtype_"}
_FITTED_V1 = _FITTED - {"id_dtype_", "time_dtype_"}
#: fitted attributes files written before the baseline guard lack (they load with no report,
#: so ``naive_fallback`` changes nothing)
# context_length_ / cycle_len_ / chosen_defaults_: the data-aware choices (files written before
# they existed had both lengths as parameters, which are then used)
# polars_dtypes_: the polars dtypes of a polars frame's id and time columns (files written
# before it give polars frames with the dtypes polars infers from pandas)
# exog_ (the covariates: names, calendar features, static vocabularies and units): files
# written before it existed read past covariates as extra channels, and load without covariates;
# short_series_: the series too short to train on, with their naive (files written before it:
# none); ensemble_: the networks whose mean is the forecast (files written before it: one);
# memory_fallback_gains_: the carried memory's fallback gains at fit (files written before it: none, [0])
_FITTED_OPTIONAL = {"validation_report_", "validation_season_", "context_length_", "cycle_len_",
                    "chosen_defaults_", "polars_dtypes_", "exog_", "short_series_", "ensemble_",
                    "memory_fallback_gains_"}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _id(sid):
    """An id as JSON keeps it (ints, strings, floats and booleans keep their type)."""
    sid = sid.item() if isinstance(sid, np.generic) else sid
    return sid if isinstance(sid, (str, int, float, bool)) else str(sid)


def save(est, path: str | os.PathLike) -> Path:
    """Write the parameters, trained weights, history and units of ``est`` to ``path``."""
    est._check_fitted()
    hist = est.history_
    params = est.get_params()
    index = hist["index"]
    payload = {
        "format": FORMAT,
        "params": json.dumps(_jsonable(params)),
        "tuple_params": [k for k, v in params.items() if isinstance(v, tuple)],
        "fitted": json.dumps({"freq_": _jsonable(est.freq_), "n_targets_": est.n_targets_,
                              "n_inputs_": est.n_inputs_, "channels_": est.channels_,
                              "covariate_names_": est.covariate_names_, "layout_": est.layout_,
                              "flavour_": est.flavour_, "time_col_": est.time_col_,
                              "best_val_loss_": est.best_val_loss_, "n_epochs_": est.n_epochs_,
                              "id_dtype_": dtype_name(getattr(est, "id_dtype_", None)),
                              "time_dtype_": dtype_name(getattr(est, "time_dtype_", None)),
                              "ids": [_id(i) for i in hist["ids"]],
                              "validation_report_": report_to_json(
                                  getattr(est, "validation_report_", None), est.id_col, _id),
                              "validation_season_": getattr(est, "validation_season_", None),
                              "context_length_": est.context_length_, "cycle_len_": est.cycle_len_,
                              "ensemble_": getattr(est, "ensemble_", 1),
                              "memory_fallback_gains_": getattr(est, "memory_fallback_gains_", None),
                              "chosen_defaults_": _jsonable(getattr(est, "chosen_defaults_", None)),
                              "short_series_": [[_id(k), v] for k, v in
                                                (getattr(est, "short_series_", None) or {}).items()],
                              "polars_dtypes_": None if getattr(est, "polars_dtypes_", None) is None else
                              {c: polars_dtype_to_json(t) for c, t in est.polars_dtypes_.items()},
                              "exog_": est._spec.to_json()}),
        "state_dict": {k: v.detach().clone() for k, v in est.model_.state_dict().items()},
        "stream_memory": {} if est.stream_memory_ is None else
        {k: v.detach().clone() for k, v in est.stream_memory_.state_dict().items()},
        # each series' memory anchor (first written window, channel scales): see memory_store
        "memory_anchors": [] if est.memory_ is None else [
            None if a is None else [int(a[0]), a[1].clone()] for a in est.memory_.anchors],
        "values": [torch.from_numpy(v) for v in hist["values"]],
        "masks": [torch.from_numpy(m) for m in hist["masks"]],
        "index": [torch.empty(0, dtype=torch.int64) if idx is None else torch.from_numpy(
            (idx.asi8 if isinstance(idx, pd.DatetimeIndex) else idx.to_numpy(np.int64)).copy())
            for idx in index],
        "has_index": [idx is not None for idx in index],
        "index_kind": ["none" if idx is None else "time" if isinstance(idx, pd.DatetimeIndex) else "int"
                       for idx in index],
        "tz": [str(idx.tz) if isinstance(idx, pd.DatetimeIndex) and idx.tz is not None else ""
               for idx in index],
        "loc": [torch.from_numpy(np.asarray(v, dtype=np.float64)) for v in hist["loc"]],
        "scale": [torch.from_numpy(np.asarray(v, dtype=np.float64)) for v in hist["scale"]],
    }
    if getattr(est, "statics_", None) is not None:  # each series' static values (standardised) and category codes
        payload["static_real"] = torch.from_numpy(np.ascontiguousarray(est.statics_[0], dtype=np.float32))
        payload["static_cat"] = torch.from_numpy(np.ascontiguousarray(est.statics_[1], dtype=np.int64))
    payload["digest"] = content_digest(payload)  # last: it covers every other entry
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def _bad(path, why: str) -> ValueError:
    return ValueError(f"{path} is not a valid TitansForecaster file ({why}); it must be a file "
                      f"written by TitansForecaster.save")


def _read(path: Path) -> dict:
    if path.is_dir():
        raise IsADirectoryError(21, f"cannot load {path}: it is a folder, not a TitansForecaster file")
    if not path.is_file():
        raise FileNotFoundError(2, f"cannot load {path}: no such file")
    if path.stat().st_size == 0:
        raise _bad(path, "the file is empty")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as err:
        raise _bad(path, f"truncated, corrupt or not a torch file: {load_failure(err)}") from None
    if not isinstance(payload, dict) or payload.get("format") not in FORMATS:
        raise _bad(path, f"no format {FORMAT!r} marker")
    if payload["format"] not in FORMATS[:2]:  # written with a digest: the content must match it
        stored = payload.get("digest")
        rest = {k: v for k, v in payload.items() if k != "digest"}
        if not isinstance(stored, str) or stored != content_digest(rest):
            raise IntegrityError(
                f"{path} failed its content check: its content differs from what TitansForecaster.save "
                f"wrote (SHA-256 {'missing' if stored is None else 'mismatch'}); the file was edited or "
                f"corrupted after it was saved. Do not use it: fit again, or restore an intact copy")
    return payload


def _check_keys(path, given, allowed, what: str) -> None:
    extra = sorted(str(k) for k in set(given) - set(allowed))
    if extra:
        raise _bad(path, f"unknown {what} {extra}")


def load(cls, path: str | os.PathLike):
    """Read a file written by :func:`save` as a fitted ``cls``; the memory states are rebuilt
    from the saved history, exactly as ``fit`` built them."""
    path = Path(path)
    payload = _read(path)
    v1 = payload["format"] == FORMATS[0]
    _check_keys(path, payload, _PAYLOAD, "entries")
    try:
        params = json.loads(payload["params"])
        fitted = json.loads(payload["fitted"])
    except (TypeError, ValueError) as err:
        raise _bad(path, f"its parameters are not valid JSON: {err}") from None
    if not isinstance(params, dict) or not isinstance(fitted, dict):
        raise _bad(path, "its parameters are not mappings")
    _check_keys(path, params, cls._get_param_names(), "parameter(s)")
    _check_keys(path, fitted, (_FITTED_V1 if v1 else _FITTED) | _FITTED_OPTIONAL, "fitted attribute(s)")
    if set(fitted) - _FITTED_OPTIONAL != (_FITTED_V1 if v1 else _FITTED):
        raise _bad(path, f"fitted attribute(s) {sorted((_FITTED_V1 if v1 else _FITTED) - set(fitted))} missing")
    for key in payload.get("tuple_params", []):
        if key in params and isinstance(params[key], list):
            params[key] = tuple(params[key])
    try:
        return _build(cls, payload, params, fitted, v1)
    except (KeyError, TypeError, RuntimeError, IndexError) as err:
        raise _bad(path, f"its content does not fit together: {str(err).splitlines()[0][:200]}") from None


def _index(raw: torch.Tensor, kind: str, tz: str):
    if kind == "none":
        return None
    if kind == "int":
        return pd.Index(raw.numpy().astype(np.int64), dtype=np.int64)
    idx = pd.DatetimeIndex(raw.numpy().astype("datetime64[ns]"))
    return idx.tz_localize("UTC").tz_convert(tz) if tz else idx


def _build(cls, payload, params, fitted, v1: bool):
    est = cls(**params)
    ids = fitted.pop("ids")
    for name in ("id_dtype_", "time_dtype_"):
        fitted[name] = dtype_from_name(fitted.get(name))
    polars_dtypes = fitted.pop("polars_dtypes_", None)
    if isinstance(polars_dtypes, dict):
        polars_dtypes = {c: t for c, t in ((c, polars_dtype_from_json(spec)) for c, spec in polars_dtypes.items())
                         if t is not None}
    est.polars_dtypes_ = polars_dtypes or None
    report = fitted.pop("validation_report_", None)
    season = fitted.pop("validation_season_", None)
    exog = fitted.pop("exog_", None)
    if exog is None and fitted.get("covariate_names_"):
        raise ValueError(f"this file was saved by an earlier titans-ts, whose network read the past "
                         f"covariates {fitted['covariate_names_']} as extra channels; the current one reads "
                         f"them as covariates (hist_exog_list), so its weights do not fit: fit the "
                         f"forecaster again")
    est.exog_ = ExogSpec() if exog is None else ExogSpec.from_json(exog)
    short = fitted.pop("short_series_", None) or []
    if not isinstance(short, list) or not all(isinstance(p, list) and len(p) == 2 and p[1] in NAIVES
                                              for p in short):
        raise TypeError("short_series_ is malformed")
    est.short_series_ = {k: v for k, v in short}
    for k, v in fitted.items():
        setattr(est, k, v)
    for name, param in (("context_length_", "context_length"), ("cycle_len_", "cycle_len")):
        value = getattr(est, name, None)
        value = getattr(est, param) if value is None else value
        if value is None and name == "cycle_len_":
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "context_length_" else 0):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        setattr(est, name, value)
    est.validation_report_ = report_from_json(est, report)
    if season is not None and (isinstance(season, bool) or not isinstance(season, int) or season < 1):
        raise TypeError(f"validation_season_ must be a positive integer, got {season!r}")
    est.validation_season_ = season if est.validation_report_ is not None else None
    members = fitted.get("ensemble_", 1)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise TypeError(f"ensemble_ must be a positive integer, got {members!r}")
    est.ensemble_ = members
    module = est._module(est.n_targets_)
    module.load_state_dict(payload["state_dict"])
    est.model_ = module.eval()
    kinds = payload.get("index_kind") or ["time" if has else "none" for has in payload["has_index"]]
    if not len(payload["index"]) == len(kinds) == len(payload["tz"]):
        raise IndexError("the per-series lists have different lengths")
    index = [_index(raw, kind, tz) for raw, kind, tz in zip(payload["index"], kinds, payload["tz"], strict=True)]
    values = [v.numpy() for v in payload["values"]]
    masks = [m.numpy() for m in payload["masks"]]
    if v1:  # fitted on the raw values: the identity scaling reproduces it exactly
        loc = [np.zeros(v.shape[1]) for v in values]
        scale = [np.ones(v.shape[1]) for v in values]
    else:
        loc = [t.numpy() for t in payload["loc"]]
        scale = [t.numpy() for t in payload["scale"]]
    if not (len(ids) == len(values) == len(masks) == len(index) == len(loc) == len(scale)):
        raise IndexError("the per-series lists have different lengths")
    est.history_ = {"ids": ids, "values": values, "masks": masks, "index": index,
                    "firsts": est._firsts(index, est.freq_), "loc": loc, "scale": scale}
    est.statics_ = None
    if est.exog_.static:
        real, codes = payload["static_real"].numpy(), payload["static_cat"].numpy()
        if real.shape != (len(ids), len(est.exog_.stat_real)) or codes.shape != (len(ids), len(est.exog_.stat_cat)):
            raise IndexError("the static covariates do not fit the series")
        est.statics_ = (real, codes)
    from . import state
    from .memory_store import SeriesMemory

    est.stream_memory_ = None
    if getattr(est, "memory_fallback_gains_", None) is None:
        # files written before the carried memory had a fallback correction: it had none
        est.memory_fallback_gains_ = [0.0]
    fb = est.memory_fallback_gains_
    if not isinstance(fb, list) or not fb or not all(isinstance(g, (int, float)) and not isinstance(g, bool)
                                                      for g in fb):
        raise TypeError(f"memory_fallback_gains_ must be a list of numbers, got {fb!r}")
    if est.test_time_memory:
        est.stream_memory_ = state.stream_memory(est)
        est.stream_memory_.load_state_dict(payload["stream_memory"])
    anchors = payload.get("memory_anchors") or None  # files of earlier versions: anchored anew
    est.memory_ = SeriesMemory(len(ids), None if anchors is None else
                               [None if a is None else (int(a[0]), a[1]) for a in anchors])
    state.memorise(est, est.memory_, values, masks, (loc, scale), est.history_["firsts"], range(len(ids)))
    return est
