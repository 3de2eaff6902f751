"""Tests of the demo-data simulator: config, determinism, the data contract, planted realism,
and the I/O edges (`write_simulation`, `run_simulate`).

The realism tests assert the facts the rest of the pipeline relies on (churn levels by segment,
early churn, each planted driver moving both churn and its own observable signal). Margins were
checked on several seeds; the sizes are the smallest that keep them stable.
"""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import date

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import expit

from pipeline.core.config import SimulateSection, parse_config
from pipeline.core.errors import ConfigError
from pipeline.core.layout import DEMO_MARKER, TRUTH_DECISIONS
from pipeline.data import contract
from pipeline.data.contract import TABLE_ORDER, TABLES, arrow_schema
from pipeline.data.validate import ValidationContext, validate_table
from pipeline.stages.simulate import (
    MODULE_TIERS,
    RAW_TABLE_SCHEMAS,
    RAW_TABLES,
    SEGMENTS,
    TROUBLES,
    TRUTH_TABLE_SCHEMAS,
    SimulationConfig,
    company,
    iter_usage_event_chunks,
    realism_summary,
    run_simulate,
    simulate_entities,
    tables,
    vocabulary,
    write_simulation,
)
from pipeline.stages.simulate.contracts import churn_logit
from pipeline.stages.simulate.segments import PROFILES
from pipeline.stages.simulate.world import LATENT_COLUMNS, build_world

SEED = 42
AS_OF = pd.Timestamp(SimulationConfig().as_of_date, tz="UTC")


@pytest.fixture(scope="module")
def small_config() -> SimulationConfig:
    return SimulationConfig(n_accounts=400, seed=SEED, events_chunk_accounts=150)


@pytest.fixture(scope="module")
def small(small_config) -> dict[str, pd.DataFrame]:
    return simulate_entities(small_config)


@pytest.fixture(scope="module")
def small_usage(small_config, small) -> pd.DataFrame:
    return pd.concat(list(iter_usage_event_chunks(small_config, small)), ignore_index=True)


@pytest.fixture(scope="module")
def large_config() -> SimulationConfig:
    """Big enough for churn statistics by segment and trouble; entities only (no usage)."""
    return SimulationConfig(n_accounts=5000, seed=SEED)


@pytest.fixture(scope="module")
def large(large_config) -> dict[str, pd.DataFrame]:
    return simulate_entities(large_config)


@pytest.fixture(scope="module")
def medium_config() -> SimulationConfig:
    return SimulationConfig(n_accounts=1200, seed=SEED)


@pytest.fixture(scope="module")
def medium(medium_config) -> dict[str, pd.DataFrame]:
    return simulate_entities(medium_config)


@pytest.fixture(scope="module")
def medium_usage(medium_config, medium) -> pd.DataFrame:
    return pd.concat(list(iter_usage_event_chunks(medium_config, medium)), ignore_index=True)


