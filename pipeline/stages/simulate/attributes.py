"""Account attributes that change over time, and the churn they plant (the `minimal` company).

Four attributes, each recorded when it changes, as a CRM or billing system records them:

- ``employees``: the company's headcount from a firmographics provider, refreshed about twice a
  year; healthy customers grow, struggling ones shrink. Some first lookups find nothing (empty).
- ``channel``: how the account was acquired (outbound_sales, inbound, partner, self_serve),
  once, at signup.
- ``discount_pct``: the discount granted at signup; some intro discounts end after a year.
- ``plan_tier``: basic, pro or premium; reviewed every few months, upgraded by healthy accounts
  and downgraded by unhealthy ones.

`attribute_decisions` is a `DecisionModel`: it plants churn on usage, onboarding and the values
these attributes held a month before the decision (the ones a snapshot before the renewal
sees), so a company whose only other signal is its event log has something more to learn from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.core.numerics import exp, log
from pipeline.stages.simulate.columns import str_column, ts_column
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.contracts import WindowDecisions, base_churn_logit
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.world import (
    DAY_US,
    HOUR_US,
    N_DIMS,
    ONBOARDING,
    PERIOD_DAYS,
    USAGE,
    World,
)

ATTRIBUTES: tuple[str, ...] = ("employees", "channel", "discount_pct", "plan_tier")
CHANNELS: tuple[str, ...] = ("outbound_sales", "inbound", "partner", "self_serve")
PLAN_TIERS: tuple[str, ...] = ("basic", "pro", "premium")

# Per segment (smb, mid_market, enterprise).
_EMPLOYEES_MEDIAN = np.array([40.0, 350.0, 3000.0])
_CHANNEL_PROBS = np.array(
    [[0.10, 0.35, 0.10, 0.45], [0.45, 0.30, 0.20, 0.05], [0.70, 0.10, 0.20, 0.00]]
)
_DISCOUNTS = np.array([0.0, 10.0, 20.0, 30.0])
_DISCOUNT_PROBS = np.array(
    [[0.60, 0.25, 0.10, 0.05], [0.35, 0.35, 0.20, 0.10], [0.20, 0.30, 0.30, 0.20]]
)
_TIER_PROBS = np.array([[0.70, 0.30, 0.00], [0.20, 0.60, 0.20], [0.00, 0.30, 0.70]])
_REVIEW_DAYS = 120
_UNKNOWN_EMPLOYEES_SHARE = 0.06

# Churn log-odds of the attribute values (what the model can learn from them).
_EMPLOYEES_WEIGHT = -0.3  # per unit of ln(employees / segment median): smaller churns more
_CHANNEL_EFFECT = np.array([-0.1, 0.0, -0.35, 0.45])
_DISCOUNT_WEIGHT = 0.025  # per discount point: bargain hunters leave when the deal ends
_TIER_EFFECT = np.array([0.35, 0.0, -0.25])
#: The attributes a decision depends on are the ones held this many days before it.
_KNOWN_BEFORE_DAYS = 30
#: Usage weighs more than in the demo: with attributes, it is all this company observes.
_USAGE_WEIGHT = 0.85
_ONBOARDING_WEIGHT = 0.5
_EARLY_BONUS = 2.0
_EARLY_SCALE_DAYS = 60.0
_SEVERITY_KNEE = -1.0
_SEVERITY_WEIGHT = 0.6
#: Per segment: brings the mean churn near the demo's levels (fewer drivers than the demo's,
#: so less spread to correct for).
_CALIBRATION = np.array([0.8, 2.2, 2.25])


@dataclass(frozen=True)
class AttributeHistory:
    """Every recorded value, one row per (account, attribute, day), sorted by account and day.

    ``number`` holds employees and discounts (nan: unknown); ``code`` the index into CHANNELS
    or PLAN_TIERS for the categories (-1 for numbers).
    """

    account: np.ndarray
    attribute: np.ndarray  # index into ATTRIBUTES
    valid_from_us: np.ndarray  # microseconds since start_date
    number: np.ndarray
    code: np.ndarray

    def value_at(self, attribute: str, acct: np.ndarray, day: np.ndarray) -> np.ndarray:
        """The attribute's value (number or code) recorded last before ``day`` (nan if none)."""
        which = np.flatnonzero(self.attribute == ATTRIBUTES.index(attribute))
        rec_acct = self.account[which]
        rec_day = self.valid_from_us[which] // DAY_US
        span = int(max(rec_day.max(initial=0), np.max(day, initial=0))) + 2
        keys = rec_acct * span + rec_day
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        values = (self.number if attribute in ("employees", "discount_pct") else self.code)[which]
        values = values[order].astype(np.float64)
        query = np.asarray(acct, dtype=np.int64) * span + np.asarray(day, dtype=np.int64)
        pos = np.searchsorted(keys, query, side="left") - 1
        found = (pos >= 0) & (rec_acct[order][np.maximum(pos, 0)] == acct)
        return np.where(found, values[np.maximum(pos, 0)], np.nan)


