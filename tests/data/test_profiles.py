"""Tests of the simulator's company profiles: each writes the raw shape it declares (tables,
columns, vocabularies), its params bring that shape back onto the data contract, its churn
depends on what its tables show, and the same seed gives the same bytes.

Each profile is written once per module at 300 accounts (two usage chunks); the ingest test
runs the real ingest stage on it with the profile's params.
"""

from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.core.config import SimulateSection, parse_config
from pipeline.data.contract import TABLES, TICKET_PRIORITIES
from pipeline.stages.simulate import (
    COMPANY_PROFILES,
    MODULES,
    SimulationConfig,
    company_profile,
    write_simulation,
)
from pipeline.stages.simulate.attributes import ATTRIBUTES, CHANNELS, PLAN_TIERS
from pipeline.stages.simulate.event_log import EVENT_TYPES
from pipeline.stages.simulate.event_log import MODULES as PLG_MODULES
from pipeline.stages.simulate.exports import column_names, export_schema
from pipeline.stages.simulate.plg import SLA_POLICY

ROOT = Path(__file__).resolve().parents[2]
SEED = 42
N_ACCOUNTS = 300
PROFILES = ("plg_monthly", "minimal", "other_vocabulary")
AS_OF = pd.Timestamp(SimulationConfig().as_of_date, tz="UTC")


