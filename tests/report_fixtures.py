"""A repository-shaped directory of demo outputs for the report and notebook tests.

`build_demo_repo` lays out, under one root, what `dvc repro` leaves in a checkout: params.yaml,
data/interim, data/processed/features.parquet, models/, reports/metrics.json, reports/plots/,
reports/backtest.json, reports/feature_summary.json and reports/lists/<as-of>/. It starts from
the medium_demo fixture (simulated, ingested, featurized, trained), runs the evaluate and
backtest stages' code on it, and takes the lists the score stage wrote for the scored_demo
fixture (whose account and CSM names are hostile, so the report's escaping is exercised).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from pipeline.core.atomic import write_json


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
