"""Baselines the model must beat, scored on the same test rows.

- A rule-based health score of the kind CS platforms ship: hand-weighted points for usage,
  training, support, sentiment and engagement, turned into a risk (100 - health). It is the
  status quo a CS team already has.
- A logistic regression on the same features: the simplest learned model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

# (feature, points, kind, threshold): "min" earns the points when value >= threshold, "max"
# when value <= threshold. Missing inputs earn half the points: unknown is neither good nor bad.
HEALTH_RULES: tuple[tuple[str, float, str, float], ...] = (
    ("active_user_share_30d", 25.0, "min", 0.5),
    ("distinct_modules_30d", 10.0, "min", 4.0),
    ("trained_user_share", 15.0, "min", 0.5),
    ("sla_breaches_90d", 15.0, "max", 0.0),
    ("tickets_open_past_sla", 5.0, "max", 0.0),
    ("latest_nps", 15.0, "min", 7.0),
    ("touchpoints_90d", 10.0, "min", 2.0),
    ("days_since_exec_contact", 5.0, "max", 120.0),
)


def health_score(table: pd.DataFrame) -> pd.Series:
    """0-100 health from hand-weighted rules over the features present; 100 is healthiest."""
    earned = pd.Series(0.0, index=table.index)
    possible = 0.0
    for feature, points, kind, threshold in HEALTH_RULES:
        if feature not in table.columns:
            continue
        values = table[feature].astype("float64")
        ok = values >= threshold if kind == "min" else values <= threshold
        earned += np.where(values.isna(), points / 2, np.where(ok, points, 0.0))
        possible += points
    if possible == 0:
        raise ValueError("none of the health-score inputs are present")
    return 100.0 * earned / possible


def health_risk(table: pd.DataFrame) -> np.ndarray:
    """The health score as a churn risk in [0, 1] (for ROC and the other ranking metrics)."""
    return (100.0 - health_score(table).to_numpy()) / 100.0


def fit_logistic(X: pd.DataFrame, y: pd.Series, *, categorical: list[str], seed: int) -> Pipeline:
    """Imputed, scaled, one-hot logistic regression on the model's own features."""
    numeric = [c for c in X.columns if c not in categorical]
    prep = ColumnTransformer(
        [
            (
                "num",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            ),
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            ),
        ]
    )
    model = Pipeline(
        [("prep", prep), ("lr", LogisticRegression(C=0.5, max_iter=2000, random_state=seed))]
    )
    X = X.copy()
    for col in categorical:
        X[col] = X[col].astype("object")
    return model.fit(X, y.astype(int))


def predict_logistic(model: Pipeline, X: pd.DataFrame, *, categorical: list[str]) -> np.ndarray:
    X = X.copy()
    for col in categorical:
        X[col] = X[col].astype("object")
    return model.predict_proba(X)[:, 1]
