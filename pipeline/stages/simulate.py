"""Demo-data simulator: a synthetic B2B SaaS company with planted, learnable churn drivers.

Why a simulator: the pipeline needs raw tables that look like a real customer-success data
warehouse (accounts, contracts, users, product usage, trainings, support, NPS, CSM activity)
*and* a ground truth to check that the model recovers what was planted. Real data would give
the former but never the latter.

How it works, in one paragraph: every account gets a latent health that follows a slow
mean-reverting random walk over 30-day periods, and possibly one planted *trouble* (low usage
depth, low training, SLA breaches, poor onboarding, low sentiment, no executive contact). Six
latent *dimensions* (usage, training, support, sentiment, relationship, onboarding) are mostly
health plus a little account-specific texture, minus a large shift for the dimension hit by the
trouble and a smaller one for the others (a troubled account disengages as a whole). Every
observable table is drawn from its dimension at the time of the event, and every renewal
decision draws churn with a probability that is a sigmoid of the same dimensions averaged over
the 90 days before the decision, plus the segment, term, tenure and whether it is the first
renewal; nothing else. Two things make it harder for a points-based health score than for a
model, as in real CS data: onboarding decides the first renewal (DOMAIN.md: most churn is
decided in the first months), and a dimension in deep trouble raises the risk faster than
linearly ("watermelon" accounts, green on most rules and about to leave). So the signal the
model must find is in the data, in the window a point-in-time feature builder looks at.

Why it is built to be learnable: the ground truth's ``true_churn_probability`` is the oracle a
model is measured against, so it must be the best prediction the data allows, not one that
knows hidden things. Hence (1) no noise term inside the probability: the only randomness of a
decision is the Bernoulli draw of the outcome; (2) the hidden, account-specific part of each
dimension is small next to what many observations share (health, troubles), because a small
account yields only a handful of tickets, NPS answers or CSM calls per quarter; (3) each
dimension drives its observables steeply enough to stand out of their sampling noise, and
stays visible (not floored at zero) under a trouble; (4) drivers a low-touch segment barely
shows (SMB support and CSM relationship) weigh little on that segment's churn.

Layout: pure core (``simulate_entities``, ``iter_usage_event_chunks``, ``realism_summary``) and
one I/O edge (``write_simulation``). ``usage_events`` is generated and written chunk by chunk of
accounts so that 100M rows need bounded memory.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.atomic import atomic_path

logger = logging.getLogger(__name__)

__all__ = [
    "MODULES",
    "MODULE_EVENT_TYPES",
    "MODULE_TIERS",
    "RAW_TABLES",
    "RAW_TABLE_SCHEMAS",
    "SEGMENTS",
    "TROUBLES",
    "TRUTH_TABLE_SCHEMAS",
    "SimulationConfig",
    "iter_usage_event_chunks",
    "realism_summary",
    "simulate_entities",
    "write_simulation",
]

# ---------------------------------------------------------------------------------------------
# Vocabulary of the data contract
# ---------------------------------------------------------------------------------------------

SEGMENTS: tuple[str, ...] = ("smb", "mid_market", "enterprise")
TROUBLES: tuple[str, ...] = (
    "none",
    "low_usage_depth",
    "low_training",
    "sla_breaches",
    "poor_onboarding",
    "low_sentiment",
    "no_exec_contact",
)
MODULES: tuple[str, ...] = (
    "dashboard",
    "reports",
    "workflows",
    "integrations",
    "automation",
    "analytics",
    "api",
)
#: Depth tier of each module: basic, core or advanced. Customers start basic and deepen.
MODULE_TIERS: dict[str, str] = {
    "dashboard": "basic",
    "reports": "basic",
    "workflows": "core",
    "integrations": "core",
    "automation": "advanced",
    "analytics": "advanced",
    "api": "advanced",
}
#: Two event types per module: the first is the everyday action, the second the rarer one.
MODULE_EVENT_TYPES: dict[str, tuple[str, str]] = {
    "dashboard": ("view", "share"),
    "reports": ("view", "export"),
    "workflows": ("run", "edit"),
    "integrations": ("sync", "configure"),
    "automation": ("trigger", "create_rule"),
    "analytics": ("query", "build_chart"),
    "api": ("call", "create_token"),
}
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
TOUCHPOINT_KINDS: tuple[str, ...] = ("call", "meeting", "qbr", "exec_sponsor")
ROLES: tuple[str, ...] = ("admin", "member", "viewer")
REGIONS: tuple[str, ...] = ("north_america", "emea", "apac", "latam")
INDUSTRIES: tuple[str, ...] = (
    "software",
    "financial_services",
    "healthcare",
    "retail",
    "manufacturing",
    "education",
    "public_sector",
    "media",
    "logistics",
    "professional_services",
)
COURSES: tuple[str, ...] = (
    "platform_basics_101",
    "reporting_201",
    "workflow_design_201",
    "automation_301",
    "analytics_301",
)

_TS = pa.timestamp("us", tz="UTC")

#: Arrow schema of every raw table; the parquet files are written with exactly these types.
RAW_TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("account_name", pa.string()),
            ("segment", pa.string()),
            ("industry", pa.string()),
            ("region", pa.string()),
            ("created_at", _TS),
            ("csm_id", pa.string()),
        ]
    ),
    "csms": pa.schema([("csm_id", pa.string()), ("name", pa.string()), ("email", pa.string())]),
    "contracts": pa.schema(
        [
            ("contract_id", pa.string()),
            ("account_id", pa.string()),
            ("start_date", pa.date32()),
            ("end_date", pa.date32()),
            ("arr", pa.float64()),
            ("seats", pa.int64()),
            ("plan", pa.string()),
        ]
    ),
    "users": pa.schema(
        [
            ("user_id", pa.string()),
            ("account_id", pa.string()),
            ("created_at", _TS),
            ("role", pa.string()),
            ("deactivated_at", _TS),
        ]
    ),
    "usage_events": pa.schema(
        [
            ("account_id", pa.string()),
            ("user_id", pa.string()),
            ("occurred_at", _TS),
            ("module", pa.string()),
            ("event_type", pa.string()),
            ("count", pa.int64()),
        ]
    ),
    "trainings": pa.schema(
        [
            ("user_id", pa.string()),
            ("account_id", pa.string()),
            ("course_id", pa.string()),
            ("enrolled_at", _TS),
            ("completed_at", _TS),
            ("score", pa.float64()),
        ]
    ),
    "support_tickets": pa.schema(
        [
            ("ticket_id", pa.string()),
            ("account_id", pa.string()),
            ("priority", pa.string()),
            ("opened_at", _TS),
            ("first_response_at", _TS),
            ("resolved_at", _TS),
            ("sla_first_response_hours", pa.float64()),
            ("sla_resolution_hours", pa.float64()),
            ("escalated", pa.bool_()),
        ]
    ),
    "nps_responses": pa.schema(
        [
            ("account_id", pa.string()),
            ("user_id", pa.string()),
            ("responded_at", _TS),
            ("score", pa.int64()),
        ]
    ),
    "csm_touchpoints": pa.schema(
        [("account_id", pa.string()), ("occurred_at", _TS), ("kind", pa.string())]
    ),
}
RAW_TABLES: tuple[str, ...] = tuple(RAW_TABLE_SCHEMAS)

_LATENT_COLUMNS: tuple[str, ...] = (
    "latent_usage",
    "latent_training",
    "latent_support",
    "latent_sentiment",
    "latent_relationship",
    "latent_onboarding",
)

#: Ground-truth tables (written outside the raw dir; the pipeline must never read them).
TRUTH_TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "renewal_decisions": pa.schema(
        [
            ("contract_id", pa.string()),
            ("account_id", pa.string()),
            ("segment", pa.string()),
            ("decision_date", pa.date32()),
            ("tenure_days", pa.int64()),
            ("term_months", pa.int64()),
            ("arr", pa.float64()),
            ("true_churn_probability", pa.float64()),
            ("churned", pa.bool_()),
            ("latent_health", pa.float64()),
            ("trouble", pa.string()),
            *[(name, pa.float64()) for name in _LATENT_COLUMNS],
        ]
    ),
    "accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("segment", pa.string()),
            ("latent_health_mean", pa.float64()),
            ("latent_health_final", pa.float64()),
            ("trouble", pa.string()),
            ("trouble_onset_at", _TS),
            ("latent_onboarding", pa.float64()),
            ("activation_propensity", pa.float64()),
            ("churned", pa.bool_()),
            ("churned_at", _TS),
        ]
    ),
}

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a simulated company; the same config gives the same data.

    The defaults give a ~3-year history of ~1500 accounts (about 2-3M usage rows), small enough
    for fast tests; the demo in ``params.yaml`` asks for 4,000 accounts over five years. Dates
    may be given as ISO strings (as they come from ``params.yaml``); they are normalised to
    ``datetime.date``.
    """

    n_accounts: int = 1500
    start_date: date = date(2023, 11, 1)
    as_of_date: date = date(2026, 11, 16)
    seed: int = 42
    #: Accounts per ``usage_events`` chunk (one parquet part each): bounds peak memory.
    events_chunk_accounts: int = 1000
    #: A renewal is a next contract starting at most this many days after the end date.
    renewal_grace_days: int = 30
    #: Share of accounts in smb, mid_market, enterprise.
    segment_shares: tuple[float, float, float] = (0.68, 0.24, 0.08)
    #: Share of accounts with one planted trouble (spread evenly over the six kinds).
    trouble_share: float = 0.42
    #: Multiplies the daily probability that a user is active: scales usage_events volume.
    usage_intensity: float = 1.0
    #: Added to every churn log-odds: a knob for more or less churn overall.
    churn_logit_shift: float = 0.0

    def __post_init__(self) -> None:
        for name in ("start_date", "as_of_date"):
            value = getattr(self, name)
            if isinstance(value, datetime):
                object.__setattr__(self, name, value.date())
            elif isinstance(value, str):
                try:
                    object.__setattr__(self, name, date.fromisoformat(value))
                except ValueError as err:
                    raise ValueError(
                        f"SimulationConfig.{name}: not an ISO date: {value!r}"
                    ) from err
            elif not isinstance(value, date):
                raise ValueError(f"SimulationConfig.{name}: expected a date, got {value!r}")
        object.__setattr__(self, "segment_shares", tuple(float(s) for s in self.segment_shares))
        problems = []
        if int(self.n_accounts) < 1:
            problems.append(f"n_accounts must be >= 1, got {self.n_accounts}")
        if (self.as_of_date - self.start_date).days < 120:
            problems.append(
                f"as_of_date ({self.as_of_date}) must be at least 120 days after start_date "
                f"({self.start_date})"
            )
        if not 0 <= int(self.seed) < 2**63:
            problems.append(f"seed must be a non-negative integer, got {self.seed}")
        if int(self.events_chunk_accounts) < 1:
            problems.append(f"events_chunk_accounts must be >= 1, got {self.events_chunk_accounts}")
        if int(self.renewal_grace_days) < 1:
            problems.append(f"renewal_grace_days must be >= 1, got {self.renewal_grace_days}")
        shares = self.segment_shares
        if len(shares) != 3 or min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6:
            problems.append(f"segment_shares must be 3 non-negative shares summing to 1: {shares}")
        if not 0.0 <= self.trouble_share <= 1.0:
            problems.append(f"trouble_share must be in [0, 1], got {self.trouble_share}")
        if not self.usage_intensity > 0:
            problems.append(f"usage_intensity must be > 0, got {self.usage_intensity}")
        if problems:
            raise ValueError("Invalid SimulationConfig: " + "; ".join(problems))

    @property
    def n_days(self) -> int:
        """Days from start_date (inclusive) to as_of_date (exclusive)."""
        return (self.as_of_date - self.start_date).days


