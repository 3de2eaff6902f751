"""A CSM's list page and CSV (issue 14): what it is, the watch section, marks, plain words.

Frames are built here the way the score stage hands them over (score.ACCOUNT_COLUMNS), so
each check states exactly the rows it needs.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from html.parser import HTMLParser

import pandas as pd
import pytest

from pipeline.lists.render import (
    LIST_COLUMNS,
    csm_warnings,
    human_date,
    money,
    render_lists,
    tickets_text,
    touch_text,
)

AS_OF = date(2026, 11, 16)
STAMP = {"as_of": AS_OF, "model_version": "abc123def456", "data_version": "d41d8cd9.dir"}
RULE = {
    "rank_by": "expected_arr_at_risk",
    "action_floor": "medium",
    "floor_probability": 0.15,
    "urgency": {"enabled": True, "horizon_days": 90, "half_life_days": 90, "floor": 0.5},
}
#: Words a CSM must not meet on their list (JavaScript-free: regular expressions on text).
JARGON = re.compile(r"PSI|drift|log-odds|SHAP|\bROC\b|\bAUC\b|calibrat|feature", re.I)
DRIFT = {
    "kind": "drift",
    "feature": "usage_active_users_30d",
    "psi": 0.41,
    "message": "feature usage_active_users_30d (importance rank 1) has drifted from the "
    "training data: PSI 0.41 > 0.25; scores that lean on it are less reliable",
}
STALE = {
    "kind": "stale_table",
    "table": "support_tickets",
    "latest": "2026-10-01",
    "days_old": 46,
    "message": "table support_tickets looks stale: its latest row is from 2026-10-01",
}
MISSING = {
    "kind": "missing_table",
    "table": "csm_touchpoints",
    "status": "absent",
    "features": ["engagement_days_since_touch"],
    "message": "table csm_touchpoints is absent in this week's data: the model's 1 features",
}


def account(i: int, csm: str | None = "C1", **values) -> dict:
    base = {
        "account_id": f"A{i}",
        "account_name": f"Account {i}",
        "csm_id": csm,
        "csm_name": None if csm is None else f"CSM {csm}",
        "csm_email": None if csm is None else f"{csm.lower()}@example.com",
        "assignment": "assigned" if csm else "no_csm",
        "segment": "mid_market",
        "region": "emea",
        "arr": 11_819.0,
        "probability": 0.42,
        "risk_band": "high",
        "expected_arr_at_risk": 0.42 * 11_819.0,
        "priority": 0.42 * 11_819.0,
        "renewal_date": date(2027, 1, 30),
        "days_to_renewal": 75,
        "renewal_soon": True,
        "list_rank": None,
        "watch_rank": None,
        "new_on_list": False,
        "change": "steady",
        "probability_last_week": 0.40,
        "moved_most": None,
        "reasons": "Usage: active users fell to 3 of 20 seats | Support: 4 tickets past SLA",
        "plays": "Book an adoption review",
        "context": "",
        "last_touch_date": date(2026, 11, 12),
        "last_touch_kind": "call",
        "open_tickets": 2,
        "open_tickets_breached": 1,
        "mark_state": "",
        "mark_hold": False,
        "mark_back": False,
        "mark_reason": "",
        "mark_note": "",
    }
    return {**base, **values}


def frame(records: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(records)
    return out.astype(
        {
            "account_id": "string",
            "csm_id": "string",
            "list_rank": "Int64",
            "watch_rank": "Int64",
            "open_tickets": "Int64",
            "open_tickets_breached": "Int64",
        }
    )


def book() -> pd.DataFrame:
    return frame(
        [
            account(1, list_rank=2),
            account(2, list_rank=1, probability=0.61, account_name="<script>alert(1)</script>"),
            account(
                3,
                list_rank=3,
                mark_state="addressed",
                mark_back=True,
                mark_reason="back: risk 20% -> 42% since addressed on 2026-11-02 (QBR call)",
                mark_note="=promised a discount",
            ),
            account(4, watch_rank=1, probability=0.1, risk_band="low", change="risen"),
            account(5, csm="C2", list_rank=1),  # another CSM's account
            account(6),  # on no list
            account(7, csm=None, list_rank=1),
        ]
    )


def render(accounts=None, warnings=(), **kwargs):
    return render_lists(
        book() if accounts is None else accounts,
        stamp=STAMP,
        warnings=list(warnings),
        rank_by="expected_arr_at_risk",
        renewal_window_days=90,
        **{"currency": "$", "ranking": RULE, **kwargs},
    )


class _Text(HTMLParser):
    """The text a reader sees: everything outside <style> and tags."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = False

    def handle_starttag(self, tag, attrs):
        self._skip = tag in ("style", "title")

    def handle_endtag(self, tag):
        self._skip = False

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts)).strip()


