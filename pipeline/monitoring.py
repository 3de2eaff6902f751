"""Monitoring: is this week's scoring still trustworthy?

Data-science warnings about the inputs of a scoring run: feature drift against the training
rows (population stability index), and source tables that are empty or stale at the as-of
date. They go to the data scientist's log, the lists manifest and the report; scoring itself
does not depend on them. The weekly job does: `delivery_holds` says when a list must not be
delivered (a required table stale, too many rows quarantined).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.errors import ScoringError
from pipeline.data.contract import REQUIRED_TABLES, ROW_STAMPS, interim_path
from pipeline.modeling.store import LoadedModel

# --- drift -------------------------------------------------------------------------------------


def psi(reference: pd.Series, current: pd.Series, *, bins: int, categorical: bool) -> float:
    """Population stability index of `current` against `reference`.

    Numbers: buckets at the reference's quantiles (ties merged), plus one for missing values;
    categories: one bucket per level plus missing. Empty buckets count as 0.01% so the index
    stays finite. Rules of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift.
    """
    eps = 1e-4

    def shares(codes: np.ndarray, n_buckets: int) -> np.ndarray:
        counts = np.bincount(codes, minlength=n_buckets).astype(float)
        return np.clip(counts / max(len(codes), 1), eps, None)

    if len(reference) == 0 or len(current) == 0:
        return math.nan
    if categorical:
        ref = reference.astype("string").fillna("\0missing")
        cur = current.astype("string").fillna("\0missing")
        levels = sorted(set(ref.unique()) | set(cur.unique()))
        lookup = {v: i for i, v in enumerate(levels)}
        ref_codes = ref.map(lookup).to_numpy(dtype=np.int64)
        cur_codes = cur.map(lookup).to_numpy(dtype=np.int64)
        n_buckets = len(levels)
    else:
        ref_values = reference.to_numpy(dtype=float, na_value=np.nan)
        cur_values = current.to_numpy(dtype=float, na_value=np.nan)
        known = ref_values[~np.isnan(ref_values)]
        edges = (
            np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1]))
            if len(known)
            else np.empty(0)
        )
        n_buckets = len(edges) + 2  # the last bucket holds missing values

        def codes(values: np.ndarray) -> np.ndarray:
            out = np.searchsorted(edges, values, side="right")
            return np.where(np.isnan(values), n_buckets - 1, out)

        ref_codes, cur_codes = codes(ref_values), codes(cur_values)
    expected = shares(ref_codes, n_buckets)
    actual = shares(cur_codes, n_buckets)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, model: LoadedModel, *, bins: int
) -> pd.DataFrame:
    """PSI of every model feature, training rows against scored rows, with its importance rank.

    The importance rank is by the learner's importance (total gain for trees, |coefficient| on
    standardised inputs for the logistic model) (1 = most important): drift in a feature
    the model barely uses matters little.
    """
    gain = model.learner.importance()
    rows = []
    for column in model.schema["features"]:
        name = column["name"]
        rows.append(
            {
                "feature": name,
                "psi": psi(
                    reference[name],
                    current[name],
                    bins=bins,
                    categorical=column["dtype"] == "category",
                ),
                "gain": float(gain.get(name, 0.0)),
            }
        )
    out = pd.DataFrame(rows, columns=["feature", "psi", "gain"])
    out = out.sort_values(["gain", "feature"], ascending=[False, True], kind="stable")
    out["importance_rank"] = np.arange(1, len(out) + 1)
    return out.reset_index(drop=True)


def drift_warnings(drift: pd.DataFrame, *, psi_warn: float, top_features: int) -> list[dict]:
    """One warning per top-`top_features` feature whose PSI exceeds `psi_warn`."""
    top = drift[drift["importance_rank"] <= top_features]
    out = []
    for rec in top[top["psi"] > psi_warn].to_dict("records"):
        out.append(
            {
                "kind": "drift",
                "message": (
                    f"feature {rec['feature']} (importance rank {rec['importance_rank']}) has "
                    f"drifted from the training data: PSI {rec['psi']:.2f} > {psi_warn:g}; "
                    "scores that lean on it are less reliable"
                ),
                "feature": rec["feature"],
                "psi": round(float(rec["psi"]), 4),
                "threshold": psi_warn,
                "importance_rank": int(rec["importance_rank"]),
            }
        )
    return out


def source_warnings(
    report: dict,
    latest: dict[str, date | None],
    *,
    as_of: date,
    stale_after_days: dict[str, int],
) -> list[dict]:
    """Warnings about source tables: empty (in the validation report, or no row before the
    as-of date) or stale (the latest row is more than `stale_after_days[table]` days old).

    `latest` maps each present table with a time column to the date of its latest row before
    the as-of date (None when it has none).
    """
    out = []
    for name, entry in sorted(report.get("tables", {}).items()):
        if entry.get("status") == "empty":
            out.append(
                {
                    "kind": "empty_table",
                    "table": name,
                    "message": f"table {name} is empty in the validated data "
                    "(validation_report.json): features that need it are missing",
                }
            )
    for name, when in sorted(latest.items()):
        if when is None:
            out.append(
                {
                    "kind": "empty_table",
                    "table": name,
                    "message": f"table {name} holds no rows before the as-of date {as_of}",
                }
            )
            continue
        limit = stale_after_days.get(name)
        age = (as_of - when).days
        if limit is not None and age > limit:
            out.append(
                {
                    "kind": "stale_table",
                    "table": name,
                    "latest": str(when),
                    "days_old": age,
                    "threshold_days": limit,
                    "message": f"table {name} looks stale: its latest row is from {when}, "
                    f"{age} days before the as-of date {as_of} (more than {limit})",
                }
            )
    return out


# --- drift reference and source freshness ---------------------------------------------


def training_reference(features_path: Path, model: LoadedModel) -> pd.DataFrame | None:
    """The feature rows of the model's training period (the drift reference), if available."""
    split = model.info.get("split") or {}
    if not Path(features_path).is_file() or "train_start" not in split:
        return None
    start = pd.Timestamp(split["train_start"]).date()
    end = pd.Timestamp(split["train_end"]).date()
    names = model.feature_names
    table = pd.read_parquet(features_path, columns=["snapshot_date", *names])
    dates = pd.to_datetime(table["snapshot_date"]).dt.date
    return table[(dates >= start) & (dates <= end)].reset_index(drop=True)


