"""Point-in-time correctness of the features, and the label, on a small simulated company.

Leakage test: for random snapshot dates t, deleting every input row stamped at or after t (and
blanking later timestamps inside earlier rows, such as a resolution after t) must leave every
feature at t unchanged. The label must depend only on what happens after t.

The leakage test runs with every kind of feature declared (event types, event values, account
attributes); tables and values the simulated company lacks are made up here, many of them
stamped at midnight UTC, exactly where a snapshot falls.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.definitions import FeatureSettings
from pipeline.core.labels import LABEL
from pipeline.data.contract import ROW_STAMPS, TABLES, arrow_schema, interim_path
from pipeline.feature_engine.build import build_features, present_tables
from pipeline.feature_engine.engines import DuckDBEngine
from tests.conftest import feature_settings

# Timestamps a row may carry that happen after the row itself (blanked when later than t).
LATER_STAMPS = {
    "users": ["deactivated_at"],
    "trainings": ["completed_at"],
    "support_tickets": ["first_response_at", "resolved_at"],
}


def _settings(as_of: date) -> FeatureSettings:
    return feature_settings(as_of)


def _read(interim: Path, name: str) -> pd.DataFrame:
    return pq.read_table(interim_path(interim, name)).to_pandas()


def _cut_at(interim: Path, tables: set[str], t: date, out: Path) -> None:
    """Write the interim tables as they were known at t: nothing stamped at or after t."""
    t_ts = pd.Timestamp(t, tz="UTC")
    out.mkdir(parents=True)
    for name in tables:
        frame = _read(interim, name)
        if name in ROW_STAMPS:  # csms carry no time: nothing to cut
            stamp = frame[ROW_STAMPS[name]]
            keep = stamp < (t if name == "contracts" else t_ts)
            frame = frame.loc[keep.to_numpy()].copy()
        for col in LATER_STAMPS.get(name, []):
            later = (frame[col] >= t_ts).fillna(False).to_numpy()
            frame.loc[later, col] = pd.NaT
            if name == "trainings":
                frame.loc[later, "score"] = None
        if name == "usage_events":
            target = out / "usage_events" / "part-0.parquet"
        else:
            target = out / f"{name}.parquet"
        _write(frame, name, target)


def _features(
    interim: Path,
    tables: set[str],
    t: date,
    as_of: date,
    settings: FeatureSettings | None = None,
) -> pd.DataFrame:
    engine = DuckDBEngine(threads=1)
    try:
        return build_features(engine, interim, tables, [t], settings or _settings(as_of)).table
    finally:
        engine.close()


def _write(frame: pd.DataFrame, name: str, target: Path) -> None:
    table = pa.Table.from_pandas(frame, schema=arrow_schema(TABLES[name]), preserve_index=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target)


def _stamps(rng: np.random.Generator, lo: pd.Series, hi: pd.Timestamp, n: int) -> pd.Series:
    """n timestamps per row of `lo` in [lo, hi): half at midnight UTC, half at any second."""
    lo = lo.repeat(n)
    span = (hi - lo).dt.total_seconds().to_numpy()
    stamps = lo + pd.to_timedelta(rng.uniform(0, 1, len(lo)) * span, unit="s")
    stamps = stamps.dt.floor("s")
    midnight = rng.uniform(0, 1, len(lo)) < 0.5
    return stamps.where(~midnight, stamps.dt.ceil("D")).reset_index(drop=True)


# Dense enough that most snapshot dates the test draws have answers and values stamped on them.
ANSWERS_PER_ACCOUNT = 30
VALUES_PER_ATTRIBUTE = 8


def _made_up_satisfaction(accounts: pd.DataFrame, as_of: pd.Timestamp, rng) -> pd.DataFrame:
    n = ANSWERS_PER_ACCOUNT
    stamps = _stamps(rng, accounts["created_at"], as_of, n)
    ids = accounts["account_id"].repeat(n).reset_index(drop=True)
    survey = rng.choice(["csat", "ces"], len(ids))
    return pd.DataFrame(
        {
            "account_id": ids,
            "user_id": None,
            "responded_at": stamps,
            "survey": survey,
            "score": rng.integers(1, 8, len(ids)).astype(float),
        }
    )


def _made_up_attributes(accounts: pd.DataFrame, as_of: pd.Timestamp, rng) -> pd.DataFrame:
    frames = []
    for attribute, values in (
        ("employees", ["12", "40", "250", "1e3", "n/a", None]),
        ("channel", ["direct", "partner", "marketplace", None]),
    ):
        n = VALUES_PER_ATTRIBUTE
        stamps = _stamps(rng, accounts["created_at"], as_of, n)
        frames.append(
            pd.DataFrame(
                {
                    "account_id": accounts["account_id"].repeat(n).reset_index(drop=True),
                    "attribute": attribute,
                    "value": rng.choice(np.array(values, dtype=object), len(stamps)),
                    "valid_from": stamps,
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out.drop_duplicates(["account_id", "attribute", "valid_from"], ignore_index=True)


@pytest.fixture(scope="module")
def every_kind(small_demo, tmp_path_factory):
    """The small demo with satisfaction answers, account attributes and event values (made up
    where the demo has none), and settings that declare every feature kind."""
    interim, report, config = small_demo
    tables = present_tables(report)
    out = tmp_path_factory.mktemp("every_kind") / "interim"
    shutil.copytree(interim, out)
    rng = np.random.default_rng(5)
    as_of = pd.Timestamp(config.as_of_date, tz="UTC")
    accounts = _read(interim, "accounts").dropna(subset=["created_at"])
    for name, make in (
        ("satisfaction_responses", _made_up_satisfaction),
        ("account_attributes", _made_up_attributes),
    ):
        if name not in tables:
            _write(make(accounts, as_of, rng), name, interim_path(out, name))
            tables.add(name)
    events = _read(interim, "usage_events")
    if "value" not in events or events["value"].isna().all():
        valued = rng.uniform(0, 1, len(events)) < 0.4
        value = (events["count"].astype(float) * rng.uniform(0, 5, len(events))).round(2)
        events = events.assign(value=value.where(valued))
        shutil.rmtree(interim_path(out, "usage_events"))
        _write(events, "usage_events", interim_path(out, "usage_events") / "part-0.parquet")
    types = events["event_type"].dropna().astype(str).value_counts()
    attributes = _read(out, "account_attributes")
    kinds = []
    for name, values in attributes.groupby("attribute")["value"]:
        numbers = pd.to_numeric(values.dropna(), errors="coerce")
        kinds.append((str(name), "number" if numbers.notna().mean() > 0.5 else "category"))
    declared = replace(
        _settings(config.as_of_date),
        event_types=tuple(sorted(types.index[:4])),
        usage_value=True,
        attributes=tuple(sorted(kinds)),
    )
    # the test must cover every kind, not pass because a kind is missing
    assert declared.event_types and events["value"].notna().any()
    assert {kind for _, kind in declared.attributes} == {"number", "category"}
    return out, tables, config, declared


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(offset=st.integers(min_value=120, max_value=1050))
def test_no_feature_at_t_reads_data_from_t_or_later(every_kind, tmp_path_factory, offset):
    interim, tables, config, declared = every_kind
    t = config.start_date + timedelta(days=offset)
    full = _features(interim, tables, t, config.as_of_date, declared)
    assert len(full) > 0
    cut_dir = tmp_path_factory.mktemp("cut")
    _cut_at(interim, tables, t, cut_dir / "interim")
    known = _features(cut_dir / "interim", tables, t, config.as_of_date, declared)
    shutil.rmtree(cut_dir)
    feature_columns = [c for c in full.columns if c != LABEL]
    pd.testing.assert_frame_equal(full[feature_columns], known[feature_columns])


def test_label_depends_only_on_contracts_after_t(small_demo, tmp_path):
    """Blanking every behaviour table before t changes features, never the label."""
    interim, report, config = small_demo
    tables = present_tables(report)
    t = config.start_date + timedelta(days=500)
    full = _features(interim, tables, t, config.as_of_date)
    assert full[LABEL].notna().sum() > 0
    quiet = tmp_path / "interim"
    shutil.copytree(interim, quiet)
    events = _read(interim, "usage_events").iloc[:1]  # keep the table, drop its history
    shutil.rmtree(quiet / "usage_events")
    (quiet / "usage_events").mkdir()
    events.to_parquet(quiet / "usage_events" / "part-0.parquet", index=False)
    changed = _features(quiet, tables, t, config.as_of_date)
    assert not full["active_users_90d"].equals(changed["active_users_90d"])
    pd.testing.assert_series_equal(full[LABEL], changed[LABEL])


def test_labels_are_censored_not_retained(small_demo):
    interim, report, config = small_demo
    tables = present_tables(report)
    late = config.as_of_date - timedelta(days=20)
    table = _features(interim, tables, late, config.as_of_date)
    # 20 days before the data ends no renewal decision with 30 days' grace can be confirmed as
    # churn, and renewals more than a year out are outside the horizon
    assert (table[LABEL] == 1).sum() == 0
    beyond = table["days_to_renewal"] > 365
    assert table.loc[beyond, LABEL].isna().all()
    assert table[LABEL].isna().sum() > 0
