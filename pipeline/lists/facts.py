"""Plain facts beside each row of a CSM's list: the last CSM touch and the open support tickets.

A CSM deciding what to do about an account first asks "when did we last talk to them?" and
"are they waiting on support?". Those answers come straight from the validated tables, not
from the model, and they are point in time like every feature: at an as-of date only rows
stamped strictly before midnight UTC of that date count, and a lifecycle stamp at or after it
(a ticket resolved on Tuesday, seen from Monday's list) is treated as not yet happened. So a
past list rescored later shows what was knowable then, and the facts never disagree with the
features the same list was scored on.

Breaches follow the support feature family (features/families/support.py): a ticket's
deadline is opened_at + its SLA hours (ingest fills missing targets from ingest.sla_policy and
sla_policy_by_plan), and a deadline is breached once it passed before as-of without the first
response (or the resolution) at or before it. A ticket without a target has no breach to count.

`account_facts` is pure: tables in, one row per account out; the score stage reads the tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

import numpy as np
import pandas as pd

FACT_COLUMNS = ["last_touch_date", "last_touch_kind", "open_tickets", "open_tickets_breached"]
TOUCHPOINTS = "csm_touchpoints"
TICKETS = "support_tickets"


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps as tz-aware UTC (a naive column is read as UTC, as ingest stores it)."""
    stamps = pd.to_datetime(values)
    if stamps.dt.tz is None:
        return stamps.dt.tz_localize("UTC")
    return stamps.dt.tz_convert("UTC")


def _usable(tables: Mapping[str, pd.DataFrame | None], name: str) -> pd.DataFrame | None:
    """The table, or None when it is absent or empty: an empty export (most often a failed
    one) says nothing about the accounts, so its facts are unknown rather than zero."""
    table = tables.get(name)
    return None if table is None or table.empty else table


