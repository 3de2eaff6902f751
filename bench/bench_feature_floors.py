"""The floors under any feature engine: reading the usage events once, and reducing them to the
grains that windowed sums (account-day) and distinct users (user-day) need.

Why: `bench/bench_features.py` compares the project with a bare scan. How close an engine can
come to that scan depends on how much the first pass must keep: the bare scan groups by
account (a few thousand groups), while distinct users over a window need one row per user and
active day, or a sort by user. On exports already near user-day grain the user-day pass alone
is many times the bare scan, whatever the per-snapshot SQL does; these figures say how many.
docs/feature-engine.md records what they were when the engine's designs were compared.

Each query runs on one DuckDB connection with default settings (the engine's time zone), is
materialised as a temporary table, and is timed `--repeat` times (best and median printed).
Read an interim `usage_events` folder, e.g. one `bench/bench_features.py --data DIR` made.

Example::

    python -m bench.bench_feature_floors --interim /tmp/bench_features/20000000/interim
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.measure import load_average
from features.sql import day_of_timestamp

QUERIES = (
    ("bare scan: account_id, COUNT(*), SUM(count)", "account_id", "COUNT(*), SUM(count)"),
    (
        "scan of the five columns the usage family reads",
        "account_id",
        "COUNT(user_id), MAX(occurred_at), MAX(module), SUM(count)",
    ),
    ("account-day grain", f"account_id, {day_of_timestamp('occurred_at')}", "SUM(count)"),
    (
        "user-day grain",
        f"account_id, user_id, {day_of_timestamp('occurred_at')}",
        "SUM(count)",
    ),
)


def measure(interim: Path, repeat: int) -> list[tuple[str, float, float, int]]:
    """(label, best s, median s, rows) per query, in QUERIES order."""
    import duckdb

    events = str(Path(interim) / "usage_events" / "*.parquet").replace("'", "''")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    results = []
    try:
        for label, keys, aggregates in QUERIES:
            sql = f"SELECT {keys}, {aggregates} FROM read_parquet('{events}') GROUP BY {keys}"
            walls = []
            for _ in range(repeat):
                start = time.perf_counter()
                con.execute(f"CREATE OR REPLACE TEMP TABLE floor AS {sql}")
                walls.append(time.perf_counter() - start)
            rows = con.execute("SELECT COUNT(*) FROM floor").fetchone()[0]
            results.append((label, min(walls), statistics.median(walls), int(rows)))
    finally:
        con.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interim", type=Path, required=True, help="an interim data folder")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    import duckdb

    con = duckdb.connect()
    try:
        pattern = str(args.interim / "usage_events" / "*.parquet")
        events = con.execute("SELECT COUNT(*) FROM read_parquet(?)", [pattern]).fetchone()[0]
    finally:
        con.close()
    print(f"{events:,} usage events in {args.interim}; DuckDB {duckdb.__version__} defaults")
    before = load_average()
    results = measure(args.interim, args.repeat)
    base = results[0][1]
    print(f"{'query':52s} {'best s':>8s} {'median s':>9s} {'x scan':>7s} {'rows':>12s}")
    for label, best, median, rows in results:
        print(f"{label:52s} {best:8.2f} {median:9.2f} {best / base:6.1f}x {rows:12,d}")
    print(f"load average before / after: {before} / {load_average()} (shared machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
