"""What a feature family is made of: settings, SQL views (statements) and features.

A family (in the spirit of a Feast feature view) owns the optional input tables it reads, the
SQL views that aggregate them per account and snapshot, and its features, each declared once
with its metadata and its output expression over those views. `features.registry` lists the
families in order; `features.definitions` assembles their views into the feature table.

Point in time: a snapshot at date t is the instant t 00:00 UTC. A feature at t reads only rows
stamped strictly before t (`< snap_epoch`, or `< snap_day` for day-grain data). Windows are
half-open: the last w days are [t - w days, t). The label looks only after t.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal

from pipeline.core.labels import LabelRule

Direction = Literal["higher_is_riskier", "lower_is_riskier", "neither"]
Dtype = Literal["float", "int", "bool", "category"]
AttributeKind = Literal["number", "category"]
ATTRIBUTE_KINDS: tuple[AttributeKind, ...] = ("number", "category")


@dataclass(frozen=True)
class Statement:
    """One named SQL view (DuckDB dialect)."""

    name: str
    sql: str
    _: KW_ONLY
    materialize: bool = False
    # Independent of the snapshot dates: built once even when snapshots run in batches.
    static: bool = False
    # The final SELECT joins the view under this alias, so feature expressions can read
    # `alias.column`; None for views that only other views read.
    alias: str | None = None
    # The join condition for views that are not one row per account and snapshot.
    join_on: str | None = None

    def join_clause(self) -> str:
        """The LEFT JOIN that attaches this view to the snapshot rows (alias `s`)."""
        assert self.alias is not None, f"view {self.name} is not joined into the feature table"
        a = self.alias
        on = (
            self.join_on or f"{a}.account_id = s.account_id AND {a}.snapshot_date = s.snapshot_date"
        )
        return f"LEFT JOIN {self.name} AS {self.alias} ON {on}"


@dataclass(frozen=True, kw_only=True)
class DeclarationSettings:
    """The settings that decide which features exist, their names, descriptions and expressions.

    The defaults are the values the trained model's features were named after
    (`seats_activated_30d`, `in_first_90_days`, ...); params.yaml's `features` section sets them.
    """

    windows: tuple[int, ...]
    # An account's first days as a customer: the onboarding family's cutoff.
    onboarding_days: int = 90
    # Checkpoints for the share of seats activated within the first N days.
    activation_days: tuple[int, ...] = (30, 60, 90)
    # Stickiness: daily over monthly active users over this many days.
    stickiness_days: int = 30
    # "QBR held recently": a QBR within this many days.
    qbr_window_days: int = 90
    # NPS answers at or below this score are detractors.
    detractor_max_score: int = 6
    # Modules that count as advanced (depth), as they occur in the data; the play names them.
    advanced_modules: tuple[str, ...] = ()
    # Event types counted per window (usage_events.event_type, as the data spells them).
    event_types: tuple[str, ...] = ()
    # Whether usage_events carries a `value`: the value features exist only then.
    usage_value: bool = False
    # Account attributes used as features: (name, "number" | "category"), sorted by name.
    attributes: tuple[tuple[str, AttributeKind], ...] = ()
    # Customer effort score: True when a higher answer means less effort.
    ces_higher_is_easier: bool = True

    def __post_init__(self) -> None:
        kinds = {name: kind for name, kind in self.attributes if kind not in ATTRIBUTE_KINDS}
        if kinds:
            raise ValueError(f"attributes {kinds}: the kind must be one of {ATTRIBUTE_KINDS}")
        names = [name for name, _ in self.attributes]
        if len(names) != len(set(names)):
            raise ValueError(f"attributes {names} name an attribute twice")
        if len(self.event_types) != len(set(self.event_types)):
            raise ValueError(f"event_types {list(self.event_types)} name a type twice")

    @property
    def max_window(self) -> int:
        return max(self.windows)

    @property
    def lookback_days(self) -> int:
        """The history every snapshot reads: the longest window and the one before it (trends)."""
        return 2 * self.max_window


@dataclass(frozen=True, kw_only=True)
class FeatureSettings(DeclarationSettings):
    """All knobs of the feature definitions, unpacked from params.yaml at the edge."""

    priority_weights: dict[str, float]
    label_horizon_days: int
    renewal_grace_days: int
    # The data's as-of date (day number): labels not decided by then are censored.
    as_of_day: int
    # The earliest snapshot of this run (day number), when known: the windowed usage views
    # then read only the days a snapshot can see. None: every day (same result, more work).
    first_snapshot_day: int | None = None
    # Incremental usage grain: `user_day` holds the saved grain (`user_day_state`, days before
    # this day number) and aggregates only the events from this day on. None: all events.
    grain_state_before_day: int | None = None

    @property
    def history_from_day(self) -> int | None:
        """The first day any windowed usage view of this run reads (None: all of them)."""
        if self.first_snapshot_day is None:
            return None
        return self.first_snapshot_day - self.lookback_days

    @property
    def label_rule(self) -> LabelRule:
        """The one rule for when a renewal's outcome is decided (shared with purge, backtest)."""
        return LabelRule(horizon_days=self.label_horizon_days, grace_days=self.renewal_grace_days)


