"""Each row's last CSM touch and open tickets: point in time, SLA breaches as the support
features count them, and absent tables giving empty columns rather than errors."""

from __future__ import annotations

from datetime import date

import pandas as pd

from pipeline.lists.facts import FACT_COLUMNS, account_facts

AS_OF = date(2026, 11, 16)


def ts(text: str | None) -> pd.Timestamp | None:
    return None if text is None else pd.Timestamp(text, tz="UTC")


def touchpoints(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "occurred_at": pd.Series([ts(r[1]) for r in rows], dtype="datetime64[us, UTC]"),
            "kind": [r[2] for r in rows],
        }
    )


def tickets(rows: list[tuple]) -> pd.DataFrame:
    """(account, opened, first_response, resolved, response_hours, resolution_hours)."""
    stamps = {
        name: pd.Series([ts(r[i]) for r in rows], dtype="datetime64[us, UTC]")
        for i, name in ((1, "opened_at"), (2, "first_response_at"), (3, "resolved_at"))
    }
    return pd.DataFrame(
        {
            "ticket_id": [f"T{i}" for i in range(len(rows))],
            "account_id": [r[0] for r in rows],
            "priority": "normal",
            **stamps,
            "sla_first_response_hours": [r[4] for r in rows],
            "sla_resolution_hours": [r[5] for r in rows],
            "escalated": False,
        }
    )


def facts(tables: dict, ids=("A", "B", "C")) -> pd.DataFrame:
    return account_facts(tables, AS_OF, account_ids=list(ids)).set_index("account_id")


def test_last_touch_counts_only_touches_strictly_before_as_of():
    out = facts(
        {
            "csm_touchpoints": touchpoints(
                [
                    ("A", "2026-11-02 10:00", "call"),
                    ("A", "2026-11-15 23:59", "qbr"),  # the newest before as-of
                    ("A", "2026-11-16 00:00", "meeting"),  # at as-of: not yet known
                    ("A", "2026-12-01 09:00", "email"),  # the future
                    ("B", "2026-11-16 08:00", "call"),  # only at as-of: no last touch
                ]
            )
        }
    )
    assert out.loc["A", "last_touch_date"] == date(2026, 11, 15)
    assert out.loc["A", "last_touch_kind"] == "qbr"
    assert out.loc["B", "last_touch_date"] is None and pd.isna(out.loc["B", "last_touch_kind"])
    assert out.loc["C", "last_touch_date"] is None  # no touch at all


def test_open_tickets_at_as_of_and_their_sla_breaches():
    out = facts(
        {
            "support_tickets": tickets(
                [
                    # open, answered in time, resolution due 2026-11-20: open, not breached
                    ("A", "2026-11-10", "2026-11-10 01:00", None, 4.0, 240.0),
                    # resolved after as-of: still open at as-of; resolution due passed: breached
                    ("A", "2026-11-01", "2026-11-01 01:00", "2026-11-18", 4.0, 48.0),
                    # resolved before as-of: not open
                    ("A", "2026-11-01", "2026-11-01 01:00", "2026-11-02", 4.0, 48.0),
                    # opened at as-of: not yet known
                    ("A", "2026-11-16 00:00", None, None, 1.0, 1.0),
                    # answered late (after the 4h deadline), resolution not due: breached
                    ("B", "2026-11-14", "2026-11-14 09:00", None, 4.0, 240.0),
                    # open without any SLA target: breaches unknown
                    ("C", "2026-11-14", None, None, None, None),
                ]
            )
        }
    )
    assert out["open_tickets"].tolist() == [2, 1, 1]
    assert out.loc["A", "open_tickets_breached"] == 1
    assert out.loc["B", "open_tickets_breached"] == 1
    assert pd.isna(out.loc["C", "open_tickets_breached"])
    # an account without tickets: none open, none breached (the table is there)
    none = facts({"support_tickets": tickets([("A", "2026-11-10", None, None, 4.0, 8.0)])})
    assert none.loc["B", ["open_tickets", "open_tickets_breached"]].tolist() == [0, 0]
    assert none.loc["A", "open_tickets_breached"] == 1  # no response within 4 hours


def test_absent_or_empty_tables_give_empty_columns_not_errors():
    for tables in ({}, {"csm_touchpoints": touchpoints([]), "support_tickets": tickets([])}):
        out = account_facts(tables, AS_OF, account_ids=["A", "B"])
        assert out.columns.tolist() == ["account_id", *FACT_COLUMNS]
        assert out["account_id"].tolist() == ["A", "B"]
        assert out[["last_touch_kind", "open_tickets", "open_tickets_breached"]].isna().all().all()
        assert out["last_touch_date"].isna().all()
        assert str(out["open_tickets"].dtype) == "Int64"


def test_facts_do_not_depend_on_row_order_and_do_not_mutate_inputs():
    touch = touchpoints(
        [("A", "2026-11-10", "qbr"), ("A", "2026-11-10", "call"), ("B", "2026-11-01", "email")]
    )
    kept = touch.copy()
    first = facts({"csm_touchpoints": touch})
    again = facts({"csm_touchpoints": touch.iloc[::-1].reset_index(drop=True)})
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(touch, kept)
    assert first.loc["A", "last_touch_kind"] == "call"  # a tie: the first kind in sort order
