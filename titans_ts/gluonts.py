"""GluonTS integration: :class:`TitansEstimator`, a ``PyTorchLightningEstimator`` around :class:`TitansNet`.

    estimator = TitansEstimator(freq="ME", prediction_length=18, context_length=36,
                                trainer_kwargs={"max_epochs": 20})
    predictor = estimator.train(train_ds)            # a gluonts PyTorchPredictor
    forecasts = list(predictor.predict(test_ds))     # SampleForecast (student_t head)
                                                     # or QuantileForecast (quantile head)

Univariate targets only (each series is one channel, C = 1). The pipeline is GluonTS's own:

    entry -> SelectFields(item_id, info, start, target) -> AsNumpyArray(target)
          -> AddObservedValuesIndicator (NaN -> 0, observed mask 0)
          -> InstanceSplitter (training: ExpectedNumInstanceSampler, validation:
             ValidationSplitSampler, prediction: TestSplitSampler), left-padding contexts shorter
             than ``context_length`` with value 0 and observed mask 0
          -> TitansNet(past [B, L, 1], observed mask [B, L, 1])

Missing and padded context values enter the network only through its observed mask; missing future
values are left out of the loss. The predictor is a plain ``PyTorchPredictor``: it works with
``make_evaluation_predictions``, ``Evaluator``, ``backtest_metrics``, rolling
``split(...).generate_instances(...)`` windows, and ``serialize`` / ``Predictor.deserialize``.
"""

# no ``from __future__ import annotations``: GluonTS's ``@validated`` builds pydantic models from
# the annotations and needs them as real types, not strings

import contextlib
import math
import tempfile
import warnings
from typing import Any, Dict, Iterable, List, Optional

import lightning.pytorch as pl
import numpy as np
import torch
from gluonts.core.component import validated
from gluonts.dataset.common import Dataset
from gluonts.dataset.field_names import FieldName
from gluonts.dataset.loader import as_stacked_batches
from gluonts.itertools import Cyclic
from gluonts.model.forecast_generator import QuantileForecastGenerator, SampleForecastGenerator
from gluonts.torch.model.estimator import PyTorchLightningEstimator, TrainOutput
from gluonts.torch.model.predictor import PyTorchPredictor
from gluonts.transform import (
    AddObservedValuesIndicator,
    AsNumpyArray,
    ExpectedNumInstanceSampler,
    InstanceSampler,
    InstanceSplitter,
    SelectFields,
    TestSplitSampler,
    Transformation,
    ValidationSplitSampler,
)

from .defaults import batches_per_epoch, data_defaults, epochs_for, tail_sizes
from .integrity import stamp_checkpoint, verify_checkpoint
from .model.config import TitansConfig, check_keys
from .model.memory import wants_weight_decay
from .model.network import TitansNet
from .training import quiet_lightning

__all__ = ["TitansEstimator", "TitansGluonTSModule", "GLUONTS_HEADS", "SCHEDULERS",
           "DEFAULT_QUANTILES", "PREDICTION_INPUT_NAMES", "TRAINING_INPUT_NAMES"]

GLUONTS_HEADS = ("student_t", "quantile")
SCHEDULERS = ("cosine", "none")
DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the Evaluator's default levels

PREDICTION_INPUT_NAMES = ["past_target", "past_observed_values"]
TRAINING_INPUT_NAMES = PREDICTION_INPUT_NAMES + ["future_target", "future_observed_values"]

# what the estimator sets itself: the lengths come from prediction_length / context_length and
# every series is one channel
_DERIVED = ("seq_len", "horizon", "n_channels")
#: the network settings the estimator accepts as keyword arguments (TitansConfig's fields)
MODEL_SETTINGS = tuple(f for f in TitansConfig.fields() if f not in _DERIVED)


