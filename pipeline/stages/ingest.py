"""Ingest stage: raw source tables -> validated, typed, normalised Parquet in data/interim.

Tables are validated in dependency order (accounts before the tables that reference them), so
foreign keys are checked against rows that were themselves accepted. Usage events are streamed
in chunks, which keeps memory bounded at 100M rows, and validated in Arrow compute
(`pipeline.data.validate_fast`: the same rules and output as the pandas reference in
`pipeline.data.validate`, at several times its speed) while the next chunk is read and the last
one written in background threads. The whole output directory is built in a
temporary sibling and renamed into place at the end: a failed or interrupted run leaves the
previous interim data untouched.

Outputs:
- `<out>/<table>.parquet` (usage events: `<out>/usage_events/part-NNNNN.parquet`)
- `<out>/quarantine/<table>.parquet`: rejected rows, raw values as text, with `_source_row`
  and `_reason`
- `<out>/validation_report.json`: per table rows read, accepted, quarantined, by reason; the
  values outside a category's allowed set (`unknown_values`), and what was kept but changed:
  `blanked_after_as_of`, `blanked_by_reason`, `unknown_references` (e.g. `unknown_csm`).

A table with more than `max_quarantine_share` of its rows quarantined stops the run: at that
share the problem is the export or the mapping (a renamed segment, a new date format), and
scoring on the rest would silently drop whole customers.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.atomic import atomic_path, no_space_as_error, write_json
from pipeline.core.config import Config, SegmentTiers, SlaTargets
from pipeline.core.errors import ConfigError, DataContractError
from pipeline.core.layout import QUARANTINE_DIR, VALIDATION_REPORT
from pipeline.data.contract import (
    REQUIRED_TABLES,
    STREAMED_TABLES,
    TABLE_ORDER,
    TABLES,
    TableSpec,
    arrow_schema,
    interim_path,
)
from pipeline.data.derive import billing_terms, plan_at_open, sla_targets
from pipeline.data.sources import Source, configured_source, iter_arrow_batches
from pipeline.data.validate import (
    REASON,
    NumericBounds,
    TableResult,
    ValidationContext,
    validate_table,
)
from pipeline.data.validate_fast import StreamedValidator, unsupported

log = logging.getLogger(__name__)


# How many unknown values per column the report lists, and the log and error name.
_REPORTED_UNKNOWN_VALUES = 20
_SHOWN_UNKNOWN_VALUES = 5
_EXAMPLE_ROWS = 5

# Key columns other tables check their foreign keys against.
_REFERENCED_KEYS: dict[str, tuple[str, ...]] = {
    "csms": ("csm_id",),
    "accounts": ("account_id",),
    "users": ("user_id", "account_id"),
}


@dataclass
class TableReport:
    """What happened to one table; `rows_read == rows_accepted + rows_quarantined` always."""

    status: str  # ok | absent | empty
    rows_read: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    quarantined_by_reason: Counter[str] = field(default_factory=Counter)
    ignored_columns: list[str] = field(default_factory=list)
    defaulted_columns: list[str] = field(default_factory=list)
    unknown_values: dict[str, Counter[str]] = field(default_factory=dict)
    blanked_after_as_of: Counter[str] = field(default_factory=Counter)
    blanked_by_reason: Counter[str] = field(default_factory=Counter)
    unknown_references: Counter[str] = field(default_factory=Counter)
    # Values the export lacked and ingest derived from another table, per column.
    derived_values: Counter[str] = field(default_factory=Counter)
    # The first quarantined rows, for the message when the table's share is too high.
    example_rows: pd.DataFrame | None = None

    def add(self, result: TableResult) -> None:
        self.rows_read += result.rows_read
        self.rows_accepted += len(result.accepted)
        self.rows_quarantined += len(result.quarantined)
        self.quarantined_by_reason.update(result.reason_counts)
        for column, counts in result.unknown_values.items():
            self.unknown_values.setdefault(column, Counter()).update(counts)
        self.blanked_after_as_of.update(result.blanked_after_as_of)
        self.blanked_by_reason.update(result.blanked_by_reason)
        self.unknown_references.update(result.unknown_references)
        if len(result.quarantined) and (
            self.example_rows is None or len(self.example_rows) < _EXAMPLE_ROWS
        ):
            more = result.quarantined.head(_EXAMPLE_ROWS)
            self.example_rows = (
                more if self.example_rows is None else pd.concat([self.example_rows, more])
            ).head(_EXAMPLE_ROWS)
        for name in result.ignored_columns:
            if name not in self.ignored_columns:
                self.ignored_columns.append(name)
        for name in result.defaulted_columns:
            if name not in self.defaulted_columns:
                self.defaulted_columns.append(name)

    def as_dict(self) -> dict:
        assert self.rows_read == self.rows_accepted + self.rows_quarantined
        return {
            "status": self.status,
            "rows_read": self.rows_read,
            "rows_accepted": self.rows_accepted,
            "rows_quarantined": self.rows_quarantined,
            "quarantined_by_reason": dict(sorted(self.quarantined_by_reason.items())),
            "ignored_columns": self.ignored_columns,
            "defaulted_columns": self.defaulted_columns,
            "unknown_values": {
                column: dict(counts.most_common(_REPORTED_UNKNOWN_VALUES))
                for column, counts in sorted(self.unknown_values.items())
            },
            "blanked_after_as_of": dict(sorted(self.blanked_after_as_of.items())),
            "blanked_by_reason": dict(sorted(self.blanked_by_reason.items())),
            "unknown_references": dict(sorted(self.unknown_references.items())),
            "derived_values": dict(sorted(self.derived_values.items())),
        }

    @property
    def quarantined_share(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0

    def top_unknown_values(self) -> list[str]:
        """`column='value' (n)` for the most frequent unknown values, across columns."""
        pairs = [
            (n, column, value)
            for column, counts in self.unknown_values.items()
            for value, n in counts.items()
        ]
        pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
        return [f"{c}={v!r} ({n})" for n, c, v in pairs[:_SHOWN_UNKNOWN_VALUES]]


def _check_required_present(available: set[str], source: Source) -> None:
    missing = [t for t in REQUIRED_TABLES if t not in available]
    if missing:
        raise DataContractError(
            missing[0],
            None,
            f"required table{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found in "
            f"{source.description}; it has: {', '.join(sorted(available)) or 'no contract tables'}"
            ". Map your own table names with ingest.table_map in params.yaml",
        )


def _context_with(
    context: ValidationContext, spec: TableSpec, accepted: pd.DataFrame
) -> ValidationContext:
    keys = dict(context.keys)
    if spec.name in _REFERENCED_KEYS:
        keys[spec.name] = accepted[list(_REFERENCED_KEYS[spec.name])].drop_duplicates()
    account_created = context.account_created
    if spec.name == "accounts":
        account_created = accepted.set_index("account_id")["created_at"]
    return replace(context, keys=keys, account_created=account_created)


def _with_sla_policy(
    tickets: pd.DataFrame,
    policy: Mapping[str, SlaTargets],
    by_plan: Mapping[str, Mapping[str, SlaTargets]],
    contracts: pd.DataFrame | None,
    report: TableReport,
) -> pd.DataFrame:
    """Missing SLA targets filled from the policy by plan and priority, or by priority
    (counted as derived values).

    A ticket left without a target counts no breach: breach features are measured only where
    a target exists, never against an invented one.
    """
    if not policy and not by_plan:
        return tickets
    plan = plan_at_open(tickets, contracts) if by_plan and contracts is not None else None
    out = tickets
    for column, attribute in (
        ("sla_first_response_hours", "first_response_hours"),
        ("sla_resolution_hours", "resolution_hours"),
    ):
        missing = out[column].isna()
        if not missing.any():
            continue
        target = sla_targets(
            out["priority"],
            plan,
            by_priority={p: float(getattr(t, attribute)) for p, t in policy.items()},
            by_plan={
                name: {p: float(getattr(t, attribute)) for p, t in targets.items()}
                for name, targets in by_plan.items()
            },
        )
        fill = missing & target.notna()
        if fill.any():
            out = out.assign(**{column: out[column].where(~fill, target)})
            report.derived_values[column] += int(fill.sum())
    return out


def _contracts_spec(billing_period_months: int | None) -> TableSpec:
    """The contracts contract for this run: an empty end_date (an open-ended subscription) is
    accepted only when params say how it is billed; otherwise the row is quarantined, because
    a term without an end has no renewal to predict."""
    spec = TABLES["contracts"]
    if billing_period_months is not None:
        return spec
    columns = tuple(replace(c, nullable=False) if c.name == "end_date" else c for c in spec.columns)
    return replace(spec, columns=columns)


def _with_billing_terms(
    contracts: pd.DataFrame, period_months: int | None, as_of: pd.Timestamp, report: TableReport
) -> pd.DataFrame:
    """Subscriptions split into billing terms when params give a billing period (counted)."""
    if period_months is None:
        return contracts
    terms, open_ended = billing_terms(contracts, period_months=period_months, as_of=as_of)
    report.derived_values["end_date"] += open_ended
    report.derived_values["billing_terms"] += len(terms) - len(contracts)
    log.warning(
        "contracts: %d rows split into %d billing terms of %d month(s) (ingest."
        "billing_period_months); %d open-ended rows end with the term in progress at as-of",
        len(contracts),
        len(terms),
        period_months,
        open_ended,
    )
    return terms


def segment_from_tiers(size: pd.Series, *, mid_market: float, enterprise: float) -> pd.Series:
    """enterprise at or above `enterprise`, mid_market at or above `mid_market`, else smb;
    missing where the size is unknown (the account is then quarantined, and counted)."""
    segment = pd.Series(pd.NA, index=size.index, dtype="string")
    known = size.notna()
    segment[known] = "smb"
    segment[known & (size >= mid_market)] = "mid_market"
    segment[known & (size >= enterprise)] = "enterprise"
    return segment


def _with_derived_segment(
    raw: pd.DataFrame, source: Source, tiers: SegmentTiers | None, report: TableReport
) -> pd.DataFrame:
    """The accounts with a segment from the first contract's size, when the export has none.

    The first contract, not the latest: a segment read from a later term would tell early
    snapshots about growth that had not happened yet.
    """
    if tiers is None:
        raise DataContractError(
            "accounts",
            "segment",
            "the export has no segment column: map yours with ingest.column_map, or set "
            "ingest.segment_tiers ({by: arr, mid_market: 25000, enterprise: 150000}) to derive "
            "it from the first contract's ARR or seats",
            raw.head(5),
        )
    contracts = source.read("contracts")
    size = pd.to_numeric(contracts.get(tiers.by), errors="coerce")
    start = pd.to_datetime(contracts.get("start_date"), errors="coerce", utc=True)
    first = (
        contracts.assign(_size=size, _start=start)
        .dropna(subset=["_start"])
        .sort_values(["_start", "_size"], kind="stable")
        .drop_duplicates("account_id")
        .set_index("account_id")["_size"]
    )
    segment = segment_from_tiers(
        raw["account_id"].map(first).astype("float64"),
        mid_market=tiers.mid_market,
        enterprise=tiers.enterprise,
    )
    report.derived_values["segment"] += int(segment.notna().sum())
    log.warning(
        "accounts.segment: not in the export; derived for %d accounts from the first contract's "
        "%s (mid_market from %g, enterprise from %g)",
        int(segment.notna().sum()),
        tiers.by,
        tiers.mid_market,
        tiers.enterprise,
    )
    return raw.assign(segment=segment)


def derive_created_at(accounts: pd.DataFrame, contracts: pd.DataFrame) -> pd.DataFrame:
    """Accounts whose created_at is missing get their first contract's start (00:00 UTC).

    Tenure and the first-90-days family start there; an account with no contract keeps none.
    """
    missing = accounts["created_at"].isna()
    if not missing.any():
        return accounts
    first = contracts.groupby("account_id")["start_date"].min()
    start = pd.to_datetime(accounts["account_id"].map(first)).dt.tz_localize("UTC")
    filled = accounts["created_at"].where(~missing, start.astype(accounts["created_at"].dtype))
    return accounts.assign(created_at=filled)


def _derive_created_at(
    context: ValidationContext,
    contracts: pd.DataFrame,
    staging: Path,
    out_dir: Path,
    report: TableReport,
) -> ValidationContext:
    """Fill accounts.created_at from the contracts (once both are accepted) and say so.

    The validation context keeps the missing values: a derived date is a guess, so later
    tables (users from a trial before the first contract...) are not quarantined against it.
    """
    path = interim_path(staging, "accounts")
    accounts = pd.read_parquet(path)
    filled = derive_created_at(accounts, contracts)
    n = int((accounts["created_at"].isna() & filled["created_at"].notna()).sum())
    if not n:
        return context
    _write_file(filled, path, arrow_schema(TABLES["accounts"]), interim_path(out_dir, "accounts"))
    report.derived_values["created_at"] += n
    log.warning("accounts.created_at: %d accounts had none; their first contract start is used", n)
    return context


def _check_settings(
    value_map: Mapping[str, Mapping[str, Mapping[str, str]]],
    bounds: Mapping[str, Mapping[str, NumericBounds]],
) -> None:
    """Settings that name a column the contract does not have would silently do nothing."""
    for key, settings, kinds in (
        ("value_map", value_map, None),
        ("bounds", bounds, ("float", "int")),
    ):
        for table, columns in settings.items():
            spec = TABLES.get(table)
            if spec is None:
                raise ConfigError(f"ingest.{key}.{table}: unknown table; see {sorted(TABLES)}")
            for column in columns:
                if column not in spec.column_names:
                    raise ConfigError(
                        f"ingest.{key}.{table}.{column}: table '{table}' has no column "
                        f"'{column}'; its columns are {spec.column_names}"
                    )
                if kinds is not None and spec.column(column).kind not in kinds:
                    raise ConfigError(
                        f"ingest.{key}.{table}.{column}: bounds apply to numeric columns, and "
                        f"'{column}' holds {spec.column(column).kind} values"
                    )


def _log_unknown_values(name: str, report: TableReport) -> None:
    for column, counts in sorted(report.unknown_values.items()):
        top = ", ".join(f"{v!r} ({n})" for v, n in counts.most_common(_SHOWN_UNKNOWN_VALUES))
        log.warning(
            "%s.%s: %d rows quarantined for values outside the contract's: %s; map them with "
            "ingest.value_map",
            name,
            column,
            sum(counts.values()),
            top,
        )


def _check_quarantine_share(
    spec: TableSpec, report: TableReport, max_quarantine_share: float | None
) -> None:
    """Stop when too much of a table was quarantined: the export, not single rows, is wrong."""
    if max_quarantine_share is None or report.quarantined_share <= max_quarantine_share:
        return
    reasons = report.quarantined_by_reason.most_common(3)
    top_column = reasons[0][0].split(":", 1)[-1] if reasons else ""
    column = top_column if top_column in spec.column_names else None
    unknown = report.top_unknown_values()
    examples = report.example_rows
    if examples is not None:
        shown = [*[c for c in spec.column_names if c in examples.columns][:6], REASON]
        examples = examples[shown]
    raise DataContractError(
        spec.name,
        column,
        f"{report.quarantined_share:.1%} of its {report.rows_read} rows were quarantined "
        f"({report.rows_quarantined}), more than ingest.max_quarantine_share = "
        f"{max_quarantine_share:.1%}; top reasons: "
        + ", ".join(f"{code} ({n})" for code, n in reasons)
        + (f"; top unknown values: {', '.join(unknown)}" if unknown else "")
        + (
            " (empty end dates: open-ended subscriptions? set ingest.billing_period_months)"
            if spec.name == "contracts"
            and report.quarantined_by_reason.get("missing_value:end_date")
            else ""
        )
        + ". Fix the export or map its values with ingest.value_map, or raise "
        "ingest.max_quarantine_share if this share is expected",
        examples,
    )


class _Background:
    """Runs writes one at a time, in order, beside the validation of the next chunk.

    At most `depth` writes wait, which bounds the memory held by chunks not yet on disk.
    `finish` waits for all and raises the first error (a full disk), so no write is lost
    and none outlives the staging directory.
    """

    def __init__(self, depth: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write")
        self._pending: deque[Future] = deque()
        self._depth = depth

    def submit(self, func, *args) -> None:
        self._pending.append(self._pool.submit(func, *args))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def finish(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)


class _PartWriter:
    """Writes a table as numbered Parquet parts under one directory, for streamed tables.

    Part names are given here, in chunk order; with `background` the file itself is written
    by that thread, in the same order.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema | None,
        shown_as: Path,
        background: _Background | None = None,
    ) -> None:
        self.directory = directory
        self.schema = schema
        self.shown_as = shown_as
        self.background = background
        self.parts = 0

    def write(self, frame: pd.DataFrame | pa.Table) -> None:
        if len(frame) == 0 and self.parts:
            return
        name = f"part-{self.parts:05d}.parquet"
        args = (frame, self.directory / name, self.schema, self.shown_as / name)
        if self.background is None:
            _write_file(*args)
        else:
            self.background.submit(_write_file, *args)
        self.parts += 1


