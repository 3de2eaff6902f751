"""Realism figures of a simulation: the churn levels a CS team would report, as a flat dict.

Pure, used by the tests (to hold the planted churn to realistic levels by segment and to the
fact that most churn is decided early) and by the benchmark.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from pipeline.stages.simulate.vocabulary import SEGMENTS


def realism_summary(entities: dict[str, pd.DataFrame], as_of_date: date) -> dict[str, float]:
    """Flat realism figures of a simulation: annual logo churn by segment and early churn.

    ``annual_churn_<segment>``: share of the accounts live one year before as_of that churned
    within that year (the way a CS team reports logo churn); ``expected_annual_churn_<segment>``:
    the same from the true probabilities (less noisy); ``churn_rate_first_90d`` and
    ``churn_rate_after_90d``: churn rate of decisions by tenure at decision.
    """
    truth = entities["truth_accounts"]
    decisions = entities["truth_renewal_decisions"]
    accounts = entities["accounts"]
    as_of = pd.Timestamp(as_of_date, tz="UTC")
    year_start = as_of - pd.Timedelta(days=365)
    merged = accounts[["account_id", "created_at"]].merge(truth, on="account_id")
    live = (merged["created_at"] < year_start) & ~(
        merged["churned"] & (merged["churned_at"] < year_start)
    )
    base = merged.loc[live]
    decision_day = pd.to_datetime(decisions["decision_date"]).dt.tz_localize("UTC")
    in_year = (decision_day >= year_start) & (decision_day < as_of)
    year_decisions = decisions.loc[in_year & decisions["account_id"].isin(base["account_id"])]
    out: dict[str, float] = {}
    for seg in SEGMENTS:
        seg_base = base.loc[base["segment"] == seg]
        n_base = len(seg_base)
        churned = (seg_base["churned"] & (seg_base["churned_at"] >= year_start)).sum()
        expected = year_decisions.loc[
            year_decisions["segment"] == seg, "true_churn_probability"
        ].sum()
        out[f"accounts_live_year_start_{seg}"] = float(n_base)
        out[f"annual_churn_{seg}"] = float(churned / n_base) if n_base else float("nan")
        out[f"expected_annual_churn_{seg}"] = float(expected / n_base) if n_base else float("nan")
    early = decisions["tenure_days"] <= 90
    out["decisions_first_90d"] = float(early.sum())
    out["decisions_after_90d"] = float((~early).sum())
    out["churn_rate_first_90d"] = float(decisions.loc[early, "churned"].mean())
    out["churn_rate_after_90d"] = float(decisions.loc[~early, "churned"].mean())
    churned_decisions = decisions.loc[decisions["churned"]]
    out["share_of_churn_in_first_90d"] = float((churned_decisions["tenure_days"] <= 90).mean())
    return out
