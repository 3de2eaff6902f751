"""Benchmark of feature extraction at scale: DuckDB over interim Parquet, against a bare scan.

Why: the features stage is the one step whose cost grows with usage volume *and* with the
number of snapshots (every snapshot re-reads a window of usage). A customer with ~100M usage
events must be able to build its monthly training table on one ordinary machine, so we track

* wall time and events/s of ``build_features`` (DuckDB, monthly snapshots, params.yaml
  defaults, snapshots in batches of ``features.snapshot_batch_size`` dates per engine call)
  over interim data of a given size,
* its peak RSS, measured in a fresh child process so that the simulator and the ingest (the
  setup) do not pollute the figure, and
* the ratio to a bare DuckDB scan of the same event columns, also in a fresh child: the floor
  any engine pays to read the data once. Targets: ratio <= 3x, peak RSS <= 6 GiB.

Setup (simulate + ingest) is timed and printed but is not the measured figure. ``--data DIR``
keeps the generated data in DIR and reuses it on the next run, so the expensive setup need not
be repeated. ``--profile`` adds a per-statement breakdown: each view of
``features.definitions.feature_statements`` is materialised as a table in turn and timed, which
says which statement dominates (views are otherwise lazy and all cost lands in the last query).

Timings on a shared machine are noisy: the load average before and after is printed.

Examples::

    python -m bench.bench_features --target-events 2000000
    python -m bench.bench_features --data /tmp/bench100m --profile   # keeps /tmp/bench100m
    python -m bench.bench_features --data /tmp/bench100m --threads 2 --memory-limit 6GB
    python -m bench.bench_features --data /tmp/bench100m --snapshot-batch-size 4
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import date
from pathlib import Path

import pandas as pd

from features.definitions import FeatureSettings, Statement, settings_from_config
from pipeline.core.config import Config, SimulateSection, load_config
from pipeline.core.layout import VALIDATION_REPORT as REPORT_NAME
from pipeline.data.sources import DirectorySource
from pipeline.feature_engine.build import (
    build_features,
    day_number,
    default_snapshot_start,
    present_tables,
    snapshot_dates,
)
from pipeline.feature_engine.engines import DuckDBEngine
from pipeline.stages.ingest import ingest_source
from pipeline.stages.simulate import SimulationConfig, write_simulation

log = logging.getLogger(__name__)

TARGET_RATIO = 3.0
TARGET_RSS_GIB = 6.0
SCAN_COLUMNS = ("account_id", "user_id", "occurred_at", "module", "count")


# --- measurement helpers ---------------------------------------------------------------------


def _peak_rss_mib() -> float:
    """Peak RSS of this process's address space, in MiB.

    VmHWM (Linux) is reset by exec, so a spawned child reports only its own peak; ru_maxrss can
    carry the parent's RSS at fork time over an exec, so it is only the fallback.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _in_fresh_process(workdir: Path, func, *args):
    """Run ``func(*args)`` in a newly spawned interpreter (nothing inherited) and return its
    result; None when the child died (e.g. killed by the kernel's OOM killer).

    The child runs in ``workdir``: DuckDB spills to ``.tmp`` relative to the working directory,
    and the spill files belong with the benchmark's data, not in the repository.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=1, mp_context=context, initializer=os.chdir, initargs=(str(workdir),)
    ) as pool:
        try:
            return pool.submit(func, *args).result()
        except BrokenProcessPool:
            return None


def _dir_size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# --- setup: simulate + ingest ----------------------------------------------------------------


def _simulation_config(config: Config, n_accounts: int) -> SimulationConfig:
    """The demo config as `churn simulate` builds it from params, with ``n_accounts`` set."""
    return SimulationConfig.from_config(config, n_accounts=n_accounts)


def _accounts_for(config: Config, target_events: int, scratch: Path) -> tuple[int, float]:
    """Accounts needed for ~``target_events`` usage rows, from a pilot run of the default demo."""
    pilot = _simulation_config(config, SimulateSection().n_accounts)
    start = time.perf_counter()
    rows = write_simulation(pilot, scratch / "raw", scratch / "truth")
    wall = time.perf_counter() - start
    shutil.rmtree(scratch)
    per_account = rows["usage_events"] / pilot.n_accounts
    return max(1, round(target_events / per_account)), wall


def _prepare(config: Config, data_dir: Path, target_events: int) -> tuple[Path, dict[str, float]]:
    """Simulate and ingest into ``data_dir`` (raw/, truth/, interim/) unless already there.

    Returns the interim directory and the setup timings (empty when the data was reused).
    """
    if (data_dir / REPORT_NAME).is_file():
        return data_dir, {}
    interim = data_dir / "interim"
    if (interim / REPORT_NAME).is_file():
        return interim, {}
    setup: dict[str, float] = {}
    n_accounts, setup["pilot_s"] = _accounts_for(config, target_events, data_dir / "pilot")
    setup["n_accounts"] = n_accounts
    print(f"setup: simulating {n_accounts:,} accounts (~{target_events:,} events) in {data_dir}")
    start = time.perf_counter()
    rows = write_simulation(
        _simulation_config(config, n_accounts), data_dir / "raw", data_dir / "truth"
    )
    setup["simulate_s"] = time.perf_counter() - start
    setup["raw_events"] = rows["usage_events"]
    print(f"setup: simulated {rows['usage_events']:,} events in {setup['simulate_s']:.1f} s")
    start = time.perf_counter()
    ingest_source(
        DirectorySource(data_dir / "raw"),
        interim,
        as_of=config.base.as_of_timestamp,
        naive_timezone=config.ingest.naive_timezone,
        batch_rows=config.ingest.batch_rows,
    )
    setup["ingest_s"] = time.perf_counter() - start
    print(f"setup: ingested in {setup['ingest_s']:.1f} s")
    shutil.rmtree(data_dir / "truth")  # the benchmark never reads it
    return interim, setup


# --- measured steps (each runs in a fresh child) ---------------------------------------------


def _measure_features(
    interim: Path,
    tables: set[str],
    dates: list[date],
    settings: FeatureSettings,
    threads: int | None,
    memory_limit: str | None,
    batch_size: int,
) -> dict[str, float]:
    """build_features on DuckDB, exactly as the features stage runs it (minus the write)."""
    rss_before = _current_rss_mib()
    start = time.perf_counter()
    engine = DuckDBEngine(threads=threads, memory_limit=memory_limit)
    try:
        result = build_features(engine, interim, tables, dates, settings, batch_size=batch_size)
    finally:
        engine.close()
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_before_mib": rss_before,
        "rows": len(result.table),
        "columns": result.table.shape[1],
    }


def _measure_scan(interim: Path, threads: int | None, memory_limit: str | None) -> dict:
    """One bare DuckDB pass over the event columns the features read; every row is touched."""
    import duckdb

    rss_before = _current_rss_mib()
    source = str(interim / "usage_events" / "*.parquet").replace("'", "''")
    start = time.perf_counter()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            con.execute(f"SET memory_limit = '{memory_limit}'")
        rows, events, modules, first, _, _ = con.execute(
            f"""
            SELECT count(*), sum(count), count(DISTINCT module), CAST(min(occurred_at) AS VARCHAR),
                   min(account_id), max(user_id)
            FROM read_parquet('{source}')
            """
        ).fetchone()
        effective = con.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')"
        ).fetchone()
    finally:
        con.close()
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_before_mib": rss_before,
        "rows": rows,
        "events_total": events,
        "modules": modules,
        "first_event": str(first),
        "threads": effective[0],
        "memory_limit": effective[1],
    }


class _TimedDuckDBEngine(DuckDBEngine):
    """DuckDBEngine that materialises every statement as a table and times each one.

    Like DuckDBEngine, snapshot-independent (``static``) statements are built once, on the first
    batch; the others are rebuilt for every snapshot batch. Timings and rows are summed over the
    batches, per statement, in statement order.
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        # name -> [wall_s, rows, builds, materialised in the stage, static]
        self.timings: dict[str, list] = {}

    def _record(self, st: Statement, wall: float, rows: int) -> None:
        entry = self.timings.setdefault(st.name, [0.0, 0, 0, st.materialize, st.static])
        entry[0] += wall
        entry[1] += rows
        entry[2] += 1

    def run(self, statements: list[Statement]) -> pd.DataFrame:
        *views, final = statements
        for st in views:
            if st.static and st.name in self._built:
                continue
            start = time.perf_counter()
            self._con.execute(f"CREATE OR REPLACE TEMP TABLE {st.name} AS {st.sql}")
            wall = time.perf_counter() - start
            self._built.add(st.name)
            (rows,) = self._con.execute(f"SELECT count(*) FROM {st.name}").fetchone()
            self._record(st, wall, rows)
        start = time.perf_counter()
        frame = self._con.execute(
            f"SELECT * FROM ({final.sql}) AS q ORDER BY account_id, snapshot_date"
        ).df()
        self._record(final, time.perf_counter() - start, len(frame))
        return frame