# ---------------------------------------------------------------------------------------------
# Segment profiles: the business facts each segment differs in
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SegmentProfile:
    seats_median: float
    seats_sigma: float
    seats_max: int
    price_per_seat: float  # ARR per seat and year, median
    price_sigma: float
    term_months: tuple[int, ...]
    term_probs: tuple[float, ...]
    plans: tuple[str, ...]
    plan_probs: tuple[float, ...]
    annual_churn: float  # baseline annual logo churn of an average account
    portfolio: int  # live accounts per CSM
    tickets_per_month: float
    priority_probs: tuple[float, float, float, float]
    sla_first_response_hours: tuple[float, float, float, float]  # low, normal, high, urgent
    sla_resolution_hours: tuple[float, float, float, float]
    touch_rates: tuple[float, float, float, float]  # per month: call, meeting, qbr, exec_sponsor
    kickoff_meetings: float  # extra meetings in the first 60 days


_PROFILES: tuple[_SegmentProfile, ...] = (
    _SegmentProfile(  # smb: many, small, heavy-tailed ARR, partly monthly
        seats_median=7,
        seats_sigma=0.8,
        seats_max=80,
        price_per_seat=540.0,
        price_sigma=0.35,
        term_months=(1, 12),
        term_probs=(0.45, 0.55),
        plans=("starter", "growth"),
        plan_probs=(0.75, 0.25),
        annual_churn=0.15,
        portfolio=300,
        tickets_per_month=0.5,
        priority_probs=(0.35, 0.45, 0.15, 0.05),
        sla_first_response_hours=(48.0, 24.0, 8.0, 4.0),
        sla_resolution_hours=(240.0, 120.0, 48.0, 24.0),
        touch_rates=(0.25, 0.05, 0.02, 0.02),
        kickoff_meetings=0.6,
    ),
    _SegmentProfile(  # mid-market: annual
        seats_median=35,
        seats_sigma=0.5,
        seats_max=400,
        price_per_seat=900.0,
        price_sigma=0.3,
        term_months=(12,),
        term_probs=(1.0,),
        plans=("growth", "enterprise"),
        plan_probs=(0.7, 0.3),
        annual_churn=0.07,
        portfolio=80,
        tickets_per_month=1.5,
        priority_probs=(0.3, 0.45, 0.18, 0.07),
        sla_first_response_hours=(24.0, 12.0, 4.0, 2.0),
        sla_resolution_hours=(168.0, 72.0, 24.0, 12.0),
        touch_rates=(1.0, 0.35, 0.3, 0.25),
        kickoff_meetings=1.5,
    ),
    _SegmentProfile(  # enterprise: annual or multi-year, high ARR
        seats_median=140,
        seats_sigma=0.55,
        seats_max=1500,
        price_per_seat=1250.0,
        price_sigma=0.3,
        term_months=(12, 24, 36),
        term_probs=(0.65, 0.22, 0.13),
        plans=("enterprise",),
        plan_probs=(1.0,),
        annual_churn=0.058,
        portfolio=22,
        tickets_per_month=3.5,
        priority_probs=(0.25, 0.45, 0.2, 0.1),
        sla_first_response_hours=(12.0, 8.0, 2.0, 1.0),
        sla_resolution_hours=(120.0, 48.0, 16.0, 8.0),
        touch_rates=(2.5, 0.9, 0.34, 0.6),
        kickoff_meetings=3.0,
    ),
)

# ---------------------------------------------------------------------------------------------
# Latent model constants (the planted truth)
# ---------------------------------------------------------------------------------------------

_PERIOD_DAYS = 30
_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000

