"""The `churn` CLI: help on every command, clear errors with exit code 2, a working ingest."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import write_dir

runner = CliRunner()


def _params(tmp_path, source, **ingest) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "base": {"seed": 1, "as_of_date": "2025-01-01"},
                "simulate": {"n_accounts": 10},
                "ingest": {"source": str(source), **ingest},
            }
        )
    )
    return str(path)


def test_help_lists_commands_and_every_command_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = ["simulate", "ingest", "contract"]
    for command in commands:
        assert command in result.output
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "--params" in sub.output or command == "contract"


def test_ingest_writes_tables_and_report(tmp_path, raw_tables):
    params = _params(tmp_path, write_dir(raw_tables, tmp_path / "raw"))
    out = tmp_path / "interim"
    result = runner.invoke(app, ["ingest", "--params", params, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "validation_report.json").read_text())
    assert report["rows_quarantined"] == 0
    assert (out / "accounts.parquet").is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("accounts"), "table 'accounts'"),
        (lambda t: t.__setitem__("accounts", t["accounts"].drop(columns="segment")), "segment"),
    ],
)
def test_ingest_errors_exit_2_with_a_clear_message(tmp_path, raw_tables, change, message):
    change(raw_tables)
    params = _params(tmp_path, write_dir(raw_tables, tmp_path / "raw"))
    result = runner.invoke(app, ["ingest", "--params", params, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_config_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["ingest", "--params", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "not found" in result.output
    params = tmp_path / "p.yaml"
    params.write_text("base: {as_of_date: null}\ningest: {source: x}\n")
    result = runner.invoke(app, ["ingest", "--params", str(params)])
    assert result.exit_code == 2 and "base.as_of_date" in result.output


def test_contract_command_prints_every_table():
    result = runner.invoke(app, ["contract"])
    assert result.exit_code == 0
    assert "### `usage_events` (required)" in result.output
