"""The churn model as an MLflow pyfunc: calibrated probabilities from a feature table.

A bare LightGBM flavour would return uncalibrated scores (or labels) and needs pandas category
dtypes that do not survive JSON serving. This wrapper carries the model directory (booster,
calibrator, feature schema) and applies the same `design_matrix` as training and scoring.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from pipeline.modeling.store import load_model


class ChurnModel(mlflow.pyfunc.PythonModel):
    """predict(features) -> calibrated churn probability per row."""

    def load_context(self, context) -> None:
        self._model = load_model(Path(context.artifacts["model_dir"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        return pd.Series(self._model.predict(model_input), name="churn_probability")
