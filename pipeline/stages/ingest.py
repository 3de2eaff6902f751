"""Ingest stage: raw source tables -> validated, typed, normalised Parquet in data/interim.

Tables are validated in dependency order (accounts before the tables that reference them), so
foreign keys are checked against rows that were themselves accepted. Usage events are streamed
in chunks, which keeps memory bounded at 100M rows. The whole output directory is built in a
temporary sibling and renamed into place at the end: a failed or interrupted run leaves the
previous interim data untouched.

Outputs:
- `<out>/<table>.parquet` (usage events: `<out>/usage_events/part-NNNNN.parquet`)
- `<out>/quarantine/<table>.parquet`: rejected rows, raw values as text, with `_source_row`
  and `_reason`
- `<out>/validation_report.json`: per table rows read, accepted, quarantined, by reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.atomic import atomic_path, write_json
from pipeline.core.config import Config
from pipeline.core.errors import DataContractError
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
from pipeline.data.sources import NameMapping, Source, open_source
from pipeline.data.validate import TableResult, ValidationContext, validate_table

log = logging.getLogger(__name__)


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

    def add(self, result: TableResult) -> None:
        self.rows_read += result.rows_read
        self.rows_accepted += len(result.accepted)
        self.rows_quarantined += len(result.quarantined)
        self.quarantined_by_reason.update(result.reason_counts)
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
        }


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
    return ValidationContext(
        as_of=context.as_of,
        keys=keys,
        account_created=account_created,
        naive_timezone=context.naive_timezone,
    )


class _PartWriter:
    """Writes a table as numbered Parquet parts under one directory, for streamed tables."""

    def __init__(self, directory: Path, schema: pa.Schema | None) -> None:
        self.directory = directory
        self.schema = schema
        self.parts = 0

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty and self.parts:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        pq.write_table(table, self.directory / f"part-{self.parts:05d}.parquet")
        self.parts += 1


def _write_file(frame: pd.DataFrame, path: Path, schema: pa.Schema | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table, path)


def _ingest_streamed(
    source: Source,
    spec: TableSpec,
    context: ValidationContext,
    staging: Path,
    batch_rows: int,
    report: TableReport,
    progress,
) -> None:
    accepted = _PartWriter(staging / spec.name, arrow_schema(spec))
    quarantined = _PartWriter(staging / QUARANTINE_DIR / spec.name, None)
    task = progress.add_task(f"ingest {spec.name}", total=None) if progress else None
    for chunk in source.iter_batches(spec.name, batch_rows):
        result = validate_table(chunk, spec, context, first_row=report.rows_read)
        report.add(result)
        accepted.write(result.accepted)
        if len(result.quarantined):
            quarantined.write(result.quarantined)
        if progress:
            progress.update(task, advance=len(chunk))
    if accepted.parts == 0:  # keep a typed, empty table so readers find the schema
        accepted.write(pd.DataFrame({f.name: [] for f in arrow_schema(spec)}))


def ingest_source(
    source: Source,
    out_dir: Path,
    *,
    as_of: pd.Timestamp,
    naive_timezone: str | None = None,
    batch_rows: int = 1_000_000,
    progress=None,
) -> dict:
    """Validate every contract table of `source` into `out_dir`; return the validation report.

    Raises `DataContractError` when the input as a whole breaks the contract; in that case
    `out_dir` is left as it was.
    """
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    available = source.tables()
    _check_required_present(available, source)
    context = ValidationContext(as_of=as_of, naive_timezone=naive_timezone)
    reports: dict[str, TableReport] = {}
    with atomic_path(Path(out_dir)) as staging:
        staging.mkdir(parents=True)
        for name in TABLE_ORDER:
            spec = TABLES[name]
            if name not in available:
                reports[name] = TableReport(status="absent")
                log.info("%s: absent (optional)", name)
                continue
            report = TableReport(status="ok")
            if name in STREAMED_TABLES:
                _ingest_streamed(source, spec, context, staging, batch_rows, report, progress)
                accepted = None
            else:
                result = validate_table(source.read(name), spec, context)
                report.add(result)
                accepted = result.accepted
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
            if accepted is not None:
                _write_file(accepted, interim_path(staging, name), arrow_schema(spec))
                if len(result.quarantined):
                    _write_file(
                        result.quarantined, staging / QUARANTINE_DIR / f"{name}.parquet", None
                    )
                context = _context_with(context, spec, accepted)
            reports[name] = report
            log.info(
                "%s: %d read, %d accepted, %d quarantined",
                name,
                report.rows_read,
                report.rows_accepted,
                report.rows_quarantined,
            )
        report_payload = {
            "as_of": as_of.isoformat(),
            "source": source.description,
            "tables": {n: reports[n].as_dict() for n in TABLE_ORDER},
            "tables_unavailable": [n for n in TABLE_ORDER if reports[n].status != "ok"],
            "rows_read": sum(r.rows_read for r in reports.values()),
            "rows_accepted": sum(r.rows_accepted for r in reports.values()),
            "rows_quarantined": sum(r.rows_quarantined for r in reports.values()),
        }
        write_json(report_payload, staging / VALIDATION_REPORT)
    return report_payload


def run_ingest(config: Config, out_dir: Path, *, source: str | None = None, progress=None) -> dict:
    """The ingest stage's edge: open the configured source (or `source`), validate, write."""
    cfg = config.ingest
    mapping = NameMapping(tables=cfg.table_map, columns=cfg.column_map)
    src = open_source(source or cfg.source, mapping=mapping, schema=cfg.schema_name)
    return ingest_source(
        src,
        Path(out_dir),
        as_of=config.base.as_of_timestamp,
        naive_timezone=cfg.naive_timezone,
        batch_rows=cfg.batch_rows,
        progress=progress,
    )
