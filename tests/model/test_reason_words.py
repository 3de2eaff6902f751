"""Reasons a person would write, and plays that fit the reason and the account.

Unit tests on hand-made frames (dormant wording, missing values, plain ranges, the play chosen
for each situation, ARR tiers from the book, determinism), then the variety of plays on the
listed rows of two simulated companies that look nothing alike (the demo, and a product-led
company on monthly billing with no users table).
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
import pytest

from features.base import DeclarationSettings
from features.plays import PLAYS, advanced_play, named_modules, play_key
from features.registry import build_registry
from pipeline.core.words import group_in_sentence, group_name
from pipeline.modeling.explain import (
    NO_DATA,
    arr_tiers,
    describe_driver,
    format_value,
    reason_codes,
    segment_norms,
    usage_silence,
)

REGISTRY = {f.name: f for f in build_registry([30, 90])}


def _book(n: int = 12, **columns) -> pd.DataFrame:
    """A point-in-time feature row per account: an active, mature, mid-sized book by default,
    with `columns` overriding the first rows (a list shorter than n fills the first rows)."""
    base = {
        "seats": [20.0] * n,
        "arr": [50_000.0] * n,  # a flat book: every account mid-tier
        "tenure_days": [400.0] * n,
        "days_to_renewal": [200.0] * n,
        "term_months": [12.0] * n,
        "active_users_30d": [8.0] * n,
        "active_users_90d": [12.0] * n,
        "active_days_30d": [20.0] * n,
        "active_days_90d": [60.0] * n,
        "days_since_last_activity": [1.0] * n,
        "days_to_first_value": [3.0] * n,
        "sla_breaches_90d": [0.0] * n,
        "trained_user_share": [0.9] * n,
        "distinct_modules_90d": [5.0] * n,
        "segment": ["smb"] * n,
    }
    for name, head in columns.items():
        values = list(base.get(name, [np.nan] * n))
        values[: len(head)] = head
        base[name] = values
    return pd.DataFrame(base)


def _explain(book: pd.DataFrame, driver: str, *, rows: int = 1, **kwargs) -> pd.DataFrame:
    """Reason codes where `driver` raises the risk of the first `rows` accounts."""
    shap = pd.DataFrame({driver: [0.5] * rows + [0.0] * (len(book) - rows)}, dtype=float)
    return reason_codes(
        shap,
        book[[driver]],
        book["segment"],
        [REGISTRY[driver]],
        top_n=3,
        account=book,
        **kwargs,
    )


# --- dormant accounts ------------------------------------------------------------------------


def test_a_dormant_account_is_said_to_be_dormant_with_its_seats():
    book = _book(active_users_30d=[0.0], active_users_90d=[0.0], active_days_30d=[0.0])
    book.loc[0, ["active_days_90d", "days_since_last_activity"]] = [0.0, 181.0]
    out = _explain(book, "active_users_90d").iloc[0]
    assert out["reasons"].startswith(
        "Product usage depth: No active users in the last 90 days (20 seats paid)"
    ), out["reasons"]
    assert "none recorded" not in out["reasons"]
    assert "re-activate the 20 paid seats" in out["plays"], out["plays"]


def test_silence_over_a_shorter_window_says_when_the_account_was_last_used():
    book = _book(active_users_30d=[0.0], active_days_30d=[0.0], days_since_last_activity=[41.0])
    silence = usage_silence(book)
    assert silence["text"].iloc[0] == (
        "No active users in the last 30 days (20 seats paid); last use 41 days ago"
    )
    assert silence["state"].iloc[0] == "dormant" and silence["window"].iloc[0] == 30
    assert silence["text"].iloc[1:].isna().all()  # active accounts are not silent


def test_no_usage_data_is_told_apart_from_zero_usage():
    never = {
        "tenure_days": [40.0],
        "active_users_30d": [0.0],
        "active_users_90d": [0.0],
        "active_days_30d": [0.0],
        "active_days_90d": [0.0],
        "days_since_last_activity": [181.0],
        "days_to_first_value": [np.nan],
    }
    absent = {c: [np.nan] for c in never if c not in ("tenure_days",)}
    silence = usage_silence(pd.concat([_book(1, **never), _book(1, **absent)], ignore_index=True))
    assert silence["text"].tolist() == [
        "No usage data for this account since it started 40 days ago (20 seats paid)",
        "No usage data for this account",
    ]
    assert silence["state"].tolist() == ["never_used", "no_data"]


def test_an_event_log_without_users_speaks_of_product_use_not_users():
    """No account of the book has an active user (events carry no user id): zero active users
    is no evidence, zero active days is."""
    book = _book(active_users_30d=[0.0] * 12, active_users_90d=[0.0] * 12, active_days_90d=[0.0])
    book.loc[0, "active_days_30d"] = 0.0
    text = usage_silence(book)["text"]
    assert text.iloc[0] == "No product use in the last 90 days (20 seats paid)"
    assert text.iloc[1:].isna().all()


def test_no_empty_value_ever_reads_none_recorded():
    """Every feature any settings can declare says what an empty value means."""
    settings = DeclarationSettings(
        windows=(30, 90),
        usage_value=True,
        event_types=("view", "error"),
        attributes=(("employees", "number"), ("channel", "category")),
        advanced_modules=("reporting",),
    )
    for feature in build_registry([30, 90], settings=settings):
        for missing in (None, float("nan"), pd.NA):
            text = format_value(feature, missing)
            assert text and "none recorded" not in text, feature.name
    assert format_value(REGISTRY["admins_trained"], None) == NO_DATA
    assert format_value(REGISTRY["days_since_last_training"], None) == "no training completed yet"


# --- plain words -----------------------------------------------------------------------------


def test_typical_ranges_and_segments_in_plain_words():
    values = pd.DataFrame({"active_users_90d": [10.0, 30.0, 50.0, 98.0, 120.0]})
    feature = REGISTRY["active_users_90d"]
    norms = segment_norms(values, pd.Series(["smb"] * 5), [feature])
    assert describe_driver(feature, 4, "smb", norms.texts).endswith("; typical for SMB: 30 to 98")
    norms = segment_norms(values, pd.Series(["mid_market"] * 5), [feature])
    text = describe_driver(feature, 4, "mid_market", norms.texts)
    assert text.endswith("; typical for mid-market: 30 to 98")
    share = REGISTRY["active_user_share_90d"]
    norms = segment_norms(
        pd.DataFrame({share.name: [0.1, 0.2, 0.3, 0.45, 0.9]}),
        *[
            pd.Series(["enterprise"] * 5),
            [share],
        ],
    )
    assert describe_driver(share, 0.05, "enterprise", norms.texts).endswith(
        "typical for enterprise: 20% to 45%"
    )
    qbr = REGISTRY["qbr_last_quarter"]
    norms = segment_norms(
        pd.DataFrame({qbr.name: [1.0, 0.0, 1.0, 0.0]}), pd.Series(["smb"] * 4), [qbr]
    )
    assert describe_driver(qbr, 0.0, "smb", norms.texts).endswith(
        ": no; yes for 50% of SMB accounts"
    )


def test_group_names_inside_a_sentence():
    cases = {
        "smb": "SMB",
        "mid_market": "mid-market",
        "enterprise": "enterprise",
        "strategic_accounts": "strategic accounts",
        "Key Accounts": "Key Accounts",
        "na": "North America",
    }
    assert {key: group_in_sentence(key) for key in cases} == cases
    assert group_name("mid_market") == "Mid-market"  # headings keep their capital
    from pipeline.stages.report.words import group_name as report_group_name

    assert report_group_name is group_name  # one mapping for the report and the lists


# --- plays for the situation -----------------------------------------------------------------


def _plays(out: pd.DataFrame, row: int) -> list[str]:
    return [p for p in out["plays"].iloc[row].split(" | ") if p]


def test_the_same_reason_gets_the_play_its_account_calls_for():
    """Support breaches on four accounts: a small one (digital), a large one (the sponsor),
    one renewing soon on a yearly term (the renewal first) and one in its first 90 days
    (onboarding recovery first)."""
    n = 12
    book = _book(n, sla_breaches_90d=[4.0, 4.0, 4.0, 4.0])
    book["arr"] = [1_000.0, 900_000.0, 50_000.0, 50_000.0] + [50_000.0] * (n - 4)
    book.loc[2, "days_to_renewal"] = 30.0
    book.loc[3, "tenure_days"] = 40.0
    out = _explain(book, "sla_breaches_90d", rows=4, renewal_window_days=90, onboarding_days=90)
    low, high, renewing, young = (_plays(out, i) for i in range(4))
    breaches = "the 4 SLA breaches of the last 90 days"
    assert low == [f"Have support review {breaches} and email the admin the fix plan."]
    assert high == [
        f"Review {breaches} with the support lead; take the recovery plan to the sponsor."
    ]
    assert renewing[0] == "Start the renewal conversation now: renews in 30 days."
    assert "4 SLA breaches" in renewing[1] and len(renewing) == 2
    assert young[0].startswith("Onboarding recovery (day 41 of 90)")
    assert len({tuple(p) for p in (low, high, renewing, young)}) == 4


def test_a_monthly_contract_is_not_sent_into_a_renewal_conversation_every_month():
    book = _book(sla_breaches_90d=[4.0], days_to_renewal=[10.0], term_months=[1.0])
    plays = _plays(_explain(book, "sla_breaches_90d", renewal_window_days=90), 0)
    assert not any("renewal" in p for p in plays) and "4 SLA breaches" in plays[0]


def test_training_modules_and_dormancy_each_get_their_own_play():
    book = _book(trained_user_share=[0.25])
    plays = _plays(_explain(book, "trained_user_share"), 0)
    assert plays == [
        "Enrol the 9 untrained active users in the basics course and book an enablement session."
    ]

    settings = DeclarationSettings(windows=(30, 90), advanced_modules=("reporting", "api_access"))
    modules = {f.name: f for f in build_registry([30, 90], settings=settings)}[
        "distinct_modules_90d"
    ]
    book = _book(distinct_modules_90d=[1.0])
    shap = pd.DataFrame({modules.name: [0.5] + [0.0] * 11})
    out = reason_codes(
        shap, book[[modules.name]], book["segment"], [modules], top_n=1, account=book
    )
    assert _plays(out, 0) == [
        "Run a workshop on the modules they do not use yet (reporting, api access); "
        "they use 1 module in 90 days."
    ]


def test_at_most_two_plays_one_per_kind():
    book = _book(sla_breaches_90d=[4.0], trained_user_share=[0.25], days_to_renewal=[20.0])
    names = ["sla_breaches_90d", "trained_user_share"]
    shap = pd.DataFrame({"sla_breaches_90d": [0.5] + [0.0] * 11, "trained_user_share": 0.0})
    shap.loc[0, "trained_user_share"] = 0.3
    out = reason_codes(
        shap,
        book[names],
        book["segment"],
        [REGISTRY[n] for n in names],
        top_n=3,
        account=book,
        renewal_window_days=90,
    )
    plays = _plays(out, 0)
    assert len(plays) == 2 and plays[0].startswith("Start the renewal conversation")
    assert out["reasons"].iloc[0].count(" | ") == 1  # both reasons stay, plays are capped
    with pytest.raises(Exception, match="max_plays"):
        reason_codes(
            shap, book[names], book["segment"], [REGISTRY[n] for n in names], top_n=3, max_plays=0
        )


def test_arr_tiers_come_from_the_book_not_from_amounts():
    arr = pd.Series([100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0])
    tiers = arr_tiers(arr)
    assert tiers.tolist() == ["low", "low", "mid", "mid", "mid", "mid", "high", "high"]
    assert arr_tiers(arr * 1_000).tolist() == tiers.tolist()  # a bigger company, same tiers
    assert set(arr_tiers(pd.Series([5_000.0] * 6))) == {"mid"}  # nobody is small in a flat book


def test_play_keys_round_trip():
    for key, text in PLAYS.items():
        if text:
            assert play_key(text) == key
    text = advanced_play(("reporting", "api_access"))
    assert play_key(text) == "advanced" and named_modules(text) == "reporting, api access"
    assert play_key("Something a company wrote itself.") is None


def test_same_input_same_text():
    book = _book(
        active_users_90d=[0.0, 3.0], active_users_30d=[0.0, 1.0], sla_breaches_90d=[2.0, 7.0]
    )
    names = ["active_users_90d", "sla_breaches_90d"]
    shap = pd.DataFrame({"active_users_90d": [0.4, 0.2] + [0.0] * 10, "sla_breaches_90d": 0.1})

    def run(frame_book, frame_shap):
        return reason_codes(
            frame_shap,
            frame_book[names],
            frame_book["segment"],
            [REGISTRY[n] for n in names],
            top_n=3,
            account=frame_book,
            renewal_window_days=90,
            onboarding_days=90,
        )

    first = run(book, shap)
    assert first.equals(run(copy.deepcopy(book), shap.copy()))
    assert first.map(lambda t: t.encode()).equals(run(book, shap).map(lambda t: t.encode()))


# --- variety on simulated companies ----------------------------------------------------------


def play_counts(accounts: pd.DataFrame) -> pd.Series:
    """How many listed rows carry each play, the account's numbers blanked out (a play that
    only differs in its numbers is the same play)."""
    listed = accounts[accounts["on_list"]]
    plays = (
        listed["plays"]
        .fillna("")
        .map(lambda text: sorted({re.sub(r"\d[\d,]*", "#", p) for p in text.split(" | ") if p}))
    )
    return plays.explode().dropna().value_counts()


def _assert_varied(accounts: pd.DataFrame, label: str) -> None:
    listed = int(accounts["on_list"].sum())
    counts = play_counts(accounts)
    assert listed >= 20, (label, listed)
    assert counts.iloc[0] <= listed / 2, (label, listed, counts.head().to_dict())
    assert len(counts) >= 6, (label, counts.to_dict())
    on_list = accounts[accounts["on_list"]]
    assert (on_list["plays"].str.count(r" \| ") <= 1).all()  # at most two plays a row
    assert not on_list["reasons"].str.contains("none recorded").any()


def test_plays_vary_on_the_demo_lists(scored_demo):
    accounts = pd.read_parquet(scored_demo["out"] / "accounts.parquet")
    _assert_varied(accounts, "demo")


@pytest.fixture(scope="module")
def plg_book(tmp_path_factory):
    """The product-led, monthly-billing profile (no users, trainings, NPS or touchpoints),
    trained and scored; its lists hold up to 15 accounts per CSM down to the low band, so
    there are enough rows to measure (the profile has few medium-risk accounts)."""
    from pipeline.stages.features import run_features
    from pipeline.stages.ingest import run_ingest
    from pipeline.stages.score import run_score
    from pipeline.stages.simulate import SimulationConfig, write_simulation
    from pipeline.stages.simulate.profiles import COMPANY_PROFILES
    from pipeline.stages.train import run_train
    from tests.conftest import default_params, make_config

    root = tmp_path_factory.mktemp("plg_book")
    params = COMPANY_PROFILES["plg_monthly"].with_params(default_params())
    simulation = SimulationConfig(
        n_accounts=300, seed=11, start_date=params["simulate"]["start_date"], profile="plg_monthly"
    )
    write_simulation(simulation, root / "raw", root / "truth")
    params["simulate"]["profile"] = "plg_monthly"
    params["base"]["as_of_date"] = str(simulation.as_of_date)
    params["ingest"]["source"] = str(root / "raw")
    params["features"]["duckdb"] = {"threads": 1}
    params["evaluate"]["capacity_per_csm"] = 15
    params["score"]["action_floor"] = "low"
    config = make_config(params)
    run_ingest(config, root / "interim")
    run_features(config, root / "interim", root / "features.parquet", root / "summary.json")
    run_train(config, root / "features.parquet", root / "models")
    run_score(
        config,
        as_of=None,
        interim_dir=root / "interim",
        model_ref=str(root / "models"),
        reference_features=None,
        out_dir=root / "lists",
    )
    return pd.read_parquet(root / "lists" / "accounts.parquet")


def test_plays_vary_on_a_product_led_company(plg_book):
    _assert_varied(plg_book, "plg_monthly")
    # monthly billing: no list row is sent into a renewal conversation
    assert not plg_book["plays"].str.contains("renewal conversation").any()
