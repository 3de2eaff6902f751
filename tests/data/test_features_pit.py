"""Point-in-time correctness of the features, and the label, on a small simulated company.

Leakage test: for random snapshot dates t, deleting every input row stamped at or after t (and
blanking later timestamps inside earlier rows, such as a resolution after t) must leave every
feature at t unchanged. The label must depend only on what happens after t.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
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
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(frame, schema=arrow_schema(TABLES[name]), preserve_index=False),
            target,
        )


def _features(interim: Path, tables: set[str], t: date, as_of: date) -> pd.DataFrame:
    engine = DuckDBEngine(threads=1)
    try:
        return build_features(engine, interim, tables, [t], _settings(as_of)).table
    finally:
        engine.close()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(offset=st.integers(min_value=120, max_value=1050))
def test_no_feature_at_t_reads_data_from_t_or_later(small_demo, tmp_path_factory, offset):
    interim, report, config = small_demo
    tables = present_tables(report)
    t = config.start_date + timedelta(days=offset)
    full = _features(interim, tables, t, config.as_of_date)
    assert len(full) > 0
    cut_dir = tmp_path_factory.mktemp("cut")
    _cut_at(interim, tables, t, cut_dir / "interim")
    known = _features(cut_dir / "interim", tables, t, config.as_of_date)
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