def last_touches(touchpoints: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """account_id -> last_touch_date (UTC date) and last_touch_kind of the newest touchpoint
    strictly before `cutoff`; two touches at the same moment: the kind first in sort order
    wins, so the choice never depends on row order."""
    frame = pd.DataFrame(
        {
            "account_id": touchpoints["account_id"].astype("string"),
            "occurred_at": _utc(touchpoints["occurred_at"]),
            "kind": touchpoints["kind"].astype("string"),
        }
    )
    frame = frame[(frame["occurred_at"] < cutoff).fillna(False).to_numpy(dtype=bool)]
    frame = frame.sort_values(
        ["account_id", "occurred_at", "kind"],
        ascending=[True, False, True],
        na_position="last",
        kind="stable",
    ).drop_duplicates("account_id")
    return pd.DataFrame(
        {
            "last_touch_date": frame["occurred_at"].dt.date.to_numpy(dtype=object),
            "last_touch_kind": frame["kind"].to_numpy(),
        },
        index=pd.Index(frame["account_id"].to_numpy(), name="account_id"),
    )


def _hours(tickets: pd.DataFrame, column: str) -> pd.Series:
    if column not in tickets.columns:
        return pd.Series(np.nan, index=tickets.index, dtype="float64")
    return tickets[column].astype("float64")


def open_ticket_counts(tickets: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """account_id -> open_tickets and open_tickets_breached at `cutoff`.

    Open: opened before `cutoff` and not resolved before it. Breached: of those, the ones
    with a first-response deadline passed before `cutoff` without a response at or before
    it, or a resolution deadline passed before `cutoff` (an open ticket is unresolved).
    open_tickets_breached is empty for an account whose open tickets all lack SLA targets:
    nothing is known about them, which is not the same as "none breached".
    """
    opened = _utc(tickets["opened_at"])
    resolved = _utc(tickets["resolved_at"]) if "resolved_at" in tickets else None
    responded = _utc(tickets["first_response_at"]) if "first_response_at" in tickets else None
    before = (opened < cutoff).fillna(False).to_numpy(dtype=bool)
    still_open = (
        np.ones(len(tickets), dtype=bool)
        if resolved is None
        else (resolved.isna() | (resolved >= cutoff)).to_numpy(dtype=bool)
    )
    response_hours = _hours(tickets, "sla_first_response_hours")
    resolution_hours = _hours(tickets, "sla_resolution_hours")
    response_due = opened + pd.to_timedelta(response_hours, unit="h")
    resolution_due = opened + pd.to_timedelta(resolution_hours, unit="h")
    answered_in_time = (
        pd.Series(False, index=tickets.index)
        if responded is None
        else (responded <= response_due).fillna(False)
    )
    response_breach = ((response_due < cutoff).fillna(False) & ~answered_in_time).to_numpy(bool)
    resolution_breach = (resolution_due < cutoff).fillna(False).to_numpy(dtype=bool)
    known = (response_hours.notna() | resolution_hours.notna()).to_numpy(dtype=bool)
    is_open = before & still_open
    frame = pd.DataFrame(
        {
            "account_id": tickets["account_id"].astype("string").to_numpy(),
            "open": is_open.astype("int64"),
            "breached": (is_open & (response_breach | resolution_breach)).astype("int64"),
            "known": (is_open & known).astype("int64"),
        }
    )
    counts = frame.groupby("account_id", sort=True)[["open", "breached", "known"]].sum()
    breached = (
        counts["breached"].astype("Int64").mask((counts["open"] > 0) & (counts["known"] == 0))
    )
    return pd.DataFrame(
        {"open_tickets": counts["open"].astype("Int64"), "open_tickets_breached": breached}
    )


def account_facts(
    tables: Mapping[str, pd.DataFrame | None],
    as_of: date,
    *,
    account_ids: Iterable[str],
) -> pd.DataFrame:
    """account_id (in the order given) + last_touch_date, last_touch_kind, open_tickets and
    open_tickets_breached at `as_of`.

    `tables` maps a contract table name to its validated frame (csm_touchpoints: account_id,
    occurred_at, kind; support_tickets: the contract's columns). A table that is absent or
    empty leaves its columns empty, never an error: the list still goes out without them.
    An account with no touch before as-of has no last touch; with the tickets table present,
    an account without tickets has 0 open.
    """
    ids = pd.Series(list(account_ids), dtype="string", name="account_id")
    cutoff = pd.Timestamp(as_of, tz="UTC")
    out = pd.DataFrame({"account_id": ids})

    touchpoints = _usable(tables, TOUCHPOINTS)
    if touchpoints is None:
        out["last_touch_date"] = pd.Series([None] * len(ids), dtype=object)
        out["last_touch_kind"] = pd.Series(pd.NA, index=ids.index, dtype="string")
    else:
        touches = last_touches(touchpoints, cutoff)
        dates = ids.map(touches["last_touch_date"]).astype(object)
        out["last_touch_date"] = dates.where(dates.notna(), None)
        out["last_touch_kind"] = ids.map(touches["last_touch_kind"]).astype("string")

    tickets = _usable(tables, TICKETS)
    if tickets is None:
        out["open_tickets"] = pd.Series(pd.NA, index=ids.index, dtype="Int64")
        out["open_tickets_breached"] = pd.Series(pd.NA, index=ids.index, dtype="Int64")
    else:
        counts = open_ticket_counts(tickets, cutoff)
        out["open_tickets"] = ids.map(counts["open_tickets"]).astype("Int64").fillna(0)
        breached = ids.map(counts["open_tickets_breached"]).astype("Int64")
        # An account with no ticket at all has none breached; one whose open tickets have no
        # SLA target stays empty (unknown).
        has_tickets = ids.isin(counts.index).to_numpy(dtype=bool)
        out["open_tickets_breached"] = breached.where(has_tickets, 0).astype("Int64")
    return out[["account_id", *FACT_COLUMNS]]
