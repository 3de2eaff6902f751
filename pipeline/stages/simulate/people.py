"""People: the customer's users (with their hidden traits), their trainings, and the CSMs.

Users are invited over the onboarding weeks (slower when onboarding goes badly), added when a
renewal brings more seats, and turn over generation by generation; an account's users are all
deactivated when it churns. Each user's hidden traits (activity propensity, dormancy, delay to
first use) come from their own random stream, so the usage generator can rebuild them from the
public tables alone. Trainings follow the account's training dimension; CSMs are dedicated to
one segment, as many as that segment's portfolio size calls for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.core.numerics import exp, log1p
from pipeline.stages.simulate.columns import sequential_ids, str_column
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.contracts import Contracts, account_end_us
from pipeline.stages.simulate.segments import PROFILES
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.vocabulary import COURSES, FIRST_NAMES, LAST_NAMES
from pipeline.stages.simulate.world import DAY_US, HOUR_US, ONBOARDING, TRAINING, World, sigmoid


@dataclass(frozen=True)
class Users:
    """Every user ever created, sorted by account and creation."""

    account: np.ndarray  # int64 account index, sorted
    created_us: np.ndarray
    end_us: np.ndarray  # deactivation, or the as_of instant when still active
    deactivated: np.ndarray  # bool: end_us is a real deactivation
    role: np.ndarray  # int8 index into USER_ROLES


def simulate_users(config: SimulationConfig, world: World, contracts: Contracts) -> Users:
    """Initial users invited over onboarding, users for seats added at renewals, turnover."""
    rng = random_stream(config.seed, "users")
    n = world.n_accounts
    account_end = account_end_us(world, contracts)
    onboarding = world.dim(ONBOARDING, np.arange(n), world.created_day)

    # Initial users: the admin at signup, the others invited over the onboarding weeks
    # (slower when onboarding goes badly).
    first = np.r_[True, contracts.account[1:] != contracts.account[:-1]]
    seats0 = np.zeros(n, dtype=np.int64)
    seats0[contracts.account[first]] = contracts.seats[first]
    n0 = np.maximum(1, np.round(seats0 * world.activation * rng.uniform(0.85, 1.1, n)))
    n0 = n0.astype(np.int64)
    acc0 = np.repeat(np.arange(n), n0)
    rank = np.arange(acc0.size) - np.repeat(np.cumsum(n0) - n0, n0)
    invite_mean_days = 10.0 * exp(-1.2 * onboarding)
    delay_days = rng.exponential(1.0, acc0.size) * invite_mean_days[acc0]
    delay_us = np.where(
        rank == 0,
        rng.uniform(0.02, 2.0, acc0.size) * HOUR_US,
        delay_days * DAY_US + rng.uniform(0.5, 10.0, acc0.size) * HOUR_US,
    )
    created0 = world.created_us[acc0] + delay_us.astype(np.int64)
    role0 = np.where(rank == 0, 0, rng.choice(3, size=acc0.size, p=(0.05, 0.7, 0.25)))

    # Expansion users: a renewal with more seats brings new users in the following weeks.
    prev_seats = np.r_[0, contracts.seats[:-1]]
    grow = ~first & (contracts.seats > prev_seats)
    n_exp = np.round((contracts.seats - prev_seats) * world.activation[contracts.account] * grow)
    n_exp = np.maximum(n_exp, 0).astype(np.int64)
    acc1 = np.repeat(contracts.account, n_exp)
    start1 = np.repeat(contracts.start_day, n_exp) * DAY_US
    created1 = start1 + (rng.exponential(15.0, acc1.size) * DAY_US).astype(np.int64)
    role1 = rng.choice(3, size=acc1.size, p=(0.03, 0.72, 0.25))

    # Turnover: users leave after an exponential lifetime and most are replaced, generation by
    # generation (each generation is one vectorised step).
    gen_acc = np.concatenate([acc0, acc1])
    gen_created = np.concatenate([created0, created1])
    gen_role = np.concatenate([role0, role1])
    accounts, created, roles, ends = [], [], [], []
    for _ in range(12):
        lifetime = (rng.exponential(1000.0, gen_acc.size) * DAY_US).astype(np.int64)
        leave = gen_created + lifetime
        accounts.append(gen_acc)
        created.append(gen_created)
        roles.append(gen_role)
        ends.append(leave)
        replaced = (leave < account_end[gen_acc]) & (rng.random(gen_acc.size) < 0.75)
        if not replaced.any():
            break
        gap = (rng.exponential(20.0, int(replaced.sum())) * DAY_US).astype(np.int64)
        gen_acc = gen_acc[replaced]
        gen_created = leave[replaced] + gap + HOUR_US
        gen_role = gen_role[replaced]

    account = np.concatenate(accounts)
    created_us = np.concatenate(created)
    natural_end = np.concatenate(ends)
    role = np.concatenate(roles).astype(np.int8)

    acc_end = account_end[account]
    keep = created_us < acc_end
    account, created_us, natural_end, role, acc_end = (
        a[keep] for a in (account, created_us, natural_end, role, acc_end)
    )
    end_us = np.minimum(natural_end, acc_end)
    churned_account = contracts.churn_day[account] >= 0
    deactivated = (natural_end < acc_end) | churned_account
    order = np.lexsort((created_us, account))
    return Users(
        account=account[order],
        created_us=created_us[order],
        end_us=end_us[order],
        deactivated=deactivated[order],
        role=role[order],
    )


@dataclass(frozen=True)
class UserTraits:
    """Per-user hidden traits, drawn from their own stream so usage chunks can rebuild them."""

    propensity: np.ndarray  # relative activity level, mean 1
    dormant_u: np.ndarray  # uniform: compared with the account's dormancy probability
    activation_u: np.ndarray  # uniform: quantile of the delay to first use


def user_traits(config: SimulationConfig, n_users: int) -> UserTraits:
    """The hidden traits of users 0..n_users-1, in the order of the users table."""
    rng = random_stream(config.seed, "user_traits")
    return UserTraits(
        # moderate spread: a 5-user account's activity must mostly reflect the account, not
        # which users it happens to have
        propensity=rng.gamma(12.0, 1.0 / 12.0, n_users),
        dormant_u=rng.random(n_users),
        activation_u=rng.random(n_users),
    )


def user_activity_window(
    world: World,
    account: np.ndarray,
    created_us: np.ndarray,
    end_us: np.ndarray,
    traits: UserTraits,
    rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First and last (exclusive) whole day a user can be active, and whether they are dormant.

    Days are whole UTC days strictly after the day of creation and strictly before the day of
    deactivation, so every event stamped within such a day is inside the user's lifetime.
    Poor onboarding shows as more never-activated seats and a longer time to first use.
    """
    onboarding = world.dim(ONBOARDING, account, world.created_day[account])
    p_dormant = sigmoid(-2.0 - 1.8 * onboarding)
    dormant = traits.dormant_u[rows] < p_dormant
    mean_delay = 3.0 * exp(-1.4 * onboarding)
    # Weibull (shape 2) quantile: a delay that tracks onboarding more tightly than an exponential
    delay = np.floor(np.sqrt(-log1p(-traits.activation_u[rows])) * mean_delay / 0.886).astype(
        np.int64
    )
    first_day = created_us // DAY_US + 1 + delay
    end_day = end_us // DAY_US
    return first_day, end_day, dormant


