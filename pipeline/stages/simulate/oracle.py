"""The point-in-time (PIT) oracle: each renewal's churn probability as a snapshot could know it.

The ground truth's ``true_churn_probability`` is the probability the decision itself was drawn
with: a sigmoid of the latent state over the window before the decision. A model scoring a
snapshot at day t, often months before the decision on day d, cannot know that state, so
holding its AUC against that oracle is unfair. The PIT oracle is the fair bound: the expected
true probability given the world up to t, E[sigmoid(log-odds) | world up to t], estimated by
Monte Carlo over paths of the latent state from t to d drawn with the world's own dynamics
(`world.build_world`):

- known at t: the account's fixed traits (segment, health mean, dimension offsets, creation),
  its health in every 30-day period up to the one that holds day t-1, and a trouble that has
  started by day t-1 (troubles present from creation always have);
- drawn on every path: the health of later periods (the AR(1) around the health mean, drawn
  exactly at the periods the decision's window reads), and, for an account with no trouble
  started, whether and when one starts, from the priors (`config.trouble_share`, the kinds that
  start late, the onset delay) conditional on none having started by day t-1;
- the decision: the company's own `WindowDecisions`, i.e. the same window (``back_days``) and
  the same log-odds of the drivers.

A latent dimension is affine in its period's health and a started trouble shifts it by a fixed
amount (`World.dim`); the oracle measures both from `World.dims` itself, so the formula lives
in `world` alone, and a path costs a few array operations on top of the company's log-odds.

The snapshot grid is the features stage's: for each decided renewal, every snapshot date t (the
1st of each month, or each Monday for a company on weekly snapshots) in the term the renewal
ends, start date < t <= renewal date, which is the term the features label at t (the renewal
grace only censors, it never moves a snapshot to another renewal).

Randomness comes from a stream of its own (`streams`: ``pit_oracle``), consumed in row order,
so the raw tables never move and the result does not depend on the chunking; probabilities are
rounded to 6 decimals so the bytes do not depend on the last bits numpy's SIMD loops give.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.core.numerics import power
from pipeline.stages.simulate.columns import date_column, str_column
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.contracts import Contracts, WindowDecisions, add_months
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.subscriptions import Subscriptions
from pipeline.stages.simulate.vocabulary import TROUBLES
from pipeline.stages.simulate.world import (
    HEALTH_AR,
    HEALTH_STEP_SD,
    N_DIMS,
    NO_ONSET_DAY,
    PERIOD_DAYS,
    TROUBLE_ONSET_DELAY_DAYS,
    TROUBLES_FROM_START,
    World,
    sigmoid,
)

__all__ = [
    "PIT_PATHS",
    "SNAPSHOT_CADENCES",
    "DecisionSchedule",
    "pit_oracle",
    "pit_probabilities",
    "snapshot_days",
    "snapshot_grid",
]

#: Monte Carlo paths per (renewal, snapshot): a standard error of about 0.07 of the spread of
#: the true probability given the snapshot.
PIT_PATHS = 200
#: Snapshot cadences of the grid, as the features stage names them (pandas frequencies).
_FREQUENCIES = {"monthly": "MS", "weekly": "W-MON"}
SNAPSHOT_CADENCES = tuple(_FREQUENCIES)
#: Rows (renewal-snapshot pairs x paths) per chunk: bounds memory.
_CHUNK_ROWS = 1 << 16
#: The troubles that can start after creation, the only ones still unknown at a snapshot.
_LATE_TROUBLES = np.array([k for k in range(1, len(TROUBLES)) if k not in TROUBLES_FROM_START])


@dataclass(frozen=True)
class DecisionSchedule:
    """Every decided renewal, in the ground truth's order: the account, the day its term started
    and the day it was decided (the term's end), with what the decision model is given."""

    account: np.ndarray
    term_start: np.ndarray
    decision_day: np.ndarray
    tenure: np.ndarray  # days since the account's creation
    term: np.ndarray  # months
    first_term: np.ndarray  # bool: the account's first renewal

    @classmethod
    def of_contracts(cls, world: World, contracts: Contracts) -> DecisionSchedule:
        """The decided terms of `simulate_contracts` (the demo's and the minimal company's)."""
        decided = np.flatnonzero(contracts.decided)
        acct = contracts.account[decided]
        start, end = contracts.start_day[decided], contracts.end_day[decided]
        created = world.created_day[acct]
        return cls(
            account=acct,
            term_start=start,
            decision_day=end,
            tenure=end - created,
            term=contracts.term[decided],
            first_term=start == created,
        )

    @classmethod
    def of_subscriptions(
        cls, config: SimulationConfig, world: World, subs: Subscriptions
    ) -> DecisionSchedule:
        """The billing decisions of `simulate_subscriptions` (the plg company's): each one's
        term is the month since the previous billing date."""
        acct = subs.decision_account
        start = add_months(config.start_date, subs.start_day[acct], subs.decision_term - 1)
        return cls(
            account=acct,
            term_start=start,
            decision_day=subs.decision_day,
            tenure=subs.decision_day - world.created_day[acct],
            term=np.ones(acct.size, dtype=np.int64),
            first_term=subs.decision_term == 1,
        )

    @property
    def size(self) -> int:
        return int(self.account.size)


def snapshot_days(start_date: date, n_days: int, cadence: str) -> np.ndarray:
    """Day numbers (since ``start_date``) of the snapshot dates before day ``n_days``: the 1st of
    each month, or each Monday, as `pipeline.feature_engine.build.snapshot_dates` makes them."""
    if cadence not in _FREQUENCIES:
        raise ValueError(f"snapshot cadence must be one of {SNAPSHOT_CADENCES}, not {cadence!r}")
    start = pd.Timestamp(start_date)
    stamps = pd.date_range(start, start + pd.Timedelta(days=n_days - 1), freq=_FREQUENCIES[cadence])
    return np.asarray((stamps - start).days, dtype=np.int64)


def snapshot_grid(
    schedule: DecisionSchedule, snapshot_day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each renewal's snapshots: (renewal index, snapshot day) for every sorted ``snapshot_day``
    with term start < snapshot <= decision day, by renewal and then snapshot."""
    first = np.searchsorted(snapshot_day, schedule.term_start, side="right")
    last = np.searchsorted(snapshot_day, schedule.decision_day, side="right")
    count = np.maximum(last - first, 0)
    decision = np.repeat(np.arange(schedule.size), count)
    offset = np.arange(decision.size) - np.repeat(np.cumsum(count) - count, count)
    return decision, snapshot_day[first[decision] + offset]


@dataclass(frozen=True)
class _KnownWindow:
    """What a snapshot knows of each pair's decision window (one row per renewal-snapshot pair),
    and how the unknown part moves the drivers (`World.dims` measured, never restated)."""

    read_day: np.ndarray  # (pairs, window days), ascending: the days the drivers sample
    read_period: np.ndarray  # (pairs, window days): their 30-day periods
    future: np.ndarray  # (pairs, window days): the period is after the snapshot's last one
    known_dims: np.ndarray  # (pairs, 6): the dimensions' window mean, unknown health as 0
    known_health: np.ndarray  # (pairs,): sum over window days of the known periods' health
    health_slope: np.ndarray  # (pairs, 6): change of each dimension per unit of health
    trouble_shift: np.ndarray  # (pairs, late troubles, 6): a started trouble's shift

    @classmethod
    def of(
        cls,
        world: World,
        acct: np.ndarray,
        decision_day: np.ndarray,
        snapshot_day: np.ndarray,
        back_days: tuple[int, ...],
    ) -> _KnownWindow:
        n_periods = world.health.shape[1]
        back = np.sort(np.asarray(back_days, dtype=np.int64))[::-1]
        created = world.created_day[acct]
        read_day = np.maximum(decision_day[:, None] - back[None, :], created[:, None])
        read_period = np.clip(read_day // PERIOD_DAYS, 0, n_periods - 1)
        last_known = np.clip((snapshot_day - 1) // PERIOD_DAYS, 0, n_periods - 1)
        trouble_known = (world.trouble[acct] > 0) & (
            world.trouble_onset_day[acct] <= snapshot_day - 1
        )
        seen = np.arange(n_periods)[None, :] <= last_known[:, None]
        known = World(
            n_days=world.n_days,
            segment=world.segment[acct],
            region=world.region[acct],
            industry=world.industry[acct],
            created_us=world.created_us[acct],
            health_mean=world.health_mean[acct],
            health=np.where(seen, world.health[acct], np.float32(0.0)),
            idio=world.idio[acct],
            trouble=np.where(trouble_known, world.trouble[acct], 0).astype(np.int8),
            trouble_onset_day=np.where(
                trouble_known, world.trouble_onset_day[acct], NO_ONSET_DAY
            ).astype(np.int64),
            activation=world.activation[acct],
        )
        rows = np.arange(acct.size)
        n_back = back.size
        total = np.zeros((acct.size, N_DIMS))
        health = np.zeros(acct.size)
        for b in range(n_back):  # as `decision_drivers` sums them
            total += known.dims(rows, read_day[:, b])
            health += known.health[rows, read_period[:, b]]
        # Probes: the same accounts without a trouble at health 0 and 1, and with each late
        # trouble started; differences give the slope and the shifts.
        probe_day = read_day[:, 0]
        plain = replace(
            known,
            health=np.zeros_like(known.health),
            trouble=np.zeros(acct.size, dtype=np.int8),
            trouble_onset_day=np.full(acct.size, NO_ONSET_DAY, dtype=np.int64),
        )
        at_zero = plain.dims(rows, probe_day)
        slope = replace(plain, health=np.ones_like(known.health)).dims(rows, probe_day) - at_zero
        shift = np.stack(
            [
                replace(
                    plain,
                    trouble=np.full(acct.size, kind, dtype=np.int8),
                    trouble_onset_day=np.zeros(acct.size, dtype=np.int64),
                ).dims(rows, probe_day)
                - at_zero
                for kind in _LATE_TROUBLES
            ],
            axis=1,
        )
        return cls(
            read_day=read_day,
            read_period=read_period,
            future=read_period > last_known[:, None],
            known_dims=total / n_back,
            known_health=health,
            health_slope=slope,
            trouble_shift=shift,
        )

    def drivers(
        self,
        future_health: np.ndarray,
        has_trouble: np.ndarray,
        trouble_kind: np.ndarray,
        trouble_onset: np.ndarray,
    ) -> np.ndarray:
        """The drivers (pairs, paths, 7) of paths with these values (each pairs x paths): the sum
        of the health over the window days after the snapshot's last known period, and a newly
        drawn trouble: whether, which (index into the late troubles) and its onset day."""
        n_back = self.read_day.shape[1]
        out = np.empty((*future_health.shape, N_DIMS + 1))
        dims = out[..., :N_DIMS]
        np.multiply(self.health_slope[:, None, :], (future_health / n_back)[..., None], out=dims)
        dims += self.known_dims[:, None, :]
        out[..., N_DIMS] = (self.known_health[:, None] + future_health) / n_back
        pair, path = np.nonzero(has_trouble)  # few paths draw a trouble
        started = (trouble_onset[pair, path, None] <= self.read_day[pair]).sum(axis=1)
        shift = self.trouble_shift[pair, trouble_kind[pair, path]]
        dims[pair, path] += shift * (started / n_back)[:, None]
        return out


def _draw_health(
    world: World,
    acct: np.ndarray,
    snapshot_day: np.ndarray,
    window: _KnownWindow,
    normal: np.ndarray,
) -> np.ndarray:
    """The health summed over the window days after the snapshot's last known period (pairs,
    paths), from standard ``normal`` draws (pairs, paths, window days): the AR(1) from the last
    known period, stepped exactly to each later one the window reads."""
    n_periods = world.health.shape[1]
    period = np.clip((snapshot_day - 1) // PERIOD_DAYS, 0, n_periods - 1)
    mean = world.health_mean[acct]
    deviation = np.repeat((world.health[acct, period] - mean)[:, None], normal.shape[1], axis=1)
    total = np.zeros(normal.shape[:2])
    for b in np.flatnonzero(window.future.any(axis=0)):
        future = window.future[:, b]
        gap = np.where(future, window.read_period[:, b] - period, 0)
        keep = power(HEALTH_AR, gap)
        spread = HEALTH_STEP_SD * np.sqrt((1.0 - power(HEALTH_AR, 2 * gap)) / (1.0 - HEALTH_AR**2))
        stepped = keep[:, None] * deviation + spread[:, None] * normal[:, :, b]
        deviation = np.where(future[:, None], stepped, deviation)
        period = np.where(future, window.read_period[:, b], period)
        total += np.where(future[:, None], mean[:, None] + deviation, 0.0)
    return total


def _draw_troubles(
    world: World,
    acct: np.ndarray,
    snapshot_day: np.ndarray,
    trouble_share: float,
    uniform: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A trouble for each path (whether, which late trouble, onset day) from ``uniform`` draws
    (pairs, paths, 2), given that none had started by the day before the snapshot: the prior
    (a share of accounts, kinds alike, onset delays alike) restricted to the delays not yet
    passed. An account whose trouble has started keeps it, so it draws none."""
    low, high = TROUBLE_ONSET_DELAY_DAYS
    created = world.created_day[acct]
    started = (world.trouble[acct] > 0) & (world.trouble_onset_day[acct] <= snapshot_day - 1)
    first_delay = np.maximum(low, snapshot_day - created)
    n_onsets = np.maximum(high - first_delay, 0)
    late_mass = (
        trouble_share * (_LATE_TROUBLES.size / (len(TROUBLES) - 1)) * n_onsets / (high - low)
    )
    evidence = (1.0 - trouble_share) + late_mass
    chance = np.where(~started & (evidence > 0), late_mass / np.where(evidence > 0, evidence, 1), 0)
    has = uniform[:, :, 0] < chance[:, None]
    choices = (_LATE_TROUBLES.size * n_onsets)[:, None]
    pick = np.clip((uniform[:, :, 1] * choices).astype(np.int64), 0, np.maximum(choices - 1, 0))
    per_kind = np.maximum(n_onsets, 1)[:, None]
    onset = (created + first_delay)[:, None] + pick % per_kind
    return has, pick // per_kind, np.where(has, onset, NO_ONSET_DAY)


def pit_probabilities(
    world: World,
    decide: WindowDecisions,
    schedule: DecisionSchedule,
    decision: np.ndarray,
    snapshot_day: np.ndarray,
    *,
    trouble_share: float,
    logit_shift: float,
    n_paths: int = PIT_PATHS,
    seed: int,
) -> np.ndarray:
    """The PIT probability of renewal ``decision`` (index into ``schedule``) seen from day
    ``snapshot_day`` (term start < snapshot <= decision day), row by row: the mean over
    ``n_paths`` paths of sigmoid(``decide``'s log-odds + ``logit_shift``), rounded to 6
    decimals. A snapshot on the decision day knows the whole window: its probability is the
    decision's true one."""
    if n_paths < 1:
        raise ValueError(f"n_paths must be at least 1, got {n_paths}")
    health_rng = random_stream(seed, "pit_oracle", 0)
    trouble_rng = random_stream(seed, "pit_oracle", 1)
    n_back = len(decide.back_days)
    out = np.empty(decision.size)
    step = max(1, _CHUNK_ROWS // n_paths)
    for lo in range(0, decision.size, step):
        rows = slice(lo, lo + step)
        pair, snap = decision[rows], snapshot_day[rows]
        acct, day = schedule.account[pair], schedule.decision_day[pair]
        window = _KnownWindow.of(world, acct, day, snap, decide.back_days)
        health = _draw_health(
            world, acct, snap, window, health_rng.standard_normal((pair.size, n_paths, n_back))
        )
        trouble = _draw_troubles(
            world, acct, snap, trouble_share, trouble_rng.random((pair.size, n_paths, 2))
        )
        drivers = window.drivers(health, *trouble).reshape(-1, N_DIMS + 1)
        log_odds = decide.logit(
            world,
            np.repeat(acct, n_paths),
            drivers,
            np.repeat(schedule.tenure[pair], n_paths),
            np.repeat(schedule.term[pair], n_paths),
            np.repeat(schedule.first_term[pair], n_paths),
            np.repeat(day, n_paths),
        )
        out[rows] = sigmoid(log_odds + logit_shift).reshape(pair.size, n_paths).mean(axis=1)
    return np.round(out, 6)


def pit_oracle(
    config: SimulationConfig,
    world: World,
    decide: WindowDecisions,
    schedule: DecisionSchedule,
    account_ids: pa.Array | np.ndarray,
    *,
    n_paths: int = PIT_PATHS,
    cadence: str = "monthly",
) -> pd.DataFrame:
    """The ground truth's ``pit_oracle`` table: one row per decided renewal and snapshot date of
    its term on the ``cadence`` grid (account_id, snapshot_date, renewal_date: the truth's
    decision_date, pit_churn_probability), by account, renewal and snapshot."""
    decision, snapshot = snapshot_grid(
        schedule, snapshot_days(config.start_date, world.n_days, cadence)
    )
    probability = pit_probabilities(
        world,
        decide,
        schedule,
        decision,
        snapshot,
        trouble_share=config.trouble_share,
        logit_shift=config.churn_logit_shift,
        n_paths=n_paths,
        seed=config.seed,
    )
    return pd.DataFrame(
        {
            "account_id": str_column(account_ids, schedule.account[decision]),
            "snapshot_date": date_column(config.start_date, snapshot),
            "renewal_date": date_column(config.start_date, schedule.decision_day[decision]),
            "pit_churn_probability": probability,
        }
    )
