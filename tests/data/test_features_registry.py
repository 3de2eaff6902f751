"""The registry and its families: one declaration per feature, named settings, the label rule.

The values behind the named settings (onboarding days, activation checkpoints, stickiness, QBR
window, detractor score) are worked out by hand on the fixture of tests/feature_fixtures.py,
with settings other than the defaults so that a setting the SQL ignored would show.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pandas as pd
import pytest

from features.definitions import feature_statements, registry_for, settings_from_config
from features.labels import label_statement
from features.registry import FAMILIES, available, build_registry
from pipeline.data.contract import TABLES, interim_path
from pipeline.feature_engine.build import snapshot_frame
from pipeline.feature_engine.engines import DuckDBEngine
from tests.conftest import default_params, make_config
from tests.feature_fixtures import (
    ALL_KINDS,
    LATER_SNAPSHOT,
    MATURE,
    SETTINGS,
    SNAPSHOT,
    YOUNG,
    fixture_tables,
    ingest_tables,
)

OPTIONAL_TABLES = {name for name, spec in TABLES.items() if not spec.required}


def test_families_are_in_the_feature_table_order():
    assert list(FAMILIES) == [
        "usage",
        "training",
        "support",
        "onboarding",
        "engagement",
        "satisfaction",
        "commercial",
        "attributes",
    ]
    registry = build_registry(SETTINGS.windows, settings=SETTINGS)
    families = [f.family for f in registry]
    assert families == sorted(families, key=list(FAMILIES).index)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_tables_are_exactly_the_optional_tables_its_features_need(family):
    # ALL_KINDS: the attributes family declares features only for the attributes it is given
    declared = FAMILIES[family].tables
    needed = {t for f in FAMILIES[family].features(ALL_KINDS) for t in f.tables}
    assert len(declared) == len(set(declared)), declared
    assert set(declared) == needed
    assert needed <= OPTIONAL_TABLES, f"{needed - OPTIONAL_TABLES} are required tables"


def test_windowed_features_are_declared_once_per_window():
    one = {f.name for f in build_registry((30,)) if f.window_days is not None}
    two = [f for f in build_registry((14, 30)) if f.window_days is not None]
    assert {f.name for f in two if f.window_days == 30} == one
    assert {f.name.replace("_14d", "_30d") for f in two if f.window_days == 14} == one
    assert all(f.name.endswith(f"_{f.window_days}d") for f in two)


def test_default_settings_keep_the_trained_model_names():
    names = [f.name for f in build_registry((30, 90))]
    assert names[names.index("tenure_days") :][:9] == [
        "tenure_days",
        "in_first_90_days",
        "days_to_first_value",
        "seats_activated_30d",
        "seats_activated_60d",
        "seats_activated_90d",
        "onboarding_modules",
        "onboarding_trainings",
        "touchpoints_30d",
    ]
    assert {"stickiness_30d", "qbr_last_quarter", "nps_detractor"} <= set(names)
    named = build_registry((90, 30, 30), settings=SETTINGS)
    assert [f.name for f in build_registry((30, 90))] == [f.name for f in named]


def test_the_depth_play_names_only_the_advanced_modules_given():
    def plays(modules):
        settings = replace(SETTINGS, advanced_modules=modules)
        return {
            f.play
            for f in build_registry(settings.windows, settings=settings)
            if f.name.startswith("advanced_usage_share")
        }

    assert plays(("automation", "custom_reports")) == {
        "Offer a workshop on the advanced modules (automation, custom reports)."
    }
    assert plays(()) == {"Offer a workshop on the product modules the account has not adopted yet."}


def _adoption(counts: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"module": list(counts), "accounts": list(counts.values()), "events": 1})


def test_advanced_modules_from_params_keep_only_those_the_data_has():
    from pipeline.feature_engine.build import resolve_advanced_modules

    adoption = _adoption({"inbox": 90, "reports": 40, "api": 3})
    kept, warnings = resolve_advanced_modules(("api", "automation"), adoption)
    assert kept == ("api",)
    assert len(warnings) == 1 and "['automation']" in warnings[0]
    kept, warnings = resolve_advanced_modules(("automation",), adoption)
    assert kept == () and "advanced usage is 0 for every account" in warnings[0]
    assert resolve_advanced_modules(("inbox",), adoption) == (("inbox",), [])


def test_advanced_modules_derived_from_the_data_are_the_least_adopted_third():
    from pipeline.feature_engine.build import resolve_advanced_modules

    adoption = _adoption({"a": 90, "b": 80, "c": 70, "d": 20, "e": 10, "f": 10})
    derived, warnings = resolve_advanced_modules(None, adoption)
    assert derived == ("e", "f") and "derived from the data" in warnings[0]
    assert resolve_advanced_modules(None, _adoption({"a": 5, "b": 1}))[0] == ()


def test_more_modules_than_the_bitmask_holds_is_a_clear_error():
    from pipeline.core.errors import FeatureError
    from pipeline.feature_engine.build import MAX_MODULES, resolve_advanced_modules

    many = _adoption({f"m{i:02d}": i for i in range(MAX_MODULES + 1)})
    with pytest.raises(FeatureError, match=r"64 distinct modules.*value_map"):
        resolve_advanced_modules(None, many)


def test_registry_windows_must_match_the_settings():
    with pytest.raises(ValueError, match="differ from the settings"):
        build_registry((30,), settings=SETTINGS)
    with pytest.raises(ValueError, match="positive days"):
        build_registry((0, 30))


def test_settings_from_config_fills_every_named_setting():
    params = default_params()
    params["features"].update(
        onboarding_days=45,
        activation_days=[40, 20],
        stickiness_days=14,
        qbr_window_days=100,
        detractor_max_score=3,
    )
    params["base"]["renewal_grace_days"] = 21
    settings = settings_from_config(make_config(params), 20_000)
    assert settings.onboarding_days == 45
    assert settings.activation_days == (20, 40)
    assert settings.stickiness_days == 14
    assert settings.qbr_window_days == 100
    assert settings.detractor_max_score == 3
    assert settings.label_rule == make_config(params).label_rule
    assert settings.label_rule.grace_days == 21
    assert settings.as_of_day == 20_000


def test_label_sql_uses_the_shared_rule():
    sql = label_statement(SETTINGS).sql
    rule = SETTINGS.label_rule
    assert f"NOT {rule.in_horizon_sql('s.renewal_day', 's.snap_day')} THEN NULL" in sql
    assert f"NOT {rule.decided_sql('s.renewal_day', SETTINGS.as_of_day)} THEN NULL" in sql


def test_unknown_features_are_a_clear_error():
    tables = set(TABLES)
    names = [f.name for f in build_registry(SETTINGS.windows)]
    with pytest.raises(ValueError, match=r"\['stickiness_30d'\] are not declared"):
        feature_statements(replace(SETTINGS, stickiness_days=14), tables, names)
    with pytest.raises(ValueError, match=r"latest_nps.*nps_responses"):
        feature_statements(SETTINGS, tables - {"nps_responses"}, names)


# Named settings away from the defaults; the expected values below are worked out by hand.
CUSTOM = replace(
    SETTINGS,
    onboarding_days=45,
    activation_days=(20, 40),
    stickiness_days=14,
    qbr_window_days=100,
    detractor_max_score=3,
)

EXPECTED_CUSTOM: dict[tuple[str, date], dict[str, float]] = {
    # young was created 2024-04-22; users first active on day 1 (Y1), 18 (Y2), 33 (Y3) and 54
    # (Y4, after the 45-day cutoff); trainings completed on day 28 (Y1) and 49 (Y2).
    (YOUNG, SNAPSHOT): {
        "in_first_45_days": 1,  # 40 days old
        "seats_activated_20d": 0.1,  # Y1, Y2 / 20 seats
        "seats_activated_40d": 0.15,  # + Y3 (day 33 < the cutoff at t, day 40)
        "qbr_last_quarter": 1,  # 05-05
        "nps_detractor": 0,  # 9 > 3
    },
    (YOUNG, LATER_SNAPSHOT): {
        "in_first_45_days": 0,  # 132 days old
        "seats_activated_20d": 0.1,  # Y1, Y2
        "seats_activated_40d": 0.15,  # Y1, Y2, Y3; Y4's day 54 is past the 45-day cutoff
        "onboarding_trainings": 1,  # Y1 day 28; Y2 day 49 is past the cutoff (default: 2)
    },
    # 14 days before 06-01 is 05-18: user-days M2 05-20 and M1 05-31 (06-01T00:30+02:00),
    # active users M1 and M2: 2 / (2 * 14). QBR 03-02T23:00 is within 100 days (not 90).
    (MATURE, SNAPSHOT): {
        "stickiness_14d": 1 / 14,
        "qbr_last_quarter": 1,
        "nps_detractor": 0,  # latest answer 4 > 3
    },
    (MATURE, LATER_SNAPSHOT): {"nps_detractor": 1},  # latest answer 0 (07-01)
}


@pytest.fixture(scope="module")
def custom_features(tmp_path_factory) -> pd.DataFrame:
    """The fixture's feature table under CUSTOM, from the definitions run on DuckDB."""
    interim, present = ingest_tables(fixture_tables(), tmp_path_factory.mktemp("custom"))
    names = [f.name for f in available(build_registry(CUSTOM.windows, settings=CUSTOM), present)]
    engine = DuckDBEngine(threads=1)
    try:
        for name in sorted(present):
            engine.register_parquet(name, interim_path(interim, name))
        engine.register_frame("snapshot_dates", snapshot_frame([SNAPSHOT, LATER_SNAPSHOT]))
        table = engine.run(feature_statements(CUSTOM, present, names))
    finally:
        engine.close()
    table["snapshot_date"] = pd.to_datetime(table["snapshot_date"]).dt.date
    return table.set_index(["account_id", "snapshot_date"])