def simulate_attributes(config: SimulationConfig, world: World) -> AttributeHistory:
    """Every account's attribute history from signup to as_of (the caller drops what an account
    records after it churned)."""
    rng = random_stream(config.seed, "attributes")
    n, n_days = world.n_accounts, world.n_days
    seg = world.segment.astype(np.int64)
    created = world.created_day
    parts: list[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(acct, attribute, us, number=None, code=None) -> None:
        size = acct.size
        number = np.full(size, np.nan) if number is None else number.astype(np.float64)
        code = np.full(size, -1, dtype=np.int64) if code is None else code.astype(np.int64)
        parts.append((acct, ATTRIBUTES.index(attribute), us.astype(np.int64), number, code))

    # employees: refreshed every 150-210 days, growing or shrinking with long-run health
    base = _EMPLOYEES_MEDIAN[seg] * exp(rng.normal(0.0, 0.6, n))
    growth = rng.normal(0.06 + 0.15 * world.health_mean, 0.1)
    n_refresh = n_days // 150 + 1
    gaps = rng.uniform(150, 210, (n, n_refresh))
    day = created[:, None] + np.concatenate([np.zeros((n, 1)), np.cumsum(gaps, axis=1)], axis=1)
    day = day[:, :n_refresh].astype(np.int64)
    noise = exp(rng.normal(0.0, 0.03, day.shape))
    unknown_first = rng.random(n) < _UNKNOWN_EMPLOYEES_SHARE
    acct, k = np.nonzero(day < n_days)
    years = (day[acct, k] - created[acct]) / 365.0
    employees = np.maximum(1.0, np.round(base[acct] * exp(growth[acct] * years) * noise[acct, k]))
    employees = np.where((k == 0) & unknown_first[acct], np.nan, employees)
    us = np.where(k == 0, world.created_us[acct], day[acct, k] * DAY_US + 2 * HOUR_US)
    add(acct, "employees", us, number=employees)

    # channel: once, at signup
    u = rng.random(n)
    channel = (u[:, None] > np.cumsum(_CHANNEL_PROBS[seg], axis=1)).sum(axis=1)
    add(np.arange(n), "channel", world.created_us, code=np.minimum(channel, len(CHANNELS) - 1))

    # discount: at signup; a share of the intro discounts end a year later
    u = rng.random(n)
    pick = np.minimum((u[:, None] > np.cumsum(_DISCOUNT_PROBS[seg], axis=1)).sum(axis=1), 3)
    discount = _DISCOUNTS[pick]
    add(np.arange(n), "discount_pct", world.created_us, number=discount)
    ends = (discount > 0) & (rng.random(n) < 0.4) & (created + 365 < n_days)
    acct = np.flatnonzero(ends)
    add(
        acct,
        "discount_pct",
        (created[acct] + 365) * DAY_US + 3 * HOUR_US,
        number=discount[acct] * 0,
    )

    # plan tier: at signup, then reviewed every _REVIEW_DAYS days by health
    u = rng.random(n)
    tier = np.minimum((u[:, None] > np.cumsum(_TIER_PROBS[seg], axis=1)).sum(axis=1), 2)
    add(np.arange(n), "plan_tier", world.created_us, code=tier)
    tier = tier.copy()
    for review in range(1, n_days // _REVIEW_DAYS + 1):
        day = created + review * _REVIEW_DAYS
        live = np.flatnonzero(day < n_days)
        if not live.size:
            break
        period = np.clip(day[live] // PERIOD_DAYS, 0, world.health.shape[1] - 1)
        health = world.health[live, period]
        u = rng.random(live.size)
        up = (health > 0.7) & (tier[live] < 2) & (u < 0.2)
        down = (health < -0.5) & (tier[live] > 0) & (u < 0.3)
        changed = live[up | down]
        tier[live[up]] += 1
        tier[live[down]] -= 1
        add(changed, "plan_tier", day[changed] * DAY_US + 4 * HOUR_US, code=tier[changed])

    account = np.concatenate([p[0] for p in parts])
    attribute = np.concatenate([np.full(p[0].size, p[1], dtype=np.int8) for p in parts])
    valid_from = np.concatenate([p[2] for p in parts])
    order = np.lexsort((attribute, valid_from, account))
    return AttributeHistory(
        account=account[order],
        attribute=attribute[order],
        valid_from_us=valid_from[order],
        number=np.concatenate([p[3] for p in parts])[order],
        code=np.concatenate([p[4] for p in parts])[order],
    )


def attribute_frame(
    history: AttributeHistory,
    account_ids: pd.Series,
    account_end_us: np.ndarray,
    config: SimulationConfig,
) -> pd.DataFrame:
    """The ``account_attributes`` table: the values recorded while the account was a customer,
    as text (numbers as integers, categories by name, unknown as empty)."""
    keep = history.valid_from_us < account_end_us[history.account]
    acct, attribute = history.account[keep], history.attribute[keep]
    number, code = history.number[keep], history.code[keep]
    names = np.array(ATTRIBUTES, dtype=object)[attribute]
    categories = {"channel": CHANNELS, "plan_tier": PLAN_TIERS}
    value = np.empty(acct.size, dtype=object)
    for name in ATTRIBUTES:
        rows = names == name
        if name in categories:
            value[rows] = np.array(categories[name], dtype=object)[code[rows]]
        else:
            known = rows & ~np.isnan(number)
            value[known] = np.round(number[known]).astype(np.int64).astype(str)
    # (np.empty of objects is all None: an unknown number stays empty)
    return pd.DataFrame(
        {
            "account_id": str_column(account_ids.array, acct),
            "attribute": str_column(list(ATTRIBUTES), attribute),
            "value": str_column(value),
            "valid_from": ts_column(config.start_date, history.valid_from_us[keep]),
        }
    )


@dataclass(frozen=True)
class AttributeLogit:
    """Churn log-odds on usage, onboarding and the account's attributes (the `minimal`
    company's): the dimensions its tables show, and nothing they do not. A `DriverLogit`:
    `attribute_decisions` makes it the company's decision model."""

    history: AttributeHistory

    def attribute_logit(self, world: World, acct: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Churn log-odds of the attribute values held ``_KNOWN_BEFORE_DAYS`` before ``day``."""
        known = np.maximum(day - _KNOWN_BEFORE_DAYS, world.created_day[acct] + 1)
        employees = self.history.value_at("employees", acct, known)
        median = _EMPLOYEES_MEDIAN[world.segment[acct]]
        size = np.where(np.isnan(employees), 0.0, log(np.maximum(employees, 1.0) / median))
        channel = self.history.value_at("channel", acct, known).astype(np.int64)
        discount = np.nan_to_num(self.history.value_at("discount_pct", acct, known))
        tier = self.history.value_at("plan_tier", acct, known).astype(np.int64)
        return (
            _EMPLOYEES_WEIGHT * np.clip(size, -3.0, 3.0)
            + _CHANNEL_EFFECT[channel]
            + _DISCOUNT_WEIGHT * discount
            + _TIER_EFFECT[tier]
        )

    def __call__(
        self,
        world: World,
        acct: np.ndarray,
        drivers: np.ndarray,
        tenure: np.ndarray,
        term: np.ndarray,
        first_term: np.ndarray,
        decision_day: np.ndarray,
    ) -> np.ndarray:
        assert drivers.shape[1] == N_DIMS + 1
        early = exp(-tenure / _EARLY_SCALE_DAYS)
        seen = drivers[:, [USAGE, ONBOARDING]]
        deep = np.maximum(0.0, _SEVERITY_KNEE - seen).sum(axis=1)
        return (
            base_churn_logit(world.segment[acct], term)
            + _CALIBRATION[world.segment[acct]]
            - _USAGE_WEIGHT * drivers[:, USAGE]
            - _ONBOARDING_WEIGHT * (1.0 + early + first_term) * drivers[:, ONBOARDING]
            + _SEVERITY_WEIGHT * deep
            + _EARLY_BONUS * early
            + self.attribute_logit(world, acct, decision_day)
        )


def attribute_decisions(history: AttributeHistory) -> WindowDecisions:
    """The minimal company's decision model: `AttributeLogit` of the 90-day drivers."""
    return WindowDecisions(AttributeLogit(history))
