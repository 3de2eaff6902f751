"""One definition, two engines; and a user with only the required tables."""

from __future__ import annotations

import sys
from datetime import date

import pandas as pd
import pytest

from features.definitions import FeatureSettings
from features.registry import build_registry
from pipeline.core.errors import EngineError
from pipeline.feature_engine.build import build_features, present_tables
from pipeline.feature_engine.engines import DuckDBEngine, SparkEngine, open_engine, to_spark_sql
from pipeline.stages.features import feature_summary
from tests.conftest import feature_settings
from tests.feature_fixtures import (
    ALL_KINDS,
    SETTINGS,
    features_from_interim,
    fixture_tables,
    ingest_tables,
)
from tests.feature_fixtures import DATES as FIXTURE_DATES

DATES = [date(2024, 6, 1), date(2025, 3, 1), date(2026, 1, 1), date(2026, 11, 1)]


def _settings(as_of: date) -> FeatureSettings:
    return feature_settings(as_of)


@pytest.fixture(scope="module")
def spark():
    """One local Spark session for this module (starting one takes several seconds)."""
    engine = SparkEngine(master="local[2]", shuffle_partitions=2, driver_memory="1g")
    yield engine
    engine.close()


@pytest.mark.parametrize("settings", [SETTINGS, ALL_KINDS], ids=["default", "all_kinds"])
def test_hand_computed_fixture_is_identical_on_spark(tmp_path, spark, settings):
    """ALL_KINDS adds the features of event types (quotes, a backslash), values and
    attributes; the fixture has CSAT/CES answers and attributes either way."""
    interim, tables = ingest_tables(fixture_tables(), tmp_path)
    duck = DuckDBEngine(threads=1)
    try:
        expected = features_from_interim(
            interim, tables, FIXTURE_DATES, engine=duck, settings=settings
        )
    finally:
        duck.close()
    got = features_from_interim(interim, tables, FIXTURE_DATES, engine=spark, settings=settings)
    assert len(expected) >= 8
    assert {"satisfaction_responses", "account_attributes"} <= tables
    assert {"latest_csat", "ces_mean_90d", "active_days_30d"} <= set(expected.columns)
    if settings is ALL_KINDS:
        kinds = {"events_type_rule_s_run_30d", "events_type_report_export_90d", "attr_channel"}
        assert kinds | {"usage_value_per_event_30d", "attr_employees"} <= set(expected.columns)
    pd.testing.assert_frame_equal(expected, got, check_exact=False, rtol=1e-12)


@pytest.mark.slow
def test_spark_and_duckdb_give_identical_feature_tables(small_demo, spark):
    interim, report, config = small_demo
    tables = present_tables(report)
    duck = DuckDBEngine(threads=1)
    try:
        expected = build_features(duck, interim, tables, DATES, _settings(config.as_of_date))
    finally:
        duck.close()
    got = build_features(spark, interim, tables, DATES, _settings(config.as_of_date))
    assert len(expected.table) > 50
    assert expected.table["churned"].notna().sum() > 10
    pd.testing.assert_frame_equal(expected.table, got.table, check_exact=False, rtol=1e-12)


def test_transpiled_sql_is_spark_sql():
    sql = to_spark_sql("SELECT EPOCH(x) AS e, MAX_BY(a, b) AS m, COUNT(*) FILTER (WHERE c) FROM t")
    assert "UNIX_TIMESTAMP" in sql and "MAX_BY" in sql


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(EngineError, match="duckdb' or 'spark'"):
        open_engine("postgres")


def test_spark_engine_without_the_extra_names_the_extra(monkeypatch):
    """The core install has no pyspark: the Spark engine says in one line what to install."""
    monkeypatch.setitem(sys.modules, "pyspark", None)  # `import pyspark` now raises ImportError
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(EngineError) as raised:
        open_engine("spark")
    message = str(raised.value)
    assert "\n" not in message
    assert "pip install 'churn-pipeline[spark]'" in message


def test_only_required_tables_give_the_families_that_exist(small_demo):
    interim, _, config = small_demo
    required = {"accounts", "contracts", "usage_events"}
    engine = DuckDBEngine(threads=1)
    try:
        result = build_features(engine, interim, required, DATES, _settings(config.as_of_date))
    finally:
        engine.close()
    summary = feature_summary(result)
    assert summary["families_unavailable"] == [
        "training",
        "support",
        "engagement",
        "satisfaction",
        "attributes",
    ]
    assert summary["families_partial"] == ["onboarding"]  # trainings in the first 90 days
    columns = set(result.table.columns)
    assert "active_users_30d" in columns and "seats_activated_90d" in columns
    assert not columns & {"sla_breaches_90d", "trained_user_share", "latest_nps"}
    registry = {f.name: f for f in build_registry((30, 90))}
    for name in summary["features_unavailable"]:
        assert registry[name].tables, f"{name} needs only required tables but is unavailable"
    assert result.table["churned"].notna().sum() > 0


def test_snapshot_batches_give_the_same_table(small_demo):
    """Batching snapshots bounds memory; it must never change a value."""
    interim, report, config = small_demo
    tables = present_tables(report)
    engine = DuckDBEngine(threads=1)
    try:
        whole = build_features(engine, interim, tables, DATES, _settings(config.as_of_date))
        batched = build_features(
            engine, interim, tables, DATES, _settings(config.as_of_date), batch_size=1
        )
    finally:
        engine.close()
    pd.testing.assert_frame_equal(whole.table, batched.table)


def test_one_engine_reused_on_other_data_rebuilds_everything(small_demo, tmp_path):
    """Views built once per dataset must not leak from one dataset into the next."""
    interim, report, config = small_demo
    tables = present_tables(report)
    fixture_interim, fixture_tables_present = ingest_tables(fixture_tables(), tmp_path)
    engine = DuckDBEngine(threads=1)
    try:
        build_features(
            engine,
            fixture_interim,
            fixture_tables_present,
            FIXTURE_DATES,
            _settings(config.as_of_date),
        )
        reused = build_features(engine, interim, tables, DATES, _settings(config.as_of_date))
    finally:
        engine.close()
    fresh_engine = DuckDBEngine(threads=1)
    try:
        fresh = build_features(fresh_engine, interim, tables, DATES, _settings(config.as_of_date))
    finally:
        fresh_engine.close()
    pd.testing.assert_frame_equal(reused.table, fresh.table)
