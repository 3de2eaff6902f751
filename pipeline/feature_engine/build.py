"""Building the feature table: the feature definitions run on an engine over interim tables.

Shared by every stage that needs point-in-time features (features for training, the backtest's
weekly replay, weekly scoring), so none of them imports another. Snapshot dates come from a
cadence (monthly for training; single weeks for scoring). Feature families whose input table
is absent are left out and reported, never a failure.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.base import DeclarationSettings
from features.definitions import FeatureSettings, feature_statements, settings_from_config
from features.registry import FAMILIES, Feature, available, build_registry
from pipeline.core.config import Config
from pipeline.core.errors import FeatureError
from pipeline.core.labels import ID_COLUMNS, LABEL
from pipeline.core.layout import VALIDATION_REPORT
from pipeline.data.contract import TABLE_ORDER, TABLES, interim_path
from pipeline.feature_engine.engines import STATE_NEEDS_DUCKDB, Engine, open_engine
from pipeline.feature_engine.state import (
    MODULE_BITS,
    PARTS,
    GrainPlan,
    fingerprint_sql,
    grain_key,
    plan_grain,
    save_grain,
)
from pipeline.feature_engine.vocabulary import (
    Vocabulary,
    instant,
    parquet_pattern,
    resolve_vocabulary,
    scan,
)

log = logging.getLogger(__name__)

EPOCH_DAY = date(1970, 1, 1)
META_COLUMNS = ["contract_id", "renewal_date"]


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
    state_dir: Path | None = None,
) -> FeatureResult:
    """Run the feature definitions on `engine` over the interim tables for `dates`.

    With `state_dir`, the usage grain saved there by an earlier run is reused when it is
    provably what a full pass would build (see `pipeline.feature_engine.state`), and the grain
    of this run is saved there for the next one. The feature table is the same either way.
    """
    missing_required = [t for t in TABLE_ORDER if TABLES[t].required and t not in tables_present]
    if missing_required:
        raise FeatureError(f"required tables missing from interim data: {missing_required}")
    if not dates:
        raise FeatureError("no snapshot dates to compute features for")
    registry = build_registry(settings.windows, settings=settings)
    usable = available(registry, tables_present)
    for name in sorted(tables_present):
        engine.register_parquet(name, interim_path(interim_dir, name))
    # the windowed usage views read only the days these snapshots can see
    settings = replace(settings, first_snapshot_day=day_number(min(dates)))
    plan = None
    if state_dir is not None and "usage_events" in tables_present:
        plan = _plan_grain(engine, Path(state_dir), settings)
        settings = replace(settings, grain_state_before_day=plan.since)
    statements = feature_statements(settings, tables_present, [f.name for f in usable])
    # Snapshots in batches bound the size of the snapshot x history joins (memory), while the
    # snapshot-independent views (usage per user and day...) are built once.
    batches = []
    for first in range(0, len(dates), batch_size):
        engine.register_frame("snapshot_dates", snapshot_frame(dates[first : first + batch_size]))
        batches.append(engine.run(statements))
    raw = pd.concat(batches, ignore_index=True) if len(batches) > 1 else batches[0]
    if plan is not None:
        save_grain(engine, plan, before_day=settings.as_of_day)
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


def _plan_grain(engine: Engine, state_dir: Path, settings: FeatureSettings) -> GrainPlan:
    """Decide whether the saved usage grain is reused; register it with the engine if so."""
    if engine.name != "duckdb":
        raise FeatureError(STATE_NEEDS_DUCKDB)
    key = grain_key(settings, engine.name, engine.version)
    fingerprints = engine.query(fingerprint_sql())
    plan = plan_grain(state_dir, key, fingerprints, as_of_day=settings.as_of_day)
    log.info("usage grain: %s", plan.reason)
    if plan.since is not None:
        engine.register_parquet("user_day_state", state_dir / PARTS)
        engine.register_parquet("module_bits_state", state_dir / MODULE_BITS)
    return plan


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
    return out.sort_values(list(ID_COLUMNS), kind="stable").reset_index(drop=True)


def default_snapshot_start(contracts_path: Path, max_window: int) -> date:
    """The earliest contract start plus the longest window: the first date with full history."""
    import pyarrow.parquet as pq

    starts = pq.read_table(contracts_path, columns=["start_date"]).column("start_date")
    first = min(starts.to_pylist())
    return first + pd.Timedelta(days=max_window).to_pytimedelta()


# The usage SQL keeps the modules an account used as one bit each of a BIGINT.
MAX_MODULES = 63


def module_adoption(interim_dir: Path, as_of: date) -> pd.DataFrame:
    """Per product module: how many accounts used it, and how many events, before `as_of`.

    A metadata scan of one column pair with DuckDB (whatever the feature engine), so the
    module vocabulary comes from the data, not from the demo's module names.
    """
    return scan(
        "SELECT module, COUNT(DISTINCT account_id) AS accounts, SUM(count) AS events "
        "FROM read_parquet(?) WHERE occurred_at < CAST(? AS TIMESTAMPTZ) "
        "GROUP BY module ORDER BY module",
        [parquet_pattern(Path(interim_dir), "usage_events"), instant(as_of)],
    )


def resolve_advanced_modules(
    configured: tuple[str, ...] | None, adoption: pd.DataFrame
) -> tuple[tuple[str, ...], list[str]]:
    """(the advanced modules to use, warnings): from params when given, else from the data.

    Given modules that never occur in the data are dropped (and named in a warning), so no
    play names a module the customer's product does not have. When params give none
    (`features.advanced_modules: null`), the least-adopted third of the modules (by accounts
    using them) are the advanced ones: most customers start with the basic functions and need
    months to use the rest; with fewer than three modules there is no depth to measure.
    """
    modules = adoption["module"].astype(str).tolist()
    if len(modules) > MAX_MODULES:
        raise FeatureError(
            f"table 'usage_events', column 'module': {len(modules)} distinct modules, but the "
            f"usage-depth features count at most {MAX_MODULES} (examples: {modules[:5]}). Group "
            "rare modules with ingest.value_map.usage_events.module, or map a coarser column "
            "(product area) onto module with ingest.column_map"
        )
    warnings: list[str] = []
    if configured is None:
        if len(modules) < 3:
            return (), [
                f"features.advanced_modules not set and only {len(modules)} modules in "
                "usage_events: no module counts as advanced"
            ]
        ranked = adoption.sort_values(["accounts", "module"], kind="stable")["module"].astype(str)
        derived = tuple(sorted(ranked.head(len(modules) // 3)))
        return derived, [
            f"features.advanced_modules derived from the data (the least-adopted "
            f"third of {len(modules)} modules): {list(derived)}; set it in params "
            "to pin it"
        ]
    present = set(modules)
    kept = tuple(m for m in configured if m in present)
    absent = [m for m in configured if m not in present]
    if absent:
        warnings.append(
            f"features.advanced_modules names modules usage_events does not have: {absent}"
            + (
                "; none of them occurs, so advanced usage is 0 for every account"
                if not kept
                else ""
            )
            + f" (modules in the data: {modules[:12]}{'...' if len(modules) > 12 else ''})"
        )
    return kept, warnings


def feature_settings(
    config: Config,
    *,
    as_of: date | None = None,
    interim_dir: Path | None = None,
    modules_as_of: date | None = None,
    vocabulary: Vocabulary | None = None,
) -> FeatureSettings:
    """The feature definitions' settings from the typed config (as-of: base.as_of_date).

    With `vocabulary` (a trained model's), the data-dependent names are those. Else, with
    `interim_dir`, they are resolved against the data before `modules_as_of` (default: the
    as-of date), see `pipeline.feature_engine.vocabulary`; warnings are logged.
    """
    day = as_of or config.base.as_of_date
    settings = settings_from_config(config, day_number(day))
    if vocabulary is not None:
        return vocabulary.apply(settings)
    if interim_dir is None:
        return settings
    tables, _ = read_present_tables(interim_dir)
    resolved, warnings = resolve_vocabulary(config, Path(interim_dir), tables, modules_as_of or day)
    for warning in warnings:
        log.warning("%s", warning)
    return resolved.apply(settings)


def vocabulary_of(settings: DeclarationSettings) -> Vocabulary:
    """The data-dependent names the settings hold, to record beside what they built."""
    return Vocabulary(
        advanced_modules=tuple(settings.advanced_modules),
        event_types=tuple(settings.event_types),
        usage_value=bool(settings.usage_value),
        attributes=tuple(settings.attributes),
    )


def declared_registry(config: Config, vocabulary: Vocabulary | None) -> list[Feature]:
    """The registry a model was trained on: the config's settings with its vocabulary (None:
    the params' alone, for a model from before vocabularies were recorded)."""
    settings = settings_from_config(config, day_number(config.base.as_of_date))
    if vocabulary is not None:
        settings = vocabulary.apply(settings)
    return build_registry(settings.windows, settings=settings)


def read_present_tables(interim_dir: Path) -> tuple[set[str], dict]:
    """Tables ingest accepted, and its validation report; a clear error before ingest ran."""
    report_path = Path(interim_dir) / VALIDATION_REPORT
    if not report_path.is_file():
        raise FeatureError(f"{report_path} not found: run `churn ingest` first")
    report = json.loads(report_path.read_text())
    return present_tables(report), report


def compute_features(
    config: Config,
    interim_dir: Path,
    tables_present: set[str],
    dates: list[date],
    *,
    settings: FeatureSettings | None = None,
    engine_name: str | None = None,
    state_dir: Path | None = None,
) -> FeatureResult:
    """Open the configured engine, build the features for `dates`, close it (the I/O edge)."""
    cfg = config.features
    name = engine_name or cfg.engine
    options = getattr(cfg, name).model_dump() if name in ("duckdb", "spark") else {}
    engine = open_engine(name, options)
    try:
        return build_features(
            engine,
            Path(interim_dir),
            tables_present,
            dates,
            settings or feature_settings(config),
            batch_size=cfg.snapshot_batch_size,
            state_dir=state_dir,
        )
    finally:
        engine.close()
