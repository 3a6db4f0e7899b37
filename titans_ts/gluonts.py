"""GluonTS integration: :class:`TitansEstimator`, a ``PyTorchLightningEstimator`` around :class:`TitansNet`.

    estimator = TitansEstimator(freq="ME", prediction_length=18, context_length=36,
                                trainer_kwargs={"max_epochs": 20})
    predictor = estimator.train(train_ds)            # a gluonts PyTorchPredictor
    forecasts = list(predictor.predict(test_ds))     # SampleForecast (student_t head)
                                                     # or QuantileForecast (quantile head)

Univariate targets only (each series is one channel, C = 1), with the covariates described
below. The pipeline is GluonTS's own, after a check of every entry:

    entry -> CheckEntries: refuses an empty or all-NaN target, +/-inf, ``feat_dynamic_cat`` (not
             read: refused rather than dropped without a word), and (prediction) a context
             without an observed value; reads a ``start`` given as a timestamp (or text) as a
             period of the estimator's ``freq``
          -> SelectFields(item_id, info, start, target, the covariate fields)
          -> AsNumpyArray(target, float64)
          -> AddObservedValuesIndicator (NaN -> 0, observed mask 0)
          -> CovariateFields: the covariates checked and stacked (see below)
          -> InstanceSplitter (training: ExpectedNumInstanceSampler, validation:
             ValidationSplitSampler, prediction: TestSplitSampler), left-padding contexts shorter
             than ``context_length`` with value 0 and observed mask 0
          -> each window centred and scaled by its observed context (mean and standard
             deviation, in float64: a target of 1e30, or a unit-size signal on a level of 1e8,
             reaches the float32 network as numbers of order one; forecasts are mapped back)
          -> TitansNet(past [B, L, 1], observed mask [B, L, 1], the standardised covariates)

Covariates, read as GluonTS's own estimators read them (DeepAR's argument names): ``feat_dynamic_real``
(``num_feat_dynamic_real`` rows, future-known: at prediction they reach ``prediction_length``
steps past the target), ``past_feat_dynamic_real`` (``num_past_feat_dynamic_real`` rows,
past-only), ``feat_static_real`` (``num_feat_static_real`` values) and ``feat_static_cat``
(``num_feat_static_cat`` codes below ``cardinality``), and calendar features of the frequency
(``time_features``, future-known). :class:`CovariateFields` checks and stacks them (NaN:
unobserved, masked; +/-inf, a field the estimator was not told to read and a category unseen at
training are refused naming the entry), the splitter cuts them with the target, and the module
standardises the real-valued ones with their centre and spread over the training data (fixed at
``train``, saved with the predictor) in float64 before the float32 network reads them, as it
scales the target.

Missing and padded context values enter the network only through its observed mask; missing future
values are left out of the loss. The predictor is a ``PyTorchPredictor`` (:class:`TitansPredictor`,
which adds a content check to its saved weights): it works with ``make_evaluation_predictions``,
``Evaluator``, ``backtest_metrics``, rolling ``split(...).generate_instances(...)`` windows, and
``serialize`` / ``Predictor.deserialize``.
"""

# no ``from __future__ import annotations``: GluonTS's ``@validated`` builds pydantic models from
# the annotations and needs them as real types, not strings

import datetime
import functools
import time
import warnings
from typing import Any, Dict, Iterable, List, Optional, Union

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from gluonts.core.component import validated
from gluonts.dataset.common import Dataset
from gluonts.dataset.field_names import FieldName
from gluonts.dataset.loader import as_stacked_batches
from gluonts.env import env
from gluonts.itertools import Cached, Cyclic
from gluonts.model.forecast_generator import QuantileForecastGenerator, SampleForecastGenerator
from gluonts.torch.model.estimator import PyTorchLightningEstimator, TrainOutput
from gluonts.torch.model.predictor import PyTorchPredictor
from gluonts.transform import (
    AddObservedValuesIndicator,
    AsNumpyArray,
    ExpectedNumInstanceSampler,
    InstanceSampler,
    InstanceSplitter,
    MapTransformation,
    SelectFields,
    TestSplitSampler,
    Transformation,
    ValidationSplitSampler,
)

from . import defaults as _defaults
from .datasets.frames import period_freq
from .datasets.timefeatures import resolve_time_features, time_feature_values
from .defaults import (
    MIN_PAST,
    TIME_BUDGET,
    batches_per_epoch,
    data_defaults,
    epochs_for,
    min_train_length,
    parse_time_budget,
    tail_sizes,
    time_steps,
)
from .integrity import LOAD_ERRORS, IntegrityError, load_failure, stamp_checkpoint, verify_checkpoint
from .model.config import TitansConfig, TrainingConfig, check_keys
from .model.network import TitansNet
from .model.optim import configure_optimizers
from .training import fit_module, step_seconds, training_device

__all__ = ["TitansEstimator", "TitansPredictor", "TitansGluonTSModule", "CheckEntries", "CovariateFields",
           "GLUONTS_HEADS",
           "SCHEDULERS", "DEFAULT_QUANTILES", "PREDICTION_INPUT_NAMES", "TRAINING_INPUT_NAMES",
           "COVARIATE_INPUT_NAMES", "COVARIATE_FIELDS", "UNREAD_FIELDS"]

GLUONTS_HEADS = ("student_t", "quantile")
SCHEDULERS = ("cosine", "none")
DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the Evaluator's default levels

PREDICTION_INPUT_NAMES = ["past_target", "past_observed_values"]
TRAINING_INPUT_NAMES = PREDICTION_INPUT_NAMES + ["future_target", "future_observed_values"]
#: the network's inputs beside the target when it reads covariates (in the order of
#: :meth:`TitansGluonTSModule.forward`'s arguments)
COVARIATE_INPUT_NAMES = ["feat_static_cat", "feat_static_real", "feat_static_real_observed",
                         "past_feat_dynamic", "future_feat_dynamic", "past_feat_dynamic_observed",
                         "future_feat_dynamic_observed", "past_past_feat_dynamic_real",
                         "past_past_feat_dynamic_real_observed"]
# the stacked future-known covariates (calendar features, then feat_dynamic_real) and the masks
_FEAT_DYNAMIC, _OBSERVED = "feat_dynamic", "_observed"

# what the estimator sets itself: the lengths come from prediction_length / context_length and
# every series is one channel; the covariate counts from the num_* arguments
_DERIVED = ("seq_len", "horizon", "n_channels", "n_hist_exog", "n_futr_exog", "n_stat_exog",
            "stat_cat_cardinalities")
#: the network settings the estimator accepts as keyword arguments (TitansConfig's fields)
MODEL_SETTINGS = tuple(f for f in TitansConfig.fields() if f not in _DERIVED)


#: the entry fields of covariates the estimator reads (each with its ``num_...`` argument; a field
#: given while its count is 0 is refused, not dropped: :class:`CovariateFields`)
COVARIATE_FIELDS = (FieldName.FEAT_DYNAMIC_REAL, FieldName.PAST_FEAT_DYNAMIC_REAL, FieldName.FEAT_STATIC_REAL,
                    FieldName.FEAT_STATIC_CAT)
#: covariate fields the estimator does not read at all (refused, not dropped: :class:`CheckEntries`)
UNREAD_FIELDS = (FieldName.FEAT_DYNAMIC_CAT,)


