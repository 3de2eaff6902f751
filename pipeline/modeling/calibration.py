"""Probability calibration: a learner's raw log-odds to probabilities where 30% means 30%."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import TrainingError


@dataclass(frozen=True)
class Calibrator:
    """Maps raw log-odds to calibrated probabilities; stored as JSON next to the model."""

    method: str
    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method == "platt":
            a, b = self.x
            return 1.0 / (1.0 + np.exp(-(a * raw + b)))
        return np.interp(raw, self.x, self.y)

    def to_json(self) -> str:
        return json.dumps({"method": self.method, "x": self.x, "y": self.y}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        data = json.loads(text)
        return cls(data["method"], tuple(data["x"]), tuple(data["y"]))


def fit_calibrator(raw: np.ndarray, y: np.ndarray, *, method: str) -> Calibrator:
    """Platt (the params default) or isotonic calibration fitted on the validation period."""
    raw, y = np.asarray(raw, dtype=float), np.asarray(y, dtype=float)
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
        return Calibrator("platt", (float(lr.coef_[0, 0]), float(lr.intercept_[0])), ())
    if method != "isotonic":
        raise TrainingError(f"train.calibration must be isotonic or platt, not {method!r}")
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return Calibrator(
        "isotonic",
        tuple(float(v) for v in iso.X_thresholds_),
        tuple(float(v) for v in iso.y_thresholds_),
    )
