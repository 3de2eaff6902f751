"""Values an export lacks, derived from what it has: billing terms and SLA targets.

Pure functions over validated frames; ingest calls them and counts what they derived, so the
validation report says which values came from the export and which from params. Nothing here
invents a value the data or the params do not determine.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

# A row split into billing terms keeps its id with this separator and the term's number.
TERM_SEPARATOR = "#"


def _month_boundary(month_index: np.ndarray, day: np.ndarray) -> pd.DatetimeIndex:
    """The date in month `month_index` (year * 12 + month - 1) on `day`, clamped to the month's
    last day: a subscription started on Jan 31 bills on Feb 28 (or 29) and Mar 31."""
    years, months = np.divmod(month_index.astype("int64"), 12)
    first = pd.to_datetime(pd.DataFrame({"year": years, "month": months + 1, "day": 1}))
    days = np.minimum(day, first.dt.days_in_month.to_numpy())
    return pd.DatetimeIndex(first + pd.to_timedelta(days - 1, unit="D"))


def billing_terms(
    contracts: pd.DataFrame, *, period_months: int, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, int]:
    """Subscriptions split into billing terms of `period_months` from each row's start.

    A subscription billed monthly renews every month: each billing date is a renewal decision,
    so a row that spans years of monthly billing becomes one term per period. The last term
    ends at the row's end_date (the scheduled end; a shorter last period where it falls between
    billing dates) or, for an open-ended row (end_date empty), at the first billing date after
    the as-of date: the term in progress, whose outcome is not known yet (censored).

    Returns the terms (a row that stays one term keeps its contract_id; otherwise ids are
    `<contract_id>#<n>`, n from 1) and the number of open-ended rows.
    """
    if contracts.empty:
        return contracts, 0
    start = pd.DatetimeIndex(contracts["start_date"])
    end = pd.DatetimeIndex(contracts["end_date"])
    open_ended = end.isna()
    as_of_day = pd.Timestamp(as_of).tz_localize(None).normalize()
    # The date a term sequence runs to: the scheduled end, or past as-of for open rows.
    target = np.where(open_ended, as_of_day.to_datetime64(), end.to_numpy())
    target = pd.DatetimeIndex(target)
    start_month = (start.year * 12 + start.month - 1).to_numpy()
    start_day = start.day.to_numpy()
    target_month = (target.year * 12 + target.month - 1).to_numpy()

    def reaches(k: np.ndarray) -> np.ndarray:
        # The k-th billing date ends the sequence: at or after the end, or as-of (a term
        # that would start on as-of is not in the data yet: the renewal on that day is pending).
        boundary = _month_boundary(start_month + k * period_months, start_day)
        return boundary >= target

    n = np.maximum(1, (target_month - start_month) // period_months)
    for _ in range(3):  # the month estimate is at most two periods short
        short = ~reaches(n)
        if not short.any():
            break
        n = n + short
    assert reaches(n).all(), "billing-term count did not converge"

    row = np.repeat(np.arange(len(contracts)), n)
    k = np.concatenate([np.arange(m) for m in n])
    terms = contracts.iloc[row].reset_index(drop=True)
    term_start = _month_boundary(start_month[row] + k * period_months, start_day[row])
    term_end = _month_boundary(start_month[row] + (k + 1) * period_months, start_day[row])
    last = k == n[row] - 1
    scheduled_end = ~open_ended[row] & last
    term_end = term_end.where(~scheduled_end, end[row])
    split = n[row] > 1
    ids = terms["contract_id"].astype("string")
    numbered = ids + TERM_SEPARATOR + pd.Series(k + 1, dtype="string")
    terms = terms.assign(
        contract_id=ids.where(~split, numbered),
        start_date=term_start.astype(contracts["start_date"].dtype),
        end_date=term_end.astype(contracts["start_date"].dtype),
    )
    return terms, int(open_ended.sum())


def plan_at_open(tickets: pd.DataFrame, contracts: pd.DataFrame) -> pd.Series:
    """Each ticket's plan: that of its account's latest contract started by the ticket's day.

    A ticket opened before the account's first contract takes the first contract's plan (the
    customer was being onboarded onto it).
    """
    if tickets.empty or contracts.empty:
        return pd.Series(pd.NA, index=tickets.index, dtype="string")
    opened = pd.DatetimeIndex(tickets["opened_at"]).tz_convert("UTC").tz_localize(None)
    left = pd.DataFrame(
        {
            "_row": np.arange(len(tickets)),
            "account_id": tickets["account_id"].astype("string[pyarrow]").reset_index(drop=True),
        }
    ).assign(_day=opened.normalize().astype("datetime64[s]"))
    right = (
        contracts[["account_id", "start_date", "contract_id", "plan"]]
        .astype({"account_id": "string[pyarrow]"})
        .assign(_day=pd.DatetimeIndex(contracts["start_date"]).astype("datetime64[s]"))
        .sort_values(["_day", "account_id", "contract_id"], kind="stable")
    )
    left = left.sort_values("_day", kind="stable")
    joined = pd.merge_asof(left, right, on="_day", by="account_id", direction="backward")
    first_plan = right.drop_duplicates("account_id").set_index("account_id")["plan"]
    plan = joined["plan"].astype("string")
    before_first = joined["contract_id"].isna()
    plan = plan.where(~before_first, joined["account_id"].map(first_plan).astype("string"))
    return (
        pd.Series(plan.to_numpy(), index=joined["_row"].to_numpy())
        .sort_index()
        .set_axis(tickets.index)
        .astype("string")
    )


def sla_targets(
    priority: pd.Series,
    plan: pd.Series | None,
    *,
    by_priority: Mapping[str, float],
    by_plan: Mapping[str, Mapping[str, float]],
) -> pd.Series:
    """A ticket's target in hours: its plan's policy for its priority, else the policy by
    priority, else missing (no breach is counted against a target nobody set)."""
    target = priority.astype("string").map(dict(by_priority)).astype("float64")
    if plan is not None and by_plan:
        keys = plan.astype("string").fillna("") + "\x00" + priority.astype("string").fillna("")
        flat = {
            f"{p}\x00{prio}": hours
            for p, policy in by_plan.items()
            for prio, hours in policy.items()
        }
        planned = keys.map(flat).astype("float64")
        target = planned.where(planned.notna(), target)
    return target
