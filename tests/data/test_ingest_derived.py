"""Values exports lack, described in params instead of faked: billing terms of open-ended
subscriptions, and SLA targets by plan. Each derived value is counted in the report."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.core.config import SlaTargets
from pipeline.core.errors import DataContractError
from pipeline.data.derive import billing_terms, plan_at_open, sla_targets
from pipeline.data.sources import DirectorySource
from pipeline.stages.ingest import ingest_source
from tests.conftest import AS_OF, write_dir


def _dates(values):
    return pd.to_datetime(pd.Series(values)).astype("datetime64[s]")


def _subscriptions(starts, ends):
    n = len(starts)
    return pd.DataFrame(
        {
            "contract_id": [f"S{i}" for i in range(n)],
            "account_id": [f"A{i}" for i in range(n)],
            "start_date": _dates(starts),
            "end_date": _dates(ends),
            "arr": [1200.0] * n,
        }
    )


def test_open_ended_monthly_subscription_becomes_terms_up_to_the_one_in_progress():
    subs = _subscriptions(["2024-01-31"], [None])
    terms, open_ended = billing_terms(subs, period_months=1, as_of=pd.Timestamp("2024-05-15"))
    assert open_ended == 1
    assert terms["contract_id"].tolist() == ["S0#1", "S0#2", "S0#3", "S0#4"]
    # billing dates clamp to the month's last day, and never drift (Mar 31, not Mar 29)
    assert (
        terms["start_date"].dt.strftime("%m-%d").tolist()
        == [
            "01-31",
            "02-29",
            "03-31",
            "04-30",
            "05-31",
        ][: len(terms)]
    )
    assert terms["end_date"].iloc[-1] == pd.Timestamp("2024-05-31")  # after as-of: censored
    assert (terms["start_date"].iloc[1:].to_numpy() == terms["end_date"].iloc[:-1].to_numpy()).all()
    assert (terms["arr"] == 1200.0).all()


def test_cancelled_subscription_ends_at_its_scheduled_end_and_short_rows_stay_whole():
    subs = _subscriptions(
        ["2024-01-10", "2024-03-01", "2024-01-15"], ["2024-04-10", "2024-03-20", "2024-02-15"]
    )
    terms, open_ended = billing_terms(subs, period_months=1, as_of=pd.Timestamp("2024-06-01"))
    assert open_ended == 0
    s0 = terms[terms["account_id"] == "A0"]
    assert s0["end_date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-02-10",
        "2024-03-10",
        "2024-04-10",
    ]
    # shorter than a period, or exactly one: one term, its id unchanged
    assert terms.loc[terms["account_id"] == "A1", "contract_id"].tolist() == ["S1"]
    assert terms.loc[terms["account_id"] == "A2", "contract_id"].tolist() == ["S2"]


def test_quarterly_billing_and_an_as_of_on_a_billing_date():
    subs = _subscriptions(["2024-01-01"], [None])
    terms, _ = billing_terms(subs, period_months=3, as_of=pd.Timestamp("2024-07-01"))
    # a billing date on as-of is a pending renewal: no term starts on as-of (the data ends
    # before it), the last one ends there
    assert terms["start_date"].dt.strftime("%m-%d").tolist() == ["01-01", "04-01"]
    assert terms["end_date"].iloc[-1] == pd.Timestamp("2024-07-01")


def _open_ended_raw(raw_tables):
    contracts = raw_tables["contracts"].copy()
    contracts.loc[contracts["contract_id"] == "K3", "end_date"] = None
    return dict(raw_tables, contracts=contracts)


def test_open_ended_rows_are_quarantined_with_a_hint_without_a_billing_period(tmp_path, raw_tables):
    src = DirectorySource(write_dir(_open_ended_raw(raw_tables), tmp_path / "raw"))
    with pytest.raises(DataContractError) as err:
        ingest_source(src, tmp_path / "interim", as_of=AS_OF, max_quarantine_share=0.01)
    text = str(err.value)
    assert "table 'contracts', column 'end_date'" in text
    assert "missing_value:end_date (1)" in text and "ingest.billing_period_months" in text
    report = ingest_source(src, tmp_path / "interim", as_of=AS_OF, max_quarantine_share=0.5)
    contracts = report["tables"]["contracts"]
    assert contracts["rows_read"] == 4 and contracts["rows_quarantined"] == 1


def test_billing_period_lets_open_ended_rows_in_as_terms_and_counts_them(tmp_path, raw_tables):
    src = DirectorySource(write_dir(_open_ended_raw(raw_tables), tmp_path / "raw"))
    report = ingest_source(src, tmp_path / "interim", as_of=AS_OF, billing_period_months=12)
    contracts = report["tables"]["contracts"]
    assert contracts["rows_read"] == 4 and contracts["rows_accepted"] == 4
    assert contracts["rows_quarantined"] == 0
    terms = pd.read_parquet(tmp_path / "interim" / "contracts.parquet")
    k3 = terms[terms["contract_id"].str.startswith("K3")].sort_values("start_date")
    # A3 from 2024-03-15, open-ended, yearly: one term to 2025-03-15, in progress at as-of
    assert k3["contract_id"].tolist() == ["K3"]
    assert pd.Timestamp(k3["end_date"].iloc[0]) == pd.Timestamp("2025-03-15")
    # K2 (2024-02-01 to 2025-02-01) is exactly one year: unchanged
    assert contracts["derived_values"] == {"billing_terms": 0, "end_date": 1}


def test_plan_at_open_and_targets_by_plan_then_priority():
    contracts = pd.DataFrame(
        {
            "account_id": ["A", "A", "B"],
            "contract_id": ["K1", "K2", "K3"],
            "start_date": _dates(["2024-01-01", "2024-06-01", "2024-01-01"]),
            "plan": ["Basic", "Premium", "Basic"],
        }
    )
    tickets = pd.DataFrame(
        {
            "account_id": ["A", "A", "B", "A"],
            "opened_at": pd.to_datetime(
                ["2024-05-31T23:00Z", "2024-06-01T08:00Z", "2024-02-01T00:00Z", "2023-12-01T00:00Z"]
            ),
            "priority": ["urgent", "urgent", "low", "urgent"],
        },
        index=[10, 11, 12, 13],
    )
    plan = plan_at_open(tickets, contracts)
    assert plan.tolist() == ["Basic", "Premium", "Basic", "Basic"]
    assert plan.index.tolist() == [10, 11, 12, 13]
    target = sla_targets(
        tickets["priority"], plan, by_priority={"urgent": 4.0}, by_plan={"Premium": {"urgent": 1.0}}
    )
    assert target.tolist()[:2] == [4.0, 1.0]
    assert pd.isna(target.iloc[2])  # low: in no policy, so no breach can be counted


def test_sla_policy_by_plan_fills_missing_targets_in_ingest(tmp_path, raw_tables):
    raw_tables["support_tickets"] = raw_tables["support_tickets"].drop(
        columns=["sla_first_response_hours", "sla_resolution_hours"]
    )
    src = DirectorySource(write_dir(raw_tables, tmp_path / "raw"))
    by_plan = {"enterprise": {"urgent": SlaTargets(first_response_hours=1, resolution_hours=8)}}
    by_priority = {"high": SlaTargets(first_response_hours=8, resolution_hours=72)}
    report = ingest_source(
        src,
        tmp_path / "interim",
        as_of=AS_OF,
        sla_policy=by_priority,
        sla_policy_by_plan=by_plan,
    )
    tickets = report["tables"]["support_tickets"]
    assert tickets["derived_values"] == {"sla_first_response_hours": 2, "sla_resolution_hours": 2}
    filled = pd.read_parquet(tmp_path / "interim" / "support_tickets.parquet").set_index(
        "ticket_id"
    )
    assert filled.loc["T1", "sla_resolution_hours"] == 72.0  # A2 (growth plan): by priority
    assert filled.loc["T2", "sla_resolution_hours"] == 8.0  # A3 on enterprise: by plan
