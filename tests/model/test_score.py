"""Scoring: the schema guard, drift and data warnings, settings, and the stage's edge on a
simulated company (outputs, point in time, byte-identical reruns, the MLflow alias)."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from features.registry import build_registry
from pipeline.cli import app
from pipeline.core.errors import ConfigError, ScoringError
from pipeline.core.hashing import dvc_dir_hash
from pipeline.modeling.store import load_model, parse_model_uri
from pipeline.monitoring import drift_warnings, psi, source_warnings
from pipeline.stages.score import (
    check_feature_schema,
    features_without_data,
    risk_bands,
    run_score,
    score_settings,
    weeks_to_score,
)
from tests.conftest import default_params, make_config

SCHEMA = {
    "features": [
        {"name": "active_users_30d", "dtype": "int"},
        {"name": "sla_breaches_90d", "dtype": "int"},
        {"name": "segment", "dtype": "category", "categories": ["smb"]},
    ]
}


# --- schema guard ----------------------------------------------------------------------------


def test_matching_schema_passes():
    check_feature_schema(["active_users_30d", "sla_breaches_90d", "segment"], SCHEMA)


def test_schema_mismatch_names_missing_and_extra_features():
    with pytest.raises(ScoringError) as err:
        check_feature_schema(["active_users_30d", "segment", "nps_mean_30d"], SCHEMA)
    message = str(err.value)
    assert "missing from the scoring table: ['sla_breaches_90d']" in message
    assert "not trained on: ['nps_mean_30d']" in message


def test_schema_mismatch_names_the_absent_table():
    from features.registry import build_registry

    registry = build_registry([30, 90])
    with pytest.raises(ScoringError, match=r"absent or empty.*'support_tickets'"):
        check_feature_schema(
            ["active_users_30d", "segment"],
            SCHEMA,
            registry=registry,
            tables_present={"accounts", "contracts", "usage_events"},
        )


def test_schema_mismatch_on_type():
    from features.registry import build_registry

    schema = {"features": [{"name": "segment", "dtype": "float"}]}
    with pytest.raises(ScoringError, match="type differs"):
        check_feature_schema(["segment"], schema, registry=build_registry([30, 90]))


# --- small pure pieces -----------------------------------------------------------------------


def test_risk_bands_at_their_thresholds():
    bands = risk_bands(np.array([0.0, 0.149, 0.15, 0.349, 0.35, 1.0]), high=0.35, medium=0.15)
    assert bands.tolist() == ["low", "low", "medium", "medium", "high", "high"]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.normal(size=5000))
    assert (
        psi(reference, reference.sample(frac=1, random_state=1), bins=10, categorical=False) < 1e-9
    )
    assert psi(reference, reference + 2, bins=10, categorical=False) > 1.0
    # missing values are a bucket of their own
    holes = reference.where(reference > 0)
    assert psi(reference, holes, bins=10, categorical=False) > 1.0
    levels = pd.Series(["smb"] * 80 + ["enterprise"] * 20)
    assert psi(levels, levels, bins=10, categorical=True) == 0.0
    assert psi(levels, pd.Series(["enterprise"] * 100), bins=10, categorical=True) > 1.0


def test_drift_warns_only_for_top_features_over_the_threshold():
    drift = pd.DataFrame(
        {"feature": ["a", "b", "c"], "psi": [0.4, 0.1, 0.9], "importance_rank": [1, 2, 3]}
    )
    warnings = drift_warnings(drift, psi_warn=0.25, top_features=2)
    assert [w["feature"] for w in warnings] == ["a"]
    assert warnings[0]["kind"] == "drift" and "PSI 0.40" in warnings[0]["message"]


def test_source_warnings_for_empty_and_stale_tables():
    report = {"tables": {"csms": {"status": "empty"}, "usage_events": {"status": "ok"}}}
    latest = {
        "usage_events": date(2025, 1, 1),
        "support_tickets": date(2025, 3, 25),
        "nps_responses": None,
    }
    warnings = source_warnings(
        report,
        latest,
        as_of=date(2025, 4, 1),
        stale_after_days={"usage_events": 7, "support_tickets": 30},
    )
    kinds = {(w["kind"], w["table"]) for w in warnings}
    assert kinds == {
        ("empty_table", "csms"),
        ("empty_table", "nps_responses"),
        ("stale_table", "usage_events"),
    }
    stale = next(w for w in warnings if w["kind"] == "stale_table")
    assert stale["days_old"] == 90 and "2025-01-01" in stale["message"]


def test_weeks_to_score_cover_the_previous_week_and_the_trend():
    as_of = date(2026, 11, 16)
    assert weeks_to_score(as_of, 1) == [as_of - timedelta(weeks=1), as_of]
    weeks = weeks_to_score(as_of, 8)
    assert len(weeks) == 8 and weeks[-1] == as_of and weeks[0] == as_of - timedelta(weeks=7)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["score"].__setitem__("rank_by", "arr"), "score.rank_by"),
        (lambda p: p["score"].__setitem__("risk_bands", {"high": 0.1, "medium": 0.2}), "above"),
        (lambda p: p["score"].__setitem__("top_reasons", 0), "score.top_reasons"),
        (lambda p: p["score"]["stale_after_days"].__setitem__("crm", 3), "unknown tables"),
        (lambda p: p["evaluate"].__setitem__("capacity_per_csm", 0), "capacity_per_csm"),
        (lambda p: p["score"].__setitem__("rank_bye", "arr"), "did you mean rank_by"),
        (lambda p: p["score"]["drift"].__setitem__("bins", 1), r"score\.drift\.bins"),
        (lambda p: p["score"].__setitem__("urgency", {"floor": 0.0}), r"score\.urgency\.floor"),
        (lambda p: p["score"].__setitem__("watch_per_csm", -1), r"score\.watch_per_csm"),
    ],
)
def test_bad_score_settings_are_clear_errors(change, message):
    """The config refuses bad scoring settings before any work, naming the key."""
    params = default_params()
    change(params)
    with pytest.raises(ConfigError, match=message):
        score_settings(make_config(params))


def test_score_settings_take_the_config_values_and_fill_defaults():
    params = default_params()
    params.pop("score")
    settings = score_settings(make_config(params))
    assert (settings.rank_by, settings.high_risk, settings.trend_weeks) == (
        "expected_arr_at_risk",
        0.35,
        8,
    )
    assert settings.capacity_per_csm == params["evaluate"]["capacity_per_csm"]


def test_model_uri_forms():
    assert parse_model_uri("models:/churn-model@champion") == ("churn-model", "champion", None)
    assert parse_model_uri("models:/churn-model/3") == ("churn-model", None, "3")
    with pytest.raises(ScoringError, match="models:/<name>@<alias>"):
        parse_model_uri("models:/churn-model")


def test_dvc_dir_hash_matches_dvc(tmp_path):
    # Expected value computed by `dvc add` on the same two files.
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "x.txt").write_text("a\n")
    (tmp_path / "d" / "sub" / "y.txt").write_text("bb\n")
    assert dvc_dir_hash(tmp_path / "d") == "cf6be8bf827832a11913d8b79d0777d3.dir"


# --- the stage on a simulated company --------------------------------------------------------


def test_outputs_follow_the_shared_interface(scored_demo):
    out, manifest = scored_demo["out"], scored_demo["manifest"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for key in (
        "as_of",
        "model_version",
        "model_source",
        "data_version",
        "rank_by",
        "capacity_per_csm",
        "base_value",
        "warnings",
        "csms",
    ):
        assert key in manifest
    # a model directory's stamp is its content hash: the same files, the same stamp anywhere
    assert manifest["model_version"] == dvc_dir_hash(scored_demo["models"])[:12]
    assert manifest["data_version"] == dvc_dir_hash(scored_demo["interim"])
    accounts = pd.read_parquet(out / "accounts.parquet")
    # what the leadership report reads, plus the columns the interface promises besides
    from pipeline.stages.report import ACCOUNT_COLUMNS as REPORT_READS

    required = [*REPORT_READS, "as_of", "list_rank"]
    assert [c for c in required if c not in accounts.columns] == []
    assert accounts["account_id"].is_unique and len(accounts) == manifest["n_accounts"]
    assert accounts["probability"].between(0, 1).all()
    assert np.allclose(accounts["expected_arr_at_risk"], accounts["probability"] * accounts["arr"])
    assert (accounts["days_to_renewal"] >= 0).all()
    assert set(accounts["risk_band"]) <= {"high", "medium", "low"}
    assert accounts["list_rank"].notna().eq(accounts["on_list"]).all()
    capacity = manifest["capacity_per_csm"]
    assert accounts[accounts["on_list"]].groupby("csm_id").size().max() <= capacity
    shap = pd.read_parquet(out / "shap.parquet")
    features = pd.read_parquet(out / "features.parquet")
    assert shap["account_id"].tolist() == accounts["account_id"].tolist()
    assert list(shap.columns) == list(features.columns)
    trend = pd.read_csv(out / "trend.csv")
    assert list(trend.columns) == [
        "week",
        "n_accounts",
        "arr_total",
        "expected_arr_at_risk",
        "mean_probability",
    ]
    assert len(trend) == scored_demo["params"]["score"]["trend_weeks"]
    assert trend["week"].iloc[-1] == manifest["as_of"]
    assert trend["n_accounts"].iloc[-1] == len(accounts)


def test_rerun_gives_byte_identical_files(scored_demo, tmp_path):
    again = tmp_path / "again"
    run_score(
        scored_demo["config"],
        as_of=None,
        interim_dir=scored_demo["interim"],
        model_ref=str(scored_demo["models"]),
        reference_features=scored_demo["features"],
        out_dir=again,
    )
    first = {p.relative_to(scored_demo["out"]): p.read_bytes() for p in _files(scored_demo["out"])}
    second = {p.relative_to(again): p.read_bytes() for p in _files(again)}
    assert first.keys() == second.keys() and len(first) > 5
    assert [str(k) for k in first if first[k] != second[k]] == []


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


# Per table: the column that stamps a row, and later-known columns that must not leak.
STAMPS = {
    "accounts": ("created_at", []),
    "contracts": ("start_date", []),
    "users": ("created_at", ["deactivated_at"]),
    "usage_events": ("occurred_at", []),
    "trainings": ("enrolled_at", ["completed_at"]),
    "support_tickets": ("opened_at", ["first_response_at", "resolved_at"]),
    "nps_responses": ("responded_at", []),
    "csm_touchpoints": ("occurred_at", []),
}


def _cut_at(interim, target, cutoff: date) -> None:
    """A copy of the validated tables with every row stamped at or after `cutoff` removed and
    every later-known timestamp at or after it blanked."""
    shutil.copytree(interim, target)
    instant = pd.Timestamp(cutoff, tz="UTC")
    for table, (stamp, later) in STAMPS.items():
        paths = (
            sorted((target / table).glob("*.parquet"))
            if (target / table).is_dir()
            else [target / f"{table}.parquet"]
        )
        for path in paths:
            original = pq.read_table(path)
            frame = original.to_pandas()
            bound = cutoff if table == "contracts" else instant
            frame = frame[frame[stamp] < bound].reset_index(drop=True)
            for column in later:
                frame[column] = frame[column].where(frame[column] < instant)
            pq.write_table(pa.Table.from_pandas(frame, schema=original.schema), path)


def test_scoring_is_point_in_time(scored_demo, tmp_path):
    """Scoring at t reads nothing stamped at or after t: removing those rows changes nothing."""
    as_of = date.fromisoformat(scored_demo["manifest"]["as_of"]) - timedelta(days=30)
    cut = tmp_path / "cut"
    _cut_at(scored_demo["interim"], cut, as_of)
    results = {}
    for name, interim in (("full", scored_demo["interim"]), ("cut", cut)):
        run_score(
            scored_demo["config"],
            as_of=as_of,
            interim_dir=interim,
            model_ref=str(scored_demo["models"]),
            reference_features=scored_demo["features"],
            out_dir=tmp_path / name,
        )
        results[name] = {
            f: pd.read_parquet(tmp_path / name / f)
            for f in ("accounts.parquet", "shap.parquet", "features.parquet")
        }
    assert len(results["full"]["accounts.parquet"]) > 100
    for f, frame in results["full"].items():
        pd.testing.assert_frame_equal(frame, results["cut"][f], obj=f)
    for f in ("trend.csv",):
        assert (tmp_path / "full" / f).read_bytes() == (tmp_path / "cut" / f).read_bytes()


def test_cli_refuses_a_model_whose_schema_does_not_match(scored_demo, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(scored_demo["models"], models)
    schema = json.loads((models / "feature_schema.json").read_text())
    schema["features"] = [c for c in schema["features"] if c["name"] != "arr"]
    schema["features"].append({"name": "crm_sentiment_score", "dtype": "float"})
    (models / "feature_schema.json").write_text(json.dumps(schema))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(scored_demo["params"]))
    args = ["score", "--params", str(params), "--interim", str(scored_demo["interim"])]
    args += ["--model", str(models), "--out", str(tmp_path / "lists")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "crm_sentiment_score" in result.output and "'arr'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "lists").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--as-of", "2030-01-01"], "after the data's as-of date"),
        (["--as-of", "16/11/2026"], "is not a date"),
        (["--model", "nowhere"], "no model in nowhere"),
        (["--model", "models:/churn-model"], "models:/<name>@<alias>"),
    ],
)
def test_cli_errors_exit_2(scored_demo, tmp_path, extra, message):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(scored_demo["params"]))
    args = ["score", "--params", str(params), "--interim", str(scored_demo["interim"])]
    args += ["--model", str(scored_demo["models"]), "--out", str(tmp_path / "lists"), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.slow
def test_model_from_the_mlflow_registry_alias(scored_demo, tmp_path, monkeypatch):
    """models:/<name>@<alias> loads the model files the aliased version's run logged, and the
    run id becomes the model version on the lists."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from pipeline.modeling.store import load_model_ref as load_scoring_model

    monkeypatch.chdir(tmp_path)  # artifacts land next to the store
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("churn-test")  # not an experiment id left active by an earlier test
    client = MlflowClient(tracking_uri=uri)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(scored_demo["models"]), artifact_path="model_files")
    client.create_registered_model("churn-test")
    version = client.create_model_version(
        "churn-test", f"runs:/{run.info.run_id}/model_files", run_id=run.info.run_id
    )
    client.set_registered_model_alias("churn-test", "champion", version.version)

    model, source, model_version = load_scoring_model(
        "models:/churn-test@champion", tracking_uri=uri
    )
    assert model_version == run.info.run_id and source == "models:/churn-test@champion"
    reference = pd.read_parquet(scored_demo["out"] / "features.parquet").head(50)
    from pipeline.modeling.store import load_model

    local = load_model(scored_demo["models"])
    assert np.array_equal(model.predict(reference), local.predict(reference))
    with pytest.raises(ScoringError, match="cannot load"):
        load_scoring_model("models:/churn-test@nobody", tracking_uri=uri)


