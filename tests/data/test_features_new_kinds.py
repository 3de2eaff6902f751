"""The feature kinds that depend on the data's vocabulary: event types, event values, account
attributes; and the satisfaction family's settings. Values worked out by hand.

The rows are in tests/feature_fixtures.py; `ALL_KINDS` declares these features. Main snapshot
t = 2024-06-01, t - 30d = 2024-05-02, t - 90d = 2024-03-03; later snapshot 2024-09-01. The
values of the features every dataset has (active days, events, CSAT, CES) are in
test_features_fixtures.py.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.base import DeclarationSettings
from features.definitions import registry_for, settings_from_config
from features.names import (
    MAX_SLUG_CHARS,
    attribute_feature_names,
    event_type_feature_names,
    event_type_slug,
    slug,
    unique_slugs,
)
from features.registry import available, build_registry
from pipeline.data.contract import interim_path
from pipeline.feature_engine.engines import DuckDBEngine
from tests.conftest import default_params, make_config
from tests.feature_fixtures import (
    ACCOUNTS,
    ALL_KINDS,
    DATES,
    LATER_SNAPSHOT,
    MATURE,
    NO_USAGE,
    SETTINGS,
    SNAPSHOT,
    SUPPORT,
    YOUNG,
    compute_features,
    features_from_interim,
    fixture_tables,
    ingest_tables,
)

# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("view", "view"),
        ("API call", "api_call"),
        ("rule's run", "rule_s_run"),
        ("  --Report  exported!! ", "report_exported"),
        ("report\\export", "report_export"),
        ("Überweisung", "berweisung"),
        ("???", "other"),
        ("a" * 39 + " b", "a" * 39),  # cut at 40, then trimmed
        ("x" * 60, "x" * MAX_SLUG_CHARS),
    ],
)
def test_slugs_are_lowercase_ascii_words(value, expected):
    assert slug(value) == expected
    assert event_type_slug(value) == expected


def test_slugs_are_unique_whatever_the_order():
    types = ["api-call", "API call", "api_call_2", "view"]
    first = unique_slugs(types)
    assert unique_slugs(reversed(types)) == first
    # "API call" sorts first and keeps the plain slug; api_call_2 is another type's own slug
    assert first == {
        "API call": "api_call",
        "api-call": "api_call_3",
        "api_call_2": "api_call_2",
        "view": "view",
    }


def test_suffixed_slugs_stay_within_the_limit():
    slugs = unique_slugs(["y" * 50, "Y" * 50, "y" * 45])
    # "Y..." sorts first as text, then the shorter "y..."
    assert slugs == {"Y" * 50: "y" * 40, "y" * 45: "y" * 38 + "_2", "y" * 50: "y" * 38 + "_3"}
    assert all(len(s) <= MAX_SLUG_CHARS for s in slugs.values())


def test_feature_names_for_types_and_attributes():
    assert event_type_feature_names(["rule's run", "API call"], 30) == {
        "API call": "events_type_api_call_30d",
        "rule's run": "events_type_rule_s_run_30d",
    }
    assert attribute_feature_names(["Discount %", "discount"]) == {
        "Discount %": "attr_discount",
        "discount": "attr_discount_2",
    }


# --- settings and declarations -------------------------------------------------------------


def _registry(settings: DeclarationSettings) -> dict:
    return {f.name: f for f in build_registry(settings.windows, settings=settings)}


def test_default_settings_declare_no_vocabulary_features():
    names = list(_registry(DeclarationSettings(windows=(30, 90))))
    assert not [n for n in names if n.startswith(("events_type_", "usage_value", "attr_"))]
    assert {"active_days_30d", "events_90d", "events_trend_30d", "latest_csat"} <= set(names)


def test_vocabulary_features_follow_the_settings():
    declared = _registry(ALL_KINDS)
    view = declared["events_type_view_30d"]
    assert view.description == "'view' events in the last 30 days"
    assert (view.direction, view.dtype, view.window_days) == ("neither", "int", 30)
    assert declared["events_type_rule_s_run_90d"].description == (
        "'rule's_run' events in the last 90 days"
    )
    assert {"events_type_api_call_30d", "events_type_api_call_2_30d"} <= set(declared)
    for name in ("usage_value_30d", "usage_value_per_event_90d"):
        assert (declared[name].direction, declared[name].monotone) == ("neither", False)
    channel, employees = declared["attr_channel"], declared["attr_employees"]
    assert (channel.dtype, employees.dtype) == ("category", "float")
    assert channel.description == "Account attribute 'channel'"
    assert {channel.direction, employees.direction} == {"neither"}
    assert not channel.actionable and channel.tables == ("account_attributes",)
    attrs = [n for n in declared if n.startswith("attr_")]
    assert attrs == ["attr_channel", "attr_discount", "attr_employees", "attr_region_code"]
    without_attributes = {f.name for f in available(list(declared.values()), set())}
    assert not {n for n in without_attributes if n.startswith(("attr_", "csat", "ces"))}
    assert {"events_type_view_30d", "usage_value_30d"} <= without_attributes


@pytest.mark.parametrize(
    ("higher_is_easier", "direction"),
    [(True, "lower_is_riskier"), (False, "higher_is_riskier")],
)
def test_ces_direction_comes_from_the_settings(higher_is_easier, direction):
    declared = _registry(replace(SETTINGS, ces_higher_is_easier=higher_is_easier))
    assert {declared[n].direction for n in ("ces_mean_30d", "ces_mean_90d", "latest_ces")} == {
        direction
    }
    scale = "higher is easier" if higher_is_easier else "higher is more effort"
    assert scale in declared["latest_ces"].description
    assert declared["csat_mean_30d"].direction == "lower_is_riskier"


def test_bad_attribute_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"'size': 'text'.*number"):
        DeclarationSettings(windows=(30,), attributes=(("size", "text"),))
    with pytest.raises(ValueError, match="twice"):
        DeclarationSettings(windows=(30,), attributes=(("a", "number"), ("a", "category")))
    with pytest.raises(ValueError, match="twice"):
        DeclarationSettings(windows=(30,), event_types=("view", "view"))


def test_settings_from_config_fill_the_vocabulary_fields():
    params = default_params()
    params["features"].update(
        event_types=["view", "export"],
        attributes={"tier": "category", "employees": "number"},
        ces_higher_is_easier=False,
    )
    config = make_config(params)
    settings = settings_from_config(config, 20_000)
    assert settings.event_types == ("view", "export")
    assert settings.attributes == (("employees", "number"), ("tier", "category"))
    assert settings.usage_value is False  # a fact of the data, resolved where it is read
    assert settings.ces_higher_is_easier is False
    declared = {f.name: f for f in registry_for(config)}
    assert {"events_type_export_30d", "attr_employees", "attr_tier"} <= set(declared)
    assert declared["latest_ces"].direction == "higher_is_riskier"
    unset = default_params()
    unset["features"].update(event_types=None, attributes=None)
    plain = settings_from_config(make_config(unset), 20_000)
    assert (plain.event_types, plain.attributes, plain.ces_higher_is_easier) == ((), (), True)


# --- values on the fixture -----------------------------------------------------------------

NONE_OF_THEM = {
    f"{name}_{w}d": 0
    for w in ALL_KINDS.windows
    for name in (
        "events_type_view",
        "events_type_api_call",
        "events_type_api_call_2",
        "events_type_rule_s_run",
        "events_type_report_export",
    )
}
NO_ATTRIBUTES = {
    "attr_channel": None,
    "attr_discount": None,
    "attr_employees": None,
    "attr_region_code": None,  # never occurs
}

# Usage rows before t, by type (ingest spells "API call" api_call, "rule's run" rule's_run):
#   mature: api_call 05-01T23:59:59 x1 (value 100; one second before t - 30d: 90d only),
#     view 04-10 x2, 05-02T00:00 x4 (value 10.5; exactly t - 30d: in), 05-20 x3,
#     rule's_run 05-31T22:30 x2 (value 4). At or after t: api_call x7 (value 50) 06-01T01:30,
#     view x5 (value 1000) 06-01T00:00. Before t - 90d: view 02-15 (value 7), 02-20.
#   young: view 04-23 x2, 05-10 x3, 05-25 x1 and x4; one row without a type 05-26 x1.
#   support: report\export 03-10 x5, api_call 05-15 x10 (value 0).
EXPECTED: dict[str, dict[str, object]] = {
    MATURE: NONE_OF_THEM
    | {
        "events_type_view_30d": 7,  # 4 + 3
        "events_type_rule_s_run_30d": 2,
        "events_type_view_90d": 9,  # + 04-10 x2
        "events_type_api_call_90d": 1,
        "events_type_rule_s_run_90d": 2,
        "usage_value_30d": 14.5,  # 10.5 + 4
        "usage_value_per_event_30d": 14.5 / 6,  # over the 4 + 2 events with a value
        "usage_value_90d": 114.5,  # + 100
        "usage_value_per_event_90d": 114.5 / 7,
        # employees 120 from 2023-01-01; 150 only from 06-01T00:00 (at t: not seen yet)
        "attr_employees": 120.0,
        "attr_channel": "direct",  # partner from 2022-07-10, direct from 03-01
        "attr_discount": 12.5,
        "attr_region_code": None,
    },
    NO_USAGE: NONE_OF_THEM
    | NO_ATTRIBUTES
    | {
        "usage_value_30d": None,  # no event with a value
        "usage_value_per_event_30d": None,
        "usage_value_90d": None,
        "usage_value_per_event_90d": None,
    },
    YOUNG: NONE_OF_THEM
    | NO_ATTRIBUTES
    | {
        "events_type_view_30d": 8,  # 3 + 1 + 4; the 05-26 row has no type
        "events_type_view_90d": 10,  # + 04-23 x2
        "usage_value_30d": None,  # events, but none with a value
        "usage_value_per_event_30d": None,
        "usage_value_90d": None,
        "usage_value_per_event_90d": None,
        # employees "about 40" is no number; channel partner became unknown on 05-15
    },
    SUPPORT: NONE_OF_THEM
    | NO_ATTRIBUTES
    | {
        "events_type_api_call_30d": 10,
        "events_type_api_call_90d": 10,
        "events_type_report_export_90d": 5,
        "usage_value_30d": 0.0,  # a value of 0 is a value, not a missing one
        "usage_value_per_event_30d": 0.0,
        "usage_value_90d": 0.0,
        "usage_value_per_event_90d": 0.0,  # 0 over the 10 events with a value
        "attr_employees": 1000.0,  # "1e3"; 2000 holds only from 2024-10-01
    },
}

EXPECTED_LATER: dict[str, dict[str, object]] = {
    MATURE: {"attr_employees": 150.0, "attr_channel": "direct", "attr_discount": 12.5},
    YOUNG: {"attr_channel": None, "attr_employees": None},
    SUPPORT: {"attr_employees": 1000.0},  # 2000 from 2024-10-01, after this snapshot too
}


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> pd.DataFrame:
    table = compute_features(
        fixture_tables(), tmp_path_factory.mktemp("kinds"), DATES, settings=ALL_KINDS
    )
    return table.set_index(["account_id", "snapshot_date"])


def _mismatches(row: pd.Series, expected: dict[str, object]) -> list[str]:
    wrong = []
    for name, want in expected.items():
        got = row[name]
        if want is None:
            ok = pd.isna(got)
        elif isinstance(want, str):
            ok = got == want
        else:
            ok = not pd.isna(got) and got == pytest.approx(want, rel=1e-9, abs=1e-12)
        if not ok:
            wrong.append(f"{name}: expected {want!r}, got {got!r}")
    return wrong


def test_every_vocabulary_feature_has_a_hand_computed_value():
    new = set(_registry(ALL_KINDS)) - set(_registry(SETTINGS))
    for account in ACCOUNTS:
        assert set(EXPECTED[account]) == new, account


@pytest.mark.parametrize("account", ACCOUNTS)
def test_vocabulary_features_at_snapshot(features, account):
    wrong = _mismatches(features.loc[(account, SNAPSHOT)], EXPECTED[account])
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("account", list(EXPECTED_LATER))
def test_attributes_at_later_snapshot(features, account):
    wrong = _mismatches(features.loc[(account, LATER_SNAPSHOT)], EXPECTED_LATER[account])
    assert not wrong, "\n".join(wrong)


def test_attribute_dtypes(features):
    assert str(features["attr_channel"].dtype) == "string"
    assert str(features["attr_employees"].dtype) == "float64"


# --- usage without users -------------------------------------------------------------------

# What needs no user: the same with user ids or without.
WITHOUT_USERS = [
    f"{name}_{w}d"
    for w in ALL_KINDS.windows
    for name in (
        "active_days",
        "events",
        "events_trend",
        "usage_value",
        "usage_value_per_event",
        "events_type_view",
        "events_type_api_call",
        "events_type_rule_s_run",
        "events_type_report_export",
        "distinct_modules",
    )
] + ["days_since_last_activity"]


@pytest.fixture(scope="module")
def anonymous_features(tmp_path_factory) -> pd.DataFrame:
    """The fixture with every usage event's user id blanked (an account-level event log)."""
    tables = fixture_tables()
    tables["usage_events"] = tables["usage_events"].assign(user_id=None)
    table = compute_features(tables, tmp_path_factory.mktemp("anon"), DATES, settings=ALL_KINDS)
    return table.set_index(["account_id", "snapshot_date"])