def simulate_trainings(
    config: SimulationConfig, world: World, users: Users, traits: UserTraits
) -> dict[str, np.ndarray]:
    """Onboarding course soon after first use, advanced courses later, by training dimension."""
    rng = random_stream(config.seed, "trainings")
    n_users = users.account.size
    rows = np.arange(n_users)
    first_day, _, dormant = user_activity_window(
        world, users.account, users.created_us, users.end_us, traits, rows
    )
    first_us = np.maximum(first_day * DAY_US, users.created_us)
    t_dim = world.dim(TRAINING, users.account, first_day)

    # Onboarding course, in the first weeks after the user starts.
    p_basic = sigmoid(0.6 + 1.5 * t_dim) * np.where(dormant, 0.15, 1.0)
    take0 = rng.random(n_users) < p_basic
    enrolled0 = first_us + (rng.exponential(10.0, n_users) * DAY_US).astype(np.int64)
    # Advanced courses later on, for users who stay and accounts that invest in enablement.
    n_adv = len(COURSES) - 1
    later_day = users.created_us // DAY_US + rng.integers(30, 500, (n_users, n_adv)).T
    t_later = np.stack([world.dim(TRAINING, users.account, d) for d in later_day])
    p_adv = sigmoid(-1.0 + 1.4 * t_later) * np.where(dormant, 0.1, 1.0)
    take_adv = rng.random((n_adv, n_users)) < p_adv
    enrolled_adv = later_day * DAY_US + (rng.uniform(8, 18, (n_adv, n_users)) * HOUR_US).astype(
        np.int64
    )

    user = np.concatenate([rows[take0], *[rows[take_adv[k]] for k in range(n_adv)]])
    course = np.concatenate(
        [np.zeros(take0.sum(), dtype=np.int64)]
        + [np.full(take_adv[k].sum(), k + 1) for k in range(n_adv)]
    )
    enrolled = np.concatenate(
        [enrolled0[take0], *[enrolled_adv[k][take_adv[k]] for k in range(n_adv)]]
    )
    t_dim_at = np.concatenate([t_dim[take0], *[t_later[k][take_adv[k]] for k in range(n_adv)]])

    keep = enrolled < users.end_us[user]
    user, course, enrolled, t_dim_at = user[keep], course[keep], enrolled[keep], t_dim_at[keep]
    completes = rng.random(user.size) < sigmoid(1.2 + 1.2 * t_dim_at)
    duration = (rng.exponential(4.0, user.size) * DAY_US + HOUR_US).astype(np.int64)
    completed = enrolled + duration
    completes &= completed < users.end_us[user]
    score = np.clip(np.round(rng.normal(80.0 + 8.0 * t_dim_at, 7.0)), 0, 100)
    order = np.lexsort((enrolled, user))
    return {
        "user": user[order],
        "course": course[order],
        "enrolled_us": enrolled[order],
        "completed_us": completed[order],
        "completed": completes[order],
        "score": np.where(completes, score, np.nan)[order],
    }


