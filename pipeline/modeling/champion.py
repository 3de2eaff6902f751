"""The champion decision: does a new model beat the one in use by more than noise?

Both models score the same test rows; the difference of the declared metric is resampled by
account (a paired bootstrap: an account's snapshots move together, as they are not
independent), and the new model is promoted only when the lower end of the interval is above
zero. A +0.0025 ROC-AUC on one test period is within the noise of which accounts happened to
renew in it, and must not take the alias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

#: metric name -> (function of (y, p), higher is better)
METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], bool]] = {
    "roc_auc": (roc_auc_score, True),
    "pr_auc": (average_precision_score, True),
    "log_loss": (lambda y, p: log_loss(y, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1]), False),
}


@dataclass(frozen=True)
class Comparison:
    """The new model's gain over the champion on the same rows (positive = better), with a
    bootstrap interval over accounts."""

    metric: str
    new_value: float
    champion_value: float
    gain: float
    low: float
    high: float
    accounts: int
    resamples: int
    confidence: float

    @property
    def beyond_noise(self) -> bool:
        return self.low > 0


def _rows_by_account(accounts: np.ndarray) -> list[np.ndarray]:
    """Row positions per account (sorted by account id): the bootstrap's unit of resampling."""
    codes, uniques = pd.factorize(pd.Series(accounts).astype(str), sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(uniques))]


def bootstrap_over_accounts(
    y: np.ndarray,
    accounts: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float, int]:
    """(low, high, resamples used) of `statistic(rows)` over resamples of whole accounts; a
    resample with one class is skipped (a ranking metric has no value there)."""
    rows_of = _rows_by_account(accounts)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        picked = rng.integers(0, len(rows_of), size=len(rows_of))
        rows = np.concatenate([rows_of[i] for i in picked])
        if len(np.unique(y[rows])) == 2:
            values.append(statistic(rows))
    if not values:
        return float("nan"), float("nan"), 0
    tail = (1 - confidence) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail)), len(values)


def _metric(metric: str) -> tuple[Callable[[np.ndarray, np.ndarray], float], float]:
    """(score function, +1 when higher is better else -1)."""
    if metric not in METRICS:
        raise ValueError(
            f"no champion comparison for metric {metric!r}; use one of {sorted(METRICS)}"
        )
    score, higher_is_better = METRICS[metric]
    return score, 1.0 if higher_is_better else -1.0


def compare(
    y: np.ndarray,
    new: np.ndarray,
    champion: np.ndarray,
    accounts: np.ndarray,
    *,
    metric: str,
    resamples: int,
    confidence: float,
    seed: int,
) -> Comparison:
    """The paired comparison of two models' probabilities for the same labelled rows."""
    score, sign = _metric(metric)
    y = np.asarray(y, dtype=float)
    new = np.asarray(new, dtype=float)
    champion = np.asarray(champion, dtype=float)
    low, high, used = bootstrap_over_accounts(
        y,
        accounts,
        lambda rows: sign * (score(y[rows], new[rows]) - score(y[rows], champion[rows])),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    new_value = float(score(y, new))
    champion_value = float(score(y, champion))
    return Comparison(
        metric=metric,
        new_value=new_value,
        champion_value=champion_value,
        gain=sign * (new_value - champion_value),
        low=low,
        high=high,
        accounts=int(pd.Series(accounts).astype(str).nunique()),
        resamples=used,
        confidence=confidence,
    )


def interval(
    y: np.ndarray,
    p: np.ndarray,
    accounts: np.ndarray,
    *,
    metric: str,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """A bootstrap interval over accounts for one model's metric (e.g. is ROC-AUC above 0.5?)."""
    score, _ = _metric(metric)
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    low, high, _ = bootstrap_over_accounts(
        y,
        accounts,
        lambda rows: score(y[rows], p[rows]),
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    return low, high