def _config(profile: str, seed: int = SEED) -> SimulationConfig:
    return SimulationConfig(
        n_accounts=N_ACCOUNTS, seed=seed, profile=profile, events_chunk_accounts=150
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """Each profile's raw and truth directories (under one root per profile)."""
    out = {}
    for name in (*PROFILES, "demo"):
        root = tmp_path_factory.mktemp(name)
        write_simulation(_config(name), root / "raw", root / "truth")
        out[name] = root
    return out


def _read(root: Path, name: str) -> pd.DataFrame:
    path = root / "raw" / name
    return pq.read_table(path if path.is_dir() else path.with_suffix(".parquet")).to_pandas()


def _truth(root: Path, name: str = "renewal_decisions") -> pd.DataFrame:
    return pd.read_parquet(root / "truth" / f"{name}.parquet")


def _hashes(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------------------------------------
# The declarations
# ---------------------------------------------------------------------------------------------


def test_every_config_choice_is_a_declared_profile():
    choices = typing.get_args(SimulateSection.model_fields["profile"].annotation)
    assert set(COMPANY_PROFILES) == set(choices)
    for name, profile in COMPANY_PROFILES.items():
        assert profile.name == name and company_profile(name) is profile
        assert len(profile.doc) > 200, name
        for table in profile.tables:
            assert profile.raw_tables[table] in profile.doc or table in profile.doc, (name, table)
    assert COMPANY_PROFILES["demo"].params == {}


@pytest.mark.parametrize("name", PROFILES)
def test_profile_params_are_valid_params_yaml_overrides(name):
    """The overlay merges into the repository's params.yaml and parses; merging copies, so
    neither the profile nor the params change."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    before = json.dumps(base, sort_keys=True, default=str)
    profile = COMPANY_PROFILES[name]
    declared = json.dumps(profile.params, sort_keys=True)
    merged = profile.with_params(base)
    config = parse_config(merged)
    assert json.dumps(base, sort_keys=True, default=str) == before
    assert json.dumps(profile.params, sort_keys=True) == declared
    merged["ingest"]["column_map"]["accounts"] = {"x": "y"}
    assert json.dumps(profile.params, sort_keys=True) == declared
    for section, overrides in profile.params.items():
        for key, value in overrides.items():
            assert merged[section][key] is not value or not isinstance(value, dict)
    ingest = config.ingest
    assert dict(ingest.table_map) == profile.params.get("ingest", {}).get("table_map", {})


def test_with_params_merges_mappings_and_replaces_the_rest():
    profile = COMPANY_PROFILES["plg_monthly"]
    merged = profile.with_params(
        {"ingest": {"source": "x", "column_map": {"users": {"a": "b"}}}, "train": {"x": 1}}
    )
    assert merged["ingest"]["source"] == "x"
    assert merged["ingest"]["column_map"]["users"] == {"a": "b"}
    assert merged["ingest"]["column_map"]["contracts"]["cancel_at"] == "end_date"
    assert merged["train"] == {"x": 1, "test_months": 4, "valid_months": 4}
    assert merged["features"]["event_types"] == list(EVENT_TYPES)


@pytest.mark.parametrize("name", [*PROFILES, "demo"])
def test_raw_dir_holds_the_declared_tables_under_the_export_names(written, name):
    profile = COMPANY_PROFILES[name]
    raw = written[name] / "raw"
    expected = {
        stem if table == "usage_events" else f"{stem}.parquet"
        for table, stem in profile.raw_tables.items()
    }
    assert {p.name for p in raw.iterdir()} == expected
    for table, stem in profile.raw_tables.items():
        path = raw / stem if table == "usage_events" else raw / f"{stem}.parquet"
        schema = pq.read_schema(path) if path.is_file() else pq.read_table(path).schema
        assert schema.remove_metadata().equals(export_schema(profile, table)), (name, table)
        assert all(field.nullable for field in schema), (name, table)
        assert pq.read_metadata(next(iter(sorted(path.glob("*")))) if path.is_dir() else path)


def test_truth_fits_evaluate_for_every_profile(written):
    """evaluate joins the truth on (account_id, decision_date) many-to-one: unique keys, and
    probabilities in [0, 1]."""
    for name, root in written.items():
        decisions = _truth(root)
        assert len(decisions) > 100, name
        assert not decisions.duplicated(["account_id", "decision_date"]).any(), name
        assert decisions["true_churn_probability"].between(0, 1).all(), name
        assert 0.005 < decisions["churned"].mean() < 0.2, name
        assert len(_truth(root, "accounts")) == N_ACCOUNTS, name


# ---------------------------------------------------------------------------------------------
# Each export, mapped with its params, is what ingest accepts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_ingest_with_the_profile_params_accepts_every_row(written, name, tmp_path):
    """The real ingest stage on the raw export with the profile's params: nothing quarantined,
    nothing ignored but the export-only columns, and what the params derive is derived."""
    from pipeline.stages.ingest import run_ingest

    profile = COMPANY_PROFILES[name]
    params = profile.with_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    params["base"]["as_of_date"] = str(AS_OF.date())
    params["ingest"]["source"] = str(written[name] / "raw")
    run_ingest(parse_config(params), tmp_path / "interim")
    report = json.loads((tmp_path / "interim" / "validation_report.json").read_text())
    present = {t for t, e in report["tables"].items() if e["status"] == "ok"}
    assert present == set(profile.tables)
    for table in profile.tables:
        entry = report["tables"][table]
        assert entry["rows_quarantined"] == 0, (table, entry)
        assert entry["rows_read"] == entry["rows_accepted"] > 0, table
        assert set(entry["ignored_columns"]) == set(profile.extra_columns.get(table, {})), table
        lacking = [c for c in TABLES[table].column_names if c not in profile.tables[table]]
        defaulted = set(entry["defaulted_columns"])
        # what the export lacks is defaulted, or derived by the params (plg's segment)
        assert defaulted <= set(lacking), table
        assert set(lacking) - defaulted <= set(entry["derived_values"]), table
    if name == "plg_monthly":
        derived = report["tables"]["contracts"]["derived_values"]
        assert derived["billing_terms"] > 5 * N_ACCOUNTS, "monthly terms over three years"
        assert (
            derived["end_date"] == _read(written[name], "subscriptions")["cancel_at"].isna().sum()
        )
        accounts = report["tables"]["accounts"]["derived_values"]
        assert accounts["segment"] == accounts["created_at"] == N_ACCOUNTS
        tickets = report["tables"]["support_tickets"]
        assert tickets["derived_values"]["sla_first_response_hours"] == tickets["rows_accepted"]
        interim = pd.read_parquet(tmp_path / "interim" / "contracts.parquet")
        decisions = _truth(written[name])
        matched = decisions.merge(interim, on=["contract_id", "account_id"])
        assert len(matched) == len(decisions), "the truth names the terms ingest makes"
        decided = np.array(matched["decision_date"].tolist(), dtype="datetime64[D]")
        assert (decided == matched["end_date"].to_numpy("datetime64[D]")).all()


# ---------------------------------------------------------------------------------------------
# plg_monthly
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plg(written) -> dict[str, pd.DataFrame]:
    root = written["plg_monthly"]
    stems = COMPANY_PROFILES["plg_monthly"].raw_tables
    return {table: _read(root, stem) for table, stem in stems.items()}


def test_plg_accounts_have_no_segment_no_signup_date_and_partial_ownership(plg):
    accounts = plg["accounts"]
    assert list(accounts.columns) == ["customer_id", "company", "region", "csm_id"]
    owner = accounts["csm_id"]
    known = owner.isin(plg["csms"]["csm_id"])
    assert owner.isna().sum() > 50, "tech-touch accounts have no CSM"
    assert known.sum() > 20
    assert (owner.notna() & ~known).sum() >= 1, "some name a CSM the csms table lacks"
    assert accounts["customer_id"].str.fullmatch(r"cus_\d{6}").all()


def test_plg_subscriptions_are_open_ended_or_end_on_a_billing_date(plg):
    subs = plg["contracts"]
    assert list(subs.columns) == [
        "subscription_id",
        "customer_id",
        "started_on",
        "cancel_at",
        "arr",
        "quantity",
        "plan",
        "canceled_at",
    ]
    assert subs["customer_id"].is_unique and len(subs) == N_ACCOUNTS
    running = subs["cancel_at"].isna()
    assert 30 < running.sum() < len(subs) - 30, "some run at as_of, some were cancelled"
    assert subs.loc[running, "canceled_at"].isna().all()
    ended = subs[~running]
    start = pd.to_datetime(ended["started_on"])
    end = pd.to_datetime(ended["cancel_at"])
    months = (end.dt.year - start.dt.year) * 12 + end.dt.month - start.dt.month
    billing = pd.Series(
        [s + pd.DateOffset(months=int(m)) for s, m in zip(start, months, strict=True)],
        index=ended.index,
    )
    assert (months >= 1).all()
    assert (billing == end).all(), "a cancelled subscription ends on a billing date"
    previous = pd.Series(
        [s + pd.DateOffset(months=int(m) - 1) for s, m in zip(start, months, strict=True)],
        index=ended.index,
    ).dt.tz_localize("UTC")
    click = ended["canceled_at"]
    assert (click >= previous).all() and (click < end.dt.tz_localize("UTC")).all()
    assert (click.dt.floor("D").dt.tz_localize(None) != end).all(), "never the click's date"
    assert (end < AS_OF.tz_localize(None)).all()


def test_plg_arr_is_twelve_times_a_monthly_seat_price(plg):
    subs = plg["contracts"]
    list_price = subs["plan"].map({"Starter": 15.0, "Team": 29.0, "Business": 49.0})
    monthly_seat = subs["arr"] / 12.0 / subs["quantity"]
    assert list_price.notna().all()
    assert monthly_seat.between(0.7 * list_price - 0.01, list_price + 0.01).all()
    assert (monthly_seat.round(2) == list_price).mean() > 0.7


def test_plg_events_are_account_level_with_its_own_modules_types_and_minutes(plg):
    events = plg["usage_events"]
    assert list(events.columns) == [
        "customer_id",
        "timestamp",
        "product_area",
        "action",
        "events",
        "minutes",
    ]
    assert "users" not in plg
    assert set(events["product_area"]) == set(PLG_MODULES)
    assert not set(PLG_MODULES) & set(MODULES), "none of the demo's module names"
    assert (
        set(events["action"])
        == set(EVENT_TYPES)
        == {
            "view",
            "create",
            "share",
            "export",
            "invite",
            "error",
        }
    )
    errors = events["action"] == "error"
    assert events.loc[errors, "minutes"].isna().all()
    assert events.loc[~errors, "minutes"].notna().all()
    assert (events.loc[~errors, "minutes"] >= 0).all() and (events["events"] >= 1).all()
    assert (events["timestamp"] < AS_OF).all()
    key = [events["customer_id"], events["timestamp"].dt.floor("D"), events["product_area"]]
    assert not pd.concat([*key, events["action"]], axis=1).duplicated().any()


def test_plg_tickets_have_no_sla_targets_and_csat_is_one_to_five(plg):
    tickets = plg["support_tickets"]
    assert "sla_first_response_hours" not in tickets and "sla_resolution_hours" not in tickets
    assert set(tickets["priority"]) == set(TICKET_PRIORITIES) == set(SLA_POLICY)
    csat = plg["satisfaction_responses"]
    assert list(csat.columns) == [
        "organization_id",
        "requester_id",
        "created_at",
        "survey",
        "rating",
    ]
    assert set(csat["survey"]) == {"CSAT"}
    assert set(csat["rating"]) <= {1.0, 2.0, 3.0, 4.0, 5.0} and csat["rating"].nunique() >= 4
    anonymous = csat["requester_id"].isna()
    assert 0.1 < anonymous.mean() < 0.9, "ticket surveys name the requester, the pulse does not"


def test_plg_churn_is_monthly_and_follows_usage_tickets_and_csat(plg, written):
    decisions = _truth(written["plg_monthly"])
    assert (decisions["term_months"] == 1).all()
    assert decisions.groupby("account_id").size().max() > 24, "a decision every month"
    subs = plg["contracts"].set_index("customer_id")
    end = pd.to_datetime(subs["cancel_at"]).fillna(AS_OF.tz_localize(None))
    lived = (end - pd.to_datetime(subs["started_on"])).dt.days.clip(lower=1)
    events = plg["usage_events"]
    per_account = pd.DataFrame(
        {
            "risk": decisions.groupby("account_id")["true_churn_probability"].mean(),
            "active_days": events.groupby("customer_id")["timestamp"]
            .agg(lambda t: t.dt.floor("D").nunique())
            .div(lived),
            "csat": plg["satisfaction_responses"].groupby("organization_id")["rating"].mean(),
            "error_share": events[events["action"] == "error"]
            .groupby("customer_id")["events"]
            .sum()
            .div(events.groupby("customer_id")["events"].sum()),
        }
    )
    corr = per_account.corr("spearman")["risk"]
    assert corr["active_days"] < -0.4
    assert corr["csat"] < -0.2
    assert corr["error_share"] > 0.2
    cancelled = decisions[decisions["churned"]]
    assert len(cancelled) == subs["cancel_at"].notna().sum()


# ---------------------------------------------------------------------------------------------
# minimal
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minimal(written) -> dict[str, pd.DataFrame]:
    root = written["minimal"]
    return {t: _read(root, s) for t, s in COMPANY_PROFILES["minimal"].raw_tables.items()}


def test_minimal_has_only_the_required_tables_and_attributes_and_no_csm(minimal):
    assert set(minimal) == {"accounts", "contracts", "usage_events", "account_attributes"}
    assert {t for t, spec in TABLES.items() if spec.required} <= set(minimal)
    assert list(minimal["accounts"].columns) == ["account_id", "segment", "created_at"]
    assert "csm_id" not in minimal["accounts"], "every account is unassigned"
    assert "plan" not in minimal["contracts"]
    assert list(minimal["usage_events"].columns) == [
        "account_id",
        "user_id",
        "occurred_at",
        "module",
        "count",
    ]


def test_minimal_attributes_change_over_time(minimal):
    attributes = minimal["account_attributes"]
    assert list(attributes.columns) == ["account_id", "attribute", "value", "valid_from"]
    assert set(attributes["attribute"]) == set(ATTRIBUTES)
    assert not attributes.duplicated(["account_id", "attribute", "valid_from"]).any()
    assert (attributes["valid_from"] < AS_OF).all()
    by = {name: part for name, part in attributes.groupby("attribute")}
    employees = by["employees"]["value"]
    assert employees.isna().any(), "some lookups found no headcount"
    assert pd.to_numeric(employees.dropna()).gt(0).all()
    changes = by["employees"].groupby("account_id")["value"].nunique()
    assert (changes > 2).sum() > 50, "headcounts are refreshed and move"
    assert set(by["channel"]["value"]) == set(CHANNELS)
    assert by["channel"]["account_id"].is_unique and len(by["channel"]) == N_ACCOUNTS
    assert set(pd.to_numeric(by["discount_pct"]["value"])) <= {0, 10, 20, 30}
    assert set(by["plan_tier"]["value"]) == set(PLAN_TIERS)
    assert (by["plan_tier"].groupby("account_id").size() > 1).sum() > 20, "tiers change"
    created = minimal["accounts"].set_index("account_id")["created_at"]
    assert (attributes["valid_from"] >= attributes["account_id"].map(created)).all()


def test_minimal_attributes_stop_when_the_account_churns(minimal, written):
    truth = _truth(written["minimal"], "accounts").set_index("account_id")
    churned_at = truth.loc[truth["churned"], "churned_at"]
    attributes = minimal["account_attributes"]
    limit = attributes["account_id"].map(churned_at)
    assert len(churned_at) > 10
    assert not (attributes["valid_from"] >= limit).any()


def test_minimal_churn_depends_on_the_attributes():
    """Within a segment and term, decisions of self-serve accounts and of accounts on the basic
    tier (at the time) are riskier than partner-sourced and premium ones, as planted. On 3,000
    accounts' entities (the usage generator is never run)."""
    company = COMPANY_PROFILES["minimal"].build(
        SimulationConfig(n_accounts=3000, seed=SEED, profile="minimal")
    )
    decisions = company.truth["renewal_decisions"]
    attributes = company.tables["account_attributes"]
    p = decisions["true_churn_probability"]
    logit = np.log(p / (1 - p))
    residual = logit - logit.groupby([decisions["segment"], decisions["term_months"]]).transform(
        "mean"
    )
    known = pd.to_datetime(decisions["decision_date"]) - pd.Timedelta(days=30)
    decisions = decisions.assign(
        residual=residual, known=known.dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    ).sort_values("known")

    def held(attribute: str) -> pd.Series:
        records = attributes[attributes["attribute"] == attribute].sort_values("valid_from")
        merged = pd.merge_asof(
            decisions, records, left_on="known", right_on="valid_from", by="account_id"
        )
        return merged.groupby("value")["residual"].mean()

    channel, tier = held("channel"), held("plan_tier")
    assert channel["self_serve"] - channel["partner"] > 0.4
    assert tier["basic"] - tier["premium"] > 0.4


# ---------------------------------------------------------------------------------------------
# other_vocabulary
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other(written) -> dict[str, pd.DataFrame]:
    root = written["other_vocabulary"]
    return {t: _read(root, s) for t, s in COMPANY_PROFILES["other_vocabulary"].raw_tables.items()}


def test_other_vocabulary_speaks_its_own_names(other):
    accounts = other["accounts"]
    assert {"owner_id", "company_name"} <= set(accounts.columns)
    assert not {"csm_id", "account_name"} & set(accounts.columns)
    assert set(accounts["segment"]) == {"SMB", "Mid-Market", "Enterprise"}
    assert set(other["users"]["role"].dropna()) == {"Admin", "Standard", "Read-only"}
    tickets = other["support_tickets"]
    assert "severity" in tickets and "priority" not in tickets
    assert set(tickets["severity"]) == {"P1", "P2", "P3", "P4"}
    kinds = set(other["csm_touchpoints"]["activity_type"])
    assert kinds == {"Call", "Onsite", "Business Review", "Executive Sync"}
    assert COMPANY_PROFILES["other_vocabulary"].raw_tables["csm_touchpoints"] == "activities"


def test_other_vocabulary_leaves_some_accounts_unassigned(other):
    owner = other["accounts"]["owner_id"]
    known = owner.isin(other["csms"]["csm_id"])
    assert owner.isna().sum() >= 5
    assert (owner.notna() & ~known).sum() >= 1
    assert known.mean() > 0.8


def test_other_vocabulary_is_the_demo_in_other_words(other, written):
    """Mapped back with its params, every table is the demo's (the owners aside): the profile
    changes the export's names, never the company."""
    profile = COMPANY_PROFILES["other_vocabulary"]
    demo = COMPANY_PROFILES["demo"]
    ingest = profile.params["ingest"]
    for table in demo.tables:
        theirs = other[table].rename(columns=ingest["column_map"].get(table, {}))
        for column, mapping in ingest["value_map"].get(table, {}).items():
            theirs[column] = theirs[column].map(lambda v, m=mapping: m.get(v, v))
        ours = _read(written["demo"], table)
        assert list(theirs.columns) == list(ours.columns), table
        if table == "accounts":
            theirs, ours = theirs.drop(columns="csm_id"), ours.drop(columns="csm_id")
        pd.testing.assert_frame_equal(theirs, ours, check_dtype=False, obj=table)
    for name in ("renewal_decisions", "accounts"):
        pd.testing.assert_frame_equal(
            _truth(written["other_vocabulary"], name), _truth(written["demo"], name)
        )
    assert column_names(profile, "accounts")["csm_id"] == "owner_id"


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROFILES)
def test_same_seed_same_bytes_other_seed_other_bytes(written, name, tmp_path):
    write_simulation(_config(name), tmp_path / "raw", tmp_path / "truth")
    assert _hashes(tmp_path) == _hashes(written[name])
    write_simulation(_config(name, seed=SEED + 1), tmp_path / "raw2", tmp_path / "truth2")
    first, other = _hashes(written[name] / "raw"), _hashes(tmp_path / "raw2")
    assert first.keys() == other.keys()
    assert all(first[k] != other[k] for k in first if k != "csms.parquet"), name


def test_profiles_share_the_world_but_not_the_export(written):
    """Profiles differ in shape; the accounts' latent world (segment, health, trouble) is the
    same for a seed, so the profiles are comparable companies."""
    demo = _truth(written["demo"], "accounts")
    for name in PROFILES:
        truth = _truth(written[name], "accounts")
        assert (truth["segment"].to_numpy() == demo["segment"].to_numpy()).all(), name
        np.testing.assert_array_equal(truth["latent_health_mean"], demo["latent_health_mean"])
