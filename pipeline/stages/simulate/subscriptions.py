"""Monthly subscriptions and their planted decisions (the `plg_monthly` company).

A product-led company bills each customer monthly on one open-ended subscription: the customer
signs up with a plan and a number of seats, and every billing date (the signup's day of month,
clamped to short months) is a renewal decision. A customer who cancels does so some day in a
billing period; the subscription then ends at the end of that period (what they paid for), so
the export's end date is a billing date and never the day of the click. A subscription still
running at as_of has no end date.

Each decision draws churn with a probability that is a sigmoid of what this company observes,
averaged over the month before the billing date: usage (volume, active days and the event mix
follow the usage dimension), support (tickets and their errors), sentiment (CSAT), and
onboarding (early usage), plus the segment and tenure; training and the CSM relationship are
not observed here and weigh nothing. As in the demo, no noise term inside the probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.numerics import exp, log
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.contracts import WindowDecisions, add_months
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.world import (
    DAY_US,
    N_DIMS,
    ONBOARDING,
    SENTIMENT,
    SUPPORT,
    USAGE,
    World,
    logit,
    sigmoid,
)

PLANS: tuple[str, ...] = ("Starter", "Team", "Business")
#: List price per seat and month of each plan.
_PLAN_PRICE = np.array([15.0, 29.0, 49.0])
# Per segment (smb, mid_market, enterprise): seats, plan mix, baseline monthly churn.
_SEATS_MEDIAN = np.array([3.0, 22.0, 90.0])
_SEATS_SIGMA = np.array([0.6, 0.35, 0.45])
_SEATS_RANGE = np.array([[1, 9], [10, 49], [50, 600]])
_PLAN_PROBS = np.array([[0.65, 0.35, 0.0], [0.15, 0.6, 0.25], [0.0, 0.35, 0.65]])
_MONTHLY_CHURN = np.array([0.035, 0.018, 0.010])
#: Log-odds weights of usage, support and sentiment per segment: small customers rarely open
#: tickets, large ones care more about support.
_WEIGHTS = np.array([[0.9, 0.25, 0.45], [0.8, 0.4, 0.5], [0.7, 0.5, 0.5]])
_ONBOARDING_WEIGHT = 0.3
_ONBOARDING_WEIGHT_EARLY = 1.0
_EARLY_BONUS = 0.9
_EARLY_SCALE_DAYS = 60.0
_SEVERITY_KNEE = -1.0
_SEVERITY_WEIGHT = 0.6
#: Brings the mean monthly churn back near the segment's baseline despite the drivers' spread.
_CALIBRATION = np.array([-1.02, -1.36, -1.9])
#: The month before a billing date, sampled these many days before it.
_WINDOW_BACK_DAYS = (5, 15, 25)


@dataclass(frozen=True)
class Subscriptions:
    """One subscription per account (index = account) and every billing decision before as_of.

    ``end_day`` is the billing date the subscription ended on (-1: still running at as_of);
    ``cancelled_us`` when the customer clicked cancel (-1 when they did not). Decisions are
    sorted by account and billing number ``term``.
    """

    start_day: np.ndarray
    seats: np.ndarray
    plan: np.ndarray  # index into PLANS
    arr: np.ndarray  # 12 x the monthly price
    end_day: np.ndarray
    cancelled_us: np.ndarray
    decision_account: np.ndarray
    decision_term: np.ndarray  # 1 for the first billing date
    decision_day: np.ndarray
    probability: np.ndarray
    churned: np.ndarray
    drivers: np.ndarray  # (decisions, 7): the six latent dimensions and health

    @property
    def churn_day(self) -> np.ndarray:
        """Per account: the day the subscription ended, or -1."""
        return self.end_day

    def account_end_us(self, n_days: int) -> np.ndarray:
        """When each account stops producing rows: its subscription's end, or as_of."""
        return np.where(self.end_day >= 0, self.end_day, n_days) * DAY_US

    def terms(self) -> np.ndarray:
        """Per account: its billing terms up to as_of (the decided ones and the one running)."""
        decided = np.bincount(self.decision_account, minlength=self.start_day.size)
        return decided + (self.end_day < 0)