def test_named_settings_rename_their_features(custom_features):
    columns = set(custom_features.columns)
    assert {"in_first_45_days", "stickiness_14d", "seats_activated_20d"} <= columns
    assert not columns & {"in_first_90_days", "stickiness_30d", "seats_activated_30d"}
    described = {f.name: f.description for f in build_registry(CUSTOM.windows, settings=CUSTOM)}
    assert described["qbr_last_quarter"] == "QBR held in the last 100 days"
    assert described["nps_detractor"] == "Latest NPS answer is a detractor (0-3)"
    assert described["onboarding_modules"] == "Modules used in the first 45 days"


@pytest.mark.parametrize("key", list(EXPECTED_CUSTOM), ids=lambda k: f"{k[0]}-{k[1]}")
def test_named_settings_change_the_values(custom_features, key):
    row = custom_features.loc[key]
    for name, want in EXPECTED_CUSTOM[key].items():
        assert float(row[name]) == pytest.approx(want, rel=1e-12), name


def test_named_settings_flow_from_params_to_the_feature_table(small_demo):
    """Changing a named setting in params renames and recomputes the features it shapes, with
    the registry and the SQL built from the same config (no mismatch error)."""
    from pipeline.feature_engine.build import compute_features, read_present_tables
    from tests.conftest import default_params, make_config

    interim, _, sim = small_demo
    params = default_params()
    params["base"]["as_of_date"] = str(sim.as_of_date)
    params["features"].update(activation_days=[20, 45], stickiness_days=14)
    params["features"]["duckdb"] = {"threads": 1}
    config = make_config(params)
    tables, _ = read_present_tables(interim)
    table = compute_features(config, interim, tables, [sim.as_of_date]).table
    # the features of the tables the demo has (it has no CSAT/CES answers or attributes)
    names = {f.name for f in available(registry_for(config), tables)}
    assert {"seats_activated_20d", "seats_activated_45d", "stickiness_14d"} <= set(table.columns)
    assert not {"seats_activated_30d", "stickiness_30d"} & set(table.columns)
    assert names == set(table.columns) - {
        "account_id",
        "snapshot_date",
        "contract_id",
        "renewal_date",
        "churned",
    }
