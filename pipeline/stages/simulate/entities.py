"""Every simulated table except ``usage_events``, plus the ground truth, as pandas frames.

`simulate_entities` runs the generators in order (world, contracts, users, trainings, tickets,
touchpoints, NPS, CSMs) and turns their arrays into the raw tables, with the columns and
vocabularies of the data contract, and into the ground truth the pipeline never reads: one row
per renewal decision (true probability, outcome, drivers, the trouble that weighed on it) and
one row per account (latent health, trouble and its onset, churn).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.stages.simulate.columns import date_column, sequential_ids, str_column, ts_column
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.contracts import (
    WindowDecisions,
    account_end_us,
    demo_decisions,
    simulate_contracts,
)
from pipeline.stages.simulate.oracle import DecisionSchedule, pit_oracle
from pipeline.stages.simulate.people import (
    csm_assignment,
    simulate_trainings,
    simulate_users,
    user_traits,
)
from pipeline.stages.simulate.service import (
    account_periods,
    simulate_nps,
    simulate_tickets,
    simulate_touchpoints,
)
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.vocabulary import (
    COURSES,
    INDUSTRIES,
    NAME_SUFFIXES,
    NAME_WORDS_A,
    NAME_WORDS_B,
    REGIONS,
    SEGMENTS,
    TICKET_PRIORITIES,
    TOUCHPOINT_KINDS,
    TROUBLES,
    USER_ROLES,
)
from pipeline.stages.simulate.world import (
    DAY_US,
    LATENT_COLUMNS,
    N_DIMS,
    ONBOARDING,
    PERIOD_DAYS,
    TROUBLE_VISIBLE_DAYS,
    World,
    build_world,
)

logger = logging.getLogger(__name__)


def simulate_entities(
    config: SimulationConfig,
    *,
    world: World | None = None,
    decide: WindowDecisions = demo_decisions,
) -> dict[str, pd.DataFrame]:
    """Simulate every raw table except ``usage_events``, plus the ground truth.

    Returns the raw tables under the contract's table names and the ground truth under
    ``truth_renewal_decisions``, ``truth_accounts`` and ``truth_pit_oracle`` (on the monthly
    snapshot grid the contract-billed profiles train on). Pure: the same config gives identical
    frames. Usage events come separately from ``iter_usage_event_chunks`` because they do not
    fit in memory at scale. ``world`` (built from the config when not given) and ``decide``
    (the demo's decision model by default) let a profile plant churn on other drivers.
    """
    world = build_world(config) if world is None else world
    n = world.n_accounts
    contracts = simulate_contracts(config, world, decide)
    users = simulate_users(config, world, contracts)
    traits = user_traits(config, users.account.size)
    account_end = account_end_us(world, contracts)
    cells = account_periods(world, account_end)
    trainings = simulate_trainings(config, world, users, traits)
    tickets = simulate_tickets(config, world, contracts, cells)
    touchpoints = simulate_touchpoints(config, world, cells)
    nps = simulate_nps(config, world, users, traits)
    as_of_us = world.n_days * DAY_US

    account_ids = sequential_ids("A", n, 6)
    user_ids = sequential_ids("U", users.account.size, 7)
    csms, owner = csm_assignment(config, world)
    csm_ids = pa.array(csms["csm_id"].array, type=pa.string())
    segments = pa.array(list(SEGMENTS), type=pa.string())

    accounts = pd.DataFrame(
        {
            "account_id": str_column(account_ids),
            "account_name": str_column(account_names(config, n)),
            "segment": str_column(segments, world.segment),
            "industry": str_column(list(INDUSTRIES), world.industry),
            "region": str_column(list(REGIONS), world.region),
            "created_at": ts_column(config.start_date, world.created_us),
            "csm_id": str_column(csm_ids, owner),
        }
    )
    contract_frame = pd.DataFrame(
        {
            "contract_id": str_column(sequential_ids("C", contracts.account.size, 7)),
            "account_id": str_column(account_ids, contracts.account),
            "start_date": date_column(config.start_date, contracts.start_day),
            "end_date": date_column(config.start_date, contracts.end_day),
            "arr": contracts.arr.astype(np.float64),
            "seats": contracts.seats.astype(np.int64),
            "plan": str_column(contracts.plan),
        }
    )
    user_frame = pd.DataFrame(
        {
            "user_id": str_column(user_ids),
            "account_id": str_column(account_ids, users.account),
            "created_at": ts_column(config.start_date, users.created_us),
            "role": str_column(list(USER_ROLES), users.role),
            "deactivated_at": ts_column(
                config.start_date, users.end_us, users.deactivated & (users.end_us < as_of_us)
            ),
        }
    )
    training_frame = pd.DataFrame(
        {
            "user_id": str_column(user_ids, trainings["user"]),
            "account_id": str_column(account_ids, users.account[trainings["user"]]),
            "course_id": str_column(list(COURSES), trainings["course"]),
            "enrolled_at": ts_column(config.start_date, trainings["enrolled_us"]),
            "completed_at": ts_column(
                config.start_date, trainings["completed_us"], trainings["completed"]
            ),
            "score": trainings["score"].astype(np.float64),
        }
    )
    ticket_frame = pd.DataFrame(
        {
            "ticket_id": str_column(sequential_ids("T", tickets["account"].size, 8)),
            "account_id": str_column(account_ids, tickets["account"]),
            "priority": str_column(list(TICKET_PRIORITIES), tickets["priority"]),
            "opened_at": ts_column(config.start_date, tickets["opened_us"]),
            "first_response_at": ts_column(
                config.start_date,
                tickets["first_response_us"],
                tickets["first_response_us"] < as_of_us,
            ),
            "resolved_at": ts_column(
                config.start_date, tickets["resolved_us"], tickets["resolved_us"] < as_of_us
            ),
            "sla_first_response_hours": tickets["sla_first"].astype(np.float64),
            "sla_resolution_hours": tickets["sla_resolve"].astype(np.float64),
            "escalated": tickets["escalated"].astype(bool),
        }
    )
    nps_frame = pd.DataFrame(
        {
            "account_id": str_column(account_ids, nps["account"]),
            "user_id": str_column(user_ids, nps["user"]),
            "responded_at": ts_column(config.start_date, nps["responded_us"]),
            "score": nps["score"].astype(np.int64),
        }
    )
    touch_frame = pd.DataFrame(
        {
            "account_id": str_column(account_ids, touchpoints["account"]),
            "occurred_at": ts_column(config.start_date, touchpoints["occurred_us"]),
            "kind": str_column(list(TOUCHPOINT_KINDS), touchpoints["kind"]),
        }
    )

    decided = np.flatnonzero(contracts.decided)
    decisions = decision_truth(
        config,
        world,
        account_ids,
        contract_id=contract_frame["contract_id"].iloc[decided].reset_index(drop=True),
        acct=contracts.account[decided],
        day=contracts.end_day[decided],
        term=contracts.term[decided],
        arr=contracts.arr[decided],
        probability=contracts.probability[decided],
        churned=contracts.churned[decided],
        drivers=contracts.drivers[decided],
    )
    truth_accounts = account_truth(
        config, world, account_ids, churn_day=contracts.churn_day, account_end=account_end
    )
    schedule = DecisionSchedule.of_contracts(world, contracts)
    pit = pit_oracle(config, world, decide, schedule, account_ids)
    logger.debug(
        "simulated %d accounts, %d contracts, %d users", n, len(contract_frame), len(user_frame)
    )
    return {
        "accounts": accounts,
        "csms": csms,
        "contracts": contract_frame,
        "users": user_frame,
        "trainings": training_frame,
        "support_tickets": ticket_frame,
        "nps_responses": nps_frame,
        "csm_touchpoints": touch_frame,
        "truth_renewal_decisions": decisions,
        "truth_accounts": truth_accounts,
        "truth_pit_oracle": pit,
    }


def decision_truth(
    config: SimulationConfig,
    world: World,
    account_ids: pa.Array,
    *,
    contract_id: pd.Series,
    acct: np.ndarray,
    day: np.ndarray,
    term: np.ndarray,
    arr: np.ndarray,
    probability: np.ndarray,
    churned: np.ndarray,
    drivers: np.ndarray,
) -> pd.DataFrame:
    """The ground truth's renewal decisions: one row per decided term (``contract_id``) of
    account ``acct``, decided on ``day``, with its true probability, outcome and drivers."""
    segments = pa.array(list(SEGMENTS), type=pa.string())
    # A decision's trouble is the one that weighed on most of its 90-day window (or on the whole
    # life of a younger account).
    visible_since = np.maximum(world.created_day[acct], day - TROUBLE_VISIBLE_DAYS)
    trouble_active = (world.trouble[acct] > 0) & (world.trouble_onset_day[acct] <= visible_since)
    return pd.DataFrame(
        {
            "contract_id": contract_id,
            "account_id": str_column(account_ids, acct),
            "segment": str_column(segments, world.segment[acct]),
            "decision_date": date_column(config.start_date, day),
            "tenure_days": (day - world.created_day[acct]).astype(np.int64),
            "term_months": term.astype(np.int64),
            "arr": arr.astype(np.float64),
            "true_churn_probability": probability,
            "churned": churned.astype(bool),
            "latent_health": drivers[:, N_DIMS],
            "trouble": str_column(list(TROUBLES), np.where(trouble_active, world.trouble[acct], 0)),
            **{name: drivers[:, k] for k, name in enumerate(LATENT_COLUMNS)},
        }
    )


def account_truth(
    config: SimulationConfig,
    world: World,
    account_ids: pa.Array,
    *,
    churn_day: np.ndarray,
    account_end: np.ndarray,
) -> pd.DataFrame:
    """The ground truth's accounts: latent health, trouble and its onset, churn (``churn_day``
    per account, -1 for none; ``account_end``: when it stopped producing rows, in us)."""
    n = world.n_accounts
    onset_valid = (world.trouble > 0) & (world.trouble_onset_day < world.n_days)
    last_period = np.clip((account_end - 1) // (PERIOD_DAYS * DAY_US), 0, None)
    churned = churn_day >= 0
    return pd.DataFrame(
        {
            "account_id": str_column(account_ids),
            "segment": str_column(pa.array(list(SEGMENTS), type=pa.string()), world.segment),
            "latent_health_mean": world.health_mean,
            "latent_health_final": world.health[np.arange(n), last_period].astype(np.float64),
            "trouble": str_column(list(TROUBLES), world.trouble),
            "trouble_onset_at": ts_column(
                config.start_date,
                np.where(onset_valid, world.trouble_onset_day, 0) * DAY_US,
                onset_valid,
            ),
            "latent_onboarding": world.dim(ONBOARDING, np.arange(n), world.created_day),
            "activation_propensity": world.activation,
            "churned": churned,
            "churned_at": ts_column(config.start_date, churn_day * DAY_US, churned),
        }
    )


def account_names(config: SimulationConfig, n: int) -> np.ndarray:
    """Company names such as "Blue Logistics Inc"; a repeated name gets " 2", " 3"..."""
    rng = random_stream(config.seed, "names")
    a = rng.choice(np.array(NAME_WORDS_A), n)
    b = rng.choice(np.array(NAME_WORDS_B), n)
    c = rng.choice(np.array(NAME_SUFFIXES), n)
    names = pd.Series(np.char.add(np.char.add(np.char.add(a, " "), np.char.add(b, " ")), c))
    dup = names.groupby(names).cumcount().to_numpy()
    suffix = np.where(dup > 0, np.char.add(" ", (dup + 1).astype(str)), "")
    return np.char.add(names.to_numpy().astype(str), suffix)
