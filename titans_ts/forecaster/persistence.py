"""Saving and loading a fitted :class:`TitansForecaster`: one file of tensors, numbers and strings
only, read back with ``torch.load(weights_only=True)`` (nothing is unpickled)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

__all__ = ["save", "load", "FORMAT"]

FORMAT = "titans-ts-forecaster/1"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def save(est, path: str | os.PathLike) -> Path:
    """Write the parameters, trained weights and history of ``est`` to ``path``."""
    est._check_fitted()
    hist = est.history_
    params = est.get_params()
    payload = {
        "format": FORMAT,
        "params": json.dumps(_jsonable(params)),
        "tuple_params": [k for k, v in params.items() if isinstance(v, tuple)],
        "fitted": json.dumps({"freq_": est.freq_, "n_targets_": est.n_targets_,
                              "n_inputs_": est.n_inputs_, "channels_": est.channels_,
                              "covariate_names_": est.covariate_names_, "layout_": est.layout_,
                              "flavour_": est.flavour_, "time_col_": est.time_col_,
                              "best_val_loss_": est.best_val_loss_, "n_epochs_": est.n_epochs_,
                              "ids": [str(i) for i in hist["ids"]]}),
        "state_dict": {k: v.detach().clone() for k, v in est.model_.state_dict().items()},
        "stream_memory": {} if est.stream_memory_ is None else
        {k: v.detach().clone() for k, v in est.stream_memory_.state_dict().items()},
        "values": [torch.from_numpy(v) for v in hist["values"]],
        "masks": [torch.from_numpy(m) for m in hist["masks"]],
        "index": [torch.from_numpy(idx.asi8.copy()) if idx is not None else torch.empty(0, dtype=torch.int64)
                  for idx in hist["index"]],
        "has_index": [idx is not None for idx in hist["index"]],
        "tz": [str(idx.tz) if idx is not None and idx.tz is not None else "" for idx in hist["index"]],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load(cls, path: str | os.PathLike):
    """Read a file written by :func:`save` as a fitted ``cls``; the memory states are rebuilt
    from the saved history, exactly as ``fit`` built them."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a TitansForecaster file (format {FORMAT!r})")
    params = json.loads(payload["params"])
    for key in payload.get("tuple_params", []):
        params[key] = tuple(params[key])
    est = cls(**params)
    fitted = json.loads(payload["fitted"])
    ids = fitted.pop("ids")
    for k, v in fitted.items():
        setattr(est, k, v)
    module = est._module(est.n_inputs_)
    module.load_state_dict(payload["state_dict"])
    est.model_ = module.eval()
    index = []
    for raw, has, tz in zip(payload["index"], payload["has_index"], payload["tz"]):
        if not has:
            index.append(None)
            continue
        idx = pd.DatetimeIndex(raw.numpy().astype("datetime64[ns]"))
        index.append(idx.tz_localize("UTC").tz_convert(tz) if tz else idx)
    coll_values = [v.numpy() for v in payload["values"]]
    coll_masks = [m.numpy() for m in payload["masks"]]
    est.history_ = {"ids": ids, "values": coll_values, "masks": coll_masks, "index": index,
                    "firsts": est._firsts(index, est.freq_)}
    from .memory_store import SeriesMemory

    est.stream_memory_ = None
    if est.test_time_memory:
        est.stream_memory_ = est._stream_memory()
        est.stream_memory_.load_state_dict(payload["stream_memory"])
    est.memory_ = SeriesMemory(len(ids))
    est._memorise(est.memory_, coll_values, coll_masks, est.history_["firsts"], range(len(ids)))
    return est