_DONE = object()


def _read_ahead(chunks: Iterator, stop: threading.Event) -> Iterator:
    """The items of `chunks`, read one ahead in a thread (Arrow reads without the GIL).

    An error of the source is raised here, in the caller's thread, in its place in the order.
    """
    ahead: queue.Queue = queue.Queue(maxsize=1)

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in chunks:
                if not put((item, None)):
                    return
        except BaseException as err:  # handed over to the consumer, raised there
            put((None, err))
            return
        put((_DONE, None))

    thread = threading.Thread(target=read, name="ingest-read", daemon=True)
    thread.start()
    try:
        while True:
            item, err = ahead.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _write_file(
    frame: pd.DataFrame | pa.Table, path: Path, schema: pa.Schema | None, shown_as: Path
) -> None:
    """Write one Parquet file of the staged output; `shown_as` is where it will end up.

    An Arrow table (the Arrow validation path's accepted rows) is written as it is: it is
    already typed by `arrow_schema`, with the metadata `from_pandas` would add.
    """
    with no_space_as_error(shown_as, f"{len(frame)} rows"):
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(frame, pa.Table):
            table = frame
        else:
            table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        pq.write_table(table, path)


def _streamed_validator(
    spec: TableSpec, context: ValidationContext, validation: str
) -> StreamedValidator | None:
    """The Arrow validator for a streamed table, or None (with a log line) for pandas."""
    if validation == "pandas":
        return None
    reason = unsupported(spec)
    if reason is not None:
        log.warning(
            "%s: validated with the pandas path; the Arrow path does not check %s",
            spec.name,
            reason,
        )
        return None
    return StreamedValidator(spec, context)