@dataclass(frozen=True, kw_only=True)
class Feature:
    """One model feature: what a person needs to read it, and its SQL.

    `direction` is the risk direction: for `higher_is_riskier`, a larger value means more churn
    risk. `monotone` marks the directions that are business facts (more SLA breaches never
    means less risk), which training may enforce as monotone constraints. `actionable` is False
    for what a CSM cannot change (segment, tenure); lists show those drivers apart. `tables`
    lists the optional input tables the feature needs (empty: always available). `sql` is the
    output expression over the snapshot row `s` and the family views' aliases.
    """

    name: str
    family: str
    description: str
    unit: str
    dtype: Dtype
    direction: Direction
    actionable: bool
    play: str
    monotone: bool = False
    tables: tuple[str, ...] = ()
    window_days: int | None = None
    # What an empty value means for this feature, in a CSM's words ("no active users in the
    # last 30 days"); a ratio or a mean is empty when there was nothing to count.
    when_missing: str = "none recorded"
    sql: str = field(repr=False)

    def describe(self, value: object) -> str:
        """The feature and a value in plain words, e.g. '4 SLA breaches in the last 90 days'."""
        return f"{self.description}: {_format(value, self.unit, self.when_missing)}"


def _format(value: object, unit: str, when_missing: str = "none recorded") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return when_missing
    if unit == "share" and isinstance(value, (int, float)):
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:,.1f} {unit}".strip()
    return f"{value} {unit}".strip()


def _no_features(settings: DeclarationSettings) -> list[Feature]:
    return []


def _no_window_features(window: int, settings: DeclarationSettings) -> list[Feature]:
    return []


@dataclass(frozen=True, kw_only=True)
class FeatureFamily:
    """A feature group: its optional input tables, its views and its features.

    `per_window(w, settings)` declares the windowed features once, for one window; `fixed`
    declares the rest. `views(settings, tables)` builds the family's SQL views, seeing only the
    declared `tables` that are present, so a view cannot come to depend on a table the family
    does not declare (and that `available` therefore would not check).
    """

    name: str
    title: str
    tables: tuple[str, ...] = ()
    views: Callable[[FeatureSettings, frozenset[str]], list[Statement]]
    per_window: Callable[[int, DeclarationSettings], list[Feature]] = _no_window_features
    fixed: Callable[[DeclarationSettings], list[Feature]] = _no_features

    def features(self, settings: DeclarationSettings) -> list[Feature]:
        """Every feature, windowed ones window by window, in declaration order."""
        declared = []
        for w in settings.windows:
            windowed = self.per_window(w, settings)
            assert all(f.window_days == w for f in windowed), f"{self.name}: window_days != {w}"
            declared += windowed
        declared += self.fixed(settings)
        for f in declared:
            assert f.family == self.name, f"{f.name} is declared in {self.name}, not {f.family}"
            undeclared = set(f.tables) - set(self.tables)
            assert not undeclared, f"{f.name} needs {undeclared}, not among {self.name}'s tables"
        return declared

    def statements(self, settings: FeatureSettings, tables_present: set[str]) -> list[Statement]:
        """The family's views for the optional tables present."""
        return self.views(settings, frozenset(tables_present) & frozenset(self.tables))
