"""CSM lists: ranking and flags on hand-made frames; hostile names defused in CSV and escaped
in HTML; each CSM's files hold only their own accounts (on the scored demo company)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from pipeline.core.config import UrgencySettings
from pipeline.core.errors import ListError
from pipeline.lists.manifest import ManifestError, parse_manifest
from pipeline.lists.ranking import (
    NO_URGENCY,
    rank_lists,
    ranking_rule,
    urgency_weight,
    watch_ranks,
    with_priority,
)
from pipeline.lists.render import (
    LIST_COLUMNS,
    defuse_cell,
    list_flags,
    render_lists,
    safe_file_names,
)
from tests.conftest import HOSTILE_NAMES

AS_OF = date(2026, 11, 16)
STAMP = {"as_of": AS_OF, "model_version": "run123", "data_version": "abc.dir"}
URGENCY = UrgencySettings(enabled=True, horizon_days=90, half_life_days=90, floor=0.5)


def scored(
    rows: list[tuple], *, rank_by: str = "expected_arr_at_risk", urgency=NO_URGENCY
) -> pd.DataFrame:
    """Scored accounts from (account, csm, arr, probability, days_to_renewal) tuples, with
    their priority (by default urgency off: priority is the rank_by column)."""
    frame = pd.DataFrame(rows, columns=["account_id", "csm_id", "arr", "probability", "days"])
    frame = frame.astype({"account_id": "string", "csm_id": "string"})
    days = frame.pop("days")
    frame = frame.assign(
        expected_arr_at_risk=frame["probability"] * frame["arr"],
        snapshot_date=AS_OF,
        renewal_date=[AS_OF + timedelta(days=int(d)) for d in days],
        days_to_renewal=days,
    )
    return with_priority(frame, rank_by=rank_by, urgency=urgency)


def shown(ranks: pd.Series) -> list:
    return ranks.astype(object).where(ranks.notna(), None).tolist()


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
    ranks = rank_lists(frame, capacity=3, floor=0.0)
    assert shown(ranks) == [3, 2, 1, None, 1, 1, 2]
    by_probability = with_priority(frame, rank_by="probability", urgency=NO_URGENCY)
    assert shown(rank_lists(by_probability, capacity=1, floor=0.0)) == [
        None,
        None,
        None,
        1,
        1,
        None,
        1,
    ]
    with pytest.raises(ListError, match="priority"):
        rank_lists(frame.drop(columns="priority"), capacity=1, floor=0.0)


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
    ranks = rank_lists(frame, capacity=2, floor=0.15)
    assert shown(ranks) == [1, None, 2, None, 1]
    assert frame.loc[ranks.notna().to_numpy(), "probability"].min() >= 0.15
    # floor 0 lists every account, as before the floor existed.
    assert rank_lists(frame, capacity=2, floor=0.0).notna().sum() == 4
    with pytest.raises(ListError, match="floor"):
        rank_lists(frame, capacity=2, floor=1.5)


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
        every = list(csv.DictReader(io.StringIO((out / entry["csv"]).read_text())))
        assert every and all(owner[row["account_id"]] == entry["csm_id"] for row in every)
        rows = [row for row in every if row["section"] == "action"]  # then the watch rows
        assert [row["section"] for row in every[len(rows) :]] == ["watch"] * entry["n_watch"]
        ids = [row["account_id"] for row in rows]
        assert ids and all(owner[a] == entry["csm_id"] for a in ids)
        assert len(ids) == entry["n_accounts"] <= manifest["capacity_per_csm"]
        assert [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))
        expected = listed[listed["csm_id"] == entry["csm_id"]].sort_values("list_rank")
        assert ids == expected["account_id"].tolist()
        html = (out / entry["html"]).read_text()
        others = set(accounts["account_id"]) - {row["account_id"] for row in every}
        assert all(a in html for a in ids)
        assert all(f'<span class="context">{a}\n' in html for a in ids)
        assert not any(f'<span class="context">{a}\n' in html for a in others)
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


# --- urgency, the watch section and the rule -------------------------------------------------


def test_urgency_weight_is_bounded_monotone_and_one_within_the_horizon():
    days = np.array([-5, 0, 90, 91, 180, 365, 3650, np.nan])
    weight = urgency_weight(days, URGENCY)
    assert weight[:3].tolist() == [1.0, 1.0, 1.0]
    assert weight[4] == pytest.approx(0.75)  # one half-life past the horizon
    assert (np.diff(weight[:7]) <= 0).all() and (weight[:7] >= 0.5).all()
    assert weight[6] > 0.5 - 1e-12 and weight[6] < 0.51  # never 0, down to the floor
    assert weight[7] == 0.5  # unknown renewal: no urgency lift
    assert (urgency_weight(days, NO_URGENCY) == 1.0).all()


def test_sooner_renewal_ranks_first_at_equal_value_and_urgency_off_keeps_the_old_order():
    rows = [
        ("A", "C1", 100.0, 0.5, 400),  # 50 at risk, renewing in 400 days
        ("B", "C1", 100.0, 0.5, 20),  # 50 at risk, renewing in 20 days
        ("C", "C1", 110.0, 0.5, 700),  # 55 at risk, renewing in about two years
    ]
    urgent = scored(rows, urgency=URGENCY)
    assert shown(rank_lists(urgent, capacity=3, floor=0.0)) == [3, 1, 2]
    assert urgent["priority"].tolist()[1] == 50.0
    plain = scored(rows)
    assert shown(rank_lists(plain, capacity=3, floor=0.0)) == [2, 3, 1]
    assert plain["priority"].tolist() == plain["expected_arr_at_risk"].tolist()


def watch_frame() -> pd.DataFrame:
    """Below a 0.15 floor unless said; change = probability since last week."""
    frame = scored(
        [
            ("A", "C1", 1000.0, 0.10, 300),  # rose 0.06: watch
            ("B", "C1", 100.0, 0.10, 30),  # renews soon: watch
            ("C", "C1", 5000.0, 0.10, 300),  # steady, far renewal: not on watch
            ("D", "C1", 900.0, 0.12, 10),  # renews soon, but held by a mark
            ("E", "C1", 800.0, 0.50, 10),  # above the floor: on the action list
            ("F", "C1", 50.0, 0.05, 60),  # renews soon, lowest priority: cut by the cap
            ("G", None, 300.0, 0.10, 30),  # unassigned: watched on the unassigned list
        ]
    )
    frame["probability_change"] = pd.array([0.06, 0.0, 0.01, 0.0, 0.0, pd.NA, 0.0], "Float64")
    frame["mark_hold"] = [False, False, False, True, False, False, False]
    frame["list_rank"] = rank_lists(frame[~frame["mark_hold"]], capacity=5, floor=0.15)
    return frame


def test_watch_holds_risen_or_renewing_accounts_below_the_floor_by_priority_up_to_the_cap():
    frame = watch_frame()
    watch = watch_ranks(
        frame, capacity=2, floor=0.15, change_threshold=0.05, renewal_window_days=90
    )
    assert shown(watch) == [1, 2, None, None, None, None, 1]
    assert not (watch.notna() & frame["list_rank"].notna()).any()  # never both
    wider = watch_ranks(
        frame, capacity=3, floor=0.15, change_threshold=0.05, renewal_window_days=90
    )
    assert shown(wider) == [1, 2, None, None, None, 3, 1]
    # the mark is what keeps D (108 at risk) off: unheld, it tops A and pushes B out
    unheld = frame.assign(mark_hold=False)
    assert shown(
        watch_ranks(unheld, capacity=2, floor=0.15, change_threshold=0.05, renewal_window_days=90)
    ) == [2, None, None, 1, None, None, 1]
    off = watch_ranks(frame, capacity=0, floor=0.15, change_threshold=0.05, renewal_window_days=90)
    assert off.isna().all()
    nothing_below = watch_ranks(
        frame, capacity=3, floor=0.0, change_threshold=0.05, renewal_window_days=90
    )
    assert nothing_below.isna().all()
    with pytest.raises(ListError, match="watch capacity"):
        watch_ranks(frame, capacity=-1, floor=0.15, change_threshold=0.05, renewal_window_days=90)


def test_the_ranking_rule_is_recorded_and_old_manifests_still_parse(scored_demo):
    rule = ranking_rule(
        rank_by="expected_arr_at_risk",
        action_floor="medium",
        floor=0.15,
        urgency=URGENCY,
        capacity=5,
        watch_per_csm=3,
        change_threshold=0.05,
        renewal_window_days=90,
    )
    assert rule["urgency"] == URGENCY.model_dump() and rule["floor_probability"] == 0.15
    assert "15%" in rule["summary"] and "90 days" in rule["summary"]
    manifest = dict(scored_demo["manifest"])
    assert manifest["ranking"]["rank_by"] == manifest["rank_by"]
    assert manifest["ranking"]["order_by"] == "priority"
    old = {k: v for k, v in manifest.items() if k not in ("ranking", "n_watch")}
    old["csms"] = [{k: v for k, v in e.items() if k != "n_watch"} for e in manifest["csms"]]
    assert parse_manifest(old).ranking is None
    with pytest.raises(ManifestError, match="ranking"):
        parse_manifest({**manifest, "ranking": {**manifest["ranking"], "typo": 1}})


def test_demo_watch_section_is_below_the_floor_capped_and_never_on_the_action_list(scored_demo):
    accounts = pd.read_parquet(scored_demo["out"] / "accounts.parquet")
    config = scored_demo["config"]
    watched = accounts[accounts["watch_rank"].notna()]
    assert not (accounts["watch_rank"].notna() & accounts["list_rank"].notna()).any()
    assert (watched["probability"] < config.score.risk_bands.medium).all()
    assert watched.groupby("csm_id", dropna=False).size().max() <= config.score.watch_per_csm
    assert int(scored_demo["manifest"]["n_watch"]) == len(watched)
    # priority: expected ARR at risk x an urgency weight in [floor, 1]
    ratio = accounts["priority"] / accounts["expected_arr_at_risk"]
    assert ratio.between(config.score.urgency.floor - 1e-9, 1 + 1e-9).all()
    soon = accounts["days_to_renewal"] <= config.score.urgency.horizon_days
    assert np.allclose(accounts.loc[soon, "priority"], accounts.loc[soon, "expected_arr_at_risk"])
