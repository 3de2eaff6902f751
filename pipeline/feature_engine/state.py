"""The saved usage grain of the weekly job, so a week folds in only its new days' events.

Why: the one pass over the whole event history (`user_day`: account, user and day) is most
of a features run, and a weekly run adds a week to years of history. The saved grain is a
cache, never a source of truth: it is reused only when it is provably what a full run would
build, and otherwise rebuilt.

A saved grain holds, for the days before `before_day` (the as-of day of the run that wrote
it): the user-day rows (Parquet parts sorted by day, one part per run that added days), the
module bits those rows were built with, and a fingerprint of each day's raw events (rows,
summed counts and two order-free sums of row hashes). A run reuses it when

- it was written for the same grain (the settings that shape `user_day`: advanced modules,
  event types, whether events carry values; and the engine and its version, whose row hash
  the fingerprints use), and
- every day before `before_day` has the same fingerprint in today's events: a late or
  corrected row for an old day, a re-export or a changed value map forces a full rebuild.

Writes are ordered so that a run stopped midway leaves either the old grain or none: the
metadata is removed before a rebuild and written last; rows a stray part holds for days at or
after `before_day` are never read (`user_day` reads the saved days before it only).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.base import FeatureSettings
from features.sql import day_of_timestamp
from pipeline.data.contract import TABLES

log = logging.getLogger(__name__)

FORMAT = 1
META = "meta.json"
PARTS = "user_day"
MODULE_BITS = "module_bits.parquet"
FINGERPRINTS = "day_fingerprints.parquet"
# Parts beyond this are merged into one on the next write (a year of weekly runs is 52).
MAX_PARTS = 32


@dataclass(frozen=True)
class GrainPlan:
    """What this run does with the saved grain: reuse it up to `since`, or rebuild it."""

    directory: Path
    key: dict
    fingerprints: pd.DataFrame  # today's, every day
    since: int | None  # None: a full pass (and the grain is rewritten)
    reason: str  # why (for the log)


def grain_key(settings: FeatureSettings, engine_name: str, engine_version: str) -> dict:
    """The settings and engine a saved grain was built for; any difference means a rebuild."""
    return {
        "format": FORMAT,
        "engine": engine_name,
        "engine_version": engine_version,
        "advanced_modules": sorted(settings.advanced_modules),
        "event_types": list(settings.event_types),
        "usage_value": bool(settings.usage_value),
    }


def fingerprint_sql() -> str:
    """Per UTC day of usage events: rows, summed counts and two order-free sums of row hashes.

    DuckDB's `hash` of every contract column; a row added, removed or changed on a day changes
    its fingerprint (a collision of both hash sums and the counts is not a practical risk).
    """
    columns = ", ".join(TABLES["usage_events"].column_names)
    return f"""
        SELECT {day_of_timestamp("occurred_at")} AS day,
               COUNT(*) AS row_count,
               SUM(count) AS events,
               BIT_XOR(hash({columns})) AS hash_xor,
               CAST(SUM(hash({columns}) >> 32) AS BIGINT) AS hash_high_sum
        FROM usage_events
        GROUP BY 1
        """


def plan_grain(
    directory: Path, key: dict, fingerprints: pd.DataFrame, *, as_of_day: int
) -> GrainPlan:
    """Reuse the grain saved in `directory`, or say why not (pure: reads only the directory)."""
    directory = Path(directory)

    def rebuild(reason: str) -> GrainPlan:
        return GrainPlan(directory, key, fingerprints, None, reason)

    meta_path = directory / META
    if not meta_path.is_file():
        return rebuild(f"no saved usage grain in {directory}")
    try:
        meta = json.loads(meta_path.read_text())
        saved = pd.read_parquet(directory / FINGERPRINTS)
    except (OSError, ValueError) as err:
        return rebuild(f"the saved usage grain in {directory} cannot be read ({err})")
    if meta.get("key") != key:
        changed = sorted(k for k in key if meta.get("key", {}).get(k) != key[k])
        return rebuild(f"the saved usage grain was built with other settings: {changed}")
    before = int(meta["before_day"])
    if before > as_of_day:
        return rebuild("the saved usage grain is newer than this run's as-of date")
    difference = changed_days(saved, fingerprints, before_day=before)
    if difference:
        return rebuild(
            f"{len(difference)} saved day(s) changed in the events (first: day "
            f"{difference[0]}); late or corrected rows"
        )
    return GrainPlan(directory, key, fingerprints, before, f"reusing days before {before}")


def changed_days(saved: pd.DataFrame, current: pd.DataFrame, *, before_day: int) -> list[int]:
    """The days before `before_day` whose fingerprint differs (or exists on one side only)."""
    cols = ["row_count", "events", "hash_xor", "hash_high_sum"]
    a = saved[saved["day"] < before_day].set_index("day")[cols]
    b = current[current["day"] < before_day].set_index("day")[cols]
    days = a.index.union(b.index)
    a, b = a.reindex(days), b.reindex(days)
    differs = ~((a == b) | (a.isna() & b.isna())).all(axis=1)
    return sorted(int(d) for d in days[differs.to_numpy()])


def part_paths(directory: Path) -> list[Path]:
    return sorted((Path(directory) / PARTS).glob("part-*.parquet"))


def save_grain(engine, plan: GrainPlan, *, before_day: int) -> None:
    """Write the grain of this run (engine's `user_day`, `module_bits`) for days before
    `before_day`: a new part with the new days, or everything after a rebuild."""
    directory = plan.directory
    parts = directory / PARTS
    directory.mkdir(parents=True, exist_ok=True)
    if plan.since is None or len(part_paths(directory)) >= MAX_PARTS:
        # everything in one new part, written beside the old ones before they go (a
        # compaction reads them), and no metadata while the parts are swapped
        fresh = directory / (PARTS + ".new")
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        rows = f"SELECT * FROM user_day WHERE day < {before_day} ORDER BY day"
        _write(engine, rows, fresh / "part-00000")
        (directory / META).unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
        os.replace(fresh, parts)
    else:
        number = len(part_paths(directory))
        rows = f"SELECT * FROM user_day_new WHERE day < {before_day} ORDER BY day"
        _write(engine, rows, parts / f"part-{number:05d}")
    bits = directory / MODULE_BITS.removesuffix(".parquet")
    _write(engine, "SELECT * FROM module_bits ORDER BY bit", bits)
    kept = plan.fingerprints[plan.fingerprints["day"] < before_day].sort_values("day")
    tmp = directory / (FINGERPRINTS + ".tmp")
    kept.to_parquet(tmp, index=False)
    os.replace(tmp, directory / FINGERPRINTS)
    meta_tmp = directory / (META + ".tmp")
    meta_tmp.write_text(json.dumps({"key": plan.key, "before_day": before_day}, indent=2) + "\n")
    os.replace(meta_tmp, directory / META)
    log.info("saved the usage grain for days before %d in %s", before_day, directory)


def _write(engine, sql: str, stem: Path) -> None:
    """`sql`'s rows to `stem`.parquet, whole or not at all."""
    tmp = stem.with_name(stem.name + ".parquet.tmp")
    engine.write_parquet(sql, tmp)
    os.replace(tmp, stem.with_name(stem.name + ".parquet"))