def _ingest_streamed(
    source: Source,
    spec: TableSpec,
    context: ValidationContext,
    staging: Path,
    out_dir: Path,
    batch_rows: int,
    report: TableReport,
    progress,
    validation: str = "arrow",
) -> None:
    """Validate a streamed table chunk by chunk into numbered parts.

    `validation` "arrow" validates each chunk in Arrow compute (`validate_fast`), falling back
    to the reference pandas path for a chunk (or the table) it cannot take, and saying so;
    "pandas" uses the reference path throughout. Both write the same bytes.
    """
    task = progress.add_task(f"ingest {spec.name}", total=None) if progress else None
    validator = _streamed_validator(spec, context, validation)
    if validator is None:
        _validate_chunks(
            ((None, frame) for frame in source.iter_batches(spec.name, batch_rows)),
            None,
            spec,
            context,
            staging,
            out_dir,
            report,
            progress,
            task,
            None,
        )
        return
    # The Arrow path reads the next chunk and writes the last one while it validates this one.
    background = _Background()
    stop = threading.Event()
    try:
        _validate_chunks(
            _read_ahead(iter_arrow_batches(source, spec.name, batch_rows), stop),
            validator,
            spec,
            context,
            staging,
            out_dir,
            report,
            progress,
            task,
            background,
        )
    except BaseException:
        stop.set()
        try:
            background.finish()
        except Exception:  # the error being raised says more than a write that failed after it
            log.debug("%s: a background write failed after an error", spec.name, exc_info=True)
        raise
    background.finish()


