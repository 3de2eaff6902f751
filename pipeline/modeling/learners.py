"""The learned scorers a churn model can be: gradient-boosted trees, a logistic regression on
transformed features, or a blend of the two.

Whatever model selection picks, the rest of the pipeline sees one interface: raw log-odds of
churn (`raw`), an exact split of those log-odds into one contribution per feature
(`contributions`, for the reason codes: base + contributions = raw, checked on every scoring
run), and a per-feature importance (for drift). Exactness is what lets a CSM's reasons explain
the very score that ranked the account:

- trees: TreeSHAP through LightGBM's own `pred_contrib` (the same values as shap.TreeExplainer);
- logistic regression: a linear model on standardised inputs, so feature f's contribution is
  the sum over its input columns of coefficient x standardised value, and the base value is the
  intercept (the standardised columns have mean 0 over the training rows): what
  shap.LinearExplainer computes against the training mean, without an approximation;
- blend: a weighted mean of the two log-odds, and so the same weighted mean of contributions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from pipeline.core.errors import ExplainError, TrainingError
from pipeline.core.numerics import log1p, row_dot

if TYPE_CHECKING:
    import lightgbm as lgb

# Contributions and raw scores agree to float rounding; anything larger is a bug.
ADDITIVITY_TOLERANCE = 1e-6
#: Learner kinds, as recorded in a model directory and in training info.
KINDS = ("lightgbm", "logistic", "blend")


class Learner(Protocol):
    kind: str
    contribution_method: str

    def raw(self, X: pd.DataFrame, *, num_threads: int = 0) -> np.ndarray: ...

    def contributions(
        self, X: pd.DataFrame, *, num_threads: int = 0
    ) -> tuple[pd.DataFrame, float]: ...

    def importance(self) -> dict[str, float]: ...


# --- trees -------------------------------------------------------------------------------------


@dataclass
class TreeLearner:
    """A LightGBM binary booster (only its trees up to `best_iteration` are used)."""

    booster: lgb.Booster
    kind: str = "lightgbm"
    contribution_method: str = "lightgbm_pred_contrib"

    @property
    def _iterations(self) -> int | None:
        best = int(getattr(self.booster, "best_iteration", 0) or 0)
        return best if best > 0 else None

    def raw(self, X: pd.DataFrame, *, num_threads: int = 0) -> np.ndarray:
        return np.asarray(
            self.booster.predict(
                X, raw_score=True, num_iteration=self._iterations, num_threads=num_threads
            ),
            dtype=float,
        )

    def contributions(self, X: pd.DataFrame, *, num_threads: int = 0) -> tuple[pd.DataFrame, float]:
        """Exact TreeSHAP (log-odds): LightGBM's `predict(X, pred_contrib=True)`, one column
        per feature plus a last column holding the base value. The trees are depth-limited
        (`train.lightgbm.max_depth`), which keeps this cheap enough for every account weekly."""
        contrib = np.asarray(
            self.booster.predict(
                X, pred_contrib=True, num_iteration=self._iterations, num_threads=num_threads
            ),
            dtype=float,
        )
        if contrib.shape != (len(X), X.shape[1] + 1):
            raise ExplainError(
                f"pred_contrib returned shape {contrib.shape} for {X.shape[1]} features and "
                f"{len(X)} rows; a multi-class model cannot be explained here"
            )
        base = contrib[:, -1]
        if len(base) and not np.allclose(base, base[0], rtol=0, atol=ADDITIVITY_TOLERANCE):
            raise ExplainError("the SHAP base value differs between rows")
        base_value = float(base[0]) if len(base) else math.nan
        return pd.DataFrame(contrib[:, :-1], columns=list(X.columns), index=X.index), base_value

    def importance(self) -> dict[str, float]:
        gain = self.booster.feature_importance("gain", iteration=self._iterations)
        return dict(zip(self.booster.feature_name(), (float(g) for g in gain), strict=True))

    @property
    def trees(self) -> int:
        return int(self._iterations or self.booster.num_trees())


# --- logistic regression on transformed features -------------------------------------------------

#: A count is log-transformed when its training values are all >= 0 and this skewed: the
#: fight-churn recipe (heavy right tails of usage and ticket counts would otherwise let a few
#: accounts set the slope).
SKEW_FOR_LOG = 2.0
#: Values are clipped to the training rows' quantiles before the transform, so one outlier at
#: scoring time cannot move a probability without bound.
CLIP_QUANTILES = (0.001, 0.999)


@dataclass(frozen=True)
class LinearColumn:
    """One input column of the linear model, derived from feature `feature`.

    kind 'value': the clipped (and, when `log`, log1p'd) value, missing filled with the
    training median; 'missing': 1 where the value is missing; 'level': 1 where a category
    equals `level`. Every column is standardised with the training rows' mean and scale.
    """

    feature: str
    kind: str
    level: str | None
    log: bool
    low: float
    high: float
    fill: float
    mean: float
    scale: float
    coef: float


def _rounded(value: float, digits: int = 9) -> float:
    """Stored numbers carry 9 significant digits: the last bits of a BLAS solver differ
    between CPUs and carry no meaning, and a stored model must be the same bytes anywhere."""
    return float(f"{value:.{digits}g}") if np.isfinite(value) else float(value)


def _column_values(X: pd.DataFrame, column: LinearColumn) -> np.ndarray:
    values = X[column.feature]
    if column.kind == "level":
        return (values.astype("object") == column.level).to_numpy(dtype=float)
    numbers = values.astype("float64").to_numpy()
    if column.kind == "missing":
        return np.isnan(numbers).astype(float)
    clipped = np.clip(numbers, column.low, column.high)
    if column.log:
        clipped = log1p(clipped)
    return np.where(np.isnan(clipped), column.fill, clipped)


@dataclass(frozen=True)
class LinearLearner:
    """A logistic regression on standardised, transformed inputs, with exact contributions."""

    features: tuple[str, ...]
    columns: tuple[LinearColumn, ...]
    intercept: float
    C: float
    kind: str = "logistic"
    contribution_method: str = "linear_exact"

    def standardised(self, X: pd.DataFrame) -> np.ndarray:
        """Rows x columns of standardised inputs (mean 0 over the training rows)."""
        out = np.empty((len(X), len(self.columns)))
        for j, column in enumerate(self.columns):
            out[:, j] = (_column_values(X, column) - column.mean) / column.scale
        return out

    def raw(self, X: pd.DataFrame, *, num_threads: int = 0) -> np.ndarray:
        coef = np.array([c.coef for c in self.columns])
        return self.intercept + row_dot(self.standardised(X), coef)

    def contributions(self, X: pd.DataFrame, *, num_threads: int = 0) -> tuple[pd.DataFrame, float]:
        """coefficient x standardised value, summed over each feature's columns; the base is
        the intercept. Features the model dropped (no variance in training) contribute 0."""
        terms = self.standardised(X) * np.array([c.coef for c in self.columns])
        out = pd.DataFrame(0.0, index=X.index, columns=list(X.columns))
        for j, column in enumerate(self.columns):
            out[column.feature] = out[column.feature].to_numpy() + terms[:, j]
        return out, float(self.intercept)

    def importance(self) -> dict[str, float]:
        """|coefficient| summed per feature (on standardised inputs: comparable)."""
        out = dict.fromkeys(self.features, 0.0)
        for column in self.columns:
            out[column.feature] += abs(column.coef)
        return out

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "features": list(self.features),
                    "intercept": self.intercept,
                    "C": self.C,
                    "columns": [asdict(c) for c in self.columns],
                },
                indent=1,
            )
            + "\n"
        )

    @classmethod
    def from_json(cls, text: str) -> LinearLearner:
        data = json.loads(text)
        return cls(
            features=tuple(data["features"]),
            columns=tuple(LinearColumn(**c) for c in data["columns"]),
            intercept=float(data["intercept"]),
            C=float(data["C"]),
        )


def _prepare_columns(X: pd.DataFrame, categorical: set[str]) -> list[LinearColumn]:
    """The input columns of the linear model, with their transform fitted on `X`."""
    columns: list[LinearColumn] = []
    for name in X.columns:
        if name in categorical:
            values = X[name].astype("object")
            for level in sorted(values.dropna().astype(str).unique()):
                hits = (values == level).to_numpy(dtype=float)
                columns.append(
                    LinearColumn(name, "level", level, False, 0.0, 0.0, 0.0, hits.mean(), 1.0, 0.0)
                )
            continue
        numbers = X[name].astype("float64").to_numpy()
        known = numbers[~np.isnan(numbers)]
        if known.size:
            low, high = (float(q) for q in np.quantile(known, CLIP_QUANTILES))
            skew = float(pd.Series(known).skew()) if known.size > 2 else 0.0
            log = bool(low >= 0 and np.isfinite(skew) and skew > SKEW_FOR_LOG)
            clipped = np.clip(known, low, high)
            fill = float(np.median(log1p(clipped) if log else clipped))
            columns.append(LinearColumn(name, "value", None, log, low, high, fill, 0.0, 1.0, 0.0))
        if known.size < numbers.size:
            columns.append(LinearColumn(name, "missing", None, False, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    fitted = []
    for column in columns:
        values = _column_values(X, column)
        mean, scale = float(values.mean()), float(values.std())
        if scale > 1e-12:  # a constant column carries nothing and cannot be standardised
            fitted.append(
                LinearColumn(**{**asdict(column), "mean": _rounded(mean), "scale": _rounded(scale)})
            )
    return fitted


def prepare_linear(X: pd.DataFrame, *, categorical: list[str]) -> LinearLearner:
    """The transform fitted on the training rows `X`, with no coefficients yet."""
    columns = _prepare_columns(X, set(categorical))
    if not columns:
        raise TrainingError("no feature varies in the training rows: nothing to fit")
    return LinearLearner(tuple(X.columns), tuple(columns), 0.0, 0.0)


def _fit_logistic(Z: np.ndarray, y: np.ndarray, *, C: float, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(
        C=C, solver="newton-cholesky", max_iter=100, tol=1e-8, random_state=seed
    )
    model.fit(Z, y)
    return model.coef_[0], float(model.intercept_[0])


def solve_linear(
    draft: LinearLearner,
    Z: np.ndarray,
    y: np.ndarray | pd.Series,
    *,
    C: float,
    seed: int,
    monotone: Mapping[str, int] | None = None,
) -> LinearLearner:
    """L2-regularised logistic regression on the standardised inputs `Z` of `draft`.

    Newton-Cholesky: exact to a tight tolerance in a few Newton steps for the ~100 columns a
    feature table has (lbfgs needed hundreds of iterations and seconds per fit here).

    ``monotone`` (feature -> +1: more never lowers the risk, -1: more never raises it) holds
    the registry's business facts, as the trees' monotone constraints do: a value column whose
    coefficient comes out against its feature's direction (correlated signals share the
    weight and one can flip) is held at 0 and the rest refitted, until every sign agrees. The
    transform of a value is increasing, so the coefficient's sign is the feature's direction.
    """
    y = np.asarray(y).astype(int)
    wanted = np.array(
        [(monotone or {}).get(c.feature, 0) if c.kind == "value" else 0 for c in draft.columns]
    )
    free = np.ones(len(draft.columns), dtype=bool)
    while True:
        coef_free, intercept = _fit_logistic(Z[:, free], y, C=C, seed=seed)
        coef = np.zeros(len(draft.columns))
        coef[free] = coef_free
        wrong = free & (coef * wanted < 0)
        if not wrong.any():
            break
        free &= ~wrong  # hold them at 0; each pass removes at least one column
    coefs = [_rounded(float(c)) for c in coef]
    return replace(
        draft,
        columns=tuple(replace(c, coef=w) for c, w in zip(draft.columns, coefs, strict=True)),
        intercept=_rounded(intercept),
        C=float(C),
    )


def fit_linear(
    X: pd.DataFrame,
    y: pd.Series,
    *,
    categorical: list[str],
    C: float,
    seed: int,
    monotone: Mapping[str, int] | None = None,
) -> LinearLearner:
    """The logistic candidate fitted on training rows: transform, then solve."""
    draft = prepare_linear(X, categorical=categorical)
    return solve_linear(draft, draft.standardised(X), y, C=C, seed=seed, monotone=monotone)


# --- blend ---------------------------------------------------------------------------------------


@dataclass
class BlendLearner:
    """weight x tree log-odds + (1 - weight) x linear log-odds."""

    tree: TreeLearner
    linear: LinearLearner
    weight: float
    kind: str = "blend"
    contribution_method: str = "blend_of_pred_contrib_and_linear_exact"

    def raw(self, X: pd.DataFrame, *, num_threads: int = 0) -> np.ndarray:
        w = self.weight
        return w * self.tree.raw(X, num_threads=num_threads) + (1 - w) * self.linear.raw(X)

    def contributions(self, X: pd.DataFrame, *, num_threads: int = 0) -> tuple[pd.DataFrame, float]:
        w = self.weight
        tree, tree_base = self.tree.contributions(X, num_threads=num_threads)
        linear, linear_base = self.linear.contributions(X)
        return w * tree + (1 - w) * linear, w * tree_base + (1 - w) * linear_base

    def importance(self) -> dict[str, float]:
        """Each part's importances as shares of its total, weighted like the scores."""
        out: dict[str, float] = {}
        parts = ((self.tree.importance(), self.weight), (self.linear.importance(), 1 - self.weight))
        for part, w in parts:
            total = sum(part.values()) or 1.0
            for name, value in part.items():
                out[name] = out.get(name, 0.0) + w * value / total
        return out
