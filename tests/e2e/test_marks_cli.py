"""`churn mark` end to end: a CSM edits last week's list CSV, the marks are recorded, and this
week's `churn score` keeps the marked accounts off the list (or brings them back, flagged)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta

import pandas as pd
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.layout import LAYOUT

runner = CliRunner()


def _score(args_common: list[str], as_of: date, out, *extra: str) -> None:
    result = runner.invoke(
        app, ["score", *args_common, "--as-of", str(as_of), "--out", str(out), *extra]
    )
    assert result.exit_code == 0, result.output


def test_marks_from_an_edited_list_shape_the_next_list(scored_demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default marks log, data/marks/marks.parquet, lands here
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(scored_demo["params"]))
    as_of = date.fromisoformat(scored_demo["manifest"]["as_of"])
    last_week = as_of - timedelta(weeks=1)
    common = [
        "--params",
        str(params),
        "--interim",
        str(scored_demo["interim"]),
        "--model",
        str(scored_demo["models"]),
        "--reference",
        str(scored_demo["features"]),
    ]
    before_dir = tmp_path / "lists" / str(last_week)
    _score(common, last_week, before_dir)

    manifest = json.loads((before_dir / "manifest.json").read_text())
    entry = max(manifest["csms"], key=lambda e: (e["n_accounts"], e["csm_id"]))
    assert entry["n_accounts"] >= 3
    csm = entry["csm_id"]
    rows = list(csv.DictReader(io.StringIO((before_dir / entry["csv"]).read_text())))
    first, second, third = (r["account_id"].lstrip("'") for r in rows[:3])

    # The CSM adds four columns to the list they received and fills two rows.
    edited = io.StringIO()
    writer = csv.DictWriter(edited, fieldnames=[*rows[0], "action", "until", "play", "note"])
    writer.writeheader()
    for i, row in enumerate(rows):
        extra = {"action": "", "until": "", "play": "", "note": ""}
        if i == 0:
            extra = {"action": "addressed", "until": "", "play": "QBR", "note": "<b>sponsor</b>"}
        if i == 1:
            extra = {"action": "snoozed", "until": str(as_of), "play": "", "note": "on holiday"}
        writer.writerow({**row, **extra})
    marks_file = tmp_path / "my_list.csv"
    marks_file.write_text(edited.getvalue())

    mark_args = ["--csm", csm, "--params", str(params), "--as-of", str(last_week)]
    mark_args += ["--lists", str(before_dir), "--recorded-at", f"{last_week}T10:00:00"]
    result = runner.invoke(app, ["mark", str(marks_file), *mark_args])
    assert result.exit_code == 0, result.output
    log = pd.read_parquet(tmp_path / LAYOUT.marks)
    assert sorted(log["account_id"]) == sorted([first, second])
    assert set(log["csm_id"]) == {csm}
    week_before = pd.read_parquet(before_dir / "accounts.parquet").set_index("account_id")
    assert (
        log.set_index("account_id").loc[first, "probability_at_mark"]
        == (week_before.loc[first, "probability"])
    )

    # Another CSM's account is refused by file, column and line; nothing more is recorded.
    other = week_before[week_before["csm_id"].notna() & (week_before["csm_id"] != csm)].index[0]
    foreign = tmp_path / "foreign.csv"
    foreign.write_text(f"account_id,action\n{third},addressed\n{other},addressed\n")
    refused = runner.invoke(app, ["mark", str(foreign), *mark_args])
    assert refused.exit_code == 2
    text = " ".join(refused.output.split())
    assert "foreign.csv" in text and "account_id" in text and "line 3" in text
    assert other in text
    assert len(pd.read_parquet(tmp_path / LAYOUT.marks)) == 2

    # This week's list honours the marks recorded before it.
    # Without --marks (the DVC stage: tracked inputs only) the log is not read.
    plain_dir = tmp_path / "plain" / str(as_of)
    _score(common, as_of, plain_dir)
    plain = pd.read_parquet(plain_dir / "accounts.parquet")
    assert (plain["mark_state"] == "").all() and not plain["mark_hold"].any()
    now_dir = tmp_path / "lists" / str(as_of)
    _score(common, as_of, now_dir, "--marks", str(tmp_path / LAYOUT.marks))
    now = pd.read_parquet(now_dir / "accounts.parquet").set_index("account_id")
    snoozed = now.loc[second]
    assert snoozed["mark_state"] == "snoozed" and bool(snoozed["mark_hold"])
    assert pd.isna(snoozed["list_rank"]) and not snoozed["on_list"]
    assert snoozed["mark_note"] == "on holiday"
    addressed = now.loc[first]
    rose = bool(addressed["probability"] - week_before.loc[first, "probability"] > 0.10)
    assert bool(addressed["mark_back"]) is rose
    assert bool(addressed["mark_hold"]) is (not rose)
    assert pd.isna(addressed["list_rank"]) is (not rose)
    assert "QBR" in addressed["mark_reason"]
    unmarked = now.drop(index=[first, second])
    assert (unmarked["mark_state"] == "").all() and not unmarked["mark_hold"].any()
    listed = {
        r["account_id"].lstrip("'")
        for r in csv.DictReader(io.StringIO((now_dir / entry["csv"]).read_text()))
    }
    assert second not in listed
