"""The model's input: the feature schema fixed at training and the design matrix built from it.

Training, evaluation, scoring and the MLflow pyfunc all turn a feature table into model input
the same way, so a category level or a column order can never differ between them.
"""

from __future__ import annotations

import pandas as pd

from features.registry import Feature
from pipeline.core.errors import TrainingError
from pipeline.core.labels import LABEL


def feature_schema(table: pd.DataFrame, features: list[Feature]) -> dict:
    """Names, types, order and category levels: what scoring must match exactly."""
    columns = []
    for f in features:
        entry: dict[str, object] = {"name": f.name, "dtype": f.dtype}
        if f.dtype == "category":
            entry["categories"] = sorted(table[f.name].dropna().astype(str).unique().tolist())
        columns.append(entry)
    return {"label": LABEL, "features": columns}


def design_matrix(table: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """The model's input in schema order; categories fixed to the training levels."""
    names = [c["name"] for c in schema["features"]]
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise TrainingError(f"features missing from the table: {missing}")
    X = pd.DataFrame(index=table.index)
    for col in schema["features"]:
        values = table[col["name"]]
        if col["dtype"] == "category":
            X[col["name"]] = pd.Categorical(values.astype("object"), categories=col["categories"])
        else:
            X[col["name"]] = values.astype("float64")
    return X


def monotone_constraints(features: list[Feature], *, enabled: bool) -> list[int]:
    """+1 where more of the feature can only raise churn risk, -1 where it can only lower it."""
    if not enabled:
        return [0] * len(features)
    sign = {"higher_is_riskier": 1, "lower_is_riskier": -1, "neither": 0}
    return [sign[f.direction] if f.monotone else 0 for f in features]
