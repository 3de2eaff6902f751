"""Features stage: validated tables -> one row per account and snapshot date, with the label.

Snapshot dates come from a cadence (monthly for training; a single date for weekly scoring).
The feature definitions live in `features/` and run on the engine named in params. Feature
families whose input table is absent are left out and reported, never a failure.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.definitions import FeatureSettings, feature_statements
from features.registry import FAMILIES, Feature, available, build_registry
from pipeline.contract import TABLE_ORDER, TABLES, interim_path
from pipeline.engines import Engine

log = logging.getLogger(__name__)

EPOCH_DAY = date(1970, 1, 1)
ID_COLUMNS = ["account_id", "snapshot_date"]
LABEL = "churned"
META_COLUMNS = ["contract_id", "renewal_date"]


class FeatureError(ValueError):
    """The feature stage cannot run with this input or configuration."""


@dataclass(frozen=True)
class FeatureResult:
    """The feature table and what it was built from."""

    table: pd.DataFrame
    features: list[Feature]
    tables_present: set[str]
    families_unavailable: list[str]
    families_partial: list[str]
    features_unavailable: list[str]


def day_number(day: date) -> int:
    """Days since 1970-01-01, the integer time the definitions use."""
    return (day - EPOCH_DAY).days


def snapshot_dates(start: date, end: date, cadence: str) -> list[date]:
    """Snapshot dates from `start` to `end` inclusive on a cadence.

    `monthly`: the first of each month; `weekly`: each Monday; `Nd`: every N days from start.
    """
    if start > end:
        raise FeatureError(f"snapshot start {start} is after the last snapshot date {end}")
    if cadence == "monthly":
        stamps = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="MS")
    elif cadence == "weekly":
        stamps = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="W-MON")
    elif cadence.endswith("d") and cadence[:-1].isdigit() and int(cadence[:-1]) > 0:
        stamps = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=f"{cadence[:-1]}D")
    else:
        raise FeatureError(
            f"features.snapshot_cadence must be monthly, weekly or Nd (e.g. 14d), not {cadence!r}"
        )
    return [s.date() for s in stamps]


def snapshot_frame(dates: list[date]) -> pd.DataFrame:
    """The snapshot dates as the definitions expect them: date, day number, epoch seconds."""
    days = np.array([day_number(d) for d in dates], dtype="int64")
    return pd.DataFrame(
        {
            "snapshot_date": pd.Series(pd.to_datetime(list(dates))).dt.date,
            "snap_day": days,
            "snap_epoch": days * 86_400,
        }
    )


def present_tables(report: dict) -> set[str]:
    """Tables the ingest stage accepted (status ok), from its validation report."""
    return {name for name, t in report["tables"].items() if t["status"] == "ok"}


def build_features(
    engine: Engine,
    interim_dir: Path,
    tables_present: set[str],
    dates: list[date],
    settings: FeatureSettings,
    *,
    batch_size: int = 12,
) -> FeatureResult:
    """Run the feature definitions on `engine` over the interim tables for `dates`."""
    missing_required = [t for t in TABLE_ORDER if TABLES[t].required and t not in tables_present]
    if missing_required:
        raise FeatureError(f"required tables missing from interim data: {missing_required}")
    if not dates:
        raise FeatureError("no snapshot dates to compute features for")
    registry = build_registry(settings.windows)
    usable = available(registry, tables_present)
    for name in sorted(tables_present):
        engine.register_parquet(name, interim_path(interim_dir, name))
    statements = feature_statements(settings, tables_present, [f.name for f in usable])
    # Snapshots in batches bound the size of the snapshot x history joins (memory), while the
    # snapshot-independent views (usage per user and day...) are built once.
    batches = []
    for first in range(0, len(dates), batch_size):
        engine.register_frame("snapshot_dates", snapshot_frame(dates[first : first + batch_size]))
        batches.append(engine.run(statements))
    raw = pd.concat(batches, ignore_index=True) if len(batches) > 1 else batches[0]
    table = _tidy(raw, usable)
    unavailable_features = [f.name for f in registry if f not in usable]
    usable_families = {f.family for f in usable}
    families_unavailable = [fam for fam in FAMILIES if fam not in usable_families]
    families_partial = sorted({f.family for f in registry if f not in usable} & usable_families)
    return FeatureResult(
        table=table,
        features=usable,
        tables_present=set(tables_present),
        families_unavailable=families_unavailable,
        families_partial=families_partial,
        features_unavailable=unavailable_features,
    )


def _tidy(raw: pd.DataFrame, features: list[Feature]) -> pd.DataFrame:
    """Stable dtypes whatever the engine: floats for numbers, categories for categories."""
    out = pd.DataFrame(
        {
            "account_id": raw["account_id"].astype("string"),
            "snapshot_date": pd.to_datetime(raw["snapshot_date"]).dt.date,
        }
    )
    for f in features:
        values = raw[f.name]
        if f.dtype == "category":
            out[f.name] = values.astype("string")
        else:
            out[f.name] = pd.to_numeric(values, errors="raise").astype("float64")
    out["contract_id"] = raw["contract_id"].astype("string")
    out["renewal_date"] = pd.to_datetime(
        raw["renewal_day"].astype("int64"), unit="D", origin="unix"
    ).dt.date
    out[LABEL] = pd.to_numeric(raw[LABEL]).astype("Float64")
    return out.sort_values(ID_COLUMNS, kind="stable").reset_index(drop=True)


def feature_summary(result: FeatureResult) -> dict:
    """Coverage, missing share and distribution per feature, plus label counts."""
    table = result.table
    labels = table[LABEL]
    per_feature = {}
    for f in result.features:
        col = table[f.name]
        entry: dict[str, object] = {
            "family": f.family,
            "missing_share": round(float(col.isna().mean()), 6),
            "coverage": round(float(col.notna().mean()), 6),
        }
        if f.dtype == "category":
            counts = col.value_counts(dropna=True).sort_index()
            entry["categories"] = {str(k): int(v) for k, v in counts.items()}
        else:
            numbers = col.dropna()
            if len(numbers):
                q = numbers.quantile([0.05, 0.5, 0.95])
                entry.update(
                    mean=round(float(numbers.mean()), 6),
                    min=round(float(numbers.min()), 6),
                    p05=round(float(q.loc[0.05]), 6),
                    p50=round(float(q.loc[0.5]), 6),
                    p95=round(float(q.loc[0.95]), 6),
                    max=round(float(numbers.max()), 6),
                )
        per_feature[f.name] = entry
    return {
        "rows": len(table),
        "accounts": int(table["account_id"].nunique()),
        "snapshots": int(table["snapshot_date"].nunique()),
        "first_snapshot": str(table["snapshot_date"].min()) if len(table) else None,
        "last_snapshot": str(table["snapshot_date"].max()) if len(table) else None,
        "labelled_rows": int(labels.notna().sum()),
        "censored_rows": int(labels.isna().sum()),
        "churned_rows": int((labels == 1).sum()),
        "churn_rate_labelled": round(float(labels.mean()), 6) if labels.notna().any() else None,
        "families_available": sorted({f.family for f in result.features}),
        "families_unavailable": result.families_unavailable,
        "families_partial": result.families_partial,
        "features_unavailable": result.features_unavailable,
        "tables_present": sorted(result.tables_present),
        "features": per_feature,
    }


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def default_snapshot_start(contracts_path: Path, max_window: int) -> date:
    """The earliest contract start plus the longest window: the first date with full history."""
    import pyarrow.parquet as pq

    starts = pq.read_table(contracts_path, columns=["start_date"]).column("start_date")
    first = min(starts.to_pylist())
    return first + pd.Timedelta(days=max_window).to_pytimedelta()


def run_features(
    params: dict,
    interim_dir: Path,
    out_path: Path,
    summary_path: Path,
    *,
    engine_name: str | None = None,
    single_date: str | None = None,
) -> dict:
    """The stage's I/O edge: read params and the validation report, build, write atomically."""
    from features.definitions import settings_from_params
    from pipeline.atomic import atomic_path, write_table
    from pipeline.engines import EngineError, open_engine
    from pipeline.ingest import REPORT_NAME
    from pipeline.params import ConfigError, as_of_timestamp, section

    cfg = section(params, "features")
    as_of = as_of_timestamp(params).date()
    report_path = Path(interim_dir) / REPORT_NAME
    if not report_path.is_file():
        raise FeatureError(f"{report_path} not found: run `churn ingest` first")
    tables = present_tables(json.loads(report_path.read_text()))
    try:
        settings = settings_from_params(params, day_number(as_of))
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"features section of params.yaml is incomplete: {err}") from err
    if single_date is not None:
        day = pd.Timestamp(single_date).date()
        if day > as_of:
            raise FeatureError(f"--as-of {day} is after the data's as-of date {as_of}")
        dates = [day]
    else:
        start = cfg.get("snapshot_start")
        start = (
            pd.Timestamp(str(start)).date()
            if start
            else default_snapshot_start(
                Path(interim_dir) / "contracts.parquet", settings.max_window
            )
        )
        dates = snapshot_dates(start, as_of, str(cfg.get("snapshot_cadence", "monthly")))
    name = engine_name or str(cfg.get("engine", "duckdb"))
    try:
        engine = open_engine(name, cfg.get(name) or {})
        try:
            result = build_features(
                engine,
                Path(interim_dir),
                tables,
                dates,
                settings,
                batch_size=int(cfg.get("snapshot_batch_size", 12)),
            )
        finally:
            engine.close()
    except EngineError as err:
        raise FeatureError(str(err)) from err
    summary = feature_summary(result)
    summary["engine"] = name
    write_table(result.table, Path(out_path))
    with atomic_path(Path(summary_path)) as tmp:
        tmp.write_text(summary_json(summary))
    return summary
