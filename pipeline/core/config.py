"""Typed configuration: `params.yaml` parsed once, at the edge, into frozen sections.

Every setting of every stage is declared here, with its type, its allowed range and its
default: this file is the one place defaults live. Parsing fails before any work starts on an
unknown key (with the nearest known key: `train.lightgbm.learnign_rate` -> "did you mean
learning_rate?"), a value of the wrong type or a value out of range, naming the key path.
Stages receive the parsed `Config` (or the sections they need) and never see the raw dict;
nothing mutates it (`Config.with_as_of` returns a new one).

`params.yaml` keeps one section per stage plus the shared `base`, and `dvc.yaml` names the keys
each stage reads, so DVC reruns exactly what a change touches.
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator
from pydantic import model_validator as _model_validator
from pydantic.types import Strict

from pipeline.core.errors import ConfigError
from pipeline.core.labels import LabelRule

DEFAULT_PARAMS = Path("params.yaml")

# YAML gives native types, so scalars are strict: "7" is not a number of leaves, 1 is not True.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # strict floats still accept whole numbers
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
Share = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
IsoDate = Annotated[date, Field(strict=False)]  # "2026-11-16" in YAML, quoted or not


class Section(BaseModel):
    """A params section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- base --------------------------------------------------------------------------------------


class BaseSection(Section):
    """Settings every stage shares."""

    seed: NonNegativeInt = 42
    as_of_date: IsoDate
    renewal_grace_days: NonNegativeInt = 30

    @property
    def as_of_timestamp(self) -> pd.Timestamp:
        """The as-of date as a UTC instant (midnight): the data's exclusive end."""
        return pd.Timestamp(self.as_of_date).tz_localize("UTC")


# --- simulate ----------------------------------------------------------------------------------


class SimulateSection(Section):
    """The demo company (only generated while ingest.source is the demo directory)."""

    n_accounts: PositiveInt = 1500
    start_date: IsoDate = date(2023, 11, 1)
    events_chunk_accounts: PositiveInt = 1000
    segment_shares: tuple[Share, Share, Share] = (0.68, 0.24, 0.08)
    trouble_share: Share = 0.42
    usage_intensity: Annotated[float, Strict(), Field(gt=0)] = 1.0
    churn_logit_shift: Float = 0.0
    # The shape of the company's exports: demo (every table, the contract's own names), or a
    # company whose data does not look like the demo (see pipeline/stages/simulate/profiles.py
    # for each profile's raw shape and the ingest/features params it needs).
    profile: Literal["demo", "plg_monthly", "minimal", "other_vocabulary"] = "demo"

    @_model_validator(mode="after")
    def _shares_sum_to_one(self) -> SimulateSection:
        if abs(sum(self.segment_shares) - 1.0) > 1e-6:
            raise ValueError(f"segment_shares must sum to 1, not {sum(self.segment_shares)}")
        return self


# --- ingest ------------------------------------------------------------------------------------


class ColumnBounds(Section):
    """Plausible range of a numeric column (overrides the contract's bound where set)."""

    min: Float | None = None
    max: Float | None = None


class SegmentTiers(Section):
    """Segments from contract size, for exports without a segment column: an account whose
    first contract has at least `enterprise` (ARR or seats, as `by` says) is enterprise, at
    least `mid_market` is mid_market, else smb."""

    by: Literal["arr", "seats"] = "arr"
    mid_market: Annotated[float, Strict(), Field(ge=0)]
    enterprise: Annotated[float, Strict(), Field(ge=0)]

    @_model_validator(mode="after")
    def _ordered(self) -> SegmentTiers:
        if self.enterprise < self.mid_market:
            raise ValueError(f"enterprise ({self.enterprise}) is below mid_market")
        return self


class SlaTargets(Section):
    """Contracted SLA targets for one ticket priority, in hours."""

    first_response_hours: Annotated[float, Strict(), Field(gt=0)]
    resolution_hours: Annotated[float, Strict(), Field(gt=0)]


