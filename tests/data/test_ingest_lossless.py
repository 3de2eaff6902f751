"""Ingest loses nothing silently: real exports' quirks are mapped, blanked or quarantined and
counted; a run that would drop too much stops; a killed or disk-full run leaves the previous
output whole and no customer data lying around."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.core.atomic import StorageError, atomic_path, clean_stale_siblings
from pipeline.core.errors import ConfigError, DataContractError
from pipeline.core.layout import VALIDATION_REPORT
from pipeline.data.sources import DirectorySource
from pipeline.data.validate import NumericBounds
from pipeline.stages import ingest as ingest_module
from pipeline.stages.ingest import ingest_source, run_ingest
from tests.conftest import AS_OF, default_params, make_config, write_dir

ROOT = Path(__file__).resolve().parents[2]
DEAD_PID = 999_999_999  # above any kernel's pid_max: never a running process


def _ingest(tmp_path, tables, **kwargs):
    src = DirectorySource(write_dir(tables, tmp_path / "raw"))
    return ingest_source(src, tmp_path / "interim", as_of=AS_OF, **kwargs)


def _assert_books_balance(report):
    for name, table in report["tables"].items():
        assert table["rows_read"] == table["rows_accepted"] + table["rows_quarantined"], name
    assert report["rows_read"] == report["rows_accepted"] + report["rows_quarantined"]


def _params_file(tmp_path, raw_dir, **ingest) -> Path:
    params = default_params()
    params["base"]["as_of_date"] = str(AS_OF.date())
    params["ingest"].update(source=str(raw_dir), **ingest)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _with_unknown_segments(raw_tables):
    return dict(
        raw_tables, accounts=raw_tables["accounts"].assign(segment=["SMB", "Startup", "Startup"])
    )


# --- 1. value mapping, unknown values and the quarantine share ---------------------------------


def test_too_much_quarantined_stops_naming_table_share_reasons_and_values(tmp_path, raw_tables):
    _ingest(tmp_path, raw_tables)  # a previous good run
    before = (tmp_path / "interim" / "accounts.parquet").read_bytes()
    src = DirectorySource(write_dir(_with_unknown_segments(raw_tables), tmp_path / "raw2"))
    with pytest.raises(DataContractError) as err:
        ingest_source(src, tmp_path / "interim", as_of=AS_OF, max_quarantine_share=0.01)
    text = str(err.value)
    assert "table 'accounts', column 'segment'" in text
    assert "66.7% of its 3 rows were quarantined (2)" in text
    assert "allowed_values:segment (2)" in text and "segment='Startup' (2)" in text
    assert "ingest.value_map" in text and "ingest.max_quarantine_share" in text
    assert "example rows" in text and "A2" in text  # the rows to find in the export
    assert (tmp_path / "interim" / "accounts.parquet").read_bytes() == before


def test_value_map_from_params_rescues_the_run(tmp_path, raw_tables):
    raw_dir = write_dir(_with_unknown_segments(raw_tables), tmp_path / "raw")
    params = default_params()
    params["base"]["as_of_date"] = str(AS_OF.date())
    params["ingest"]["value_map"] = {"accounts": {"segment": {"Startup": "smb"}}}
    report = run_ingest(make_config(params), tmp_path / "interim", source=str(raw_dir))
    assert report["rows_quarantined"] == 0
    accounts = pd.read_parquet(tmp_path / "interim" / "accounts.parquet")
    assert accounts["segment"].tolist() == ["smb", "smb", "smb"]
    _assert_books_balance(report)


def test_unknown_values_are_reported_and_logged_when_within_the_share(tmp_path, raw_tables, caplog):
    tables = dict(raw_tables, accounts=raw_tables["accounts"].assign(segment=["smb", "x", "x"]))
    with caplog.at_level(logging.WARNING, logger="pipeline.stages.ingest"):
        report = _ingest(tmp_path, tables, max_quarantine_share=1.0)
    accounts = report["tables"]["accounts"]
    assert accounts["unknown_values"] == {"segment": {"x": 2}}
    assert accounts["quarantined_by_reason"] == {"allowed_values:segment": 2}
    assert "accounts.segment: 2 rows quarantined" in caplog.text and "'x' (2)" in caplog.text
    on_disk = json.loads((tmp_path / "interim" / VALIDATION_REPORT).read_text())
    assert on_disk["tables"]["accounts"]["unknown_values"] == {"segment": {"x": 2}}
    _assert_books_balance(report)


def test_cli_exits_2_with_one_line_when_the_share_is_exceeded(tmp_path, raw_tables):
    from typer.testing import CliRunner

    from pipeline.cli import app

    raw_dir = write_dir(_with_unknown_segments(raw_tables), tmp_path / "raw")
    params = _params_file(tmp_path, raw_dir)
    out = tmp_path / "interim"
    result = CliRunner().invoke(app, ["ingest", "--params", str(params), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "table 'accounts'" in result.output and "max_quarantine_share" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"value_map": {"accounts": {"segmnt": {"SMB": "smb"}}}}, "value_map.accounts.segmnt"),
        ({"bounds": {"contracts": {"plan": NumericBounds(max=1)}}}, "numeric columns"),
    ],
)
def test_settings_naming_a_column_the_contract_lacks_are_config_errors(
    tmp_path, raw_tables, setting, expected
):
    with pytest.raises(ConfigError, match=expected):
        _ingest(tmp_path, raw_tables, **setting)


# --- 2. lifecycle fields after as-of -----------------------------------------------------------


def test_a_user_deactivated_after_as_of_keeps_usage_and_trainings(tmp_path, raw_tables):
    # What the weekly cron sees: U2 was deactivated two days after the as-of instant.
    users = raw_tables["users"].assign(
        deactivated_at=[None, "2025-01-03T08:00:00Z", "2024-06-01T00:00:00Z", None]
    )
    tickets = raw_tables["support_tickets"].assign(resolved_at=["2025-01-04T00:00:00Z", None])
    report = _ingest(
        tmp_path, dict(raw_tables, users=users, support_tickets=tickets), max_quarantine_share=0.0
    )
    assert report["rows_quarantined"] == 0
    assert report["tables"]["users"]["blanked_after_as_of"] == {"deactivated_at": 1}
    assert report["tables"]["support_tickets"]["blanked_after_as_of"] == {"resolved_at": 1}
    interim = tmp_path / "interim"
    events = pd.read_parquet(interim / "usage_events")
    assert "U2" in set(events["user_id"])
    assert "U2" in set(pd.read_parquet(interim / "trainings.parquet")["user_id"])
    stored = pd.read_parquet(interim / "users.parquet").set_index("user_id")["deactivated_at"]
    assert pd.isna(stored["U2"]) and stored["U3"] == pd.Timestamp("2024-06-01", tz="UTC")
    _assert_books_balance(report)


# --- 3. infinite and absurd numbers ------------------------------------------------------------


def test_infinite_arr_never_reaches_interim_or_the_json(tmp_path, raw_tables):
    contracts = raw_tables["contracts"].assign(
        arr=["1200", "Infinity", "1e15", "1200"],
        end_date=["2024-02-10", "2025-02-01", "2026-03-15", "9999-12-31"],
    )
    report = _ingest(tmp_path, dict(raw_tables, contracts=contracts))
    assert report["tables"]["contracts"]["quarantined_by_reason"] == {
        "not_finite:arr": 1,
        "out_of_bounds:arr": 1,
        "out_of_bounds:end_date": 1,
    }
    accepted = pd.read_parquet(tmp_path / "interim" / "contracts.parquet")
    assert accepted["contract_id"].tolist() == ["K1"]
    text = (tmp_path / "interim" / VALIDATION_REPORT).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    _assert_books_balance(report)


# --- 6. CSM contacts ---------------------------------------------------------------------------


def test_a_bad_csm_email_costs_the_address_not_the_book_of_accounts(tmp_path, raw_tables):
    csms = raw_tables["csms"].assign(email=["ada at example dot com", "grace@example.com"])
    report = _ingest(tmp_path, dict(raw_tables, csms=csms), max_quarantine_share=0.0)
    assert report["rows_quarantined"] == 0
    assert report["tables"]["csms"]["blanked_by_reason"] == {"bad_email_blanked": 1}
    stored = pd.read_parquet(tmp_path / "interim" / "csms.parquet").set_index("csm_id")
    assert pd.isna(stored.loc["CSM1", "email"])
    accounts = pd.read_parquet(tmp_path / "interim" / "accounts.parquet")
    assert accounts["csm_id"].tolist() == ["CSM1", "CSM1", "CSM2"]


def test_accounts_of_an_unknown_csm_are_kept_and_counted(tmp_path, raw_tables):
    # CSM2's row fails (no name), so A3 points at a CSM the data does not have
    csms = raw_tables["csms"].assign(name=["Ada Lovelace", ""])
    report = _ingest(tmp_path, dict(raw_tables, csms=csms))
    assert report["tables"]["csms"]["quarantined_by_reason"] == {"missing_value:name": 1}
    accounts = report["tables"]["accounts"]
    assert accounts["rows_quarantined"] == 0
    assert accounts["unknown_references"] == {"unknown_csm": 1}
    stored = pd.read_parquet(tmp_path / "interim" / "accounts.parquet")
    assert stored.set_index("account_id").loc["A3", "csm_id"] == "CSM2"
    # and nothing of A3 cascades into quarantine
    assert report["tables"]["contracts"]["rows_quarantined"] == 0
    _assert_books_balance(report)


# --- 7. a killed run ---------------------------------------------------------------------------


def test_stale_temporary_copies_of_a_killed_run_are_removed(tmp_path, raw_tables):
    stale = tmp_path / f".interim.tmp-{DEAD_PID}-0badc0de"
    (stale / "quarantine").mkdir(parents=True)
    (stale / "accounts.parquet").write_text("customer data of a killed run")
    unrelated = tmp_path / ".interim-notes.tmp-1-0badc0de"  # another target's name
    unrelated.write_text("keep")
    _ingest(tmp_path, raw_tables)
    assert not stale.exists()
    assert unrelated.exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == [unrelated.name]


def test_a_running_processes_temporary_copy_is_left_alone(tmp_path):
    target = tmp_path / "out"
    live = tmp_path / f".out.tmp-{os.getppid()}-0badc0de"  # our parent: surely running
    live.mkdir()
    assert clean_stale_siblings(target) == []
    assert live.exists()


def test_a_crash_between_the_two_renames_restores_the_previous_output(tmp_path):
    target = tmp_path / "interim"
    aside = tmp_path / f".interim.tmp-{DEAD_PID}-0badc0de.old"
    aside.mkdir()
    (aside / "accounts.parquet").write_text("previous")
    assert clean_stale_siblings(target) == []
    assert (target / "accounts.parquet").read_text() == "previous"
    assert not aside.exists()


def test_a_failed_swap_puts_the_previous_output_back(tmp_path, monkeypatch):
    target = tmp_path / "interim"
    target.mkdir()
    (target / "a.txt").write_text("old")
    real_rename = Path.rename

    def failing_rename(self, other):
        if Path(other) == target and ".tmp-" in self.name and not self.name.endswith(".old"):
            raise OSError(errno.EXDEV, "simulated failure while renaming the new output in")
        return real_rename(self, other)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="simulated failure"), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["interim"]  # no temp, nothing aside


def test_a_successful_swap_replaces_the_directory_and_leaves_nothing_aside(tmp_path):
    target = tmp_path / "interim"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["interim"]


def test_gitignore_covers_the_temporary_pattern():
    patterns = (ROOT / ".gitignore").read_text().splitlines()
    assert ".*.tmp-*" in patterns


# --- 8. a full disk ----------------------------------------------------------------------------


def test_a_full_disk_is_a_clear_error_and_keeps_the_previous_output(
    tmp_path, raw_tables, monkeypatch
):
    _ingest(tmp_path, raw_tables)
    interim = tmp_path / "interim"
    before = {p: p.read_bytes() for p in interim.rglob("*") if p.is_file()}
    real_write = ingest_module.pq.write_table

    def full_disk(table, where, *args, **kwargs):
        if Path(where).name == "contracts.parquet":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(table, where, *args, **kwargs)

    monkeypatch.setattr(ingest_module.pq, "write_table", full_disk)
    with pytest.raises(StorageError) as err:
        ingest_source(DirectorySource(tmp_path / "raw"), interim, as_of=AS_OF)
    text = str(err.value)
    assert str(interim / "contracts.parquet") in text and "4 rows" in text
    assert "no space left on device" in text and "previous output is unchanged" in text
    assert {p: p.read_bytes() for p in interim.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_pyarrows_full_disk_message_is_recognised_too(tmp_path):
    """pyarrow raises a plain OSError without errno, saying so only in its message."""
    target = tmp_path / "out.json"
    with pytest.raises(StorageError, match=re.escape(str(target))), atomic_path(target):
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert not target.exists()


def test_the_share_of_a_streamed_table_is_checked_over_all_its_chunks(tmp_path, raw_tables):
    events = raw_tables["usage_events"].assign(
        occurred_at=[
            "2024-01-11T10:00:00Z",
            "2025-02-05T10:00:00Z",
            "2024-02-06T10:00:00Z",
            "2025-04-01T10:00:00Z",
            "2025-04-02T10:00:00Z",
        ]
    )
    with pytest.raises(DataContractError) as err:
        _ingest(
            tmp_path,
            dict(raw_tables, usage_events=events),
            batch_rows=2,
            max_quarantine_share=0.5,
        )
    text = str(err.value)
    assert "table 'usage_events', column 'occurred_at'" in text
    assert "60.0% of its 5 rows were quarantined (3)" in text
    assert "after_as_of:occurred_at (3)" in text
    assert "2025-02-05T10:00:00Z" in text and "2025-04-02T10:00:00Z" in text  # both chunks
    assert not (tmp_path / "interim").exists()


def test_an_export_without_account_names_ingests_and_lists_show_the_id(tmp_path, raw_tables):
    """account_name is optional: the column may be missing or empty, and nothing is dropped."""
    from pipeline.stages.score import _owners

    raw_tables["accounts"] = raw_tables["accounts"].drop(columns="account_name")
    report = ingest_source(
        DirectorySource(write_dir(raw_tables, tmp_path / "raw")), tmp_path / "interim", as_of=AS_OF
    )
    accounts = report["tables"]["accounts"]
    assert accounts["rows_read"] == accounts["rows_accepted"] == len(raw_tables["accounts"])
    assert "account_name" in accounts["defaulted_columns"]
    owners = _owners(pd.read_parquet(tmp_path / "interim" / "accounts.parquet"), None)
    assert owners["account_name"].tolist() == owners["account_id"].tolist()


def test_accounts_without_created_at_take_their_first_contract_start(tmp_path, raw_tables):
    """created_at is optional: missing values are derived from the first contract's start, the
    report counts them, and no row of a later table is quarantined against a derived date."""
    raw_tables["accounts"] = raw_tables["accounts"].drop(columns="created_at")
    report = ingest_source(
        DirectorySource(write_dir(raw_tables, tmp_path / "raw")), tmp_path / "interim", as_of=AS_OF
    )
    accounts_report = report["tables"]["accounts"]
    assert accounts_report["derived_values"] == {"created_at": 3}
    assert report["rows_quarantined"] == 0
    assert report["rows_read"] == report["rows_accepted"]
    accounts = pd.read_parquet(tmp_path / "interim" / "accounts.parquet").set_index("account_id")
    contracts = pd.read_parquet(tmp_path / "interim" / "contracts.parquet")
    first = contracts.groupby("account_id")["start_date"].min()
    assert accounts["created_at"].dt.tz is not None
    for account_id, start in first.items():
        assert accounts.loc[account_id, "created_at"] == pd.Timestamp(start, tz="UTC")


def test_segment_is_derived_from_the_first_contract_when_the_export_has_none(tmp_path, raw_tables):
    """No segment column: with ingest.segment_tiers the first contract's ARR decides, counted
    as derived; without the setting, the error names it."""
    from pipeline.core.config import SegmentTiers

    raw_tables["accounts"] = raw_tables["accounts"].drop(columns="segment")
    raw = write_dir(raw_tables, tmp_path / "raw")
    tiers = SegmentTiers(by="arr", mid_market=10_000, enterprise=100_000)
    report = ingest_source(
        DirectorySource(raw), tmp_path / "interim", as_of=AS_OF, segment_tiers=tiers
    )
    assert report["tables"]["accounts"]["derived_values"] == {"segment": 3}
    assert report["rows_quarantined"] == 0
    accounts = pd.read_parquet(tmp_path / "interim" / "accounts.parquet").set_index("account_id")
    # first contracts: A1 1,200 ARR (K1, not the later K4), A2 24,000.5, A3 250,000
    assert accounts["segment"].to_dict() == {"A1": "smb", "A2": "mid_market", "A3": "enterprise"}
    with pytest.raises(DataContractError, match=r"ingest\.segment_tiers"):
        ingest_source(DirectorySource(raw), tmp_path / "interim2", as_of=AS_OF)


def test_segment_tiers_must_be_ordered():
    params = default_params()
    params["ingest"]["segment_tiers"] = {"by": "seats", "mid_market": 50, "enterprise": 10}
    with pytest.raises(ConfigError, match="enterprise"):
        make_config(params)


def test_tickets_without_sla_targets_take_the_policy_or_count_no_breach(tmp_path, raw_tables):
    """SLA targets are optional: the policy by priority fills them (counted as derived); with
    no policy the tickets are kept and the breach features measure only what has a target."""
    from pipeline.core.config import SlaTargets
    from pipeline.feature_engine.build import compute_features, read_present_tables

    raw_tables["support_tickets"] = raw_tables["support_tickets"].drop(
        columns=["sla_first_response_hours", "sla_resolution_hours"]
    )
    raw = write_dir(raw_tables, tmp_path / "raw")
    policy = {"high": SlaTargets(first_response_hours=8, resolution_hours=72)}
    report = ingest_source(DirectorySource(raw), tmp_path / "with", as_of=AS_OF, sla_policy=policy)
    tickets = report["tables"]["support_tickets"]
    assert tickets["rows_accepted"] == 2 and tickets["rows_quarantined"] == 0
    assert tickets["derived_values"] == {"sla_first_response_hours": 1, "sla_resolution_hours": 1}
    filled = pd.read_parquet(tmp_path / "with" / "support_tickets.parquet").set_index("ticket_id")
    assert filled.loc["T1", "sla_resolution_hours"] == 72.0  # high
    assert pd.isna(filled.loc["T2", "sla_resolution_hours"])  # urgent: not in the policy

    ingest_source(DirectorySource(raw), tmp_path / "without", as_of=AS_OF)
    params = default_params()
    params["base"]["as_of_date"] = "2025-01-01"
    config = make_config(params)
    tables, _ = read_present_tables(tmp_path / "without")
    day = [pd.Timestamp("2024-06-01").date()]
    table = compute_features(config, tmp_path / "without", tables, day).table
    a3 = table.set_index("account_id").loc["A3"]  # T2 opened 2024-05-01, never answered
    assert a3["tickets_opened_90d"] == 1
    assert a3["sla_breaches_90d"] == 0 and a3["tickets_open_past_sla"] == 0
    assert pd.isna(a3["sla_breach_rate_90d"])  # no deadline: no rate, not 0%
