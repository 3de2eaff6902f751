"""`SimulationConfig`: everything that determines a simulated company, built from the config.

The defaults and the range rules of every setting live in `pipeline.core.config`
(`SimulateSection`, plus `BaseSection` for the seed, the as-of date and the renewal grace);
this module takes both from there, so no number is written twice. It adds only what config
cannot say: the as-of date lies far enough after the start for a history, and the seed fits the
generators. The stage builds it with `SimulationConfig.from_config`; tests and benchmarks may
build one by keyword, and what they leave out takes the config's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.core.config import BaseSection, Config, SimulateSection
from pipeline.core.errors import ConfigError

__all__ = ["DEFAULT_AS_OF_DATE", "SimulationConfig"]

_SIMULATE_DEFAULTS = SimulateSection()
_BASE_FIELDS = BaseSection.model_fields
#: Settings of `base` that the simulation reads (the rest of it is the section's fields).
_BASE_KEYS = ("seed", "as_of_date", "renewal_grace_days")
#: The as-of date of a SimulationConfig built without one (tests, benchmarks): the demo's as-of
#: in params.yaml. Config itself has no default: base.as_of_date is the data's extract date.
DEFAULT_AS_OF_DATE = date(2026, 11, 16)
#: A history shorter than this has too few renewal decisions to learn from.
_MIN_HISTORY_DAYS = 120


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a simulated company; the same config gives the same data.

    The defaults give a ~3-year history of ~1500 accounts (about 2-3M usage rows), small enough
    for fast tests; the demo in ``params.yaml`` asks for 4,000 accounts over five years. Dates
    may be given as ISO strings (as they come from ``params.yaml``); they are normalised to
    ``datetime.date``. An invalid value raises `ConfigError` naming every bad field.
    """

    n_accounts: int = _SIMULATE_DEFAULTS.n_accounts
    start_date: date = _SIMULATE_DEFAULTS.start_date
    as_of_date: date = DEFAULT_AS_OF_DATE
    seed: int = _BASE_FIELDS["seed"].default
    #: Accounts per ``usage_events`` chunk (one parquet part each): bounds peak memory.
    events_chunk_accounts: int = _SIMULATE_DEFAULTS.events_chunk_accounts
    #: A renewal is a next contract starting at most this many days after the end date.
    renewal_grace_days: int = _BASE_FIELDS["renewal_grace_days"].default
    #: Share of accounts in smb, mid_market, enterprise.
    segment_shares: tuple[float, float, float] = _SIMULATE_DEFAULTS.segment_shares
    #: Share of accounts with one planted trouble (spread evenly over the six kinds).
    trouble_share: float = _SIMULATE_DEFAULTS.trouble_share
    #: Multiplies the daily probability that a user is active: scales usage_events volume.
    usage_intensity: float = _SIMULATE_DEFAULTS.usage_intensity
    #: Added to every churn log-odds: a knob for more or less churn overall.
    churn_logit_shift: float = _SIMULATE_DEFAULTS.churn_logit_shift
    #: The shape of the company's exports (see `pipeline.stages.simulate.profiles`).
    profile: str = _SIMULATE_DEFAULTS.profile

    @classmethod
    def from_config(
        cls, config: Config, *, n_accounts: int | None = None, seed: int | None = None
    ) -> SimulationConfig:
        """The simulation params.yaml asks for: the simulate section with base's seed, as-of
        date and renewal grace (the labels use the same grace, so the two agree on what a
        renewal is). ``n_accounts`` and ``seed`` override the config (the CLI's options)."""
        settings = config.simulate.model_dump()
        if n_accounts is not None:
            settings["n_accounts"] = n_accounts
        return cls(
            **settings,
            seed=config.base.seed if seed is None else seed,
            as_of_date=config.base.as_of_date,
            renewal_grace_days=config.base.renewal_grace_days,
        )

    def __post_init__(self) -> None:
        problems = [p for p in map(self._normalise_date, ("start_date", "as_of_date")) if p]
        if not problems:
            problems += _rule_problems(SimulateSection, self._values(SimulateSection.model_fields))
            problems += _rule_problems(BaseSection, self._values(_BASE_KEYS))
        if not problems:
            object.__setattr__(self, "segment_shares", tuple(float(s) for s in self.segment_shares))
            if self.n_days < _MIN_HISTORY_DAYS:
                problems.append(
                    f"as_of_date ({self.as_of_date}) must be at least {_MIN_HISTORY_DAYS} days "
                    f"after start_date ({self.start_date})"
                )
            if self.seed >= 2**63:
                problems.append(f"seed must fit a 64-bit integer, got {self.seed}")
        if problems:
            raise ConfigError("Invalid simulation settings: " + "; ".join(problems))

    def _normalise_date(self, name: str) -> str | None:
        """Turn an ISO string or a datetime into a date, in place; the problem, if any."""
        value = getattr(self, name)
        if isinstance(value, datetime):
            object.__setattr__(self, name, value.date())
        elif isinstance(value, str):
            try:
                object.__setattr__(self, name, date.fromisoformat(value))
            except ValueError:
                return f"{name}: not an ISO date: {value!r}"
        elif not isinstance(value, date):
            return f"{name}: expected a date, got {value!r}"
        return None

    def _values(self, names: Any) -> dict[str, Any]:
        return {name: getattr(self, name) for name in names}

    @property
    def n_days(self) -> int:
        """Days from start_date (inclusive) to as_of_date (exclusive)."""
        return (self.as_of_date - self.start_date).days


def _rule_problems(section: type[BaseModel], values: dict[str, Any]) -> list[str]:
    """What the config's own rules (types, ranges) say about these values, one line each."""
    try:
        section.model_validate(values)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            got = f" (got {error['input']!r})" if where else ""
            problems.append(f"{where}: {message}{got}" if where else message)
        return problems
    return []
