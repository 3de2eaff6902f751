"""Ingest stage tests: whole-input errors, quarantine bookkeeping, report, atomic output."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import DataContractError
from pipeline.core.layout import VALIDATION_REPORT as REPORT_NAME
from pipeline.data.contract import TABLE_ORDER
from pipeline.data.sources import DirectorySource, NameMapping
from pipeline.stages.ingest import ingest_source
from tests.conftest import AS_OF, write_dir


def _ingest(tmp_path, tables, fmt="csv", **kwargs):
    src = DirectorySource(write_dir(tables, tmp_path / "raw", fmt), kwargs.pop("mapping", None))
    return ingest_source(src, tmp_path / "interim", as_of=AS_OF, **kwargs)


def _assert_books_balance(report):
    for name, table in report["tables"].items():
        assert table["rows_read"] == table["rows_accepted"] + table["rows_quarantined"], name
    assert report["rows_read"] == report["rows_accepted"] + report["rows_quarantined"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_clean_data_is_accepted_whole(tmp_path, raw_tables, fmt):
    report = _ingest(tmp_path, raw_tables, fmt)
    assert report["rows_quarantined"] == 0
    assert report["rows_read"] == sum(len(t) for t in raw_tables.values())
    assert report["tables_unavailable"] == []
    interim = tmp_path / "interim"
    contracts = pd.read_parquet(interim / "contracts.parquet")
    assert len(contracts) == 4
    schema = pq.read_schema(interim / "contracts.parquet")
    assert str(schema.field("start_date").type) == "date32[day]"
    assert str(schema.field("arr").type) == "double"
    events = pd.read_parquet(interim / "usage_events")
    assert events["count"].sum() == 17
    assert json.loads((interim / REPORT_NAME).read_text()) == report
    assert not (interim / "quarantine").exists()


def test_missing_required_table_stops_with_its_name(tmp_path, raw_tables):
    del raw_tables["usage_events"]
    with pytest.raises(DataContractError) as err:
        _ingest(tmp_path, raw_tables)
    assert "table 'usage_events'" in str(err.value) and "table_map" in str(err.value)
    assert not (tmp_path / "interim").exists()


def test_only_required_tables_is_a_working_run(tmp_path, raw_tables):
    required = {k: raw_tables[k] for k in ("accounts", "contracts", "usage_events")}
    # without users, events still must name real accounts but user ids are not checked
    report = _ingest(tmp_path, required)
    assert report["rows_quarantined"] == 0
    assert set(report["tables_unavailable"]) == set(TABLE_ORDER) - set(required)
    for name in report["tables_unavailable"]:
        assert report["tables"][name]["status"] == "absent"


def test_empty_required_table_stops(tmp_path, raw_tables):
    raw_tables["contracts"] = raw_tables["contracts"].iloc[0:0]
    with pytest.raises(DataContractError, match="table 'contracts': the table is empty"):
        _ingest(tmp_path, raw_tables)


def test_empty_optional_table_is_reported_and_skipped(tmp_path, raw_tables):
    raw_tables["trainings"] = raw_tables["trainings"].iloc[0:0]
    report = _ingest(tmp_path, raw_tables)
    assert report["tables"]["trainings"]["status"] == "empty"
    assert "trainings" in report["tables_unavailable"]
    assert not (tmp_path / "interim" / "trainings.parquet").exists()


def test_empty_usage_events_stops(tmp_path, raw_tables):
    raw_tables["usage_events"] = raw_tables["usage_events"].iloc[0:0]
    with pytest.raises(DataContractError, match="table 'usage_events': the table is empty"):
        _ingest(tmp_path, raw_tables)


def test_wrong_type_stops_the_run_and_keeps_previous_output(tmp_path, raw_tables):
    _ingest(tmp_path, raw_tables)
    before = (tmp_path / "interim" / "contracts.parquet").read_bytes()
    bad = dict(raw_tables, contracts=raw_tables["contracts"].assign(arr=["x", "y", "z", "w"]))
    raw_dir = tmp_path / "raw2"
    with pytest.raises(DataContractError, match="column 'arr'"):
        ingest_source(DirectorySource(write_dir(bad, raw_dir)), tmp_path / "interim", as_of=AS_OF)
    assert (tmp_path / "interim" / "contracts.parquet").read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".interim")]
    assert leftovers == []


def test_quarantine_cascades_and_books_balance(tmp_path, raw_tables):
    # A2 breaks a rule, so its contracts, users, events, tickets... become orphans.
    raw_tables["accounts"] = raw_tables["accounts"].assign(segment=["smb", "other", "enterprise"])
    report = _ingest(tmp_path, raw_tables)
    _assert_books_balance(report)
    tables = report["tables"]
    assert tables["accounts"]["quarantined_by_reason"] == {"allowed_values:segment": 1}
    assert tables["contracts"]["quarantined_by_reason"] == {"orphan:account_id->accounts": 1}
    assert tables["users"]["rows_quarantined"] == 2
    # events of U2/U3 are orphans twice over: by account and by user
    assert tables["usage_events"]["quarantined_by_reason"] == {
        "orphan:account_id->accounts": 2,
        "orphan:user_id+account_id->users": 2,
    }
    assert tables["usage_events"]["rows_quarantined"] == 2
    quarantine = pd.read_parquet(tmp_path / "interim" / "quarantine" / "usage_events")
    assert set(quarantine["account_id"]) == {"A2"}
    assert set(quarantine["_source_row"]) == {1, 2}
    assert all("orphan:account_id->accounts" in r for r in quarantine["_reason"])


def test_streamed_chunks_number_rows_across_the_table(tmp_path, raw_tables):
    raw_tables["usage_events"] = raw_tables["usage_events"].assign(
        occurred_at=[
            "2024-01-11T10:00:00Z",
            "2024-02-05T10:00:00Z",
            "2024-02-06T10:00:00Z",
            "2024-04-01T10:00:00Z",
            "2031-04-02T10:00:00Z",
        ]
    )
    report = _ingest(tmp_path, raw_tables, batch_rows=2)
    assert report["tables"]["usage_events"]["rows_accepted"] == 4
    quarantine = pd.read_parquet(tmp_path / "interim" / "quarantine" / "usage_events")
    assert quarantine["_source_row"].tolist() == [4]
    parts = sorted(p.name for p in (tmp_path / "interim" / "usage_events").iterdir())
    # the third chunk had no accepted row, so it adds no empty part
    assert parts == ["part-00000.parquet", "part-00001.parquet"]


def test_user_names_are_mapped_from_params(tmp_path, raw_tables):
    raw_tables["crm_accounts"] = raw_tables.pop("accounts").rename(
        columns={"account_name": "Company", "segment": "Tier"}
    )
    mapping = NameMapping(
        tables={"accounts": "crm_accounts"},
        columns={"accounts": {"Company": "account_name", "Tier": "segment"}},
    )
    report = _ingest(tmp_path, raw_tables, mapping=mapping)
    assert report["tables"]["accounts"]["rows_accepted"] == 3
    accounts = pd.read_parquet(tmp_path / "interim" / "accounts.parquet")
    assert accounts["account_name"].tolist() == ["Acme", "Globex", "Initech"]


def test_events_after_as_of_are_counted_in_the_report(tmp_path, raw_tables):
    raw_tables["nps_responses"] = raw_tables["nps_responses"].assign(
        responded_at=["2024-04-01T00:00:00Z", "2025-03-01T00:00:00Z"]
    )
    report = _ingest(tmp_path, raw_tables)
    assert report["tables"]["nps_responses"]["quarantined_by_reason"] == {
        "after_as_of:responded_at": 1
    }
    _assert_books_balance(report)


def test_report_says_what_was_kept_but_changed_for_every_table(tmp_path, raw_tables):
    report = _ingest(tmp_path, raw_tables)
    for name, table in report["tables"].items():
        for key in (
            "unknown_values",
            "blanked_after_as_of",
            "blanked_by_reason",
            "unknown_references",
        ):
            assert table[key] == {}, (name, key)