_USAGE, _TRAINING, _SUPPORT, _SENTIMENT, _RELATIONSHIP, _ONBOARDING = range(6)
_N_DIMS = 6
#: Which latent dimension each trouble (index in TROUBLES) pushes down.
_TROUBLE_DIM = {
    1: _USAGE,
    2: _TRAINING,
    3: _SUPPORT,
    4: _ONBOARDING,
    5: _SENTIMENT,
    6: _RELATIONSHIP,
}
#: Troubles present from the start (structural); the others appear later in the life.
_TROUBLES_FROM_START = (1, 2, 4)
#: Shift of the dimension a trouble hits, and of every other time-varying dimension (spillover:
#: bad support or a lost sponsor also lowers usage and sentiment, so every trouble shows in the
#: richest signal, usage, as well as in its own).
_TROUBLE_SHIFT = 3.0
_TROUBLE_SPILL = 0.8
#: A trouble counts for a decision when it started at least this long before it.
_TROUBLE_VISIBLE_DAYS = 45
#: A dimension = _HEALTH_LOADING * health + _IDIO_LOADING * account-specific offset. Health is
#: seen through every table, the offset only through its own (sparse) one, hence the small
#: offset loading.
_HEALTH_LOADING = 0.6
_IDIO_LOADING = 0.15
_HEALTH_MEAN_SD = 0.8
#: Monthly persistence and step of the health random walk: slow, so that a snapshot months
#: before a renewal already says much about the state the decision will be taken in.
_HEALTH_AR = 0.95
_HEALTH_STEP_SD = 0.15
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

_REGION_UTC_OFFSET_HOURS = np.array([-5.0, 1.0, 8.0, -3.0])
_REGION_PROBS = (0.5, 0.3, 0.12, 0.08)

_STREAMS = {
    "world": 1,
    "contracts": 2,
    "users": 3,
    "user_traits": 4,
    "trainings": 5,
    "tickets": 6,
    "nps": 7,
    "touchpoints": 8,
    "names": 9,
    "usage": 10,
    "csms": 11,
}

_NAME_WORDS_A = (
    "Blue", "North", "Apex", "Silver", "Bright", "Summit", "Cedar", "Harbor", "Nova", "Atlas",
    "Crimson", "Granite", "Maple", "Vertex", "Pioneer", "Lumen", "Orbit", "Redwood", "Sterling",
    "Quantum", "Evergreen", "Falcon", "Beacon", "Cobalt", "Horizon", "Iron", "Juniper", "Keystone",
    "Meridian", "Oak",
)  # fmt: skip
_NAME_WORDS_B = (
    "Logistics", "Health", "Analytics", "Foods", "Labs", "Systems", "Capital", "Retail",
    "Energy", "Media", "Robotics", "Learning", "Freight", "Insurance", "Pharma", "Studios",
    "Networks", "Partners", "Manufacturing", "Bank", "Travel", "Biotech", "Software", "Mobility",
    "Consulting",
)  # fmt: skip
_NAME_SUFFIXES = ("Inc", "LLC", "Ltd", "GmbH", "Group", "Co", "SA", "BV")
_FIRST_NAMES = (
    "Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kara",
    "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor",
    "Wen", "Ximena", "Yusuf", "Zoe", "Arjun", "Bea", "Carlos", "Dana",
)  # fmt: skip
_LAST_NAMES = (
    "Silva", "Okafor", "Nguyen", "Schmidt", "Rossi", "Kim", "Garcia", "Novak", "Haddad", "Berg",
    "Tanaka", "Moreau", "Kowalski", "Patel", "Murphy", "Jensen", "Costa", "Ivanova", "Lopez",
    "Fischer", "Dubois", "Sato", "Ahmed", "Larsen", "Russo", "Young", "Ortiz", "Meyer", "Chen",
    "Walsh",
)  # fmt: skip


def _rng(config: SimulationConfig, stream: str, *extra: int) -> np.random.Generator:
    """An independent generator per purpose, so adding draws to one table never shifts another."""
    return np.random.default_rng([int(config.seed), _STREAMS[stream], *extra])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1.0 - p))


