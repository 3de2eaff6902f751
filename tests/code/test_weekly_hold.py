"""The weekly job holds the delivery on bad data: a stale required table or too many quarantined
rows. The lists are written, nothing is sent, one line says why, and the exit code is 3;
`--force` delivers anyway.

Scoring is replaced by a stand-in (as in tests/code/test_deliver.py) that writes the lists
with the freshness warnings the score stage computes, from the really ingested tables.
"""

from __future__ import annotations

import json
from datetime import date

from typer.testing import CliRunner

from pipeline.cli import HELD_EXIT_CODE, app
from pipeline.core.config import parse_config
from pipeline.core.layout import VALIDATION_REPORT
from pipeline.feature_engine.build import read_present_tables
from pipeline.lists.manifest import read_manifest
from pipeline.monitoring import delivery_holds, hold_message, latest_stamps, source_warnings
from tests.code.test_deliver import ENV, by_recipient, fill_lists, params, smtp_server
from tests.conftest import tiny_raw_tables, write_dir

__all__ = ["smtp_server"]  # the SMTP server fixture, shared with the delivery tests

AS_OF = "2026-11-16"
STALE_AFTER = {"usage_events": 7, "support_tickets": 30}


def _stale(table: str, days: int, limit: int, latest: str = "2026-11-04") -> dict:
    return {
        "kind": "stale_table",
        "table": table,
        "latest": latest,
        "days_old": days,
        "threshold_days": limit,
        "message": f"table {table} looks stale",
    }


def _report(**tables: tuple[int, int]) -> dict:
    return {
        "tables": {
            name: {"status": "ok", "rows_read": read, "rows_quarantined": quarantined}
            for name, (read, quarantined) in tables.items()
        }
    }


# --- the decision, a pure function ------------------------------------------------------------


def test_a_stale_required_table_holds_the_delivery_and_an_optional_one_does_not():
    warnings = [_stale("usage_events", 12, 7), _stale("support_tickets", 45, 30)]
    holds = delivery_holds(warnings, _report(accounts=(10, 0)), max_quarantine_share=0.01)
    assert holds == [
        "usage_events is 12 days old (latest row 2026-11-04; "
        "score.stale_after_days.usage_events = 7)"
    ]
    drift = {"kind": "drift", "message": "feature x drifted", "feature": "x"}
    assert delivery_holds([drift], _report(accounts=(10, 0)), max_quarantine_share=0.01) == []
    # which tables count as required is the caller's to say (default: the contract's)
    assert len(delivery_holds(warnings, {}, max_quarantine_share=0.01, required_tables={})) == 0
    assert (
        len(
            delivery_holds(
                warnings,
                {},
                max_quarantine_share=0.01,
                required_tables={"usage_events", "support_tickets"},
            )
        )
        == 2
    )


def test_a_quarantined_share_above_the_limit_holds_the_delivery():
    report = _report(accounts=(200, 2), contracts=(200, 3), usage_events=(0, 0))
    holds = delivery_holds([], report, max_quarantine_share=0.01)
    # 2 of 200 is exactly the limit (ingest stops only above it); 3 of 200 is above
    assert holds == [
        "contracts had 1.5% of its rows quarantined (3 of 200; ingest.max_quarantine_share = 1.0%)"
    ]
    assert delivery_holds([], report, max_quarantine_share=0.02) == []


def test_the_hold_is_one_line_naming_every_reason():
    line = hold_message(["usage_events is 12 days old (x = 7)", "contracts had 1.5% (y)"])
    assert "\n" not in line
    assert line == (
        "weekly: not delivered: usage_events is 12 days old (x = 7); contracts had 1.5% (y); "
        "rerun with --force to deliver anyway"
    )


def test_the_score_stages_freshness_warnings_feed_the_decision(tmp_path):
    """The warnings the score stage records (source_warnings) carry what the hold names."""
    from pipeline.data.sources import DirectorySource
    from pipeline.stages.ingest import ingest_source

    interim = tmp_path / "interim"
    ingest_source(
        DirectorySource(write_dir(tiny_raw_tables(), tmp_path / "raw")), interim, as_of=AS_OF
    )
    tables, report = read_present_tables(interim)
    as_of = date.fromisoformat("2024-04-12")  # usage_events' latest row: 2024-04-02
    warnings = source_warnings(
        report, latest_stamps(interim, tables, as_of), as_of=as_of, stale_after_days=STALE_AFTER
    )
    assert delivery_holds(warnings, report, max_quarantine_share=0.01) == [
        "usage_events is 10 days old (latest row 2024-04-02; "
        "score.stale_after_days.usage_events = 7)"
    ]


# --- the weekly command ----------------------------------------------------------------------

runner = CliRunner()


def _fake_score(monkeypatch, calls: list):
    """Scoring that writes the lists with the freshness warnings the score stage would."""
    import pipeline.stages.score
    from pipeline.core.atomic import atomic_path
    from pipeline.stages.score import score_settings

    def fake_run_score(config, **kwargs):
        interim = kwargs["interim_dir"]
        tables, report = read_present_tables(interim)
        as_of = config.base.as_of_date
        warnings = source_warnings(
            report,
            latest_stamps(interim, tables, as_of),
            as_of=as_of,
            stale_after_days=score_settings(config).stale_after_days,
        )
        with atomic_path(kwargs["out_dir"]) as tmp:
            fill_lists(tmp, as_of=str(as_of))
            manifest = json.loads((tmp / "manifest.json").read_text())
            manifest["warnings"] = warnings
            (tmp / "manifest.json").write_text(json.dumps(manifest))
        calls.append(kwargs["out_dir"])
        return read_manifest(kwargs["out_dir"])

    monkeypatch.setattr(pipeline.stages.score, "run_score", fake_run_score)


