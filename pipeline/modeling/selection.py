"""Model selection: which learner, with which hyperparameters, by rolling-origin validation.

One validation period is a noisy judge: on a company with a few hundred renewals a quarter,
which accounts happened to renew in it moves PR-AUC by several points. So each candidate is
judged on several folds that roll the origin back in time, each fold shaped like the real
split (train on the outcomes decided before its validation window, purged and embargoed the
same way; validate on the outcomes decided in the window), the newest fold being the real
validation period. Nothing from the test period is ever seen: every fold ends before it.

Candidates:
- `lightgbm`: gradient-boosted trees with the registry's monotone constraints, early stopping
  on the fold's validation rows, and leaf sizes scaled to the number of churned rows (a leaf
  must expect `churned_per_leaf` churners, so a company with 100 churned rows gets coarser
  trees than one with 5,000);
- `logistic`: an L2-regularised logistic regression on transformed features (log of skewed
  counts, clipped, standardised, with missing indicators: the fight-churn recipe);
- `blend`: a weighted mean of the two best models' log-odds.

Hyperparameters are searched with Optuna's TPE sampler, seeded and sequential (the same data
and seed give the same trials), starting from the params.yaml values. The candidate with the
best mean fold score wins; each candidate's score comes with a bootstrap interval over
accounts, recorded in training info, metrics and MLflow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from pipeline.core.labels import LABEL, LabelRule
from pipeline.core.numerics import row_dot
from pipeline.modeling.champion import METRICS, bootstrap_over_accounts
from pipeline.modeling.learners import LinearLearner, prepare_linear, solve_linear
from pipeline.modeling.split import Split

log = logging.getLogger(__name__)

#: Preference on an exact tie of fold scores: the simpler model.
SIMPLICITY = ("logistic", "lightgbm", "blend")


@dataclass(frozen=True)
class Fold:
    """One rolling origin: boolean masks over the labelled pre-test rows."""

    valid_start: date
    valid_end: date
    train: np.ndarray
    valid: np.ndarray

    def describe(self, y: np.ndarray) -> dict[str, object]:
        return {
            "valid_start": str(self.valid_start),
            "valid_end": str(self.valid_end),
            "train_rows": int(self.train.sum()),
            "train_churned": int((y[self.train] == 1).sum()),
            "valid_rows": int(self.valid.sum()),
            "valid_churned": int((y[self.valid] == 1).sum()),
        }


def rolling_folds(
    known: pd.DataFrame,
    split: Split,
    rule: LabelRule,
    *,
    folds: int,
    months: int,
    enough: Callable[[np.ndarray], bool],
) -> list[Fold]:
    """Up to `folds` folds, oldest first; the newest is the split's own train/validation.

    Fold i moves the split's validation window (and the start of what it treats as the
    future) back by i x `months`. A fold whose training or validation rows are too few to
    judge (`enough`) ends the roll: older folds only have less.
    """
    y = known[LABEL].to_numpy()
    out: list[Fold] = []
    for i in range(folds):
        shift = pd.DateOffset(months=i * months)
        test_start = pd.Timestamp(split.test_start) - shift
        shifted = replace(
            split,
            valid_start=(pd.Timestamp(split.valid_start) - shift).date(),
            valid_end=(test_start - pd.Timedelta(days=split.embargo_days + 1)).date(),
            test_start=test_start.date(),
        )
        part = shifted.assign(known["snapshot_date"], known["renewal_date"], rule).to_numpy()
        train, valid = part == "train", part == "valid"
        if not (enough(y[train]) and enough(y[valid])):
            break
        out.append(Fold(shifted.valid_start, shifted.valid_end, train, valid))
    return out[::-1]


# --- fold scores -------------------------------------------------------------------------------


def _platt(raw: np.ndarray, y: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    return lr.predict_proba(raw.reshape(-1, 1))[:, 1]


def metric_value(y: np.ndarray, raw: np.ndarray, metric: str) -> float:
    """The selection metric of raw log-odds on one fold. Log loss is taken after a Platt fit
    on the fold itself: every candidate is calibrated before use, so its log loss should be
    judged calibrated (two parameters fitted on thousands of rows add no real optimism)."""
    score, _ = METRICS[metric]
    if metric == "log_loss":
        return float(score(y, _platt(raw, y)))
    return float(score(y, raw))


def _signed(metric: str) -> float:
    return 1.0 if METRICS[metric][1] else -1.0


@dataclass(frozen=True)
class Candidate:
    """A candidate's best hyperparameters and its out-of-fold log-odds per fold."""

    name: str
    params: dict
    fold_raw: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Scored:
    name: str
    params: dict
    score: float
    low: float
    high: float
    fold_scores: tuple[float, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "score": round(self.score, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
            "fold_scores": [round(v, 6) for v in self.fold_scores],
            "params": self.params,
        }


def score_candidate(
    candidate: Candidate,
    folds: list[Fold],
    y: np.ndarray,
    accounts: np.ndarray,
    *,
    metric: str,
    resamples: int,
    confidence: float,
    seed: int,
) -> Scored:
    """Mean fold score, and its interval from resampling whole accounts (every fold's rows of
    a drawn account move together)."""
    fold_y = [y[f.valid] for f in folds]
    scores = tuple(
        metric_value(fy, raw, metric) for fy, raw in zip(fold_y, candidate.fold_raw, strict=True)
    )
    pooled_y = np.concatenate(fold_y)
    pooled_raw = np.concatenate(candidate.fold_raw)
    fold_of = np.concatenate([np.full(len(fy), k) for k, fy in enumerate(fold_y)])
    pooled_accounts = np.concatenate([accounts[f.valid] for f in folds])

    def statistic(rows: np.ndarray) -> float:
        values = []
        for k in range(len(folds)):
            picked = rows[fold_of[rows] == k]
            if len(np.unique(pooled_y[picked])) == 2:
                values.append(metric_value(pooled_y[picked], pooled_raw[picked], metric))
        return float(np.mean(values)) if values else math.nan

    low, high, _ = bootstrap_over_accounts(
        pooled_y,
        pooled_accounts,
        statistic,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    return Scored(candidate.name, candidate.params, float(np.mean(scores)), low, high, scores)


def choose(scored: list[Scored], metric: str) -> Scored:
    """The best mean fold score; on an exact tie, the simpler model."""
    sign = _signed(metric)
    return max(scored, key=lambda s: (sign * s.score, -SIMPLICITY.index(s.name)))


# --- searches ----------------------------------------------------------------------------------


def _suggest(trial, name: str, low: float, high: float, *, log: bool = False) -> float:
    """A float hyperparameter from the sampler, to six significant digits: TPE computes its
    proposals with NumPy's exp and log, whose last bits depend on the CPU, and a last bit of a
    regularisation weight would change the trees' bytes (`pipeline.core.numerics`). Decimal
    rounding by Python's correctly rounded formatting keeps the params.yaml values as written."""
    value = float(f"{trial.suggest_float(name, low, high, log=log):.6g}")
    return min(max(value, low), high)


def _study(seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    )


def min_data_in_leaf(churned_per_leaf: float, rows: int, churned: int) -> int:
    """The leaf size at which a leaf expects `churned_per_leaf` churned rows, within sane
    bounds (at least 5 rows, at most a tenth of the training rows)."""
    per_churned = rows / max(churned, 1)
    return int(min(max(5, math.ceil(churned_per_leaf * per_churned)), max(5, rows // 10)))


def lightgbm_params(params: dict, rows: int, churned: int) -> dict:
    """LightGBM parameters for a training set: `churned_per_leaf` becomes min_data_in_leaf."""
    out = {k: v for k, v in params.items() if k != "churned_per_leaf"}
    if "churned_per_leaf" in params:
        out["min_data_in_leaf"] = min_data_in_leaf(params["churned_per_leaf"], rows, churned)
    return out


#: Search space of the tree candidate: (low, high) per parameter.
TREE_SPACE = {
    "num_leaves": (3, 15),
    "churned_per_leaf": (1.0, 50.0),
    "lambda_l2": (0.01, 100.0),
    "feature_fraction": (0.5, 1.0),
}


def search_lightgbm(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: list[Fold],
    *,
    fit: Callable[..., object],
    base_params: dict,
    metric: str,
    trials: int,
    seed: int,
) -> Candidate:
    """Search the tree candidate. `fit(key, train_rows, valid_rows, params)` returns a learner
    fitted on the masked rows of `X` (`key` names the fold, so its binned data can be reused);
    `base_params` are the params.yaml values, tried first."""
    sign = _signed(metric)
    newest = folds[-1]
    first: dict[str, object] = {}
    for key in ("num_leaves", "lambda_l2", "feature_fraction"):
        if key in base_params:
            low, high = TREE_SPACE[key]
            first[key] = min(max(base_params[key], low), high)
    if "min_data_in_leaf" in base_params:
        per_churned = newest.train.sum() / max(int((y[newest.train] == 1).sum()), 1)
        low, high = TREE_SPACE["churned_per_leaf"]
        wanted = base_params["min_data_in_leaf"] / per_churned
        first["churned_per_leaf"] = min(max(wanted, low), high)
    searched = {*TREE_SPACE, "min_data_in_leaf"}
    fixed = {k: v for k, v in base_params.items() if k not in searched}
    study = _study(seed)
    if first:
        study.enqueue_trial(first)
    outputs: dict[int, tuple[dict, tuple[np.ndarray, ...]]] = {}

    def objective(trial) -> float:
        low, high = TREE_SPACE["num_leaves"]
        params = {
            **fixed,
            "num_leaves": trial.suggest_int("num_leaves", low, high),
            "churned_per_leaf": _suggest(
                trial, "churned_per_leaf", *TREE_SPACE["churned_per_leaf"], log=True
            ),
            "lambda_l2": _suggest(trial, "lambda_l2", *TREE_SPACE["lambda_l2"], log=True),
            "feature_fraction": _suggest(
                trial, "feature_fraction", *TREE_SPACE["feature_fraction"]
            ),
        }
        raws = []
        for fold in folds:
            y_train = y[fold.train]
            learner = fit(
                fold.valid_start,
                fold.train,
                fold.valid,
                lightgbm_params(params, len(y_train), int((y_train == 1).sum())),
            )
            raws.append(learner.raw(X[fold.valid]))
        outputs[trial.number] = (params, tuple(raws))
        return sign * float(
            np.mean([metric_value(y[f.valid], r, metric) for f, r in zip(folds, raws, strict=True)])
        )

    study.optimize(objective, n_trials=trials)
    params, raws = outputs[study.best_trial.number]
    return Candidate("lightgbm", _clean(params), raws)


C_RANGE = (1e-4, 10.0)


def search_logistic(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: list[Fold],
    *,
    categorical: list[str],
    metric: str,
    trials: int,
    seed: int,
    monotone: Mapping[str, int] | None = None,
) -> Candidate:
    """Search the logistic candidate's regularisation C. The transform is fitted once per
    fold (it does not depend on C), on that fold's training rows only; ``monotone`` as for
    `solve_linear`."""
    sign = _signed(metric)
    prepared: list[tuple[LinearLearner, np.ndarray, np.ndarray]] = []
    for fold in folds:
        draft = prepare_linear(X[fold.train], categorical=categorical)
        prepared.append(
            (draft, draft.standardised(X[fold.train]), draft.standardised(X[fold.valid]))
        )
    study = _study(seed)
    study.enqueue_trial({"C": 0.1})
    outputs: dict[int, tuple[float, tuple[np.ndarray, ...]]] = {}

    def objective(trial) -> float:
        C = _suggest(trial, "C", *C_RANGE, log=True)
        raws = []
        for fold, (draft, z_train, z_valid) in zip(folds, prepared, strict=True):
            learner = solve_linear(draft, z_train, y[fold.train], C=C, seed=seed, monotone=monotone)
            coef = np.array([c.coef for c in learner.columns])
            raws.append(learner.intercept + row_dot(z_valid, coef))
        outputs[trial.number] = (C, tuple(raws))
        return sign * float(
            np.mean([metric_value(y[f.valid], r, metric) for f, r in zip(folds, raws, strict=True)])
        )

    study.optimize(objective, n_trials=trials)
    C, raws = outputs[study.best_trial.number]
    return Candidate("logistic", {"C": _round(C)}, raws)


def blend_candidate(
    tree: Candidate, linear: Candidate, y: np.ndarray, folds: list[Fold], *, weights, metric: str
) -> Candidate:
    """The best weight of a log-odds blend of the two searched candidates (no refit)."""
    sign = _signed(metric)
    best: tuple[float, float, tuple[np.ndarray, ...]] | None = None
    for w in weights:
        raws = tuple(
            w * t + (1 - w) * lin for t, lin in zip(tree.fold_raw, linear.fold_raw, strict=True)
        )
        value = sign * float(
            np.mean([metric_value(y[f.valid], r, metric) for f, r in zip(folds, raws, strict=True)])
        )
        if best is None or value > best[0]:
            best = (value, float(w), raws)
    assert best is not None  # weights is never empty (config)
    return Candidate(
        "blend", {"weight": best[1], "lightgbm": tree.params, "logistic": linear.params}, best[2]
    )


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _clean(params: dict) -> dict:
    return {k: (_round(v) if isinstance(v, float) else v) for k, v in sorted(params.items())}
