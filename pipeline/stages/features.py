"""Features stage: validated tables -> one row per account and snapshot date, with the label.

The table itself is built by `pipeline.feature_engine` (shared with the backtest and scoring);
this stage picks the training snapshots, writes the table and summarises every feature.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from pipeline.core.atomic import atomic_path, write_table
from pipeline.core.config import Config
from pipeline.core.errors import FeatureError
from pipeline.core.labels import LABEL
from pipeline.feature_engine.build import (
    FeatureResult,
    compute_features,
    default_snapshot_start,
    feature_settings,
    read_present_tables,
    snapshot_dates,
    vocabulary_of,
)
from pipeline.feature_engine.vocabulary import METADATA_KEY

log = logging.getLogger(__name__)


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


def run_features(
    config: Config,
    interim_dir: Path,
    out_path: Path,
    summary_path: Path,
    *,
    engine_name: str | None = None,
    single_date: str | None = None,
) -> dict:
    """The stage's I/O edge: read the validation report, build, write atomically."""
    cfg = config.features
    as_of = config.base.as_of_date
    tables, _ = read_present_tables(interim_dir)
    settings = feature_settings(config, interim_dir=interim_dir)
    if single_date is not None:
        day = pd.Timestamp(single_date).date()
        if day > as_of:
            raise FeatureError(f"--as-of {day} is after the data's as-of date {as_of}")
        dates = [day]
    else:
        start = cfg.snapshot_start or default_snapshot_start(
            Path(interim_dir) / "contracts.parquet", settings.max_window
        )
        dates = snapshot_dates(start, as_of, cfg.snapshot_cadence)
    name = engine_name or cfg.engine
    result = compute_features(
        config, Path(interim_dir), tables, dates, settings=settings, engine_name=name
    )
    summary = feature_summary(result)
    summary["engine"] = name
    # the names resolved against this data (params or derived), which the model keeps
    vocabulary = vocabulary_of(settings)
    summary["vocabulary"] = vocabulary.as_dict()
    summary["advanced_modules"] = list(settings.advanced_modules)
    write_table(
        result.table, Path(out_path), metadata={METADATA_KEY: vocabulary.to_json().encode()}
    )
    with atomic_path(Path(summary_path)) as tmp:
        tmp.write_text(summary_json(summary))
    return summary