def _week(tmp_path, monkeypatch, port: int, *, raw=None, stale_after=STALE_AFTER):
    """Raw tables, params and a stand-in scorer in `tmp_path`; returns the weekly command."""
    monkeypatch.chdir(tmp_path)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    write_dir(raw or tiny_raw_tables(), tmp_path / "raw")
    weekly = params(port)
    weekly["ingest"] = {"source": str(tmp_path / "raw")}
    weekly["score"] = {"stale_after_days": stale_after}
    parse_config(weekly)  # the settings are valid
    (tmp_path / "params.yaml").write_text(json.dumps(weekly))
    return ["weekly", "--params", str(tmp_path / "params.yaml"), "--as-of", AS_OF]


def _hold_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "weekly: not delivered" in line]


def _fresh_raw():
    """tiny_raw_tables with usage up to three days before AS_OF, so nothing is stale."""
    raw = tiny_raw_tables()
    raw["usage_events"] = raw["usage_events"].assign(
        occurred_at=[f"2026-11-{day}T10:00:00Z" for day in ("09", "10", "11", "12", "13")]
    )
    return raw


def test_weekly_on_stale_data_writes_the_lists_sends_nothing_and_exits_3(
    tmp_path, monkeypatch, smtp_server
):
    port, handler = smtp_server
    calls: list = []
    _fake_score(monkeypatch, calls)
    command = _week(tmp_path, monkeypatch, port)

    result = runner.invoke(app, command)
    assert result.exit_code == HELD_EXIT_CODE == 3, result.output
    (line,) = _hold_lines(result.output)
    # tiny_raw_tables' latest usage event is 2024-04-02: 958 days before the week
    assert line == (
        "weekly: not delivered: usage_events is 958 days old (latest row 2024-04-02; "
        "score.stale_after_days.usage_events = 7); rerun with --force to deliver anyway"
    )
    assert "support_tickets" not in line  # stale too, but optional: a warning only
    assert handler.received == []
    assert len(calls) == 1 and (tmp_path / "reports/lists" / AS_OF / "manifest.json").is_file()
    assert not (tmp_path / "reports/deliveries").exists()

    dry = runner.invoke(app, [*command, "--dry-run"])
    assert dry.exit_code == 3 and len(_hold_lines(dry.output)) == 1
    assert not (tmp_path / "reports/deliveries" / AS_OF / "outbox").exists()


def test_weekly_force_delivers_stale_data_with_a_warning(tmp_path, monkeypatch, smtp_server):
    port, handler = smtp_server
    _fake_score(monkeypatch, [])
    command = _week(tmp_path, monkeypatch, port)

    result = runner.invoke(app, [*command, "--force"])
    assert result.exit_code == 0, result.output
    assert _hold_lines(result.output) == []
    assert "delivering despite bad data (--force): usage_events is 958 days old" in result.output
    assert sorted(by_recipient(handler)) == [
        "alice@example.com",
        "bob@example.com",
        "dave@example.com",
    ]


def test_weekly_on_fresh_data_delivers(tmp_path, monkeypatch, smtp_server):
    port, handler = smtp_server
    _fake_score(monkeypatch, [])
    command = _week(tmp_path, monkeypatch, port, raw=_fresh_raw())

    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "delivering despite" not in result.output and len(handler.received) == 3


def test_weekly_holds_when_ingest_quarantined_too_much_and_force_delivers(
    tmp_path, monkeypatch, smtp_server
):
    """One ticket in three has a priority outside the contract: 33% quarantined, above
    ingest.max_quarantine_share (1%). Ingest does not stop the weekly job: the hold does, so
    the lists can be looked at and --force can deliver them."""
    port, handler = smtp_server
    _fake_score(monkeypatch, [])
    raw = _fresh_raw()
    tickets = raw["support_tickets"]
    bad = tickets.iloc[[0]].assign(ticket_id="T9", priority="whenever")
    import pandas as pd

    raw["support_tickets"] = pd.concat([tickets, bad], ignore_index=True)
    command = _week(tmp_path, monkeypatch, port, raw=raw, stale_after={})

    held = runner.invoke(app, [*command, "--dry-run"])
    assert held.exit_code == 3, held.output
    (line,) = _hold_lines(held.output)
    assert line == (
        "weekly: not delivered: support_tickets had 33.3% of its rows quarantined "
        "(1 of 3; ingest.max_quarantine_share = 1.0%); rerun with --force to deliver anyway"
    )
    assert not (tmp_path / "reports/deliveries").exists()
    report = json.loads((tmp_path / "data/interim" / VALIDATION_REPORT).read_text())
    assert report["tables"]["support_tickets"]["rows_quarantined"] == 1  # there to look at

    forced = runner.invoke(app, [*command, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "delivering despite bad data (--force): support_tickets had 33.3%" in forced.output
    assert len(handler.received) == 3


def test_weekly_help_documents_force_and_the_exit_codes():
    result = runner.invoke(app, ["weekly", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--force" in text
    for code in ("0 delivered", "1 some CSM's delivery failed", "2 a settings", "3 held back"):
        assert code in text


def test_ingest_stays_strict_outside_the_weekly_job(tmp_path, monkeypatch):
    """`churn ingest` still stops on too many quarantined rows; only weekly defers to the hold."""
    raw = _fresh_raw()
    raw["support_tickets"] = raw["support_tickets"].assign(priority=["whenever", "high"])
    command = _week(tmp_path, monkeypatch, 1, raw=raw)
    result = runner.invoke(app, ["ingest", "--params", command[2]])
    assert result.exit_code == 2 and "max_quarantine_share" in result.output
