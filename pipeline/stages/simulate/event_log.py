"""An account-level product event log: modules, event types and a value (the `plg_monthly` one).

A product-analytics export without user ids: one row per account, day, module and event type,
with the number of events and the minutes they took (``value``; empty for errors, which take
none). Whether an account is active on a day follows its usage dimension and its size; which
modules it uses and how (view only, or create, share, export and invite) deepens with tenure and
health; errors come more often where support is failing (the same trouble that fills the ticket
queue). Generated chunk by chunk of accounts, each chunk from its own random stream, like the
demo's usage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.core.numerics import exp, log
from pipeline.stages.simulate.columns import str_column, ts_column
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.world import DAY_US, SUPPORT, USAGE, World, sigmoid

logger = logging.getLogger(__name__)

#: The product's areas (none of them a demo module), from everyday to specialist.
MODULES: tuple[str, ...] = (
    "dashboards",
    "notebooks",
    "alerts",
    "exports",
    "connectors",
    "workspace_admin",
)
EVENT_TYPES: tuple[str, ...] = ("view", "create", "share", "export", "invite", "error")
_VIEW, _CREATE, _SHARE, _EXPORT, _INVITE, _ERROR = range(len(EVENT_TYPES))
#: Probability that an active account uses each module on a day (before depth).
_MODULE_USE = np.array([0.9, 0.55, 0.3, 0.25, 0.12, 0.06])
#: Modules whose use grows with depth (every one but the dashboards).
_MODULE_DEPTH = np.array([0.0, 0.6, 1.0, 1.0, 1.4, 1.0])
#: Probability of each event type on a (day, module) the module is used, before depth.
_TYPE_GIVEN_MODULE = np.array(
    [
        # view, create, share, export, invite, error
        [0.95, 0.20, 0.18, 0.05, 0.00, 0.03],  # dashboards
        [0.90, 0.35, 0.15, 0.10, 0.00, 0.04],  # notebooks
        [0.60, 0.30, 0.00, 0.00, 0.00, 0.05],  # alerts
        [0.30, 0.00, 0.00, 0.95, 0.00, 0.06],  # exports
        [0.50, 0.20, 0.00, 0.00, 0.00, 0.10],  # connectors
        [0.60, 0.00, 0.00, 0.00, 0.50, 0.02],  # workspace_admin
    ]
)
#: Event types whose frequency grows with depth (creating, sharing, inviting).
_TYPE_DEPTH = np.array([0.0, 1.0, 1.0, 0.3, 1.0, 0.0])
#: Extra events per row beyond the first, and minutes per event, by event type.
_EXTRA_EVENTS = np.array([3.0, 1.0, 0.5, 0.8, 0.3, 0.6])
_MINUTES_PER_EVENT = np.array([2.0, 6.0, 1.0, 0.5, 0.5, 0.0])
_WEEKDAY_FACTOR = np.array([1.0, 1.05, 1.05, 1.0, 0.85, 0.15, 0.1])
_REGION_UTC_OFFSET_HOURS = np.array([-5.0, 1.0, 8.0, -3.0])


def iter_event_log_chunks(
    config: SimulationConfig,
    world: World,
    account_ids: pa.Array,
    seats: np.ndarray,
    account_end_us: np.ndarray,
) -> Iterator[pd.DataFrame]:
    """Yield the event log in chunks of ``config.events_chunk_accounts`` accounts.

    ``seats`` (per account) scales activity; ``account_end_us`` is when each account stops
    (churn, or as_of). Pure generator: the same inputs give the same chunks.
    """
    n = world.n_accounts
    size = int(config.events_chunk_accounts)
    for c, lo in enumerate(range(0, n, size)):
        accounts = np.arange(lo, min(lo + size, n))
        rng = random_stream(config.seed, "event_log", c)
        frame = _chunk(config, world, rng, accounts, account_ids, seats, account_end_us)
        logger.debug("event log chunk %d: %d rows", c, len(frame))
        yield frame


def _chunk(
    config: SimulationConfig,
    world: World,
    rng: np.random.Generator,
    accounts: np.ndarray,
    account_ids: pa.Array,
    seats: np.ndarray,
    account_end_us: np.ndarray,
) -> pd.DataFrame:
    """The rows of the accounts ``accounts`` (one chunk), from ``rng``."""
    first_day = world.created_day[accounts]
    end_day = -(-account_end_us[accounts] // DAY_US)  # the day of the end, exclusive
    length = np.maximum(end_day - first_day, 0)
    acct = np.repeat(accounts, length)
    day = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length - first_day, length)
    # the signup day counts from signup on; the end day only up to the end
    inside = (day * DAY_US + DAY_US > world.created_us[acct]) & (
        day * DAY_US < account_end_us[acct]
    )
    acct, day = acct[inside], day[inside]

    usage = world.dim(USAGE, acct, day)
    weekday = np.roll(_WEEKDAY_FACTOR, -config.start_date.weekday())[day % 7]
    p_active = sigmoid(-0.6 + 1.4 * usage + 0.35 * log(seats[acct])) * weekday
    active = rng.random(acct.size) < np.minimum(p_active, 0.98)
    acct, day, usage = acct[active], day[active], usage[active]

    tenure = day - world.created_day[acct]
    depth = (1.0 - exp(-np.maximum(tenure, 0) / 120.0)) * sigmoid(0.3 + 1.3 * usage)
    support = world.dim(SUPPORT, acct, day)
    module_p = _MODULE_USE[None, :] * np.clip(
        1.0 + _MODULE_DEPTH[None, :] * (2.0 * depth[:, None] - 0.7), 0.1, None
    )
    used = rng.random(module_p.shape) < np.minimum(module_p, 0.99)
    used[:, 0] |= ~used.any(axis=1)  # an active day uses at least the dashboards
    ad, module = np.nonzero(used)  # (active day, module), sorted by day then module

    type_p = _TYPE_GIVEN_MODULE[module] * np.clip(
        1.0 + _TYPE_DEPTH[None, :] * (2.0 * depth[ad, None] - 0.7), 0.1, None
    )
    type_p[:, _ERROR] *= exp(-0.9 * support[ad])
    rows = rng.random(type_p.shape) < np.minimum(type_p, 0.99)
    first_type = np.argmax(_TYPE_GIVEN_MODULE[module], axis=1)
    rows[np.arange(ad.size), first_type] |= ~rows.any(axis=1)  # a used module shows one type
    am, event_type = np.nonzero(rows)
    ad_row = ad[am]

    activity = np.sqrt(seats[acct[ad_row]]) * exp(0.3 * usage[ad_row])
    count = 1 + rng.poisson(_EXTRA_EVENTS[event_type] * np.minimum(activity, 30.0))
    minutes = rng.gamma(
        1.5 * count, _MINUTES_PER_EVENT[event_type] * exp(0.25 * usage[ad_row]) / 1.5 + 1e-9
    )
    value = np.where(event_type == _ERROR, np.nan, np.round(minutes, 1))

    local_sec = np.clip(rng.normal(13.0, 2.7, ad.size), 6.0, 22.0) * 3600.0
    offset = _REGION_UTC_OFFSET_HOURS[world.region[acct[ad]]] * 3600.0
    tod_us = (np.mod(local_sec - offset, 86_400.0 - 1e-3) * 1e6).astype(np.int64)
    occurred = day[ad_row] * DAY_US + tod_us[am]
    # a session that starts before signup (time zones) or after the end moves inside
    occurred = np.clip(occurred, world.created_us[acct[ad_row]], account_end_us[acct[ad_row]] - 1)
    return pd.DataFrame(
        {
            "account_id": str_column(account_ids, acct[ad_row]),
            "occurred_at": ts_column(config.start_date, occurred),
            "module": str_column(list(MODULES), module[am]),
            "event_type": str_column(list(EVENT_TYPES), event_type),
            "count": count.astype(np.int64),
            "value": value.astype(np.float64),
        }
    )