def csv_of(files, path="csm/C1.csv") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(files[path].decode())))


# --- what the page is ------------------------------------------------------------------------


def test_the_page_says_what_it_is_and_states_the_ranking_rule():
    files, _, _ = render()
    text = page_text(files["csm/C1.html"].decode())
    assert text.startswith("Accounts that need action")
    assert (
        "Ranked by expected ARR at risk (churn risk × ARR), weighted toward renewals in the next "
        "90 days; only accounts at medium risk or above (churn risk 15% or more)." in text
    )
    assert "Watch: no action needed yet" in text
    # the action rows come before the watch section, in rank order
    order = [text.index(f"{a} · Mid-market") for a in ("A2", "A1", "A3")]
    assert order == sorted(order) and order[-1] < text.index("Watch: no action")
    assert text.index("Watch: no action") < text.index("A4 · Mid-market")


def test_without_urgency_or_floor_the_rule_says_only_what_applies():
    rule = {**RULE, "action_floor": "low", "urgency": {**RULE["urgency"], "enabled": False}}
    files, _, _ = render(ranking=rule)
    text = page_text(files["csm/C1.html"].decode())
    assert "Ranked by expected ARR at risk (churn risk × ARR)." in text
    assert "weighted toward" not in text and "or above" not in text


def test_csv_holds_action_then_watch_rows_of_that_csm_only():
    files, entries, unassigned = render()
    rows = csv_of(files)
    assert list(rows[0]) == LIST_COLUMNS
    assert [(r["account_id"], r["section"], r["rank"]) for r in rows] == [
        ("A2", "action", "1"),
        ("A1", "action", "2"),
        ("A3", "action", "3"),
        ("A4", "watch", "1"),
    ]
    by_csm = {e["csm_id"]: e for e in entries}
    assert (by_csm["C1"]["n_accounts"], by_csm["C1"]["n_watch"]) == (3, 1)
    # the listed ARR at risk counts the action rows only
    assert by_csm["C1"]["arr_at_risk_listed"] == round(3 * 0.42 * 11_819.0, 2)
    assert [r["account_id"] for r in csv_of(files, "csm/C2.csv")] == ["A5"]
    assert "A5" not in files["csm/C1.html"].decode() and "A7" not in files["csm/C1.html"].decode()
    assert [r["account_id"] for r in csv_of(files, "unassigned.csv")] == ["A7"]
    assert unassigned["n_accounts"] == 1


def test_new_csv_columns_carry_priority_facts_and_marks():
    files, _, _ = render()
    row = {r["account_id"]: r for r in csv_of(files)}
    assert row["A1"]["priority"] == f"{0.42 * 11_819.0:.4f}"
    assert (row["A1"]["last_touch_date"], row["A1"]["last_touch_kind"]) == ("2026-11-12", "call")
    assert (row["A1"]["open_tickets"], row["A1"]["open_tickets_breached"]) == ("2", "1")
    assert (row["A3"]["mark_state"], row["A3"]["mark_back"]) == ("addressed", "yes")
    assert row["A3"]["mark_reason"].startswith("back: risk 20%")
    assert row["A3"]["mark_note"] == "'=promised a discount"  # defused like every cell
    assert row["A1"]["mark_back"] == "no"


