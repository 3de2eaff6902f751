"""One family of errors for everything a user can cause: bad data, bad config, missing inputs.

Every stage raises a subclass of `ChurnError` for a problem the user can fix; the CLI turns any
`ChurnError` into one red line and exit code 2, with no traceback. A bug in our own code stays
a plain exception (and a traceback). The subclasses live here, not in the stages, so a shared
helper can raise a stage's error without importing that stage.

They subclass `ValueError` as well, so callers that caught ValueError keep working.
"""

from __future__ import annotations


class ChurnError(ValueError):
    """A problem the user can fix (data, configuration, missing input), with a clear message."""


class ConfigError(ChurnError):
    """params.yaml (or a command-line option) is missing, malformed or out of range."""


class DataContractError(ChurnError):
    """An input table breaks the data contract as a whole (missing column, wrong type...)."""


class SourceError(ChurnError):
    """A data source cannot be opened or read."""


class FeatureError(ChurnError):
    """The feature definitions cannot run with this input or configuration."""


class EngineError(FeatureError):
    """The feature engine (DuckDB or Spark) could not be started or could not run."""


class TrainingError(ChurnError):
    """The training data cannot give a trustworthy model, or a model cannot be loaded."""


class ScoringError(ChurnError):
    """Scoring cannot run, or would not be trustworthy, with this model, data or setting."""


class BacktestError(ChurnError):
    """The backtest cannot run with this input or configuration."""


class ReportError(ChurnError):
    """The leadership report's inputs are missing or inconsistent."""


class ListError(ChurnError):
    """A CSM list cannot be built from the scored accounts."""


class ExplainError(ChurnError):
    """Explanations do not add up (SHAP additivity) or cannot be computed."""


class DeliveryError(ChurnError):
    """Delivery settings, or the lists to deliver, are unusable (nothing is sent)."""
