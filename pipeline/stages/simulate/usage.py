"""Product usage: ``usage_events`` generated chunk by chunk of accounts.

Rows are daily aggregates per user, module and event type. Daily activity follows the
account's latent usage dimension and the user's own propensity; depth (the share of core and
advanced modules) grows with tenure, more for healthy accounts, and stays shallow for accounts
planted with low usage depth. A chunk holds ``events_chunk_accounts`` accounts, each drawn from
its own random stream, so 100M rows need bounded memory and any chunk can be rebuilt alone.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.core.numerics import exp
from pipeline.stages.simulate.columns import str_column, ts_column
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.people import UserTraits, user_activity_window, user_traits
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.vocabulary import MODULE_EVENT_TYPES, MODULES, USER_ROLES
from pipeline.stages.simulate.world import DAY_US, PERIOD_DAYS, USAGE, World, build_world, sigmoid

logger = logging.getLogger(__name__)

#: Modules by tier: basic (dashboard, reports), core (workflows, integrations), advanced (rest).

_TIER_FIRST = np.array([0, 2, 4], dtype=np.int8)
_TIER_SIZE = np.array([2, 2, 3], dtype=np.float32)
_EVENT_TYPE_NAMES = [e for m in MODULES for e in MODULE_EVENT_TYPES[m]]
#: Extra actions per row beyond the first, by (module, event type) code: views repeat most.
_COUNT_EXTRA = np.array([2.5 if k % 2 == 0 else 0.6 for k in range(2 * len(MODULES))])
_WEEKDAY_FACTOR = np.array([1.0, 1.05, 1.05, 1.0, 0.85, 0.12, 0.08])
_BASE_ACTIVITY = 0.4
#: Candidate user-days materialised at once while drawing daily activity.
_USER_DAY_BATCH = 2_000_000
#: Hours from UTC of each region (north_america, emea, apac, latam): when its users log in.
_REGION_UTC_OFFSET_HOURS = np.array([-5.0, 1.0, 8.0, -3.0])


def iter_usage_event_chunks(
    config: SimulationConfig, entities: dict[str, pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    """Yield ``usage_events`` in chunks of ``config.events_chunk_accounts`` accounts.

    Pure generator: one bounded chunk in memory at a time, identical output for the same config
    and entities (from ``simulate_entities(config)``). Rows are daily aggregates per user,
    module and event type. Daily activity follows the account's latent usage dimension and the
    user's own propensity; depth (share of core and advanced modules) grows with tenure, more
    for healthy accounts, and stays shallow for accounts planted with low usage depth.

    Raises ``ValueError`` (on the first ``next``) when ``entities`` do not belong to ``config``.
    """
    world = build_world(config)
    accounts = entities["accounts"]
    users = entities["users"]
    account_index = pd.Index(accounts["account_id"])
    user_acct = account_index.get_indexer(users["account_id"])
    if (user_acct < 0).any():
        raise ValueError("usage events: users reference account_ids missing from accounts")
    if len(accounts) != world.n_accounts:
        raise ValueError(
            f"usage events: entities have {len(accounts)} accounts, config says {world.n_accounts}"
        )
    base = np.datetime64(config.start_date, "us")
    created_us = (users["created_at"].dt.tz_convert(None).to_numpy("datetime64[us]") - base).astype(
        np.int64
    )
    deact = users["deactivated_at"].dt.tz_convert(None).to_numpy("datetime64[us]")
    end_us = np.where(
        np.isnat(deact), world.n_days * DAY_US, (deact - base).astype(np.int64)
    ).astype(np.int64)
    role = pd.Categorical(users["role"], categories=list(USER_ROLES)).codes.astype(np.int64)
    traits = user_traits(config, len(users))
    account_ids = pa.array(accounts["account_id"].array, type=pa.string())
    user_ids = pa.array(users["user_id"].array, type=pa.string())

    order = np.argsort(user_acct, kind="stable")
    sorted_acct = user_acct[order]
    chunk = int(config.events_chunk_accounts)
    for c, a0 in enumerate(range(0, world.n_accounts, chunk)):
        lo, hi = np.searchsorted(sorted_acct, [a0, a0 + chunk])
        rows = order[lo:hi]
        frame = _usage_chunk(
            config,
            world,
            random_stream(config.seed, "usage", c),
            rows,
            user_acct[rows],
            created_us[rows],
            end_us[rows],
            role[rows],
            traits,
            account_ids,
            user_ids,
        )
        logger.debug("usage chunk %d: %d rows", c, len(frame))
        yield frame


def _usage_chunk(
    config: SimulationConfig,
    world: World,
    rng: np.random.Generator,
    rows: np.ndarray,
    acct: np.ndarray,
    created_us: np.ndarray,
    end_us: np.ndarray,
    role: np.ndarray,
    traits: UserTraits,
    account_ids: pa.Array,
    user_ids: pa.Array,
) -> pd.DataFrame:
    """The usage rows of the users ``rows`` (all of one chunk of accounts), from ``rng``."""
    n_periods = world.health.shape[1]
    first_day, end_day, dormant = user_activity_window(
        world, acct, created_us, end_us, traits, rows
    )
    length = np.where(dormant, 0, np.maximum(end_day - first_day, 0))

    # Per (user, period) tables of activity probability and depth, so that each user-day needs
    # a single flat lookup.
    k = rows.size
    period_mid_day = np.arange(n_periods) * PERIOD_DAYS + PERIOD_DAYS // 2
    usage = world.dim(USAGE, np.repeat(acct, n_periods), np.tile(period_mid_day, k))
    usage = usage.reshape(k, n_periods)
    role_factor = np.array([1.3, 1.0, 0.5])[role]
    # Nearly log-linear in the usage dimension over its whole range: a healthy account's users
    # log in most days, a troubled one's thin out to a few days a month rather than to nothing,
    # so how low usage is stays readable from the events.
    activity = (
        (_BASE_ACTIVITY * config.usage_intensity * 2.0)
        * (traits.propensity[rows] * role_factor)[:, None]
        * sigmoid(-1.2 + 1.6 * usage)
    ).astype(np.float32)
    tenure = period_mid_day[None, :] - world.created_day[acct][:, None]
    maturity = 1.0 - exp(-np.maximum(tenure, 0) / 150.0)
    depth = (maturity * sigmoid(0.5 + 1.2 * usage)).astype(np.float32).ravel()
    activity = activity.ravel()
    del usage, tenure, maturity

    # Candidate user-days, a Bernoulli draw each; in batches of users so that memory stays
    # bounded by _USER_DAY_BATCH whatever the chunk holds.
    weekday_factor = np.roll(_WEEKDAY_FACTOR, -config.start_date.weekday()).astype(np.float32)
    ends = np.cumsum(length)
    cuts = np.searchsorted(
        ends, np.arange(1, -(-int(ends[-1]) // _USER_DAY_BATCH)) * _USER_DAY_BATCH
    )
    bounds = np.unique(np.r_[0, cuts, k]) if k else np.array([0])
    active_cells, active_days, active_users = [], [], []
    for b0, b1 in itertools.pairwise(bounds):
        span = length[b0:b1]
        total = int(span.sum())
        user_local = np.repeat(np.arange(b0, b1, dtype=np.int32), span)
        shift = (np.cumsum(span) - span - first_day[b0:b1]).astype(np.int32)
        day = np.arange(total, dtype=np.int32) - np.repeat(shift, span)
        cell = user_local * np.int32(n_periods) + day // np.int32(PERIOD_DAYS)
        p = activity[cell] * weekday_factor[day % 7]
        keep = rng.random(total, dtype=np.float32) < p
        active_users.append(user_local[keep])
        active_days.append(day[keep])
        active_cells.append(cell[keep])
        del user_local, day, cell, p, keep
    user_local = np.concatenate(active_users)
    day = np.concatenate(active_days)
    cell = np.concatenate(active_cells)
    del active_users, active_days, active_cells

    # Rows per active user-day: one module at least, more for deeper accounts.
    d = depth[cell]
    n_rows = 1 + rng.poisson(0.3 + 1.2 * d)
    ud = np.repeat(np.arange(user_local.size, dtype=np.int64), n_rows)
    d_row = np.repeat(d, n_rows)
    u = rng.random(ud.size, dtype=np.float32)
    advanced = 0.02 + 0.45 * d_row
    core = 0.10 + 0.30 * d_row
    tier = (u < advanced + core).astype(np.int8) + (u < advanced)
    viewer_basic = (role[user_local[ud]] == 2) & (rng.random(ud.size, dtype=np.float32) < 0.8)
    tier[viewer_basic] = 0
    del d_row, u, advanced, core, viewer_basic
    module = _TIER_FIRST[tier] + (rng.random(ud.size, dtype=np.float32) * _TIER_SIZE[tier]).astype(
        np.int8
    )
    code = module * 2 + (rng.random(ud.size, dtype=np.float32) < 0.25)
    count = 1 + rng.poisson(_COUNT_EXTRA[code])
    del tier, module

    # Merge repeated (user-day, module, event type) rows into one row with the summed count.
    key = ud * 16 + code
    del ud, code
    srt = np.argsort(key, kind="stable")
    key = key[srt]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    count = np.add.reduceat(count[srt], starts) if starts.size else count[:0]
    key = key[starts]
    del srt, starts
    ud, code = key // 16, (key % 16).astype(np.int32)

    # One session time per user-day, in local business hours of the account's region.
    local_sec = np.clip(rng.normal(13.0, 2.7, user_local.size), 6.0, 22.0) * 3600.0
    offset = _REGION_UTC_OFFSET_HOURS[world.region[acct[user_local]]] * 3600.0
    tod_us = (np.mod(local_sec - offset, 86_400.0 - 1e-3) * 1e6).astype(np.int64)
    occurred = day.astype(np.int64) * DAY_US + tod_us
    row_user = user_local[ud]

    return pd.DataFrame(
        {
            "account_id": str_column(account_ids, acct[row_user]),
            "user_id": str_column(user_ids, rows[row_user]),
            "occurred_at": ts_column(config.start_date, occurred[ud]),
            "module": str_column(list(MODULES), code // 2),
            "event_type": str_column(_EVENT_TYPE_NAMES, code),
            "count": count.astype(np.int64),
        }
    )
