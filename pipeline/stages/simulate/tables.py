"""The simulator's files: table schemas, frame-to-Arrow conversion, and the writing edge.

The raw tables' schemas are the data contract's (`pipeline.data.contract.arrow_schema`), under
the names of the profile's export (`exports`), with one explicit adjustment: every column is
written nullable. `arrow_schema` describes the interim tables ingest writes *after*
validation, where "not null" is a guarantee; a raw export makes no such promise (warehouse
extracts rarely declare NOT NULL), so the raw files look like a user's export: the contract's
types, with the not-null rules left for ingest to enforce. The ground-truth tables are the
simulator's own and are written to a directory of their own, which the pipeline never reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import ConfigError
from pipeline.core.layout import TRUTH_DECISIONS, TRUTH_PIT_ORACLE
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.exports import export_frame, export_schema
from pipeline.stages.simulate.profiles import DEMO, company_profile
from pipeline.stages.simulate.world import LATENT_COLUMNS

logger = logging.getLogger(__name__)

_TIMESTAMP = pa.timestamp("us", tz="UTC")


#: The demo's tables, in the contract's order (the profiles' are in `profiles`).
RAW_TABLES: tuple[str, ...] = tuple(DEMO.tables)
#: Arrow schema of every demo table; the parquet files are written with exactly these types.
RAW_TABLE_SCHEMAS: dict[str, pa.Schema] = {name: export_schema(DEMO, name) for name in RAW_TABLES}

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
            *[(name, pa.float64()) for name in LATENT_COLUMNS],
        ]
    ),
    "accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("segment", pa.string()),
            ("latent_health_mean", pa.float64()),
            ("latent_health_final", pa.float64()),
            ("trouble", pa.string()),
            ("trouble_onset_at", _TIMESTAMP),
            ("latent_onboarding", pa.float64()),
            ("activation_propensity", pa.float64()),
            ("churned", pa.bool_()),
            ("churned_at", _TIMESTAMP),
        ]
    ),
    # `oracle.pit_oracle`: the true churn probability of each renewal as each snapshot of its
    # term could know it (the fair ceiling for a model; the decisions' own is not).
    "pit_oracle": pa.schema(
        [
            ("account_id", pa.string()),
            ("snapshot_date", pa.date32()),
            ("renewal_date", pa.date32()),
            ("pit_churn_probability", pa.float64()),
        ]
    ),
}
#: File of each ground-truth table in the truth directory (the layout names the decisions).
_TRUTH_FILES: dict[str, str] = {
    "renewal_decisions": TRUTH_DECISIONS,
    "accounts": "accounts.parquet",
    "pit_oracle": TRUTH_PIT_ORACLE,
}


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
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
    """One table, zstd-compressed (explicit, so the files do not change with pyarrow's default)."""
    pq.write_table(to_arrow(frame, schema), path, compression="zstd")


def check_separate_dirs(raw_dir: Path, truth_dir: Path) -> None:
    """Raise `ConfigError` unless neither directory is the other or inside it: the pipeline
    reads raw_dir and must never see the truth."""
    raw_abs, truth_abs = Path(raw_dir).resolve(), Path(truth_dir).resolve()
    if raw_abs == truth_abs or raw_abs in truth_abs.parents or truth_abs in raw_abs.parents:
        raise ConfigError(
            f"raw_dir ({raw_dir}) and truth_dir ({truth_dir}) must be separate directories, "
            "neither inside the other: the pipeline reads raw_dir and must never see the truth"
        )


def write_simulation(
    config: SimulationConfig, raw_dir: Path, truth_dir: Path, *, progress: bool = False
) -> dict[str, int]:
    """Simulate ``config.profile``'s company and write its export's raw tables to ``raw_dir``
    and the ground truth to ``truth_dir``.

    Each directory is built in a temporary sibling and renamed into place (replacing any
    previous content as a whole), so an interrupted run leaves the old data or nothing, never
    half a table. ``usage_events`` is written part by part as it is generated, so memory stays
    bounded by one chunk. Returns the number of rows per contract table (truth tables prefixed
    ``truth_``). Raises `ConfigError` when one directory is inside the other.
    """
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    check_separate_dirs(raw_dir, truth_dir)
    profile = company_profile(config.profile)
    files = profile.raw_tables
    rows: dict[str, int] = {}
    with atomic_path(raw_dir) as tmp_raw, atomic_path(truth_dir) as tmp_truth:
        tmp_raw.mkdir()
        tmp_truth.mkdir()
        company = profile.build(config)
        for name in profile.tables:
            if name == "usage_events":
                continue
            frame = export_frame(profile, name, company.tables[name])
            _write_parquet(frame, export_schema(profile, name), tmp_raw / f"{files[name]}.parquet")
            rows[name] = len(frame)
        for name, schema in TRUTH_TABLE_SCHEMAS.items():
            frame = company.truth[name]
            _write_parquet(frame, schema, tmp_truth / _TRUTH_FILES[name])
            rows[f"truth_{name}"] = len(frame)
        rows["usage_events"] = _write_usage_events(
            (export_frame(profile, "usage_events", chunk) for chunk in company.usage_events),
            export_schema(profile, "usage_events"),
            tmp_raw / files["usage_events"],
            n_chunks=-(-int(config.n_accounts) // int(config.events_chunk_accounts)),
            progress=progress,
        )
        del company
    logger.info(
        "simulation (%s) written to %s (truth in %s): %s", profile.name, raw_dir, truth_dir, rows
    )
    return rows


def _write_usage_events(
    chunks: Iterator[pd.DataFrame],
    schema: pa.Schema,
    out_dir: Path,
    *,
    n_chunks: int,
    progress: bool,
) -> int:
    """Write usage_events part by part as chunks come; returns the rows written."""
    out_dir.mkdir()
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