class IngestSection(Section):
    """Where raw data lives, how its names and values map onto the data contract, and how much
    bad input a run may quarantine before it stops."""

    source: Str = "data/raw/demo"
    schema_: Str | None = Field(default=None, alias="schema")
    table_map: dict[Str, Str] = Field(default_factory=dict)
    column_map: dict[Str, dict[Str, Str]] = Field(default_factory=dict)
    # {table: {column: {their_value: contract_value}}}, applied before validation.
    value_map: dict[Str, dict[Str, dict[Str, Str]]] = Field(default_factory=dict)
    # A table whose quarantined share is above this stops the run (raise it knowingly).
    max_quarantine_share: Share = 0.01
    # Text encoding of CSV files (e.g. "utf-8", "cp1252", "latin-1").
    encoding: Str = "utf-8"
    # A text field longer than this is quarantined (a broken quote merges rows into one field).
    max_text_chars: PositiveInt = 2000
    # {table: {column: {min, max}}}: plausible ranges that override the contract's.
    bounds: dict[Str, dict[Str, ColumnBounds]] = Field(default_factory=dict)
    # Derive accounts.segment from the first contract's ARR or seats when the export has none.
    segment_tiers: SegmentTiers | None = None
    # SLA targets by ticket priority, for tickets whose export has none: {urgent: {...}}.
    sla_policy: dict[Str, SlaTargets] = Field(default_factory=dict)
    # SLA targets by plan (the plan of the account's contract when the ticket was opened), then
    # priority: {Enterprise: {urgent: {...}}}; sla_policy covers plans not named here.
    sla_policy_by_plan: dict[Str, dict[Str, SlaTargets]] = Field(default_factory=dict)
    # Subscriptions billed every N months without term rows (open-ended monthly billing): each
    # contract row is split into N-month terms from its start to its end_date, or, when that is
    # empty, to the term that covers the as-of date. null = every row needs an end_date.
    billing_period_months: PositiveInt | None = None

    @field_validator("sla_policy")
    @classmethod
    def _known_priorities(cls, value: dict) -> dict:
        from pipeline.data.contract import TICKET_PRIORITIES

        unknown = sorted(set(value) - set(TICKET_PRIORITIES))
        if unknown:
            raise ValueError(
                f"unknown priorities {unknown}; the contract's are {TICKET_PRIORITIES}"
            )
        return value

    @field_validator("sla_policy_by_plan")
    @classmethod
    def _known_plan_priorities(cls, value: dict) -> dict:
        from pipeline.data.contract import TICKET_PRIORITIES

        for plan, policy in value.items():
            unknown = sorted(set(policy) - set(TICKET_PRIORITIES))
            if unknown:
                raise ValueError(
                    f"plan {plan!r}: unknown priorities {unknown}; the contract's are "
                    f"{TICKET_PRIORITIES}"
                )
        return value

    naive_timezone: Str | None = None
    batch_rows: PositiveInt = 1_000_000

    @field_validator("value_map", "column_map", "bounds", "table_map")
    @classmethod
    def _contract_tables(cls, value: dict) -> dict:
        from pipeline.data.contract import TABLES  # the contract names the tables

        unknown = sorted(set(value) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown tables {unknown}; the contract's are {sorted(TABLES)}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError as err:
            raise ValueError(f"unknown text encoding {value!r}") from err
        return value

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("naive_timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                pd.Timestamp("2020-01-01").tz_localize(value)
            except Exception as err:
                raise ValueError(f"unknown time zone {value!r}") from err
        return value

    @property
    def schema_name(self) -> str | None:
        """The database schema (SQL sources only)."""
        return self.schema_


# --- features ----------------------------------------------------------------------------------


class DuckDBOptions(Section):
    threads: PositiveInt | None = None
    memory_limit: Str | None = None
    # Where DuckDB spills when a query outgrows memory (None: DuckDB's default, "": no spill).
    temp_directory: Str | None = None


class SparkOptions(Section):
    master: Str = "local[2]"
    shuffle_partitions: PositiveInt = 8
    driver_memory: Str = "4g"


_CADENCE = re.compile(r"^(monthly|weekly|[1-9][0-9]*d)$")


class FeaturesSection(Section):
    """The feature definitions' knobs and the engine that runs them."""

    engine: Literal["duckdb", "spark"] = "duckdb"
    windows: tuple[PositiveInt, ...] = (30, 90)
    snapshot_cadence: Str = "monthly"
    snapshot_start: IsoDate | None = None
    snapshot_batch_size: PositiveInt = 12
    label_horizon_days: PositiveInt = 365
    # None: derived from the data (the least-adopted third of the modules); [] for none.
    advanced_modules: tuple[Str, ...] | None = None
    priority_weights: dict[Str, Annotated[float, Strict(), Field(ge=0)]] = Field(
        default_factory=lambda: {"low": 1.0, "normal": 2.0, "high": 3.0, "urgent": 5.0}
    )
    onboarding_days: PositiveInt = 90
    activation_days: tuple[PositiveInt, ...] = (30, 60, 90)
    stickiness_days: PositiveInt = 30
    qbr_window_days: PositiveInt = 90
    detractor_max_score: NonNegativeInt = 6
    # Event types counted per window: null = the `top_event_types` most frequent types in the
    # data (before as-of); a list pins them; [] for none.
    event_types: tuple[Str, ...] | None = None
    top_event_types: NonNegativeInt = 5
    # Account attributes used as features, {name: number | category}: null = every attribute
    # in account_attributes (numbers where every value parses as one); {} for none.
    attributes: dict[Str, Literal["number", "category"]] | None = None
    # Customer effort score: true when a higher answer means less effort (CES 2.0, "the
    # company made it easy to..."), false for scales where higher means more effort.
    ces_higher_is_easier: StrictBool = True
    duckdb: DuckDBOptions = Field(default_factory=DuckDBOptions)
    spark: SparkOptions = Field(default_factory=SparkOptions)

    @field_validator("windows", "activation_days")
    @classmethod
    def _sorted_unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("needs at least one number of days")
        return tuple(sorted(set(value)))

    @field_validator("snapshot_cadence")
    @classmethod
    def _cadence(cls, value: str) -> str:
        if not _CADENCE.match(value):
            raise ValueError(f"must be monthly, weekly or Nd (e.g. 14d), not {value!r}")
        return value

    @property
    def engine_options(self) -> dict[str, Any]:
        """Options of the selected engine, as keyword arguments."""
        return getattr(self, self.engine).model_dump()


# --- train -------------------------------------------------------------------------------------


class LightGBMParams(Section):
    """LightGBM parameters we let a user set (None: LightGBM's own default).

    Only parameters that change the model are here; the ones that keep training deterministic
    (seed, threads, deterministic) are set by the train stage itself.
    """

    learning_rate: Annotated[float, Strict(), Field(gt=0)] | None = None
    num_leaves: Annotated[int, Strict(), Field(ge=2)] | None = None
    max_depth: Int | None = None
    min_data_in_leaf: NonNegativeInt | None = None
    min_sum_hessian_in_leaf: Annotated[float, Strict(), Field(ge=0)] | None = None
    feature_fraction: Annotated[float, Strict(), Field(gt=0, le=1)] | None = None
    bagging_fraction: Annotated[float, Strict(), Field(gt=0, le=1)] | None = None
    bagging_freq: NonNegativeInt | None = None
    lambda_l1: Annotated[float, Strict(), Field(ge=0)] | None = None
    lambda_l2: Annotated[float, Strict(), Field(ge=0)] | None = None
    min_gain_to_split: Annotated[float, Strict(), Field(ge=0)] | None = None
    max_bin: Annotated[int, Strict(), Field(ge=2)] | None = None
    path_smooth: Annotated[float, Strict(), Field(ge=0)] | None = None
    extra_trees: Bool | None = None
    linear_tree: Bool | None = None
    scale_pos_weight: Annotated[float, Strict(), Field(gt=0)] | None = None
    is_unbalance: Bool | None = None
    cat_smooth: Annotated[float, Strict(), Field(ge=0)] | None = None
    cat_l2: Annotated[float, Strict(), Field(ge=0)] | None = None
    max_cat_to_onehot: PositiveInt | None = None
    min_data_per_group: PositiveInt | None = None

    def as_params(self) -> dict[str, Any]:
        """The parameters that were set, in declaration order (LightGBM's defaults for the rest)."""
        return self.model_dump(exclude_none=True)


CandidateName = Literal["lightgbm", "logistic", "blend"]


class SelectionSettings(Section):
    """Model selection: which learners compete, on which metric, over how many folds.

    Each candidate's hyperparameters are searched (Optuna's TPE sampler, seeded) on rolling-
    origin folds that end where the test period starts; the candidate with the best mean
    fold score is refitted and calibrated. `metric`: pr_auc (ranking the few churners to the
    top of a list: the use), roc_auc, or log_loss (probabilities, after a Platt fit).
    """

    metric: Literal["pr_auc", "roc_auc", "log_loss"] = "pr_auc"
    candidates: tuple[CandidateName, ...] = ("lightgbm", "logistic", "blend")
    folds: PositiveInt = 3
    trials: PositiveInt = 10
    blend_weights: tuple[Annotated[float, Strict(), Field(gt=0, lt=1)], ...] = (0.25, 0.5, 0.75)
    bootstrap_resamples: PositiveInt = 200
    confidence: Annotated[float, Strict(), Field(gt=0, lt=1)] = 0.9

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one candidate")
        if len(set(value)) != len(value):
            raise ValueError(f"a candidate is named twice: {list(value)}")
        if "blend" in value and not {"lightgbm", "logistic"} <= set(value):
            raise ValueError("blend mixes lightgbm and logistic: name both, or drop blend")
        return value


class TrainSection(Section):
    """The out-of-time split, model selection, LightGBM and calibration."""

    test_months: PositiveInt = 6
    valid_months: PositiveInt = 3
    # Outcomes decided this many days before the next part starts are left out of the earlier
    # part too: neighbouring weeks' usage and tickets are correlated across the boundary.
    embargo_days: NonNegativeInt = 14
    calibration: Literal["platt", "isotonic"] = "platt"
    monotone_constraints: Bool = True
    num_boost_round: PositiveInt = 1000
    early_stopping_rounds: PositiveInt = 50
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    lightgbm: LightGBMParams = Field(default_factory=LightGBMParams)


# --- evaluate, backtest, score -----------------------------------------------------------------


class EvaluateSection(Section):
    """Test-period metrics; the capacity is shared by the backtest, the lists and the report."""

    capacity_per_csm: PositiveInt = 5


class BacktestSection(Section):
    """The weekly replay; lists are ranked as the score stage ranks them (score.rank_by)."""

    lead_days: NonNegativeInt = 60


class RiskBands(Section):
    high: Share = 0.35
    medium: Share = 0.15

    @_model_validator(mode="after")
    def _ordered(self) -> RiskBands:
        if self.medium > self.high:
            raise ValueError(f"medium ({self.medium}) is above high ({self.high})")
        return self


class DriftSettings(Section):
    psi_warn: Annotated[float, Strict(), Field(gt=0)] = 0.25
    top_features: PositiveInt = 10
    bins: Annotated[int, Strict(), Field(ge=2)] = 10


RankBy = Literal["expected_arr_at_risk", "probability"]


class MarkSettings(Section):
    """How marks (`churn mark`) act on the lists."""

    # An addressed account stays off the action list this many weeks after the mark...
    addressed_weeks: PositiveInt = 4
    # ...unless its churn probability rose more than this (absolute) above the mark's: back.
    back_margin: Share = 0.10


class UrgencySettings(Section):
    """How much a renewal's nearness raises an account on the lists (score.urgency).

    priority = rank_by x weight(days to renewal): weight 1 for a renewal within
    `horizon_days` (or already past), then decaying smoothly towards `floor`, halving its
    distance to the floor every `half_life_days`. Bounded in [floor, 1], never 0, and never
    rising with a later renewal; `enabled: false` (or floor 1) ranks by rank_by alone.
    """

    enabled: Bool = True
    horizon_days: NonNegativeInt = 90
    half_life_days: PositiveInt = 90
    floor: Annotated[float, Strict(), Field(gt=0.0, le=1.0)] = 0.5


class ScoreSection(Section):
    """The weekly lists: ranking, bands, reasons, flags, trend, drift and freshness warnings."""

    rank_by: RankBy = "expected_arr_at_risk"
    # Renewal urgency in the rank: lists rank by priority = rank_by x urgency weight.
    urgency: UrgencySettings = Field(default_factory=UrgencySettings)
    # The lowest risk band on a CSM's action list: accounts below it need no action this week.
    action_floor: Literal["high", "medium", "low"] = "medium"
    # At most this many accounts below the floor per CSM on a short "watch" section (risen
    # since last week, or renewing soon); 0 switches the section off.
    watch_per_csm: NonNegativeInt = 3
    risk_bands: RiskBands = Field(default_factory=RiskBands)
    top_reasons: PositiveInt = 3
    renewal_window_days: NonNegativeInt = 90
    change_threshold: Share = 0.05
    trend_weeks: PositiveInt = 8
    drift: DriftSettings = Field(default_factory=DriftSettings)
    stale_after_days: dict[Str, NonNegativeInt] = Field(default_factory=dict)
    marks: MarkSettings = Field(default_factory=MarkSettings)

    @field_validator("stale_after_days")
    @classmethod
    def _known_tables(cls, value: dict[str, int]) -> dict[str, int]:
        from pipeline.data.contract import ROW_STAMPS, TABLES  # the contract names the tables

        known = sorted(t for t in ROW_STAMPS if t in TABLES)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown tables {unknown}; known: {known}")
        return dict(sorted(value.items()))


# --- mlflow, deliver, report -------------------------------------------------------------------


class MlflowSection(Section):
    """Tracking (null URI: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db) and the registry."""

    tracking_uri: Str | None = None
    experiment: Str = "churn"
    registered_model: Str = "churn-model"
    # The champion moves only when the new model's gain on this metric (roc_auc, pr_auc or
    # log_loss), on the same test rows, has a bootstrap interval over accounts above zero.
    champion_metric: Literal["roc_auc", "pr_auc", "log_loss"] = "pr_auc"
    bootstrap_resamples: PositiveInt = 400
    promotion_confidence: Annotated[float, Strict(), Field(gt=0.5, lt=1)] = 0.9


class WebhookSettings(Section):
    """The webhook (Slack-compatible) channel: `churn deliver --channel webhook`.

    The URL is a secret (whoever holds it can post to the channel), so only the name of the
    environment variable that holds it sits here.
    """

    url_env: Str = "CHURN_WEBHOOK_URL"
    # Accounts per CSM message (the top of their list); Slack allows 50 blocks per message.
    top_accounts: Annotated[int, Strict(), Field(ge=1, le=45)] = 5
    timeout_seconds: Annotated[float, Strict(), Field(gt=0)] = 10.0
    # Tries per message when the server answers 429 or 5xx or the connection fails.
    max_attempts: Annotated[int, Strict(), Field(ge=1, le=10)] = 4
    # Wait before the second try, doubled before each further one (unless Retry-After says).
    backoff_seconds: Annotated[float, Strict(), Field(ge=0)] = 1.0
    # The longest Retry-After honoured; a server asking for longer waits this long.
    max_retry_after_seconds: Annotated[float, Strict(), Field(ge=0)] = 30.0


class DeliverSection(Section):
    """Sending the lists. Secrets never sit here: the *_env keys name environment variables."""

    host: Str | None = None
    port: Annotated[int, Strict(), Field(ge=1, le=65535)] | None = None
    security: Literal["starttls", "ssl", "none"] = "starttls"
    timeout_seconds: Annotated[float, Strict(), Field(gt=0)] = 30.0
    username_env: Str | None = None
    password_env: Str | None = None
    from_address: Str | None = None
    from_name: Str | None = None
    reply_to: Str | None = None
    empty_list: Literal["note", "skip"] = "note"
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)

    @property
    def smtp_port(self) -> int:
        """The port, or the usual one for the security mode."""
        if self.port is not None:
            return self.port
        return 465 if self.security == "ssl" else 587


class ReportSection(Section):
    """How much the leadership page shows."""

    top_features: PositiveInt = 15
    dependence_plots: PositiveInt = 4
    largest_accounts: PositiveInt = 10
    # The symbol written before every amount ("$11,819", "€1.2M"): the data holds no currency.
    currency: Str = "$"


# --- the whole file ----------------------------------------------------------------------------


class Config(Section):
    """All of params.yaml. Sections left out take their defaults; `base` is required."""

    base: BaseSection
    simulate: SimulateSection = Field(default_factory=SimulateSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    train: TrainSection = Field(default_factory=TrainSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    backtest: BacktestSection = Field(default_factory=BacktestSection)
    score: ScoreSection = Field(default_factory=ScoreSection)
    mlflow: MlflowSection = Field(default_factory=MlflowSection)
    deliver: DeliverSection = Field(default_factory=DeliverSection)
    report: ReportSection = Field(default_factory=ReportSection)

    @property
    def label_rule(self) -> LabelRule:
        """The label horizon and renewal grace as the one rule labels, purge and backtest use."""
        return LabelRule(
            horizon_days=self.features.label_horizon_days,
            grace_days=self.base.renewal_grace_days,
        )

    def with_as_of(self, as_of: date) -> Config:
        """The same settings at another as-of date (the weekly job); self is unchanged."""
        base = self.base.model_copy(update={"as_of_date": as_of})
        return self.model_copy(update={"base": base})


# --- parsing -----------------------------------------------------------------------------------


def _model_at(loc: tuple, model: type[BaseModel] = Config) -> type[BaseModel] | None:
    """The section model that holds the key at `loc` (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(error: dict) -> str:
    loc = tuple(error["loc"])
    path = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        section = _model_at(loc)
        names = [f.alias or n for n, f in (section.model_fields.items() if section else ())]
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(names)}"
        return f"{path}: unknown key{hint}"
    if error["type"] == "missing":
        return f"{path}: required setting is missing"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{path}: {message}{shown}"


def parse_config(raw: Any, *, origin: str = "params.yaml") -> Config:
    """A typed Config from the parsed YAML, or a ConfigError naming every bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin} must hold a mapping of sections")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e) for e in err.errors()]
        raise ConfigError(f"{origin}: " + "; ".join(problems)) from None


def load_config(path: Path = DEFAULT_PARAMS) -> Config:
    """Read and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found (run from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    return parse_config(raw, origin=str(path))


def parse_day(text: str, *, option: str = "--as-of") -> date:
    """A date option (YYYY-MM-DD), or a ConfigError that names the option."""
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise ConfigError(f"{option} {text!r} is not a date (YYYY-MM-DD)") from err
