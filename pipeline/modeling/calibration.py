"""Probability calibration: a learner's raw log-odds to probabilities where 30% means 30%."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import TrainingError
from pipeline.core.numerics import sigmoid

#: Ridge on the Platt slope and intercept: scikit-learn's C=1e6, i.e. practically none, but
#: enough to keep the Newton steps finite when the validation classes separate perfectly.
_PLATT_RIDGE = 1e-6
#: Significant digits (of the larger of the two) the Platt parameters are stored with: far
#: beyond their noise, and few enough that the last bits a CPU's kernels give never show.
_PLATT_DIGITS = 10


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
            return sigmoid(a * raw + b)
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
        slope, intercept = fit_platt(raw, y)
        return Calibrator("platt", (slope, intercept), ())
    if method != "isotonic":
        raise TrainingError(f"train.calibration must be isotonic or platt, not {method!r}")
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return Calibrator(
        "isotonic",
        tuple(float(v) for v in iso.X_thresholds_),
        tuple(float(v) for v in iso.y_thresholds_),
    )


def fit_platt(raw: np.ndarray, y: np.ndarray, *, max_iter: int = 100) -> tuple[float, float]:
    """Slope and intercept of p = sigmoid(slope * raw + intercept) by maximum likelihood.

    Newton's method on the two parameters (with a line search that halves the step until the
    penalised log-loss falls), run to convergence: the answer does not depend on the path or on
    a solver's tolerance, only elementwise operations and NumPy's own sums are used (no BLAS),
    and the result is rounded to `_PLATT_DIGITS` significant digits, so the same validation
    scores give the same calibrator on every CPU.
    """
    raw, y = np.asarray(raw, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if raw.size == 0 or np.unique(y).size < 2:
        raise TrainingError("Platt calibration needs both churned and retained validation rows")
    prior = float(y.mean())
    params = np.array([1.0, math.log(prior / (1.0 - prior)) - float(raw.mean())])

    def loss(p: np.ndarray) -> float:
        z = p[0] * raw + p[1]
        # log(1 + e^z) - y z, computed without overflow
        return float((np.logaddexp(0.0, z) - y * z).sum()) + 0.5 * _PLATT_RIDGE * float(
            (p * p).sum()
        )

    current = loss(params)
    for _ in range(max_iter):
        # full precision inside the solver: only its rounded answer must be CPU-independent
        prob = 1.0 / (1.0 + np.exp(-(params[0] * raw + params[1])))
        residual, weight = prob - y, prob * (1.0 - prob)
        gradient = np.array([(residual * raw).sum(), residual.sum()]) + _PLATT_RIDGE * params
        h_aa = (weight * raw * raw).sum() + _PLATT_RIDGE
        h_ab = (weight * raw).sum()
        h_bb = weight.sum() + _PLATT_RIDGE
        det = h_aa * h_bb - h_ab * h_ab
        step = (
            np.array(
                [h_bb * gradient[0] - h_ab * gradient[1], h_aa * gradient[1] - h_ab * gradient[0]]
            )
            / det
        )
        scale = 1.0
        while scale > 1e-10:
            trial = params - scale * step
            value = loss(trial)
            if value <= current:
                break
            scale /= 2.0
        else:
            break
        converged = np.abs(params - trial).max() <= 1e-12 * max(1.0, np.abs(trial).max())
        params, current = trial, value
        if converged:
            break
    # digits relative to the larger parameter: an intercept of 1e-13 beside a slope of 20 is a
    # zero, and its digits are exactly the ones that differ between CPUs
    magnitude = math.floor(math.log10(max(1.0, float(np.abs(params).max()))))
    slope, intercept = (round(float(v), _PLATT_DIGITS - 1 - magnitude) + 0.0 for v in params)
    return slope, intercept
