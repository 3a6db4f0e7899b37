"""A fitted :class:`TitansForecaster`'s state: each series' history, its units (:mod:`.scaling`)
and its carried memory (:mod:`.memory_store`); checks of new frames against it, and ``update``.

``history_`` holds per series the raw inputs ``values`` [T, C + K] and ``masks``, the time
``index``, the ``firsts`` (each series' first step, for a learned cycle), and the units: ``loc``
and ``scale`` [C + K] (float64), fixed at fit and kept across ``update``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..datasets.frames import DataValidationError, SeriesCollection
from ..datasets.timeindex import fmt, next_steps
from .inference import MAGNITUDE_LIMIT, network_outputs, scaled_inputs
from .memory_store import SeriesMemory
from .scaling import Stats, series_stats

__all__ = ["set_history", "history_collection", "stream_memory", "memorise", "memory_for",
           "check_new", "update"]


def set_history(est, coll: SeriesCollection, stats: Stats | None = None,
                trained_until: int | list[int] | None = None) -> None:
    """Store ``coll`` as the history (units from ``stats``, or from ``coll`` itself) and build
    the carried memories from it. ``trained_until``: the steps of each series' end that training
    did not see (its validation tail; one per series or one for all): the carried memory starts
    there, ``h`` windows before, as the online benchmark's stream starts at the end of the
    training rows (None: the whole
    history is new to the model, e.g. frames given to ``predict``)."""
    values, masks = est._inputs(coll)
    loc, scale = stats if stats is not None else series_stats(values, masks)
    est.history_ = {"ids": list(coll.ids), "values": values, "masks": masks,
                    "index": list(coll.index), "firsts": est._firsts(coll.index, coll.freq),
                    "loc": list(loc), "scale": list(scale)}
    est.stream_memory_ = stream_memory(est) if est.test_time_memory else None
    if isinstance(trained_until, int):
        trained_until = [trained_until] * len(values)
    start = None if trained_until is None else [max(1, v.shape[0] - tu - est.h)
                                                for v, tu in zip(values, trained_until, strict=True)]
    est.memory_ = SeriesMemory(len(coll.ids), start=start)
    memorise(est, est.memory_, values, masks, (loc, scale), est.history_["firsts"], range(len(coll.ids)))


def history_collection(est) -> SeriesCollection:
    """The stored history as the series collection it was read from."""
    hist, C = est.history_, est.n_targets_
    covs = [v[:, C:] for v in hist["values"]] if est.covariate_names_ else None
    return SeriesCollection(
        ids=list(hist["ids"]), values=[v[:, :C] for v in hist["values"]],
        masks=[m[:, :C] for m in hist["masks"]], index=list(hist["index"]), freq=est.freq_,
        channels=list(est.channels_), covariates=covs, covariate_names=list(est.covariate_names_),
        layout=est.layout_, flavour=est.flavour_, id_col=est.id_col, time_col=est.time_col_,
        target_col=est.target_col, id_dtype=getattr(est, "id_dtype_", None),
        time_dtype=getattr(est, "time_dtype_", None))


def stream_memory(est):
    """The carried memory's layer (its maps drawn from ``seed``; learning at ``memory_pace``)."""
    from ..model.stream_memory import StreamMemory, StreamMemoryConfig

    pace = tuple(float(x) for x in est.memory_pace)
    if len(pace) != 3:
        raise ValueError(f"memory_pace must be three gate logits (forgetting, momentum, inner "
                         f"learning rate), got {est.memory_pace!r}")
    fallback = getattr(est, "memory_fallback_gains_", None)
    if fallback is None:  # a fit: today's default, kept with the model (a saved file keeps its own)
        fallback = StreamMemoryConfig().fallback_gains
    est.memory_fallback_gains_ = [float(g) for g in fallback]
    g = torch.random.get_rng_state()
    torch.manual_seed(est.seed)
    try:
        # the online benchmark's settings (StreamMemoryConfig's defaults), at the forecaster's pace
        return StreamMemory(est.context_length_, est.h, pace=pace,
                            fallback_gains=tuple(est.memory_fallback_gains_)).eval()
    finally:
        torch.random.set_rng_state(g)


def memorise(est, store: SeriesMemory, values, masks, stats: Stats, firsts, which) -> None:
    """Write the completed windows of the series ``which`` into ``store`` (scaled units)."""
    if est.test_time_memory:
        which = list(which)
        store.write(est.model_.net, est.stream_memory_, scaled_inputs(values, stats, which), masks,
                    firsts, est.context_length_, est.h, est.n_targets_, which)


def memory_for(est, values, masks, stats: Stats, firsts=None) -> SeriesMemory | None:
    """Memory states of other series (predict(df=...)), without touching the stored ones."""
    if not est.test_time_memory:
        return None
    store = SeriesMemory(len(values))
    memorise(est, store, values, masks, stats, firsts, range(len(values)))
    return store


