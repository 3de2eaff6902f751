"""The B2B data contract: which tables the pipeline reads, their columns, types and rules.

Everything that checks, normalises or documents input data is driven from the specs in this
module, so the contract is written down exactly once. `docs/data-contract.md` explains it for
people; `pipeline.data.validate` enforces it (with pandera for the value checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow

from pipeline.core.errors import DataContractError  # noqa: F401 (re-exported)

ColumnKind = Literal["id", "text", "category", "timestamp", "date", "float", "int", "bool"]


@dataclass(frozen=True)
class FieldPattern:
    """The shape a text value must have; `code` names the failure in the validation report.

    With `blank=True` a value that does not match is blanked and the row kept (counted under
    `blanked_by_reason`), for a field whose loss costs less than the row's: a CSM with a
    mistyped address must still own their accounts.
    """

    regex: str
    code: str
    description: str
    blank: bool = False


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract table.

    `required` says whether the column must be present in the input; an optional column that
    is missing is added with `default`. `nullable` says whether a present column may hold
    missing values in a row.

    `min_value`/`max_value` are rules of meaning (ARR is never negative, NPS is 0-10): a value
    outside them is wrong. `plausible_max` is a guess at the scale of real data (no contract is
    worth 1e15): a value above it is far more likely a unit or export error than a customer,
    and would dominate every ranking, so it is quarantined as well; `ingest.bounds` overrides
    it per column for a business whose numbers really are that large.
    """

    name: str
    kind: ColumnKind
    description: str
    required: bool = True
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    default: object = None
    # Columns bounded by the data's as-of date; a scheduled date (contract end) is not.
    before_as_of: bool = True
    # Columns that must not precede the account's created_at (the account did not exist yet).
    after_account_created: bool = False
    # Scheduled dates (before_as_of=False) may lie at most this many years after as-of:
    # 9999-12-31 is a placeholder for "open-ended", not a renewal date to rank by.
    max_years_after_as_of: int | None = None
    plausible_max: float | None = None
    # A text value must match this; one that does not is blanked (or quarantined).
    pattern: FieldPattern | None = None


@dataclass(frozen=True)
class ForeignKey:
    """Rows whose `columns` have no match in `ref_table.ref_columns` are orphans.

    With `unknown_code` set the reference is soft: such a row is kept and counted under that
    code (`unknown_references` in the report) instead of quarantined, for a reference whose
    loss must not cost the row (an account whose CSM is missing is still a customer).
    """

    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    unknown_code: str | None = None


@dataclass(frozen=True)
class RowRule:
    """A rule across columns; `valid` returns a boolean mask of rows that satisfy it."""

    code: str
    description: str
    valid: Callable[[pd.DataFrame], pd.Series]