def _window_stats(past: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window centre and scale [B] (float64) of the observed context: the mean and the
    standard deviation, as :mod:`titans_ts.forecaster.scaling` scales a series (a constant
    context: scale ``|centre|``, or 1 if that is 0; no observed value: centre 0, scale 1)."""
    m = mask > 0
    x = torch.where(m, past.to(torch.float64), 0.0)
    n = m.sum(1)
    centre = x.sum(1) / n.clamp_min(1)
    lo = torch.where(m, x, torch.inf).amin(1)
    hi = torch.where(m, x, -torch.inf).amax(1)
    constant = (n > 0) & (hi == lo)
    centre = torch.where(constant, lo, centre)
    spread = torch.sqrt((torch.where(m, x - centre[:, None], 0.0) ** 2).sum(1) / n.clamp_min(1))
    fallback = torch.where(centre.abs() > 0, centre.abs(), torch.ones_like(centre))
    ok = torch.isfinite(spread) & (spread > 0) & ~constant
    return centre, torch.where(ok, spread, fallback)


def _scaled(x: torch.Tensor, mask: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(x - centre) / scale`` per window as float32 (computed in float64; 0 where unobserved)."""
    z = (x.to(torch.float64) - centre[:, None]) / scale[:, None]
    return torch.where(mask > 0, z, 0.0).to(torch.float32)


class CovariateFields(MapTransformation):
    """Checks and stacks an entry's covariates for the network (the estimator's pipeline when it
    reads any; see the module documentation).

    Adds ``feat_dynamic`` [Kf, T (+ prediction_length at prediction)]: the calendar features
    ``time_features`` computed from ``start``, then ``feat_dynamic_real``; ``past_feat_dynamic_real``
    [Kp, T]; ``feat_static_real`` [Ks] (the real fields float64, standardised in float64 by the
    module) and ``feat_static_cat`` [Kc] (int64); each real field with an ``_observed`` mask
    (NaN: unobserved, entered as 0). A kind the estimator does not read is
    an empty array. A field that is missing, has the wrong number of rows, is too short, holds
    +/-inf, or a category code outside ``0 .. cardinality - 1`` (a category unseen at training) is
    an error naming the entry and the field; so is a covariate field the estimator was not told
    to read (``num_...`` 0), which would otherwise be dropped silently."""

    @validated()
    def __init__(self, prediction_length: int, time_features: List[str], num_feat_dynamic_real: int = 0,
                 num_past_feat_dynamic_real: int = 0, num_feat_static_real: int = 0,
                 cardinality: List[int] = []) -> None:  # noqa: B006 - GluonTS's @validated style
        self.prediction_length = prediction_length
        self.time_features = list(time_features)
        self.counts = {FieldName.FEAT_DYNAMIC_REAL: num_feat_dynamic_real,
                       FieldName.PAST_FEAT_DYNAMIC_REAL: num_past_feat_dynamic_real,
                       FieldName.FEAT_STATIC_REAL: num_feat_static_real,
                       FieldName.FEAT_STATIC_CAT: len(cardinality)}
        self.cardinality = list(cardinality)

    def _field(self, data: dict, name: str, ndim: int, length: Optional[int], what: str, label: str):
        k = self.counts[name]
        value = data.get(name)
        if not k:
            if value is not None and np.asarray(value).size:
                arg = {FieldName.FEAT_STATIC_CAT: "num_feat_static_cat (and cardinality)"}.get(name, f"num_{name}")
                raise ValueError(f"{label} has {name} but the estimator reads none ({arg}=0): "
                                 f"give {arg} to use it, or leave the field out (nothing is dropped silently)")
            shape = (0,) if ndim == 1 else (0, length)
            return np.zeros(shape, np.int64 if name == FieldName.FEAT_STATIC_CAT else np.float64)
        if value is None:
            raise ValueError(f"{label} has no {name} field; the estimator reads {k} {what} "
                             f"({name})")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{label}: {name} is not numeric ({err})") from None
        if ndim == 2 and arr.ndim == 1 and k == 1:
            arr = arr[None, :]
        if arr.ndim != ndim or arr.shape[0] != k:
            want = f"[{k}]" if ndim == 1 else f"[{k}, time]"
            raise ValueError(f"{label}: {name} must be {want} ({what}), got shape {list(arr.shape)}")
        if ndim == 2 and length is not None and arr.shape[1] < length:
            raise ValueError(f"{label}: {name} has {arr.shape[1]} steps; it needs {length} (the target's "
                             + ("and prediction_length more: future-known values over the horizon"
                                if length > len(data[FieldName.TARGET]) else "length") + ")")
        arr = arr if ndim == 1 else arr[:, :length]
        infinite = np.argwhere(np.isinf(arr))
        if len(infinite):
            where = (f"position(s) {infinite[:5, 0].tolist()}" if ndim == 1 else
                     f"(row, step) {[tuple(ix) for ix in infinite[:5].tolist()]}")
            raise ValueError(f"{label}: {name} holds +/-inf at {where}; use NaN for a missing value")
        return arr

    def map_transform(self, data: dict, is_train: bool) -> dict:
        return self.check(data, is_train, _label(data, None))

    def check(self, data: dict, is_train: bool, label: str) -> dict:
        """:meth:`map_transform` with ``label`` naming the entry in a refusal."""
        T = len(data[FieldName.TARGET])
        T_f = T if is_train else T + self.prediction_length
        dyn = self._field(data, FieldName.FEAT_DYNAMIC_REAL, 2, T_f, "future-known covariates", label)
        past = self._field(data, FieldName.PAST_FEAT_DYNAMIC_REAL, 2, T, "past-only covariates", label)
        real = self._field(data, FieldName.FEAT_STATIC_REAL, 1, None, "static values", label)
        cat = self._field(data, FieldName.FEAT_STATIC_CAT, 1, None, "static category codes", label)
        if self.cardinality:
            if np.isnan(cat).any() or (cat != np.round(cat)).any():
                raise ValueError(f"{label}: feat_static_cat must hold integer category codes, got {cat}")
            for j, (code, card) in enumerate(zip(cat.astype(np.int64), self.cardinality, strict=True)):
                if not 0 <= code < card:
                    raise ValueError(f"{label}: feat_static_cat[{j}] = {code} is not a category of "
                                     f"the training data (codes 0 .. {card - 1}, cardinality {card}); a "
                                     f"category unseen at training cannot be embedded")
        cal = np.zeros((0, T_f), np.float32)
        if self.time_features:
            start = data[FieldName.START]
            index = pd.period_range(start, periods=T_f, freq=start.freq)
            cal = time_feature_values(index, self.time_features).T
        feat = np.concatenate([cal.astype(np.float64), dyn], 0)
        for name, arr in ((_FEAT_DYNAMIC, feat), (FieldName.PAST_FEAT_DYNAMIC_REAL, past),
                          (FieldName.FEAT_STATIC_REAL, real)):
            seen = ~np.isnan(arr)
            data[name] = np.where(seen, arr, 0.0)  # float64: standardised before float32
            data[name + _OBSERVED] = seen.astype(np.float32)
        data[FieldName.FEAT_STATIC_CAT] = cat.astype(np.int64)
        data.pop(FieldName.FEAT_DYNAMIC_REAL, None)
        return data


class TitansGluonTSModule(pl.LightningModule):
    """The trained network: a :class:`TitansNet` on one channel, with the GluonTS batch layout.

    Training batches hold ``past_target`` / ``past_observed_values`` [B, L] and ``future_target`` /
    ``future_observed_values`` [B, H]. Each window is centred and scaled by its observed context
    (:func:`_window_stats`, float64) before the float32 network, and its forecast mapped back; the
    loss (Student-t negative log-likelihood or pinball loss) counts observed future points only,
    in those scaled units, so every series weighs alike whatever its units or magnitude.

    As the predictor's network, ``forward(past_target, past_observed_values)`` returns
    ``num_samples`` sample paths [B, S, H] (student_t head) or ``((quantiles [B, H, Q],), None,
    None)``, the layout of GluonTS's ``QuantileForecastGenerator`` (quantile head). A network
    that reads covariates takes :data:`COVARIATE_INPUT_NAMES` after those two (batch fields of the
    same names), and standardises the real-valued ones with ``exog_scaling`` (per kind,
    ``"futr"``: the ``feat_dynamic_real`` rows, ``"hist"``: ``past_feat_dynamic_real``,
    ``"static"``: ``feat_static_real``, each ``[centres, spreads]``; calendar features are used
    as they are), in float64 before the float32 network, as it scales the target.
    """

    @validated()
    def __init__(self, model_kwargs: Dict[str, Any], num_samples: int = 100, lr: float = TrainingConfig.lr,
                 weight_decay: float = TrainingConfig.weight_decay, scheduler: str = "cosine",
                 total_steps: Optional[int] = None, n_time_features: int = 0,
                 exog_scaling: Optional[Dict[str, List[List[float]]]] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        config = TitansConfig.from_dict(model_kwargs, n_channels=1)
        if config.head not in GLUONTS_HEADS:
            raise ValueError(f"head must be one of {GLUONTS_HEADS}, got {config.head!r}")
        self.head = config.head
        self.quantiles = config.quantiles
        self.net = TitansNet(config)
        self.num_samples = num_samples
        self.lr, self.weight_decay = lr, weight_decay
        self.scheduler, self.total_steps = scheduler, total_steps
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        # the estimator's "cosine" is per optimiser step, down to lr / 20 over the run's steps
        self.training_config = TrainingConfig(
            lr=lr, weight_decay=weight_decay,
            scheduler="cosine_steps" if scheduler == "cosine" and total_steps else "none")
        self.n_time_features = n_time_features
        scaling = dict(exog_scaling or {})
        wanted = {"futr": config.n_futr_exog - n_time_features, "hist": config.n_hist_exog,
                  "static": config.n_stat_exog}
        for kind, k in wanted.items():  # (plain buffers: the state dict carries them too)
            loc, spread = scaling.get(kind, [[0.0] * k, [1.0] * k])
            if len(loc) != k or len(spread) != k:
                raise ValueError(f"exog_scaling[{kind!r}] must hold {k} centres and spreads")
            if kind == "futr":  # the calendar features first, as they are
                loc, spread = [0.0] * n_time_features + list(loc), [1.0] * n_time_features + list(spread)
            # float64, as the target's centring: a level of 1e8 keeps its unit-size signal
            self.register_buffer(f"{kind}_loc", torch.tensor(loc, dtype=torch.float64), persistent=False)
            self.register_buffer(f"{kind}_scale", torch.tensor(spread, dtype=torch.float64), persistent=False)

    def _exog(self, feat_static_cat=None, feat_static_real=None, feat_static_real_observed=None,
              past_feat_dynamic=None, future_feat_dynamic=None, past_feat_dynamic_observed=None,
              future_feat_dynamic_observed=None, past_past_feat_dynamic_real=None,
              past_past_feat_dynamic_real_observed=None) -> Optional[dict]:
        """The network's covariate inputs from the batch fields (standardised in float64, then
        float32)."""
        c = self.net.config
        if not c.has_exog:
            return None

        def standard(x, loc, scale):
            return ((x.to(torch.float64) - loc) / scale).to(torch.float32)

        exog = {}
        if c.n_hist_exog:
            exog["hist_exog"] = standard(past_past_feat_dynamic_real, self.hist_loc, self.hist_scale)
            exog["hist_exog_mask"] = past_past_feat_dynamic_real_observed > 0
        if c.n_futr_exog:
            both = torch.cat([past_feat_dynamic, future_feat_dynamic], 1)
            exog["futr_exog"] = standard(both, self.futr_loc, self.futr_scale)
            exog["futr_exog_mask"] = torch.cat([past_feat_dynamic_observed, future_feat_dynamic_observed], 1) > 0
        if c.n_stat_exog:
            exog["stat_exog"] = standard(feat_static_real, self.static_loc, self.static_scale)
            exog["stat_exog_mask"] = feat_static_real_observed > 0
        if c.stat_cat_cardinalities:
            exog["stat_cat"] = feat_static_cat.long()
        return exog

    # ------------------------------------------------------------------ prediction
    def forward(self, past_target: torch.Tensor, past_observed_values: torch.Tensor,
                feat_static_cat=None, feat_static_real=None, feat_static_real_observed=None,
                past_feat_dynamic=None, future_feat_dynamic=None, past_feat_dynamic_observed=None,
                future_feat_dynamic_observed=None, past_past_feat_dynamic_real=None,
                past_past_feat_dynamic_real_observed=None):
        centre, scale = _window_stats(past_target, past_observed_values)
        past = _scaled(past_target, past_observed_values, centre, scale).unsqueeze(-1)
        exog = self._exog(feat_static_cat, feat_static_real, feat_static_real_observed, past_feat_dynamic,
                          future_feat_dynamic, past_feat_dynamic_observed, future_feat_dynamic_observed,
                          past_past_feat_dynamic_real, past_past_feat_dynamic_real_observed)
        out = self.net(past, past_observed_values.unsqueeze(-1) > 0, exog=exog)
        if self.head == "quantile":  # [B, H, Q], back in the series' units
            q = out[:, :, 0, :].to(torch.float64) * scale[:, None, None] + centre[:, None, None]
            return (q,), None, None
        samples = out.sample((self.num_samples,))[..., 0].permute(1, 0, 2)  # [B, S, H]
        return (samples.to(torch.float64) * scale[:, None, None] + centre[:, None, None]).contiguous()

    # ------------------------------------------------------------------ training
    def _loss(self, batch) -> torch.Tensor:
        past_mask, future_mask = batch["past_observed_values"], batch["future_observed_values"]
        # everything in the window's scaled units: every series weighs alike whatever its units
        centre, scale = _window_stats(batch["past_target"], past_mask)
        past = _scaled(batch["past_target"], past_mask, centre, scale)
        future = _scaled(batch["future_target"], future_mask, centre, scale)
        exog = self._exog(**{k: batch[k] for k in COVARIATE_INPUT_NAMES if k in batch})
        out = self.net(past.unsqueeze(-1), past_mask.unsqueeze(-1) > 0, exog=exog)
        return self.net.head.loss(out, future.unsqueeze(-1), future_mask.unsqueeze(-1))

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, on_epoch=True, on_step=False, prog_bar=True,
                 batch_size=batch["past_target"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("val_loss", loss, on_epoch=True, on_step=False, prog_bar=True,
                 batch_size=batch["past_target"].shape[0])
        return loss

    # the content digests of checkpoints (titans_ts.integrity): written with every checkpoint,
    # checked when one is read back (GluonTS reloads the best epoch's)
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stamp_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        where = getattr(self._trainer, "ckpt_path", None) if self._trainer is not None else None
        verify_checkpoint(checkpoint, where, parts=("state_dict", "rest"))

    def configure_optimizers(self):
        """:func:`titans_ts.model.optim.configure_optimizers` on ``training_config``."""
        return configure_optimizers(self, self.training_config, self._trainer, total_steps=self.total_steps)


def _check_freq(freq: str) -> str:
    from pandas.tseries.frequencies import to_offset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas-1 aliases ("M", "H") still parse, with a warning
        try:
            to_offset(freq)
        except (ValueError, TypeError) as err:
            raise ValueError(f"freq must be a pandas frequency alias such as 'ME', 'MS', 'W', 'D', "
                             f"'h', 'min' (GluonTS's 'M', 'H' also work), got {freq!r}") from err
    return freq


class TitansPredictor(PyTorchPredictor):
    """GluonTS's ``PyTorchPredictor`` whose saved weights carry a content digest.

    ``serialize(path)`` writes what GluonTS writes plus ``prediction-net-state.sha256`` (the
    SHA-256 of the weights file); ``Predictor.deserialize(path)`` checks it before the weights are
    read, so an edited or corrupted file is refused naming it (:class:`~titans_ts.integrity.IntegrityError`)
    instead of forecasting with changed weights, and a file torch refuses to unpickle is reported
    without torch's advice to load it unsafely."""

    STATE_FILE = "prediction-net-state.pt"
    DIGEST_FILE = "prediction-net-state.sha256"

    @staticmethod
    def _file_digest(path) -> str:
        import hashlib

        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def serialize(self, path) -> None:
        from pathlib import Path

        path = Path(path)
        super().serialize(path)
        (path / self.DIGEST_FILE).write_text(self._file_digest(path / self.STATE_FILE) + "\n")

    @classmethod
    def deserialize(cls, path, device=None) -> "PyTorchPredictor":
        from pathlib import Path

        path = Path(path)
        state, stamp = path / cls.STATE_FILE, path / cls.DIGEST_FILE
        if not state.is_file():
            raise FileNotFoundError(2, f"predictor {path}: its weights file {cls.STATE_FILE} is missing")
        if not stamp.is_file():
            raise IntegrityError(f"predictor {path}: {cls.DIGEST_FILE} (the digest of its weights) is "
                                 f"missing; it was removed after the predictor was saved: serialize "
                                 f"it again from a trained predictor")
        want = stamp.read_text().strip()
        if want != cls._file_digest(state):
            raise IntegrityError(
                f"predictor {path}: {cls.STATE_FILE} failed its content check (SHA-256 mismatch with "
                f"{cls.DIGEST_FILE}); the file was edited or corrupted after it was saved. Do not use "
                f"it: train again, or restore an intact copy")
        try:
            return super().deserialize(path, device=device)
        except LOAD_ERRORS as err:
            raise ValueError(f"predictor {path}: {cls.STATE_FILE} is not readable: {load_failure(err)}") from None


class TitansEstimator(PyTorchLightningEstimator):
    """GluonTS estimator for univariate series with a Titans (neural long-term memory) network.

    Args:
        freq: the data's frequency, a pandas alias ("ME", "MS", "W", "D", "h", ...; the older
            aliases GluonTS accepts, "M" or "H", work too); what ``time_features="auto"`` reads.
        prediction_length: forecast horizon H. A series of fewer than ``H + 2`` values gives no
            training window (two past values and H future ones): ``train`` warns naming such
            series (the predictor forecasts them from their context), and refuses data where
            every series is that short.
        context_length: context window L (None: chosen from the frequency's seasons and the
            series' lengths when ``train`` sees the data, :func:`titans_ts.defaults.context_length`:
            e.g. 36 for monthly data at horizon 18, 210 for long hourly series); shorter series
            are left-padded with observed mask 0.
        head: "student_t" (``SampleForecast`` with ``num_samples`` paths) or "quantile"
            (``QuantileForecast`` at ``quantiles``, trained on the pinball loss).
        quantiles: levels of the quantile head (default 0.1, 0.2, ..., 0.9).
        num_samples: sample paths per forecast (student_t head; ``predict(num_samples=...)`` and
            ``backtest_metrics`` may ask for more).
        lr, weight_decay: AdamW settings (:class:`titans_ts.model.config.TrainingConfig`'s
            defaults); ``scheduler`` "cosine" (per step, to lr / 20 over
            ``max_epochs * num_batches_per_epoch`` steps: TrainingConfig's "cosine_steps") or "none".
        batch_size, num_batches_per_epoch: training batches (32 windows: the estimator's own
            default).
        trainer_kwargs: ``lightning.pytorch.Trainer`` arguments, merged over quiet defaults
            (``accelerator="cpu"``, no progress bar, model summary or logger; checkpoints go to a
            temporary folder that is removed after training unless ``default_root_dir`` is
            given). Without ``max_epochs`` (and ``max_steps``) the budget is sized to the number
            of training windows (:func:`titans_ts.defaults.training_budget`: ten passes, at least
            600 steps) within ``time_budget``.
        time_budget: the wall-clock target of that data-aware budget: ``"5min"`` (the default),
            ``"90s"``, ``"1h"``, seconds, a ``timedelta``, or None (no target: the passes alone).
            ``train`` times a few steps first and trains the steps that fit
            (:mod:`titans_ts.defaults`); training stops at the target in any case. Not used when
            ``trainer_kwargs`` sets ``max_epochs`` or ``max_steps``.
        early_stopping: hold out the last ``prediction_length`` steps of every series that
            keeps ``prediction_length + 2`` steps beside them as validation data when ``train``
            gets none (shorter series train whole), stop after 250 steps without a better
            validation loss and keep the best epoch's weights (with ``validation_data``, that
            data is watched instead). False: train on every step for the whole budget.
        verbose: show Lightning's progress bar, model summary and messages.
        num_feat_dynamic_real: rows of ``feat_dynamic_real``, future-known covariates (given
            ``prediction_length`` steps beyond the target at prediction).
        num_past_feat_dynamic_real: rows of ``past_feat_dynamic_real``, past-only covariates.
        num_feat_static_real: values of ``feat_static_real``.
        num_feat_static_cat, cardinality: codes of ``feat_static_cat`` and the number of
            categories of each (codes 0 .. cardinality - 1; a code beyond is refused).
        time_features: calendar features of ``freq`` as future-known covariates: None (off, the
            default), "auto" (the frequency's usual ones, GluonTS's table) or a list of names of
            :data:`titans_ts.datasets.TIME_FEATURES`.
        train_sampler, validation_sampler: GluonTS instance samplers (defaults:
            ``ExpectedNumInstanceSampler(1.0, min_past=2, min_future=prediction_length)``: a
            window's context holds two steps at least, as RevIN needs a spread; and
            ``ValidationSplitSampler(min_future=prediction_length)``).
        **model: the network's settings, any field of :class:`titans_ts.model.config.TitansConfig` but
            the lengths and channel count (``patch_len``, ``stride``, ``d_model``, ``n_layers``,
            ``variant``, ``memory``, ``attn_heads``, ``window``, ``n_persistent``,
            ``segment_len``, ``dropout``, ``revin``, ...), with the configuration's defaults
            (patching: ``min(16, max(2, L // 6))`` and half of it).

    The estimator-specific defaults are the head (GluonTS needs a probabilistic forecast) and
    its levels (the ``Evaluator``'s); the network's defaults are the configuration's (dropout
    0.2, RevIN centre "mean": :data:`titans_ts.defaults.ROBUST`). The estimator learns no
    cycle (``cycle_len`` 0). After ``train``, ``chosen_defaults_`` holds the data-aware choices
    and the facts they rest on (:func:`titans_ts.defaults.data_defaults`).

    ``train_from(predictor, data)`` (GluonTS's continued training) trains a predictor of this
    estimator's network further on ``data``, with this estimator's budget, keeping the
    predictor's context length and covariate units.
    """

    trainer_kwargs: Dict[str, Any]  # set by PyTorchLightningEstimator.__init__

    @validated()
    def __init__(self, freq: str, prediction_length: int, context_length: Optional[int] = None,
                 head: str = "student_t", quantiles: Optional[List[float]] = None,
                 num_samples: int = 100, lr: float = TrainingConfig.lr,
                 weight_decay: float = TrainingConfig.weight_decay,
                 scheduler: str = "cosine", batch_size: int = 32, num_batches_per_epoch: int = 50,
                 trainer_kwargs: Optional[Dict[str, Any]] = None, verbose: bool = False,
                 early_stopping: bool = True, time_budget: Any = f"{TIME_BUDGET / 60:g}min",
                 train_sampler: Optional[InstanceSampler] = None,
                 validation_sampler: Optional[InstanceSampler] = None,
                 num_feat_dynamic_real: int = 0, num_past_feat_dynamic_real: int = 0,
                 num_feat_static_real: int = 0, num_feat_static_cat: int = 0,
                 cardinality: Optional[List[int]] = None,
                 time_features: Optional[Union[str, List[str]]] = None, **model: Any) -> None:
        self.freq = _check_freq(freq)
        for name, value in (("num_feat_dynamic_real", num_feat_dynamic_real),
                            ("num_past_feat_dynamic_real", num_past_feat_dynamic_real),
                            ("num_feat_static_real", num_feat_static_real),
                            ("num_feat_static_cat", num_feat_static_cat)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        cardinality = list(cardinality or [])
        if len(cardinality) != num_feat_static_cat or any(
                not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in cardinality):
            raise ValueError(f"cardinality must list the number of categories (a positive integer) of each "
                             f"of the num_feat_static_cat={num_feat_static_cat} static categorical "
                             f"features, got {cardinality!r}")
        self.time_feature_names = resolve_time_features(time_features, self.freq)
        self.num_feat_dynamic_real, self.num_past_feat_dynamic_real = num_feat_dynamic_real, num_past_feat_dynamic_real
        self.num_feat_static_real, self.num_feat_static_cat = num_feat_static_real, num_feat_static_cat
        self.cardinality, self.time_features = cardinality, time_features
        self._exog_scaling: Optional[Dict[str, List[List[float]]]] = None
        self.time_budget = time_budget
        parse_time_budget(time_budget)  # a ValueError naming the forms it takes
        _positive(prediction_length=prediction_length, num_samples=num_samples,
                  batch_size=batch_size, num_batches_per_epoch=num_batches_per_epoch)
        self._given_context = context_length
        context_length = 2 * prediction_length if context_length is None else context_length
        _positive(context_length=context_length)
        if head not in GLUONTS_HEADS:
            raise ValueError(f"head must be one of {GLUONTS_HEADS}, got {head!r}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        check_keys(model, MODEL_SETTINGS, "TitansEstimator model")
        qs = DEFAULT_QUANTILES if quantiles is None else quantiles
        self._model_settings = {**model, "head": head, "quantiles": qs,
                                "n_hist_exog": num_past_feat_dynamic_real,
                                "n_futr_exog": num_feat_dynamic_real + len(self.time_feature_names),
                                "n_stat_exog": num_feat_static_real, "stat_cat_cardinalities": cardinality}
        self.config = TitansConfig.from_dict(self._model_settings, seq_len=context_length,
                                             horizon=prediction_length, n_channels=1)
        tk = {"accelerator": "cpu", "enable_progress_bar": verbose,
              "enable_model_summary": verbose, "logger": False}
        tk.update(trainer_kwargs or {})
        _check_trainer_kwargs(tk)
        self.training_config = _training_config(lr, weight_decay, scheduler, batch_size, tk)[0]
        super().__init__(trainer_kwargs=tk)

        self.prediction_length, self.context_length = prediction_length, context_length
        self.head, self.quantiles, self.num_samples = head, list(self.config.quantiles), num_samples
        self.lr, self.weight_decay, self.scheduler = lr, weight_decay, scheduler
        self.batch_size, self.num_batches_per_epoch = batch_size, num_batches_per_epoch
        self.verbose, self.early_stopping = verbose, early_stopping
        self.train_sampler = train_sampler or ExpectedNumInstanceSampler(
            num_instances=1.0, min_past=MIN_PAST, min_future=prediction_length)
        self.validation_sampler = validation_sampler or ValidationSplitSampler(
            min_future=prediction_length)

    def __getattr__(self, name: str) -> Any:
        # the network settings read as attributes (estimator.patch_len, estimator.memory, ...)
        config = self.__dict__.get("config")
        if config is not None and name in MODEL_SETTINGS:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ pipeline
    def _covariate_fields(self) -> "CovariateFields":
        return CovariateFields(prediction_length=self.prediction_length,
                               time_features=self.time_feature_names,
                               num_feat_dynamic_real=self.num_feat_dynamic_real,
                               num_past_feat_dynamic_real=self.num_past_feat_dynamic_real,
                               num_feat_static_real=self.num_feat_static_real,
                               cardinality=self.cardinality)

    def _input_names(self, training: bool) -> List[str]:
        names = TRAINING_INPUT_NAMES if training else PREDICTION_INPUT_NAMES
        return names + COVARIATE_INPUT_NAMES if self.config.has_exog else list(names)

    def create_transformation(self) -> Transformation:
        return (
            CheckEntries(freq=self.freq, context_length=self.context_length)
            + SelectFields([FieldName.ITEM_ID, FieldName.INFO, FieldName.START, FieldName.TARGET,
                            *COVARIATE_FIELDS], allow_missing=True)
            + AsNumpyArray(field=FieldName.TARGET, expected_ndim=1, dtype=np.float64)
            + AddObservedValuesIndicator(target_field=FieldName.TARGET,
                                         output_field=FieldName.OBSERVED_VALUES)
            + self._covariate_fields()
        )

    def model_kwargs(self) -> Dict[str, Any]:
        """The network's settings (:class:`titans_ts.model.config.TitansConfig` fields, plain values)."""
        return self.config.to_dict()

    def create_lightning_module(self) -> pl.LightningModule:
        epochs = self.trainer_kwargs.get("max_epochs") or 1  # set by train_model when not given
        steps = self.trainer_kwargs.get("max_steps")
        total = steps if steps and steps > 0 else epochs * self.num_batches_per_epoch
        return TitansGluonTSModule(model_kwargs=self.model_kwargs(), num_samples=self.num_samples,
                                   lr=self.lr, weight_decay=self.weight_decay,
                                   scheduler=self.scheduler, total_steps=int(total),
                                   n_time_features=len(self.time_feature_names),
                                   exog_scaling=self._exog_scaling)

    def _splitter(self, mode: str) -> InstanceSplitter:
        sampler = {"training": self.train_sampler, "validation": self.validation_sampler,
                   "test": TestSplitSampler()}[mode]
        fields = [FieldName.OBSERVED_VALUES]
        if self.config.has_exog:  # cut with the target (the masks pad with 0: unobserved)
            fields += [_FEAT_DYNAMIC, _FEAT_DYNAMIC + _OBSERVED, FieldName.PAST_FEAT_DYNAMIC_REAL,
                       FieldName.PAST_FEAT_DYNAMIC_REAL + _OBSERVED]
        return InstanceSplitter(
            target_field=FieldName.TARGET, is_pad_field=FieldName.IS_PAD,
            start_field=FieldName.START, forecast_start_field=FieldName.FORECAST_START,
            instance_sampler=sampler, past_length=self.context_length,
            future_length=self.prediction_length,
            time_series_fields=fields,
            dummy_value=0.0,  # padding: value 0 and observed mask 0
        )

    def create_training_data_loader(self, data: Dataset, module, shuffle_buffer_length: Optional[int] = None,
                                    **kwargs) -> Iterable:
        instances = self._splitter("training").apply(Cyclic(data).stream(), is_train=True)
        return as_stacked_batches(instances, batch_size=self.batch_size,
                                  shuffle_buffer_length=shuffle_buffer_length,
                                  field_names=self._input_names(True), output_type=torch.tensor,
                                  num_batches_per_epoch=self.num_batches_per_epoch)

    def create_validation_data_loader(self, data: Dataset, module, **kwargs) -> Iterable:
        instances = self._splitter("validation").apply(data, is_train=True)
        return as_stacked_batches(instances, batch_size=self.batch_size,
                                  field_names=self._input_names(True), output_type=torch.tensor)

    def create_predictor(self, transformation: Transformation, module) -> PyTorchPredictor:
        if self.head == "quantile":
            generator = QuantileForecastGenerator(quantiles=[str(q) for q in self.quantiles])
        else:
            generator = SampleForecastGenerator()
        return TitansPredictor(
            input_names=self._input_names(False), prediction_net=module,
            batch_size=self.batch_size, prediction_length=self.prediction_length,
            input_transform=transformation + self._splitter("test"),
            forecast_generator=generator, device="auto",
        )

    # ------------------------------------------------------------------ training
    def _step_seconds(self, data: Dataset) -> float:
        """Seconds per optimiser step of this configuration: the loader's batch (GluonTS's
        pipeline draws the windows of ``data`` as it trains: a few batches of a loader of its own,
        the random states left as they were) and the network's step
        (:func:`titans_ts.training.step_seconds`) on the first of those batches (the training
        layout, covariate fields included), with a network built with the random state left as
        it was."""
        import random

        np_state, py_state = np.random.get_state(), random.getstate()
        times, first = [], None
        try:
            with env._let(max_idle_transforms=max(len(data), 100)):
                stream = self.create_training_data_loader(self.create_transformation().apply(data, is_train=True),
                                                          None)
                t0 = time.perf_counter()
                for k, batch in enumerate(stream):  # the first batch fills the pipeline: not counted
                    t1 = time.perf_counter()
                    if k:
                        times.append(t1 - t0)
                    else:
                        first = batch
                    if k == 3:
                        break
                    t0 = time.perf_counter()
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        if first is None:
            raise ValueError("training_data gives no training window (the loader drew no batch)")
        with torch.random.fork_rng(devices=[]):
            module = TitansGluonTSModule(model_kwargs=self.model_kwargs(), num_samples=self.num_samples)
        step = step_seconds(module, dict(first), lambda m, b: m._loss(b),
                            device=training_device(self.trainer_kwargs.get("accelerator", "cpu")))
        return step + (float(np.median(times)) if times else 0.0)

    def train_model(self, training_data: Dataset, validation_data: Optional[Dataset] = None,
                    from_predictor: Optional[PyTorchPredictor] = None,
                    shuffle_buffer_length: Optional[int] = None, cache_data: bool = False,
                    ckpt_path: Optional[str] = None, **kwargs) -> TrainOutput:
        """GluonTS's training pipeline, trained by :func:`titans_ts.training.fit_module` (the
        forecaster's and the recipes' training path): quiet; Lightning's checkpoints go to a
        temporary folder (removed afterwards) unless ``trainer_kwargs`` names a
        ``default_root_dir``; the best epoch's weights are restored (on the validation loss, or on
        the training loss without validation data); ``trainer_kwargs`` are left as they were."""
        fields = self._covariate_fields()
        lengths = _check_series(training_data, "training_data", min_train_length(self.prediction_length), self.freq,
                                fields)
        if validation_data is not None:
            _check_series(validation_data, "validation_data", self.prediction_length, self.freq, fields)
        if from_predictor is not None:
            self._check_predictor(from_predictor)
        H = self.prediction_length
        own_tail = validation_data is None and self.early_stopping
        tails = tail_sizes(lengths, H, H) if own_tail else [0] * len(lengths)
        context = self._given_context
        if context is None and from_predictor is not None:  # the predictor's layers fix it
            context = int(from_predictor.prediction_net.hparams["model_kwargs"]["seq_len"])
        chosen = data_defaults(self.freq, H, lengths, self.batch_size, val_size=tails,
                               context=context, cyclic=True)
        if own_tail:
            training_data, validation_data = _hold_out_tail(training_data, tails)
            own_tail = validation_data is not None  # None: no series is long enough for a tail
        # the covariates' units: the training data's (a predictor trained further keeps its own)
        self._exog_scaling = (_exog_scaling(training_data, self) if from_predictor is None else
                              from_predictor.prediction_net.hparams.get("exog_scaling"))
        self.context_length = chosen.context_length
        self.config = TitansConfig.from_dict(self._model_settings, seq_len=self.context_length,
                                             horizon=H, n_channels=1)
        kw = dict(self.trainer_kwargs)
        if kw.get("max_steps") == -1:  # Lightning's "no step limit"
            kw.pop("max_steps")
        limit = kw.get("limit_train_batches")
        per_epoch = (self.num_batches_per_epoch if limit is None else
                     batches_per_epoch(limit, self.num_batches_per_epoch))
        budget = kw.get("max_epochs") is None and not kw.get("max_steps")
        seconds = parse_time_budget(self.time_budget) if budget else None
        step_s = self._step_seconds(training_data) if seconds is not None else None
        steps = chosen.steps
        by_time = time_steps(seconds, step_s)
        if by_time is not None and by_time < steps:
            steps = by_time
        max_epochs, patience = epochs_for(steps, per_epoch)
        if budget:
            kw["max_epochs"] = max_epochs
            if seconds is not None and kw.get("max_time") is None:  # stop at the target in any case
                kw["max_time"] = datetime.timedelta(seconds=seconds)
        watch = validation_data is not None and self.early_stopping
        self.chosen_defaults_ = {
            **chosen.to_dict(), "context_length": self.context_length,
            "time_features": list(self.time_feature_names),
            "cycle_len": self.config.cycle_len,  # the estimator learns no cycle
            "max_epochs": kw.get("max_epochs"), "budget": "data-aware" if budget else "given",
            "steps": steps if budget else None, "time_budget_s": seconds,
            "seconds_per_step": None if step_s is None else round(step_s, 5),
            "limited_by": ("given" if not budget else "time budget" if steps < chosen.steps else
                           "minimum steps" if chosen.steps == _defaults.MIN_STEPS else "passes"),
            "num_batches_per_epoch": per_epoch,
            "validation": (chosen.validation if own_tail else
                           "validation_data" if watch else "none"),
            "patience": patience if watch else None}

        # GluonTS's pipeline (PyTorchLightningEstimator.train_model), trained by the one helper
        transformation = self.create_transformation()
        original = self.trainer_kwargs
        self.trainer_kwargs = kw  # the budget create_lightning_module sizes the schedule to
        try:
            with env._let(max_idle_transforms=max(len(training_data), 100)):
                train_in = transformation.apply(training_data, is_train=True)
                if cache_data:
                    train_in = Cached(train_in)
                module = self.create_lightning_module()
                train_loader = self.create_training_data_loader(
                    train_in, module, shuffle_buffer_length=shuffle_buffer_length)
        finally:
            self.trainer_kwargs = original
        val_loader = None
        if validation_data is not None:
            with env._let(max_idle_transforms=max(len(validation_data), 100)):
                val_in = transformation.apply(validation_data, is_train=True)
                if cache_data:
                    val_in = Cached(val_in)
                val_loader = self.create_validation_data_loader(val_in, module)
        if from_predictor is not None:
            module.load_state_dict(from_predictor.network.state_dict())
        training, rest = _training_config(self.lr, self.weight_decay, self.scheduler, self.batch_size, kw)
        training = training.replace(patience=patience if watch else None)
        callbacks = rest.pop("callbacks", None)
        root = rest.pop("default_root_dir", None)
        # the best epoch's weights: on the validation loss, or the training loss without validation
        started = time.perf_counter()
        fitted = fit_module(module, train_loader, val_loader, training,
                            monitor="train_loss" if val_loader is None else "val_loss",
                            root_dir=root, verbose=self.verbose, callbacks=callbacks,
                            ckpt_path=ckpt_path, **rest)
        self.chosen_defaults_["epochs_run"] = fitted.epochs
        self.chosen_defaults_["train_seconds"] = round(time.perf_counter() - started, 2)
        self.chosen_defaults_["steps_run"] = int(fitted.trainer.global_step)
        return TrainOutput(transformation=transformation, trained_net=module, trainer=fitted.trainer,
                           predictor=self.create_predictor(transformation, module))


    def train_from(self, predictor: PyTorchPredictor, training_data: Dataset,
                   validation_data: Optional[Dataset] = None, shuffle_buffer_length: Optional[int] = None,
                   cache_data: bool = False, ckpt_path: Optional[str] = None) -> PyTorchPredictor:
        """Continue training ``predictor`` (one this estimator's network made: the same settings
        and covariates) on ``training_data``: GluonTS's ``train_from``. The weights start where the
        predictor's are; the budget is this estimator's (its ``trainer_kwargs``, or the data-aware
        budget of ``training_data``); the context length and the covariates' units are the
        predictor's. Returns the new predictor (the given one is left as it was)."""
        self._check_predictor(predictor)
        return self.train_model(training_data, validation_data, from_predictor=predictor,
                                shuffle_buffer_length=shuffle_buffer_length, cache_data=cache_data,
                                ckpt_path=ckpt_path).predictor

    def _check_predictor(self, predictor: Any) -> None:
        """Refuse a predictor whose network is not this estimator's (its weights would not fit)."""
        net = getattr(predictor, "prediction_net", None)
        if not isinstance(predictor, PyTorchPredictor) or not isinstance(net, TitansGluonTSModule):
            raise ValueError(f"train_from continues training a predictor of TitansEstimator (a PyTorchPredictor "
                             f"around a TitansGluonTSModule), got {type(predictor).__name__}"
                             + (f" around {type(net).__name__}" if net is not None else ""))
        theirs = TitansConfig.from_dict(net.hparams["model_kwargs"], n_channels=1).to_dict()
        ours = self.config.to_dict()
        skip = ("seq_len",) if self._given_context is None else ()
        diff = {k: (ours[k], theirs[k]) for k in ours if k not in skip and ours[k] != theirs[k]}
        if net.hparams.get("n_time_features", 0) != len(self.time_feature_names):
            diff["time_features"] = (self.time_feature_names, f"{net.hparams.get('n_time_features', 0)} features")
        if diff:
            listed = ", ".join(f"{k}: {a!r} here, {b!r} in the predictor" for k, (a, b) in diff.items())
            raise ValueError(f"train_from: the predictor's network differs from this estimator's ({listed}); "
                             f"continue training with an estimator of the same settings")


def _training_config(lr: float, weight_decay: float, scheduler: str, batch_size: int,
                     trainer_kwargs: Dict[str, Any]) -> tuple:
    """The estimator's :class:`TrainingConfig` (its optimiser settings, and the budget, clipping
    and batch limit of ``trainer_kwargs``) and the other trainer arguments."""
    rest = dict(trainer_kwargs)
    epochs = rest.get("max_epochs")
    training = TrainingConfig(
        lr=lr, weight_decay=weight_decay, batch_size=batch_size,
        scheduler="cosine_steps" if scheduler == "cosine" else "none",
        max_epochs=None if epochs in (None, -1) else rest.pop("max_epochs"),
        gradient_clip_val=rest.pop("gradient_clip_val", None),
        limit_train_batches=rest.pop("limit_train_batches", None))
    return training, rest


def _check_trainer_kwargs(tk: Dict[str, Any]) -> None:
    """Settings that would make Lightning train on nothing (and return an untrained predictor)."""
    limit = tk.get("limit_train_batches")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                              or not limit > 0 or (isinstance(limit, float) and limit > 1)):
        raise ValueError(f"trainer_kwargs limit_train_batches={limit!r}: use a positive number of batches or "
                         f"a fraction in (0, 1], or leave it out (num_batches_per_epoch sets an epoch's "
                         f"length); 0 would train on no batch and return an untrained predictor")
    epochs = tk.get("max_epochs")
    if epochs is not None and epochs != -1 and (isinstance(epochs, bool) or not isinstance(epochs, int)
                                                 or epochs < 1):
        raise ValueError(f"trainer_kwargs max_epochs={epochs!r} would train for no epoch; use a positive "
                         f"integer (or -1 with max_steps)")


def _hold_out_tail(data: Dataset, tails: List[int]) -> tuple:
    """(training, validation): a series with a tail (:func:`titans_ts.defaults.tail_sizes`)
    loses it for training and is validated on it; the others (and a series whose values before
    the tail are all missing) train whole, unvalidated."""
    train, val = [], []
    for entry, tail in zip(data, tails, strict=True):
        target = np.asarray(entry[FieldName.TARGET], dtype=np.float64)
        if tail and not np.isnan(target[..., :-tail]).all():
            cut = {FieldName.TARGET: target[..., :-tail]}
            for key in (FieldName.FEAT_DYNAMIC_REAL, FieldName.PAST_FEAT_DYNAMIC_REAL):
                if entry.get(key) is not None:  # the covariates end with the target
                    cut[key] = np.asarray(entry[key], dtype=np.float64)[..., :target.shape[-1] - tail]
            train.append({**entry, **cut})
            val.append(entry)
        else:
            train.append(entry)
    return train, (val or None)


def _exog_scaling(data: Dataset, est: "TitansEstimator") -> Optional[Dict[str, List[List[float]]]]:
    """Centre and spread of every real-valued covariate over the observed values of ``data``:
    ``{"futr" | "hist" | "static": [centres, spreads]}``. In float64 and in two passes (the mean,
    then the deviations from it: a unit-size signal on a level of 1e8 keeps its spread), with the
    rule :mod:`titans_ts.forecaster.scaling` scales a series by (a constant covariate: centre its
    value, spread ``|centre|``, or 1 if that is 0; one never observed: centre 0, spread 1)."""
    kinds = {"futr": (FieldName.FEAT_DYNAMIC_REAL, est.num_feat_dynamic_real),
             "hist": (FieldName.PAST_FEAT_DYNAMIC_REAL, est.num_past_feat_dynamic_real),
             "static": (FieldName.FEAT_STATIC_REAL, est.num_feat_static_real)}
    counts = {kind: k for kind, (_, k) in kinds.items() if k}
    if not counts:
        return None

    def rows(entry: dict, kind: str) -> np.ndarray:  # [k, observations]
        field, k = kinds[kind]
        x = np.asarray(entry[field], dtype=np.float64)
        if kind == "static":
            return x.reshape(k, 1)
        return x.reshape(k, -1)[:, :np.asarray(entry[FieldName.TARGET]).shape[-1]]  # (past the target: unseen)

    n = {kind: np.zeros(k) for kind, k in counts.items()}
    total = {kind: np.zeros(k) for kind, k in counts.items()}
    lo = {kind: np.full(k, np.inf) for kind, k in counts.items()}
    hi = {kind: np.full(k, -np.inf) for kind, k in counts.items()}
    for entry in data:
        for kind in counts:
            x = rows(entry, kind)
            seen = ~np.isnan(x)
            n[kind] += seen.sum(1)
            total[kind] += np.where(seen, x, 0.0).sum(1)
            lo[kind] = np.minimum(lo[kind], np.where(seen, x, np.inf).min(1, initial=np.inf))
            hi[kind] = np.maximum(hi[kind], np.where(seen, x, -np.inf).max(1, initial=-np.inf))
    centre, constant = {}, {}
    for kind in counts:
        constant[kind] = (n[kind] > 0) & (hi[kind] == lo[kind])
        centre[kind] = np.where(constant[kind], lo[kind], total[kind] / np.maximum(n[kind], 1))
    squares = {kind: np.zeros(k) for kind, k in counts.items()}
    for entry in data:
        for kind in counts:
            x = rows(entry, kind)
            squares[kind] += (np.where(np.isnan(x), 0.0, x - centre[kind][:, None]) ** 2).sum(1)
    out = {}
    for kind in counts:
        spread = np.sqrt(squares[kind] / np.maximum(n[kind], 1))
        fallback = np.where(np.abs(centre[kind]) > 0, np.abs(centre[kind]), 1.0)
        ok = np.isfinite(spread) & (spread > 0) & ~constant[kind]
        out[kind] = [centre[kind].tolist(), np.where(ok, spread, fallback).tolist()]
    return out


def _label(entry: Any, i: int | None) -> str:
    item = entry.get(FieldName.ITEM_ID) if isinstance(entry, dict) else None
    return ("entry" if i is None else f"entry {i}") + (f" (item_id {item!r})" if item is not None else "")


@functools.lru_cache(maxsize=32)
def _period_offset(freq: str):
    """The offset of a ``pd.Period`` at ``freq`` (once per frequency: entries are checked each
    time the training pipeline draws them)."""
    return pd.Period("2000-01-01", freq=period_freq(freq)).freq


def _check_entry(entry: Any, label: str, freq: str, context_length: int | None = None) -> dict:
    """One dataset entry as the pipeline needs it, or a ValueError naming it (``context_length``:
    at prediction, the context must hold an observed value). Returns the entry with its target
    as a float64 array and its start as a period of ``freq``."""
    if not isinstance(entry, dict) or entry.get(FieldName.TARGET) is None:
        raise ValueError(f"{label} has no {FieldName.TARGET!r} field")
    for name in UNREAD_FIELDS:
        if entry.get(name) is not None:
            raise ValueError(f"{label} has the field {name!r}: TitansEstimator does not read it (it would be "
                             f"ignored); remove the field from the entries (the covariates it reads: "
                             f"{', '.join(COVARIATE_FIELDS)})")
    try:
        values = np.asarray(entry[FieldName.TARGET], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{label}: its target is not numeric ({err})") from None
    if values.ndim != 1:
        raise ValueError(f"{label} has a target of shape {values.shape}; TitansEstimator forecasts univariate "
                         f"series (a 1-D target per entry)")
    if values.size == 0:
        raise ValueError(f"{label} has an empty target; every series needs observed values (leave it out)")
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        raise ValueError(f"{label} has +/-inf in its target at position(s) {infinite[:5].tolist()}; "
                         f"use NaN for a missing value")
    if np.isnan(values).all():
        raise ValueError(f"{label} has no observed value (its target is all NaN): there is nothing to learn "
                         f"from or forecast; leave it out")
    if context_length is not None and np.isnan(values[-context_length:]).all():
        raise ValueError(f"{label} has no observed value in its last {context_length} values (the context "
                         f"the forecast reads): a forecast would be made up from nothing; give it observed "
                         f"recent values or leave it out")
    start = entry.get(FieldName.START)
    if start is not None and not isinstance(start, pd.Period):
        try:
            start = pd.Period(pd.Timestamp(start), freq=freq)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{label} has start {start!r}, which is not a time (give a pd.Period or a "
                             f"pd.Timestamp): {err}") from None
    elif start is not None and start.freq != _period_offset(freq):
        raise ValueError(f"{label} has start {start!r}, a period of frequency {start.freqstr!r}, but the "
                         f"estimator's freq is {freq!r}: its values would be read at the wrong spacing; give "
                         f"a start of frequency {freq!r} (or a pd.Timestamp)")
    return {**entry, FieldName.TARGET: values, FieldName.START: start}


class CheckEntries(MapTransformation):
    """The first step of the pipeline: every entry checked (:func:`_check_entry`), with the
    context check at prediction (``is_train`` False)."""

    @validated()
    def __init__(self, freq: str, context_length: int) -> None:
        self.freq = freq
        self.context_length = context_length

    def map_transform(self, data: Dict[str, Any], is_train: bool) -> Dict[str, Any]:
        return _check_entry(data, _label(data, None), self.freq, None if is_train else self.context_length)


def _check_series(data: Dataset, name: str, min_length: int, freq: str,
                  fields: Optional[CovariateFields] = None) -> list:
    """One pass over a dataset before training: it holds series, at least one long enough for a
    training window (``min_length`` values), and every entry is one the pipeline accepts
    (:func:`_check_entry`), with the covariates ``fields`` reads (and no other). Returns the
    series' lengths."""
    n, longest, lengths, short = 0, 0, [], []
    for i, entry in enumerate(data):
        n += 1
        label = _label(entry, i)
        try:
            checked = _check_entry(entry, label, freq)
            if fields is not None:
                fields.check(dict(checked), is_train=True, label=label)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        lengths.append(checked[FieldName.TARGET].shape[-1])
        longest = max(longest, lengths[-1])
        if lengths[-1] < min_length:
            short.append(f"{_label(entry, i)} ({lengths[-1]} values)")
    if n == 0:
        raise ValueError(f"{name} holds no series; TitansEstimator.train needs at least one series "
                         f"with {min_length} or more values")
    if longest < min_length:
        raise ValueError(f"{name}: every series is shorter than prediction_length"
                         f"{f' + {MIN_PAST}' if name == 'training_data' else ''} = {min_length} values (the "
                         f"longest has {longest}); a training window needs at least {MIN_PAST} past values "
                         f"(the network scales each window by its context's spread) and "
                         f"prediction_length future values. Use a shorter prediction_length or longer series")
    if short and name == "training_data":
        more = f" and {len(short) - 10} more" if len(short) > 10 else ""
        warnings.warn(f"{len(short)} of {n} series of training_data are too short to train on (fewer than "
                      f"prediction_length + {MIN_PAST} = {min_length} values): {', '.join(short[:10])}{more}. "
                      f"They give no training window; the predictor forecasts them from their context "
                      f"(centred and scaled by it, so on their own scale)", UserWarning, stacklevel=4)
    return lengths


def _positive(**values: Any) -> None:
    for name, val in values.items():
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