def _trouble_of(entities: dict[str, pd.DataFrame]) -> pd.Series:
    return entities["truth_accounts"].set_index("account_id")["trouble"]


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_config_accepts_iso_strings():
    cfg = SimulationConfig(start_date="2024-01-01", as_of_date="2026-06-01")
    assert cfg.start_date == date(2024, 1, 1)
    assert cfg.as_of_date == date(2026, 6, 1)
    assert cfg.n_days == (date(2026, 6, 1) - date(2024, 1, 1)).days


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_accounts": 0}, "n_accounts"),
        ({"as_of_date": date(2023, 12, 1)}, "as_of_date"),
        ({"start_date": "2023-13-01"}, "start_date"),
        ({"seed": -1}, "seed"),
        ({"events_chunk_accounts": 0}, "events_chunk_accounts"),
        ({"segment_shares": (0.5, 0.5, 0.5)}, "segment_shares"),
        ({"trouble_share": 1.5}, "trouble_share"),
        ({"usage_intensity": 0.0}, "usage_intensity"),
        ({"renewal_grace_days": -1}, "renewal_grace_days"),
        ({"seed": 2**63}, "seed"),
        ({"churn_logit_shift": "high"}, "churn_logit_shift"),
        ({"profile": "acme"}, "profile"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SimulationConfig(**kwargs)


def test_config_defaults_are_the_simulate_sections():
    """One place holds the defaults: every setting of params.yaml's simulate section is a field
    of SimulationConfig, with the section's default."""
    section = SimulateSection()
    config = SimulationConfig()
    assert set(SimulateSection.model_fields) <= {f.name for f in fields(SimulationConfig)}
    for name in SimulateSection.model_fields:
        assert getattr(config, name) == getattr(section, name), name


def _params(**sections) -> dict:
    return {"base": {"as_of_date": "2026-11-16", "seed": 5, "renewal_grace_days": 20}, **sections}


def test_config_from_config_reads_simulate_and_base():
    config = parse_config(
        _params(simulate={"n_accounts": 250, "start_date": "2022-02-01", "trouble_share": 0.3})
    )
    sim = SimulationConfig.from_config(config)
    assert sim == SimulationConfig(
        n_accounts=250,
        start_date=date(2022, 2, 1),
        as_of_date=date(2026, 11, 16),
        seed=5,
        renewal_grace_days=20,
        trouble_share=0.3,
    )
    overridden = SimulationConfig.from_config(config, n_accounts=7, seed=9)
    assert (overridden.n_accounts, overridden.seed) == (7, 9)
    assert overridden.trouble_share == 0.3


def test_config_from_config_reads_the_profile():
    config = parse_config(_params(simulate={"profile": "plg_monthly"}))
    assert SimulationConfig.from_config(config).profile == "plg_monthly"
    assert SimulationConfig.from_config(parse_config(_params())).profile == "demo"


def test_config_from_config_rejects_what_config_cannot_check():
    too_short = parse_config(_params(simulate={"start_date": "2026-10-01"}))
    with pytest.raises(ConfigError, match="at least 120 days"):
        SimulationConfig.from_config(too_short)
    with pytest.raises(ConfigError, match="n_accounts"):
        SimulationConfig.from_config(parse_config(_params()), n_accounts=0)


@pytest.mark.parametrize("grace", [0, 1])
def test_a_short_renewal_grace_still_simulates(grace):
    """Config allows any grace >= 0 (the labels use it too); renewals then start on time."""
    config = SimulationConfig(n_accounts=200, seed=SEED, renewal_grace_days=grace)
    contracts = simulate_entities(config)["contracts"].sort_values(["account_id", "start_date"])
    nxt = contracts.groupby("account_id")["start_date"].shift(-1)
    has_next = nxt.notna()
    assert has_next.sum() > 50
    gap = pd.to_datetime(nxt[has_next]) - pd.to_datetime(contracts.loc[has_next, "end_date"])
    assert gap.between(pd.Timedelta(0), pd.Timedelta(days=grace)).all()


def test_default_config_spans_three_years_and_is_demo_sized():
    cfg = SimulationConfig()
    assert cfg.n_days >= 2.5 * 365
    assert 1000 <= cfg.n_accounts <= 2000


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_tables(small_config, small, small_usage):
    again = simulate_entities(small_config)
    assert again.keys() == small.keys()
    for name, frame in small.items():
        pd.testing.assert_frame_equal(again[name], frame, obj=name)
    usage_again = pd.concat(list(iter_usage_event_chunks(small_config, again)), ignore_index=True)
    pd.testing.assert_frame_equal(usage_again, small_usage)


def test_different_seed_gives_different_tables(small_config, small, small_usage):
    other_config = SimulationConfig(
        n_accounts=small_config.n_accounts,
        seed=SEED + 1,
        events_chunk_accounts=small_config.events_chunk_accounts,
    )
    other = simulate_entities(other_config)
    for name in ("accounts", "contracts", "users", "support_tickets", "truth_renewal_decisions"):
        assert not other[name].equals(small[name]), name
    first_chunk = next(iter_usage_event_chunks(other_config, other))
    assert not first_chunk.equals(small_usage.iloc[: len(first_chunk)].reset_index(drop=True))


# ---------------------------------------------------------------------------------------------
# Schema and contract
# ---------------------------------------------------------------------------------------------


#: What the demo leaves out of the contract: the tables and the column added after it (the
#: demo's bytes do not change when the contract grows; the profiles write them).
DEMO_OMITS_TABLES = {"satisfaction_responses", "account_attributes"}
DEMO_OMITS_COLUMNS = {"usage_events": ["value"]}


def _demo_columns(name: str) -> list[str]:
    return [c for c in TABLES[name].column_names if c not in DEMO_OMITS_COLUMNS.get(name, [])]


def test_frames_have_the_contracts_columns_and_types(small, small_usage):
    """Every demo table is simulated, with exactly the contract's columns in its order (but the
    optional ones the demo never had), and converts to the contract's Arrow types (see
    test_written_tables_pass_the_data_contract for the values)."""
    frames = {**small, "usage_events": small_usage}
    assert set(RAW_TABLES) == set(TABLES) - DEMO_OMITS_TABLES
    assert list(RAW_TABLES) == [t for t in TABLE_ORDER if t in RAW_TABLES]
    assert not any(TABLES[name].required for name in DEMO_OMITS_TABLES)
    for name in RAW_TABLES:
        frame, spec = frames[name], TABLES[name]
        assert list(frame.columns) == _demo_columns(name), name
        table = tables.to_arrow(frame, RAW_TABLE_SCHEMAS[name])
        assert table.num_rows == len(frame) > 0, name
        contract = arrow_schema(spec)
        contract_types = [contract.field(c).type for c in _demo_columns(name)]
        assert [f.type for f in table.schema] == contract_types, name
        for field in table.schema:
            if pa.types.is_timestamp(field.type):
                assert str(frame[field.name].dtype) == "datetime64[us, UTC]", (name, field.name)
            if pa.types.is_string(field.type):
                assert frame[field.name].notna().all(), (name, field.name)
    for name, schema in TRUTH_TABLE_SCHEMAS.items():
        frame = small[f"truth_{name}"]
        assert list(frame.columns) == schema.names, name
        assert tables.to_arrow(frame, schema).num_rows == len(frame)


def test_raw_schemas_are_the_contracts_with_every_column_nullable():
    """The one documented difference between a raw file and an interim one: nullability (and
    the optional columns the demo does not write)."""
    for name in RAW_TABLES:
        interim = arrow_schema(TABLES[name])
        raw = RAW_TABLE_SCHEMAS[name]
        assert raw.names == _demo_columns(name), name
        assert all(field.nullable for field in raw), name
        expected = [interim.field(c).with_nullable(True) for c in _demo_columns(name)]
        assert raw.equals(pa.schema(expected)), name
    assert set(TABLES["usage_events"].column_names) - set(
        RAW_TABLE_SCHEMAS["usage_events"].names
    ) == {"value"}
    assert not TABLES["usage_events"].column("value").required


def test_vocabularies_are_the_contracts_in_the_order_the_simulator_draws_from():
    """Generators draw indices into these tuples (role 2 is a viewer, kind 1 a meeting, the
    segment profiles follow SEGMENTS), so their order is part of the simulation."""
    assert vocabulary.SEGMENTS is contract.SEGMENTS
    assert vocabulary.USER_ROLES is contract.USER_ROLES
    assert vocabulary.TICKET_PRIORITIES is contract.TICKET_PRIORITIES
    assert vocabulary.TOUCHPOINT_KINDS is contract.TOUCHPOINT_KINDS
    assert SEGMENTS == ("smb", "mid_market", "enterprise")
    assert vocabulary.USER_ROLES == ("admin", "member", "viewer")
    assert vocabulary.TICKET_PRIORITIES == ("low", "normal", "high", "urgent")
    assert vocabulary.TOUCHPOINT_KINDS == ("call", "meeting", "qbr", "exec_sponsor")
    assert len(PROFILES) == len(SEGMENTS)
    assert set(vocabulary.MODULE_TIERS) == set(vocabulary.MODULES)
    assert set(vocabulary.MODULE_EVENT_TYPES) == set(vocabulary.MODULES)


def test_ids_are_stable_and_unique(small):
    patterns = {
        ("accounts", "account_id"): r"A\d{6}",
        ("users", "user_id"): r"U\d{7}",
        ("contracts", "contract_id"): r"C\d{7}",
        ("support_tickets", "ticket_id"): r"T\d{8}",
        ("csms", "csm_id"): r"CSM\d{3}",
    }
    for (table, column), pattern in patterns.items():
        ids = small[table][column]
        assert ids.is_unique, (table, column)
        assert ids.str.fullmatch(pattern).all(), (table, column)
    assert small["accounts"]["csm_id"].isin(small["csms"]["csm_id"]).all()
    for table in ("contracts", "users", "support_tickets", "nps_responses", "csm_touchpoints"):
        assert small[table]["account_id"].isin(small["accounts"]["account_id"]).all(), table


def test_categorical_values_are_from_the_vocabulary(small, small_usage):
    assert set(small["accounts"]["segment"]) == set(SEGMENTS)
    assert set(small["users"]["role"]) <= {"admin", "member", "viewer"}
    assert set(small["support_tickets"]["priority"]) == {"low", "normal", "high", "urgent"}
    assert set(small["csm_touchpoints"]["kind"]) == {"call", "meeting", "qbr", "exec_sponsor"}
    assert set(small_usage["module"]) == set(MODULE_TIERS)
    assert (small_usage["count"] >= 1).all()
    scores = small["nps_responses"]["score"]
    assert scores.between(0, 10).all()
    training = small["trainings"]
    assert training["score"].dropna().between(0, 100).all()
    assert training.loc[training["completed_at"].isna(), "score"].isna().all()
    assert set(small["truth_renewal_decisions"]["trouble"]) <= set(TROUBLES)


def test_usage_rows_are_daily_aggregates(small_usage):
    day = small_usage["occurred_at"].dt.floor("D")
    key = [small_usage["user_id"], day, small_usage["module"], small_usage["event_type"]]
    assert not pd.DataFrame(dict(enumerate(key))).duplicated().any()


def test_usage_chunks_are_bounded_by_accounts(small_config, small):
    chunks = list(iter_usage_event_chunks(small_config, small))
    expected = -(-small_config.n_accounts // small_config.events_chunk_accounts)
    assert len(chunks) == expected
    for chunk in chunks:
        assert chunk["account_id"].nunique() <= small_config.events_chunk_accounts


def test_usage_rejects_entities_of_another_config(small_config, small):
    other = SimulationConfig(n_accounts=small_config.n_accounts + 1, seed=SEED)
    with pytest.raises(ValueError, match="accounts"):
        next(iter_usage_event_chunks(other, small))


# ---------------------------------------------------------------------------------------------
# Time: nothing before its account or user exists, nothing at or after as_of
# ---------------------------------------------------------------------------------------------


def _assert_within(times: pd.Series, lower: pd.Series, upper: pd.Series, what: str) -> None:
    present = times.notna()
    assert (times[present] >= lower[present]).all(), f"{what}: before its lower bound"
    assert (times[present] < upper[present]).all(), f"{what}: not before its upper bound"


def test_timestamps_respect_lifetimes_and_as_of(small, small_usage):
    accounts = small["accounts"].set_index("account_id")
    users = small["users"].set_index("user_id")
    user_end = users["deactivated_at"].fillna(AS_OF)
    assert (users["deactivated_at"].dropna() < AS_OF).all()
    assert (accounts["created_at"] < AS_OF).all()
    assert (small["contracts"]["start_date"] < AS_OF.date()).all()

    def by_account(frame: pd.DataFrame, column: str) -> None:
        created = frame["account_id"].map(accounts["created_at"])
        _assert_within(frame[column], created, pd.Series(AS_OF, index=frame.index), column)

    def by_user(frame: pd.DataFrame, column: str) -> None:
        _assert_within(
            frame[column],
            frame["user_id"].map(users["created_at"]),
            frame["user_id"].map(user_end),
            column,
        )

    by_account(small["users"], "created_at")
    by_account(small["support_tickets"], "opened_at")
    by_account(small["support_tickets"], "first_response_at")
    by_account(small["support_tickets"], "resolved_at")
    by_account(small["csm_touchpoints"], "occurred_at")
    by_user(small["trainings"], "enrolled_at")
    by_user(small["trainings"], "completed_at")
    by_user(small["nps_responses"], "responded_at")
    by_user(small_usage, "occurred_at")
    by_account(small_usage, "occurred_at")
    tickets = small["support_tickets"]
    responded = tickets["first_response_at"].notna()
    assert (
        tickets.loc[responded, "first_response_at"] >= tickets.loc[responded, "opened_at"]
    ).all()
    assert tickets["resolved_at"].isna().any(), "some tickets should still be open at as_of"


def test_churned_accounts_go_silent_and_lose_their_users(medium, medium_usage):
    truth = medium["truth_accounts"].set_index("account_id")
    churned_at = truth.loc[truth["churned"], "churned_at"]
    assert len(churned_at) > 20
    users = medium["users"]
    of_churned = users[users["account_id"].isin(churned_at.index)]
    churn_time = of_churned["account_id"].map(churned_at)
    assert of_churned["deactivated_at"].notna().all()
    assert (of_churned["deactivated_at"] <= churn_time).all()
    assert (of_churned["deactivated_at"] == churn_time).any()
    for name, column in (("csm_touchpoints", "occurred_at"), ("support_tickets", "opened_at")):
        frame = medium[name]
        limit = frame["account_id"].map(churned_at)
        assert not (frame[column] >= limit).any(), name
    assert not (medium_usage["occurred_at"] >= medium_usage["account_id"].map(churned_at)).any()


# ---------------------------------------------------------------------------------------------
# Contracts and renewal decisions
# ---------------------------------------------------------------------------------------------


def test_contracts_chain_into_renewals_or_churn(medium, medium_config):
    contracts = medium["contracts"].sort_values(["account_id", "start_date"])
    assert (contracts["arr"] > 0).all()
    assert (contracts["seats"] > 0).all()
    assert (contracts["end_date"] > contracts["start_date"]).all()
    nxt = contracts.groupby("account_id")["start_date"].shift(-1)
    has_next = nxt.notna()
    gap = pd.to_datetime(nxt[has_next]) - pd.to_datetime(contracts.loc[has_next, "end_date"])
    assert gap.between(pd.Timedelta(0), pd.Timedelta(days=medium_config.renewal_grace_days)).all()
    # renewals change ARR and seats in both directions
    prev_arr = contracts.groupby("account_id")["arr"].shift(1)
    change = (contracts["arr"] / prev_arr).dropna()
    assert (change > 1.05).any()
    assert (change < 0.97).any()

    decisions = medium["truth_renewal_decisions"].set_index("contract_id")
    ended = contracts.set_index("contract_id")
    assert (decisions["decision_date"] == ended.loc[decisions.index, "end_date"]).all()
    assert (decisions["decision_date"] < AS_OF.date()).all()
    undecided = ended.index.difference(decisions.index)
    assert (ended.loc[undecided, "end_date"] >= AS_OF.date()).all()
    churned = set(decisions.index[decisions["churned"]])
    renewed = set(contracts.loc[has_next, "contract_id"])
    assert not churned & renewed
    assert set(decisions.index[~decisions["churned"]]) <= renewed
    assert decisions["true_churn_probability"].between(0, 1).all()


def test_segments_differ_like_a_real_saas_base(medium):
    accounts = medium["accounts"]
    contracts = medium["contracts"].merge(accounts[["account_id", "segment"]])
    first = contracts.groupby("account_id").head(1)
    term = (pd.to_datetime(first["end_date"]) - pd.to_datetime(first["start_date"])).dt.days
    by_segment = first.assign(term=term).groupby("segment")
    arr = by_segment["arr"].median()
    assert arr["smb"] < arr["mid_market"] < arr["enterprise"]
    seats = by_segment["seats"].median()
    assert seats["smb"] < seats["mid_market"] < seats["enterprise"]
    counts = accounts["segment"].value_counts()
    assert counts["smb"] > counts["mid_market"] > counts["enterprise"]
    monthly = by_segment["term"].apply(lambda t: (t < 32).mean())
    assert 0.2 < monthly["smb"] < 0.7
    assert monthly["mid_market"] == 0 and monthly["enterprise"] == 0
    multi_year = by_segment["term"].apply(lambda t: (t > 400).mean())
    assert multi_year["enterprise"] > 0.15 and multi_year["mid_market"] == 0
    # SMB ARR is heavy-tailed
    smb_arr = first.loc[first["segment"] == "smb", "arr"]
    assert smb_arr.quantile(0.99) > 4 * smb_arr.median()


def test_csm_portfolios_are_sized_by_segment(medium):
    accounts = medium["accounts"]
    segments_per_csm = accounts.groupby("csm_id")["segment"].nunique()
    assert (segments_per_csm == 1).all()
    portfolio = accounts.groupby(["segment", "csm_id"]).size().groupby("segment").mean()
    assert portfolio["enterprise"] < 50
    assert portfolio["smb"] > 150
    assert portfolio["enterprise"] < portfolio["mid_market"] < portfolio["smb"]


def test_accounts_are_acquired_over_the_whole_period(medium):
    created = medium["accounts"]["created_at"]
    start = pd.Timestamp(SimulationConfig().start_date, tz="UTC")
    by_year = ((created - start).dt.days // 365).value_counts()
    assert set(by_year.index) >= {0, 1, 2}
    assert (created >= AS_OF - pd.Timedelta(days=90)).sum() >= 30  # always some in onboarding


# ---------------------------------------------------------------------------------------------
# Realism: churn levels and the planted drivers
# ---------------------------------------------------------------------------------------------


def test_annual_logo_churn_by_segment_is_realistic(large, large_config):
    summary = realism_summary(large, large_config.as_of_date)
    for seg in SEGMENTS:
        assert 0.05 <= summary[f"expected_annual_churn_{seg}"] <= 0.25, seg
        assert 0.03 <= summary[f"annual_churn_{seg}"] <= 0.27, seg
    assert summary["expected_annual_churn_smb"] > summary["expected_annual_churn_enterprise"]


def test_early_decisions_churn_more(large, large_config):
    summary = realism_summary(large, large_config.as_of_date)
    assert summary["churn_rate_first_90d"] > 1.2 * summary["churn_rate_after_90d"]
    decisions = large["truth_renewal_decisions"]
    monthly = decisions[decisions["term_months"] == 1]
    early = monthly["tenure_days"] <= 90
    assert monthly.loc[early, "churned"].mean() > 2.5 * monthly.loc[~early, "churned"].mean()


def _standardised_churn_ratio(decisions: pd.DataFrame, group: pd.Series) -> pd.Series:
    """Observed churn / churn expected from the untroubled decisions of the same stratum.

    Strata (term and early tenure) matter: a monthly decision churns far less often than an
    annual one, and troubles are not spread evenly over them.
    """
    stratum = decisions["term_months"].clip(upper=12).astype(str) + (
        decisions["tenure_days"] <= 90
    ).astype(str)
    reference = decisions["trouble"] == "none"
    base_rate = decisions[reference].groupby(stratum[reference])["churned"].mean()
    expected = stratum.map(base_rate)
    frame = pd.DataFrame({"observed": decisions["churned"], "expected": expected, "g": group})
    sums = frame.groupby("g")[["observed", "expected"]].sum()
    return sums["observed"] / sums["expected"]


def test_each_trouble_raises_churn(large):
    decisions = large["truth_renewal_decisions"]
    ratio = _standardised_churn_ratio(decisions, decisions["trouble"])
    for trouble in TROUBLES[1:]:
        assert ratio[trouble] > 1.25, (trouble, ratio.round(2).to_dict())
    # poor onboarding is above all an early killer
    early = decisions["tenure_days"] <= 90
    early_churn = decisions[early].groupby("trouble")["churned"].mean()
    assert early_churn["poor_onboarding"] > 2 * early_churn["none"]
    planted = decisions.groupby("trouble")["true_churn_probability"].mean()
    assert (planted.drop("none") > planted["none"]).all()


def test_true_probability_is_exactly_what_the_recorded_drivers_imply(large, large_config):
    """No hidden per-decision noise: the oracle is a function of segment, term, tenure, whether
    it is the first renewal, and the 90-day drivers the decision records, so a model that sees
    those signals can approach it."""
    decisions = large["truth_renewal_decisions"]
    world = build_world(large_config)
    acct = decisions["account_id"].str[1:].astype(int).to_numpy() - 1
    drivers = decisions[[*LATENT_COLUMNS, "latent_health"]].to_numpy()
    first_term = (
        decisions.groupby("account_id")["decision_date"].transform("min")
        == decisions["decision_date"]
    )
    planted = churn_logit(
        world,
        acct,
        drivers,
        decisions["tenure_days"].to_numpy(),
        decisions["term_months"].to_numpy(),
        first_term.to_numpy(),
    )
    # the simulator quantises to 20 significant bits (the same bytes on every CPU), so compare
    # probabilities to that precision: a logit near p = 1 would magnify a last-bit difference
    observed = decisions["true_churn_probability"].to_numpy()
    expected = expit(planted + large_config.churn_logit_shift)
    assert abs(observed - expected).max() < 1e-5


def test_troubles_spill_into_usage(medium, medium_usage):
    """A trouble that is not about usage (support, sentiment, sponsor) still thins usage out
    after its onset: the account disengages as a whole, so every trouble shows in usage."""
    truth = medium["truth_accounts"].set_index("account_id")
    accounts = medium["accounts"].set_index("account_id")
    since = AS_OF - pd.Timedelta(days=120)
    recent = medium_usage[medium_usage["occurred_at"] >= since]
    user_days = (
        recent.assign(day=recent["occurred_at"].dt.floor("D"))
        .drop_duplicates(["user_id", "day"])
        .groupby("account_id")
        .size()
    )
    live = truth.index[~truth["churned"] & (accounts["created_at"] < since - pd.Timedelta(days=90))]
    seats = medium["contracts"].groupby("account_id")["seats"].last().reindex(live)
    per_seat = user_days.reindex(live, fill_value=0) / seats
    trouble = truth["trouble"].reindex(live)
    late = trouble.isin(["sla_breaches", "low_sentiment", "no_exec_contact"]) & (
        truth["trouble_onset_at"].reindex(live) < since
    )
    assert late.sum() > 30
    assert per_seat[late].mean() < 0.75 * per_seat[trouble == "none"].mean()


def test_latent_health_lowers_churn(large):
    decisions = large["truth_renewal_decisions"]
    tercile = pd.qcut(decisions["latent_health"], 3, labels=["low", "mid", "high"])
    churn = decisions.groupby(tercile, observed=True)["churned"].mean()
    assert churn["low"] > 1.5 * churn["mid"] > 1.5 * churn["high"]


def test_sla_breach_trouble_shows_in_tickets(large):
    tickets = large["support_tickets"]
    truth = large["truth_accounts"].set_index("account_id")
    hours = (tickets["first_response_at"] - tickets["opened_at"]).dt.total_seconds() / 3600
    breached = hours > tickets["sla_first_response_hours"]
    onset = tickets["account_id"].map(truth["trouble_onset_at"])
    troubled = tickets["account_id"].map(truth["trouble"]).eq("sla_breaches") & (
        tickets["opened_at"] >= onset
    )
    assert breached.mean() < 0.12, "most tickets meet their SLA"
    assert breached[troubled].mean() > 3 * breached[~troubled].mean()
    # enterprise SLA targets are tighter
    urgent = tickets.merge(large["accounts"][["account_id", "segment"]])
    targets = urgent[urgent["priority"] == "urgent"].groupby("segment")["sla_first_response_hours"]
    assert targets.max()["enterprise"] < targets.min()["smb"]


def test_low_training_trouble_shows_in_training_coverage(large):
    users = large["users"]
    trained = large["trainings"].dropna(subset=["completed_at"])["user_id"].unique()
    coverage = users["user_id"].isin(trained).groupby(users["account_id"]).mean()
    trouble = _trouble_of(large)
    by_trouble = coverage.groupby(trouble.reindex(coverage.index)).mean()
    assert by_trouble["low_training"] < 0.5 * by_trouble["none"]


def test_low_sentiment_trouble_shows_in_nps(large):
    nps = large["nps_responses"]
    truth = large["truth_accounts"].set_index("account_id")
    after_onset = nps["responded_at"] >= nps["account_id"].map(truth["trouble_onset_at"])
    low = nps["account_id"].map(truth["trouble"]).eq("low_sentiment") & after_onset
    clean = nps["account_id"].map(truth["trouble"]).eq("none")
    assert nps.loc[low, "score"].mean() < nps.loc[clean, "score"].mean() - 2.0


def test_no_exec_contact_trouble_shows_in_touchpoints(large):
    truth = large["truth_accounts"].set_index("account_id")
    accounts = large["accounts"].set_index("account_id")
    tp = large["csm_touchpoints"]
    tp = tp[tp["kind"] == "exec_sponsor"]
    # exposure: months alive after onset (or after signup for untroubled accounts)
    end = truth["churned_at"].fillna(AS_OF)
    begin = truth["trouble_onset_at"].where(truth["trouble"] != "none", accounts["created_at"])
    months = ((end - begin).dt.days / 30).clip(lower=0)
    after = tp["occurred_at"] >= tp["account_id"].map(begin)
    counts = tp[after].groupby("account_id").size().reindex(truth.index, fill_value=0)
    rate = {
        t: counts[truth["trouble"] == t].sum() / months[truth["trouble"] == t].sum()
        for t in ("none", "no_exec_contact")
    }
    assert rate["no_exec_contact"] < 0.4 * rate["none"]


def test_usage_depth_grows_with_tenure_and_is_planted(medium, medium_usage):
    accounts = medium["accounts"].set_index("account_id")
    usage = medium_usage
    tenure = (usage["occurred_at"] - usage["account_id"].map(accounts["created_at"])).dt.days
    advanced = usage["module"].map(MODULE_TIERS).eq("advanced")
    trouble = usage["account_id"].map(_trouble_of(medium))
    clean = trouble == "none"
    assert advanced[clean & (tenure > 300)].mean() > 2 * advanced[clean & (tenure < 45)].mean()
    assert advanced[trouble == "low_usage_depth"].mean() < 0.4 * advanced[clean].mean()
    # healthier accounts go deeper
    health = usage["account_id"].map(
        medium["truth_accounts"].set_index("account_id")["latent_health_mean"]
    )
    mature = clean & (tenure > 180)
    assert advanced[mature & (health > 0.5)].mean() > advanced[mature & (health < -0.5)].mean()


def test_poor_onboarding_shows_in_early_activation(medium, medium_usage):
    accounts = medium["accounts"].set_index("account_id")
    first_use = medium_usage.groupby("user_id")["occurred_at"].min()
    users = medium["users"]
    since_signup = users["user_id"].map(first_use) - users["account_id"].map(accounts["created_at"])
    activated = since_signup < pd.Timedelta(days=30)
    seats = medium["contracts"].groupby("account_id")["seats"].first()
    old_enough = accounts.index[accounts["created_at"] < AS_OF - pd.Timedelta(days=45)]
    share = (activated.groupby(users["account_id"]).sum() / seats).reindex(old_enough)
    by_trouble = share.groupby(_trouble_of(medium).reindex(old_enough)).mean()
    assert by_trouble["poor_onboarding"] < 0.5 * by_trouble["none"]


def test_active_users_track_latent_health(medium, medium_usage):
    recent = medium_usage[medium_usage["occurred_at"] >= AS_OF - pd.Timedelta(days=30)]
    active = recent.groupby("account_id")["user_id"].nunique()
    live = medium["truth_accounts"].query("not churned").set_index("account_id")
    seats = medium["contracts"].groupby("account_id")["seats"].last().reindex(live.index)
    ratio = (active.reindex(live.index, fill_value=0) / seats).dropna()
    final_health = live["latent_health_final"].reindex(ratio.index)
    assert ratio[final_health > 0.5].mean() > 1.2 * ratio[final_health < -0.5].mean()


# ---------------------------------------------------------------------------------------------
# The I/O edge
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_config() -> SimulationConfig:
    return SimulationConfig(n_accounts=90, seed=SEED, events_chunk_accounts=40)


def test_write_simulation_writes_every_table(tmp_path, tiny_config):
    raw, truth = tmp_path / "raw", tmp_path / "truth"
    rows = write_simulation(tiny_config, raw, truth)
    entities = simulate_entities(tiny_config)
    for name, schema in RAW_TABLE_SCHEMAS.items():
        if name == "usage_events":
            parts = sorted((raw / "usage_events").glob("part-*.parquet"))
            assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(len(parts))]
            assert len(parts) == 3
            table = pq.read_table(raw / "usage_events")
        else:
            table = pq.read_table(raw / f"{name}.parquet")
            back = table.to_pandas()
            pd.testing.assert_frame_equal(back, entities[name], obj=name)
        assert table.schema.remove_metadata().equals(schema), name
        assert rows[name] == table.num_rows, name
    for name, schema in TRUTH_TABLE_SCHEMAS.items():
        table = pq.read_table(truth / f"{name}.parquet")
        assert table.schema.remove_metadata().equals(schema), name
        assert rows[f"truth_{name}"] == table.num_rows
    assert (truth / TRUTH_DECISIONS).is_file(), "the layout's name for the decisions"
    table = pq.read_table(truth / "accounts.parquet")
    assert table.schema.field("trouble_onset_at").type == pa.timestamp("us", tz="UTC")
    assert pq.read_schema(raw / "contracts.parquet").field("start_date").type == pa.date32()
    assert not list(raw.glob("*truth*")), "truth must stay out of the raw dir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "truth"]


def test_write_simulation_replaces_and_is_atomic(tmp_path, tiny_config, monkeypatch):
    raw, truth = tmp_path / "raw", tmp_path / "truth"
    write_simulation(tiny_config, raw, truth)
    before = pq.read_table(raw / "accounts.parquet")
    (raw / "stale.txt").write_text("from an older run")

    def failing_chunks(config, entities):
        yield from []
        raise RuntimeError("interrupted")

    other = SimulationConfig(n_accounts=60, seed=SEED + 5, events_chunk_accounts=40)
    monkeypatch.setattr(company, "iter_usage_event_chunks", failing_chunks)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_simulation(other, raw, truth)
    assert pq.read_table(raw / "accounts.parquet").equals(before), "old data left untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "truth"], "no temp dirs left"

    monkeypatch.undo()
    write_simulation(other, raw, truth)
    assert pq.read_table(raw / "accounts.parquet").num_rows == 60
    assert not (raw / "stale.txt").exists(), "the raw dir is replaced as a whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "truth"]


@pytest.mark.parametrize("truth", ["raw", "raw/truth", "."])
def test_write_simulation_keeps_truth_apart(tmp_path, tiny_config, truth):
    with pytest.raises(ConfigError, match="separate directories"):
        write_simulation(tiny_config, tmp_path / "raw", tmp_path / truth)
    assert not (tmp_path / "raw").exists()


def test_written_tables_pass_the_data_contract(tmp_path, tiny_config):
    """The raw files, read back as ingest reads them, pass the contract's validation in the
    contract's order (types, nulls, vocabularies, ranges, row rules, foreign keys, time bounds):
    not one row quarantined, no column ignored, none defaulted but the optional ones the demo
    does not have."""
    raw = tmp_path / "raw"
    write_simulation(tiny_config, raw, tmp_path / "truth")
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        name if name == "usage_events" else f"{name}.parquet" for name in RAW_TABLES
    )
    context = ValidationContext(as_of=pd.Timestamp(tiny_config.as_of_date, tz="UTC"))
    for name in RAW_TABLES:
        spec = TABLES[name]
        table = pq.read_table(raw / name if name == "usage_events" else raw / f"{name}.parquet")
        assert table.schema.names == _demo_columns(name), name
        result = validate_table(table.to_pandas(), spec, context)
        assert not result.reason_counts, (name, dict(result.reason_counts))
        assert len(result.quarantined) == 0, name
        assert len(result.accepted) == table.num_rows > 0, name
        assert result.ignored_columns == [], name
        assert result.defaulted_columns == DEMO_OMITS_COLUMNS.get(name, []), name
        created = context.account_created
        if name == "accounts":
            created = result.accepted.set_index("account_id")["created_at"]
        context = ValidationContext(
            as_of=context.as_of,
            keys={**context.keys, name: result.accepted},
            account_created=created,
        )
    assert set(context.keys) == set(RAW_TABLES), "every table of the demo was checked"


def _demo_params(source, n_accounts: int = 40) -> dict:
    simulate = {"n_accounts": n_accounts, "events_chunk_accounts": 25}
    return _params(simulate=simulate, ingest={"source": str(source)})


def test_run_simulate_generates_what_params_describe(tmp_path):
    raw, truth = tmp_path / "raw", tmp_path / "truth"
    config = parse_config(_demo_params(raw))
    rows = run_simulate(config, raw_dir=raw, truth_dir=truth)
    assert rows is not None and rows["accounts"] == 40
    expected = SimulationConfig(
        n_accounts=40, events_chunk_accounts=25, seed=5, renewal_grace_days=20
    )
    back = pq.read_table(raw / "contracts.parquet").to_pandas()
    pd.testing.assert_frame_equal(back, simulate_entities(expected)["contracts"])
    assert len(list((raw / "usage_events").glob("*.parquet"))) == 2
    overridden = run_simulate(config, raw_dir=raw, truth_dir=truth, n_accounts=30, seed=6)
    assert overridden is not None and overridden["accounts"] == 30
    other_seed = SimulationConfig(n_accounts=30, events_chunk_accounts=25, seed=6)
    back = pq.read_table(raw / "accounts.parquet").to_pandas()
    pd.testing.assert_frame_equal(back, simulate_entities(other_seed)["accounts"])


def test_run_simulate_switches_the_demo_off_for_user_data(tmp_path, tiny_config):
    raw, truth = tmp_path / "demo", tmp_path / "truth"
    write_simulation(tiny_config, raw, truth)  # a demo from an earlier run
    config = parse_config(_demo_params(tmp_path / "acme"))
    assert run_simulate(config, raw_dir=raw, truth_dir=truth) is None
    for target in (raw, truth):
        assert [p.name for p in target.iterdir()] == [DEMO_MARKER], target
        assert str(tmp_path / "acme") in (target / DEMO_MARKER).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "truth"], "no temp dirs left"
    rows = run_simulate(config, raw_dir=raw, truth_dir=truth, force=True)
    assert rows is not None and rows["accounts"] == 40
    assert not (raw / DEMO_MARKER).exists() and not (truth / DEMO_MARKER).exists()


def test_run_simulate_rejects_bad_settings_before_writing(tmp_path):
    raw, truth = tmp_path / "raw", tmp_path / "truth"
    with pytest.raises(ConfigError, match="n_accounts"):
        run_simulate(parse_config(_demo_params(raw)), raw_dir=raw, truth_dir=truth, n_accounts=0)
    user_data = parse_config(_demo_params(tmp_path / "acme"))
    with pytest.raises(ConfigError, match="separate directories"):
        run_simulate(user_data, raw_dir=raw, truth_dir=raw / "truth")
    assert list(tmp_path.iterdir()) == []


def test_realism_summary_is_a_flat_dict_of_floats(small, small_config):
    summary = realism_summary(small, small_config.as_of_date)
    assert all(isinstance(v, float) for v in summary.values())
    assert {f"annual_churn_{s}" for s in SEGMENTS} <= summary.keys()
    assert re.fullmatch(r"[a-z0-9_]+", "".join(summary))
