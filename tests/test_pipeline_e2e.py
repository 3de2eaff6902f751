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

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(cwd))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A scratch repository with the pipeline, small demo params, and `dvc repro` run once."""
    work = tmp_path_factory.mktemp("repo")
    for name in ("pipeline", "features"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["n_accounts"] = 150
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _run(args, work).returncode == 0
    result = _run(["dvc", "repro"], work)
    assert result.returncode == 0, result.stdout + result.stderr
    return work


@pytest.mark.slow
def test_dvc_repro_produces_validated_tables(repo):
    interim = repo / "data" / "interim"
    report = json.loads((interim / "validation_report.json").read_text())
    assert report["rows_read"] == report["rows_accepted"] + report["rows_quarantined"]
    # the simulator writes clean data: nothing may be quarantined
    assert report["rows_quarantined"] == 0, report
    assert report["tables_unavailable"] == []
    accounts = pd.read_parquet(interim / "accounts.parquet")
    assert len(accounts) == 150
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
    assert summary["families_unavailable"] == []
    assert 0 < summary["churned_rows"] < summary["labelled_rows"]
    assert features["churned"].isna().sum() == summary["censored_rows"] > 0


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
