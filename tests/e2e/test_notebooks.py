"""The notebooks run top to bottom with nbmake against the demo outputs, as part of `make test`,
and draw their charts as a live Jupyter kernel would.

Each notebook reads a checkout's outputs from CHURN_REPO_DIR (default: the repository); here
that is the demo_repo fixture, so the suite never depends on a previous `dvc repro`. The kernel
runs with matplotlib's inline backend, as in JupyterLab (no MPLBACKEND override): a chart that
a library silenced by switching the backend would leave no image in the executed notebook.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ["01_features_and_labels.ipynb", "02_model_diagnostics.ipynb"]
INLINE = "module://matplotlib_inline.backend_inline"


def _code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def _run_notebook(notebook: Path, repo: Path) -> subprocess.CompletedProcess:
    """nbmake on `notebook`, writing the executed notebook (outputs included) back in place."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["CHURN_REPO_DIR"] = str(repo)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbmake",
            "--nbmake-timeout=180",
            "--overwrite",
            "-p",
            "no:cacheprovider",
            "-q",
            str(notebook),
        ],
        cwd=notebook.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _images(notebook: Path) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return sum(
        "image/png" in output.get("data", {})
        for cell in cells
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )


def test_every_notebook_is_tested():
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_on_the_demo_outputs_and_draws_its_charts(notebook, demo_repo, tmp_path):
    copy = tmp_path / notebook
    shutil.copy(ROOT / "notebooks" / notebook, copy)
    result = _run_notebook(copy, demo_repo)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert _images(copy) >= 1, "the executed notebook holds no chart (image/png output)"


def test_the_notebooks_imports_leave_the_inline_backend_alone():
    """What the notebooks import from this project must not switch matplotlib's backend: a
    `matplotlib.use("Agg")` at import time turns every inline chart of the kernel into nothing.
    The imports are read from the notebooks themselves, so a new import is covered too."""
    imports = []
    for name in NOTEBOOKS:
        for source in _code_cells(ROOT / "notebooks" / name):
            for node in ast.parse(source).body:
                if isinstance(node, ast.ImportFrom) and node.module:
                    module = node.module
                elif isinstance(node, ast.Import):
                    module = node.names[0].name
                else:
                    continue
                if module.split(".")[0] in ("pipeline", "features"):
                    imports.append(module)
    assert "pipeline.stages.report" in imports
    code = (
        "import importlib, sys, matplotlib\n"
        f"for module in {sorted(set(imports))!r}:\n"
        "    importlib.import_module(module)\n"
        f"assert matplotlib.get_backend() == {INLINE!r}, matplotlib.get_backend()\n"
    )
    env = dict(os.environ, MPLBACKEND=INLINE)  # what ipykernel sets in a Jupyter kernel
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_additivity_check_stops_on_shap_values_of_another_model(demo_repo, tmp_path):
    """Notebook 02 asserts, with the pipeline's tolerance, that the lists' SHAP values add up
    to the model's raw score: one contribution off by 0.01 stops it, naming the gap."""
    repo = tmp_path / "repo"
    shutil.copytree(demo_repo, repo)
    (lists_dir,) = (repo / "reports" / "lists").iterdir()
    shap_file = lists_dir / "shap.parquet"
    shap = pd.read_parquet(shap_file)
    column = next(c for c in shap.columns if c != "account_id")
    shap[column] = shap[column].to_numpy() + np.where(np.arange(len(shap)) == 0, 0.01, 0.0)
    shap.to_parquet(shap_file)
    copy = tmp_path / NOTEBOOKS[1]
    shutil.copy(ROOT / "notebooks" / NOTEBOOKS[1], copy)
    result = _run_notebook(copy, repo)
    assert result.returncode != 0
    assert "the stored SHAP values are not this" in result.stdout, result.stdout[-4000:]
