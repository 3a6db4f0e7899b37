"""The baseline guard of :class:`TitansForecaster`: does the trained model beat the naive forecasts?

After training, when ``fit`` held out a validation tail (``val_size`` None: ``h`` steps per series;
``val_size >= h``: every window whose target lies in the last ``val_size`` steps), each series'
validation windows are forecast three ways:

* **model**: the trained network's point forecast from the window's context (the carried
  memory of ``test_time_memory`` is not used here: it is written from the validation steps);
* **seasonal naive**: each step repeats the value one season earlier (the most recent observed
  value at the same phase of the season, before the window); the season is :func:`season_length`
  of the data's frequency. A season of 1, or one longer than the history before the window,
  makes it repeat-last;
* **repeat-last**: the last observed value before the window.

Each is scored by its MAE over the observed target steps of the windows, in the series' scaled
units (each channel divided by its spread, :mod:`.scaling`), so series of different magnitudes
count alike. A naive forecast that has no observed past value for one of those steps is
unavailable for the series (NaN in the report), never made up. The per-series comparison is
``validation_report_`` (a pandas frame) and the season ``validation_season_``.

**Warning rule.** Among the series where the model and a naive are both scored, the model loses
on a series when its MAE exceeds the better naive's. ``fit`` warns (``UserWarning``) when it loses
on more than half of them, or when its mean MAE over them exceeds the better naive's mean MAE;
the warning names the share of losing series and the margin. Otherwise it is quiet.

**Fallback.** With ``naive_fallback=True``, ``predict`` forecasts each series the model lost
on with that series' better naive, from the end of the history it forecasts from (stored,
updated, or the ``df`` given for a fitted id): the point forecast is replaced and every quantile
/ interval column is shifted by the same difference (the model's spread kept around the naive
point). A channel whose naive has no observed past value keeps the model's forecast.

**Series too short to train on** (:func:`short_series`: fewer than ``h + 2`` steps, no
training window) are forecast by a naive always, whatever ``naive_fallback`` says: the
seasonal naive where the series holds one whole season, else repeat-last; their quantile /
interval columns are that point. ``fit`` warns, naming them, and refuses data where every
series is that short.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from pandas.tseries.frequencies import to_offset

from ..datasets.timeindex import restore_dtype
from ..datasets.windows import PAST, PAST_MASK, TIME_INDEX, SeriesWindows, collate_windows, exog_of
from .memory_store import BATCH

__all__ = ["season_length", "naive_forecast", "assess", "apply_fallback", "short_series", "report_columns",
           "report_to_json", "report_from_json", "NAIVES"]

NAIVES = ("seasonal_naive", "repeat_last")

# steps per season of each frequency unit: GluonTS's table (gluonts.time_feature.get_seasonality)
# but daily data, whose weekly cycle the guard compares against (the Monash archive's choice)
_BASE = {"s": 3600, "min": 1440, "h": 24, "D": 7, "B": 5, "W": 1, "M": 12, "Q": 4, "Y": 1}
_UNIT = {"S": "s", "s": "s", "T": "min", "min": "min", "H": "h", "h": "h", "BH": "h", "bh": "h",
         "D": "D", "B": "B", "C": "B", "W": "W", "M": "M", "MS": "M", "ME": "M", "BM": "M", "BMS": "M",
         "BME": "M", "CBMS": "M", "CBME": "M", "Q": "Q", "QS": "Q", "QE": "Q", "BQ": "Q", "BQS": "Q",
         "BQE": "Q", "A": "Y", "AS": "Y", "Y": "Y", "YS": "Y", "YE": "Y", "BA": "Y", "BAS": "Y",
         "BY": "Y", "BYS": "Y", "BYE": "Y"}


def season_length(freq: Any) -> int:
    """Steps per season of ``freq``: hourly 24, daily 7, business-daily 5, monthly 12, quarterly
    4, minutely 1440, secondly 3600; weekly, yearly, integer steps and unknown frequencies 1.
    A multiple (``"2h"``) divides the season when it can (12), else the season is 1."""
    if freq is None or not isinstance(freq, str):
        return 1
    try:
        offset = to_offset(freq)
    except (TypeError, ValueError):
        return 1
    base = _BASE.get(_UNIT.get(offset.name.split("-")[0], ""), 1)
    n = max(int(offset.n), 1)
    return base // n if base % n == 0 else 1


def _last_index(mask: np.ndarray) -> np.ndarray:
    """[T, C] index of the last observed step at or before each step (-1: none)."""
    idx = np.where(mask, np.arange(mask.shape[0])[:, None], -1)
    return np.maximum.accumulate(idx, axis=0) if len(idx) else idx


def _phase_index(mask: np.ndarray, season: int) -> np.ndarray:
    """[T, C] index of the last observed step at or before each step at the same phase of the
    season (-1: none)."""
    idx = np.where(mask, np.arange(mask.shape[0])[:, None], -1)
    for start in range(season, idx.shape[0], season):
        block = idx[start:start + season]
        prev = idx[start - season:start - season + len(block)]
        idx[start:start + season] = np.where(block >= 0, block, prev)
    return idx


def _gather(values: np.ndarray, index: np.ndarray, channel: np.ndarray) -> np.ndarray:
    out = values[np.maximum(index, 0), channel].astype(np.float64)
    return np.where(index >= 0, out, np.nan)


def _naives(values, mask, ends, h: int, season: int) -> dict[str, np.ndarray]:
    """Both naive forecasts [W, h, C] (float64, NaN: unavailable) from the origins ``ends``."""
    ends = np.asarray(ends, dtype=np.int64)
    C = values.shape[1]
    ch = np.arange(C)[None, None, :]
    last = _last_index(mask)
    prior = np.where(ends[:, None] >= 1, last[np.maximum(ends - 1, 0)], -1)  # [W, C]
    rl_idx = np.broadcast_to(prior[:, None, :], (len(ends), h, C))
    out = {"repeat_last": _gather(values, rl_idx, ch)}
    steps = ends[:, None] - season + (np.arange(h) % season)[None, :]  # [W, h]
    sn_idx = _phase_index(mask, season)[np.maximum(steps, 0)]  # [W, h, C]
    short = (ends < season)[:, None, None]  # less than a season before the window: repeat-last
    out["seasonal_naive"] = np.where(short, out["repeat_last"], _gather(values, sn_idx, ch))
    return out


def naive_forecast(values: np.ndarray, mask: np.ndarray, h: int, season: int, kind: str) -> np.ndarray:
    """The ``kind`` naive forecast [h, C] (float64; NaN: no observed past value) of the ``h``
    steps after the end of ``values`` [T, C] (``mask``: True where observed)."""
    return _naives(values, mask, [values.shape[0]], h, season)[kind][0]


@torch.no_grad()
def _model_points(est, values, masks, windows, firsts) -> np.ndarray:
    """The network's point forecasts [W, h, C] (scaled units) at the validation windows; NaN
    for a channel whose context holds no observed value."""
    net, L, C = est.model_.net, est.context_length_, est.n_targets_
    data = SeriesWindows(values, L, 0, windows, masks=masks, first_index=firsts, futr_horizon=est.h,
                         **est._window_kwargs())
    points = []
    for start in range(0, len(windows), BATCH):
        batch = collate_windows([data[k] for k in range(start, min(len(windows), start + BATCH))])
        out = net(batch[PAST], batch[PAST_MASK], time_index=batch.get(TIME_INDEX), exog=exog_of(batch))
        point = net.head.point(out)[..., :C].double().numpy()
        empty = ~batch[PAST_MASK][..., :C].any(1).numpy()  # [B, C]
        point[np.broadcast_to(empty[:, None, :], point.shape)] = np.nan
        points.append(point)
    return np.concatenate(points)


def _mae(forecast: np.ndarray, truth: np.ndarray, observed: np.ndarray) -> float:
    """MAE over the observed steps; NaN if there is none or the forecast misses one of them."""
    if not observed.any():
        return float("nan")
    err = np.abs(forecast - truth)[observed]
    return float(err.mean()) if np.isfinite(err).all() else float("nan")


def report_columns(id_col: str) -> list[str]:
    return [id_col, "model", *NAIVES, "best_naive", "model_wins"]


def _frame(est, ids, model, sn, rl) -> pd.DataFrame:
    model, sn, rl = (np.asarray(a, dtype=np.float64) for a in (model, sn, rl))
    both = np.stack([sn, rl], 1)
    has = np.isfinite(both).any(1)
    pick = np.where(np.isfinite(rl) & ~(sn < rl), 1, 0)  # ties and a missing seasonal: repeat-last
    best = np.where(has, both[np.arange(len(ids)), pick], np.nan)
    loses = has & ~(model <= best)  # a model without a forecast loses to an available naive
    return pd.DataFrame({est.id_col: restore_dtype(pd.Series(list(ids), dtype=object),
                                                   getattr(est, "id_dtype_", None)),
                         "model": model, "seasonal_naive": sn, "repeat_last": rl,
                         "best_naive": pd.Series([NAIVES[p] if ok else None for p, ok in zip(pick, has, strict=True)],
                                                 dtype=object),
                         "model_wins": ~loses})


def assess(est, values, masks, windows, firsts, warn: bool = True) -> None:
    """Score the model and both naives on the validation ``windows`` [(series, origin)] of the
    scaled ``values`` / ``masks``; set ``validation_report_`` / ``validation_season_`` (None
    without windows) and warn if the model does not beat the better naive."""
    est.validation_report_ = est.validation_season_ = None
    if not windows:
        return
    h, C = est.h, est.n_targets_
    season = season_length(est.freq_)
    points = _model_points(est, values, masks, windows, firsts)
    by_series: dict[int, list[int]] = {}
    for k, (i, _) in enumerate(windows):
        by_series.setdefault(i, []).append(k)
    scores: dict[str, list[float]] = {"model": [], "seasonal_naive": [], "repeat_last": []}
    for i in range(len(values)):
        ks = by_series.get(i, [])
        ends = [windows[k][1] for k in ks]
        v, m = values[i][:, :C], masks[i][:, :C]
        steps = np.asarray(ends, dtype=np.int64)[:, None] + np.arange(h)[None, :]
        truth = v[steps].astype(np.float64)
        observed = m[steps]
        naive = _naives(v, m, ends, h, season) if ks else {}
        scores["model"].append(_mae(points[ks], truth, observed) if ks else np.nan)
        for kind in NAIVES:
            scores[kind].append(_mae(naive[kind], truth, observed) if ks else np.nan)
    est.validation_report_ = _frame(est, est.history_["ids"], scores["model"],
                                    scores["seasonal_naive"], scores["repeat_last"])
    est.validation_season_ = int(season)
    if warn:
        check_report(est.validation_report_, season, bool(est.naive_fallback))


def check_report(report: pd.DataFrame, season: int, fallback_on: bool = False) -> str | None:
    """Warn (and return the message) when the model does not beat the better naive (the rule of
    the module docs); None when it does."""
    best = report[list(NAIVES)].min(axis=1, skipna=True).to_numpy(np.float64)
    model = report["model"].to_numpy(np.float64)
    scored = np.isfinite(best) & np.isfinite(model)
    n_lose = int((~report["model_wins"].to_numpy(bool) & np.isfinite(best)).sum())
    n = int((np.isfinite(best)).sum())
    if not n:
        return None
    m_model = float(model[scored].mean()) if scored.any() else float("nan")
    m_best = float(best[scored].mean()) if scored.any() else float("nan")
    if not (n_lose > n / 2 or not m_model <= m_best):
        return None
    margin = ("no series has both scores" if not scored.any() else
              f"{100 * (m_model / m_best - 1):+.1f}%" if m_best > 0 else "the naive is exact")
    todo = ("naive_fallback=True is on: predict() forecasts those series with their better naive"
            if fallback_on else "naive_fallback=True makes predict() forecast those series with "
            "their better naive")
    msg = (f"the model does not beat the naive baselines on the validation tail: it loses to the "
           f"better of seasonal naive (season {season}) and repeat-last on {n_lose} of {n} series "
           f"({100 * n_lose / n:.0f}%); mean MAE over series (scaled units) {m_model:.4g} against "
           f"{m_best:.4g} for the better naive ({margin}). See validation_report_ for each "
           f"series; {todo}.")
    warnings.warn(msg, UserWarning, stacklevel=5)
    return msg


def short_series(coll, h: int) -> dict:
    """{id: naive} for the series of ``coll`` too short to train on (fewer than ``h + 2``
    steps: :func:`titans_ts.defaults.min_train_length`), each with the naive that forecasts it:
    "seasonal_naive" where it holds one whole season (:func:`season_length` of its frequency,
    above 1), else "repeat_last". Warns naming them; a ``ValueError`` when no series is long
    enough to train on."""
    from ..datasets.frames import DataValidationError
    from ..defaults import MIN_PAST, min_train_length

    need = min_train_length(h)
    lengths = dict(zip(coll.ids, coll.lengths, strict=True))
    short = {sid: n for sid, n in lengths.items() if n < need}
    if not short:
        return {}
    why = f"h + {MIN_PAST} = {need} steps: a training window needs {MIN_PAST} past steps and h = {h} future ones"
    if len(short) == len(lengths):
        longest = max(lengths.values())
        raise DataValidationError(f"every series is too short to train on (fewer than {why}; the longest has "
                         f"{longest}). Forecast them with a naive method (seasonal naive, repeat-last), "
                         f"ask for a shorter h (at most {max(longest - MIN_PAST, 0)} here), or give longer series")
    season = season_length(coll.freq)
    kinds = {sid: "seasonal_naive" if 1 < season <= n else "repeat_last" for sid, n in short.items()}
    listed = ", ".join(f"{sid!r} ({n} steps, {kinds[sid]})" for sid, n in list(short.items())[:10])
    more = f" and {len(short) - 10} more" if len(short) > 10 else ""
    warnings.warn(f"{len(short)} of {len(lengths)} series too short to train on (fewer than {why}): "
                  f"{listed}{more}. predict forecasts them by their seasonal naive (season {season}) "
                  f"where they hold one whole season, else by repeating their last value (quantiles: "
                  f"that point); short_series_ lists them. The model trains on the other series.",
                  UserWarning, stacklevel=3)
    return kinds


def _choices(est) -> dict:
    flag = getattr(est, "naive_fallback", False)
    if not isinstance(flag, (bool, np.bool_)):  # (switched after fit, past check_params)
        raise ValueError(f"naive_fallback must be True or False, got {flag!r}")
    report = getattr(est, "validation_report_", None)
    if not flag or report is None:
        return {}
    lost = report[~report["model_wins"].to_numpy(bool) & report["best_naive"].notna().to_numpy()]
    return dict(zip(lost[est.id_col].tolist(), lost["best_naive"].tolist(), strict=True))


def apply_fallback(est, ids, values, masks, point: np.ndarray, qs: dict[float, np.ndarray]):
    """``point`` [N, H, C] and ``qs`` with the series the model lost on (``naive_fallback``)
    forecast by their better naive, and the series too short to train on (``short_series_``)
    by theirs, from the end of ``values`` (raw units); returns both."""
    choices = _choices(est)
    short = getattr(est, "short_series_", None) or {}
    if not choices and not short:
        return point, qs
    C, H = est.n_targets_, point.shape[1]
    season = est.validation_season_ or season_length(est.freq_)
    for n, sid in enumerate(ids):
        kind = short.get(sid, choices.get(sid))
        if kind is None:
            continue
        naive = naive_forecast(values[n][:, :C], masks[n][:, :C], H, season, kind)
        delta = np.where(np.isfinite(naive), naive - point[n], 0.0)
        point[n] = point[n] + delta
        for a in qs.values():
            a[n] = point[n] if sid in short else a[n] + delta
    return point, qs


def report_to_json(report: pd.DataFrame | None, id_col: str, ids_json) -> dict | None:
    """The report as JSON-ready lists (NaN as None; ids as ``ids_json`` writes them)."""
    if report is None:
        return None

    def num(col):
        return [None if not np.isfinite(x) else float(x) for x in report[col].to_numpy(np.float64)]

    return {"ids": [ids_json(i) for i in report[id_col].tolist()], "model": num("model"),
            "seasonal_naive": num("seasonal_naive"), "repeat_last": num("repeat_last"),
            "best_naive": [None if b is None or b != b else str(b) for b in report["best_naive"].tolist()],
            "model_wins": [bool(w) for w in report["model_wins"].tolist()]}


def report_from_json(est, data: dict | None) -> pd.DataFrame | None:
    """The report :func:`report_to_json` wrote (TypeError / KeyError if it is malformed)."""
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) != {"ids", "model", *NAIVES, "best_naive", "model_wins"}:
        raise TypeError("the validation report is malformed")
    lists = [data[k] for k in ("ids", "model", *NAIVES, "best_naive", "model_wins")]
    if not all(isinstance(x, list) and len(x) == len(data["ids"]) for x in lists) \
            or any(b is not None and b not in NAIVES for b in data["best_naive"]) \
            or not all(isinstance(w, bool) for w in data["model_wins"]) \
            or not all(x is None or isinstance(x, (int, float)) and not isinstance(x, bool)
                       for k in ("model", *NAIVES) for x in data[k]):
        raise TypeError("the validation report is malformed")
    frame = _frame(est, data["ids"], [np.nan if x is None else x for x in data["model"]],
                   [np.nan if x is None else x for x in data["seasonal_naive"]],
                   [np.nan if x is None else x for x in data["repeat_last"]])
    frame["model_wins"] = np.asarray(data["model_wins"], dtype=bool)
    return frame
