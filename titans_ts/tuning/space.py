"""Search spaces: a mapping from dotted keys to optuna specs, validated (see the package doc)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import optuna
import yaml

__all__ = ["SpaceError", "load_space", "suggest"]


class SpaceError(ValueError):
    """An invalid search-space specification (the message names the key and what is accepted)."""


_KEY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_FIELDS = {"float": ("type", "low", "high", "log", "step"),
           "int": ("type", "low", "high", "log", "step"),
           "categorical": ("type", "choices")}
_EXAMPLE = ("{type: float, low: 1.0e-4, high: 1.0e-2, log: true}, {type: int, low: 1, high: 3} "
            "or {type: categorical, choices: [32, 64]}")


def _number(where: str, field: str, value: Any, integer: bool) -> float | int:
    if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpaceError(f"{where}: int {field} must be an integer, got {value!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpaceError(f"{where}: float {field} must be a finite number, got {value!r}")
    return float(value)


def _check_spec(key: Any, spec: Any, source: str) -> dict:
    where = f"search space key {key!r}{source}"
    if not isinstance(key, str) or not _KEY.match(key):
        raise SpaceError(f"{where}: keys are dotted recipe paths such as model.lr or "
                         f"model.memory.depth")
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{where}: expected a mapping such as {_EXAMPLE}, got {spec!r}")
    kind = spec.get("type")
    if kind not in _FIELDS:
        raise SpaceError(f"{where}: type must be one of float, int, categorical, got {kind!r}")
    unknown = sorted(set(spec) - set(_FIELDS[kind]), key=str)
    if unknown:
        raise SpaceError(f"{where}: unknown field(s) {unknown} for type {kind}; accepted: "
                         f"{', '.join(_FIELDS[kind])}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: categorical needs a non-empty list of choices, got {choices!r}")
        def scalar(c):
            return c is None or isinstance(c, (bool, int, float, str))

        # a list of scalars is a choice too (a set of covariate columns, say)
        bad = [c for c in choices if not scalar(c) and not (isinstance(c, list) and all(map(scalar, c)))]
        if bad:
            raise SpaceError(f"{where}: categorical choices must be null, bool, int, float, str or lists "
                             f"of those, got {bad!r}")
        keys = [(type(c), tuple(c) if isinstance(c, list) else c) for c in choices]
        if len(set(keys)) != len(choices):
            raise SpaceError(f"{where}: categorical choices repeat a value: {choices!r}")
        return {"type": "categorical", "choices": list(choices)}
    missing = [f for f in ("low", "high") if f not in spec]
    if missing:
        raise SpaceError(f"{where}: {kind} needs low and high (missing {', '.join(missing)})")
    integer = kind == "int"
    low = _number(where, "low", spec["low"], integer)
    high = _number(where, "high", spec["high"], integer)
    if low > high:
        raise SpaceError(f"{where}: low must be <= high, got low={low}, high={high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log must be true or false, got {log!r}")
    step = spec.get("step")
    if step is not None:
        step = _number(where, "step", step, integer)
        if step <= 0:
            raise SpaceError(f"{where}: step must be positive, got {step}")
    if log and step is not None and not (integer and step == 1):
        raise SpaceError(f"{where}: log and step cannot be combined")
    if log and low <= 0:
        raise SpaceError(f"{where}: log needs low > 0, got low={low}")
    if integer and step is None:
        step = 1
    return {"type": kind, "low": low, "high": high, "log": log, "step": step}


def load_space(space: str | os.PathLike | Mapping) -> dict[str, dict]:
    """Read (a YAML file) and validate a search space; returns ``{key: normalised spec}``.

    Raises :class:`SpaceError` naming the offending key and what is accepted."""
    source = ""
    if isinstance(space, (str, os.PathLike)):
        path = Path(space)
        if not path.is_file():
            raise FileNotFoundError(f"search space file not found: {path}")
        source = f" in {path}"
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise SpaceError(f"search space {path} is not valid YAML: {err}") from None
    else:
        raw = space
    if not isinstance(raw, Mapping) or not raw:
        raise SpaceError(f"a search space{source} must be a non-empty mapping of dotted recipe keys "
                         f"to specs such as {_EXAMPLE}; got {raw!r}")
    out = {key: _check_spec(key, spec, source) for key, spec in raw.items()}
    for key in out:
        for other in out:
            if other.startswith(key + "."):
                raise SpaceError(f"search space keys {key!r} and {other!r}{source} overlap: one "
                                 f"would overwrite the other")
    return out


def suggest(trial: optuna.trial.BaseTrial, space: str | os.PathLike | Mapping) -> dict[str, Any]:
    """Ask ``trial`` for one value per key of ``space``; returns ``{dotted key: value}``
    (Python ``float`` / ``int`` / the choice itself). Categorical choices that hold lists are
    asked as their JSON text (optuna's choices are scalars) and given back as lists."""
    out: dict[str, Any] = {}
    for key, s in load_space(space).items():
        if s["type"] == "float":
            out[key] = trial.suggest_float(key, s["low"], s["high"], log=s["log"], step=s["step"])
        elif s["type"] == "int":
            out[key] = trial.suggest_int(key, s["low"], s["high"], step=s["step"], log=s["log"])
        elif any(isinstance(c, list) for c in s["choices"]):
            out[key] = json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in s["choices"]]))
        else:
            out[key] = trial.suggest_categorical(key, s["choices"])
    return out
