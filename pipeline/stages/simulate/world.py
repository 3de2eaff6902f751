"""The latent world: every account's hidden health, trouble and dimensions over time.

Every account gets a latent health that follows a slow mean-reverting random walk over 30-day
periods, and possibly one planted *trouble* (low usage depth, low training, SLA breaches, poor
onboarding, low sentiment, no executive contact). Six latent *dimensions* (usage, training,
support, sentiment, relationship, onboarding) are mostly health plus a little account-specific
texture, minus a large shift for the dimension hit by the trouble and a smaller one for the
others (a troubled account disengages as a whole). `World.dim` is the single definition every
observable table and every churn decision reads, which is what puts the planted signal in the
data, in the window a point-in-time feature builder looks at.

The world is rebuilt from the config alone (pure and cheap), so the usage generator needs
nothing from the caller but the config and the public tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.core import numerics
from pipeline.core.numerics import log
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.vocabulary import INDUSTRIES, REGIONS, TROUBLES

# The clock: offsets are microseconds (or days) since start_date; health moves per period.
PERIOD_DAYS = 30
DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000

#: Index of each latent dimension (column of `World.dims`, of the recorded drivers).
USAGE, TRAINING, SUPPORT, SENTIMENT, RELATIONSHIP, ONBOARDING = range(6)
N_DIMS = 6
#: Names of the dimensions in the ground truth, in index order.
LATENT_COLUMNS: tuple[str, ...] = (
    "latent_usage",
    "latent_training",
    "latent_support",
    "latent_sentiment",
    "latent_relationship",
    "latent_onboarding",
)
#: Which latent dimension each trouble (index in TROUBLES) pushes down.
_TROUBLE_DIM = {
    1: USAGE,
    2: TRAINING,
    3: SUPPORT,
    4: ONBOARDING,
    5: SENTIMENT,
    6: RELATIONSHIP,
}
#: Troubles present from the start (structural); the others appear later in the life, this many
#: days after creation (uniform on [low, high)).
TROUBLES_FROM_START = (1, 2, 4)
TROUBLE_ONSET_DELAY_DAYS = (30, 450)
#: The onset day of a trouble that never starts.
NO_ONSET_DAY = np.iinfo(np.int64).max // 4
#: Shift of the dimension a trouble hits, and of every other time-varying dimension (spillover:
#: bad support or a lost sponsor also lowers usage and sentiment, so every trouble shows in the
#: richest signal, usage, as well as in its own).
_TROUBLE_SHIFT = 3.0
_TROUBLE_SPILL = 0.8
#: A trouble counts for a decision when it started at least this long before it.
TROUBLE_VISIBLE_DAYS = 45
#: A dimension = _HEALTH_LOADING * health + _IDIO_LOADING * account-specific offset. Health is
#: seen through every table, the offset only through its own (sparse) one, hence the small
#: offset loading.
_HEALTH_LOADING = 0.6
_IDIO_LOADING = 0.15
_HEALTH_MEAN_SD = 0.8
#: Monthly persistence and step of the health random walk: slow, so that a snapshot months
#: before a renewal already says much about the state the decision will be taken in.
HEALTH_AR = 0.95
HEALTH_STEP_SD = 0.15
#: Share of accounts per region (north_america, emea, apac, latam).
_REGION_SHARES = (0.5, 0.3, 0.12, 0.08)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function: log-odds to probability (the same on every CPU: `numerics`)."""
    return numerics.sigmoid(x)


def logit(p: np.ndarray | float) -> np.ndarray:
    """Log-odds of a probability (the inverse of `sigmoid`)."""
    p = np.asarray(p, dtype=np.float64)
    return log(p / (1.0 - p))


