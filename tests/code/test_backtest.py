"""Weekly replay backtest: lists, precision, lead time and stability on hand-made frames, plus one
run of the stage's edge on a small simulated company with a trained model."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from pipeline.core.config import UrgencySettings
from pipeline.core.errors import BacktestError, ChurnError, ConfigError, ListError
from pipeline.core.labels import LabelRule, censor_undecided
from pipeline.lists.ranking import NO_URGENCY, rank_lists, weekly_lists, with_priority
from pipeline.stages.backtest import (
    WEEKLY_COLUMNS,
    backtest_metrics,
    churn_warnings,
    list_changes,
    run_backtest,
    scored_frame,
    weekly_figures,
    weighted_median,
)
from tests.conftest import make_config

MONDAY = date(2024, 1, 1)
FAR = date(2025, 6, 30)
# No floor, no urgency: the tests of the replay's figures rank by the rank_by column alone.
PLAIN = {"floor": 0.0, "urgency": NO_URGENCY}


def week(n: int) -> date:
    return MONDAY + timedelta(weeks=n)


def scored(rows: list[tuple]) -> pd.DataFrame:
    """A scored frame from (account, week, csm, arr, probability, renewal, churned) tuples."""
    frame = pd.DataFrame(
        rows,
        columns=[
            "account_id",
            "snapshot_date",
            "csm_id",
            "arr",
            "probability",
            "renewal_date",
            "churned",
        ],
    )
    frame = frame.astype(
        {"account_id": "string", "csm_id": "string", "arr": "float64", "churned": "Float64"}
    )
    return frame.assign(expected_arr_at_risk=frame["probability"] * frame["arr"])


def listed(lists: pd.DataFrame, csm: str, when: date) -> list[str]:
    rows = lists[(lists["csm_id"] == csm) & (lists["snapshot_date"] == when)]
    return rows.sort_values("rank")["account_id"].tolist()


# --- lists -----------------------------------------------------------------------------------


@pytest.fixture
def one_book() -> pd.DataFrame:
    """One CSM, one week; expected ARR at risk: A 50, B 200, C 9, D 10."""
    return scored(
        [
            ("A", MONDAY, "C1", 100.0, 0.5, FAR, 0.0),
            ("B", MONDAY, "C1", 1000.0, 0.2, FAR, 1.0),
            ("C", MONDAY, "C1", 10.0, 0.9, FAR, None),
            ("D", MONDAY, "C1", 100.0, 0.1, FAR, 0.0),
        ]
    )


def test_lists_rank_by_expected_arr_at_risk_and_cut_at_capacity(one_book):
    lists = weekly_lists(one_book, capacity=2, rank_by="expected_arr_at_risk", **PLAIN)
    assert listed(lists, "C1", MONDAY) == ["B", "A"]
    assert lists["rank"].tolist() == [1, 2]


def test_lists_rank_by_probability(one_book):
    lists = weekly_lists(one_book, capacity=3, rank_by="probability", **PLAIN)
    assert listed(lists, "C1", MONDAY) == ["C", "A", "B"]


def test_capacity_above_book_size_lists_the_whole_book(one_book):
    lists = weekly_lists(one_book, capacity=10, rank_by="expected_arr_at_risk", **PLAIN)
    assert listed(lists, "C1", MONDAY) == ["B", "A", "D", "C"]


def test_ties_are_broken_by_account_id():
    frame = scored([(name, MONDAY, "C1", 100.0, 0.3, FAR, 0.0) for name in ["Q", "B", "M", "A"]])
    lists = weekly_lists(frame, capacity=3, rank_by="probability", **PLAIN)
    assert listed(lists, "C1", MONDAY) == ["A", "B", "M"]


def test_a_csm_list_holds_only_that_csm_accounts():
    frame = scored(
        [
            ("A1", MONDAY, "C1", 100.0, 0.10, FAR, 0.0),
            ("A2", MONDAY, "C1", 100.0, 0.20, FAR, 0.0),
            ("B1", MONDAY, "C2", 100.0, 0.90, FAR, 0.0),
            ("B2", MONDAY, "C2", 100.0, 0.80, FAR, 0.0),
            ("B3", MONDAY, "C2", 100.0, 0.70, FAR, 0.0),
            ("X", MONDAY, None, 1e6, 0.99, FAR, 0.0),  # no CSM: on nobody's list
        ]
    )
    lists = weekly_lists(frame, capacity=2, rank_by="expected_arr_at_risk", **PLAIN)
    assert listed(lists, "C1", MONDAY) == ["A2", "A1"]
    assert listed(lists, "C2", MONDAY) == ["B1", "B2"]
    assert "X" not in set(lists["account_id"])
    owner = frame.set_index("account_id")["csm_id"]
    assert (lists["csm_id"].to_numpy() == owner[lists["account_id"]].to_numpy()).all()


def test_lists_are_made_per_week():
    frame = scored(
        [
            ("A", week(0), "C1", 100.0, 0.9, FAR, 0.0),
            ("B", week(0), "C1", 100.0, 0.1, FAR, 0.0),
            ("A", week(1), "C1", 100.0, 0.1, FAR, 0.0),
            ("B", week(1), "C1", 100.0, 0.9, FAR, 0.0),
        ]
    )
    lists = weekly_lists(frame, capacity=1, rank_by="probability", **PLAIN)
    assert listed(lists, "C1", week(0)) == ["A"]
    assert listed(lists, "C1", week(1)) == ["B"]


def test_the_replay_applies_the_action_floor(one_book):
    """The replay measures the lists CSMs get: B (200 at risk, probability 0.2) and D (0.1)
    are below a 0.35 floor and on no replayed list, however much ARR they carry."""
    lists = weekly_lists(
        one_book, capacity=4, rank_by="expected_arr_at_risk", floor=0.35, urgency=NO_URGENCY
    )
    assert listed(lists, "C1", MONDAY) == ["A", "C"]
    assert (lists["probability"] >= 0.35).all()
    with pytest.raises(ListError, match="floor"):
        weekly_lists(one_book, capacity=2, rank_by="probability", floor=-0.1, urgency=NO_URGENCY)


def test_the_replay_ranks_sooner_renewals_first_at_equal_value():
    """Same expected ARR at risk: the renewal inside the urgency horizon ranks first; with
    urgency off the order falls back to rank_by and account_id."""
    frame = scored(
        [
            ("A", MONDAY, "C1", 100.0, 0.5, MONDAY + timedelta(days=400), 0.0),
            ("B", MONDAY, "C1", 100.0, 0.5, MONDAY + timedelta(days=30), 0.0),
        ]
    )
    urgency = UrgencySettings(horizon_days=90, half_life_days=90, floor=0.5)
    lists = weekly_lists(
        frame, capacity=2, rank_by="expected_arr_at_risk", floor=0.0, urgency=urgency
    )
    assert listed(lists, "C1", MONDAY) == ["B", "A"]
    assert lists.set_index("account_id")["priority"]["B"] == 50.0
    assert lists.set_index("account_id")["priority"]["A"] < 50.0
    plain = weekly_lists(frame, capacity=2, rank_by="expected_arr_at_risk", **PLAIN)
    assert listed(plain, "C1", MONDAY) == ["A", "B"]
    assert plain["priority"].tolist() == plain["expected_arr_at_risk"].tolist()


def test_the_replay_and_the_weekly_lists_are_one_ranking():
    """Each replayed week holds exactly the accounts `rank_lists` puts on the CSMs' lists that
    week, in the same order (accounts without a CSM aside: nobody acts on them in the past)."""
    frame = random_scored(7)
    urgency = UrgencySettings(horizon_days=60, half_life_days=30, floor=0.3)
    lists = weekly_lists(
        frame, capacity=3, rank_by="expected_arr_at_risk", floor=0.4, urgency=urgency
    )
    assert len(lists) and (lists["probability"] >= 0.4).all()
    for when, week_rows in frame.groupby("snapshot_date"):
        one_week = with_priority(
            week_rows.reset_index(drop=True), rank_by="expected_arr_at_risk", urgency=urgency
        )
        ranks = rank_lists(one_week, capacity=3, floor=0.4)
        on_lists = one_week.assign(rank=ranks)[ranks.notna() & one_week["csm_id"].notna()]
        for csm, rows in on_lists.groupby("csm_id"):
            assert listed(lists, csm, when) == rows.sort_values("rank")["account_id"].tolist()
        replayed = lists[lists["snapshot_date"] == when]
        assert len(replayed) == len(on_lists)


# --- precision and recall --------------------------------------------------------------------


@pytest.fixture
def two_weeks() -> pd.DataFrame:
    """Capacity 2 by probability lists A, B in week 0 and B, C in week 1."""
    return scored(
        [
            ("A", week(0), "C1", 100.0, 0.90, FAR, 1.0),
            ("B", week(0), "C1", 100.0, 0.80, FAR, None),  # listed but censored
            ("C", week(0), "C1", 100.0, 0.10, FAR, 1.0),  # churned, missed
            ("D", week(0), "C1", 100.0, 0.05, FAR, 0.0),
            ("A", week(1), "C1", 100.0, 0.10, FAR, 1.0),  # churned, missed
            ("B", week(1), "C1", 100.0, 0.90, FAR, 0.0),
            ("C", week(1), "C1", 100.0, 0.80, FAR, 1.0),
            ("D", week(1), "C1", 100.0, 0.05, FAR, 0.0),
        ]
    )


def test_precision_and_recall_at_capacity_leave_censored_rows_out(two_weeks):
    lists = weekly_lists(two_weeks, capacity=2, rank_by="probability", **PLAIN)
    metrics = backtest_metrics(lists, two_weeks, lead_days=60)
    # listed: A(1), B(censored), B(0), C(1): 2 hits among 3 labelled
    assert metrics["backtest_precision_at_capacity"] == pytest.approx(2 / 3, abs=1e-6)
    # churned rows: A and C in both weeks; listed: A in week 0, C in week 1
    assert metrics["backtest_recall_at_capacity"] == pytest.approx(0.5)
    assert metrics["backtest_listed_rows"] == 4
    assert metrics["backtest_listed_censored_rows"] == 1
    assert metrics["backtest_weeks"] == 2
    assert metrics["backtest_csms"] == 1

    weekly = weekly_figures(lists, two_weeks)
    assert weekly.columns.tolist() == WEEKLY_COLUMNS
    assert weekly["week"].tolist() == [week(0), week(1)]
    assert weekly["precision_at_capacity"].tolist() == [1.0, 0.5]
    assert weekly["listed"].tolist() == [2, 2]
    assert weekly["listed_labelled"].tolist() == [1, 2]
    assert weekly["recall_at_capacity"].tolist() == [0.5, 0.5]


def test_a_week_without_labelled_listed_rows_has_no_precision():
    frame = scored([("A", MONDAY, "C1", 100.0, 0.9, FAR, None)])
    lists = weekly_lists(frame, capacity=1, rank_by="probability", **PLAIN)
    weekly = weekly_figures(lists, frame)
    assert math.isnan(weekly.loc[0, "precision_at_capacity"])
    assert math.isnan(
        backtest_metrics(lists, frame, lead_days=60)["backtest_precision_at_capacity"]
    )


def test_censor_undecided_censors_renewals_after_the_decision_date():
    frame = scored(
        [
            ("A", MONDAY, "C1", 100.0, 0.5, date(2024, 1, 20), 0.0),  # decided
            ("B", MONDAY, "C1", 100.0, 0.5, date(2024, 1, 21), 0.0),  # renewal seen early
            ("C", MONDAY, "C1", 100.0, 0.5, date(2024, 1, 10), 1.0),
        ]
    )
    before = frame.copy()
    # decided by the as-of date: renewal + 30 grace days <= 2024-02-19, i.e. renewal <= 01-20
    rule = LabelRule(horizon_days=365, grace_days=30)
    out = censor_undecided(frame, as_of=date(2024, 2, 19), rule=rule)
    assert out["churned"].tolist() == [0.0, pd.NA, 1.0]
    pd.testing.assert_frame_equal(frame, before)  # input untouched


# --- lead time -------------------------------------------------------------------------------


@pytest.fixture
def lead_case() -> pd.DataFrame:
    """Eleven weeks (2024-01-01 to 2024-03-11), capacity 1 by probability; each CSM has a
    filler account (p 0.5) that holds the list unless a churner scores 0.9.

    X (ARR 300) churns 2024-03-11 and is listed only in week 0: 70 days ahead.
    Y (ARR 100) churns 2024-03-06 and is listed only on 2024-02-05: 30 days ahead.
    Z (ARR 600) churns 2024-02-05 and is never listed.
    W churns after the replay window: not a churn event of this replay.
    """
    churners = {
        "X": ("C1", 300.0, date(2024, 3, 11), {week(0)}),
        "Y": ("C2", 100.0, date(2024, 3, 6), {date(2024, 2, 5)}),
        "Z": ("C3", 600.0, date(2024, 2, 5), set()),
        "W": ("C4", 50.0, date(2024, 4, 1), {week(0)}),
    }
    rows = []
    for n in range(11):
        when = week(n)
        for account, (csm, arr, renewal, flagged) in churners.items():
            if when <= renewal:
                p = 0.9 if when in flagged else 0.01
                rows.append((account, when, csm, arr, p, renewal, 1.0))
            rows.append((f"F{csm}", when, csm, 1000.0, 0.5, FAR, 0.0))
    return scored(rows)


def test_lead_time_counts_only_churned_arr_flagged_early_enough(lead_case):
    lists = weekly_lists(lead_case, capacity=1, rank_by="probability", **PLAIN)
    assert listed(lists, "C1", week(0)) == ["X"]
    assert listed(lists, "C2", date(2024, 2, 5)) == ["Y"]

    warnings = churn_warnings(lists, lead_case).set_index("account_id")
    assert sorted(warnings.index) == ["X", "Y", "Z"]
    assert warnings.loc["X", "warning_days"] == 70
    assert warnings.loc["Y", "warning_days"] == 30
    assert math.isnan(warnings.loc["Z", "warning_days"])

    metrics = backtest_metrics(lists, lead_case, lead_days=60)
    assert metrics["backtest_churned_renewals"] == 3
    assert metrics["backtest_churned_arr"] == 1000
    assert metrics["backtest_lead_time_arr_share"] == pytest.approx(0.3)  # X only
    assert metrics["backtest_flagged_arr_share"] == pytest.approx(0.4)  # X and Y
    # ARR-weighted: 30 days carries 100, 70 days carries 300 of 400
    assert metrics["backtest_median_warning_days"] == 70
    assert metrics["backtest_median_warning_days_unweighted"] == 50
    # renewals from 2024-03-01 (first week + 60 days) only: X and Y, 300 of 400 warned
    assert metrics["backtest_churned_renewals_eligible"] == 2
    assert metrics["backtest_lead_time_arr_share_eligible"] == pytest.approx(0.75)


def test_lead_days_is_a_threshold(lead_case):
    lists = weekly_lists(lead_case, capacity=1, rank_by="probability", **PLAIN)
    assert backtest_metrics(lists, lead_case, lead_days=30)[
        "backtest_lead_time_arr_share"
    ] == pytest.approx(0.4)
    assert backtest_metrics(lists, lead_case, lead_days=71)["backtest_lead_time_arr_share"] == 0


def test_a_flag_before_an_earlier_churn_is_no_warning_for_a_later_one():
    frame = scored(
        [
            ("A", week(0), "C1", 100.0, 0.9, week(1), 1.0),
            ("A", week(1), "C1", 100.0, 0.1, week(1), 1.0),
            ("F", week(1), "C1", 100.0, 0.5, FAR, 0.0),
            ("A", week(2), "C1", 100.0, 0.1, week(3), 1.0),  # won back, churns again
            ("F", week(2), "C1", 100.0, 0.5, FAR, 0.0),
            ("A", week(3), "C1", 100.0, 0.1, week(3), 1.0),
            ("F", week(3), "C1", 100.0, 0.5, FAR, 0.0),
        ]
    )
    lists = weekly_lists(frame, capacity=1, rank_by="probability", **PLAIN)
    warnings = churn_warnings(lists, frame).set_index("renewal_date")
    assert warnings.loc[week(1), "warning_days"] == 7
    assert math.isnan(warnings.loc[week(3), "warning_days"])


def test_weighted_median():
    assert weighted_median(np.array([30.0, 70.0]), np.array([100.0, 300.0])) == 70
    assert weighted_median(np.array([5.0, 1.0, 3.0]), np.ones(3)) == 3
    assert math.isnan(weighted_median(np.array([]), np.array([])))


# --- stability -------------------------------------------------------------------------------


@pytest.fixture
def stability_case() -> pd.DataFrame:
    """Capacity 2 by probability. C1 lists {A, B}, {B, C}, {B, C}; C2 lists {D}, {D}, {E}."""
    p = {0: {"A": 0.9, "B": 0.8, "C": 0.1}, 1: {"A": 0.1, "B": 0.8, "C": 0.9}}
    p[2] = p[1]
    rows = [
        (account, week(n), "C1", 100.0, p[n][account], FAR, 0.0)
        for n in range(3)
        for account in "ABC"
    ]
    rows += [
        ("D", week(0), "C2", 100.0, 0.5, FAR, 0.0),
        ("D", week(1), "C2", 100.0, 0.5, FAR, 0.0),
        ("E", week(2), "C2", 100.0, 0.5, FAR, 0.0),
    ]
    return scored(rows)


def test_jaccard_and_new_entries(stability_case):
    lists = weekly_lists(stability_case, capacity=2, rank_by="probability", **PLAIN)
    assert listed(lists, "C1", week(1)) == ["C", "B"]
    metrics = backtest_metrics(lists, stability_case, lead_days=60)
    # C1: 1/3 then 1; C2: 1 then 0
    assert metrics["backtest_jaccard_week_over_week"] == pytest.approx(7 / 12, abs=1e-6)
    # C1: 1 then 0; C2: 0 then 1
    assert metrics["backtest_new_entries_per_list"] == pytest.approx(0.5)

    weekly = weekly_figures(lists, stability_case)
    assert math.isnan(weekly.loc[0, "jaccard_vs_previous"])
    assert math.isnan(weekly.loc[0, "new_entries"])
    assert weekly["jaccard_vs_previous"].tolist()[1:] == pytest.approx([2 / 3, 0.5])
    assert weekly["new_entries"].tolist()[1:] == pytest.approx([0.5, 0.5])


def test_a_list_that_empties_has_jaccard_zero_and_two_empty_lists_none():
    lists = pd.DataFrame(
        {"csm_id": ["C1"], "snapshot_date": [week(0)], "account_id": ["A"]}
    ).astype({"csm_id": "string", "account_id": "string"})
    changes = list_changes(lists, [week(0), week(1), week(2)])
    assert changes["jaccard"].tolist()[0] == 0
    assert math.isnan(changes["jaccard"].tolist()[1])
    assert changes["new_entries"].isna().all()


# --- determinism and inputs ------------------------------------------------------------------


def random_scored(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(12):
        for a in range(30):
            rows.append(
                (
                    f"A{a:02d}",
                    week(n),
                    f"C{a % 3}",
                    float(rng.choice([1000, 5000, 20000])),
                    round(float(rng.uniform()), 1),  # coarse: many ties
                    week(int(rng.integers(2, 40))),
                    rng.choice([0.0, 1.0, None]),
                )
            )
    return scored(rows)


def test_same_input_same_output_whatever_the_row_order():
    frame = random_scored(3)
    first = weekly_lists(frame, capacity=4, rank_by="expected_arr_at_risk", **PLAIN)
    again = weekly_lists(frame.copy(), capacity=4, rank_by="expected_arr_at_risk", **PLAIN)
    shuffled_frame = frame.sample(frac=1.0, random_state=5)
    shuffled = weekly_lists(shuffled_frame, capacity=4, rank_by="expected_arr_at_risk", **PLAIN)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, shuffled)
    metrics = backtest_metrics(first, frame, lead_days=60)
    assert json.dumps(metrics) == json.dumps(
        backtest_metrics(shuffled, shuffled_frame, lead_days=60)
    )
    pd.testing.assert_frame_equal(
        weekly_figures(first, frame), weekly_figures(shuffled, shuffled_frame)
    )
    assert all(isinstance(v, float) for v in metrics.values())
    assert all(k.startswith("backtest_") for k in metrics)


def test_core_functions_do_not_mutate_their_inputs():
    frame = random_scored(4)
    before = frame.copy()
    lists = weekly_lists(frame, capacity=2, rank_by="probability", **PLAIN)
    lists_before = lists.copy()
    backtest_metrics(lists, frame, lead_days=60)
    weekly_figures(lists, frame)
    pd.testing.assert_frame_equal(frame, before)
    pd.testing.assert_frame_equal(lists, lists_before)


def test_scored_frame_joins_owner_and_expected_arr_at_risk():
    table = pd.DataFrame(
        {
            "account_id": ["A", "B"],
            "snapshot_date": [MONDAY, MONDAY],
            "arr": [1000.0, 200.0],
            "renewal_date": [FAR, FAR],
            "churned": pd.array([1.0, None], dtype="Float64"),
            "seats": [5.0, 6.0],
        }
    )
    accounts = pd.DataFrame({"account_id": ["A", "B"], "csm_id": ["C1", None]})
    out = scored_frame(table, np.array([0.25, 0.5]), accounts)
    assert out["csm_id"].tolist() == ["C1", pd.NA]
    assert out["expected_arr_at_risk"].tolist() == [250.0, 100.0]
    with pytest.raises(BacktestError, match="1 probabilities for 2 feature rows"):
        scored_frame(table, np.array([0.5]), accounts)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0, "rank_by": "probability"}, "capacity"),
        ({"capacity": 2.5, "rank_by": "probability"}, "capacity"),
        ({"capacity": 2, "rank_by": "arr"}, "rank_by"),
    ],
)
def test_bad_list_arguments_are_named(one_book, kwargs, message):
    with pytest.raises(ListError, match=message):
        weekly_lists(one_book, **kwargs, **PLAIN)


def test_duplicate_rows_and_bad_lead_days_are_refused(one_book):
    with pytest.raises(ListError, match="more than one row"):
        weekly_lists(pd.concat([one_book, one_book]), capacity=1, rank_by="probability", **PLAIN)
    lists = weekly_lists(one_book, capacity=1, rank_by="probability", **PLAIN)
    with pytest.raises(BacktestError, match="lead_days"):
        backtest_metrics(lists, one_book, lead_days=-1)


def test_settings_defaults_and_errors():
    """The backtest's settings come from the typed config: the lists' ranking is score.rank_by
    (one key for one fact) and bad values stop before any work, naming the key."""
    config = make_config({"base": {"as_of_date": "2026-11-16"}})
    assert (config.evaluate.capacity_per_csm, config.score.rank_by) == (5, "expected_arr_at_risk")
    assert config.backtest.lead_days == 60
    config = make_config(
        {"base": {"as_of_date": "2026-11-16"}, "score": {"rank_by": "probability"}}
    )
    assert config.score.rank_by == "probability"
    with pytest.raises(ConfigError, match=r"backtest\.rank_by: unknown key"):
        make_config({"base": {"as_of_date": "2026-11-16"}, "backtest": {"rank_by": "arr"}})
    with pytest.raises(ConfigError, match=r"backtest\.lead_days"):
        make_config({"base": {"as_of_date": "2026-11-16"}, "backtest": {"lead_days": "soon"}})
    with pytest.raises(ConfigError, match=r"evaluate\.capacity_per_csm"):
        make_config({"base": {"as_of_date": "2026-11-16"}, "evaluate": {"capacity_per_csm": 0}})
    with pytest.raises(ConfigError, match="base"):
        make_config({})


# --- the stage's edge on a small simulated company -------------------------------------------


def demo_params(as_of: date):
    return make_config(
        {
            "base": {"seed": 1, "as_of_date": str(as_of), "renewal_grace_days": 30},
            "features": {
                "engine": "duckdb",
                "windows": [30, 90],
                "label_horizon_days": 365,
                "advanced_modules": ["automation", "analytics", "api"],
                "priority_weights": {"low": 1, "normal": 2, "high": 3, "urgent": 5},
                "duckdb": {"threads": 1},
            },
            "evaluate": {"capacity_per_csm": 3},
        }
    )


@pytest.mark.slow
def test_run_backtest_on_a_simulated_company(medium_demo, tmp_path, monkeypatch):
    """The shared trained demo (tests/conftest.py `medium_demo`) replayed week by week."""
    import pipeline.stages.backtest as backtest_stage

    config = medium_demo["config"]
    capacity = config.evaluate.capacity_per_csm
    out_metrics, out_weekly = tmp_path / "backtest.json", tmp_path / "weekly.csv"
    replayed = []

    def keep(*args, **kwargs):
        replayed.append(weekly_lists(*args, **kwargs))
        return replayed[-1]

    monkeypatch.setattr(backtest_stage, "weekly_lists", keep)
    metrics = run_backtest(
        config, medium_demo["interim"], medium_demo["models"], out_metrics, out_weekly
    )
    # The replayed lists are the CSMs' lists: at or above score.action_floor (medium band).
    (lists,) = replayed
    assert config.score.action_floor == "medium" and len(lists)
    assert (lists["probability"] >= config.score.risk_bands.medium).all()

    written = json.loads(out_metrics.read_text())
    assert written == {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
    assert all(k.startswith("backtest_") for k in written)
    assert metrics["backtest_weeks"] > 0
    assert metrics["backtest_csms"] > 0
    # every CSM gets at most `capacity` accounts a week
    assert (
        0
        < metrics["backtest_listed_rows"]
        <= capacity * metrics["backtest_csms"] * metrics["backtest_weeks"]
    )
    for key in (
        "precision_at_capacity",
        "recall_at_capacity",
        "lead_time_arr_share",
        "flagged_arr_share",
        "jaccard_week_over_week",
    ):
        assert 0.0 <= metrics[f"backtest_{key}"] <= 1.0, key
    assert metrics["backtest_lead_time_arr_share"] <= metrics["backtest_flagged_arr_share"]
    assert 0 <= metrics["backtest_new_entries_per_list"] <= capacity
    assert metrics["backtest_churned_renewals"] > 0

    weekly = pd.read_csv(out_weekly)
    assert weekly.columns.tolist() == WEEKLY_COLUMNS
    assert len(weekly) == metrics["backtest_weeks"]
    assert (pd.to_datetime(weekly["week"]).dt.day_of_week == 0).all()  # Mondays
    assert weekly["listed"].sum() == metrics["backtest_listed_rows"]
    assert weekly["precision_at_capacity"].dropna().between(0, 1).all()
    split = json.loads((medium_demo["models"] / "training_info.json").read_text())["split"]
    assert weekly["week"].min() >= split["test_start"]
    assert weekly["week"].max() <= split["test_end"]


def test_run_backtest_without_ingested_data_says_what_to_run(tmp_path):
    params = demo_params(date(2026, 11, 16))
    with pytest.raises(ChurnError, match="churn ingest"):
        run_backtest(params, tmp_path, tmp_path, tmp_path / "m.json", tmp_path / "w.csv")