def latest_stamps(interim_dir: Path, tables: set[str], as_of: date) -> dict[str, date | None]:
    """Date of each present table's latest row before `as_of` (None: no such row)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    out: dict[str, date | None] = {}
    cutoff = pd.Timestamp(as_of, tz="UTC")
    for name in sorted(set(tables) & set(ROW_STAMPS)):
        column = ROW_STAMPS[name]
        dataset = ds.dataset(interim_path(interim_dir, name), format="parquet")
        kind = dataset.schema.field(column).type
        bound = (
            pa.scalar(as_of, type=kind) if pa.types.is_date(kind) else pa.scalar(cutoff, type=kind)
        )
        values = dataset.to_table(columns=[column], filter=ds.field(column) < bound)[column]
        latest = pc.max(values).as_py() if len(values) else None
        if latest is not None and not isinstance(latest, date):
            raise ScoringError(f"{name}.{column} is not a date or timestamp")
        out[name] = (
            latest.astimezone(cutoff.tzinfo).date() if hasattr(latest, "astimezone") else latest
        )
    return out


# --- the weekly job's hold: lists on bad data are written, not delivered ---------------------


def delivery_holds(
    warnings: Iterable[Mapping[str, Any]],
    validation_report: Mapping[str, Any],
    *,
    max_quarantine_share: float,
    required_tables: Collection[str] = REQUIRED_TABLES,
) -> list[str]:
    """Why this week's lists must not be delivered; empty when they may go out.

    Two reasons, each named with its table and numbers: a required table (`required_tables`,
    the contract's) is stale, as the score stage's `stale_table` warnings in the lists
    manifest record it (its latest row more than `score.stale_after_days[table]` days before
    the as-of date); or any table of the ingest `validation_report` had more than
    `max_quarantine_share` (`ingest.max_quarantine_share`) of its rows quarantined. A list
    scored on either looks as trustworthy as any other, so a CSM would act on it.
    """
    reasons = []
    for warning in warnings:
        if warning.get("kind") != "stale_table" or warning.get("table") not in required_tables:
            continue
        table = warning["table"]
        reasons.append(
            f"{table} is {warning['days_old']} days old (latest row {warning['latest']}; "
            f"score.stale_after_days.{table} = {warning['threshold_days']})"
        )
    for table, entry in sorted(validation_report.get("tables", {}).items()):
        read, quarantined = int(entry.get("rows_read", 0)), int(entry.get("rows_quarantined", 0))
        if read and quarantined / read > max_quarantine_share:
            reasons.append(
                f"{table} had {quarantined / read:.1%} of its rows quarantined "
                f"({quarantined} of {read}; ingest.max_quarantine_share = "
                f"{max_quarantine_share:.1%})"
            )
    return reasons


def hold_message(reasons: Sequence[str]) -> str:
    """The one line the weekly job prints (and cron mails) when it holds the lists back."""
    return f"weekly: not delivered: {'; '.join(reasons)}; rerun with --force to deliver anyway"