@dataclass(frozen=True)
class TableSpec:
    """One table of the contract."""

    name: str
    description: str
    columns: tuple[ColumnSpec, ...]
    required: bool = False
    primary_key: tuple[str, ...] | None = None
    foreign_keys: tuple[ForeignKey, ...] = ()
    row_rules: tuple[RowRule, ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        for spec in self.columns:
            if spec.name == name:
                return spec
        raise KeyError(f"table '{self.name}' has no column '{name}' in the contract")


def _later_or_missing(later: str, earlier: str) -> Callable[[pd.DataFrame], pd.Series]:
    def valid(df: pd.DataFrame) -> pd.Series:
        return (df[later].isna() | df[earlier].isna() | (df[later] >= df[earlier])).astype(bool)

    return valid


def _strictly_later(later: str, earlier: str) -> Callable[[pd.DataFrame], pd.Series]:
    # A missing value is reported by its own column's check, not again by the rule.
    def valid(df: pd.DataFrame) -> pd.Series:
        return (df[later].isna() | df[earlier].isna() | (df[later] > df[earlier])).astype(bool)

    return valid


# A source may add this column to the frames it yields: a reason code (e.g. "ragged_row") for
# a record it could not parse. Validation quarantines such rows with that reason, so a broken
# record is counted, never silently dropped or merged into its neighbour.
PARSE_ERROR = "_parse_error"

SEGMENTS = ("smb", "mid_market", "enterprise")
USER_ROLES = ("admin", "member", "viewer")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
TOUCHPOINT_KINDS = ("call", "meeting", "qbr", "exec_sponsor")
SURVEYS = ("csat", "ces")

#: No business event of a customer predates this; an earlier date is a placeholder or an error.
EARLIEST_DATE = pd.Timestamp("1970-01-01")
# One address: no spaces, list separators or brackets (which would turn one field into several
# recipients or headers), a domain with a dot.
EMAIL = FieldPattern(
    regex=r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\.]+(?:\.[^@\s<>,;:\"()\[\]\\.]+)+$",
    code="bad_email_blanked",
    description="one email address (user@domain); else blanked and the CSM kept",
    blank=True,
)

_ACCOUNT_FK = ForeignKey(("account_id",), "accounts", ("account_id",))
_USER_FK = ForeignKey(("user_id", "account_id"), "users", ("user_id", "account_id"))

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            name="csms",
            description="Customer success managers, who receive the weekly lists.",
            columns=(
                ColumnSpec("csm_id", "id", "Unique id of the CSM."),
                ColumnSpec("name", "text", "Display name."),
                ColumnSpec(
                    "email",
                    "text",
                    "Where the weekly list is delivered; empty if unknown (the list is not sent).",
                    nullable=True,
                    pattern=EMAIL,
                ),
            ),
            primary_key=("csm_id",),
        ),
        TableSpec(
            name="accounts",
            description="Customer accounts (one company that buys the product).",
            required=True,
            columns=(
                ColumnSpec("account_id", "id", "Unique id of the account."),
                ColumnSpec(
                    "account_name",
                    "text",
                    "Company name shown to CSMs; many exports lack it (the lists then show the "
                    "account id).",
                    required=False,
                    nullable=True,
                ),
                ColumnSpec("segment", "category", "Customer segment.", allowed=SEGMENTS),
                ColumnSpec("industry", "text", "Industry.", required=False, nullable=True),
                ColumnSpec("region", "text", "Sales region.", required=False, nullable=True),
                ColumnSpec(
                    "created_at",
                    "timestamp",
                    "When the account became a customer. Many exports lack it: when the column "
                    "or a value is missing, the account's first contract start is used (counted "
                    "under derived_values in the report).",
                    required=False,
                    nullable=True,
                ),
                ColumnSpec(
                    "csm_id",
                    "id",
                    "The CSM who owns the account (absent: every account is unassigned).",
                    required=False,
                    nullable=True,
                ),
            ),
            primary_key=("account_id",),
            foreign_keys=(
                ForeignKey(("csm_id",), "csms", ("csm_id",), unknown_code="unknown_csm"),
            ),
        ),
        TableSpec(
            name="contracts",
            description=(
                "Contract terms. A following contract of the same account that starts within "
                "the renewal grace period is a renewal; a term that ends without one is churn."
            ),
            required=True,
            columns=(
                ColumnSpec("contract_id", "id", "Unique id of the contract term."),
                ColumnSpec("account_id", "id", "The account."),
                ColumnSpec(
                    "start_date", "date", "First day of the term.", after_account_created=True
                ),
                ColumnSpec(
                    "end_date",
                    "date",
                    "Scheduled end of the term (exclusive): the renewal date. Empty for an "
                    "open-ended subscription, which then needs ingest.billing_period_months "
                    "(the row is split into billing terms; else it is quarantined).",
                    nullable=True,
                    before_as_of=False,
                    max_years_after_as_of=50,
                ),
                ColumnSpec(
                    "arr",
                    "float",
                    "Annual recurring revenue of the term.",
                    min_value=0,
                    plausible_max=1e10,
                ),
                ColumnSpec("seats", "int", "Purchased seats.", min_value=0, plausible_max=1e7),
                ColumnSpec("plan", "text", "Plan or edition.", required=False, nullable=True),
            ),
            primary_key=("contract_id",),
            foreign_keys=(_ACCOUNT_FK,),
            row_rules=(
                RowRule(
                    "end_before_start",
                    "end_date must be after start_date",
                    _strictly_later("end_date", "start_date"),
                ),
            ),
        ),
        TableSpec(
            name="users",
            description="People at the customer who have a login.",
            columns=(
                ColumnSpec("user_id", "id", "Unique id of the user."),
                ColumnSpec("account_id", "id", "The account the user belongs to."),
                ColumnSpec(
                    "created_at",
                    "timestamp",
                    "When the login was created.",
                    after_account_created=True,
                ),
                ColumnSpec(
                    "role", "category", "Role in the product.", allowed=USER_ROLES, nullable=True
                ),
                ColumnSpec(
                    "deactivated_at",
                    "timestamp",
                    "When the login was removed; empty while active.",
                    required=False,
                    nullable=True,
                ),
            ),
            primary_key=("user_id",),
            foreign_keys=(_ACCOUNT_FK,),
            row_rules=(
                RowRule(
                    "deactivated_before_created",
                    "deactivated_at must not precede created_at",
                    _later_or_missing("deactivated_at", "created_at"),
                ),
            ),
        ),
        TableSpec(
            name="usage_events",
            description=(
                "Product usage. One row per event, or pre-aggregated (e.g. per user, day and "
                "module) with the number of events in `count`."
            ),
            required=True,
            columns=(
                ColumnSpec("account_id", "id", "The account."),
                ColumnSpec(
                    "user_id",
                    "id",
                    "The user; empty for system or account-level events (an event log without "
                    "user ids still gives volume, module and recency features).",
                    required=False,
                    nullable=True,
                ),
                ColumnSpec(
                    "occurred_at", "timestamp", "When it happened.", after_account_created=True
                ),
                ColumnSpec("module", "category", "Product module used."),
                ColumnSpec(
                    "event_type", "category", "Kind of event.", required=False, nullable=True
                ),
                ColumnSpec(
                    "count",
                    "int",
                    "Number of events the row stands for (1 when absent).",
                    required=False,
                    default=1,
                    min_value=1,
                    plausible_max=1e9,
                ),
                ColumnSpec(
                    "value",
                    "float",
                    "A quantity the events carry (deal amount, minutes, records, errors), "
                    "summed over the row's events; empty when the events carry none.",
                    required=False,
                    nullable=True,
                    plausible_max=1e12,
                ),
            ),
            foreign_keys=(_ACCOUNT_FK, _USER_FK),
        ),
        TableSpec(
            name="trainings",
            description="Course enrolments and completions of users (enablement).",
            columns=(
                ColumnSpec("user_id", "id", "The trained user."),
                ColumnSpec("account_id", "id", "The user's account."),
                ColumnSpec("course_id", "id", "The course."),
                ColumnSpec(
                    "enrolled_at",
                    "timestamp",
                    "When the user enrolled.",
                    after_account_created=True,
                ),
                ColumnSpec(
                    "completed_at", "timestamp", "When completed; empty if not.", nullable=True
                ),
                ColumnSpec(
                    "score",
                    "float",
                    "Assessment score 0-100; empty if not assessed.",
                    nullable=True,
                    min_value=0,
                    max_value=100,
                ),
            ),
            foreign_keys=(_ACCOUNT_FK, _USER_FK),
            row_rules=(
                RowRule(
                    "completed_before_enrolled",
                    "completed_at must not precede enrolled_at",
                    _later_or_missing("completed_at", "enrolled_at"),
                ),
            ),
        ),
        TableSpec(
            name="support_tickets",
            description="Support tickets with their contracted SLA targets.",
            columns=(
                ColumnSpec("ticket_id", "id", "Unique id of the ticket."),
                ColumnSpec("account_id", "id", "The account."),
                ColumnSpec("priority", "category", "Priority.", allowed=TICKET_PRIORITIES),
                ColumnSpec(
                    "opened_at", "timestamp", "When it was opened.", after_account_created=True
                ),
                ColumnSpec(
                    "first_response_at",
                    "timestamp",
                    "First response; empty if none yet.",
                    nullable=True,
                ),
                ColumnSpec(
                    "resolved_at", "timestamp", "Resolution; empty while open.", nullable=True
                ),
                ColumnSpec(
                    "sla_first_response_hours",
                    "float",
                    "Contracted first-response target in hours. Many exports lack it: missing "
                    "targets come from ingest.sla_policy by priority, else no breach is counted.",
                    required=False,
                    nullable=True,
                    min_value=0,
                    plausible_max=1e5,
                ),
                ColumnSpec(
                    "sla_resolution_hours",
                    "float",
                    "Contracted resolution target in hours. Many exports lack it: missing "
                    "targets come from ingest.sla_policy by priority, else no breach is counted.",
                    required=False,
                    nullable=True,
                    min_value=0,
                    plausible_max=1e5,
                ),
                ColumnSpec("escalated", "bool", "Escalated to management or engineering."),
            ),
            primary_key=("ticket_id",),
            foreign_keys=(_ACCOUNT_FK,),
            row_rules=(
                RowRule(
                    "response_before_open",
                    "first_response_at must not precede opened_at",
                    _later_or_missing("first_response_at", "opened_at"),
                ),
                RowRule(
                    "resolved_before_open",
                    "resolved_at must not precede opened_at",
                    _later_or_missing("resolved_at", "opened_at"),
                ),
            ),
        ),
        TableSpec(
            name="nps_responses",
            description="Net Promoter Score survey answers.",
            columns=(
                ColumnSpec("account_id", "id", "The account."),
                ColumnSpec("user_id", "id", "Who answered; empty if anonymous.", nullable=True),
                ColumnSpec(
                    "responded_at", "timestamp", "When they answered.", after_account_created=True
                ),
                ColumnSpec("score", "int", "NPS answer 0-10.", min_value=0, max_value=10),
            ),
            foreign_keys=(_ACCOUNT_FK,),
        ),
        TableSpec(
            name="satisfaction_responses",
            description=(
                "Satisfaction surveys on scales other than NPS: CSAT (e.g. 1-5) and customer "
                "effort score (CES, e.g. 1-7), each with features of its own."
            ),
            columns=(
                ColumnSpec("account_id", "id", "The account."),
                ColumnSpec("user_id", "id", "Who answered; empty if anonymous.", nullable=True),
                ColumnSpec(
                    "responded_at", "timestamp", "When they answered.", after_account_created=True
                ),
                ColumnSpec(
                    "survey",
                    "category",
                    "Which survey: csat (satisfaction) or ces (effort; its direction is "
                    "features.ces_higher_is_easier).",
                    allowed=SURVEYS,
                ),
                ColumnSpec(
                    "score",
                    "float",
                    "The answer on the survey's scale.",
                    min_value=0,
                    max_value=100,
                ),
            ),
            foreign_keys=(_ACCOUNT_FK,),
        ),
        TableSpec(
            name="account_attributes",
            description=(
                "Account attributes that change over time (firmographics, plan, channel, "
                "discount...), one row per attribute value from the moment it held: used point "
                "in time as model features (numbers as numbers, anything else as a category)."
            ),
            columns=(
                ColumnSpec("account_id", "id", "The account."),
                ColumnSpec("attribute", "category", "The attribute's name, e.g. employees."),
                ColumnSpec(
                    "value",
                    "text",
                    "Its value from valid_from on; empty when it became unknown.",
                    nullable=True,
                ),
                ColumnSpec(
                    "valid_from",
                    "timestamp",
                    "When the value began to hold (as recorded then: a value backfilled later "
                    "would tell early snapshots what was not known yet).",
                ),
            ),
            primary_key=("account_id", "attribute", "valid_from"),
            foreign_keys=(_ACCOUNT_FK,),
        ),
        TableSpec(
            name="csm_touchpoints",
            description="Meetings and calls between the CSM and the account.",
            columns=(
                ColumnSpec("account_id", "id", "The account."),
                ColumnSpec(
                    "occurred_at", "timestamp", "When it took place.", after_account_created=True
                ),
                ColumnSpec("kind", "category", "Kind of contact.", allowed=TOUCHPOINT_KINDS),
            ),
            foreign_keys=(_ACCOUNT_FK,),
        ),
    )
}