# ---------------------------------------------------------------------------------------------
# The latent world: accounts and their hidden state
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _World:
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
        return self.created_us // _DAY_US

    def dim(self, which: int, acct: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Latent dimension ``which`` of accounts ``acct`` on days ``day``.

        The single definition every observable and every churn decision uses: it is what makes
        the planted drivers visible in exactly the window the decision depends on. A trouble
        lowers its own dimension by _TROUBLE_SHIFT from its onset, and the other time-varying
        dimensions by _TROUBLE_SPILL (onboarding is fixed at signup and only feels its own).
        """
        acct = np.asarray(acct, dtype=np.int64)
        day = np.asarray(day, dtype=np.int64)
        if which == _ONBOARDING:  # fixed at signup: long-run health, not today's
            base = self.health_mean[acct]
        else:
            period = np.clip(day // _PERIOD_DAYS, 0, self.health.shape[1] - 1)
            base = self.health[acct, period].astype(np.float64)
        out = _HEALTH_LOADING * base + _IDIO_LOADING * self.idio[acct, which].astype(np.float64)
        trouble_of_dim = next(t for t, d in _TROUBLE_DIM.items() if d == which)
        started = day >= self.trouble_onset_day[acct]
        hit = (self.trouble[acct] == trouble_of_dim) & started
        out[hit] -= _TROUBLE_SHIFT
        if which != _ONBOARDING:
            spill = (self.trouble[acct] > 0) & (self.trouble[acct] != trouble_of_dim) & started
            out[spill] -= _TROUBLE_SPILL
        return out

    def dims(self, acct: np.ndarray, day: np.ndarray) -> np.ndarray:
        """All six dimensions (rows x 6), as ``dim`` gives them one by one."""
        return np.stack([self.dim(k, acct, day) for k in range(_N_DIMS)], axis=1)


def _build_world(config: SimulationConfig) -> _World:
    rng = _rng(config, "world")
    n = int(config.n_accounts)
    n_days = config.n_days
    n_periods = n_days // _PERIOD_DAYS + 1

    # Acquisition over the whole period, the rate doubling from start to as_of (growing company).
    growth = 1.0
    u = np.sort(rng.random(n))
    x = (np.sqrt(1.0 + growth * (2.0 + growth) * u) - 1.0) / growth
    created_day = np.minimum((x * n_days).astype(np.int64), n_days - 1)
    time_of_day = rng.uniform(8.0, 18.0, n) * _HOUR_US
    created_us = created_day * _DAY_US + time_of_day.astype(np.int64)
    created_us.sort()

    segment = rng.choice(3, size=n, p=np.array(config.segment_shares)).astype(np.int8)
    region = rng.choice(len(REGIONS), size=n, p=_REGION_PROBS).astype(np.int8)
    industry = rng.integers(0, len(INDUSTRIES), n).astype(np.int8)

    health_mean = rng.normal(0.0, _HEALTH_MEAN_SD, n)
    steps = rng.normal(0.0, _HEALTH_STEP_SD, (n, n_periods)).astype(np.float32)
    health = np.empty((n, n_periods), dtype=np.float32)
    stationary_sd = _HEALTH_STEP_SD / np.sqrt(1.0 - _HEALTH_AR**2)
    deviation = rng.normal(0.0, stationary_sd, n)
    for p in range(n_periods):  # one vectorised step per period
        deviation = _HEALTH_AR * deviation + steps[:, p]
        health[:, p] = health_mean + deviation
    idio = rng.normal(0.0, 1.0, (n, _N_DIMS)).astype(np.float32)

    has_trouble = rng.random(n) < config.trouble_share
    trouble = np.where(has_trouble, rng.integers(1, len(TROUBLES), n), 0).astype(np.int8)
    from_start = np.isin(trouble, _TROUBLES_FROM_START)
    onset_delay = rng.integers(30, 450, n)
    onset = np.where(from_start, created_day, created_day + onset_delay)
    onset = np.where(trouble > 0, onset, np.iinfo(np.int64).max // 4)

    onboarding = _HEALTH_LOADING * health_mean + _IDIO_LOADING * idio[:, _ONBOARDING]
    onboarding = onboarding - _TROUBLE_SHIFT * (trouble == TROUBLES.index("poor_onboarding"))
    activation = np.clip(_sigmoid(1.3 + 1.0 * onboarding), 0.05, 0.98)
    return _World(
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


# ---------------------------------------------------------------------------------------------
# Contracts and renewal decisions
# ---------------------------------------------------------------------------------------------


def _add_months(start: date, day: np.ndarray, months: np.ndarray) -> np.ndarray:
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


def _base_churn_logit(segment: np.ndarray, term_months: np.ndarray) -> np.ndarray:
    annual = np.array([p.annual_churn for p in _PROFILES])[segment]
    per_term = 1.0 - (1.0 - annual) ** (term_months / 12.0)
    return _logit(per_term) + _CHURN_CALIBRATION[segment]


def _decision_drivers(world: _World, acct: np.ndarray, decision_day: np.ndarray) -> np.ndarray:
    """Latent dimensions averaged over the 90 days before the decision (rows x 6), and health."""
    created = world.created_day[acct]
    total = np.zeros((acct.size, _N_DIMS + 1))
    for back in (15, 45, 75):
        day = np.maximum(decision_day - back, created)
        total[:, :_N_DIMS] += world.dims(acct, day)
        period = np.clip(day // _PERIOD_DAYS, 0, world.health.shape[1] - 1)
        total[:, _N_DIMS] += world.health[acct, period]
    return total / 3.0


def _churn_logit(
    world: _World,
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
    early = np.exp(-tenure / _EARLY_SCALE_DAYS)
    onboarding_weight = (
        _ONBOARDING_WEIGHT_LATE
        + _ONBOARDING_WEIGHT_EARLY * early
        + _ONBOARDING_WEIGHT_FIRST_TERM * first_term
    )
    # "Watermelon" accounts: one dimension in deep trouble outweighs fine scores elsewhere, so
    # the risk grows faster than linearly below a knee (a points-based health score caps it).
    deep = np.maximum(0.0, _SEVERITY_KNEE - drivers[:, :_N_DIMS]).sum(axis=1)
    return (
        _base_churn_logit(world.segment[acct], term)
        - (drivers[:, :5] * _CHURN_WEIGHTS[world.segment[acct]]).sum(axis=1)
        - onboarding_weight * drivers[:, _ONBOARDING]
        + _SEVERITY_WEIGHT * deep
        + _EARLY_BONUS * early
        + _FIRST_TERM_BONUS * first_term
    )


@dataclass(frozen=True)
class _Contracts:
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


def _simulate_contracts(config: SimulationConfig, world: _World) -> _Contracts:
    rng = _rng(config, "contracts")
    n = world.n_accounts
    n_days = world.n_days
    seg = world.segment.astype(np.int64)

    term = np.zeros(n, dtype=np.int64)
    seats = np.zeros(n, dtype=np.int64)
    price = np.zeros(n)
    plan = np.empty(n, dtype=object)
    for s, prof in enumerate(_PROFILES):
        idx = np.flatnonzero(seg == s)
        term[idx] = rng.choice(prof.term_months, size=idx.size, p=prof.term_probs)
        raw = np.exp(rng.normal(np.log(prof.seats_median), prof.seats_sigma, idx.size))
        seats[idx] = np.clip(np.round(raw), 1 if s == 0 else 5, prof.seats_max)
        price[idx] = prof.price_per_seat * np.exp(rng.normal(0.0, prof.price_sigma, idx.size))
        plan[idx] = rng.choice(prof.plans, size=idx.size, p=prof.plan_probs)

    max_delay = max(0, min(14, int(config.renewal_grace_days) - 1))
    parts: list[dict[str, np.ndarray]] = []
    churn_day = np.full(n, -1, dtype=np.int64)
    acct = np.arange(n)
    start = world.created_day.copy()
    while acct.size:
        end = _add_months(config.start_date, start, term)
        decided = end < n_days
        prob = np.full(acct.size, np.nan)
        drivers = np.full((acct.size, _N_DIMS + 1), np.nan)
        churned = np.zeros(acct.size, dtype=bool)
        d = np.flatnonzero(decided)
        if d.size:
            tenure = end[d] - world.created_day[acct[d]]
            drv = _decision_drivers(world, acct[d], end[d])
            first_term = start[d] == world.created_day[acct[d]]
            logit = _churn_logit(world, acct[d], drv, tenure, term[d], first_term)
            logit = logit + config.churn_logit_shift
            prob[d] = _sigmoid(logit)
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
        health_now = drivers[renew, _N_DIMS]
        acct, end, term = acct[renew], end[renew], term[renew]
        seats, price, plan = seats[renew], price[renew], plan[renew]
        delay = np.where(rng.random(acct.size) < 0.8, 0, rng.integers(1, max_delay + 1, acct.size))
        start = np.where(end + delay < n_days, end + delay, end)
        # Expansion or contraction at renewal, tilted by health; monthly terms rarely change.
        changes = (term > 1) | (rng.random(acct.size) < 0.12)
        factor = np.exp(rng.normal(0.03 + 0.10 * health_now, 0.12))
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
    return _Contracts(
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


# ---------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Users:
    account: np.ndarray  # int64 account index, sorted
    created_us: np.ndarray
    end_us: np.ndarray  # deactivation, or the as_of instant when still active
    deactivated: np.ndarray  # bool: end_us is a real deactivation
    role: np.ndarray  # int8 index into ROLES


def _account_end_us(world: _World, contracts: _Contracts) -> np.ndarray:
    """When an account stops producing events: its churn (midnight of the end date) or as_of."""
    churned = contracts.churn_day >= 0
    return np.where(churned, contracts.churn_day * _DAY_US, world.n_days * _DAY_US)


def _simulate_users(config: SimulationConfig, world: _World, contracts: _Contracts) -> _Users:
    rng = _rng(config, "users")
    n = world.n_accounts
    account_end = _account_end_us(world, contracts)
    onboarding = world.dim(_ONBOARDING, np.arange(n), world.created_day)

    # Initial users: the admin at signup, the others invited over the onboarding weeks
    # (slower when onboarding goes badly).
    first = np.r_[True, contracts.account[1:] != contracts.account[:-1]]
    seats0 = np.zeros(n, dtype=np.int64)
    seats0[contracts.account[first]] = contracts.seats[first]
    n0 = np.maximum(1, np.round(seats0 * world.activation * rng.uniform(0.85, 1.1, n)))
    n0 = n0.astype(np.int64)
    acc0 = np.repeat(np.arange(n), n0)
    rank = np.arange(acc0.size) - np.repeat(np.cumsum(n0) - n0, n0)
    invite_mean_days = 10.0 * np.exp(-1.2 * onboarding)
    delay_days = rng.exponential(1.0, acc0.size) * invite_mean_days[acc0]
    delay_us = np.where(
        rank == 0,
        rng.uniform(0.02, 2.0, acc0.size) * _HOUR_US,
        delay_days * _DAY_US + rng.uniform(0.5, 10.0, acc0.size) * _HOUR_US,
    )
    created0 = world.created_us[acc0] + delay_us.astype(np.int64)
    role0 = np.where(rank == 0, 0, rng.choice(3, size=acc0.size, p=(0.05, 0.7, 0.25)))

    # Expansion users: a renewal with more seats brings new users in the following weeks.
    prev_seats = np.r_[0, contracts.seats[:-1]]
    grow = ~first & (contracts.seats > prev_seats)
    n_exp = np.round((contracts.seats - prev_seats) * world.activation[contracts.account] * grow)
    n_exp = np.maximum(n_exp, 0).astype(np.int64)
    acc1 = np.repeat(contracts.account, n_exp)
    start1 = np.repeat(contracts.start_day, n_exp) * _DAY_US
    created1 = start1 + (rng.exponential(15.0, acc1.size) * _DAY_US).astype(np.int64)
    role1 = rng.choice(3, size=acc1.size, p=(0.03, 0.72, 0.25))

    # Turnover: users leave after an exponential lifetime and most are replaced, generation by
    # generation (each generation is one vectorised step).
    gen_acc = np.concatenate([acc0, acc1])
    gen_created = np.concatenate([created0, created1])
    gen_role = np.concatenate([role0, role1])
    accounts, created, roles, ends = [], [], [], []
    for _ in range(12):
        lifetime = (rng.exponential(1000.0, gen_acc.size) * _DAY_US).astype(np.int64)
        leave = gen_created + lifetime
        accounts.append(gen_acc)
        created.append(gen_created)
        roles.append(gen_role)
        ends.append(leave)
        replaced = (leave < account_end[gen_acc]) & (rng.random(gen_acc.size) < 0.75)
        if not replaced.any():
            break
        gap = (rng.exponential(20.0, int(replaced.sum())) * _DAY_US).astype(np.int64)
        gen_acc = gen_acc[replaced]
        gen_created = leave[replaced] + gap + _HOUR_US
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
    return _Users(
        account=account[order],
        created_us=created_us[order],
        end_us=end_us[order],
        deactivated=deactivated[order],
        role=role[order],
    )


@dataclass(frozen=True)
class _UserTraits:
    """Per-user hidden traits, drawn from their own stream so usage chunks can rebuild them."""

    propensity: np.ndarray  # relative activity level, mean 1
    dormant_u: np.ndarray  # uniform: compared with the account's dormancy probability
    activation_u: np.ndarray  # uniform: quantile of the delay to first use


def _user_traits(config: SimulationConfig, n_users: int) -> _UserTraits:
    rng = _rng(config, "user_traits")
    return _UserTraits(
        # moderate spread: a 5-user account's activity must mostly reflect the account, not
        # which users it happens to have
        propensity=rng.gamma(12.0, 1.0 / 12.0, n_users),
        dormant_u=rng.random(n_users),
        activation_u=rng.random(n_users),
    )


def _user_activity_window(
    world: _World,
    account: np.ndarray,
    created_us: np.ndarray,
    end_us: np.ndarray,
    traits: _UserTraits,
    rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First and last (exclusive) whole day a user can be active, and whether they are dormant.

    Days are whole UTC days strictly after the day of creation and strictly before the day of
    deactivation, so every event stamped within such a day is inside the user's lifetime.
    Poor onboarding shows as more never-activated seats and a longer time to first use.
    """
    onboarding = world.dim(_ONBOARDING, account, world.created_day[account])
    p_dormant = _sigmoid(-2.0 - 1.8 * onboarding)
    dormant = traits.dormant_u[rows] < p_dormant
    mean_delay = 3.0 * np.exp(-1.4 * onboarding)
    # Weibull (shape 2) quantile: a delay that tracks onboarding more tightly than an exponential
    delay = np.floor(np.sqrt(-np.log1p(-traits.activation_u[rows])) * mean_delay / 0.886).astype(
        np.int64
    )
    first_day = created_us // _DAY_US + 1 + delay
    end_day = end_us // _DAY_US
    return first_day, end_day, dormant


# ---------------------------------------------------------------------------------------------
# Trainings, tickets, NPS, touchpoints (all vectorised over accounts x periods or users)
# ---------------------------------------------------------------------------------------------


def _simulate_trainings(
    config: SimulationConfig, world: _World, users: _Users, traits: _UserTraits
) -> dict[str, np.ndarray]:
    rng = _rng(config, "trainings")
    n_users = users.account.size
    rows = np.arange(n_users)
    first_day, _, dormant = _user_activity_window(
        world, users.account, users.created_us, users.end_us, traits, rows
    )
    first_us = np.maximum(first_day * _DAY_US, users.created_us)
    t_dim = world.dim(_TRAINING, users.account, first_day)

    # Onboarding course, in the first weeks after the user starts.
    p_basic = _sigmoid(0.6 + 1.5 * t_dim) * np.where(dormant, 0.15, 1.0)
    take0 = rng.random(n_users) < p_basic
    enrolled0 = first_us + (rng.exponential(10.0, n_users) * _DAY_US).astype(np.int64)
    # Advanced courses later on, for users who stay and accounts that invest in enablement.
    n_adv = len(COURSES) - 1
    later_day = users.created_us // _DAY_US + rng.integers(30, 500, (n_users, n_adv)).T
    t_later = np.stack([world.dim(_TRAINING, users.account, d) for d in later_day])
    p_adv = _sigmoid(-1.0 + 1.4 * t_later) * np.where(dormant, 0.1, 1.0)
    take_adv = rng.random((n_adv, n_users)) < p_adv
    enrolled_adv = later_day * _DAY_US + (rng.uniform(8, 18, (n_adv, n_users)) * _HOUR_US).astype(
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
    completes = rng.random(user.size) < _sigmoid(1.2 + 1.2 * t_dim_at)
    duration = (rng.exponential(4.0, user.size) * _DAY_US + _HOUR_US).astype(np.int64)
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


def _account_periods(world: _World, account_end_us: np.ndarray) -> dict[str, np.ndarray]:
    """Every (account, 30-day period) cell the account is alive in, with the overlap in us."""
    n_periods = world.health.shape[1]
    period_start = np.arange(n_periods, dtype=np.int64) * _PERIOD_DAYS * _DAY_US
    lo = np.maximum(period_start[None, :], world.created_us[:, None])
    hi = np.minimum(period_start[None, :] + _PERIOD_DAYS * _DAY_US, account_end_us[:, None])
    acct, period = np.nonzero(hi > lo)
    return {
        "account": acct,
        "period": period,
        "lo": lo[acct, period],
        "span": hi[acct, period] - lo[acct, period],
    }


def _simulate_tickets(
    config: SimulationConfig, world: _World, contracts: _Contracts, cells: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    rng = _rng(config, "tickets")
    acct, lo, span = cells["account"], cells["lo"], cells["span"]
    seg = world.segment[acct].astype(np.int64)
    first = np.r_[True, contracts.account[1:] != contracts.account[:-1]]
    seats0 = np.ones(world.n_accounts)
    seats0[contracts.account[first]] = contracts.seats[first]
    seat_factor = (seats0 / np.array([p.seats_median for p in _PROFILES])[world.segment]) ** 0.4
    mid_day = (lo + span // 2) // _DAY_US
    tenure = mid_day - world.created_day[acct]
    health = world.health[acct, cells["period"]]
    rate = (
        np.array([p.tickets_per_month for p in _PROFILES])[seg]
        * seat_factor[acct]
        * np.exp(-0.3 * health)
        * np.where(tenure < 60, 1.6, 1.0)
    )
    n = rng.poisson(rate * span / (_PERIOD_DAYS * _DAY_US))
    t_acct = np.repeat(acct, n)
    opened = np.repeat(lo, n) + (rng.random(t_acct.size) * np.repeat(span, n)).astype(np.int64)
    opened = np.maximum(opened, world.created_us[t_acct])
    t_seg = world.segment[t_acct].astype(np.int64)
    prio_probs = np.array([p.priority_probs for p in _PROFILES])[t_seg]
    priority = (rng.random(t_acct.size)[:, None] > np.cumsum(prio_probs, axis=1)).sum(axis=1)
    priority = np.minimum(priority, 3)
    sla_first = np.array([p.sla_first_response_hours for p in _PROFILES])[t_seg, priority]
    sla_resolve = np.array([p.sla_resolution_hours for p in _PROFILES])[t_seg, priority]

    support = world.dim(_SUPPORT, t_acct, opened // _DAY_US)
    response_ratio = np.exp(rng.normal(-1.3 - 0.6 * support, 0.45))
    resolve_ratio = np.exp(rng.normal(-0.9 - 0.6 * support, 0.5))
    first_response = opened + (response_ratio * sla_first * _HOUR_US).astype(np.int64)
    resolved = opened + (resolve_ratio * sla_resolve * _HOUR_US).astype(np.int64)
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


def _simulate_touchpoints(
    config: SimulationConfig, world: _World, cells: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    rng = _rng(config, "touchpoints")
    acct, lo, span = cells["account"], cells["lo"], cells["span"]
    seg = world.segment[acct].astype(np.int64)
    mid_day = (lo + span // 2) // _DAY_US
    tenure = mid_day - world.created_day[acct]
    relationship = world.dim(_RELATIONSHIP, acct, mid_day)
    base = np.array([p.touch_rates for p in _PROFILES])[seg]  # (cells, 4)
    kickoff = np.array([p.kickoff_meetings for p in _PROFILES])[seg] * (tenure < 60)
    # going dark: a weak relationship thins calls and meetings, and exec contact most of all
    elasticity = np.array([0.6, 0.7, 0.8, 1.2])
    rate = base * np.exp(relationship[:, None] * elasticity[None, :])
    rate[:, 1] += kickoff
    rate[:, 0] += kickoff * 0.5
    counts = rng.poisson(rate * (span / (_PERIOD_DAYS * _DAY_US))[:, None])
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


def _simulate_nps(
    config: SimulationConfig, world: _World, users: _Users, traits: _UserTraits
) -> dict[str, np.ndarray]:
    """Quarterly relationship-NPS waves; each live user answers a wave with some probability."""
    rng = _rng(config, "nps")
    n = world.n_accounts
    wave_period = 91
    phase = world.created_day + 30 + rng.integers(0, wave_period, n)  # first wave of the account
    rows = np.arange(users.account.size)
    _, _, dormant = _user_activity_window(
        world, users.account, users.created_us, users.end_us, traits, rows
    )
    ph = phase[users.account]
    start_day = users.created_us // _DAY_US + 1
    end_day = users.end_us // _DAY_US
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
    responded = wave_day * _DAY_US + (rng.exponential(2.0, user.size) * _DAY_US).astype(np.int64)
    keep = (responded < users.end_us[user]) & (responded >= users.created_us[user])
    user, responded = user[keep], responded[keep]
    acct = users.account[user]
    sentiment = world.dim(_SENTIMENT, acct, responded // _DAY_US)
    score = np.clip(np.round(rng.normal(7.8 + 1.5 * sentiment, 1.1)), 0, 10).astype(np.int64)
    order = np.lexsort((responded, acct))
    return {
        "account": acct[order],
        "user": user[order],
        "responded_us": responded[order],
        "score": score[order],
    }


# ---------------------------------------------------------------------------------------------
# Frame builders (ids, strings, timestamps)
# ---------------------------------------------------------------------------------------------


def _ids(prefix: str, count: int, width: int) -> pa.Array:
    width = max(width, len(str(count)))
    numbers = np.arange(1, count + 1).astype(str)
    return pa.array(np.char.add(prefix, np.char.zfill(numbers, width)), type=pa.string())


def _str_column(values: pa.Array | np.ndarray | list, codes: np.ndarray | None = None) -> pd.Series:
    """A pandas ``str`` column (Arrow-backed), optionally by indexing a small dictionary."""
    arr = values if isinstance(values, pa.Array) else pa.array(np.asarray(values, dtype=object))
    if codes is not None:
        arr = pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), arr).cast(
            pa.string()
        )
    return pd.Series(arr, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def _ts_column(
    config: SimulationConfig, rel_us: np.ndarray, valid: np.ndarray | None = None
) -> pd.Series:
    """UTC timestamps (microseconds) from offsets relative to start_date; NaT where not valid."""
    base = np.datetime64(config.start_date, "us")
    values = base + rel_us.astype("timedelta64[us]")
    if valid is not None:
        values = np.where(valid, values, np.datetime64("NaT", "us"))
    return pd.Series(pd.DatetimeIndex(values).tz_localize("UTC"))


def _date_column(config: SimulationConfig, day: np.ndarray) -> pd.Series:
    """Dates as ``datetime.date`` objects: what pandas gives back when reading a date32 column."""
    values = np.datetime64(config.start_date, "D") + day.astype("timedelta64[D]")
    return pd.Series(values.astype(object), dtype=object)


def _account_names(config: SimulationConfig, n: int) -> np.ndarray:
    rng = _rng(config, "names")
    a = rng.choice(np.array(_NAME_WORDS_A), n)
    b = rng.choice(np.array(_NAME_WORDS_B), n)
    c = rng.choice(np.array(_NAME_SUFFIXES), n)
    names = pd.Series(np.char.add(np.char.add(np.char.add(a, " "), np.char.add(b, " ")), c))
    dup = names.groupby(names).cumcount().to_numpy()
    suffix = np.where(dup > 0, np.char.add(" ", (dup + 1).astype(str)), "")
    return np.char.add(names.to_numpy().astype(str), suffix)


def _csm_assignment(config: SimulationConfig, world: _World) -> tuple[pd.DataFrame, np.ndarray]:
    """CSMs dedicated to one segment, as many as the segment's portfolio size calls for."""
    rng = _rng(config, "csms")
    counts = []
    for s, prof in enumerate(_PROFILES):
        n_seg = int((world.segment == s).sum())
        # roughly 3 of 4 accounts ever acquired are live at a time
        counts.append(max(1, int(np.ceil(0.75 * n_seg / prof.portfolio))) if n_seg else 0)
    n_csm = sum(counts)
    combos = np.array([(f, last) for f in _FIRST_NAMES for last in _LAST_NAMES])
    pick = rng.permutation(len(combos))[: min(n_csm, len(combos))]
    pick = np.resize(pick, n_csm)
    first, last = combos[pick, 0], combos[pick, 1]
    serial = np.arange(1, n_csm + 1)
    repeat = np.arange(n_csm) >= len(combos)
    email_local = np.char.lower(np.char.add(np.char.add(first, "."), last))
    email_local = np.where(repeat, np.char.add(email_local, serial.astype(str)), email_local)
    csm_ids = _ids("CSM", n_csm, 3)
    csms = pd.DataFrame(
        {
            "csm_id": _str_column(csm_ids),
            "name": _str_column(np.char.add(np.char.add(first, " "), last)),
            "email": _str_column(np.char.add(email_local, "@example.com")),
        }
    )
    owner = np.zeros(world.n_accounts, dtype=np.int64)
    offset = 0
    for s, k in enumerate(counts):
        idx = np.flatnonzero(world.segment == s)
        if k:
            owner[idx] = offset + rng.integers(0, k, idx.size)
        offset += k
    return csms, owner


# ---------------------------------------------------------------------------------------------
# Public core
# ---------------------------------------------------------------------------------------------


def simulate_entities(config: SimulationConfig) -> dict[str, pd.DataFrame]:
    """Simulate every raw table except ``usage_events``, plus the ground truth.

    Returns the raw tables under their table names (see ``RAW_TABLE_SCHEMAS``) and the ground
    truth under ``truth_renewal_decisions`` and ``truth_accounts``. Pure: the same config gives
    identical frames. Usage events come separately from ``iter_usage_event_chunks`` because
    they do not fit in memory at scale.
    """
    world = _build_world(config)
    n = world.n_accounts
    contracts = _simulate_contracts(config, world)
    users = _simulate_users(config, world, contracts)
    traits = _user_traits(config, users.account.size)
    account_end = _account_end_us(world, contracts)
    cells = _account_periods(world, account_end)
    trainings = _simulate_trainings(config, world, users, traits)
    tickets = _simulate_tickets(config, world, contracts, cells)
    touchpoints = _simulate_touchpoints(config, world, cells)
    nps = _simulate_nps(config, world, users, traits)
    as_of_us = world.n_days * _DAY_US

    account_ids = _ids("A", n, 6)
    user_ids = _ids("U", users.account.size, 7)
    csms, owner = _csm_assignment(config, world)
    csm_ids = pa.array(csms["csm_id"].array, type=pa.string())
    segments = pa.array(list(SEGMENTS), type=pa.string())

    accounts = pd.DataFrame(
        {
            "account_id": _str_column(account_ids),
            "account_name": _str_column(_account_names(config, n)),
            "segment": _str_column(segments, world.segment),
            "industry": _str_column(list(INDUSTRIES), world.industry),
            "region": _str_column(list(REGIONS), world.region),
            "created_at": _ts_column(config, world.created_us),
            "csm_id": _str_column(csm_ids, owner),
        }
    )
    contract_frame = pd.DataFrame(
        {
            "contract_id": _str_column(_ids("C", contracts.account.size, 7)),
            "account_id": _str_column(account_ids, contracts.account),
            "start_date": _date_column(config, contracts.start_day),
            "end_date": _date_column(config, contracts.end_day),
            "arr": contracts.arr.astype(np.float64),
            "seats": contracts.seats.astype(np.int64),
            "plan": _str_column(contracts.plan),
        }
    )
    user_frame = pd.DataFrame(
        {
            "user_id": _str_column(user_ids),
            "account_id": _str_column(account_ids, users.account),
            "created_at": _ts_column(config, users.created_us),
            "role": _str_column(list(ROLES), users.role),
            "deactivated_at": _ts_column(
                config, users.end_us, users.deactivated & (users.end_us < as_of_us)
            ),
        }
    )
    training_frame = pd.DataFrame(
        {
            "user_id": _str_column(user_ids, trainings["user"]),
            "account_id": _str_column(account_ids, users.account[trainings["user"]]),
            "course_id": _str_column(list(COURSES), trainings["course"]),
            "enrolled_at": _ts_column(config, trainings["enrolled_us"]),
            "completed_at": _ts_column(config, trainings["completed_us"], trainings["completed"]),
            "score": trainings["score"].astype(np.float64),
        }
    )
    ticket_frame = pd.DataFrame(
        {
            "ticket_id": _str_column(_ids("T", tickets["account"].size, 8)),
            "account_id": _str_column(account_ids, tickets["account"]),
            "priority": _str_column(list(PRIORITIES), tickets["priority"]),
            "opened_at": _ts_column(config, tickets["opened_us"]),
            "first_response_at": _ts_column(
                config, tickets["first_response_us"], tickets["first_response_us"] < as_of_us
            ),
            "resolved_at": _ts_column(
                config, tickets["resolved_us"], tickets["resolved_us"] < as_of_us
            ),
            "sla_first_response_hours": tickets["sla_first"].astype(np.float64),
            "sla_resolution_hours": tickets["sla_resolve"].astype(np.float64),
            "escalated": tickets["escalated"].astype(bool),
        }
    )
    nps_frame = pd.DataFrame(
        {
            "account_id": _str_column(account_ids, nps["account"]),
            "user_id": _str_column(user_ids, nps["user"]),
            "responded_at": _ts_column(config, nps["responded_us"]),
            "score": nps["score"].astype(np.int64),
        }
    )
    touch_frame = pd.DataFrame(
        {
            "account_id": _str_column(account_ids, touchpoints["account"]),
            "occurred_at": _ts_column(config, touchpoints["occurred_us"]),
            "kind": _str_column(list(TOUCHPOINT_KINDS), touchpoints["kind"]),
        }
    )

    decided = np.flatnonzero(contracts.decided)
    d_acct = contracts.account[decided]
    d_day = contracts.end_day[decided]
    # A decision's trouble is the one that weighed on most of its 90-day window (or on the whole
    # life of a younger account).
    visible_since = np.maximum(world.created_day[d_acct], d_day - _TROUBLE_VISIBLE_DAYS)
    trouble_active = (world.trouble[d_acct] > 0) & (
        world.trouble_onset_day[d_acct] <= visible_since
    )
    drivers = contracts.drivers[decided]
    decisions = pd.DataFrame(
        {
            "contract_id": contract_frame["contract_id"].iloc[decided].reset_index(drop=True),
            "account_id": _str_column(account_ids, d_acct),
            "segment": _str_column(segments, world.segment[d_acct]),
            "decision_date": _date_column(config, d_day),
            "tenure_days": (d_day - world.created_day[d_acct]).astype(np.int64),
            "term_months": contracts.term[decided].astype(np.int64),
            "arr": contracts.arr[decided].astype(np.float64),
            "true_churn_probability": contracts.probability[decided],
            "churned": contracts.churned[decided].astype(bool),
            "latent_health": drivers[:, _N_DIMS],
            "trouble": _str_column(
                list(TROUBLES), np.where(trouble_active, world.trouble[d_acct], 0)
            ),
            **{name: drivers[:, k] for k, name in enumerate(_LATENT_COLUMNS)},
        }
    )
    onset_valid = (world.trouble > 0) & (world.trouble_onset_day < world.n_days)
    last_period = np.clip((account_end - 1) // (_PERIOD_DAYS * _DAY_US), 0, None)
    churned = contracts.churn_day >= 0
    truth_accounts = pd.DataFrame(
        {
            "account_id": _str_column(account_ids),
            "segment": _str_column(segments, world.segment),
            "latent_health_mean": world.health_mean,
            "latent_health_final": world.health[np.arange(n), last_period].astype(np.float64),
            "trouble": _str_column(list(TROUBLES), world.trouble),
            "trouble_onset_at": _ts_column(
                config, np.where(onset_valid, world.trouble_onset_day, 0) * _DAY_US, onset_valid
            ),
            "latent_onboarding": world.dim(_ONBOARDING, np.arange(n), world.created_day),
            "activation_propensity": world.activation,
            "churned": churned,
            "churned_at": _ts_column(config, contracts.churn_day * _DAY_US, churned),
        }
    )
    logger.debug(
        "simulated %d accounts, %d contracts, %d users", n, len(contract_frame), len(user_frame)
    )
    return {
        "accounts": accounts,
        "csms": csms,
        "contracts": contract_frame,
        "users": user_frame,
        "trainings": training_frame,
        "support_tickets": ticket_frame,
        "nps_responses": nps_frame,
        "csm_touchpoints": touch_frame,
        "truth_renewal_decisions": decisions,
        "truth_accounts": truth_accounts,
    }


_TIER_FIRST = np.array([0, 2, 4], dtype=np.int8)
_TIER_SIZE = np.array([2, 2, 3], dtype=np.float32)
_EVENT_TYPE_NAMES = [e for m in MODULES for e in MODULE_EVENT_TYPES[m]]
#: Extra actions per row beyond the first, by (module, event type) code: views repeat most.
_COUNT_EXTRA = np.array([2.5 if k % 2 == 0 else 0.6 for k in range(2 * len(MODULES))])
_WEEKDAY_FACTOR = np.array([1.0, 1.05, 1.05, 1.0, 0.85, 0.12, 0.08])
_BASE_ACTIVITY = 0.4
#: Candidate user-days materialised at once while drawing daily activity.
_USER_DAY_BATCH = 2_000_000


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
    world = _build_world(config)
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
        np.isnat(deact), world.n_days * _DAY_US, (deact - base).astype(np.int64)
    ).astype(np.int64)
    role = pd.Categorical(users["role"], categories=list(ROLES)).codes.astype(np.int64)
    traits = _user_traits(config, len(users))
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
            _rng(config, "usage", c),
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
    world: _World,
    rng: np.random.Generator,
    rows: np.ndarray,
    acct: np.ndarray,
    created_us: np.ndarray,
    end_us: np.ndarray,
    role: np.ndarray,
    traits: _UserTraits,
    account_ids: pa.Array,
    user_ids: pa.Array,
) -> pd.DataFrame:
    n_periods = world.health.shape[1]
    first_day, end_day, dormant = _user_activity_window(
        world, acct, created_us, end_us, traits, rows
    )
    length = np.where(dormant, 0, np.maximum(end_day - first_day, 0))

    # Per (user, period) tables of activity probability and depth, so that each user-day needs
    # a single flat lookup.
    k = rows.size
    period_mid_day = np.arange(n_periods) * _PERIOD_DAYS + _PERIOD_DAYS // 2
    usage = world.dim(_USAGE, np.repeat(acct, n_periods), np.tile(period_mid_day, k))
    usage = usage.reshape(k, n_periods)
    role_factor = np.array([1.3, 1.0, 0.5])[role]
    # Nearly log-linear in the usage dimension over its whole range: a healthy account's users
    # log in most days, a troubled one's thin out to a few days a month rather than to nothing,
    # so how low usage is stays readable from the events.
    activity = (
        (_BASE_ACTIVITY * config.usage_intensity * 2.0)
        * (traits.propensity[rows] * role_factor)[:, None]
        * _sigmoid(-1.2 + 1.6 * usage)
    ).astype(np.float32)
    tenure = period_mid_day[None, :] - world.created_day[acct][:, None]
    maturity = 1.0 - np.exp(-np.maximum(tenure, 0) / 150.0)
    depth = (maturity * _sigmoid(0.5 + 1.2 * usage)).astype(np.float32).ravel()
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
        cell = user_local * np.int32(n_periods) + day // np.int32(_PERIOD_DAYS)
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
    occurred = day.astype(np.int64) * _DAY_US + tod_us
    row_user = user_local[ud]

    return pd.DataFrame(
        {
            "account_id": _str_column(account_ids, acct[row_user]),
            "user_id": _str_column(user_ids, rows[row_user]),
            "occurred_at": _ts_column(config, occurred[ud]),
            "module": _str_column(list(MODULES), code // 2),
            "event_type": _str_column(_EVENT_TYPE_NAMES, code),
            "count": count.astype(np.int64),
        }
    )


# ---------------------------------------------------------------------------------------------
# Realism figures (pure; used by tests and the benchmark)
# ---------------------------------------------------------------------------------------------


def realism_summary(entities: dict[str, pd.DataFrame], as_of_date: date) -> dict[str, float]:
    """Flat realism figures of a simulation: annual logo churn by segment and early churn.

    ``annual_churn_<segment>``: share of the accounts live one year before as_of that churned
    within that year (the way a CS team reports logo churn); ``expected_annual_churn_<segment>``:
    the same from the true probabilities (less noisy); ``churn_rate_first_90d`` and
    ``churn_rate_after_90d``: churn rate of decisions by tenure at decision.
    """
    truth = entities["truth_accounts"]
    decisions = entities["truth_renewal_decisions"]
    accounts = entities["accounts"]
    as_of = pd.Timestamp(as_of_date, tz="UTC")
    year_start = as_of - pd.Timedelta(days=365)
    merged = accounts[["account_id", "created_at"]].merge(truth, on="account_id")
    live = (merged["created_at"] < year_start) & ~(
        merged["churned"] & (merged["churned_at"] < year_start)
    )
    base = merged.loc[live]
    decision_day = pd.to_datetime(decisions["decision_date"]).dt.tz_localize("UTC")
    in_year = (decision_day >= year_start) & (decision_day < as_of)
    year_decisions = decisions.loc[in_year & decisions["account_id"].isin(base["account_id"])]
    out: dict[str, float] = {}
    for seg in SEGMENTS:
        seg_base = base.loc[base["segment"] == seg]
        n_base = len(seg_base)
        churned = (seg_base["churned"] & (seg_base["churned_at"] >= year_start)).sum()
        expected = year_decisions.loc[
            year_decisions["segment"] == seg, "true_churn_probability"
        ].sum()
        out[f"accounts_live_year_start_{seg}"] = float(n_base)
        out[f"annual_churn_{seg}"] = float(churned / n_base) if n_base else float("nan")
        out[f"expected_annual_churn_{seg}"] = float(expected / n_base) if n_base else float("nan")
    early = decisions["tenure_days"] <= 90
    out["decisions_first_90d"] = float(early.sum())
    out["decisions_after_90d"] = float((~early).sum())
    out["churn_rate_first_90d"] = float(decisions.loc[early, "churned"].mean())
    out["churn_rate_after_90d"] = float(decisions.loc[~early, "churned"].mean())
    churned_decisions = decisions.loc[decisions["churned"]]
    out["share_of_churn_in_first_90d"] = float((churned_decisions["tenure_days"] <= 90).mean())
    return out


# ---------------------------------------------------------------------------------------------
# I/O edge
# ---------------------------------------------------------------------------------------------


def _to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert a simulated frame to exactly ``schema``, column by column.

    Explicit rather than ``pa.Table.from_pandas``: that goes through ``Series.values`` for
    tz-aware columns, which pandas 3 deprecates (and warns about on every chunk).
    """
    arrays = []
    for field_ in schema:
        column = frame[field_.name]
        if pa.types.is_timestamp(field_.type):
            naive = column.dt.tz_convert(None).to_numpy("datetime64[us]")
            arrays.append(pa.array(naive, from_pandas=True).cast(field_.type))
        else:
            arrays.append(pa.array(column.array, type=field_.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def _write_parquet(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    pq.write_table(_to_arrow(frame, schema), path, compression="zstd")


def write_simulation(
    config: SimulationConfig, raw_dir: Path, truth_dir: Path, *, progress: bool = False
) -> dict[str, int]:
    """Simulate and write the raw tables to ``raw_dir`` and the ground truth to ``truth_dir``.

    Each directory is built in a temporary sibling and renamed into place (replacing any
    previous content as a whole), so an interrupted run leaves the old data or nothing, never
    half a table. ``usage_events`` is written part by part as it is generated, so memory stays
    bounded by one chunk. Returns the number of rows per table (truth tables prefixed ``truth_``).
    """
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    raw_abs, truth_abs = raw_dir.resolve(), truth_dir.resolve()
    if raw_abs == truth_abs or raw_abs in truth_abs.parents or truth_abs in raw_abs.parents:
        raise ValueError(
            f"raw_dir ({raw_dir}) and truth_dir ({truth_dir}) must be separate directories, "
            "neither inside the other: the pipeline reads raw_dir and must never see the truth"
        )
    rows: dict[str, int] = {}
    with atomic_path(raw_dir) as tmp_raw, atomic_path(truth_dir) as tmp_truth:
        tmp_raw.mkdir()
        tmp_truth.mkdir()
        entities = simulate_entities(config)
        for name, schema in RAW_TABLE_SCHEMAS.items():
            if name == "usage_events":
                continue
            _write_parquet(entities[name], schema, tmp_raw / f"{name}.parquet")
            rows[name] = len(entities[name])
        for name, schema in TRUTH_TABLE_SCHEMAS.items():
            frame = entities[f"truth_{name}"]
            _write_parquet(frame, schema, tmp_truth / f"{name}.parquet")
            rows[f"truth_{name}"] = len(frame)
        rows["usage_events"] = _write_usage_events(
            config, entities, tmp_raw / "usage_events", progress=progress
        )
        del entities
    logger.info("simulation written to %s (truth in %s): %s", raw_dir, truth_dir, rows)
    return rows


def _write_usage_events(
    config: SimulationConfig, entities: dict[str, pd.DataFrame], out_dir: Path, *, progress: bool
) -> int:
    out_dir.mkdir()
    schema = RAW_TABLE_SCHEMAS["usage_events"]
    n_chunks = -(-int(config.n_accounts) // int(config.events_chunk_accounts))
    chunks = iter_usage_event_chunks(config, entities)
    total = 0
    part = 0
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=False)
        task = bar.add_task("usage_events", total=n_chunks)
        bar.start()
    try:
        for frame in chunks:
            if len(frame):
                _write_parquet(frame, schema, out_dir / f"part-{part:05d}.parquet")
                part += 1
                total += len(frame)
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    if part == 0:  # no usage at all: still leave one readable part with the schema
        pq.write_table(schema.empty_table(), out_dir / "part-00000.parquet", compression="zstd")
    return total
