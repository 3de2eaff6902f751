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
    """The input as a whole breaks the contract (missing table or column, wrong type).

    The message names the table, the column and a few example rows, because the person who
    reads it has to find the problem in their own export. `examples` is any object with
    `head(n)` and `to_string(max_colwidth=...)` (a pandas DataFrame), so this module needs no
    pandas import.
    """

    def __init__(
        self,
        table: str,
        column: str | None,
        problem: str,
        examples: object | None = None,
    ) -> None:
        self.table = table
        self.column = column
        self.problem = problem
        where = f"table '{table}'" + (f", column '{column}'" if column else "")
        message = f"{where}: {problem}"
        if examples is not None and len(examples):  # type: ignore[arg-type]
            shown = examples.head(5).to_string(max_colwidth=40)  # type: ignore[attr-defined]
            message += f"\nexample rows:\n{shown}"
        super().__init__(message)


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


class StorageError(ChurnError):
    """An output could not be written for lack of space (disk full, quota); nothing was
    replaced, so the previous output is intact."""
