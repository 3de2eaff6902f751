"""The on-disk layout: every path the pipeline reads or writes, written once.

`dvc.yaml` passes these paths to the commands, and the CLI uses the same values as its
defaults (a test checks that the two agree), so a stage run by hand and a stage run by DVC
read and write the same files. File names *inside* an output directory (the validation report
in `data/interim`, the model files in `models/`, the manifest in a week's lists) live here too,
so no stage has to import another stage to find what that stage wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

# --- names inside output directories -------------------------------------------------------
VALIDATION_REPORT = "validation_report.json"  # in the interim directory (ingest)
QUARANTINE_DIR = "quarantine"  # in the interim directory: <table>.parquet with reasons
DEMO_MARKER = "DEMO_DISABLED.txt"  # in the demo directories when ingest.source is user data
TRUTH_DECISIONS = "renewal_decisions.parquet"  # in the ground-truth directory (simulator)
TRUTH_PIT_ORACLE = "pit_oracle.parquet"  # beside it: the point-in-time oracle per snapshot

MODEL_FILE = "model.txt"  # in a model directory (train): the LightGBM trees, when used
LINEAR_FILE = "linear.json"  # the logistic regression, when used
LEARNER_FILE = "learner.json"  # which learner (lightgbm, logistic, blend) and a blend's weight
CALIBRATOR_FILE = "calibrator.json"
SCHEMA_FILE = "feature_schema.json"
INFO_FILE = "training_info.json"
MLFLOW_MODEL_FILES = "model_files"  # artifact path of the model files in an MLflow run

MANIFEST_FILE = "manifest.json"  # in a week's lists directory (score)
ACCOUNTS_FILE = "accounts.parquet"
SHAP_FILE = "shap.parquet"
FEATURES_FILE = "features.parquet"
TREND_FILE = "trend.csv"
CSM_LISTS_DIR = "csm"  # csm/<safe id>.csv and .html
LIST_FILES = (MANIFEST_FILE, ACCOUNTS_FILE, SHAP_FILE, FEATURES_FILE, TREND_FILE)

DELIVERY_LOG = "delivery.json"  # in a week's deliveries directory (deliver)
OUTBOX_DIR = "outbox"


@dataclass(frozen=True)
class Layout:
    """Where each stage's inputs and outputs live, relative to the repository root."""

    raw_demo: Path = Path("data/raw/demo")
    ground_truth: Path = Path("data/ground_truth")
    interim: Path = Path("data/interim")
    features: Path = Path("data/processed/features.parquet")
    feature_summary: Path = Path("reports/feature_summary.json")
    models: Path = Path("models")
    metrics: Path = Path("reports/metrics.json")
    plots: Path = Path("reports/plots")
    backtest: Path = Path("reports/backtest.json")
    backtest_weekly: Path = Path("reports/backtest_weekly.csv")
    mlflow_run: Path = Path("reports/mlflow_run.json")
    lists_root: Path = Path("reports/lists")
    report: Path = Path("reports/leadership.html")
    deliveries_root: Path = Path("reports/deliveries")
    # The CSMs' marks (`churn mark`): append-only, never an output of a stage, git-ignored
    # (CSM names and notes).
    marks: Path = Path("data/marks/marks.parquet")
    # The weekly job's saved usage grain (a cache `churn weekly` keeps between weeks; see
    # pipeline.feature_engine.state), git-ignored and never a stage output.
    feature_state: Path = Path("data/state/usage_grain")

    @property
    def truth_decisions(self) -> Path:
        return self.ground_truth / TRUTH_DECISIONS

    def lists_dir(self, as_of: date | str) -> Path:
        """One week's lists: reports/lists/<as-of>."""
        return self.lists_root / str(as_of)

    def deliveries_dir(self, as_of: date | str) -> Path:
        """One week's delivery log and outbox: reports/deliveries/<as-of>."""
        return self.deliveries_root / str(as_of)


LAYOUT = Layout()


def deliveries_dir_for(lists_dir: Path) -> Path:
    """The deliveries directory that belongs to a lists directory.

    reports/lists/<as-of> -> reports/deliveries/<as-of>; a lists directory elsewhere (a test, a
    scratch copy) keeps its log beside it, in <lists_dir>/../deliveries/<name>.
    """
    lists_dir = Path(lists_dir)
    return lists_dir.parent.parent / LAYOUT.deliveries_root.name / lists_dir.name