def monthly_churn_logit(
    world: World, acct: np.ndarray, drivers: np.ndarray, tenure: np.ndarray
) -> np.ndarray:
    """Planted log-odds of cancelling in the month before a billing date."""
    seg = world.segment[acct]
    early = exp(-tenure / _EARLY_SCALE_DAYS)
    seen = drivers[:, [USAGE, SUPPORT, SENTIMENT, ONBOARDING]]
    deep = np.maximum(0.0, _SEVERITY_KNEE - seen).sum(axis=1)
    return (
        logit(_MONTHLY_CHURN[seg])
        + _CALIBRATION[seg]
        - (drivers[:, [USAGE, SUPPORT, SENTIMENT]] * _WEIGHTS[seg]).sum(axis=1)
        - (_ONBOARDING_WEIGHT + _ONBOARDING_WEIGHT_EARLY * early) * drivers[:, ONBOARDING]
        + _SEVERITY_WEIGHT * deep
        + _EARLY_BONUS * early
    )


def _monthly_logit(
    world: World,
    acct: np.ndarray,
    drivers: np.ndarray,
    tenure: np.ndarray,
    term: np.ndarray,
    first_term: np.ndarray,
    decision_day: np.ndarray,
) -> np.ndarray:
    return monthly_churn_logit(world, acct, drivers, tenure)


#: The monthly decision model: `monthly_churn_logit` of the month before the billing date.
MONTHLY_DECISIONS = WindowDecisions(_monthly_logit, back_days=_WINDOW_BACK_DAYS)


def simulate_subscriptions(config: SimulationConfig, world: World) -> Subscriptions:
    """Sign every account up at its creation, then decide each billing date before as_of until
    it cancels."""
    rng = random_stream(config.seed, "subscriptions")
    n, n_days = world.n_accounts, world.n_days
    seg = world.segment.astype(np.int64)
    raw_seats = exp(rng.normal(log(_SEATS_MEDIAN[seg]), _SEATS_SIGMA[seg]))
    seats = np.clip(np.round(raw_seats), _SEATS_RANGE[seg, 0], _SEATS_RANGE[seg, 1])
    u = rng.random(n)
    plan = np.minimum((u[:, None] > np.cumsum(_PLAN_PROBS[seg], axis=1)).sum(axis=1), 2)
    # a few customers negotiated a lower seat price
    price = _PLAN_PRICE[plan] * np.where(rng.random(n) < 0.15, rng.uniform(0.7, 0.95, n), 1.0)
    arr = np.round(12.0 * seats * price, 2)
    start = world.created_day.astype(np.int64)

    end_day = np.full(n, -1, dtype=np.int64)
    cancelled_us = np.full(n, -1, dtype=np.int64)
    parts: list[tuple[np.ndarray, ...]] = []
    alive = np.arange(n)
    term = 1
    while alive.size:
        billing = add_months(config.start_date, start[alive], np.full(alive.size, term))
        due = billing < n_days
        alive, billing = alive[due], billing[due]
        if not alive.size:
            break
        tenure = billing - world.created_day[alive]
        months, first = np.ones(alive.size, dtype=np.int64), np.full(alive.size, term == 1)
        z, drivers = MONTHLY_DECISIONS(world, alive, billing, tenure, months, first)
        z = z + config.churn_logit_shift
        probability = sigmoid(z)
        churned = rng.random(alive.size) < probability
        previous = add_months(config.start_date, start[alive], np.full(alive.size, term - 1))
        click = previous * DAY_US + (
            rng.uniform(0.05, 0.95, alive.size) * (billing - previous) * DAY_US
        ).astype(np.int64)
        end_day[alive[churned]] = billing[churned]
        cancelled_us[alive[churned]] = click[churned]
        parts.append((alive, np.full(alive.size, term), billing, probability, churned, drivers))
        alive = alive[~churned]
        term += 1

    def cat(i: int) -> np.ndarray:
        return np.concatenate([p[i] for p in parts]) if parts else np.zeros(0)

    account, terms = cat(0).astype(np.int64), cat(1).astype(np.int64)
    order = np.lexsort((terms, account))
    drivers = (np.concatenate([p[5] for p in parts]) if parts else np.zeros((0, N_DIMS + 1)))[order]
    return Subscriptions(
        start_day=start,
        seats=seats.astype(np.int64),
        plan=plan.astype(np.int64),
        arr=arr,
        end_day=end_day,
        cancelled_us=cancelled_us,
        decision_account=account[order],
        decision_term=terms[order],
        decision_day=cat(2).astype(np.int64)[order],
        probability=cat(3)[order],
        churned=cat(4).astype(bool)[order],
        drivers=drivers,
    )