def test_usage_without_user_ids_keeps_the_volume_features(features, anonymous_features):
    pd.testing.assert_frame_equal(anonymous_features[WITHOUT_USERS], features[WITHOUT_USERS])
    row = anonymous_features.loc[(MATURE, SNAPSHOT)]
    assert row["active_days_30d"] == 3  # 05-02, 05-20, 05-31, with no user on any of them
    assert row["events_90d"] == 12
    assert row["events_type_view_90d"] == 9
    # nobody to count as an active user
    assert (anonymous_features["active_users_90d"] == 0).all()
    assert anonymous_features["stickiness_30d"].isna().all()


# --- event types the SQL must quote --------------------------------------------------------


def test_event_types_with_spaces_and_quotes_are_counted(tmp_path):
    """Ingest makes categories lowercase with "_" for spaces; a type spelled with spaces and
    both quotes (as pinned params may spell it) must still be one SQL literal."""
    interim, present = ingest_tables(fixture_tables(), tmp_path)
    path = interim_path(interim, "usage_events")
    parts = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    odd = 'Say "hi", it\'s a Run'
    for part in parts:
        table = pq.read_table(part)
        types = table.column("event_type").to_pandas().replace({"rule's_run": odd})
        column = table.schema.get_field_index("event_type")
        field = table.schema.field(column)
        table = table.set_column(column, field, pa.array(types, type=field.type))
        pq.write_table(table, part)
    settings = replace(ALL_KINDS, event_types=(odd, "rule's_run"))
    engine = DuckDBEngine(threads=1)
    try:
        got = features_from_interim(interim, present, [SNAPSHOT], engine=engine, settings=settings)
    finally:
        engine.close()
    got = got.set_index("account_id")
    assert got.loc[MATURE, "events_type_say_hi_it_s_a_run_30d"] == 2  # 05-31T22:30 x2
    assert got.loc[MATURE, "events_type_rule_s_run_30d"] == 0  # the type is renamed
    assert (got.loc[[NO_USAGE, YOUNG, SUPPORT], "events_type_say_hi_it_s_a_run_90d"] == 0).all()