def _window_scale(past: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-window scale [B]: mean |observed context|; windows without one (all missing or all 0)
    take the batch mean of the others (1 if none has one)."""
    m = mask.to(past.dtype)
    s = (past.abs() * m).sum(1) / m.sum(1).clamp_min(1.0)
    ok = s > 0
    fallback = s[ok].mean() if bool(ok.any()) else torch.ones((), dtype=s.dtype, device=s.device)
    return torch.where(ok, s, fallback).clamp_min(1e-8)


class TitansGluonTSModule(pl.LightningModule):
    """The trained network: a :class:`TitansNet` on one channel, with the GluonTS batch layout.

    Training batches hold ``past_target`` / ``past_observed_values`` [B, L] and ``future_target`` /
    ``future_observed_values`` [B, H]; the loss (Student-t negative log-likelihood or pinball loss)
    counts observed future points only and is measured relative to each window's scale (mean
    absolute observed context), so every series weighs alike whatever its units.

    As the predictor's network, ``forward(past_target, past_observed_values)`` returns
    ``num_samples`` sample paths [B, S, H] (student_t head) or ``((quantiles [B, H, Q],), None,
    None)``, the layout of GluonTS's ``QuantileForecastGenerator`` (quantile head).
    """

    @validated()
    def __init__(self, model_kwargs: Dict[str, Any], num_samples: int = 100, lr: float = 1e-3,
                 weight_decay: float = 1e-4, scheduler: str = "cosine",
                 total_steps: Optional[int] = None) -> None:
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

    # ------------------------------------------------------------------ prediction
    def forward(self, past_target: torch.Tensor, past_observed_values: torch.Tensor):
        past = past_target.to(torch.float32).unsqueeze(-1)
        mask = past_observed_values.unsqueeze(-1) > 0
        out = self.net(past, mask)
        if self.head == "quantile":
            return (out[:, :, 0, :],), None, None
        samples = out.sample((self.num_samples,))  # [S, B, H, 1]
        return samples[..., 0].permute(1, 0, 2).contiguous()

    # ------------------------------------------------------------------ training
    def _loss(self, batch) -> torch.Tensor:
        past = batch["past_target"].to(torch.float32)
        past_mask = batch["past_observed_values"]
        future = batch["future_target"].to(torch.float32)
        future_mask = batch["future_observed_values"]
        out = self.net(past.unsqueeze(-1), past_mask.unsqueeze(-1) > 0)
        # the loss of y / scale: every series weighs alike whatever its units
        future = torch.where(future_mask > 0, future, torch.zeros_like(future))
        return self.net.head.loss(out, future.unsqueeze(-1), future_mask.unsqueeze(-1),
                                  scale=_window_scale(past, past_mask))

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
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (decay if wants_weight_decay(p) else no_decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.lr)
        if self.scheduler == "none" or not self.total_steps:
            return opt
        total = max(1, int(self.total_steps))

        def factor(step: int) -> float:  # cosine from lr down to lr / 20 over the run
            t = min(step, total) / total
            return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


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


class TitansEstimator(PyTorchLightningEstimator):
    """GluonTS estimator for univariate series with a Titans (neural long-term memory) network.

    Args:
        freq: the data's frequency, a pandas alias ("ME", "MS", "W", "D", "h", ...; the older
            aliases GluonTS accepts, "M" or "H", work too). Only validated: the network uses no
            calendar features.
        prediction_length: forecast horizon H.
        context_length: context window L (None: chosen from the frequency's seasons and the
            series' lengths when ``train`` sees the data, :func:`titans_ts.defaults.context_length`:
            e.g. 36 for monthly data at horizon 18, 210 for long hourly series); shorter series
            are left-padded with observed mask 0.
        head: "student_t" (``SampleForecast`` with ``num_samples`` paths) or "quantile"
            (``QuantileForecast`` at ``quantiles``, trained on the pinball loss).
        quantiles: levels of the quantile head (default 0.1, 0.2, ..., 0.9).
        num_samples: sample paths per forecast (student_t head; ``predict(num_samples=...)`` and
            ``backtest_metrics`` may ask for more).
        lr, weight_decay: AdamW settings; ``scheduler`` "cosine" (per step, to lr / 20 over
            ``max_epochs * num_batches_per_epoch`` steps) or "none".
        batch_size, num_batches_per_epoch: training batches.
        trainer_kwargs: ``lightning.pytorch.Trainer`` arguments, merged over quiet defaults
            (``accelerator="cpu"``, no progress bar, model summary or logger; checkpoints go to a
            temporary folder that is removed after training unless ``default_root_dir`` is
            given). Without ``max_epochs`` (and ``max_steps``) the budget is sized to the number
            of training windows (:func:`titans_ts.defaults.training_budget`: about ten passes,
            600 to 3000 steps).
        early_stopping: hold out the last ``prediction_length`` steps of every series that
            keeps ``prediction_length + 1`` steps beside them as validation data when ``train``
            gets none (shorter series train whole), stop after 250 steps without a better
            validation loss and keep the best epoch's weights (with ``validation_data``, that
            data is watched instead). False: train on every step for the whole budget.
        verbose: show Lightning's progress bar, model summary and messages.
        train_sampler, validation_sampler: GluonTS instance samplers (defaults:
            ``ExpectedNumInstanceSampler(1.0, min_past=1, min_future=prediction_length)`` and
            ``ValidationSplitSampler(min_future=prediction_length)``).
        **model: the network's settings, any field of :class:`titans_ts.model.config.TitansConfig` but
            the lengths and channel count (``patch_len``, ``stride``, ``d_model``, ``n_layers``,
            ``variant``, ``memory``, ``attn_heads``, ``window``, ``n_persistent``,
            ``segment_len``, ``dropout``, ``revin``, ...), with the configuration's defaults
            (patching: ``min(16, max(2, L // 6))`` and half of it).

    The estimator-specific defaults are the head (GluonTS needs a probabilistic forecast) and
    its levels (the ``Evaluator``'s); the network's defaults are the configuration's (dropout
    0.2, RevIN centre "mean": :data:`titans_ts.defaults.ROBUST`). The estimator learns no
    cycle (``cycle_len`` 0: it reads no calendar). After ``train``, ``chosen_defaults_`` holds
    the data-aware choices and the facts they rest on (:func:`titans_ts.defaults.data_defaults`).
    """

    @validated()
    def __init__(self, freq: str, prediction_length: int, context_length: Optional[int] = None,
                 head: str = "student_t", quantiles: Optional[List[float]] = None,
                 num_samples: int = 100, lr: float = 1e-3, weight_decay: float = 1e-4,
                 scheduler: str = "cosine", batch_size: int = 32, num_batches_per_epoch: int = 50,
                 trainer_kwargs: Optional[Dict[str, Any]] = None, verbose: bool = False,
                 early_stopping: bool = True,
                 train_sampler: Optional[InstanceSampler] = None,
                 validation_sampler: Optional[InstanceSampler] = None, **model: Any) -> None:
        self.freq = _check_freq(freq)
        _positive(prediction_length=prediction_length, num_samples=num_samples,
                  batch_size=batch_size, num_batches_per_epoch=num_batches_per_epoch)
        self._given_context = context_length
        context_length = 2 * prediction_length if context_length is None else context_length
        _positive(context_length=context_length)
        if head not in GLUONTS_HEADS:
            raise ValueError(f"head must be one of {GLUONTS_HEADS}, got {head!r}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        check_keys(model, MODEL_SETTINGS, "TitansEstimator model")
        qs = DEFAULT_QUANTILES if quantiles is None else quantiles
        self._model_settings = {**model, "head": head, "quantiles": qs}
        self.config = TitansConfig.from_dict(self._model_settings, seq_len=context_length,
                                             horizon=prediction_length, n_channels=1)
        tk = {"accelerator": "cpu", "enable_progress_bar": verbose,
              "enable_model_summary": verbose, "logger": False}
        tk.update(trainer_kwargs or {})
        _check_trainer_kwargs(tk)
        super().__init__(trainer_kwargs=tk)

        self.prediction_length, self.context_length = prediction_length, context_length
        self.head, self.quantiles, self.num_samples = head, list(self.config.quantiles), num_samples
        self.lr, self.weight_decay, self.scheduler = lr, weight_decay, scheduler
        self.batch_size, self.num_batches_per_epoch = batch_size, num_batches_per_epoch
        self.verbose, self.early_stopping = verbose, early_stopping
        self.train_sampler = train_sampler or ExpectedNumInstanceSampler(
            num_instances=1.0, min_past=1, min_future=prediction_length)
        self.validation_sampler = validation_sampler or ValidationSplitSampler(
            min_future=prediction_length)

    def __getattr__(self, name: str) -> Any:
        # the network settings read as attributes (estimator.patch_len, estimator.memory, ...)
        config = self.__dict__.get("config")
        if config is not None and name in MODEL_SETTINGS:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ pipeline
    def create_transformation(self) -> Transformation:
        return (
            SelectFields([FieldName.ITEM_ID, FieldName.INFO, FieldName.START, FieldName.TARGET],
                         allow_missing=True)
            + AsNumpyArray(field=FieldName.TARGET, expected_ndim=1)
            + AddObservedValuesIndicator(target_field=FieldName.TARGET,
                                         output_field=FieldName.OBSERVED_VALUES)
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
                                   scheduler=self.scheduler, total_steps=int(total))

    def _splitter(self, mode: str) -> InstanceSplitter:
        sampler = {"training": self.train_sampler, "validation": self.validation_sampler,
                   "test": TestSplitSampler()}[mode]
        return InstanceSplitter(
            target_field=FieldName.TARGET, is_pad_field=FieldName.IS_PAD,
            start_field=FieldName.START, forecast_start_field=FieldName.FORECAST_START,
            instance_sampler=sampler, past_length=self.context_length,
            future_length=self.prediction_length,
            time_series_fields=[FieldName.OBSERVED_VALUES],
            dummy_value=0.0,  # padding: value 0 and observed mask 0
        )

    def create_training_data_loader(self, data: Dataset, module, shuffle_buffer_length: Optional[int] = None,
                                    **kwargs) -> Iterable:
        instances = self._splitter("training").apply(Cyclic(data).stream(), is_train=True)
        return as_stacked_batches(instances, batch_size=self.batch_size,
                                  shuffle_buffer_length=shuffle_buffer_length,
                                  field_names=TRAINING_INPUT_NAMES, output_type=torch.tensor,
                                  num_batches_per_epoch=self.num_batches_per_epoch)

    def create_validation_data_loader(self, data: Dataset, module, **kwargs) -> Iterable:
        instances = self._splitter("validation").apply(data, is_train=True)
        return as_stacked_batches(instances, batch_size=self.batch_size,
                                  field_names=TRAINING_INPUT_NAMES, output_type=torch.tensor)

    def create_predictor(self, transformation: Transformation, module) -> PyTorchPredictor:
        if self.head == "quantile":
            generator = QuantileForecastGenerator(quantiles=[str(q) for q in self.quantiles])
        else:
            generator = SampleForecastGenerator()
        return PyTorchPredictor(
            input_names=PREDICTION_INPUT_NAMES, prediction_net=module,
            batch_size=self.batch_size, prediction_length=self.prediction_length,
            input_transform=transformation + self._splitter("test"),
            forecast_generator=generator, device="auto",
        )

    # ------------------------------------------------------------------ training
    def train_model(self, training_data: Dataset, validation_data: Optional[Dataset] = None,
                    from_predictor: Optional[PyTorchPredictor] = None,
                    shuffle_buffer_length: Optional[int] = None, cache_data: bool = False,
                    ckpt_path: Optional[str] = None, **kwargs) -> TrainOutput:
        """GluonTS's training loop, made quiet and tidy: Lightning's checkpoints go to a temporary
        folder (removed afterwards) unless ``trainer_kwargs`` names a ``default_root_dir``, and
        the estimator's ``trainer_kwargs`` are left as they were (GluonTS pops ``callbacks``)."""
        lengths = _check_series(training_data, "training_data", self.prediction_length + 1)
        if validation_data is not None:
            _check_series(validation_data, "validation_data", self.prediction_length)
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
        self.context_length = chosen.context_length
        self.config = TitansConfig.from_dict(self._model_settings, seq_len=self.context_length,
                                             horizon=H, n_channels=1)
        original = self.trainer_kwargs
        with contextlib.ExitStack() as stack:
            kw = dict(original)
            if kw.get("max_steps") == -1:  # Lightning's "no step limit"
                kw.pop("max_steps")
            limit = kw.get("limit_train_batches")
            per_epoch = (self.num_batches_per_epoch if limit is None else
                         batches_per_epoch(limit, self.num_batches_per_epoch))
            max_epochs, patience = epochs_for(chosen.steps, per_epoch)
            budget = kw.get("max_epochs") is None and not kw.get("max_steps")
            if budget:
                kw["max_epochs"] = max_epochs
            kw["callbacks"] = list(kw.get("callbacks") or [])
            watch = validation_data is not None and self.early_stopping
            if watch:
                kw["callbacks"].append(pl.callbacks.EarlyStopping(
                    monitor="val_loss", mode="min", patience=patience))
            self.chosen_defaults_ = {
                **chosen.to_dict(), "context_length": self.context_length,
                "cycle_len": self.config.cycle_len,  # the estimator reads no calendar
                "max_epochs": kw.get("max_epochs"), "budget": "data-aware" if budget else "given",
                "num_batches_per_epoch": per_epoch,
                "validation": (chosen.validation if own_tail else
                               "validation_data" if watch else "none"),
                "patience": patience if watch else None}
            if kw.get("default_root_dir") is None:
                kw["default_root_dir"] = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="titans-gluonts-"))
            stack.enter_context(quiet_lightning(self.verbose))
            if not self.verbose:
                stack.enter_context(warnings.catch_warnings())
                warnings.filterwarnings("ignore", message=r".*validation_step.* no `val_dataloader`.*")
            self.trainer_kwargs = kw
            try:
                out = super().train_model(training_data, validation_data,
                                          from_predictor=from_predictor,
                                          shuffle_buffer_length=shuffle_buffer_length,
                                          cache_data=cache_data, ckpt_path=ckpt_path, **kwargs)
                self.chosen_defaults_["epochs_run"] = int(out.trainer.current_epoch)
                return out
            finally:
                self.trainer_kwargs = original


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
    loses it for training and is validated on it; the others train whole, unvalidated."""
    train, val = [], []
    for entry, tail in zip(data, tails):
        target = np.asarray(entry[FieldName.TARGET])
        if tail:
            train.append({**entry, FieldName.TARGET: target[..., :-tail]})
            val.append(entry)
        else:
            train.append(entry)
    return train, (val or None)


def _check_series(data: Dataset, name: str, min_length: int) -> list:
    """One pass over a dataset before training: it holds series, at least one long enough for a
    training window (``min_length`` values), and no infinite target (NaN is a missing value).
    Returns the series' lengths."""
    n, longest, lengths = 0, 0, []
    for i, entry in enumerate(data):
        n += 1
        target = entry.get(FieldName.TARGET) if isinstance(entry, dict) else None
        if target is None:
            raise ValueError(f"{name}: entry {i} has no {FieldName.TARGET!r} field")
        values = np.asarray(target, dtype=np.float64)
        label = f"entry {i}" + (f" (item_id {entry[FieldName.ITEM_ID]!r})" if FieldName.ITEM_ID in entry else "")
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:
            raise ValueError(f"{name}: {label} has +/-inf in its target at position(s) "
                             f"{infinite[:5].tolist()}; use NaN for a missing value")
        lengths.append(values.shape[-1] if values.ndim else 0)
        longest = max(longest, lengths[-1])
    if n == 0:
        raise ValueError(f"{name} holds no series; TitansEstimator.train needs at least one series "
                         f"with {min_length} or more values")
    if longest < min_length:
        raise ValueError(f"{name}: every series is shorter than prediction_length"
                         f"{' + 1' if name == 'training_data' else ''} = {min_length} values (the longest has "
                         f"{longest}); a training window needs at least one past value and "
                         f"prediction_length future values. Use a shorter prediction_length or longer series")
    return lengths


def _positive(**values: Any) -> None:
    for name, val in values.items():
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
