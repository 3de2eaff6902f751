"""The `plg_monthly` company: a product-led SaaS on monthly billing, with a small CS team.

What it has, as a billing system, a product-analytics tool and a help desk export it:

- customers without a segment or a signup date (both come from the subscriptions), owned by a
  CSM only when they are large enough (small ones are tech-touch: no csm_id), some by CSMs who
  have left (their id is not in the csms table);
- one open-ended monthly subscription per customer (`subscriptions`), ended at the billing date
  after a cancellation, with the click's timestamp in a column the params leave unmapped;
- an account-level event log with event types and minutes (`event_log`), no users table;
- help-desk tickets without SLA targets (the help desk promises them by priority only:
  `SLA_POLICY`, which the profile's params hand to ingest);
- CSAT answers (1-5): after a resolved ticket, by the requester, and from an in-app pulse,
  anonymous.

Churn is planted monthly on usage, support, sentiment and onboarding (`subscriptions`), all of
which these tables show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.core.numerics import exp
from pipeline.stages.simulate.columns import date_column, str_column, ts_column
from pipeline.stages.simulate.company import Company
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.entities import account_names, account_truth, decision_truth
from pipeline.stages.simulate.event_log import iter_event_log_chunks
from pipeline.stages.simulate.oracle import DecisionSchedule, pit_oracle
from pipeline.stages.simulate.people import csm_directory
from pipeline.stages.simulate.service import account_periods
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.subscriptions import (
    MONTHLY_DECISIONS,
    PLANS,
    Subscriptions,
    simulate_subscriptions,
)
from pipeline.stages.simulate.vocabulary import REGIONS, TICKET_PRIORITIES
from pipeline.stages.simulate.world import (
    DAY_US,
    HOUR_US,
    PERIOD_DAYS,
    SENTIMENT,
    SUPPORT,
    USAGE,
    World,
    build_world,
)

#: What the help desk promises, by priority (the export has no targets on the tickets).
SLA_POLICY: dict[str, dict[str, float]] = {
    "low": {"first_response_hours": 48.0, "resolution_hours": 240.0},
    "normal": {"first_response_hours": 24.0, "resolution_hours": 120.0},
    "high": {"first_response_hours": 8.0, "resolution_hours": 48.0},
    "urgent": {"first_response_hours": 2.0, "resolution_hours": 24.0},
}
# Per segment (smb, mid_market, enterprise).
_TICKETS_PER_MONTH = np.array([0.25, 0.7, 1.8])
_PRIORITY_PROBS = np.array([0.3, 0.45, 0.18, 0.07])
#: Accounts per CSM by segment; small accounts have none (tech-touch).
_PORTFOLIO = np.array([0, 60, 20])
_DEPARTED_CSM_SHARE = 0.08
_TICKET_CSAT_RESPONSE = 0.35
_PULSE_RESPONSE = 0.2


#: The snapshot grid of the point-in-time oracle: the profile's own (`profiles.PLG_MONTHLY`
#: trains on weekly snapshots, which see each monthly decision from four or five weeks out).
PIT_CADENCE = "weekly"


def plg_company(config: SimulationConfig) -> Company:
    """The plg_monthly company as contract-shaped frames (the export renames them)."""
    world = build_world(config)
    n = world.n_accounts
    subs = simulate_subscriptions(config, world)
    end_us = subs.account_end_us(world.n_days)
    cells = account_periods(world, end_us)
    account_ids = pa.array(_ids("cus_", n))

    csms, owner = _csm_owners(config, world)
    accounts = pd.DataFrame(
        {
            "account_id": str_column(account_ids),
            "account_name": str_column(account_names(config, n)),
            "region": str_column(list(REGIONS), world.region),
            "csm_id": str_column(owner),
        }
    )
    contracts = _subscription_frame(config, subs, account_ids)
    tickets = _tickets(config, world, cells)
    as_of_us = world.n_days * DAY_US
    ticket_ids = np.arange(100_001, 100_001 + tickets["account"].size).astype(str)
    ticket_frame = pd.DataFrame(
        {
            "ticket_id": str_column(ticket_ids),
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
            "escalated": tickets["escalated"].astype(bool),
        }
    )
    csat = _csat(config, world, tickets, cells, end_us)
    csat_frame = pd.DataFrame(
        {
            "account_id": str_column(account_ids, csat["account"]),
            "user_id": str_column(csat["requester"]),
            "responded_at": ts_column(config.start_date, csat["responded_us"]),
            "survey": str_column(["csat"], np.zeros(csat["account"].size, dtype=np.int64)),
            "score": csat["score"].astype(np.float64),
        }
    )
    truth = {
        "renewal_decisions": _decisions(config, world, subs, contracts["contract_id"], account_ids),
        "accounts": account_truth(
            config, world, account_ids, churn_day=subs.end_day, account_end=end_us
        ),
        "pit_oracle": pit_oracle(
            config,
            world,
            MONTHLY_DECISIONS,
            DecisionSchedule.of_subscriptions(config, world, subs),
            account_ids,
            cadence=PIT_CADENCE,
        ),
    }
    return Company(
        tables={
            "csms": csms,
            "accounts": accounts,
            "contracts": contracts,
            "support_tickets": ticket_frame,
            "satisfaction_responses": csat_frame,
        },
        usage_events=iter_event_log_chunks(config, world, account_ids, subs.seats, end_us),
        truth=truth,
    )


def _ids(prefix: str, count: int) -> np.ndarray:
    """Ids like a billing system's: ``prefix`` and a zero-padded serial (cus_000001)."""
    return np.char.add(prefix, np.char.zfill(np.arange(1, count + 1).astype(str), 6))