MARK_ACTIONS = ("addressed", "snoozed", "clear")

#: Not read from the source: the log `churn mark` appends to (layout: marks) and the score
#: stage reads point in time. Documented with the source tables, validated the same way.
MARKS = TableSpec(
    name="marks",
    description=(
        "What CSMs did about their accounts (`churn mark`): one row per mark, append-only; "
        "the newest mark recorded before a list's as-of date is the one that list honours."
    ),
    columns=(
        ColumnSpec("account_id", "id", "The marked account (one of the CSM's own)."),
        ColumnSpec("csm_id", "id", "The CSM who recorded the mark."),
        ColumnSpec(
            "action",
            "category",
            "addressed (a play was run), snoozed (off the list until `until`), clear (no mark).",
            allowed=MARK_ACTIONS,
        ),
        ColumnSpec(
            "until",
            "date",
            "Last day a snooze holds (inclusive); empty for other actions.",
            nullable=True,
            before_as_of=False,
        ),
        ColumnSpec("play", "text", "The play the CSM ran, in their words.", nullable=True),
        ColumnSpec("note", "text", "The CSM's note.", nullable=True),
        ColumnSpec(
            "probability_at_mark",
            "float",
            "The account's churn probability on the marked list (to tell when risk rose).",
            min_value=0,
            max_value=1,
        ),
        ColumnSpec(
            "list_as_of",
            "date",
            "The as-of date of the list the CSM marked.",
            before_as_of=False,
        ),
        ColumnSpec(
            "recorded_at",
            "timestamp",
            "When `churn mark` recorded it (UTC); a list at as-of t honours marks before t.",
            before_as_of=False,
        ),
        ColumnSpec("source_file", "text", "The file the mark came from."),
    ),
    foreign_keys=(_ACCOUNT_FK,),
    row_rules=(
        RowRule(
            "snooze_without_until",
            "a snoozed mark needs its until date",
            lambda df: ((df["action"] != "snoozed") | df["until"].notna()).astype(bool),
        ),
    ),
)

