"""Service and relationship: support tickets, CSM touchpoints and NPS answers.

Tickets and touchpoints are drawn per (account, 30-day period) cell the account is alive in,
vectorised over all cells at once: tickets at the segment's rate (more in onboarding and for
unhealthy accounts), answered and resolved against the segment's SLA targets as the support
dimension allows; CSM contacts at the segment's rates, thinning as the relationship weakens
("the account went dark"), exec contact most of all. NPS comes in quarterly waves to every live
user, scored by the sentiment dimension at the time of the answer.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.numerics import exp, power
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.contracts import Contracts
from pipeline.stages.simulate.people import Users, UserTraits, user_activity_window
from pipeline.stages.simulate.segments import PROFILES
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.world import (
    DAY_US,
    HOUR_US,
    PERIOD_DAYS,
    RELATIONSHIP,
    SENTIMENT,
    SUPPORT,
    World,
)


def account_periods(world: World, account_end_us: np.ndarray) -> dict[str, np.ndarray]:
    """Every (account, 30-day period) cell the account is alive in, with the overlap in us."""
    n_periods = world.health.shape[1]
    period_start = np.arange(n_periods, dtype=np.int64) * PERIOD_DAYS * DAY_US
    lo = np.maximum(period_start[None, :], world.created_us[:, None])
    hi = np.minimum(period_start[None, :] + PERIOD_DAYS * DAY_US, account_end_us[:, None])
    acct, period = np.nonzero(hi > lo)
    return {
        "account": acct,
        "period": period,
        "lo": lo[acct, period],
        "span": hi[acct, period] - lo[acct, period],
    }


def simulate_tickets(
    config: SimulationConfig, world: World, contracts: Contracts, cells: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Tickets per live cell; response and resolution times against the SLA by support."""
    rng = random_stream(config.seed, "tickets")
    acct, lo, span = cells["account"], cells["lo"], cells["span"]
    seg = world.segment[acct].astype(np.int64)
    first = np.r_[True, contracts.account[1:] != contracts.account[:-1]]
    seats0 = np.ones(world.n_accounts)
    seats0[contracts.account[first]] = contracts.seats[first]
    seat_factor = power(seats0 / np.array([p.seats_median for p in PROFILES])[world.segment], 0.4)
    mid_day = (lo + span // 2) // DAY_US
    tenure = mid_day - world.created_day[acct]
    health = world.health[acct, cells["period"]]
    rate = (
        np.array([p.tickets_per_month for p in PROFILES])[seg]
        * seat_factor[acct]
        * exp(-0.3 * health)
        * np.where(tenure < 60, 1.6, 1.0)
    )
    n = rng.poisson(rate * span / (PERIOD_DAYS * DAY_US))
    t_acct = np.repeat(acct, n)
    opened = np.repeat(lo, n) + (rng.random(t_acct.size) * np.repeat(span, n)).astype(np.int64)
    opened = np.maximum(opened, world.created_us[t_acct])
    t_seg = world.segment[t_acct].astype(np.int64)
    prio_probs = np.array([p.priority_probs for p in PROFILES])[t_seg]
    priority = (rng.random(t_acct.size)[:, None] > np.cumsum(prio_probs, axis=1)).sum(axis=1)
    priority = np.minimum(priority, 3)
    sla_first = np.array([p.sla_first_response_hours for p in PROFILES])[t_seg, priority]
    sla_resolve = np.array([p.sla_resolution_hours for p in PROFILES])[t_seg, priority]

    support = world.dim(SUPPORT, t_acct, opened // DAY_US)
    response_ratio = exp(rng.normal(-1.3 - 0.6 * support, 0.45))
    resolve_ratio = exp(rng.normal(-0.9 - 0.6 * support, 0.5))
    first_response = opened + (response_ratio * sla_first * HOUR_US).astype(np.int64)
    resolved = opened + (resolve_ratio * sla_resolve * HOUR_US).astype(np.int64)
    resolved = np.maximum(resolved, first_response + 10 * 60 * 1_000_000)
    breach = (response_ratio > 1.0).astype(float) + (resolve_ratio > 1.0)
    escalated = rng.random(t_acct.size) < (0.02 + 0.15 * breach + 0.05 * (priority == 3))
    order = np.lexsort((opened, t_acct))
    return {
        "account": t_acct[order],
        "priority": priority[order],
        "opened_us": opened[order],
        "first_response_us": first_response[order],
        "resolved_us": resolved[order],
        "sla_first": sla_first[order],
        "sla_resolve": sla_resolve[order],
        "escalated": escalated[order],
    }


def simulate_touchpoints(
    config: SimulationConfig, world: World, cells: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """CSM calls, meetings, QBRs and exec contacts per live cell, thinned by the relationship."""
    rng = random_stream(config.seed, "touchpoints")
    acct, lo, span = cells["account"], cells["lo"], cells["span"]
    seg = world.segment[acct].astype(np.int64)
    mid_day = (lo + span // 2) // DAY_US
    tenure = mid_day - world.created_day[acct]
    relationship = world.dim(RELATIONSHIP, acct, mid_day)
    base = np.array([p.touch_rates for p in PROFILES])[seg]  # (cells, 4)
    kickoff = np.array([p.kickoff_meetings for p in PROFILES])[seg] * (tenure < 60)
    # going dark: a weak relationship thins calls and meetings, and exec contact most of all
    elasticity = np.array([0.6, 0.7, 0.8, 1.2])
    rate = base * exp(relationship[:, None] * elasticity[None, :])
    rate[:, 1] += kickoff
    rate[:, 0] += kickoff * 0.5
    counts = rng.poisson(rate * (span / (PERIOD_DAYS * DAY_US))[:, None])
    cell_idx, kind = np.nonzero(counts)
    reps = counts[cell_idx, kind]
    cell_rep = np.repeat(cell_idx, reps)
    occurred = lo[cell_rep] + (rng.random(cell_rep.size) * span[cell_rep]).astype(np.int64)
    t_acct = acct[cell_rep]
    order = np.lexsort((occurred, t_acct))
    return {
        "account": t_acct[order],
        "occurred_us": occurred[order],
        "kind": np.repeat(kind, reps)[order],
    }


def simulate_nps(
    config: SimulationConfig, world: World, users: Users, traits: UserTraits
) -> dict[str, np.ndarray]:
    """Quarterly relationship-NPS waves; each live user answers a wave with some probability."""
    rng = random_stream(config.seed, "nps")
    n = world.n_accounts
    wave_period = 91
    phase = world.created_day + 30 + rng.integers(0, wave_period, n)  # first wave of the account
    rows = np.arange(users.account.size)
    _, _, dormant = user_activity_window(
        world, users.account, users.created_us, users.end_us, traits, rows
    )
    ph = phase[users.account]
    start_day = users.created_us // DAY_US + 1
    end_day = users.end_us // DAY_US
    k_first = np.maximum(0, -((ph - start_day) // wave_period))  # ceil((start - ph) / period)
    k_end = np.maximum(0, -((ph - end_day) // wave_period))
    n_waves = np.maximum(k_end - k_first, 0)
    user = np.repeat(rows, n_waves)
    k = np.repeat(k_first, n_waves) + (
        np.arange(user.size) - np.repeat(np.cumsum(n_waves) - n_waves, n_waves)
    )
    wave_day = ph[user] + k * wave_period
    p_respond = 0.35 * np.where(dormant[user], 0.3, 1.0)
    answered = rng.random(user.size) < p_respond
    user, wave_day = user[answered], wave_day[answered]
    responded = wave_day * DAY_US + (rng.exponential(2.0, user.size) * DAY_US).astype(np.int64)
    keep = (responded < users.end_us[user]) & (responded >= users.created_us[user])
    user, responded = user[keep], responded[keep]
    acct = users.account[user]
    sentiment = world.dim(SENTIMENT, acct, responded // DAY_US)
    score = np.clip(np.round(rng.normal(7.8 + 1.5 * sentiment, 1.1)), 0, 10).astype(np.int64)
    order = np.lexsort((responded, acct))
    return {
        "account": acct[order],
        "user": user[order],
        "responded_us": responded[order],
        "score": score[order],
    }