def check_new(est, coll: SeriesCollection, same_ids: bool) -> SeriesCollection:
    """``coll`` if it has the fitted channels and layout (and, with ``same_ids``, known ids)."""
    if list(coll.channels) != est.channels_ or list(coll.covariate_names) != est.covariate_names_:
        raise DataValidationError(
            f"the frame has channels {coll.channels} and covariates {coll.covariate_names}; this "
            f"forecaster was fitted on channels {est.channels_} and covariates {est.covariate_names_}")
    if coll.layout != est.layout_:
        raise DataValidationError(f"the frame is {coll.layout}; this forecaster was fitted on a "
                                  f"{est.layout_} frame")
    if same_ids:
        known = est.history_["ids"]
        unknown = [i for i in coll.ids if i not in set(known)]
        if unknown:
            text = {str(k): k for k in known}
            alike = [f"{u!r} (the forecaster knows {text[str(u)]!r}, a {type(text[str(u)]).__name__})"
                     for u in unknown if str(u) in text]
            hint = f"; ids are compared with their type: {', '.join(alike[:3])}" if alike else ""
            raise DataValidationError(
                f"update() got series the forecaster has not seen: {unknown[:5]}; update() extends "
                f"known series (use predict(df=...) to forecast new ones, or fit again){hint}")
    return coll


def _check_continues(est, coll: SeriesCollection, pos: dict) -> None:
    for n, sid in enumerate(coll.ids):
        old, new = est.history_["index"][pos[sid]], coll.index[n]
        if old is None or new is None or est.freq_ is None:
            continue
        expected = next_steps(old, est.freq_, 1)[0]
        if new[0] != expected:
            raise DataValidationError(
                f"series {sid!r}: update() rows must start right after the last known "
                f"timestamp {fmt(old[-1])} (expected {fmt(expected)}, got {fmt(new[0])}); pass only "
                f"new rows, with NaN for missing values")


def update(est, coll: SeriesCollection) -> None:
    """Append ``coll``'s rows to the known series and write them into their memories; if the
    series' next forecasts would not be finite, restore everything and raise."""
    values, masks = est._inputs(coll)
    hist, store = est.history_, est.memory_
    pos = {sid: k for k, sid in enumerate(hist["ids"])}
    _check_continues(est, coll, pos)  # every series before changing any
    touched = [pos[sid] for sid in coll.ids]
    _check_magnitude(est, coll.ids, values, [(hist["loc"][k], hist["scale"][k]) for k in touched])
    saved = {k: (hist["values"][k], hist["masks"][k], hist["index"][k], store[k].snapshot()) for k in touched}
    for n, k in enumerate(touched):
        hist["values"][k] = np.concatenate([hist["values"][k], values[n]])
        hist["masks"][k] = np.concatenate([hist["masks"][k], masks[n]])
        if hist["index"][k] is not None and coll.index[n] is not None:
            hist["index"][k] = hist["index"][k].append(coll.index[n])
    stats = (hist["loc"], hist["scale"])
    try:
        memorise(est, store, hist["values"], hist["masks"], stats, hist.get("firsts"), touched)
        _check_after_update(est, touched, stats)
    except BaseException:
        for k, (v, m, idx, record) in saved.items():
            hist["values"][k], hist["masks"][k], hist["index"][k] = v, m, idx
            store.series[k] = record
        raise


def _check_magnitude(est, ids, values, units) -> None:
    """Refuse new rows so far outside the units a series was fitted in that float32 overflows."""
    far = []
    for sid, v, (loc, scale) in zip(ids, values, units, strict=True):
        z = np.abs((v.astype(np.float64) - loc) / scale)
        if np.isfinite(z).any() and np.nanmax(z) > MAGNITUDE_LIMIT:
            far.append((sid, float(np.nanmax(z)), float(loc[np.nanargmax(z.max(0))]),
                        float(scale[np.nanargmax(z.max(0))])))
    if far:
        sid, z, loc, scale = max(far, key=lambda t: t[1])
        raise DataValidationError(
            f"update() rows of series {[f[0] for f in far][:5]} make their next forecast non-finite: "
            f"their new values reach {z:.3g} times the spread the forecaster fixed for them at fit "
            f"(series {sid!r}: centre {loc:.4g}, spread {scale:.4g}); values that far out overflow "
            f"float32. Check the rows' units, or fit again on data that includes them. Nothing was "
            f"updated.")


def _check_after_update(est, touched: list[int], stats: Stats) -> None:
    """Raise (naming the series and the cause) if a touched series' next forecast is not finite."""
    hist = est.history_
    vals = [hist["values"][k] for k in touched]
    sub = ([stats[0][k] for k in touched], [stats[1][k] for k in touched])
    scaled = scaled_inputs(vals, sub)
    firsts = None if hist.get("firsts") is None else [hist["firsts"][k] for k in touched]
    memory = SeriesMemory.of([est.memory_[k] for k in touched]) if est.test_time_memory else None
    outs = network_outputs(est, scaled, [hist["masks"][k] for k in touched], memory, firsts,
                           static=est._stored_static(touched))
    point = np.concatenate([est.model_.net.head.point(o).numpy() for o in outs])
    bad = [j for j in range(len(touched)) if not np.isfinite(point[j]).all()]
    if bad:
        L = est.context_length_
        names = [hist["ids"][touched[j]] for j in bad]
        mag = max(float(np.nanmax(np.abs(scaled[j][-L:]), initial=0.0)) for j in bad)
        cause = (f"their new values reach {mag:.3g} times the spread the forecaster fixed for them "
                 f"at fit (values that far out overflow float32): check the rows' units, or fit "
                 f"again on data that includes them" if mag > MAGNITUDE_LIMIT else
                 "the network's output is not finite from inputs of ordinary magnitude (the "
                 "neural memory diverged: refit with a lower memory max_lr)")
        raise DataValidationError(f"update() rows of series {names[:5]} make their next forecast "
                                  f"non-finite: {cause}. Nothing was updated.")
