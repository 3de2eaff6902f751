"""docs/your-data.md stays true: both worked examples' params pass `churn check` and ingest
their exports without losing a row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "your-data.md"
runner = CliRunner()


def _example(name: str) -> dict:
    """The YAML block of the guide marked `# example: <name>`."""
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), flags=re.S)
    for block in blocks:
        if block.startswith(f"# example: {name}\n"):
            return yaml.safe_load(block)
    raise AssertionError(f"docs/your-data.md has no example {name!r}")


def _crm_export(directory: Path) -> None:
    directory.mkdir(parents=True)
    pd.DataFrame(
        {
            "Company ID": ["C1", "C2", "C3"],
            "Company": ["Acme", "Globex", "Initech"],
            "Tier": ["SMB", "Mid-Market", "Enterprise"],
            "Owner": ["jane", "jane", "omar"],
            "Country": ["US", "DE", "US"],
        }
    ).to_csv(directory / "companies.csv", index=False)
    pd.DataFrame(
        {
            "Subscription ID": ["S1", "S2", "S3", "S4"],
            "Company ID": ["C1", "C2", "C3", "C1"],
            "Start": ["2023-01-10", "2023-02-01", "2023-03-15", "2024-01-10"],
            "Scheduled End": ["2024-01-10", "2025-02-01", "2026-03-15", "2025-01-10"],
            "ARR": ["1200", "24000.5", "250000", "1500"],
            "Licenses": ["5", "40", "300", "6"],
            "Edition": ["starter", "growth", "enterprise", "starter"],
            "Cancelled On": ["", "2024-06-01", "", ""],
        }
    ).to_csv(directory / "subscriptions.csv", index=False)
    pd.DataFrame(
        {
            "Company ID": ["C1", "C2", "C2", "C3"],
            "User": ["u1", "u2", "", "u4"],
            "Timestamp": [
                "2024-01-11 10:00:00",
                "2024-02-05 10:00:00",
                "2024-02-06 10:00:00",
                "2024-04-01 10:00:00",
            ],
            "Feature": ["Dashboard", "Reports", "Reports", "API"],
        }
    ).to_csv(directory / "events.csv", index=False)


def _plg_export(directory: Path) -> None:
    (directory / "usage_events").mkdir(parents=True)
    pd.DataFrame({"id": ["P1", "P2", "P3"], "signup_plan": ["free", "team", "team"]}).to_parquet(
        directory / "accounts.parquet", index=False
    )
    pd.DataFrame(
        {
            "id": ["T1", "T2", "T3"],
            "account": ["P1", "P2", "P3"],
            "from": pd.to_datetime(["2023-05-01", "2023-06-01", "2023-07-01"]).date,
            # P1 cancelled (its last billing period ended 2024-05-01); P2 and P3 still run
            "to": [pd.Timestamp("2024-05-01").date(), None, None],
            "mrr_x12": [600.0, 12000.0, 90000.0],
            "seats": [3, 40, 400],
        }
    ).to_parquet(directory / "subscriptions.parquet", index=False)
    pd.DataFrame(
        {
            "account_id": ["P1", "P2", "P3", "P3"],
            "occurred_at": pd.to_datetime(
                ["2023-05-02", "2023-06-03", "2023-07-04", "2023-08-05"], utc=True
            ),
            "module": ["editor", "editor", "exports", "sso"],
            "action": ["edit", "edit", "export", "login"],
            "minutes": [12.5, 3.0, None, 1.0],
            "count": [5, 7, 2, 1],
        }
    ).to_parquet(directory / "usage_events" / "part-0.parquet", index=False)
    pd.DataFrame(
        {
            "account_id": ["P1", "P2", "P2"],
            "attribute": ["employees", "employees", "channel"],
            "value": ["12", "140", "partner"],
            "recorded_at": pd.to_datetime(["2023-05-01", "2023-06-01", "2023-06-01"], utc=True),
        }
    ).to_parquet(directory / "firmographics.parquet", index=False)


@pytest.mark.parametrize(("name", "make"), [("crm", _crm_export), ("plg", _plg_export)])
def test_the_guides_examples_check_and_ingest_without_losing_a_row(tmp_path, name, make):
    example = _example(name)
    make(tmp_path / "raw")
    params = {"base": {"as_of_date": "2025-01-01"}, **example}
    params["ingest"] = {**example["ingest"], "source": str(tmp_path / "raw")}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    checked = runner.invoke(app, ["check", "--params", str(path)])
    assert checked.exit_code == 0, checked.output
    out = tmp_path / "interim"
    ingested = runner.invoke(app, ["ingest", "--params", str(path), "--out", str(out)])
    assert ingested.exit_code == 0, ingested.output
    report = json.loads((out / "validation_report.json").read_text())
    assert report["rows_quarantined"] == 0, report
    assert report["rows_read"] == report["rows_accepted"] > 0
    accounts = pd.read_parquet(out / "accounts.parquet").set_index("account_id")
    assert accounts["created_at"].notna().all()  # derived from the first term
    assert report["tables"]["accounts"]["derived_values"]["created_at"] == 3
    if name == "crm":
        assert accounts["segment"].to_dict() == {
            "C1": "smb",
            "C2": "mid_market",
            "C3": "enterprise",
        }
        assert "Cancelled On" in report["tables"]["contracts"]["ignored_columns"]
        events = pd.read_parquet(out / "usage_events")
        # recorded in New York: 10:00 EST is 15:00 UTC
        assert events["occurred_at"].min() == pd.Timestamp("2024-01-11 15:00", tz="UTC")
    else:
        assert accounts["segment"].to_dict() == {
            "P1": "smb",
            "P2": "mid_market",
            "P3": "enterprise",
        }
        assert report["tables"]["accounts"]["derived_values"]["segment"] == 3
        assert accounts["account_name"].isna().all()  # the lists show the id
        contracts = report["tables"]["contracts"]
        assert contracts["derived_values"]["end_date"] == 2  # P2 and P3 run open-ended
        terms = pd.read_parquet(out / "contracts.parquet")
        assert terms["end_date"].notna().all()
        p1 = terms[terms["account_id"] == "P1"].sort_values("start_date")
        assert len(p1) == 12 and str(p1["end_date"].iloc[-1]) == "2024-05-01"  # monthly terms
        assert contracts["derived_values"]["billing_terms"] == len(terms) - 3
        events = pd.read_parquet(out / "usage_events")
        assert events["event_type"].tolist() == ["edit", "edit", "export", "login"]
        assert events["value"].notna().sum() == 3
        attributes = pd.read_parquet(out / "account_attributes.parquet")
        assert len(attributes) == 3 and report["tables"]["account_attributes"]["rows_read"] == 3