def csm_assignment(config: SimulationConfig, world: World) -> tuple[pd.DataFrame, np.ndarray]:
    """CSMs dedicated to one segment, as many as the segment's portfolio size calls for."""
    rng = random_stream(config.seed, "csms")
    counts = []
    for s, prof in enumerate(PROFILES):
        n_seg = int((world.segment == s).sum())
        # roughly 3 of 4 accounts ever acquired are live at a time
        counts.append(max(1, int(np.ceil(0.75 * n_seg / prof.portfolio))) if n_seg else 0)
    csms = csm_directory(rng, sum(counts))
    owner = np.zeros(world.n_accounts, dtype=np.int64)
    offset = 0
    for s, k in enumerate(counts):
        idx = np.flatnonzero(world.segment == s)
        if k:
            owner[idx] = offset + rng.integers(0, k, idx.size)
        offset += k
    return csms, owner


def csm_directory(rng: np.random.Generator, n_csm: int) -> pd.DataFrame:
    """The csms table of ``n_csm`` CSMs (ids CSM001...), with distinct names and addresses."""
    combos = np.array([(f, last) for f in FIRST_NAMES for last in LAST_NAMES])
    pick = rng.permutation(len(combos))[: min(n_csm, len(combos))]
    pick = np.resize(pick, n_csm)
    first, last = combos[pick, 0], combos[pick, 1]
    serial = np.arange(1, n_csm + 1)
    repeat = np.arange(n_csm) >= len(combos)
    email_local = np.char.lower(np.char.add(np.char.add(first, "."), last))
    email_local = np.where(repeat, np.char.add(email_local, serial.astype(str)), email_local)
    return pd.DataFrame(
        {
            "csm_id": str_column(sequential_ids("CSM", n_csm, 3)),
            "name": str_column(np.char.add(np.char.add(first, " "), last)),
            "email": str_column(np.char.add(email_local, "@example.com")),
        }
    )