def _validate_chunks(
    chunks,
    validator: StreamedValidator | None,
    spec: TableSpec,
    context: ValidationContext,
    staging: Path,
    out_dir: Path,
    report: TableReport,
    progress,
    task,
    background: _Background | None,
) -> None:
    accepted = _PartWriter(staging / spec.name, arrow_schema(spec), out_dir / spec.name, background)
    quarantined = _PartWriter(
        staging / QUARANTINE_DIR / spec.name,
        None,
        out_dir / QUARANTINE_DIR / spec.name,
        background,
    )
    fallbacks = 0
    for batch, frame in chunks:
        result = None
        if validator is not None and batch is not None:
            result = validator.validate(batch, first_row=report.rows_read, raw=frame)
        if result is None:
            if validator is not None:
                fallbacks += 1
                if fallbacks == 1:
                    log.warning(
                        "%s: a chunk the Arrow path cannot read (rows from %d) is validated "
                        "with the pandas path",
                        spec.name,
                        report.rows_read,
                    )
            raw = frame if frame is not None else batch.to_pandas()
            result = validate_table(raw, spec, context, first_row=report.rows_read)
        report.add(result)
        accepted.write(result.accepted)
        if len(result.quarantined):
            quarantined.write(result.quarantined)
        if progress:
            progress.update(task, advance=result.rows_read)
    if fallbacks:
        log.warning("%s: %d chunk(s) validated with the pandas path", spec.name, fallbacks)
    if accepted.parts == 0:  # keep a typed, empty table so readers find the schema
        accepted.write(pd.DataFrame({f.name: [] for f in arrow_schema(spec)}))


