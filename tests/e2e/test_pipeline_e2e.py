"""End to end: `dvc repro` of the whole pipeline on a small demo, in a scratch copy of the repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.model.test_evaluate import REQUIRED_KEYS

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(cwd))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # mlflow.set_tracking_uri (earlier tests) exports the URI; the scratch repo tracks alone
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A scratch repository with the pipeline, small demo params, and `dvc repro` run once."""
    work = tmp_path_factory.mktemp("repo")
    for name in ("pipeline", "features"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, work / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["n_accounts"] = 400
    params["features"]["duckdb"] = {"threads": 1, "memory_limit": None}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _run(args, work).returncode == 0
    result = _run(["dvc", "repro"], work)
    assert result.returncode == 0, result.stdout + result.stderr
    for args in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"],
    ):
        assert _run(args, work).returncode == 0
    return work


@pytest.mark.slow
def test_dvc_repro_produces_validated_tables(repo):
    interim = repo / "data" / "interim"
    report = json.loads((interim / "validation_report.json").read_text())
    assert report["rows_read"] == report["rows_accepted"] + report["rows_quarantined"]
    # the simulator writes clean data: nothing may be quarantined
    assert report["rows_quarantined"] == 0, report
    assert report["tables_unavailable"] == ["satisfaction_responses", "account_attributes"]
    accounts = pd.read_parquet(interim / "accounts.parquet")
    assert len(accounts) == 400
    events = pd.read_parquet(interim / "usage_events")
    assert len(events) == report["tables"]["usage_events"]["rows_accepted"] > 0
    assert (repo / "data" / "ground_truth").is_dir()
    assert not (repo / "data" / "raw" / "ground_truth").exists()


@pytest.mark.slow
def test_dvc_repro_produces_point_in_time_features(repo):
    features = pd.read_parquet(repo / "data" / "processed" / "features.parquet")
    summary = json.loads((repo / "reports" / "feature_summary.json").read_text())
    assert len(features) == summary["rows"] > 0
    assert features.groupby(["account_id", "snapshot_date"]).size().max() == 1
    # the demo exports neither CSAT/CES surveys nor an attribute table
    assert summary["families_unavailable"] == ["satisfaction", "attributes"]
    assert 0 < summary["churned_rows"] < summary["labelled_rows"]
    assert features["churned"].isna().sum() == summary["censored_rows"] > 0


@pytest.mark.slow
def test_dvc_repro_trains_evaluates_and_tracks(repo):
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert set(metrics) >= REQUIRED_KEYS
    # the files of whichever candidate won: trees, the logistic regression, or both for a blend
    kind = json.loads((repo / "models" / "learner.json").read_text())["kind"]
    parts = {"lightgbm": ["model.txt"], "logistic": ["linear.json"]}
    expected = parts.get(kind, parts["lightgbm"] + parts["logistic"])
    for name in (*expected, "calibrator.json", "feature_schema.json"):
        assert (repo / "models" / name).is_file(), (kind, name)
    # git tracks only what every clone computes alike; this registry's numbers stay local
    tracked = json.loads((repo / "reports" / "mlflow_run.json").read_text())
    assert set(tracked) == {"experiment", "registered_model", "model_hash", "tracking_uri"}
    run = json.loads((repo / "reports" / "mlflow_run.local.json").read_text())
    assert run["version"] == "1" and run["champion"]["promoted"]
    assert run["model_hash"] == tracked["model_hash"]
    assert (repo / "mlflow.db").is_file()
    ignored = _run(["git", "check-ignore", "reports/mlflow_run.local.json"], repo)
    assert ignored.returncode == 0, "the local run record must not be tracked"
    backtest = json.loads((repo / "reports" / "backtest.json").read_text())
    assert backtest["backtest_weeks"] > 0


@pytest.mark.slow
def test_dvc_repro_ends_with_the_weekly_lists_and_the_leadership_report(repo):
    as_of = yaml.safe_load((repo / "params.yaml").read_text())["base"]["as_of_date"]
    lists = repo / "reports" / "lists" / str(as_of)
    manifest = json.loads((lists / "manifest.json").read_text())
    assert manifest["as_of"] == str(as_of) and manifest["csms"]
    for entry in manifest["csms"]:
        assert (lists / entry["csv"]).is_file() and (lists / entry["html"]).is_file()
    tracked = json.loads((repo / "reports" / "mlflow_run.json").read_text())
    assert manifest["model_version"] == tracked["model_hash"][:12]  # the same on every clone
    page = (repo / "reports" / "leadership.html").read_text()
    assert "<html" in page and "data:image/png;base64," in page


@pytest.mark.slow
def test_experiments_metrics_diff_and_plots_diff(repo):
    """What the README tells a data scientist to run, in a scratch repository."""
    exp = _run(["dvc", "exp", "run", "-S", "train.lightgbm.learning_rate=0.1"], repo)
    assert exp.returncode == 0, exp.stdout + exp.stderr
    assert "Running stage 'train'" in exp.stdout
    assert "Running stage 'simulate'" not in exp.stdout
    diff = _run(["dvc", "metrics", "diff", "--json"], repo)
    assert diff.returncode == 0, diff.stderr
    changes = json.loads(diff.stdout)
    # the LightGBM candidate's validation scores move even when the logistic model is selected
    changed = changes["reports/metrics.json"]
    assert any(key.startswith("selection_lightgbm_") for key in changed), sorted(changed)
    plots = _run(["dvc", "plots", "diff", "-o", "plots_html"], repo)
    assert plots.returncode == 0, plots.stderr
    assert (repo / "plots_html" / "index.html").is_file()
    shown = _run(["dvc", "exp", "show", "--json"], repo)
    assert shown.returncode == 0 and "learning_rate" in shown.stdout
    # the experiment registered its model, but only the main workspace or `churn promote`
    # moves the champion
    run = json.loads((repo / "reports" / "mlflow_run.local.json").read_text())
    assert run["version"] == "2" and run["champion"]["outcome"] == "experiment"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("churn-model", "champion").version) == "1"
    restore = _run(["git", "checkout", "--", "."], repo)
    assert restore.returncode == 0
    assert _run(["dvc", "checkout", "-q"], repo).returncode == 0


@pytest.mark.slow
def test_second_repro_does_nothing_and_param_change_reruns_only_dependents(repo):
    again = _run(["dvc", "repro"], repo)
    assert again.returncode == 0
    assert "didn't change, skipping" in again.stdout or "up to date" in again.stdout
    assert "Running stage" not in again.stdout
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ingest"]["batch_rows"] = 5000
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run(["dvc", "status"], repo)
    assert "ingest" in status.stdout and "simulate" not in status.stdout


@pytest.mark.slow
def test_user_data_source_switches_the_demo_off(repo, tmp_path):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ingest"]["source"] = "data/raw/acme"
    scratch = tmp_path / "p.yaml"
    scratch.write_text(yaml.safe_dump(params))
    raw, truth = tmp_path / "demo", tmp_path / "truth"
    result = _run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "simulate",
            "--params",
            str(scratch),
            "--raw-dir",
            str(raw),
            "--truth-dir",
            str(truth),
        ],
        repo,
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in raw.iterdir()] == ["DEMO_DISABLED.txt"]
