"""What a run generates stays out of git: customer data, machine state and scratch pages."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _ignored(path: str) -> bool:
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, capture_output=True
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


@pytest.mark.parametrize(
    "path",
    [
        "reports/lists/2026-11-16/csm_CSM001.csv",  # the demo's lists (CSM names, emails, ARR)
        "reports/lists/2031-02-03/index.html",  # any later week's
        "reports/deliveries/2031-02-03/delivery_log.json",
        "dvc_plots/index.html",
        "mlflow.db",
        "mlruns/1/abc/meta.yaml",
        "reports/mlflow_run.local.json",  # this machine's run id and registry version
        "test-artifacts/report.png",
    ],
)
def test_generated_files_are_ignored(path):
    assert _ignored(path), f"{path} would be committed"


@pytest.mark.parametrize(
    "path",
    [
        "reports/metrics.json",
        "reports/leadership.html",
        "reports/mlflow_run.json",
        "reports/lists/.gitignore",
        "dvc.lock",
    ],
)
def test_reviewed_outputs_are_tracked(path):
    assert not _ignored(path), f"{path} must stay in git"