def ingest_source(
    source: Source,
    out_dir: Path,
    *,
    as_of: pd.Timestamp,
    naive_timezone: str | None = None,
    batch_rows: int = 1_000_000,
    value_map: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
    max_quarantine_share: float | None = None,
    max_text_chars: int | None = None,
    bounds: Mapping[str, Mapping[str, NumericBounds]] | None = None,
    segment_tiers: SegmentTiers | None = None,
    sla_policy: Mapping[str, SlaTargets] | None = None,
    sla_policy_by_plan: Mapping[str, Mapping[str, SlaTargets]] | None = None,
    billing_period_months: int | None = None,
    streamed_validation: str = "arrow",
    progress=None,
) -> dict:
    """Validate every contract table of `source` into `out_dir`; return the validation report.

    `segment_tiers` derives accounts.segment from the first contract's size when the export
    has no segment column (else that is an error naming the setting). `sla_policy` and
    `sla_policy_by_plan` fill missing SLA targets; `billing_period_months` splits contract rows
    into billing terms and lets open-ended rows (no end_date) in.

    `streamed_validation` picks how usage events are validated: "arrow" (vectorised, the
    default) or "pandas" (the reference implementation); both give the same output.

    `value_map`, `max_text_chars` and `bounds` are `ingest.*` (see `ValidationContext`);
    None means none, no limit and the contract's. A table with more than
    `max_quarantine_share` of its rows quarantined stops the run (None: never).

    Raises `DataContractError` when the input as a whole breaks the contract, `ConfigError`
    when a setting names a column the contract lacks, and `StorageError` when the disk is
    full; in every case `out_dir` is left as it was.
    """
    if streamed_validation not in ("arrow", "pandas"):
        raise ValueError(
            f"streamed_validation must be 'arrow' or 'pandas', not {streamed_validation!r}"
        )
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    value_map = value_map or {}
    bounds = bounds or {}
    _check_settings(value_map, bounds)
    available = source.tables()
    _check_required_present(available, source)
    context = ValidationContext(
        as_of=as_of,
        naive_timezone=naive_timezone,
        value_map=value_map,
        max_text_chars=max_text_chars,
        bounds=bounds,
    )
    reports: dict[str, TableReport] = {}
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as staging:
        staging.mkdir(parents=True)
        contracts: pd.DataFrame | None = None
        for name in TABLE_ORDER:
            spec = TABLES[name] if name != "contracts" else _contracts_spec(billing_period_months)
            if name not in available:
                reports[name] = TableReport(status="absent")
                log.info("%s: absent (optional)", name)
                continue
            report = TableReport(status="ok")
            if name in STREAMED_TABLES:
                _ingest_streamed(
                    source,
                    spec,
                    context,
                    staging,
                    out_dir,
                    batch_rows,
                    report,
                    progress,
                    streamed_validation,
                )
                accepted = None
            else:
                raw = source.read(name)
                if name == "accounts" and "segment" not in raw.columns:
                    raw = _with_derived_segment(raw, source, segment_tiers, report)
                result = validate_table(raw, spec, context)
                report.add(result)
                accepted = result.accepted
                if name == "contracts":
                    contracts = accepted
                    accepted = _with_billing_terms(accepted, billing_period_months, as_of, report)
                if name == "support_tickets":
                    accepted = _with_sla_policy(
                        accepted, sla_policy or {}, sla_policy_by_plan or {}, contracts, report
                    )
            if report.rows_read == 0:
                if spec.required:
                    raise DataContractError(name, None, "the table is empty (no rows)")
                report.status = "empty"
                reports[name] = report
                log.warning("%s: empty; treated as absent", name)
                continue
            if report.rows_accepted == 0 and spec.required:
                raise DataContractError(
                    name,
                    None,
                    f"all {report.rows_read} rows were rejected; most common reasons: "
                    f"{report.quarantined_by_reason.most_common(3)}",
                )
            _log_unknown_values(name, report)
            _check_quarantine_share(spec, report, max_quarantine_share)
            if accepted is not None:
                _write_file(
                    accepted,
                    interim_path(staging, name),
                    arrow_schema(spec),
                    interim_path(out_dir, name),
                )
                if len(result.quarantined):
                    quarantine_file = Path(QUARANTINE_DIR) / f"{name}.parquet"
                    _write_file(
                        result.quarantined,
                        staging / quarantine_file,
                        None,
                        out_dir / quarantine_file,
                    )
                context = _context_with(context, spec, accepted)
                if name == "contracts" and "accounts" in reports:
                    context = _derive_created_at(
                        context, contracts, staging, out_dir, reports["accounts"]
                    )
            reports[name] = report
            log.info(
                "%s: %d read, %d accepted, %d quarantined",
                name,
                report.rows_read,
                report.rows_accepted,
                report.rows_quarantined,
            )
            for column, n in sorted(report.blanked_after_as_of.items()):
                log.info("%s.%s: %d values at or after as-of blanked", name, column, n)
            for code, n in sorted((report.blanked_by_reason + report.unknown_references).items()):
                log.warning("%s: %d rows kept with %s", name, n, code)
        report_payload = {
            "as_of": as_of.isoformat(),
            "source": source.description,
            "tables": {n: reports[n].as_dict() for n in TABLE_ORDER},
            "tables_unavailable": [n for n in TABLE_ORDER if reports[n].status != "ok"],
            "rows_read": sum(r.rows_read for r in reports.values()),
            "rows_accepted": sum(r.rows_accepted for r in reports.values()),
            "rows_quarantined": sum(r.rows_quarantined for r in reports.values()),
        }
        with no_space_as_error(out_dir / VALIDATION_REPORT, "the validation report"):
            write_json(report_payload, staging / VALIDATION_REPORT)
    return report_payload


def run_ingest(config: Config, out_dir: Path, *, source: str | None = None, progress=None) -> dict:
    """The ingest stage's edge: open the configured source (or `source`), validate, write."""
    cfg = config.ingest
    src = configured_source(cfg, location=source)
    return ingest_source(
        src,
        Path(out_dir),
        as_of=config.base.as_of_timestamp,
        naive_timezone=cfg.naive_timezone,
        batch_rows=cfg.batch_rows,
        value_map=cfg.value_map,
        max_quarantine_share=cfg.max_quarantine_share,
        segment_tiers=cfg.segment_tiers,
        sla_policy=cfg.sla_policy,
        sla_policy_by_plan=cfg.sla_policy_by_plan,
        billing_period_months=cfg.billing_period_months,
        max_text_chars=cfg.max_text_chars,
        bounds={
            table: {column: NumericBounds(b.min, b.max) for column, b in columns.items()}
            for table, columns in cfg.bounds.items()
        },
        progress=progress,
    )
