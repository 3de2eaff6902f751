"""The saved usage grain of the weekly job (`pipeline.feature_engine.state`).

A week later, a run that folds the new days into the saved grain must give exactly the table
a full recomputation gives; anything that makes the saved grain wrong (a late or corrected
row for a saved day, other settings) must make the run rebuild it instead.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data.contract import TABLES, arrow_schema, interim_path
from pipeline.feature_engine.build import build_features, present_tables, snapshot_dates
from pipeline.feature_engine.engines import DuckDBEngine
from pipeline.feature_engine.state import META, PARTS, changed_days, part_paths
from tests.conftest import feature_settings

WEEK = timedelta(days=7)


def _usage(interim: Path) -> pd.DataFrame:
    return pq.read_table(interim_path(interim, "usage_events")).to_pandas()


def _with_usage(interim: Path, usage: pd.DataFrame, out: Path) -> Path:
    """A copy of the interim tables with other usage events (one part)."""
    shutil.copytree(interim, out)
    folder = interim_path(out, "usage_events")
    shutil.rmtree(folder)
    folder.mkdir()
    schema = arrow_schema(TABLES["usage_events"])
    table = pa.Table.from_pandas(usage, schema=schema, preserve_index=False)
    pq.write_table(table, folder / "part-0.parquet")
    return out


def _build(interim, tables, dates, settings, state=None):
    engine = DuckDBEngine(threads=1)
    try:
        return build_features(engine, interim, tables, dates, settings, state_dir=state).table
    finally:
        engine.close()


@pytest.fixture(scope="module")
def weeks(small_demo, tmp_path_factory):
    """Last week's export (usage events before as-of minus a week) and this week's."""
    interim, report, config = small_demo
    as_of = config.as_of_date
    usage = _usage(interim)
    cut = pd.Timestamp(as_of - WEEK, tz="UTC")
    root = tmp_path_factory.mktemp("weeks")
    last_week = _with_usage(interim, usage[usage["occurred_at"] < cut], root / "last")
    return {
        "last": last_week,
        "this": interim,
        "tables": present_tables(report),
        "as_of": as_of,
        "usage": usage,
        "root": root,
    }


def _scoring_weeks(as_of: date) -> list[date]:
    return [as_of - 2 * WEEK, as_of - WEEK, as_of]


def _saved_last_week(weeks, state: Path) -> None:
    last = weeks["as_of"] - WEEK
    _build(weeks["last"], weeks["tables"], _scoring_weeks(last), feature_settings(last), state)


@pytest.mark.parametrize("cadence", ["scoring weeks", "monthly"])
def test_a_week_folded_into_the_saved_grain_equals_a_full_recomputation(
    weeks, tmp_path, caplog, cadence
):
    as_of = weeks["as_of"]
    state = tmp_path / "state"
    _saved_last_week(weeks, state)
    assert (
        json.loads((state / META).read_text())["before_day"]
        == ((as_of - WEEK) - date(1970, 1, 1)).days
    )
    if cadence == "monthly":
        dates = snapshot_dates(as_of - timedelta(days=400), as_of, "monthly")
    else:
        dates = _scoring_weeks(as_of)
    settings = feature_settings(as_of)
    with caplog.at_level(logging.INFO, logger="pipeline.feature_engine.build"):
        incremental = _build(weeks["this"], weeks["tables"], dates, settings, state)
    assert any("reusing days before" in r.getMessage() for r in caplog.records)
    assert len(part_paths(state)) == 2  # last week's grain and this week's days
    full = _build(weeks["this"], weeks["tables"], dates, settings)
    assert incremental["active_users_30d"].sum() > 0  # the comparison has usage in it
    pd.testing.assert_frame_equal(incremental, full)


def test_the_saved_grain_after_a_fold_is_the_full_grain(weeks, tmp_path):
    """Next week reuses what this week saved: its parts must hold the full grain, no day
    twice (compared with a grain rebuilt from scratch)."""
    as_of = weeks["as_of"]
    folded, fresh = tmp_path / "folded", tmp_path / "fresh"
    _saved_last_week(weeks, folded)
    settings = feature_settings(as_of)
    _build(weeks["this"], weeks["tables"], _scoring_weeks(as_of), settings, folded)
    _build(weeks["this"], weeks["tables"], _scoring_weeks(as_of), settings, fresh)
    assert len(part_paths(folded)) == 2 and len(part_paths(fresh)) == 1

    def grain(state: Path) -> pd.DataFrame:
        parts = pd.concat([pd.read_parquet(p) for p in part_paths(state)], ignore_index=True)
        return parts.sort_values(["account_id", "user_id", "day"]).reset_index(drop=True)

    a, b = grain(folded), grain(fresh)
    assert len(a) > 0
    assert not a.duplicated(["account_id", "user_id", "day"]).any()
    # module bits may be numbered differently; every other column is the same
    pd.testing.assert_frame_equal(a.drop(columns="modules"), b.drop(columns="modules"))


def test_a_late_row_for_a_saved_day_forces_a_full_rebuild(weeks, tmp_path, caplog):
    as_of = weeks["as_of"]
    state = tmp_path / "state"
    _saved_last_week(weeks, state)
    usage = weeks["usage"]
    late = usage.iloc[[len(usage) // 2]].copy()  # a second row on a day the grain holds
    late["count"] = 40
    assert late["occurred_at"].iloc[0] < pd.Timestamp(as_of - WEEK, tz="UTC")
    changed = _with_usage(
        weeks["this"], pd.concat([usage, late], ignore_index=True), tmp_path / "late"
    )
    dates = _scoring_weeks(as_of)
    settings = feature_settings(as_of)
    with caplog.at_level(logging.INFO, logger="pipeline.feature_engine.build"):
        rebuilt = _build(changed, weeks["tables"], dates, settings, state)
    assert any("saved day(s) changed" in r.getMessage() for r in caplog.records)
    assert len(part_paths(state)) == 1  # rewritten whole
    pd.testing.assert_frame_equal(rebuilt, _build(changed, weeks["tables"], dates, settings))


def test_other_grain_settings_force_a_full_rebuild(weeks, tmp_path, caplog):
    as_of = weeks["as_of"]
    state = tmp_path / "state"
    _saved_last_week(weeks, state)
    modules = sorted(weeks["usage"]["module"].unique())[:2]
    settings = replace(feature_settings(as_of), advanced_modules=tuple(modules))
    dates = _scoring_weeks(as_of)
    with caplog.at_level(logging.INFO, logger="pipeline.feature_engine.build"):
        rebuilt = _build(weeks["this"], weeks["tables"], dates, settings, state)
    assert any("other settings: ['advanced_modules']" in r.getMessage() for r in caplog.records)
    pd.testing.assert_frame_equal(rebuilt, _build(weeks["this"], weeks["tables"], dates, settings))


def test_a_run_stopped_while_rebuilding_leaves_no_grain_to_reuse(weeks, tmp_path, caplog):
    """Without its metadata (removed first on a rebuild, written last) nothing is reused."""
    as_of = weeks["as_of"]
    state = tmp_path / "state"
    _saved_last_week(weeks, state)
    (state / META).unlink()
    with caplog.at_level(logging.INFO, logger="pipeline.feature_engine.build"):
        _build(
            weeks["this"], weeks["tables"], _scoring_weeks(as_of), feature_settings(as_of), state
        )
    assert any("no saved usage grain" in r.getMessage() for r in caplog.records)
    assert (state / PARTS).is_dir() and (state / META).is_file()


def test_changed_days_names_days_that_differ_or_exist_on_one_side_only():
    def fp(rows):
        return pd.DataFrame(
            rows, columns=["day", "row_count", "events", "hash_xor", "hash_high_sum"]
        )

    saved = fp([(10, 2, 5, 7, 1), (11, 1, 1, 3, 0), (12, 4, 4, 4, 4)])
    same = fp([(10, 2, 5, 7, 1), (11, 1, 1, 3, 0), (13, 9, 9, 9, 9)])
    assert changed_days(saved, same, before_day=12) == []  # days from 12 on are not saved
    assert changed_days(saved, fp([(10, 2, 5, 8, 1), (11, 1, 1, 3, 0)]), before_day=12) == [10]
    assert changed_days(saved, fp([(10, 2, 5, 7, 1)]), before_day=12) == [11]
    assert changed_days(saved, fp([(9, 1, 1, 1, 1), *same.values.tolist()]), before_day=12) == [9]
