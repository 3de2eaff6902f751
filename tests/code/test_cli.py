"""The `churn` CLI: help on every command, clear errors with exit code 2, a working ingest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import write_dir

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


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
    """Every registered command shows in the overview and has help on each of its options."""
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = get_command(app).commands
    assert len(commands) >= 14
    for name, command in commands.items():
        assert name in result.output
        sub = runner.invoke(app, [name, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "--params" in sub.output or name == "contract"
        for param in command.params:
            assert getattr(param, "help", None), f"`churn {name}` option {param.name} has no help"


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


def test_features_for_one_as_of_date(tmp_path, small_demo):
    interim, _, _ = small_demo
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    out, summary = tmp_path / "f.parquet", tmp_path / "s.json"
    args = ["features", "--params", str(params_path), "--interim", str(interim)]
    args += ["--out", str(out), "--summary", str(summary), "--as-of", "2026-06-01"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert table["snapshot_date"].astype(str).unique().tolist() == ["2026-06-01"]
    assert json.loads(summary.read_text())["snapshots"] == 1
    late = runner.invoke(app, [*args[:-1], "2027-01-01"])
    assert late.exit_code == 2 and "after the data's as-of date" in late.output
    missing = runner.invoke(app, [*args[:4], str(tmp_path / "nowhere"), *args[5:]])
    assert missing.exit_code == 2 and "run `churn ingest` first" in missing.output


def test_check_validates_params_and_the_source_without_ingesting(tmp_path, raw_tables):
    params = _params(tmp_path, write_dir(raw_tables, tmp_path / "raw"))
    result = runner.invoke(app, ["check", "--params", params])
    assert result.exit_code == 0, result.output
    assert "ready to ingest" in result.output
    assert not (tmp_path / "data").exists()  # nothing written


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.pop("contracts"), "required table contracts not found"),
        (
            lambda t: t.__setitem__("accounts", t["accounts"].drop(columns="segment")),
            "table accounts lacks required columns ['segment']",
        ),
    ],
)
def test_check_names_what_the_source_lacks(tmp_path, raw_tables, change, message):
    change(raw_tables)
    params = _params(tmp_path, write_dir(raw_tables, tmp_path / "raw"))
    result = runner.invoke(app, ["check", "--params", params])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_features_for_one_date_never_overwrite_the_training_summary(tmp_path, small_demo):
    """`churn features --as-of D --out X` writes its summary beside X, and refuses to write
    one date's table over the training table."""
    interim, _, _ = small_demo
    work = tmp_path / "work"
    (work / "reports").mkdir(parents=True)
    tracked = work / "reports" / "feature_summary.json"
    tracked.write_text("{}")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(yaml.safe_load((ROOT / "params.yaml").read_text())))
    args = ["features", "--params", str(params), "--interim", str(interim)]
    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = runner.invoke(app, [*args, "--as-of", "2026-06-01", "--out", "week.parquet"])
        refused = runner.invoke(app, [*args, "--as-of", "2026-06-01"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert tracked.read_text() == "{}"
    assert json.loads((work / "week.summary.json").read_text())["snapshots"] == 1
    assert refused.exit_code == 2 and "give --out" in refused.output


def test_train_command_reports_a_logistic_model_without_trees(tmp_path, medium_demo):
    """A chosen logistic model has no trees: the train command must still finish and say what
    it trained (CI once failed here on a missing best-iteration key)."""
    import copy

    params = copy.deepcopy(medium_demo["params"])
    params["train"]["selection"] = {"candidates": ["logistic"], "trials": 1, "folds": 1}
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    models = tmp_path / "models"
    args = ["train", "--params", str(params_path), "--features", str(medium_demo["features"])]
    result = runner.invoke(app, [*args, "--models", str(models)])
    assert result.exit_code == 0, result.output
    info = json.loads((models / "training_info.json").read_text())
    assert info["learner"] == "logistic"
    assert "best_iteration" not in info
