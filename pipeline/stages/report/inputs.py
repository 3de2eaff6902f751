"""The report's inputs: what the earlier stages wrote, read from disk and checked to fit.

The page computes no score again, so everything it shows comes from files: the score stage's
lists for one as-of date (`reports/lists/<as-of>/`: the typed manifest, accounts, SHAP values,
feature values, trend), the evaluate stage's metrics and curves, the backtest's metrics, the
feature summary and the model's training info. A missing or malformed input stops the report
with a `ReportError` that names the file and the command that makes it; `check_lists` stops it
when the list files do not describe the same accounts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.registry import Feature
from pipeline.core.errors import ChurnError, ReportError
from pipeline.core.layout import (
    ACCOUNTS_FILE,
    FEATURES_FILE,
    LIST_FILES,
    SHAP_FILE,
    TREND_FILE,
)
from pipeline.lists.manifest import ListsManifest, read_manifest

# The columns of accounts.parquet and trend.csv the page reads (the score stage's tests hold
# its output to ACCOUNT_COLUMNS).
ACCOUNT_COLUMNS = [
    "account_id",
    "account_name",
    "csm_id",
    "csm_name",
    "segment",
    "region",
    "tenure_days",
    "first_90_days",
    "arr",
    "probability",
    "risk_band",
    "expected_arr_at_risk",
    "renewal_date",
    "days_to_renewal",
    "on_list",
    "reasons",
]
TREND_COLUMNS = ["week", "n_accounts", "arr_total", "expected_arr_at_risk", "mean_probability"]
CURVES = ("calibration", "lift")  # the evaluate stage's curve frames the page draws


@dataclass(frozen=True)
class ListOutputs:
    """The score stage's files for one as-of date, as frames (shap/features keyed by account)."""

    manifest: ListsManifest
    accounts: pd.DataFrame
    shap: pd.DataFrame
    features: pd.DataFrame
    trend: pd.DataFrame


@dataclass(frozen=True)
class ReportInputs:
    """Everything the page shows, already read from disk."""

    lists: ListOutputs
    metrics: dict[str, float]
    backtest: dict[str, float | None]
    feature_summary: dict
    training_info: dict
    curves: dict[str, pd.DataFrame]
    registry: list[Feature]
    label_horizon_days: int
    renewal_grace_days: int
    capacity_per_csm: int | None = None


def _examples(values: Sequence[object], n: int = 3) -> str:
    shown = [str(v) for v in list(values)[:n]]
    more = f" (and {len(values) - n} more)" if len(values) > n else ""
    return ", ".join(shown) + more


def check_lists(lists: ListOutputs) -> None:
    """Stop with a clear error when the list files do not describe the same accounts.

    The page aggregates accounts.parquet and shap.parquet side by side; if they disagree the
    two halves of the page would describe different portfolios.
    """
    missing = [c for c in ACCOUNT_COLUMNS if c not in lists.accounts.columns]
    if missing:
        raise ReportError(f"{ACCOUNTS_FILE} lacks columns {missing}")
    missing = [c for c in TREND_COLUMNS if c not in lists.trend.columns]
    if missing:
        raise ReportError(f"{TREND_FILE} lacks columns {missing}")
    ids = lists.accounts["account_id"]
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise ReportError(
            f"{ACCOUNTS_FILE} has {len(duplicated)} duplicated account_id, e.g. "
            f"{_examples(duplicated)}"
        )
    for name, frame in ((SHAP_FILE, lists.shap), (FEATURES_FILE, lists.features)):
        if frame.index.duplicated().any():
            raise ReportError(f"{name} has duplicated account_id, e.g. {frame.index[0]}")
        extra = sorted(set(frame.index) - set(ids))
        absent = sorted(set(ids) - set(frame.index))
        if extra or absent:
            raise ReportError(
                f"{name} and {ACCOUNTS_FILE} disagree: {len(extra)} accounts only in {name} "
                f"({_examples(extra)}), {len(absent)} only in {ACCOUNTS_FILE} "
                f"({_examples(absent)})"
            )
    shap_cols, feature_cols = list(lists.shap.columns), list(lists.features.columns)
    if set(shap_cols) != set(feature_cols):
        raise ReportError(
            f"{SHAP_FILE} and {FEATURES_FILE} name different features: only in shap "
            f"{sorted(set(shap_cols) - set(feature_cols))}, only in features "
            f"{sorted(set(feature_cols) - set(shap_cols))}"
        )
    not_numeric = [c for c in shap_cols if not pd.api.types.is_float_dtype(lists.shap[c])]
    if not_numeric:
        raise ReportError(f"{SHAP_FILE} columns must be floats (log-odds): {not_numeric}")
    bad = lists.accounts["probability"].dropna()
    bad = bad[(bad < 0) | (bad > 1)]
    if len(bad):
        rows = lists.accounts.loc[bad.index, "account_id"]
        raise ReportError(
            f"{ACCOUNTS_FILE} probability outside [0, 1] for {len(bad)} accounts, e.g. "
            f"{_examples(rows.tolist())}"
        )


