"""Contracts and renewal decisions: where the planted churn is decided.

Each account signs a first term at creation; at every term's end a renewal decision draws churn
with a probability that is a sigmoid of the latent dimensions averaged over the 90 days before
the decision, plus the segment, term, tenure and whether it is the first renewal; nothing else.
Two things make it harder for a points-based health score than for a model, as in real CS data:
onboarding decides the first renewal (DOMAIN.md: most churn is decided in the first months),
and a dimension in deep trouble raises the risk faster than linearly ("watermelon" accounts,
green on most rules and about to leave). A renewed account continues with a next term, with
expansion or contraction tilted by its health.

No noise term inside the probability: the only randomness of a decision is the Bernoulli draw
of the outcome, so the ground truth's ``true_churn_probability`` is the best prediction the
data allows, the oracle a model is measured against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np

from pipeline.core.numerics import exp, log, power
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.segments import PROFILES
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.world import (
    DAY_US,
    N_DIMS,
    ONBOARDING,
    PERIOD_DAYS,
    World,
    logit,
    sigmoid,
)

#: Churn log-odds weights of the 90-day averages of the time-varying dimensions (sign: a
#: healthy dimension lowers churn), one row per segment. Small accounts are low-touch: they
#: rarely open tickets and seldom meet their CSM, so support and the relationship weigh on their
#: decision far less than on an enterprise's, where the SLA and the executive sponsor matter.
_CHURN_WEIGHTS = np.array(
    [
        # usage, training, support, sentiment, relationship
        [0.55, 0.40, 0.25, 0.45, 0.10],  # smb
        [0.45, 0.40, 0.45, 0.45, 0.45],  # mid_market
        [0.40, 0.35, 0.50, 0.45, 0.60],  # enterprise
    ]
)
_ONBOARDING_WEIGHT_LATE = 0.3
_ONBOARDING_WEIGHT_EARLY = 1.0
#: Extra onboarding weight and churn log-odds at an account's first renewal, whatever its term.
_ONBOARDING_WEIGHT_FIRST_TERM = 0.8
_FIRST_TERM_BONUS = 0.4
#: Extra churn log-odds per unit a latent dimension falls below the knee (deep trouble).
_SEVERITY_KNEE = -1.0
_SEVERITY_WEIGHT = 0.6
#: Extra churn log-odds of a decision at tenure t: _EARLY_BONUS * exp(-t / _EARLY_SCALE_DAYS).
#: Most churn is decided in onboarding, so a monthly customer's first renewals are the riskiest.
_EARLY_BONUS = 3.5
_EARLY_SCALE_DAYS = 60.0
#: log-odds offset per segment that brings the mean churn back to the segment's target despite
#: the spread of the drivers (the log-odds are convex: spread raises the mean).
_CHURN_CALIBRATION = np.array([-2.2, -4.22, -4.155])


def add_months(start: date, day: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Day index of ``start + day`` plus ``months`` calendar months (day of month clipped)."""
    base = np.datetime64(start, "D")
    d = base + day.astype("timedelta64[D]")
    month = d.astype("datetime64[M]")
    day_of_month = (d - month.astype("datetime64[D]")).astype(np.int64)
    new_month = month + months.astype("timedelta64[M]")
    month_len = (
        (new_month + 1).astype("datetime64[D]") - new_month.astype("datetime64[D]")
    ).astype(np.int64)
    out = new_month.astype("datetime64[D]") + np.minimum(day_of_month, month_len - 1).astype(
        "timedelta64[D]"
    )
    return (out - base).astype(np.int64)


def base_churn_logit(segment: np.ndarray, term_months: np.ndarray) -> np.ndarray:
    """Log-odds of an average account churning at the end of a term of this length."""
    annual = np.array([p.annual_churn for p in PROFILES])[segment]
    per_term = 1.0 - power(1.0 - annual, term_months / 12.0)
    return logit(per_term) + _CHURN_CALIBRATION[segment]


#: Days before a decision at which its drivers sample the latent dimensions: the 90 days before.
WINDOW_BACK_DAYS = (15, 45, 75)


