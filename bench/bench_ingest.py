"""Benchmark of usage-event ingest against a plain DuckDB read and write of the same Parquet.

Why: usage events are the one table whose ingest cost grows with the customer's product
volume (100M rows is a normal year for a mid-sized SaaS company). Ingest validates every row
(types, time zones, foreign keys against accepted accounts and users, as-of, bounds) and
writes accepted and quarantined rows; it should cost about what reading and writing the data
costs, not ten times more. For the same input this prints

* (a) a plain DuckDB ``COPY (SELECT * FROM read_parquet(...)) TO '...parquet'``: the floor,
* (b) the project's ingest (``ingest_source``, the real code path, Arrow validation of the
  streamed table), and
* (c) with ``--with-pandas``, the reference pandas validation (meant for the smallest size:
  it runs at a few hundred thousand rows per second),

each with wall time, rows/s, peak RSS and the ratio to (a). Each runs in a fresh child process,
so peak RSS is its own (the data generation does not count). With (c) the outputs of (b) and
(c) are compared byte for byte.

The input is synthetic and typed like a Parquet export (timestamps with a zone, integer counts,
text ids), generated in DuckDB, with a small share of bad rows (negative counts, unknown
accounts, events after as-of, missing or infinite values) so the quarantine path is exercised.
``--data DIR`` keeps the generated source in DIR and reuses it on the next run. The load
average before and after is printed: timings on a shared machine are noisy.

Examples::

    python -m bench.bench_ingest --events 2000000 --with-pandas
    python -m bench.bench_ingest --events 20000000 --data /tmp/bench_ingest20m
    python -m bench.bench_ingest --events 100000000 --data /tmp/bench_ingest100m
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.measure import in_fresh_process, load_average, peak_rss_mib

AS_OF = "2025-01-01"
N_ACCOUNTS = 20_000
USERS_PER_ACCOUNT = 10
# Every so many rows one is bad in a given way (about 0.1% of rows in all).
_BAD_EVERY = {"negative_count": 4_001, "unknown_account": 5_003, "after_as_of": 7_001}


# --- the input ---------------------------------------------------------------------------------


def generate(raw: Path, events: int) -> None:
    """A source directory: accounts, contracts and users (small) and `events` usage events."""
    import duckdb

    tmp = raw.with_name(raw.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    n, u = N_ACCOUNTS, USERS_PER_ACCOUNT

    def copy(sql: str, name: str) -> None:
        con.execute(
            f"COPY ({sql}) TO '{tmp / name}' (FORMAT parquet, COMPRESSION zstd, "
            "ROW_GROUP_SIZE 1000000)"
        )

    copy(
        f"""SELECT 'A' || i AS account_id, 'Account ' || i AS account_name,
               ['smb', 'mid_market', 'enterprise'][1 + i % 3] AS segment,
               TIMESTAMPTZ '2022-01-01 00:00:00+00' AS created_at
            FROM range({n}) t(i)""",
        "accounts.parquet",
    )
    copy(
        f"""SELECT 'K' || i AS contract_id, 'A' || i AS account_id,
               DATE '2022-01-01' AS start_date, DATE '2025-12-31' AS end_date,
               1000.0 + i AS arr, 5 + i % 50 AS seats, 'growth' AS plan
            FROM range({n}) t(i)""",
        "contracts.parquet",
    )
    copy(
        f"""SELECT 'U' || i AS user_id, 'A' || (i // {u}) AS account_id,
               TIMESTAMPTZ '2022-01-02 00:00:00+00' AS created_at, 'member' AS role
            FROM range({n * u}) t(i)""",
        "users.parquet",
    )
    span_us = 3 * 365 * 86_400 * 1_000_000
    bad = _BAD_EVERY
    copy(
        f"""SELECT
               CASE WHEN i % {bad["unknown_account"]} = 0 THEN 'A-unknown'
                    ELSE 'A' || (i % {n}) END AS account_id,
               CASE WHEN i % 7 = 0 THEN NULL
                    ELSE 'U' || ((i % {n}) * {u} + (i // {n}) % {u}) END AS user_id,
               CASE WHEN i % {bad["after_as_of"]} = 0 THEN TIMESTAMPTZ '2025-06-01 00:00:00+00'
                    ELSE TIMESTAMPTZ '2022-01-03 00:00:00+00'
                         + to_microseconds((i * 7919) % {span_us}::BIGINT) END AS occurred_at,
               ['dashboard', 'reports', 'automation', 'api', 'export'][1 + i % 5] AS module,
               ['view', 'run', 'call', NULL][1 + i % 4] AS event_type,
               (CASE WHEN i % {bad["negative_count"]} = 0 THEN -1 ELSE 1 + i % 7 END)::BIGINT
                   AS count,
               (CASE WHEN i % 3 = 0 THEN NULL ELSE (i % 100) / 4.0 END)::DOUBLE AS value
            FROM range({events}) t(i)""",
        "usage_events.parquet",
    )
    con.close()
    shutil.rmtree(raw, ignore_errors=True)
    tmp.rename(raw)


# --- measured steps (each in a fresh child) ----------------------------------------------------


def _measure_copy(source: Path, out: Path) -> dict[str, float]:
    import duckdb

    start, cpu = time.perf_counter(), time.process_time()
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM read_parquet('{source}')) TO '{out}' (FORMAT parquet)")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    con.close()
    return {"wall_s": wall, "cpu_s": cpu, "rows": rows, "rss_mib": peak_rss_mib()}


def _measure_ingest(raw: Path, out: Path, validation: str, batch_rows: int) -> dict[str, float]:
    import logging

    from pipeline.data.sources import DirectorySource
    from pipeline.stages import ingest
    from pipeline.stages.ingest import ingest_source

    logging.basicConfig(level=logging.WARNING)
    # The whole ingest is measured; the part spent on usage events is noted beside it.
    streamed = ingest._ingest_streamed
    spent: dict[str, float] = {}

    def timed(*args, **kwargs):
        begin = time.perf_counter()
        streamed(*args, **kwargs)
        spent["usage_events_s"] = time.perf_counter() - begin

    ingest._ingest_streamed = timed
    start, cpu = time.perf_counter(), time.process_time()
    report = ingest_source(
        DirectorySource(raw),
        out,
        as_of=pd.Timestamp(AS_OF, tz="UTC"),
        batch_rows=batch_rows,
        streamed_validation=validation,
    )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    events = report["tables"]["usage_events"]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        **spent,
        "rows": events["rows_read"],
        "accepted": events["rows_accepted"],
        "quarantined": events["rows_quarantined"],
        "reasons": events["quarantined_by_reason"],
        "rss_mib": peak_rss_mib(),
    }


def _same_files(left: Path, right: Path) -> bool:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    return files(left) == files(right)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="usage events to generate")
    parser.add_argument(
        "--data", type=Path, default=None, help="keep the generated source here and reuse it"
    )
    parser.add_argument(
        "--batch-rows", type=int, default=1_000_000, help="ingest chunk size (ingest.batch_rows)"
    )
    parser.add_argument(
        "--with-pandas",
        action="store_true",
        help="also run the reference pandas validation (slow: for the smallest size)",
    )
    args = parser.parse_args()

    keep = args.data is not None
    root = args.data or Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    raw = root / f"raw_{args.events}"
    try:
        if not (raw / "usage_events.parquet").is_file():
            start = time.perf_counter()
            generate(raw, args.events)
            print(f"setup: generated {args.events:,} events in {time.perf_counter() - start:.1f} s")
        size = (raw / "usage_events.parquet").stat().st_size / 2**20
        print(f"input: {raw / 'usage_events.parquet'} ({size:,.0f} MiB, zstd)")
        print(f"load average before: {load_average()}")
        results = {}
        copy_out = root / "copy.parquet"
        results["duckdb copy"] = in_fresh_process(
            _measure_copy, raw / "usage_events.parquet", copy_out
        )
        copy_out.unlink(missing_ok=True)
        runs = ["arrow", "pandas"] if args.with_pandas else ["arrow"]
        for validation in runs:
            out = root / f"interim_{validation}"
            results[f"ingest ({validation})"] = in_fresh_process(
                _measure_ingest, raw, out, validation, args.batch_rows
            )
        print(f"load average after:  {load_average()}")
        floor = results["duckdb copy"]
        print(
            f"\n{'step':<18} {'wall s':>8} {'cpu s':>7} {'rows/s':>12} {'peak RSS MiB':>13} "
            f"{'x copy':>7}  usage_events alone"
        )
        for name, result in results.items():
            if result is None:
                print(f"{name:<18} died (out of memory?)")
                continue
            ratio = result["wall_s"] / floor["wall_s"] if floor else float("nan")
            alone = ""
            if "usage_events_s" in result:
                seconds = result["usage_events_s"]
                alone = f"{seconds:.1f} s, {result['rows'] / seconds:,.0f} rows/s"
            print(
                f"{name:<18} {result['wall_s']:>8.1f} {result['cpu_s']:>7.1f} "
                f"{result['rows'] / result['wall_s']:>12,.0f} {result['rss_mib']:>13,.0f} "
                f"{ratio:>7.2f}  {alone}"
            )
        arrow = results["ingest (arrow)"]
        if arrow is not None:
            print(
                f"\nusage_events: {arrow['rows']:,} read, {arrow['accepted']:,} accepted, "
                f"{arrow['quarantined']:,} quarantined {json.dumps(arrow['reasons'])}"
            )
        if args.with_pandas:
            same = _same_files(root / "interim_arrow", root / "interim_pandas")
            print(f"arrow and pandas outputs identical byte for byte: {'yes' if same else 'NO'}")
    finally:
        for name in ("interim_arrow", "interim_pandas"):
            shutil.rmtree(root / name, ignore_errors=True)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