def read_lists(lists_dir: Path) -> ListOutputs:
    """The score stage's files for one as-of date (checked for presence, not yet for fit)."""
    lists_dir = Path(lists_dir)
    if not lists_dir.is_dir():
        raise ReportError(f"{lists_dir} not found: run `churn score` (or `dvc repro`) first")
    absent = [name for name in LIST_FILES if not (lists_dir / name).is_file()]
    if absent:
        raise ReportError(f"{lists_dir} lacks {absent}: run `churn score` again")
    try:
        manifest = read_manifest(lists_dir)
    except ChurnError as err:  # ManifestError: not JSON, or not the lists schema
        raise ReportError(str(err)) from err
    frames = {}
    for name in (SHAP_FILE, FEATURES_FILE):
        frame = pd.read_parquet(lists_dir / name)
        if "account_id" not in frame.columns:
            raise ReportError(f"{lists_dir / name} has no account_id column")
        frames[name] = frame.set_index("account_id")
    return ListOutputs(
        manifest=manifest,
        accounts=pd.read_parquet(lists_dir / ACCOUNTS_FILE),
        shap=frames[SHAP_FILE],
        features=frames[FEATURES_FILE],
        trend=pd.read_csv(lists_dir / TREND_FILE),
    )


def _read_json(path: Path, hint: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path} not found: {hint}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path} must hold a JSON object")
    return data


def training_info(models_dir: Path) -> dict:
    """The model's training info, or a ReportError saying what is missing."""
    # Imported here: the model store imports LightGBM (and scikit-learn), two of the five
    # seconds an import of the report would otherwise take, for one JSON file.
    from pipeline.modeling.store import read_training_info

    try:
        info = read_training_info(models_dir)
    except ChurnError as err:  # TrainingError: absent or not JSON
        raise ReportError(str(err)) from err
    if not isinstance(info, dict):
        raise ReportError(f"the training info in {models_dir} must hold a JSON object")
    return info


def load_inputs(
    *,
    lists_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    backtest_path: Path,
    feature_summary_path: Path,
    models_dir: Path,
    registry: Sequence[Feature],
    label_horizon_days: int,
    renewal_grace_days: int,
    capacity_per_csm: int | None = None,
) -> ReportInputs:
    """Read every input the page needs; a missing one is named with the command that makes it.

    `registry` is the feature registry the lists were scored with (from the same settings), so
    the page describes each signal in the same plain words as the CSM lists.
    """
    curves = {}
    for name in CURVES:
        path = Path(plots_dir) / f"{name}.csv"
        if not path.is_file():
            raise ReportError(f"{path} not found: run `churn evaluate` first")
        curves[name] = pd.read_csv(path)
    return ReportInputs(
        lists=read_lists(lists_dir),
        metrics=_read_json(metrics_path, "run `churn evaluate` first"),
        backtest=_read_json(backtest_path, "run `churn backtest` first"),
        feature_summary=_read_json(feature_summary_path, "run `churn features` first"),
        training_info=training_info(models_dir),
        curves=curves,
        registry=list(registry),
        label_horizon_days=int(label_horizon_days),
        renewal_grace_days=int(renewal_grace_days),
        capacity_per_csm=capacity_per_csm,
    )