def decision_drivers(
    world: World,
    acct: np.ndarray,
    decision_day: np.ndarray,
    back_days: tuple[int, ...] = WINDOW_BACK_DAYS,
) -> np.ndarray:
    """Latent dimensions averaged over the window before the decision (rows x 6), and health.

    The window is the 90 days before it by default, sampled ``back_days`` before the decision
    (never before the account's creation); a monthly decision looks at its own month.
    """
    created = world.created_day[acct]
    total = np.zeros((acct.size, N_DIMS + 1))
    for back in back_days:
        day = np.maximum(decision_day - back, created)
        total[:, :N_DIMS] += world.dims(acct, day)
        period = np.clip(day // PERIOD_DAYS, 0, world.health.shape[1] - 1)
        total[:, N_DIMS] += world.health[acct, period]
    return total / len(back_days)


def churn_logit(
    world: World,
    acct: np.ndarray,
    drivers: np.ndarray,
    tenure: np.ndarray,
    term: np.ndarray,
    first_term: np.ndarray,
) -> np.ndarray:
    """Planted churn log-odds: the relationship the model has to learn.

    Deliberately without a noise term: the decision's randomness is the Bernoulli draw of the
    outcome, so the true probability is exactly what the drivers (all observable) imply.
    The first renewal of a contract is where onboarding decides (DOMAIN.md: most churn is
    decided in the first months), even for an annual term whose first renewal is a year out.
    """
    early = exp(-tenure / _EARLY_SCALE_DAYS)
    onboarding_weight = (
        _ONBOARDING_WEIGHT_LATE
        + _ONBOARDING_WEIGHT_EARLY * early
        + _ONBOARDING_WEIGHT_FIRST_TERM * first_term
    )
    # "Watermelon" accounts: one dimension in deep trouble outweighs fine scores elsewhere, so
    # the risk grows faster than linearly below a knee (a points-based health score caps it).
    deep = np.maximum(0.0, _SEVERITY_KNEE - drivers[:, :N_DIMS]).sum(axis=1)
    return (
        base_churn_logit(world.segment[acct], term)
        - (drivers[:, :5] * _CHURN_WEIGHTS[world.segment[acct]]).sum(axis=1)
        - onboarding_weight * drivers[:, ONBOARDING]
        + _SEVERITY_WEIGHT * deep
        + _EARLY_BONUS * early
        + _FIRST_TERM_BONUS * first_term
    )


#: How a company's renewal decisions are planted: (world, accounts, decision days, tenure days,
#: term months, first renewal) -> (churn log-odds, the drivers recorded in the ground truth,
#: rows x 7: the six latent dimensions and health).
DecisionModel = Callable[
    [World, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray],
]
#: Churn log-odds from a decision's drivers: (world, accounts, drivers, tenure days, term months,
#: first renewal, decision days) -> log-odds. It reads only the world's fixed account traits
#: (segment, creation); the latent state comes in through the drivers.
DriverLogit = Callable[
    [World, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray
]


@dataclass(frozen=True)
class WindowDecisions:
    """A `DecisionModel` that reads the latent world only through `decision_drivers` at
    ``back_days`` and turns those drivers into churn log-odds with ``logit``.

    Every company's decisions have this shape. Keeping the two parts apart lets the
    point-in-time oracle (`oracle`) redraw the latent state of the window as a snapshot before
    the decision sees it, and apply the very same log-odds.
    """

    logit: DriverLogit
    back_days: tuple[int, ...] = WINDOW_BACK_DAYS

    def __call__(
        self,
        world: World,
        acct: np.ndarray,
        decision_day: np.ndarray,
        tenure: np.ndarray,
        term: np.ndarray,
        first_term: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        drivers = decision_drivers(world, acct, decision_day, self.back_days)
        log_odds = self.logit(world, acct, drivers, tenure, term, first_term, decision_day)
        return log_odds, drivers


def _demo_logit(
    world: World,
    acct: np.ndarray,
    drivers: np.ndarray,
    tenure: np.ndarray,
    term: np.ndarray,
    first_term: np.ndarray,
    decision_day: np.ndarray,
) -> np.ndarray:
    return churn_logit(world, acct, drivers, tenure, term, first_term)


#: The demo's decision model: `churn_logit` of the 90-day drivers.
demo_decisions = WindowDecisions(_demo_logit)


@dataclass(frozen=True)
class Contracts:
    """Every contract term, sorted by account and start, with its renewal decision."""

    account: np.ndarray
    start_day: np.ndarray
    end_day: np.ndarray
    seats: np.ndarray
    arr: np.ndarray
    plan: np.ndarray  # object array of plan names
    term: np.ndarray
    decided: np.ndarray  # bool
    churned: np.ndarray  # bool (False when undecided)
    probability: np.ndarray  # nan when undecided
    drivers: np.ndarray  # (rows, 7); nan when undecided
    churn_day: np.ndarray  # per account: day of churn, or -1


def simulate_contracts(
    config: SimulationConfig, world: World, decide: DecisionModel = demo_decisions
) -> Contracts:
    """Chain each account's terms from its creation: decide every term that ends before as_of
    (with ``decide``: the demo's model unless a profile plants another), renew the survivors
    (seats and price move with health), until no account is left."""
    rng = random_stream(config.seed, "contracts")
    n = world.n_accounts
    n_days = world.n_days
    seg = world.segment.astype(np.int64)

    term = np.zeros(n, dtype=np.int64)
    seats = np.zeros(n, dtype=np.int64)
    price = np.zeros(n)
    plan = np.empty(n, dtype=object)
    for s, prof in enumerate(PROFILES):
        idx = np.flatnonzero(seg == s)
        term[idx] = rng.choice(prof.term_months, size=idx.size, p=prof.term_probs)
        raw = exp(rng.normal(log(prof.seats_median), prof.seats_sigma, idx.size))
        seats[idx] = np.clip(np.round(raw), 1 if s == 0 else 5, prof.seats_max)
        price[idx] = prof.price_per_seat * exp(rng.normal(0.0, prof.price_sigma, idx.size))
        plan[idx] = rng.choice(prof.plans, size=idx.size, p=prof.plan_probs)

    max_delay = max(0, min(14, int(config.renewal_grace_days) - 1))
    parts: list[dict[str, np.ndarray]] = []
    churn_day = np.full(n, -1, dtype=np.int64)
    acct = np.arange(n)
    start = world.created_day.copy()
    while acct.size:
        end = add_months(config.start_date, start, term)
        decided = end < n_days
        prob = np.full(acct.size, np.nan)
        drivers = np.full((acct.size, N_DIMS + 1), np.nan)
        churned = np.zeros(acct.size, dtype=bool)
        d = np.flatnonzero(decided)
        if d.size:
            tenure = end[d] - world.created_day[acct[d]]
            first_term = start[d] == world.created_day[acct[d]]
            logit, drv = decide(world, acct[d], end[d], tenure, term[d], first_term)
            logit = logit + config.churn_logit_shift
            prob[d] = sigmoid(logit)
            drivers[d] = drv
            churned[d] = rng.random(d.size) < prob[d]
        parts.append(
            {
                "account": acct,
                "start_day": start,
                "end_day": end,
                "seats": seats,
                "arr": np.round(seats * price, 2),
                "plan": plan,
                "term": term,
                "decided": decided,
                "churned": churned,
                "probability": prob,
                "drivers": drivers,
            }
        )
        churn_day[acct[churned]] = end[churned]

        renew = decided & ~churned
        health_now = drivers[renew, N_DIMS]
        acct, end, term = acct[renew], end[renew], term[renew]
        seats, price, plan = seats[renew], price[renew], plan[renew]
        # Most renewals start the day the term ends, the rest a few days later (within the
        # grace, or they would count as churn); with a grace under two days, all start on time.
        on_time = rng.random(acct.size) < 0.8
        late = rng.integers(1, max_delay + 1, acct.size) if max_delay else np.zeros(acct.size, int)
        delay = np.where(on_time, 0, late)
        start = np.where(end + delay < n_days, end + delay, end)
        # Expansion or contraction at renewal, tilted by health; monthly terms rarely change.
        changes = (term > 1) | (rng.random(acct.size) < 0.12)
        factor = exp(rng.normal(0.03 + 0.10 * health_now, 0.12))
        new_seats = np.maximum(1, np.round(seats * factor)).astype(np.int64)
        seats = np.where(changes, new_seats, seats)
        price = np.where(term > 1, price * 1.03, price)
        # A few healthy monthly customers move to an annual contract.
        to_annual = (term == 1) & (rng.random(acct.size) < 0.03 * (1.0 + (health_now > 0)))
        term = np.where(to_annual, 12, term)
        multi = term >= 24
        term = np.where(multi, rng.choice([12, 24, 36], size=acct.size), term)

    def cat(key: str) -> np.ndarray:
        return np.concatenate([p[key] for p in parts])

    account = cat("account")
    start_all = cat("start_day")
    order = np.lexsort((start_all, account))
    return Contracts(
        account=account[order],
        start_day=start_all[order],
        end_day=cat("end_day")[order],
        seats=cat("seats")[order],
        arr=cat("arr")[order],
        plan=cat("plan")[order],
        term=cat("term")[order],
        decided=cat("decided")[order],
        churned=cat("churned")[order],
        probability=cat("probability")[order],
        drivers=np.concatenate([p["drivers"] for p in parts])[order],
        churn_day=churn_day,
    )


def account_end_us(world: World, contracts: Contracts) -> np.ndarray:
    """When an account stops producing events: its churn (midnight of the end date) or as_of."""
    churned = contracts.churn_day >= 0
    return np.where(churned, contracts.churn_day * DAY_US, world.n_days * DAY_US)
