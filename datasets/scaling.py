"""Per-channel standardisation, fitted on training rows only (the benchmark protocol's scaler)."""

from __future__ import annotations

import numpy as np

__all__ = ["StandardScaler"]


class StandardScaler:
    """``(x - mean) / std`` per channel, like scikit-learn's ``StandardScaler`` (population std).

    Missing values (NaN, or ``mask == False``) are ignored when fitting. A constant channel gets
    ``std = 1`` so it maps to zeros instead of NaN. The fitted state is two float64 arrays and
    round-trips through :meth:`state_dict` / :meth:`from_state_dict` (no pickle).
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, values: np.ndarray, mask: np.ndarray | None = None) -> "StandardScaler":
        """Fit on ``values`` of shape [T, C] (or [T] for one channel)."""
        x = np.asarray(values, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"StandardScaler.fit expects a non-empty [T, C] array, got shape {x.shape}")
        if mask is not None:
            x = np.where(np.asarray(mask, dtype=bool).reshape(x.shape), x, np.nan)
        observed = np.sum(~np.isnan(x), axis=0)
        if np.any(observed == 0):
            bad = np.flatnonzero(observed == 0).tolist()
            raise ValueError(f"cannot fit the scaler: channel(s) {bad} have no observed value")
        self.mean_ = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean_ is None or self.scale_ is None:
            raise RuntimeError("StandardScaler is not fitted: call fit() first")
        return self.mean_, self.scale_

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale an array whose last axis is the channel axis."""
        mean, scale = self._fitted()
        return ((np.asarray(values, dtype=np.float64) - mean) / scale).astype(np.float32)

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """Undo :meth:`transform` (last axis = channels)."""
        mean, scale = self._fitted()
        out = np.asarray(values, dtype=np.float64) * scale + mean
        return out.astype(np.float32)

    def state_dict(self) -> dict:
        mean, scale = self._fitted()
        return {"mean": mean.tolist(), "scale": scale.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "StandardScaler":
        obj = cls()
        obj.mean_ = np.asarray(state["mean"], dtype=np.float64)
        obj.scale_ = np.asarray(state["scale"], dtype=np.float64)
        return obj

    def __repr__(self) -> str:
        if self.mean_ is None:
            return "StandardScaler(unfitted)"
        return f"StandardScaler(channels={self.mean_.shape[0]})"