def test_a_frame_without_facts_or_marks_still_renders_and_leaves_them_out():
    old = book().drop(
        columns=[
            *["last_touch_date", "last_touch_kind", "open_tickets", "open_tickets_breached"],
            *["mark_state", "mark_hold", "mark_back", "mark_reason", "mark_note", "priority"],
            "watch_rank",
        ]
    )
    files, _, _ = render(old)
    rows = csv_of(files)
    assert [r["section"] for r in rows] == ["action"] * 3
    assert {r["open_tickets"] for r in rows} == {""} and {r["mark_back"] for r in rows} == {""}
    text = page_text(files["csm/C1.html"].decode())
    assert "last touch" not in text and "touch recorded" not in text
    assert "open ticket" not in text and "Watch:" not in text


# --- marks -----------------------------------------------------------------------------------


def test_a_mark_that_came_back_is_flagged_and_the_footer_says_how_to_mark():
    files, _, _ = render()
    html = files["csm/C1.html"].decode()
    text = page_text(html)
    assert "back on your list: risk 20% → 42% since addressed on 2026-11-02 (QBR call)" in text
    assert "your note: =promised a discount" in text
    assert text.count("back on your list") == 1
    assert "churn mark C1.csv --csm C1" in text


# --- no data-science words for CSMs ----------------------------------------------------------


def test_drift_warnings_never_reach_a_csm_and_freshness_is_in_plain_words():
    files, _, _ = render(warnings=[DRIFT, STALE, MISSING])
    html = files["csm/C1.html"].decode()
    text = page_text(html)
    assert JARGON.findall(text) == []
    assert JARGON.findall(files["csm/C1.csv"].decode()) == []
    assert (
        "The support tickets data is out of date (latest from 1 Oct 2026, 46 days before "
        "this list)" in text
    )
    assert "No CSM touchpoints data came in this week" in text
    assert csv_of(files)[0]["data_warnings"].count(" | ") == 1  # two warnings, not three


def test_the_jargon_check_can_fail():
    """A page that showed the drift message as it is would be caught."""
    assert JARGON.findall(DRIFT["message"])
    assert csm_warnings([DRIFT, {"kind": "something_new", "message": "AUC fell"}]) == []


# --- formatting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(11_819.4, "$11,819"), (0.4, "$0"), (1_250_000, "$1,250,000")]
)
def test_money(value, expected):
    assert money(value, "$") == expected


def test_human_words_for_dates_touches_and_tickets():
    assert human_date(date(2026, 11, 2)) == "2 Nov 2026"
    assert human_date(pd.Timestamp("2027-01-30")) == "30 Jan 2027"
    assert touch_text(date(2026, 11, 12), "call") == "last touch: 12 Nov 2026, call"
    assert touch_text(date(2026, 11, 12), "qbr") == "last touch: 12 Nov 2026, QBR"
    assert touch_text(pd.NaT, pd.NA) == "no touch recorded"
    assert tickets_text(2, 1) == "2 open tickets, 1 past SLA"
    assert tickets_text(1, 0) == "1 open ticket"
    assert tickets_text(0, 0) == "no open tickets"
    assert tickets_text(3, pd.NA) == "3 open tickets"
    assert tickets_text(pd.NA, pd.NA) == ""


def test_rows_show_currency_words_touch_and_tickets():
    files, _, _ = render(currency="€")
    html = files["csm/C1.html"].decode()
    text = page_text(html)
    assert "€11,819" in text and "$" not in text
    assert "Mid-market" in text and "EMEA" in text and "mid_market" not in text
    assert "last touch: 12 Nov 2026, call" in text
    assert "2 open tickets, 1 past SLA" in text
    assert '<span class="date">30 Jan 2027</span>' in html  # dates never wrap (.date nowrap)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html


def test_same_input_same_bytes():
    first, _, _ = render(warnings=[STALE])
    again, _, _ = render(warnings=[STALE])
    assert first == again