def _csm_owners(config: SimulationConfig, world: World) -> tuple[pd.DataFrame, np.ndarray]:
    """The csms table and each account's csm_id (None: tech-touch; a departed CSM's id: not
    in the table)."""
    rng = random_stream(config.seed, "plg_csms")
    counts = [
        int(np.ceil((world.segment == s).sum() / p)) if p else 0 for s, p in enumerate(_PORTFOLIO)
    ]
    n_csm = max(1, sum(counts))
    csms = csm_directory(rng, n_csm)
    owner = np.full(world.n_accounts, None, dtype=object)
    offset = 0
    for s, k in enumerate(counts):
        idx = np.flatnonzero(world.segment == s)
        if k:
            owner[idx] = csms["csm_id"].to_numpy()[offset + rng.integers(0, k, idx.size)]
        offset += k
    departed = (owner != None) & (rng.random(world.n_accounts) < _DEPARTED_CSM_SHARE)  # noqa: E711
    owner[departed] = [f"CSM{n_csm + 1 + k:03d}" for k in rng.integers(0, 2, departed.sum())]
    return csms, owner


def _subscription_frame(
    config: SimulationConfig, subs: Subscriptions, account_ids: pa.Array
) -> pd.DataFrame:
    """One row per subscription: open-ended (no end_date) while it runs, else ended at the
    billing date after the cancellation; ``canceled_at`` is the click (export-only)."""
    ended = subs.end_day >= 0
    end = date_column(config.start_date, np.where(ended, subs.end_day, 0))
    return pd.DataFrame(
        {
            "contract_id": str_column(_ids("sub_", subs.start_day.size)),
            "account_id": str_column(account_ids),
            "start_date": date_column(config.start_date, subs.start_day),
            "end_date": end.where(ended, None),
            "arr": subs.arr.astype(np.float64),
            "seats": subs.seats.astype(np.int64),
            "plan": str_column(list(PLANS), subs.plan),
            "canceled_at": ts_column(config.start_date, subs.cancelled_us, ended),
        }
    )


def _decisions(
    config: SimulationConfig,
    world: World,
    subs: Subscriptions,
    subscription_ids: pd.Series,
    account_ids: pa.Array,
) -> pd.DataFrame:
    """The truth's decisions, under the ids ingest gives the billing terms (``<id>#<n>``, or
    the subscription's own id when it is a single term)."""
    acct = subs.decision_account
    ids = subscription_ids.to_numpy(dtype=str)[acct]
    split = subs.terms()[acct] > 1
    numbered = np.char.add(np.char.add(ids, "#"), subs.decision_term.astype(str))
    return decision_truth(
        config,
        world,
        account_ids,
        contract_id=str_column(np.where(split, numbered, ids)),
        acct=acct,
        day=subs.decision_day,
        term=np.ones(acct.size, dtype=np.int64),
        arr=subs.arr[acct],
        probability=subs.probability,
        churned=subs.churned,
        drivers=subs.drivers,
    )


