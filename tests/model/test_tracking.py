"""MLflow tracking: a real sqlite store in a temp dir, two runs, the champion decision."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from pipeline.modeling.store import resolve_tracking_uri
from pipeline.stages.track import decide_champion, log_training_run


def test_champion_moves_only_on_strict_improvement():
    assert decide_champion(
        0.7, metric="roc_auc", previous_version=None, previous_value=None
    ).promoted
    assert decide_champion(0.8, metric="roc_auc", previous_version="1", previous_value=0.7).promoted
    kept = decide_champion(0.7, metric="roc_auc", previous_version="1", previous_value=0.7)
    assert not kept.promoted and "does not beat" in kept.reason()
    lower = decide_champion(
        0.2, metric="brier", previous_version="1", previous_value=0.3, higher_is_better=False
    )
    assert lower.promoted


def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_tracking_uri(None) == "sqlite:///elsewhere.db"
    assert resolve_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"


@pytest.fixture(scope="module")
def tracked(medium_demo, tmp_path_factory):
    """Two runs against one sqlite store: a first model, then a worse challenger."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    metrics = {"roc_auc": 0.75, "pr_auc": 0.3, "ece": 0.02}
    common = dict(
        config=medium_demo["config"],
        models_dir=medium_demo["models"],
        features_path=medium_demo["features"],
        plots_dir=None,
        tracking_uri=uri,
        experiment="test-churn",
        registered_model="test-churn-model",
        champion_metric="roc_auc",
    )
    import os

    cwd = os.getcwd()
    os.chdir(root)  # artifacts land next to the store, not in the repository
    try:
        first = log_training_run(metrics=metrics, **common)
        second = log_training_run(metrics={**metrics, "roc_auc": 0.70}, **common)
        third = log_training_run(metrics={**metrics, "roc_auc": 0.80}, **common)
    finally:
        os.chdir(cwd)
    return uri, root, first, second, third


def test_runs_are_logged_with_params_metrics_tags_and_model(tracked, medium_demo):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri, _, first, _, _ = tracked
    mlflow.set_tracking_uri(uri)
    run = MlflowClient().get_run(first["run_id"])
    assert run.data.metrics["roc_auc"] == 0.75
    depth = medium_demo["params"]["train"]["lightgbm"]["max_depth"]
    assert run.data.params["train.lightgbm.max_depth"] == str(depth)
    assert len(run.data.tags["data_md5"]) == 32 and "git_commit" in run.data.tags
    model = mlflow.pyfunc.load_model(f"runs:/{first['run_id']}/model")
    assert model.metadata.signature is not None
    assert model.metadata.get_input_schema().input_names()[0] == "active_users_30d"


def test_registered_model_serves_calibrated_probabilities(tracked, medium_demo):
    """The champion loaded by alias gives the same probabilities as the model on disk."""
    import mlflow

    from pipeline.modeling.store import load_model

    uri = tracked[0]
    mlflow.set_tracking_uri(uri)
    served = mlflow.pyfunc.load_model("models:/test-churn-model@champion")
    table = pd.read_parquet(medium_demo["features"]).head(50)
    local = load_model(medium_demo["models"])
    rows = table[local.feature_names].astype({"segment": "object", "plan": "object"})
    got = np.asarray(served.predict(rows), dtype=float)
    np.testing.assert_allclose(got, local.predict(table), rtol=1e-12)
    assert ((got >= 0) & (got <= 1)).all()


def test_champion_alias_follows_the_recorded_decisions(tracked):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri, _, first, second, third = tracked
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    assert first["champion"]["promoted"] and first["version"] == "1"
    assert not second["champion"]["promoted"]
    assert client.get_run(second["run_id"]).data.tags["champion_decision"] == "kept_previous"
    assert third["champion"]["promoted"] and third["champion"]["previous_version"] == "1"
    assert str(client.get_model_version_by_alias("test-churn-model", "champion").version) == "3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_ui_serves_the_runs(tracked):
    """What the README tells a data scientist to run: `mlflow ui` on the sqlite store."""
    uri, root, first, _, _ = tracked
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240  # slow to start on a busy 2-core machine
        body = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    body = page.read().decode()
                break
            except OSError:
                time.sleep(1)
        assert body is not None and "MLflow" in body
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/get?run_id={first['run_id']}"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["run"]["info"]["run_id"] == first["run_id"]
    finally:
        server.terminate()
        server.wait(timeout=30)