def _without_table(interim, target, table: str, *, empty: bool) -> None:
    """A copy of the validated tables where `table` came out empty (or not at all) this week."""
    shutil.copytree(interim, target)
    report = json.loads((target / "validation_report.json").read_text())
    path = target / f"{table}.parquet"
    if empty:
        pq.write_table(pq.read_table(path).slice(0, 0), path)
    else:
        path.unlink()
    report["tables"][table]["status"] = "empty" if empty else "absent"
    (target / "validation_report.json").write_text(json.dumps(report))


def test_an_empty_or_absent_optional_table_still_gives_every_csm_a_list(scored_demo, tmp_path):
    """The NPS export failed this week: scoring goes on with those features missing (as for an
    account without answers), says so in one data warning, and empty behaves as absent."""
    results = {}
    for name, empty in (("empty", True), ("absent", False)):
        interim = tmp_path / f"interim_{name}"
        _without_table(scored_demo["interim"], interim, "nps_responses", empty=empty)
        manifest = run_score(
            scored_demo["config"],
            as_of=None,
            interim_dir=interim,
            model_ref=str(scored_demo["models"]),
            reference_features=scored_demo["features"],
            out_dir=tmp_path / name,
        )
        missing = [w for w in manifest.warnings if w["kind"] == "missing_table"]
        assert [w["table"] for w in missing] == ["nps_responses"]
        assert set(missing[0]["features"]) >= {"latest_nps", "nps_detractor"}
        assert not [
            w
            for w in manifest.warnings
            if w["kind"] == "empty_table" and w["table"] == "nps_responses"
        ]
        assert manifest.n_listed > 0 and manifest.csms
        accounts = pd.read_parquet(tmp_path / name / "accounts.parquet")
        features = pd.read_parquet(tmp_path / name / "features.parquet")
        assert features["latest_nps"].isna().all()
        results[name] = accounts.set_index("account_id")["probability"]
    pd.testing.assert_series_equal(results["empty"], results["absent"])
    full = pd.read_parquet(scored_demo["out"] / "accounts.parquet").set_index("account_id")
    assert (full["probability"] != results["absent"]).any()  # the missing answers do count


