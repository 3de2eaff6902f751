"""MLflow tracking: a real sqlite store in a temp dir, several runs, the champion decision."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.modeling.champion import Comparison, compare
from pipeline.modeling.store import resolve_tracking_uri
from pipeline.stages.track import decide_champion, in_dvc_experiment, log_training_run


def _comparison(gain, low, high):
    return Comparison(
        metric="pr_auc",
        new_value=0.4 + gain,
        champion_value=0.4,
        gain=gain,
        low=low,
        high=high,
        accounts=300,
        resamples=400,
        confidence=0.9,
    )


def test_champion_moves_only_on_a_gain_beyond_noise():
    first = decide_champion(
        None, metric="pr_auc", version="1", previous_version=None, experiment=False
    )
    assert first.promoted and first.outcome == "first"
    better = decide_champion(
        _comparison(0.05, 0.01, 0.09),
        metric="pr_auc",
        version="2",
        previous_version="1",
        experiment=False,
    )
    assert better.promoted and better.outcome == "better" and "[+0.0100, +0.0900]" in better.reason
    noise = decide_champion(
        _comparison(0.0025, -0.01, 0.015),
        metric="pr_auc",
        version="3",
        previous_version="2",
        experiment=False,
    )
    assert not noise.promoted and noise.outcome == "not_better" and "within noise" in noise.reason
    exp = decide_champion(
        _comparison(0.3, 0.2, 0.4),
        metric="pr_auc",
        version="4",
        previous_version="2",
        experiment=True,
    )
    assert (
        not exp.promoted
        and exp.outcome == "experiment"
        and "churn promote --version 4" in exp.reason
    )
    lost = decide_champion(
        None, metric="pr_auc", version="5", previous_version="2", experiment=False, missing=["x"]
    )
    assert not lost.promoted and lost.outcome == "incomparable"


def test_paired_bootstrap_finds_a_real_gain_and_no_gain_against_itself():
    rng = np.random.default_rng(0)
    accounts = np.repeat(np.arange(300), 4)
    y = (rng.random(len(accounts)) < 0.2).astype(float)
    good = np.clip(0.2 + 0.5 * (y - 0.2) + rng.normal(0, 0.15, len(y)), 0.01, 0.99)
    noise = rng.random(len(y))
    gain = compare(y, good, noise, accounts, metric="pr_auc", resamples=200, confidence=0.9, seed=1)
    assert gain.beyond_noise and gain.low > 0.1 and gain.accounts == 300
    same = compare(y, good, good, accounts, metric="roc_auc", resamples=200, confidence=0.9, seed=1)
    assert same.gain == 0 and not same.beyond_noise
    loss = compare(
        y, noise, good, accounts, metric="log_loss", resamples=100, confidence=0.9, seed=1
    )
    assert loss.gain < 0 and loss.high < 0  # lower log loss is better: the noise model loses


def test_a_dvc_experiment_is_detected_from_its_environment(monkeypatch):
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert not in_dvc_experiment()
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1a2b3")
    assert in_dvc_experiment()


def test_tracking_uri_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_tracking_uri(None) == "sqlite:///elsewhere.db"
    assert resolve_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"


@pytest.fixture(scope="module")
def tracked(medium_demo, tmp_path_factory):
    """Runs against one sqlite store: a weak first model (two trees), the real model from a
    dvc experiment (not promoted), the real model (promoted: beyond noise), and the real model
    again (kept: no gain)."""
    import copy

    from pipeline.core.config import parse_config
    from pipeline.stages.train import run_train

    root = tmp_path_factory.mktemp("mlflow")
    params = copy.deepcopy(medium_demo["params"])
    params["train"].update(num_boost_round=2, early_stopping_rounds=1)
    # only the configured trees, no search: a weak model by construction
    params["train"]["selection"] = {"candidates": ["lightgbm"], "trials": 1, "folds": 1}
    weak = root / "weak_models"
    run_train(parse_config(params), medium_demo["features"], weak)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    metrics = {"roc_auc": 0.75, "pr_auc": 0.3, "ece": 0.02}
    common = dict(
        config=medium_demo["config"],
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
    saved = {k: os.environ.pop(k, None) for k in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")}
    try:
        first = log_training_run(metrics=metrics, models_dir=weak, **common)
        os.environ["DVC_EXP_NAME"] = "exp-test"
        try:
            experiment = log_training_run(
                metrics=metrics, models_dir=medium_demo["models"], **common
            )
        finally:
            del os.environ["DVC_EXP_NAME"]
        second = log_training_run(metrics=metrics, models_dir=medium_demo["models"], **common)
        third = log_training_run(metrics=metrics, models_dir=medium_demo["models"], **common)
    finally:
        os.chdir(cwd)
        os.environ.update({k: v for k, v in saved.items() if v is not None})
    return uri, root, first, experiment, second, third


def test_runs_are_logged_with_params_metrics_tags_and_model(tracked, medium_demo):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri, _, first, *_ = tracked
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

    uri, _, first, experiment, second, third = tracked
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    assert first["champion"]["outcome"] == "first" and first["version"] == "1"
    assert experiment["champion"]["outcome"] == "experiment"
    assert not experiment["champion"]["promoted"]
    # the real model against the two-tree champion, on the same accounts: beyond noise
    assert second["champion"]["outcome"] == "better" and second["champion"]["promoted"]
    low, high = second["champion"]["interval"]
    assert 0 < low <= second["champion"]["gain"] <= high
    assert second["champion"]["previous_version"] == "1"
    # the same model again: no gain, the champion stays
    assert third["champion"]["outcome"] == "not_better" and third["champion"]["gain"] == 0
    tags = client.get_run(third["run_id"]).data.tags
    assert (
        tags["champion_decision"] == "kept_previous" and "within noise" in tags["champion_reason"]
    )
    assert str(client.get_model_version_by_alias("test-churn-model", "champion").version) == "3"


def test_the_tracked_record_is_the_same_on_every_clone(tracked, medium_demo):
    """Two runs of the same model get different run ids and registry versions (another clone's
    registry numbers them its own way); what git tracks holds neither, only the model's hash,
    which is also the runs' `model_hash` tag and the lists' stamp."""
    from mlflow.tracking import MlflowClient

    from pipeline.core.hashing import dvc_dir_hash
    from pipeline.modeling.store import model_stamp
    from pipeline.stages.track import local_record_path, tracked_record

    uri, _, _, _, second, third = tracked
    assert second["run_id"] != third["run_id"] and second["version"] != third["version"]
    assert second["model_hash"] == third["model_hash"] == dvc_dir_hash(medium_demo["models"])
    config = medium_demo["config"]
    records = [tracked_record(config, model_hash=r["model_hash"]) for r in (second, third)]
    assert json.dumps(records[0], sort_keys=True) == json.dumps(records[1], sort_keys=True)
    assert set(records[0]) == {"experiment", "registered_model", "model_hash", "tracking_uri"}
    assert "mlflow.db" not in json.dumps(records[0])  # no path of this machine
    tags = MlflowClient(tracking_uri=uri).get_run(third["run_id"]).data.tags
    assert tags["model_hash"] == third["model_hash"]
    assert model_stamp(medium_demo["models"]) == third["model_hash"][:12]
    assert local_record_path(Path("reports/mlflow_run.json")) == Path(
        "reports/mlflow_run.local.json"
    )


def test_churn_promote_moves_the_alias_explicitly(tracked):
    from mlflow.tracking import MlflowClient

    from pipeline.core.errors import ConfigError
    from pipeline.stages.track import promote

    uri = tracked[0]
    client = MlflowClient(tracking_uri=uri)
    assert promote(tracking_uri=uri, registered_model="test-churn-model", version="2") == "3"
    assert str(client.get_model_version_by_alias("test-churn-model", "champion").version) == "2"
    run_id = client.get_model_version("test-churn-model", "2").run_id
    assert client.get_run(run_id).data.tags["champion_decision"] == "promoted_manually"
    with pytest.raises(ConfigError, match="no version '99'"):
        promote(tracking_uri=uri, registered_model="test-churn-model", version="99")
    promote(tracking_uri=uri, registered_model="test-churn-model", version="3")  # as it was


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_ui_serves_the_runs(tracked):
    """What the README tells a data scientist to run: `mlflow ui` on the sqlite store."""
    uri, root, first, *_ = tracked
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


# --- no secret of the tracking URI in mlflow_run.json, the run, or the output ----------------

SECRET_PASSWORDS = ["p@ss", "pa:ss", "pa/ss", "pa%2Fss", "p%ss", "Zq9@x:/%2F#?!yW3-kLm_8&v"]


@pytest.mark.parametrize("password", SECRET_PASSWORDS)
def test_the_run_record_never_holds_a_password_of_the_tracking_uri(password):
    from urllib.parse import quote

    from pipeline.stages.track import run_record
    from tests.code.test_secrets import assert_hidden

    decision = decide_champion(
        None, metric="pr_auc", version="1", previous_version=None, experiment=False
    )
    for uri, shown in (
        (f"postgresql://user:{password}@localhost:1/db", "postgresql://user:***@localhost:1/db"),
        (f"http://user:{password}@host:5000", "http://user:***@host:5000"),
        (f"http://user:{quote(password, safe='')}@host", "http://user:***@host"),
    ):
        record = run_record(
            run_id="abc",
            experiment="churn",
            registered_model="churn-model",
            version="1",
            model_hash="0" * 32 + ".dir",
            tracking_uri=uri,
            decision=decision,
        )
        assert record["tracking_uri"] == shown
        assert_hidden(json.dumps(record), password)
    plain = run_record(
        run_id="abc",
        experiment="churn",
        registered_model="churn-model",
        version="1",
        model_hash="0" * 32 + ".dir",
        tracking_uri="sqlite:////srv/churn/mlflow.db",
        decision=decision,
    )
    assert plain["tracking_uri"] == "sqlite:////srv/churn/mlflow.db"


@pytest.fixture
def http_tracking_server(tmp_path):
    """An MLflow tracking server over HTTP on 127.0.0.1 (in this process, so it starts in
    seconds); yields its port. Any user:password in the URI is accepted, and ignored."""
    import threading

    from mlflow.server import ARTIFACT_ROOT_ENV_VAR, BACKEND_STORE_URI_ENV_VAR, app, handlers
    from werkzeug.serving import make_server

    saved = {k: os.environ.get(k) for k in (BACKEND_STORE_URI_ENV_VAR, ARTIFACT_ROOT_ENV_VAR)}
    os.environ[BACKEND_STORE_URI_ENV_VAR] = f"sqlite:///{tmp_path / 'server.db'}"
    os.environ[ARTIFACT_ROOT_ENV_VAR] = str(tmp_path / "artifacts")
    handlers._tracking_store = handlers._model_registry_store = None
    handlers._get_tracking_store()  # before the client sets its URI: the server sets one too
    handlers._get_model_registry_store()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(timeout=30)
        handlers._tracking_store = handlers._model_registry_store = None
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_a_run_over_http_with_a_password_leaks_it_nowhere(
    http_tracking_server, medium_demo, tmp_path, monkeypatch, capfd, caplog
):
    """mlflow_run.json's record, the run's params and tags, what MLflow prints and what is
    logged: none holds the password of `http://user:password@host`."""
    import logging
    from urllib.parse import quote

    from mlflow.tracking import MlflowClient

    from tests.code.test_secrets import assert_hidden

    password = "p@ss/w:rd%2F%x"
    uri = f"http://churn:{quote(password, safe='')}@127.0.0.1:{http_tracking_server}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    caplog.set_level(logging.DEBUG)
    record = log_training_run(
        config=medium_demo["config"],
        metrics={"roc_auc": 0.75, "pr_auc": 0.3, "ece": 0.02},
        models_dir=medium_demo["models"],
        features_path=medium_demo["features"],
        plots_dir=None,
        tracking_uri=uri,
        experiment="secret-test",
        registered_model="secret-test-model",
        champion_metric="roc_auc",
    )
    assert record["tracking_uri"] == f"http://churn:***@127.0.0.1:{http_tracking_server}"
    assert record["version"] == "1" and record["champion"]["outcome"] == "first"
    assert "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT" not in os.environ  # restored
    run = MlflowClient(tracking_uri=uri).get_run(record["run_id"])
    printed = capfd.readouterr()
    for text in (
        json.dumps(record),
        json.dumps(run.data.tags),
        json.dumps(run.data.params),
        printed.out,
        printed.err,
        caplog.text,
    ):
        assert_hidden(text, password)


def test_run_name_says_what_changed_and_tags_hold_the_data_date():
    from pipeline.stages.track import run_name_and_tags

    name, tags = run_name_and_tags(learner="blend", as_of_date="2026-11-16", environ={})
    assert name == "blend 2026-11-16"
    assert tags == {"data_as_of": "2026-11-16", "learner": "blend"}
    name, tags = run_name_and_tags(
        learner="lightgbm",
        as_of_date="2026-11-16",
        environ={"DVC_EXP_NAME": "lr-005", "DVC_EXP_BASELINE_REV": "a1b2c3d4e5f6"},
    )
    assert name.startswith("lr-005") and "lightgbm 2026-11-16" in name
    assert tags["dvc_experiment"] == "lr-005" and tags["dvc_baseline_rev"] == "a1b2c3d4e5f6"
    name, _ = run_name_and_tags(
        learner="lightgbm", as_of_date="2026-11-16", environ={"DVC_EXP_BASELINE_REV": "a1b2c3d4"}
    )
    assert "a1b2c3d" in name


def test_logged_runs_carry_their_name_and_identity_tags(tracked, medium_demo):
    from mlflow.tracking import MlflowClient

    uri, _, first, experiment, *_ = tracked
    client = MlflowClient(tracking_uri=uri)
    as_of = str(medium_demo["config"].base.as_of_date)
    plain = client.get_run(first["run_id"])
    assert plain.info.run_name == f"lightgbm {as_of}"
    assert plain.data.tags["data_as_of"] == as_of and plain.data.tags["learner"] == "lightgbm"
    assert "dvc_experiment" not in plain.data.tags
    exp = client.get_run(experiment["run_id"])
    assert exp.info.run_name.startswith("exp-test")
    assert exp.data.tags["dvc_experiment"] == "exp-test"