# Referenced tables come before the tables that reference them.
TABLE_ORDER: tuple[str, ...] = (
    "csms",
    "accounts",
    "contracts",
    "users",
    "usage_events",
    "trainings",
    "support_tickets",
    "nps_responses",
    "satisfaction_responses",
    "csm_touchpoints",
    "account_attributes",
)
REQUIRED_TABLES: tuple[str, ...] = tuple(n for n in TABLE_ORDER if TABLES[n].required)
STREAMED_TABLES: frozenset[str] = frozenset({"usage_events"})
#: The timestamp that says when each table's row entered the world: what "data before t" and
#: "how fresh is this table" are measured by. Only this stamp at or after as-of makes a row
#: "from the future" (quarantined); a later lifecycle field of the row (a user's
#: deactivated_at, a ticket's resolved_at) at or after as-of is blanked, because it was not yet
#: known at as-of and the row itself was.
ROW_STAMPS: dict[str, str] = {
    "accounts": "created_at",
    "contracts": "start_date",
    "users": "created_at",
    "usage_events": "occurred_at",
    "trainings": "enrolled_at",
    "support_tickets": "opened_at",
    "nps_responses": "responded_at",
    "satisfaction_responses": "responded_at",
    "csm_touchpoints": "occurred_at",
    "account_attributes": "valid_from",
}


