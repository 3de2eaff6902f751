"""The weekly job with a saved usage grain against a full recomputation of the same week.

Why: the weekly job scores a week that adds a few days to years of history. With
`--feature-state` it folds only the new days into the usage grain saved the week before
(`pipeline.feature_engine.state`); this prints how much that saves, and checks that both give
the same feature table.

Data: an interim folder `bench/bench_features.py --data DIR` made (``DIR/<size>/interim``).
"Last week" is the same export without the last 7 days of usage events (written once, with
DuckDB, to ``DIR/<size>/last_week``; the other tables are linked). The dates are the ones
`churn score` computes features for (``score.trend_weeks`` weeks ending at as-of).

Steps, each in a fresh process (wall time and peak RSS):

1. bare scan: the events read once, grouped by account (the floor);
2. full recomputation: this week, no saved grain (what `churn score` does without the option);
3. (setup, not a figure) last week with a saved grain: a full pass that saves it;
4. incremental: this week folded into a copy of that saved grain.

Example::

    python -m bench.bench_incremental --data /tmp/bench_features --sizes 20000000,100000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pandas as pd

from bench.bench_features import _measure_scan, _result
from bench.measure import current_rss_mib, in_fresh_process, load_average
from pipeline.core.config import load_config
from pipeline.core.layout import VALIDATION_REPORT
from pipeline.data.contract import interim_path
from pipeline.feature_engine.build import (
    build_features,
    day_number,
    feature_settings,
    present_tables,
)
from pipeline.feature_engine.engines import DuckDBEngine
from pipeline.feature_engine.state import part_paths
from pipeline.stages.score import weeks_to_score

ROOT = Path(__file__).resolve().parents[1]
WEEK = timedelta(days=7)


def _last_week(interim: Path, out: Path, cut) -> Path:
    """The export a week earlier: usage events before `cut`, every other table linked."""
    if (out / VALIDATION_REPORT).is_file():
        return out
    import duckdb

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for entry in interim.iterdir():
        if entry.name != "usage_events":
            (out / entry.name).symlink_to(entry.resolve())
    events = out / "usage_events"
    events.mkdir()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    source = str(interim_path(interim, "usage_events") / "*.parquet")
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{source}') WHERE occurred_at < "
        f"CAST('{cut.isoformat()}' AS TIMESTAMPTZ)) TO '{events / 'part-0.parquet'}' "
        "(FORMAT PARQUET)"
    )
    con.close()
    return out


def _features(interim: Path, tables, dates, settings, state: Path | None, out: Path | None):
    """build_features as `churn score` runs it; the table is written to `out` for comparison."""
    rss_before = current_rss_mib()
    start = time.perf_counter()
    engine = DuckDBEngine()
    try:
        result = build_features(engine, interim, tables, dates, settings, state_dir=state)
    finally:
        engine.close()
    figures = _result(start, rss_before, len(result.table))
    if out is not None:
        result.table.to_parquet(out)
    if state is not None:
        figures["parts"] = len(part_paths(state))
    return figures


def _measure(size_dir: Path, config) -> dict:
    interim = size_dir / "interim"
    report = json.loads((interim / VALIDATION_REPORT).read_text())
    tables = present_tables(report)
    as_of = config.base.as_of_date
    settings = feature_settings(config, interim_dir=interim)
    dates = weeks_to_score(as_of, config.score.trend_weeks)
    last_as_of = as_of - WEEK
    start = time.perf_counter()
    last = _last_week(interim, size_dir / "last_week", last_as_of)
    print(f"  setup: last week's export ready in {time.perf_counter() - start:.0f} s", flush=True)
    # the model's vocabulary is fixed from week to week: last week runs with this week's
    last_settings = replace(settings, as_of_day=day_number(last_as_of))
    work = size_dir / "incremental_workdir"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    seeded = work / "seeded_state"
    seed = in_fresh_process(
        _features,
        last,
        tables,
        weeks_to_score(last_as_of, config.score.trend_weeks),
        last_settings,
        seeded,
        None,
        workdir=work,
    )
    print(f"  setup: last week with a saved grain {seed['wall_s']:.1f} s", flush=True)
    steps = {"scan": in_fresh_process(_measure_scan, interim, None, None, workdir=work)}
    steps["full"] = in_fresh_process(
        _features, interim, tables, dates, settings, None, work / "full.parquet", workdir=work
    )
    state = work / "state"
    shutil.copytree(seeded, state)
    steps["incremental"] = in_fresh_process(
        _features, interim, tables, dates, settings, state, work / "incr.parquet", workdir=work
    )
    full = pd.read_parquet(work / "full.parquet")
    incremental = pd.read_parquet(work / "incr.parquet")
    identical = full.equals(incremental)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "events": int(report["tables"]["usage_events"]["rows_accepted"]),
        "dates": dates,
        "steps": steps,
        "identical": identical,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="bench_features' --data DIR")
    parser.add_argument("--sizes", default="2000000", help="comma-separated sizes in DIR")
    args = parser.parse_args()
    config = load_config(ROOT / "params.yaml")
    print(f"load average before: {load_average()} (2 cores, shared)")
    for size in args.sizes.split(","):
        size_dir = args.data / size.strip()
        print(f"\n=== size {int(size):,} ({size_dir}) ===", flush=True)
        m = _measure(size_dir, config)
        s = m["steps"]
        print(
            f"{m['events']:,} events; {len(m['dates'])} scoring weeks "
            f"{m['dates'][0]}..{m['dates'][-1]}"
        )
        print(f"{'step':26}{'wall s':>9}{'peak RSS MiB':>14}{'x scan':>9}")
        for name, label in (
            ("scan", "bare scan"),
            ("full", "full recomputation"),
            ("incremental", "incremental (saved grain)"),
        ):
            r = s[name]
            ratio = r["wall_s"] / s["scan"]["wall_s"]
            print(f"{label:26}{r['wall_s']:>9.2f}{r['peak_rss_mib']:>14,.0f}{ratio:>8.2f}x")
        speedup = s["full"]["wall_s"] / s["incremental"]["wall_s"]
        verdict = "PASS" if speedup >= 20 else "FAIL"
        print(
            f"full / incremental: {speedup:.1f}x (target >= 20x at 100M: {verdict}); "
            f"saved grain reused: {s['incremental']['parts'] == 2}; "
            f"feature tables identical: {m['identical']}"
        )
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