def test_features_missing_for_other_reasons_still_stop_scoring():
    """Only features whose optional table is absent are scored as missing: a model trained on
    other windows still fails the schema guard."""
    registry = build_registry([30, 90])
    present = {"accounts", "contracts", "usage_events", "support_tickets"}
    without = features_without_data(["latest_nps", "tickets_opened_90d"], registry, present)
    assert without == {"nps_responses": ["latest_nps"]}
    assert features_without_data(["active_users_60d"], registry, present) == {}


def test_accounts_without_a_known_csm_are_scored_and_on_the_unassigned_list(scored_demo, tmp_path):
    """No CSM in the export, or a CSM the csms table lacks: never dropped, never on a list
    nobody receives; ranked on the unassigned list and counted by reason."""
    interim = tmp_path / "interim"
    shutil.copytree(scored_demo["interim"], interim)
    path = interim / "accounts.parquet"
    original = pq.read_table(path)
    frame = original.to_pandas()
    # The riskiest accounts lose their CSM, so some are above the action floor and listed.
    before = pd.read_parquet(scored_demo["out"] / "accounts.parquet")
    riskiest = before.nlargest(20, "probability")["account_id"].tolist()
    frame = frame.set_index(frame["account_id"].map({a: i for i, a in enumerate(riskiest)}))
    frame = frame.sort_index(na_position="last").reset_index(drop=True)
    frame.loc[:9, "csm_id"] = None
    frame.loc[10:19, "csm_id"] = "CSM_GHOST"
    pq.write_table(pa.Table.from_pandas(frame, schema=original.schema), path)
    manifest = run_score(
        scored_demo["config"],
        as_of=None,
        interim_dir=interim,
        model_ref=str(scored_demo["models"]),
        reference_features=scored_demo["features"],
        out_dir=tmp_path / "lists",
    )
    accounts = pd.read_parquet(tmp_path / "lists" / "accounts.parquet")
    moved = set(frame.loc[:19, "account_id"])
    scored_moved = accounts[accounts["account_id"].isin(moved)]
    active_moved = set(before["account_id"]) & moved
    assert set(scored_moved["account_id"]) == active_moved and active_moved  # none dropped
    assert len(accounts) == len(before)
    ghosts = scored_moved[scored_moved["exported_csm_id"] == "CSM_GHOST"]
    assert ghosts["csm_id"].isna().all() and (ghosts["assignment"] == "unknown_csm").all()
    assert "CSM_GHOST" not in {e.csm_id for e in manifest.csms}
    unassigned = manifest.unassigned
    assert unassigned is not None and unassigned.n_owned == int(accounts["csm_id"].isna().sum())
    assert set(unassigned.by_reason) <= {"no_csm", "unknown_csm"}
    assert sum(unassigned.by_reason.values()) == unassigned.n_owned == manifest.n_unassigned
    listed = pd.read_csv(tmp_path / "lists" / unassigned.csv, dtype=str)
    capacity = scored_demo["config"].evaluate.capacity_per_csm
    assert 0 < len(listed) == unassigned.n_accounts <= capacity
    floor = scored_demo["config"].score.risk_bands.medium  # score.action_floor: medium
    on_list = accounts[accounts["account_id"].isin(listed["account_id"])]
    assert (on_list["probability"] >= floor).all()
    assert set(listed["account_id"]) <= set(accounts.loc[accounts["csm_id"].isna(), "account_id"])
    assert (tmp_path / "lists" / unassigned.html).is_file()


def test_scoring_uses_the_vocabulary_the_model_was_trained_with(scored_demo, tmp_path):
    """The model keeps the event types (and modules) its features were named after: params
    that would now resolve to other names, or a week whose most frequent types differ, never
    change what a feature means on the lists."""
    from pipeline.core.config import parse_config
    from pipeline.feature_engine.vocabulary import Vocabulary

    model = load_model(scored_demo["models"])
    vocabulary = Vocabulary.from_info(model.info)
    assert vocabulary is not None and vocabulary.event_types  # resolved from the demo's data
    typed = [n for n in model.feature_names if n.startswith("events_type_")]
    assert typed
    params = copy.deepcopy(scored_demo["params"])
    params["features"]["event_types"] = []  # today's params would count no event type
    params["features"]["advanced_modules"] = None
    run_score(
        parse_config(params),
        as_of=None,
        interim_dir=scored_demo["interim"],
        model_ref=str(scored_demo["models"]),
        reference_features=scored_demo["features"],
        out_dir=tmp_path / "lists",
    )
    for name in ("accounts.parquet", "manifest.json"):
        assert (tmp_path / "lists" / name).read_bytes() == (scored_demo["out"] / name).read_bytes()
