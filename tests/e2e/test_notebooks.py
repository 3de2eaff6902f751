"""The notebooks run top to bottom with nbmake against the demo outputs, as part of `make test`.

Each notebook reads a checkout's outputs from CHURN_REPO_DIR (default: the repository); here
that is the demo_repo fixture, so the suite never depends on a previous `dvc repro`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ["01_features_and_labels.ipynb", "02_model_diagnostics.ipynb"]


def test_every_notebook_is_tested():
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_on_the_demo_outputs(notebook, demo_repo):
    env = dict(os.environ, CHURN_REPO_DIR=str(demo_repo), MPLBACKEND="Agg")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbmake",
            "--nbmake-timeout=180",
            "-p",
            "no:cacheprovider",
            "-q",
            str(ROOT / "notebooks" / notebook),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