def _profile_statements(
    interim: Path,
    tables: set[str],
    dates: list[date],
    settings: FeatureSettings,
    threads: int | None,
    memory_limit: str | None,
    batch_size: int,
) -> dict:
    """Per-statement wall time, each view materialised in order (so each is paid once)."""
    engine = _TimedDuckDBEngine(threads=threads, memory_limit=memory_limit)
    start = time.perf_counter()
    try:
        build_features(engine, interim, tables, dates, settings, batch_size=batch_size)
    finally:
        engine.close()
    return {
        "wall_s": time.perf_counter() - start,
        "peak_rss_mib": _peak_rss_mib(),
        "statements": engine.timings,
    }


# --- reporting -------------------------------------------------------------------------------


def _print_table(rows: list[tuple[str, str, str]]) -> None:
    print()
    print(f"{'':40}{'value':>20}  {'target / note'}")
    for label, value, note in rows:
        print(f"{label:40}{value:>20}  {note}")


def _check(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument(
        "--target-events",
        type=int,
        default=100_000_000,
        help="approximate usage_events rows to generate (ignored when --data holds data)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="directory to keep the generated data in, or to reuse it from (an interim dir "
        "or a directory with interim/); default: a temporary directory, deleted at the end",
    )
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file (default params)"
    )
    parser.add_argument(
        "--cadence", default="monthly", help="snapshot cadence: monthly, weekly or Nd"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="DuckDB threads (default: features.duckdb.threads, null = all cores)",
    )
    parser.add_argument(
        "--memory-limit",
        help="DuckDB memory_limit, e.g. 6GB (default: features.duckdb.memory_limit, null = "
        "DuckDB's default of 80%% of RAM)",
    )
    parser.add_argument(
        "--snapshot-batch-size",
        type=int,
        help="snapshot dates per engine call (default: features.snapshot_batch_size, else 12)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each measured step (best wall is shown)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also time each feature statement on its own (materialised in turn)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.snapshot_batch_size is not None and args.snapshot_batch_size < 1:
        parser.error("--snapshot-batch-size must be >= 1")

    config = load_config(args.params)
    duckdb_cfg = config.features.duckdb
    threads = args.threads if args.threads is not None else duckdb_cfg.threads
    memory_limit = args.memory_limit or duckdb_cfg.memory_limit
    batch_size = args.snapshot_batch_size or config.features.snapshot_batch_size
    as_of = config.base.as_of_date
    settings = settings_from_config(config, day_number(as_of))

    temporary = args.data is None
    data_dir = (args.data or Path(tempfile.mkdtemp(prefix="bench_features_"))).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    workdir = data_dir / "duckdb_workdir"  # DuckDB spills into workdir/.tmp
    load_start = _load_average()
    try:
        interim, setup = _prepare(config, data_dir, args.target_events)
        report = json.loads((interim / REPORT_NAME).read_text())
        tables = present_tables(report)
        events = int(report["tables"]["usage_events"]["rows_accepted"])
        first = config.features.snapshot_start or default_snapshot_start(
            interim / "contracts.parquet", settings.max_window
        )
        dates = snapshot_dates(first, as_of, args.cadence)
        interim_mib = _dir_size_mib(interim / "usage_events")
        workdir.mkdir(exist_ok=True)
        print(
            f"measuring: {events:,} events ({interim_mib:,.0f} MiB interim parquet), "
            f"{len(dates)} {args.cadence} snapshots {dates[0]}..{dates[-1]} "
            f"in batches of {batch_size}, DuckDB threads={threads or 'default'} "
            f"memory_limit={memory_limit or 'default'}"
        )

        scans, features = [], []
        for _ in range(args.repeat):
            scan = _in_fresh_process(workdir, _measure_scan, interim, threads, memory_limit)
            if scan is None:
                raise SystemExit("bare scan: the child process died (out of memory?)")
            scans.append(scan)
            print(f"bare scan: {scan['wall_s']:.1f} s, peak RSS {scan['peak_rss_mib']:,.0f} MiB")
            feat = _in_fresh_process(
                workdir,
                _measure_features,
                interim,
                tables,
                dates,
                settings,
                threads,
                memory_limit,
                batch_size,
            )
            if feat is None:
                raise SystemExit("features: the child process died (out of memory?)")
            features.append(feat)
            print(f"features:  {feat['wall_s']:.1f} s, peak RSS {feat['peak_rss_mib']:,.0f} MiB")
        profile = None
        if args.profile:
            profile = _in_fresh_process(
                workdir,
                _profile_statements,
                interim,
                tables,
                dates,
                settings,
                threads,
                memory_limit,
                batch_size,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
    load_end = _load_average()

    scan = min(scans, key=lambda r: r["wall_s"])
    feat = min(features, key=lambda r: r["wall_s"])
    ratio = feat["wall_s"] / scan["wall_s"]
    feat_rss_gib = max(r["peak_rss_mib"] for r in features) / 1024
    rows: list[tuple[str, str, str]] = []
    if setup:
        rows += [
            ("setup: accounts simulated", f"{int(setup['n_accounts']):,}", ""),
            ("setup: pilot (default demo) (s)", f"{setup['pilot_s']:.1f}", "to size the run"),
            ("setup: simulate (s)", f"{setup['simulate_s']:.1f}", "not measured figure"),
            ("setup: ingest (s)", f"{setup['ingest_s']:.1f}", "not measured figure"),
            (
                "setup: ingest rows/s",
                f"{setup['raw_events'] / setup['ingest_s']:,.0f}",
                "usage rows / ingest wall",
            ),
        ]
    else:
        rows.append(("setup", "reused", str(interim)))
    rows += [
        ("usage_events rows (interim)", f"{events:,}", f"bare scan counted {scan['rows']:,}"),
        ("interim usage_events size (MiB)", f"{interim_mib:,.0f}", ""),
        ("snapshot dates", f"{len(dates)}", f"{args.cadence}, {dates[0]}..{dates[-1]}"),
        (
            "snapshot batch size",
            f"{batch_size}",
            f"{-(-len(dates) // batch_size)} engine call(s)",
        ),
        ("DuckDB threads / memory_limit", f"{scan['threads']} / {scan['memory_limit']}", ""),
        ("bare scan wall (s)", f"{scan['wall_s']:.2f}", ", ".join(SCAN_COLUMNS)),
        ("bare scan peak RSS (MiB)", f"{scan['peak_rss_mib']:,.0f}", ""),
        ("features wall (s)", f"{feat['wall_s']:.2f}", "build_features, DuckDB"),
        (
            "features events/s",
            f"{events / feat['wall_s']:,.0f}",
            f"bare scan: {events / scan['wall_s']:,.0f}",
        ),
        ("features output rows", f"{int(feat['rows']):,}", f"{int(feat['columns'])} columns"),
        (
            "features peak RSS (GiB)",
            f"{feat_rss_gib:.2f}",
            f"<= {TARGET_RSS_GIB:g} GiB: {_check(feat_rss_gib <= TARGET_RSS_GIB)}"
            f" (child baseline {feat['rss_before_mib']:,.0f} MiB)",
        ),
        (
            "features / bare scan",
            f"{ratio:.1f}x",
            f"<= {TARGET_RATIO:g}x: {_check(ratio <= TARGET_RATIO)}",
        ),
    ]
    if args.repeat > 1:
        rows += [
            ("features wall, all runs (s)", "", ", ".join(f"{r['wall_s']:.1f}" for r in features)),
            ("bare scan wall, all runs (s)", "", ", ".join(f"{r['wall_s']:.1f}" for r in scans)),
            (
                "features wall, median (s)",
                f"{statistics.median(r['wall_s'] for r in features):.2f}",
                "",
            ),
        ]
    rows.append(("load average before / after", "", f"{load_start} / {load_end} (2 cores)"))
    _print_table(rows)
    print(
        "\nNote: wall times are from a shared machine and are noisy; compare ratios, and rerun "
        "with --repeat for spread."
    )

    if profile is not None:
        total = sum(t for t, *_ in profile["statements"].values())
        print(
            f"\nper statement (each view materialised in turn, summed over snapshot batches; "
            f"total {total:.1f} s, wall {profile['wall_s']:.1f} s, "
            f"peak RSS {profile['peak_rss_mib'] / 1024:.2f} GiB):"
        )
        print(f"{'statement':28}{'wall (s)':>10}{'share':>8}{'rows':>16}{'builds':>8}  in stage")
        for name, (wall, n, builds, materialized, static) in profile["statements"].items():
            kind = ("table" if materialized else "view") + (", static" if static else "")
            print(f"{name:28}{wall:>10.2f}{wall / total:>8.0%}{n:>16,}{builds:>8}  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