@dataclass(frozen=True)
class World:
    """Hidden state of every account, rebuilt from the config alone (pure and cheap).

    Both ``simulate_entities`` and ``iter_usage_event_chunks`` rebuild it, which is why the usage
    generator needs nothing from the caller but the config and the public tables.
    """

    n_days: int
    segment: np.ndarray  # int8 index into SEGMENTS
    region: np.ndarray  # int8 index into REGIONS
    industry: np.ndarray  # int8 index into INDUSTRIES
    created_us: np.ndarray  # int64, microseconds since start_date
    health_mean: np.ndarray  # float64 (n,)
    health: np.ndarray  # float32 (n, n_periods): health per 30-day period
    idio: np.ndarray  # float32 (n, 6): account-specific offset of each dimension
    trouble: np.ndarray  # int8 index into TROUBLES
    trouble_onset_day: np.ndarray  # int64; huge when the trouble never starts
    activation: np.ndarray = field(repr=False)  # float64 (n,): share of seats that get users

    @property
    def n_accounts(self) -> int:
        return int(self.segment.size)

    @property
    def created_day(self) -> np.ndarray:
        return self.created_us // DAY_US

    def dim(self, which: int, acct: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Latent dimension ``which`` of accounts ``acct`` on days ``day``.

        The single definition every observable and every churn decision uses: it is what makes
        the planted drivers visible in exactly the window the decision depends on. A trouble
        lowers its own dimension by _TROUBLE_SHIFT from its onset, and the other time-varying
        dimensions by _TROUBLE_SPILL (onboarding is fixed at signup and only feels its own).
        """
        acct = np.asarray(acct, dtype=np.int64)
        day = np.asarray(day, dtype=np.int64)
        if which == ONBOARDING:  # fixed at signup: long-run health, not today's
            base = self.health_mean[acct]
        else:
            period = np.clip(day // PERIOD_DAYS, 0, self.health.shape[1] - 1)
            base = self.health[acct, period].astype(np.float64)
        out = _HEALTH_LOADING * base + _IDIO_LOADING * self.idio[acct, which].astype(np.float64)
        trouble_of_dim = next(t for t, d in _TROUBLE_DIM.items() if d == which)
        started = day >= self.trouble_onset_day[acct]
        hit = (self.trouble[acct] == trouble_of_dim) & started
        out[hit] -= _TROUBLE_SHIFT
        if which != ONBOARDING:
            spill = (self.trouble[acct] > 0) & (self.trouble[acct] != trouble_of_dim) & started
            out[spill] -= _TROUBLE_SPILL
        return out

    def dims(self, acct: np.ndarray, day: np.ndarray) -> np.ndarray:
        """All six dimensions (rows x 6), as ``dim`` gives them one by one."""
        return np.stack([self.dim(k, acct, day) for k in range(N_DIMS)], axis=1)


def build_world(config: SimulationConfig) -> World:
    """Draw every account's creation, segment, region, industry, health path and trouble."""
    rng = random_stream(config.seed, "world")
    n = int(config.n_accounts)
    n_days = config.n_days
    n_periods = n_days // PERIOD_DAYS + 1

    # Acquisition over the whole period, the rate doubling from start to as_of (growing company).
    growth = 1.0
    u = np.sort(rng.random(n))
    x = (np.sqrt(1.0 + growth * (2.0 + growth) * u) - 1.0) / growth
    created_day = np.minimum((x * n_days).astype(np.int64), n_days - 1)
    time_of_day = rng.uniform(8.0, 18.0, n) * HOUR_US
    created_us = created_day * DAY_US + time_of_day.astype(np.int64)
    created_us.sort()

    segment = rng.choice(3, size=n, p=np.array(config.segment_shares)).astype(np.int8)
    region = rng.choice(len(REGIONS), size=n, p=_REGION_SHARES).astype(np.int8)
    industry = rng.integers(0, len(INDUSTRIES), n).astype(np.int8)

    health_mean = rng.normal(0.0, _HEALTH_MEAN_SD, n)
    steps = rng.normal(0.0, HEALTH_STEP_SD, (n, n_periods)).astype(np.float32)
    health = np.empty((n, n_periods), dtype=np.float32)
    stationary_sd = HEALTH_STEP_SD / np.sqrt(1.0 - HEALTH_AR**2)
    deviation = rng.normal(0.0, stationary_sd, n)
    for p in range(n_periods):  # one vectorised step per period
        deviation = HEALTH_AR * deviation + steps[:, p]
        health[:, p] = health_mean + deviation
    idio = rng.normal(0.0, 1.0, (n, N_DIMS)).astype(np.float32)

    has_trouble = rng.random(n) < config.trouble_share
    trouble = np.where(has_trouble, rng.integers(1, len(TROUBLES), n), 0).astype(np.int8)
    from_start = np.isin(trouble, TROUBLES_FROM_START)
    onset_delay = rng.integers(*TROUBLE_ONSET_DELAY_DAYS, n)
    onset = np.where(from_start, created_day, created_day + onset_delay)
    onset = np.where(trouble > 0, onset, NO_ONSET_DAY)

    onboarding = _HEALTH_LOADING * health_mean + _IDIO_LOADING * idio[:, ONBOARDING]
    onboarding = onboarding - _TROUBLE_SHIFT * (trouble == TROUBLES.index("poor_onboarding"))
    activation = np.clip(sigmoid(1.3 + 1.0 * onboarding), 0.05, 0.98)
    return World(
        n_days=n_days,
        segment=segment,
        region=region,
        industry=industry,
        created_us=created_us,
        health_mean=health_mean,
        health=health,
        idio=idio,
        trouble=trouble,
        trouble_onset_day=onset.astype(np.int64),
        activation=activation,
    )