def interim_path(interim_dir: Path, name: str) -> Path:
    """Where ingest writes a validated table: a folder of parts for streamed tables, else one
    Parquet file."""
    return interim_dir / name if name in STREAMED_TABLES else interim_dir / f"{name}.parquet"


_PANDAS_DTYPES: dict[str, str] = {
    # Arrow-backed strings: vectorised string operations on millions of event rows.
    "id": "string[pyarrow]",
    "text": "string[pyarrow]",
    "category": "string[pyarrow]",
    "timestamp": "datetime64[us, UTC]",
    "date": "datetime64[s]",
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
}

_ARROW_TYPES: dict[str, pa_arrow.DataType] = {
    "id": pa_arrow.string(),
    "text": pa_arrow.string(),
    "category": pa_arrow.string(),
    "timestamp": pa_arrow.timestamp("us", tz="UTC"),
    "date": pa_arrow.date32(),
    "float": pa_arrow.float64(),
    "int": pa_arrow.int64(),
    "bool": pa_arrow.bool_(),
}


def pandas_dtype(kind: ColumnKind) -> str:
    """The in-memory pandas dtype of a normalised column of this kind."""
    return _PANDAS_DTYPES[kind]


def arrow_schema(spec: TableSpec) -> pa_arrow.Schema:
    """The Parquet schema of a normalised table, so interim files are typed identically."""
    return pa_arrow.schema(
        [pa_arrow.field(c.name, _ARROW_TYPES[c.kind], nullable=c.nullable) for c in spec.columns]
    )


