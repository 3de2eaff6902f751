"""A repository-shaped directory of demo outputs for the report and notebook tests.

`build_demo_repo` lays out, under one root, what `dvc repro` leaves in a checkout: params.yaml,
data/interim, data/processed/features.parquet, models/, reports/metrics.json, reports/plots/,
reports/backtest.json, reports/feature_summary.json and reports/lists/<as-of>/. It starts from
the medium_demo fixture (simulated, ingested, featurized, trained), runs the evaluate and
backtest stages' code on it, and takes the lists the score stage wrote for the scored_demo
fixture (whose account and CSM names are hostile, so the report's escaping is exercised).

`tiny_lists` / `tiny_inputs` are the fast alternative: 24 accounts in the score stage's file
format, built in memory, for the report's unit and page tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.registry import build_registry
from pipeline.core.atomic import write_json
from pipeline.core.config import ReportSection
from pipeline.lists.manifest import parse_manifest
from pipeline.stages.report import ListOutputs, ReportInputs

REGISTRY = build_registry((30, 90))
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def build_demo_repo(medium_demo: dict, lists_dir: Path, root: Path) -> Path:
    """A repository-shaped directory of demo outputs (see the module docstring)."""
    from pipeline.stages.backtest import run_backtest
    from pipeline.stages.evaluate import run_evaluate

    params = medium_demo["params"]
    as_of = str(params["base"]["as_of_date"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "data" / "processed").mkdir(parents=True)
    (root / "data" / "interim").symlink_to(medium_demo["interim"], target_is_directory=True)
    shutil.copy(medium_demo["features"], root / "data" / "processed" / "features.parquet")
    shutil.copytree(medium_demo["models"], root / "models")
    reports = root / "reports"
    run_evaluate(
        medium_demo["config"],
        medium_demo["features"],
        medium_demo["models"],
        medium_demo["interim"],
        reports / "metrics.json",
        reports / "plots",
        medium_demo["truth"],
    )
    run_backtest(
        medium_demo["config"],
        medium_demo["interim"],
        medium_demo["models"],
        reports / "backtest.json",
        reports / "backtest_weekly.csv",
    )
    summary = json.loads((medium_demo["root"] / "summary.json").read_text())
    write_json(summary, reports / "feature_summary.json")
    shutil.copytree(lists_dir, reports / "lists" / as_of)
    return root


def tiny_lists(n: int = 24, *, weeks: int = 3, seed: int = 0) -> ListOutputs:
    """n accounts scored on four features, in the score stage's file format."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"A{i:03d}" for i in range(n)], name="account_id")
    features = pd.DataFrame(
        {
            "active_users_30d": rng.integers(0, 50, n).astype(float),
            "sla_breaches_90d": rng.integers(0, 5, n).astype(float),
            "tenure_days": rng.integers(10, 900, n).astype(float),
            "segment": rng.choice(["smb", "mid_market", "enterprise"], n),
        },
        index=ids,
    )
    features.loc[ids[0], "active_users_30d"] = np.nan
    shap = pd.DataFrame(
        {
            "active_users_30d": -0.02 * (features["active_users_30d"].fillna(25) - 25),
            "sla_breaches_90d": 0.1 * features["sla_breaches_90d"],
            "tenure_days": rng.normal(0, 0.05, n),
            "segment": rng.normal(0, 0.01, n),
        },
        index=ids,
    )
    probability = 1 / (1 + np.exp(-(-1.5 + shap.sum(axis=1).to_numpy())))
    arr = rng.uniform(1_000, 100_000, n).round(2)
    csm = np.where(np.arange(n) % 2 == 0, "CSM1", "CSM2")
    accounts = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2026-11-16").date(),
            "account_id": ids.astype("string"),
            "account_name": [HOSTILE if i == 0 else f"Account {i}" for i in range(n)],
            "csm_id": csm,
            "csm_name": np.where(csm == "CSM1", "Ada Lovelace", HOSTILE),
            "segment": features["segment"].to_numpy(),
            "region": rng.choice(["emea", "na"], n),
            "tenure_days": features["tenure_days"].astype("int64").to_numpy(),
            "first_90_days": (features["tenure_days"] < 90).to_numpy(),
            "arr": arr,
            "probability": probability,
            "risk_band": np.where(probability > 0.3, "high", "low"),
            "expected_arr_at_risk": probability * arr,
            "renewal_date": pd.Timestamp("2027-01-01").date(),
            "days_to_renewal": 46,
            "on_list": np.arange(n) < 4,
            "list_rank": pd.array([1, 1, 2, 2] + [None] * (n - 4), dtype="Int64"),
            "reasons": "Support and SLA breaches: 3 SLA breaches",
        }
    )
    trend = pd.DataFrame(
        {
            "week": [str(pd.Timestamp("2026-11-16") - pd.Timedelta(weeks=k)) for k in range(weeks)][
                ::-1
            ],
            "n_accounts": n,
            "arr_total": float(arr.sum()),
            "expected_arr_at_risk": [1000.0 * (k + 1) for k in range(weeks)],
            "mean_probability": 0.2,
        }
    )
    manifest = parse_manifest(
        {
            "as_of": "2026-11-16",
            "model_version": "3",
            "model_source": "models:/churn-model@champion",
            "data_version": "abc.dir",
            "rank_by": "expected_arr_at_risk",
            "capacity_per_csm": 2,
            "base_value": -1.5,
            "warnings": [{"kind": "drift", "message": "segment <b>shifted</b>"}],
            "csms": [],
            "n_accounts": n,
            "n_listed": 4,
            "n_unassigned": 0,
            "arr_total": float(arr.sum()),
            "expected_arr_at_risk": float(accounts["expected_arr_at_risk"].sum()),
            "risk_bands": {"high": 0.3, "medium": 0.15},
            "risk_band_counts": {"high": int((probability > 0.3).sum()), "medium": 0, "low": 0},
            "previous_week": "2026-11-09",
            "trend_weeks": weeks,
            "shap_method": "tree_path_dependent",
            "additivity_max_error": 0.0,
            "drift_checked": False,
        }
    )
    return ListOutputs(manifest, accounts, shap, features, trend)


TINY_METRICS = {
    "roc_auc": 0.81,
    "pr_auc": 0.4,
    "ece": 0.03,
    "health_score_roc_auc": 0.7,
    "oracle_roc_auc": 0.9,
    "segment_smb_rows": 50.0,
    "segment_smb_roc_auc": 0.8,
    "segment_enterprise_rows": 500.0,
}


def tiny_inputs(lists: ListOutputs | None = None, **changes) -> ReportInputs:
    values = {
        "lists": lists or tiny_lists(),
        "metrics": TINY_METRICS,
        "backtest": {"backtest_precision_at_capacity": 0.4, "backtest_median_warning_days": None},
        "feature_summary": {
            "families_available": ["usage", "support"],
            "families_unavailable": ["training"],
            "families_partial": [],
        },
        "training_info": {"split": {"valid_start": "2025-01-01", "valid_end": "2025-03-31"}},
        "curves": {
            "calibration": pd.DataFrame({"predicted": [0.1, 0.5], "observed": [0.12, 0.45]}),
            "lift": pd.DataFrame({"population_share": [0, 0.5, 1], "captured_share": [0, 0.8, 1]}),
        },
        "registry": REGISTRY,
        "label_horizon_days": 365,
        "renewal_grace_days": 30,
        "capacity_per_csm": 2,
    }
    values.update(changes)
    return ReportInputs(**values)


def small_settings() -> ReportSection:
    return ReportSection(top_features=4, dependence_plots=2, largest_accounts=3)