def _tickets(
    config: SimulationConfig, world: World, cells: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Tickets per live (account, 30-day period): more when support fails and in onboarding;
    answered and resolved against `SLA_POLICY` as the support dimension allows."""
    rng = random_stream(config.seed, "plg_tickets")
    acct, lo, span = cells["account"], cells["lo"], cells["span"]
    mid_day = (lo + span // 2) // DAY_US
    support = world.dim(SUPPORT, acct, mid_day)
    tenure = mid_day - world.created_day[acct]
    rate = (
        _TICKETS_PER_MONTH[world.segment[acct]]
        * exp(-0.45 * support)
        * np.where(tenure < 60, 1.6, 1.0)
    )
    count = rng.poisson(rate * span / (PERIOD_DAYS * DAY_US))
    t_acct = np.repeat(acct, count)
    opened = np.repeat(lo, count) + (rng.random(t_acct.size) * np.repeat(span, count)).astype(
        np.int64
    )
    priority = np.minimum((rng.random(t_acct.size)[:, None] > np.cumsum(_PRIORITY_PROBS)).sum(1), 3)
    first_target = np.array([SLA_POLICY[p]["first_response_hours"] for p in TICKET_PRIORITIES])
    resolve_target = np.array([SLA_POLICY[p]["resolution_hours"] for p in TICKET_PRIORITIES])
    t_support = world.dim(SUPPORT, t_acct, opened // DAY_US)
    response_ratio = exp(rng.normal(-1.3 - 0.6 * t_support, 0.45))
    resolve_ratio = exp(rng.normal(-0.9 - 0.6 * t_support, 0.5))
    first_response = opened + (response_ratio * first_target[priority] * HOUR_US).astype(np.int64)
    resolved = opened + (resolve_ratio * resolve_target[priority] * HOUR_US).astype(np.int64)
    resolved = np.maximum(resolved, first_response + 10 * 60 * 1_000_000)
    breached = (response_ratio > 1.0) | (resolve_ratio > 1.0)
    escalated = rng.random(t_acct.size) < 0.02 + 0.15 * breached + 0.05 * (priority == 3)
    order = np.lexsort((opened, t_acct))
    return {
        "account": t_acct[order],
        "priority": priority[order],
        "opened_us": opened[order],
        "first_response_us": first_response[order],
        "resolved_us": resolved[order],
        "breached": breached[order],
        "escalated": escalated[order],
    }


def _csat(
    config: SimulationConfig,
    world: World,
    tickets: dict[str, np.ndarray],
    cells: dict[str, np.ndarray],
    account_end_us: np.ndarray,
) -> dict[str, np.ndarray]:
    """CSAT 1-5: after resolved tickets (by the requester, worse after a breach) and from a
    monthly in-app pulse (anonymous), scored by sentiment (and usage, for the pulse)."""
    rng = random_stream(config.seed, "csat")
    # after a ticket
    answered = rng.random(tickets["account"].size) < _TICKET_CSAT_RESPONSE
    t_acct = tickets["account"][answered]
    t_when = tickets["resolved_us"][answered] + (rng.exponential(1.0, t_acct.size) * DAY_US).astype(
        np.int64
    )
    sentiment = world.dim(SENTIMENT, t_acct, t_when // DAY_US)
    t_score = rng.normal(3.9 + 0.55 * sentiment - 0.7 * tickets["breached"][answered], 0.75)
    requester = np.char.add(
        "usr_",
        np.char.zfill((t_acct * 20 + rng.integers(0, 8, t_acct.size)).astype(str), 7),
    ).astype(object)
    # the in-app pulse
    acct, lo, span = cells["account"], cells["lo"], cells["span"]
    pulse = rng.random(acct.size) < _PULSE_RESPONSE * span / (PERIOD_DAYS * DAY_US)
    p_acct = acct[pulse]
    p_when = lo[pulse] + (rng.random(p_acct.size) * span[pulse]).astype(np.int64)
    day = p_when // DAY_US
    p_score = rng.normal(
        4.0 + 0.5 * world.dim(SENTIMENT, p_acct, day) + 0.2 * world.dim(USAGE, p_acct, day), 0.7
    )

    account = np.concatenate([t_acct, p_acct])
    when = np.concatenate([t_when, p_when])
    score = np.clip(np.round(np.concatenate([t_score, p_score])), 1, 5)
    user = np.concatenate([requester, np.full(p_acct.size, None, dtype=object)])
    keep = (when < account_end_us[account]) & (when >= world.created_us[account])
    order = np.lexsort((when[keep], account[keep]))
    return {
        "account": account[keep][order],
        "responded_us": when[keep][order],
        "score": score[keep][order],
        "requester": user[keep][order],
    }