def pandera_schema(spec: TableSpec) -> pa.DataFrameSchema:
    """The pandera schema of a normalised table: dtypes, nullability, allowed values, ranges.

    Row-level failures of this schema are quarantined; the accepted rows are validated against
    it again before they are written, so an interim table always satisfies it.
    """
    columns = {}
    for col in spec.columns:
        checks = []
        if col.allowed is not None:
            checks.append(pa.Check.isin(list(col.allowed)))
        if col.min_value is not None:
            checks.append(pa.Check.ge(col.min_value))
        if col.max_value is not None:
            checks.append(pa.Check.le(col.max_value))
        columns[col.name] = pa.Column(
            pandas_dtype(col.kind),
            checks=checks,
            nullable=col.nullable,
            required=True,
            coerce=False,
        )
    return pa.DataFrameSchema(columns, strict=True, ordered=True, name=spec.name)


def contract_markdown() -> str:
    """The contract's tables as Markdown, generated from the specs so the docs cannot drift."""
    lines: list[str] = []
    for spec in [*(TABLES[name] for name in TABLE_ORDER), MARKS]:
        name = spec.name
        need = "required" if spec.required else "optional"
        lines += [f"### `{name}` ({need})", "", spec.description, ""]
        if spec.primary_key:
            lines += [f"Primary key: `{', '.join(spec.primary_key)}`.", ""]
        for fk in spec.foreign_keys:
            on_unknown = (
                f"; an unknown id is kept and counted as `{fk.unknown_code}`"
                if fk.unknown_code
                else ""
            )
            lines += [
                f"Foreign key: `{', '.join(fk.columns)}` -> "
                f"`{fk.ref_table}.{', '.join(fk.ref_columns)}` (checked when "
                f"`{fk.ref_table}` is present{on_unknown}).",
                "",
            ]
        lines += ["| column | type | present | empty allowed | rule | meaning |"]
        lines += ["|---|---|---|---|---|---|"]
        for col in spec.columns:
            rules = []
            if col.allowed:
                rules.append("one of " + ", ".join(f"`{v}`" for v in col.allowed))
            if col.min_value is not None:
                rules.append(f">= {col.min_value:g}")
            if col.max_value is not None:
                rules.append(f"<= {col.max_value:g}")
            if col.plausible_max is not None:
                rules.append(f"plausibly <= {col.plausible_max:g} (ingest.bounds)")
            if col.pattern is not None:
                rules.append(col.pattern.description)
            if col.kind in ("timestamp", "date"):
                if col.before_as_of and col.name == ROW_STAMPS.get(name):
                    rules.append("before as-of")
                elif col.before_as_of:
                    rules.append("blanked if at or after as-of")
                if col.max_years_after_as_of is not None:
                    rules.append(f"at most {col.max_years_after_as_of} years after as-of")
            if col.after_account_created:
                rules.append("not before the account's created_at")
            present = "required" if col.required else f"optional (default {col.default})"
            lines.append(
                f"| `{col.name}` | {col.kind} | {present} | {'yes' if col.nullable else 'no'} "
                f"| {'; '.join(rules)} | {col.description} |"
            )
        for rule in spec.row_rules:
            lines.append("")
            lines.append(f"Row rule `{rule.code}`: {rule.description}.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
