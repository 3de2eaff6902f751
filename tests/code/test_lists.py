"""CSM lists: ranking and flags on hand-made frames; hostile names defused in CSV and escaped
in HTML; each CSM's files hold only their own accounts (on the scored demo company)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pandas as pd
import pytest

from pipeline.core.errors import ListError
from pipeline.lists.ranking import rank_lists
from pipeline.lists.render import (
    LIST_COLUMNS,
    defuse_cell,
    list_flags,
    render_lists,
    safe_file_names,
)
from tests.conftest import HOSTILE_NAMES

STAMP = {"as_of": date(2026, 11, 16), "model_version": "run123", "data_version": "abc.dir"}


def scored(rows: list[tuple]) -> pd.DataFrame:
    """Scored accounts from (account, csm, arr, probability, days_to_renewal) tuples."""
    frame = pd.DataFrame(rows, columns=["account_id", "csm_id", "arr", "probability", "days"])
    frame = frame.astype({"account_id": "string", "csm_id": "string"})
    return frame.assign(
        expected_arr_at_risk=frame["probability"] * frame["arr"],
        renewal_date=date(2027, 1, 1),
        days_to_renewal=frame.pop("days"),
    )


# --- ranking and flags -----------------------------------------------------------------------


def test_lists_rank_own_accounts_break_ties_by_id_and_cut_at_capacity():
    frame = scored(
        [
            ("B", "C1", 100.0, 0.5, 10),  # 50 at risk
            ("A", "C1", 100.0, 0.5, 10),  # 50: tie with B, A first
            ("C", "C1", 1000.0, 0.1, 10),  # 100
            ("D", "C1", 10.0, 0.9, 10),  # 9: cut
            ("E", "C2", 10.0, 0.9, 10),
            ("F", None, 1e6, 0.9, 10),  # no CSM: ranked on the unassigned list
            ("G", None, 1e3, 0.95, 10),
        ]
    )
    ranks = rank_lists(frame, capacity=3, rank_by="expected_arr_at_risk")
    assert ranks.astype(object).where(ranks.notna(), None).tolist() == [3, 2, 1, None, 1, 1, 2]
    by_probability = rank_lists(frame, capacity=1, rank_by="probability")
    assert by_probability.astype(object).where(by_probability.notna(), None).tolist() == [
        None,
        None,
        None,
        1,
        1,
        None,
        1,
    ]


def test_action_list_holds_only_accounts_at_or_above_the_floor():
    # C has the most ARR at risk (100) but is below the floor: without it, C would take the top
    # slot and crowd out the riskier D at capacity 2.
    frame = scored(
        [
            ("A", "C1", 100.0, 0.5, 10),  # 50 at risk
            ("C", "C1", 1000.0, 0.1, 10),  # 100 at risk, low risk: on no list
            ("D", "C1", 10.0, 0.9, 10),  # 9 at risk, high risk
            ("E", None, 1e6, 0.05, 10),  # unassigned and low risk: on no list either
            ("F", None, 10.0, 0.15, 10),  # exactly at the floor: listed
        ]
    )
    ranks = rank_lists(frame, capacity=2, rank_by="expected_arr_at_risk", floor=0.15)
    assert ranks.astype(object).where(ranks.notna(), None).tolist() == [1, None, 2, None, 1]
    assert frame.loc[ranks.notna().to_numpy(), "probability"].min() >= 0.15
    # floor 0 lists every account, as before the floor existed.
    assert rank_lists(frame, capacity=2, rank_by="expected_arr_at_risk").notna().sum() == 4
    with pytest.raises(ListError, match="floor"):
        rank_lists(frame, capacity=2, rank_by="probability", floor=1.5)


def test_score_settings_floor_follows_the_risk_bands():
    from pipeline.stages.score import ScoreSettings

    assert ScoreSettings(capacity_per_csm=5, medium_risk=0.2).floor_probability == 0.2
    assert ScoreSettings(capacity_per_csm=5, action_floor="high").floor_probability == 0.35
    assert ScoreSettings(capacity_per_csm=5, action_floor="low").floor_probability == 0.0


def test_flags_new_risen_fallen_and_renewal():
    now = scored(
        [
            ("A", "C1", 100.0, 0.50, 30),
            ("B", "C1", 100.0, 0.20, 200),
            ("C", "C1", 100.0, 0.31, 91),
            ("D", "C1", 100.0, 0.10, 90),
        ]
    ).assign(list_rank=pd.array([1, 2, pd.NA, pd.NA], dtype="Int64"))
    before = pd.DataFrame(
        {
            "account_id": ["A", "B", "C"],
            "probability": [0.30, 0.30, 0.30],
            "list_rank": pd.array([pd.NA, 1, 2], dtype="Int64"),
        }
    )
    flags = list_flags(now, before, renewal_window_days=90, change_threshold=0.05)
    assert flags["change"].tolist() == ["risen", "fallen", "steady", "new"]
    assert flags["new_on_list"].tolist() == [True, False, False, False]
    assert flags["renewal_soon"].tolist() == [True, False, False, True]
    assert flags["probability_last_week"].isna().tolist() == [False, False, False, True]


# --- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("Acme = good", "Acme = good"),
        ("0.25", "0.25"),
    ],
)
def test_defuse_cell(raw, safe):
    assert defuse_cell(raw) == safe


def test_safe_file_names_are_unique_and_plain():
    names = safe_file_names(["CSM1", "csm1", "../etc/passwd", "<b>", ""])
    assert len(set(n.lower() for n in names.values())) == 5
    assert all(
        set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
        for n in names.values()
    )
    assert names["CSM1"] == "CSM1" and names["csm1"].startswith("csm1-")


def _hostile_accounts() -> pd.DataFrame:
    n = len(HOSTILE_NAMES)
    frame = scored([(f"A{i}", "C1", 100.0 + i, 0.5, 30) for i in range(n)])
    return frame.assign(
        account_name=HOSTILE_NAMES,
        csm_name="<b>Eve</b> =cmd",
        csm_email="eve@example.com",
        segment="smb",
        region="-emea",
        risk_band="high",
        list_rank=pd.array(range(1, n + 1), dtype="Int64"),
        renewal_soon=True,
        new_on_list=False,
        change="steady",
        probability_last_week=0.5,
        moved_most=pd.NA,
        reasons="Support and SLA breaches: SLA breaches: 4; typical for smb: 0-1",
        plays="Review open tickets <now>",
        context="",
    )


def test_hostile_names_are_defused_in_csv_and_escaped_in_html():
    warnings = [{"kind": "stale_table", "message": "<i>usage</i> is =stale"}]
    files, entries, _ = render_lists(
        _hostile_accounts(),
        stamp=STAMP,
        warnings=warnings,
        rank_by="expected_arr_at_risk",
        renewal_window_days=90,
    )
    assert [e["csv"] for e in entries] == ["csm/C1.csv"]
    text = files["csm/C1.csv"].decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == LIST_COLUMNS
    names = {row["account_name"] for row in rows}
    assert names == {"'" + n if n[0] in "=+-@" else n for n in HOSTILE_NAMES}
    assert {row["region"] for row in rows} == {"'-emea"}
    assert rows[0]["data_warnings"] == "<i>usage</i> is =stale"
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    assert all(line.startswith('"') for line in text.splitlines())

    html = files["csm/C1.html"].decode()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>Eve</b>" not in html and "&lt;b&gt;Eve&lt;/b&gt;" in html
    assert "<i>usage</i>" not in html and "&lt;now&gt;" in html
    assert "=HYPERLINK(&#34;http://x&#34;,&#34;y&#34;)" in html


# --- on the scored demo company --------------------------------------------------------------


def test_each_csm_gets_only_their_own_accounts(scored_demo):
    out, manifest = scored_demo["out"], scored_demo["manifest"]
    accounts = pd.read_parquet(out / "accounts.parquet")
    owner = dict(zip(accounts["account_id"], accounts["csm_id"], strict=True))
    listed = accounts[accounts["on_list"]]
    assert {e["csm_id"] for e in manifest["csms"]} == set(accounts["csm_id"].dropna())
    seen = []
    for entry in manifest["csms"]:
        rows = list(csv.DictReader(io.StringIO((out / entry["csv"]).read_text())))
        ids = [row["account_id"] for row in rows]
        assert ids and all(owner[a] == entry["csm_id"] for a in ids)
        assert len(ids) == entry["n_accounts"] <= manifest["capacity_per_csm"]
        assert [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))
        expected = listed[listed["csm_id"] == entry["csm_id"]].sort_values("list_rank")
        assert ids == expected["account_id"].tolist()
        html = (out / entry["html"]).read_text()
        others = set(accounts["account_id"]) - set(ids)
        assert all(a in html for a in ids)
        assert not any(f">{a}," in html for a in others)
        for row in rows:
            assert row["as_of"] == manifest["as_of"]
            assert row["model_version"] == manifest["model_version"]
            assert row["data_version"] == manifest["data_version"]
        seen += ids
    assert sorted(seen) == sorted(listed["account_id"])


def test_demo_lists_defuse_the_planted_hostile_names(scored_demo):
    out, manifest = scored_demo["out"], scored_demo["manifest"]
    hostile_csms = [e for e in manifest["csms"] if e["csm_name"] in HOSTILE_NAMES]
    assert hostile_csms, "the fixture plants hostile CSM names"
    for entry in manifest["csms"]:
        rows = list(csv.DictReader(io.StringIO((out / entry["csv"]).read_text())))
        for row in rows:
            assert not row["account_name"].startswith(("=", "+", "-", "@"))
        html = (out / entry["html"]).read_text()
        assert "<script>" not in html
    assert json.loads((out / "manifest.json").read_text())["csms"] == manifest["csms"]
