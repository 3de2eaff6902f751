"""Benchmark of feature extraction at scale: the project's DuckDB SQL against two references.

Why: the features stage is the one step whose cost grows with usage volume *and* with the
number of snapshots (every snapshot re-reads a window of usage). A customer with ~100M usage
events must be able to build its monthly training table on one ordinary machine. One run
prints, for the same interim data and the same snapshots, each step in a fresh spawned child
(wall time and peak RSS, VmHWM, of that child alone):

1. ``bare scan``: ``SELECT account_id, COUNT(*), SUM(count) ... GROUP BY account_id`` over the
   interim usage_events Parquet, the floor any engine pays to read the data once;
2. ``pre-aggregated reference``: a hand-written DuckDB query that pre-aggregates the events to
   account and day (the day's modules as a bitmask), then computes 7 usage features per
   account and snapshot (active days, events and distinct modules over 30 and 90 days, days
   since the last event) with one range join of snapshots to account-days, all snapshots at
   once: what a straightforward query pays for usage features on top of the scan;
3. ``project, usage family``: ``features.definitions.feature_statements`` asked for the usage
   family's features only, run on ``DuckDBEngine`` the way ``build_features`` does (the interim
   tables registered as views, the snapshots in batches of ``features.snapshot_batch_size``);
4. ``project, full set``: ``build_features``, every available feature;
5. ``project, full set, weekly``: the full set on the Mondays over the same span as the monthly
   snapshots (about 100 against 24): how the cost scales with snapshots.

Targets (issue 15; they are stated for 100M events and 24 monthly snapshots, and checked at
every size): usage family <= 2x the bare scan, full set <= 3x, peak RSS of every project step
<= 1.5 GiB with DuckDB's default settings, weekly / monthly <= 1.3x. DuckDB runs with its own
defaults (all cores, 80% of RAM) unless ``--threads`` / ``--memory-limit`` are given; params'
``features.duckdb`` section is not read, so the figures are those of a default install.

Data: for each size in ``--sizes`` the demo company is simulated (params.yaml's simulate
section, as many accounts as give about that many usage events, from a pilot run) over a
history that starts ``lookback`` days before the first of the ``--snapshots`` monthly
snapshots that end at base.as_of_date, so every event is within reach of some snapshot; then
it is ingested as ``churn ingest`` does. The feature settings are the stage's
(``feature_settings`` with the vocabulary resolved from the data). Setup is timed and printed
but is not a measured figure; ``--data DIR`` keeps each size's data in ``DIR/<size>`` and reuses
it on the next run (its setup timings are kept in ``DIR/<size>/setup.json``; raw and truth
are deleted after ingest). The real simulator and ingest are used at every size: on the
shared 2-core machine, 100M events (69,318 accounts, 680 MiB interim usage_events) took
about 12 minutes (simulate 139 s, ingest 590 s), so no synthetic shortcut is needed.

``--profile`` adds a per-statement breakdown of the full set, monthly and weekly: each view is
materialised as a table in turn and timed, which says which statement dominates (views are
otherwise lazy and all their cost lands in the last query).

A step whose RSS passes ``--rss-cap-gib`` (default 8 GiB) is stopped, so that DuckDB's default
memory limit (80% of RAM) cannot starve the other users of a shared machine; its wall time and
RSS are then printed as lower bounds (``>``) and its RSS verdict is FAIL.

Timings on a shared machine are noisy: the load average before and after is printed, and
``--repeat 3`` reports medians.

Examples::

    python -m bench.bench_features                                  # 2M events, temp data
    python -m bench.bench_features --sizes 2000000,20000000 --data /tmp/bench_features
    python -m bench.bench_features --sizes 100000000 --data /tmp/bench_features --repeat 3
    python -m bench.bench_features --sizes 100000000 --data /tmp/bench_features --setup-only
    python -m bench.bench_features --data /tmp/bench_features --profile --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from bench.measure import (
    current_rss_mib,
    dir_size_mib,
    in_fresh_process,
    load_average,
    peak_rss_mib,
)
from features.definitions import FeatureSettings, Statement, feature_statements
from features.registry import available, build_registry
from pipeline.core.config import Config, SimulateSection, load_config
from pipeline.core.layout import VALIDATION_REPORT
from pipeline.data.contract import interim_path
from pipeline.data.sources import DirectorySource
from pipeline.feature_engine.build import (
    build_features,
    day_number,
    feature_settings,
    present_tables,
    snapshot_dates,
    snapshot_frame,
)
from pipeline.feature_engine.engines import DuckDBEngine
from pipeline.stages.ingest import ingest_source
from pipeline.stages.simulate import SimulationConfig, write_simulation

log = logging.getLogger(__name__)

TARGET_USAGE_RATIO = 2.0
TARGET_FULL_RATIO = 3.0
TARGET_RSS_GIB = 1.5
TARGET_WEEKLY_RATIO = 1.3
DEFAULT_SIZES = "2000000"
# DuckDB's default memory_limit is 80% of RAM: on a shared machine a step is stopped well
# before that, as soon as its RSS shows the 1.5 GiB target is missed by far.
DEFAULT_RSS_CAP_GIB = 8.0


# --- measurement helpers ---------------------------------------------------------------------


def _connect(threads: int | None, memory_limit: str | None):
    """A DuckDB connection as DuckDBEngine opens one (UTC, no progress bar)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    return con


def _events_glob(interim: Path) -> str:
    return str(interim_path(interim, "usage_events") / "*.parquet").replace("'", "''")


# --- setup: simulate + ingest ----------------------------------------------------------------


def _bench_snapshots(as_of: date, n_snapshots: int) -> list[date]:
    """The last ``n_snapshots`` monthly snapshot dates (firsts of month) up to ``as_of``."""
    span = timedelta(days=31 * (n_snapshots + 1))
    return snapshot_dates(as_of - span, as_of, "monthly")[-n_snapshots:]


def _simulation_config(config: Config, n_accounts: int, start_date: date) -> SimulationConfig:
    """The demo config as `churn simulate` builds it from params, with ``n_accounts`` set and
    the history starting at ``start_date``."""
    return replace(
        SimulationConfig.from_config(config, n_accounts=n_accounts), start_date=start_date
    )


def _accounts_for(
    config: Config, start_date: date, target_events: int, scratch: Path
) -> tuple[int, float]:
    """Accounts needed for ~``target_events`` usage rows, from a pilot of the default size."""
    pilot = _simulation_config(config, SimulateSection().n_accounts, start_date)
    start = time.perf_counter()
    rows = write_simulation(pilot, scratch / "raw", scratch / "truth")
    wall = time.perf_counter() - start
    shutil.rmtree(scratch)
    per_account = rows["usage_events"] / pilot.n_accounts
    return max(1, round(target_events / per_account)), wall


def _prepare(
    config: Config, data_dir: Path, target_events: int, start_date: date
) -> tuple[Path, dict]:
    """Simulate and ingest into ``data_dir/interim`` unless it is there already.

    Returns the interim directory and the setup record (how the data was made, and how long
    that took), which is kept in ``data_dir/setup.json`` for the runs that reuse the data.
    """
    interim = data_dir / "interim"
    record_path = data_dir / "setup.json"
    if (interim / VALIDATION_REPORT).is_file():
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        return interim, {**record, "reused": True}
    data_dir.mkdir(parents=True, exist_ok=True)
    record: dict = {"target_events": target_events, "start_date": start_date.isoformat()}
    n_accounts, record["pilot_s"] = _accounts_for(
        config, start_date, target_events, data_dir / "pilot"
    )
    record["n_accounts"] = n_accounts
    print(
        f"setup: simulating {n_accounts:,} accounts from {start_date} "
        f"(~{target_events:,} events) in {data_dir}",
        flush=True,
    )
    start = time.perf_counter()
    rows = write_simulation(
        _simulation_config(config, n_accounts, start_date), data_dir / "raw", data_dir / "truth"
    )
    record["simulate_s"] = time.perf_counter() - start
    record["raw_events"] = rows["usage_events"]
    print(
        f"setup: simulated {rows['usage_events']:,} events in {record['simulate_s']:.1f} s",
        flush=True,
    )
    start = time.perf_counter()
    ingest_source(
        DirectorySource(data_dir / "raw"),
        interim,
        as_of=config.base.as_of_timestamp,
        naive_timezone=config.ingest.naive_timezone,
        batch_rows=config.ingest.batch_rows,
    )
    record["ingest_s"] = time.perf_counter() - start
    print(f"setup: ingested in {record['ingest_s']:.1f} s", flush=True)
    # The benchmark reads interim data only; raw and truth would double the disk it takes.
    shutil.rmtree(data_dir / "raw")
    shutil.rmtree(data_dir / "truth")
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return interim, {**record, "reused": False}


# --- measured steps (each runs in a fresh child) ---------------------------------------------


def _result(start: float, rss_before: float, rows: int, **extra) -> dict:
    return {
        "wall_s": time.perf_counter() - start,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss_before,
        "rows": rows,
        **extra,
    }


def _measure_scan(interim: Path, threads: int | None, memory_limit: str | None) -> dict:
    """The floor: read the events once, grouped by account (every row is touched)."""
    rss_before = current_rss_mib()
    start = time.perf_counter()
    con = _connect(threads, memory_limit)
    try:
        frame = con.execute(
            f"""
            SELECT account_id, COUNT(*) AS n_rows, SUM(count) AS events
            FROM read_parquet('{_events_glob(interim)}')
            GROUP BY account_id
            """
        ).df()
        threads_used, memory_used = con.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit')"
        ).fetchone()
    finally:
        con.close()
    return _result(
        start,
        rss_before,
        len(frame),
        events_rows=int(frame["n_rows"].sum()),
        threads=threads_used,
        memory_limit=memory_used,
    )


REFERENCE_SQL = """
WITH module_bits AS (
    SELECT module, CAST(POWER(2, ROW_NUMBER() OVER (ORDER BY module) - 1) AS BIGINT) AS bit
    FROM (SELECT DISTINCT module FROM read_parquet('{source}'))
),
account_day AS (
    SELECT e.account_id, CAST(e.occurred_at AS DATE) AS day, SUM(e.count) AS events,
           BIT_OR(b.bit) AS modules
    FROM read_parquet('{source}') AS e
    JOIN module_bits AS b USING (module)
    GROUP BY ALL
)
SELECT s.snapshot_date, a.account_id,
       COUNT(*) FILTER (WHERE a.day >= s.snapshot_date - 30) AS active_days_30d,
       COUNT(*) AS active_days_90d,
       COALESCE(SUM(a.events) FILTER (WHERE a.day >= s.snapshot_date - 30), 0) AS events_30d,
       SUM(a.events) AS events_90d,
       BIT_COUNT(COALESCE(BIT_OR(a.modules) FILTER (WHERE a.day >= s.snapshot_date - 30), 0))
           AS distinct_modules_30d,
       BIT_COUNT(BIT_OR(a.modules)) AS distinct_modules_90d,
       s.snapshot_date - MAX(a.day) AS days_since_last_event
FROM snapshot_dates AS s
JOIN account_day AS a
  ON a.day < s.snapshot_date AND a.day >= s.snapshot_date - 90
GROUP BY s.snapshot_date, a.account_id
ORDER BY a.account_id, s.snapshot_date
"""


def _measure_reference(
    interim: Path, dates: list[date], threads: int | None, memory_limit: str | None
) -> dict:
    """The hand-written reference: events pre-aggregated to account and day (modules as one
    bit each), then 7 usage features per account and snapshot, all snapshots in one query."""
    rss_before = current_rss_mib()
    start = time.perf_counter()
    con = _connect(threads, memory_limit)
    try:
        con.register("snapshot_frame", pd.DataFrame({"snapshot_date": dates}))
        con.execute(
            "CREATE TEMP TABLE snapshot_dates AS "
            "SELECT CAST(snapshot_date AS DATE) AS snapshot_date FROM snapshot_frame"
        )
        frame = con.execute(REFERENCE_SQL.format(source=_events_glob(interim))).df()
    finally:
        con.close()
    return _result(start, rss_before, len(frame), columns=frame.shape[1])


def _measure_usage_family(
    interim: Path,
    tables: set[str],
    dates: list[date],
    settings: FeatureSettings,
    names: list[str],
    threads: int | None,
    memory_limit: str | None,
    batch_size: int,
) -> dict:
    """The usage family's statements, run on DuckDBEngine in the loop build_features runs
    (registered interim tables, snapshot batches), without its final tidying of dtypes."""
    rss_before = current_rss_mib()
    start = time.perf_counter()
    engine = DuckDBEngine(threads=threads, memory_limit=memory_limit)
    try:
        for name in sorted(tables):
            engine.register_parquet(name, interim_path(interim, name))
        # as build_features does: the windowed usage views read only what the snapshots see
        windowed = replace(settings, first_snapshot_day=day_number(min(dates)))
        statements = feature_statements(windowed, tables, names)
        batches = []
        for first in range(0, len(dates), batch_size):
            engine.register_frame(
                "snapshot_dates", snapshot_frame(dates[first : first + batch_size])
            )
            batches.append(engine.run(statements))
    finally:
        engine.close()
    table = pd.concat(batches, ignore_index=True)
    return _result(start, rss_before, len(table), columns=table.shape[1])


def _measure_full_set(
    interim: Path,
    tables: set[str],
    dates: list[date],
    settings: FeatureSettings,
    threads: int | None,
    memory_limit: str | None,
    batch_size: int,
) -> dict:
    """build_features on DuckDB, exactly as the features stage runs it (minus the write)."""
    rss_before = current_rss_mib()
    start = time.perf_counter()
    engine = DuckDBEngine(threads=threads, memory_limit=memory_limit)
    try:
        result = build_features(engine, interim, tables, dates, settings, batch_size=batch_size)
    finally:
        engine.close()
    return _result(start, rss_before, len(result.table), columns=result.table.shape[1])


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
        "peak_rss_mib": peak_rss_mib(),
        "statements": engine.timings,
    }


# --- one size --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What every size is measured with (from the command line)."""

    threads: int | None
    memory_limit: str | None
    batch_size: int
    repeat: int
    profile: bool
    rss_cap_mib: float | None


STEPS = ("scan", "reference", "usage", "full", "weekly")
LABELS = {
    "scan": "bare scan",
    "reference": "pre-aggregated reference",
    "usage": "project, usage family",
    "full": "project, full set",
    "weekly": "project, full set, weekly",
}


def _measure_size(interim: Path, config: Config, monthly: list[date], opts: Options) -> dict:
    """Every step on one interim dataset, ``opts.repeat`` times, each in a fresh child."""
    report = json.loads((interim / VALIDATION_REPORT).read_text())
    tables = present_tables(report)
    events = int(report["tables"]["usage_events"]["rows_accepted"])
    settings = feature_settings(config, interim_dir=interim)  # the stage's, vocabulary resolved
    registry = available(build_registry(settings.windows, settings=settings), tables)
    usage_names = [f.name for f in registry if f.family == "usage"]
    weekly = snapshot_dates(monthly[0], config.base.as_of_date, "weekly")
    n_statements = {
        "usage": len(feature_statements(settings, tables, usage_names)),
        "full": len(feature_statements(settings, tables, [f.name for f in registry])),
    }
    workdir = interim.parent / "duckdb_workdir"  # DuckDB spills into workdir/.tmp
    workdir.mkdir(exist_ok=True)
    common = (opts.threads, opts.memory_limit)
    project = (*common, opts.batch_size)
    calls = {
        "scan": (_measure_scan, interim, *common),
        "reference": (_measure_reference, interim, monthly, *common),
        "usage": (_measure_usage_family, interim, tables, monthly, settings, usage_names, *project),
        "full": (_measure_full_set, interim, tables, monthly, settings, *project),
        "weekly": (_measure_full_set, interim, tables, weekly, settings, *project),
    }
    print(
        f"measuring: {events:,} events ({dir_size_mib(interim_path(interim, 'usage_events')):,.0f}"
        f" MiB interim parquet), {len(monthly)} monthly snapshots {monthly[0]}..{monthly[-1]} "
        f"and {len(weekly)} weekly, batches of {opts.batch_size}, DuckDB "
        f"threads={opts.threads or 'default'} memory_limit={opts.memory_limit or 'default'}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {step: [] for step in STEPS}
    try:
        for _ in range(opts.repeat):
            for step in STEPS:
                func, *args = calls[step]
                cap = opts.rss_cap_mib
                result = in_fresh_process(func, *args, workdir=workdir, rss_cap_mib=cap)
                if result is None:
                    raise SystemExit(f"{LABELS[step]}: the child process died (out of memory?)")
                runs[step].append(result)
                done = (
                    f"stopped: RSS passed --rss-cap-gib {opts.rss_cap_mib / 1024:g}"
                    if result.get("aborted")
                    else f"{result['rows']:,} rows"
                )
                print(
                    f"  {LABELS[step]:28}{result['wall_s']:8.1f} s  peak RSS "
                    f"{result['peak_rss_mib']:7,.0f} MiB  ({done})",
                    flush=True,
                )
        profile = None
        if opts.profile:
            profile = {
                cadence: in_fresh_process(
                    _profile_statements,
                    interim,
                    tables,
                    dates,
                    settings,
                    *project,
                    workdir=workdir,
                    rss_cap_mib=opts.rss_cap_mib,
                )
                for cadence, dates in (("monthly", monthly), ("weekly", weekly))
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "events": events,
        "interim_mib": dir_size_mib(interim_path(interim, "usage_events")),
        "monthly": monthly,
        "weekly": weekly,
        "usage_features": len(usage_names),
        "all_features": len(registry),
        "statements": n_statements,
        "runs": runs,
        "profile": profile,
    }


# --- reporting -------------------------------------------------------------------------------


def _judge(value: float, target: float, lower_bound: bool) -> str:
    """PASS / FAIL of ``value <= target``; a lower bound (a stopped step) can only FAIL."""
    if value > target:
        return "FAIL"
    return "n/a" if lower_bound else "PASS"


def _at_least(text: str, lower_bound: bool) -> str:
    return f">{text}" if lower_bound else text


def _summary(measured: dict) -> dict[str, dict]:
    """Per step: median wall, the largest peak RSS over the repeats, all walls, and whether a
    run was stopped (then wall and RSS are lower bounds)."""
    out = {}
    for step, runs in measured["runs"].items():
        walls = [r["wall_s"] for r in runs]
        out[step] = {
            "wall_s": statistics.median(walls),
            "walls": walls,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "rows": runs[0]["rows"],
            "aborted": any(r.get("aborted") for r in runs),
        }
    return out


def _figures(measured: dict) -> dict:
    """The ratios and verdicts of one size, from the step summaries."""
    s = _summary(measured)
    scan = s["scan"]["wall_s"]
    ratio = {step: s[step]["wall_s"] / scan for step in STEPS}
    bound = {step: s[step]["aborted"] or s["scan"]["aborted"] for step in STEPS}
    # weekly over monthly: unknown when the monthly run was stopped
    weekly_ratio = None if s["full"]["aborted"] else s["weekly"]["wall_s"] / s["full"]["wall_s"]
    project = ("usage", "full", "weekly")
    rss_gib = max(s[step]["peak_rss_mib"] for step in project) / 1024
    verdicts = {
        "usage": _judge(ratio["usage"], TARGET_USAGE_RATIO, bound["usage"]),
        "full": _judge(ratio["full"], TARGET_FULL_RATIO, bound["full"]),
        "rss": _judge(rss_gib, TARGET_RSS_GIB, any(s[step]["aborted"] for step in project)),
        "weekly": "n/a"
        if weekly_ratio is None
        else _judge(weekly_ratio, TARGET_WEEKLY_RATIO, s["weekly"]["aborted"]),
    }
    return {
        "events": measured["events"],
        "steps": s,
        "scan_s": scan,
        "ratio": ratio,
        "bound": bound,
        "weekly_ratio": weekly_ratio,
        "rss_gib": rss_gib,
        "verdicts": verdicts,
    }


def _print_size(size: int, setup: dict, measured: dict, scan_info: dict) -> dict:
    """The table for one size; returns the figures the cross-size summary shows."""
    f = _figures(measured)
    s, ratio, bound, verdicts = f["steps"], f["ratio"], f["bound"], f["verdicts"]
    events = measured["events"]
    n_monthly, n_weekly = len(measured["monthly"]), len(measured["weekly"])
    print(f"\n=== {events:,} usage events (size {size:,}) ===")
    if setup.get("reused"):
        made = ""
        if "simulate_s" in setup:
            made = (
                f" (made with {setup['n_accounts']:,} accounts from {setup['start_date']}: "
                f"simulate {setup['simulate_s']:.0f} s, ingest {setup['ingest_s']:.0f} s)"
            )
        print(f"setup: reused{made}")
    else:
        print(
            f"setup: {setup['n_accounts']:,} accounts from {setup['start_date']}; pilot "
            f"{setup['pilot_s']:.1f} s, simulate {setup['simulate_s']:.1f} s, ingest "
            f"{setup['ingest_s']:.1f} s ({setup['raw_events'] / setup['ingest_s']:,.0f} usage "
            "rows/s); not measured figures"
        )
    print(
        f"data: {measured['interim_mib']:,.0f} MiB interim usage_events; snapshots "
        f"{n_monthly} monthly {measured['monthly'][0]}..{measured['monthly'][-1]}, "
        f"{n_weekly} weekly; DuckDB threads={scan_info.get('threads', '?')} "
        f"memory_limit={scan_info.get('memory_limit', '?')}"
    )
    print(
        f"features: usage family {measured['usage_features']} ({measured['statements']['usage']}"
        f" statements), full set {measured['all_features']} "
        f"({measured['statements']['full']} statements)"
    )
    header = (
        f"{'step':30}{'wall s':>10}{'Mev/s':>8}{'peak RSS MiB':>14}{'x scan':>9}{'rows':>12}"
        "  target"
    )
    print(header)
    print("-" * (len(header) + 44))
    rss_target = f"RSS <= {TARGET_RSS_GIB:g} GiB"
    for step in STEPS:
        r = s[step]
        rss_verdict = _judge(r["peak_rss_mib"] / 1024, TARGET_RSS_GIB, r["aborted"])
        note = ""
        if step == "usage":
            note = f"<= {TARGET_USAGE_RATIO:g}x: {verdicts['usage']}; {rss_target}: {rss_verdict}"
        elif step == "full":
            note = f"<= {TARGET_FULL_RATIO:g}x: {verdicts['full']}; {rss_target}: {rss_verdict}"
        elif step == "weekly":
            wk = f["weekly_ratio"]
            text = "n/a (monthly stopped)" if wk is None else _at_least(f"{wk:.2f}x", r["aborted"])
            note = (
                f"weekly / monthly {text} <= {TARGET_WEEKLY_RATIO:g}: {verdicts['weekly']}; "
                f"{rss_target}: {rss_verdict}"
            )
        elif step == "reference":
            note = "(no target; the issue measured 4.6x)"
        if r["aborted"]:
            note += " [stopped at the RSS cap: lower bounds]"
        rows = "-" if r["aborted"] else f"{r['rows']:,}"
        wall = _at_least(f"{r['wall_s']:.2f}", r["aborted"])
        rss = _at_least(f"{r['peak_rss_mib']:,.0f}", r["aborted"])
        times = _at_least(f"{ratio[step]:.2f}x", bound[step])
        speed = "-" if r["aborted"] else f"{events / r['wall_s'] / 1e6:.1f}"
        print(f"{LABELS[step]:30}{wall:>10}{speed:>8}{rss:>14}{times:>9}{rows:>12}  {note}")
    if len(s["scan"]["walls"]) > 1:
        print(
            "all runs (s): "
            + "; ".join(
                f"{step} " + ", ".join(f"{w:.1f}" for w in s[step]["walls"]) for step in STEPS
            )
        )
    for cadence, profile in (measured["profile"] or {}).items():
        _print_profile(cadence, profile)
    return f


def _print_profile(cadence: str, profile: dict) -> None:
    """The per-statement breakdown of the full set for one snapshot cadence."""
    if profile.get("aborted"):
        print(f"\nper statement, {cadence}: stopped at the RSS cap after {profile['wall_s']:.0f} s")
        return
    total = sum(t for t, *_ in profile["statements"].values())
    print(
        f"\nper statement, full set, {cadence} (each view materialised in turn, summed over "
        f"snapshot batches; total {total:.1f} s, wall {profile['wall_s']:.1f} s, "
        f"peak RSS {profile['peak_rss_mib'] / 1024:.2f} GiB):"
    )
    print(f"{'statement':28}{'wall (s)':>10}{'share':>8}{'rows':>16}{'builds':>8}  in stage")
    for name, (wall, n, builds, materialized, static) in profile["statements"].items():
        kind = ("table" if materialized else "view") + (", static" if static else "")
        print(f"{name:28}{wall:>10.2f}{wall / total:>8.0%}{n:>16,}{builds:>8}  {kind}")


def _print_overview(figures: list[dict]) -> None:
    print("\n=== all sizes (x = wall time over the bare scan's; > = a step stopped at the cap) ===")
    print(
        f"{'events':>13}{'scan s':>9}{'ref x':>9}{'usage x':>9}{'full x':>9}{'weekly x':>10}"
        f"{'wk/mo':>8}{'max RSS GiB':>13}  verdicts (usage, full, RSS, weekly)"
    )
    for f in figures:
        r, b, v = f["ratio"], f["bound"], f["verdicts"]
        ratios = "".join(
            f"{_at_least(f'{r[step]:.2f}', b[step]):>{width}}"
            for step, width in (("reference", 9), ("usage", 9), ("full", 9), ("weekly", 10))
        )
        wk = f["weekly_ratio"]
        weekly = "n/a" if wk is None else _at_least(f"{wk:.2f}", f["steps"]["weekly"]["aborted"])
        rss_bound = any(f["steps"][step]["aborted"] for step in ("usage", "full", "weekly"))
        rss = _at_least(f"{f['rss_gib']:.2f}", rss_bound)
        print(
            f"{f['events']:>13,}{f['scan_s']:>9.2f}{ratios}{weekly:>8}{rss:>13}  "
            f"{v['usage']}, {v['full']}, {v['rss']}, {v['weekly']}"
        )


# --- entry point -----------------------------------------------------------------------------


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--sizes takes integers like 2000000,20000000: {text!r}"
        ) from err
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--sizes needs positive event counts: {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=_parse_sizes(DEFAULT_SIZES),
        help=f"comma-separated usage_events rows to generate and measure (default {DEFAULT_SIZES})",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="directory to keep each size's data in (DIR/<size>), or to reuse it from; "
        "default: a temporary directory, deleted at the end",
    )
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file (default params)"
    )
    parser.add_argument(
        "--snapshots",
        type=int,
        default=24,
        help="monthly snapshots ending at base.as_of_date (default 24); the weekly run covers "
        "the same span",
    )
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: DuckDB's, all cores)")
    parser.add_argument(
        "--memory-limit",
        help="DuckDB memory_limit, e.g. 6GB (default: DuckDB's, 80%% of RAM)",
    )
    parser.add_argument(
        "--snapshot-batch-size",
        type=int,
        help="snapshot dates per engine call (default: features.snapshot_batch_size)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each step; medians are shown (default 1)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also time each statement of the full set on its own (materialised in turn)",
    )
    parser.add_argument(
        "--rss-cap-gib",
        type=float,
        default=DEFAULT_RSS_CAP_GIB,
        help="stop a measured step whose RSS passes this many GiB and report lower bounds; the "
        f"machine is shared (default {DEFAULT_RSS_CAP_GIB:g}; 0: no cap)",
    )
    parser.add_argument(
        "--setup-only",
        action="store_true",
        help="only simulate and ingest the data of each size (needs --data), measure nothing",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.snapshots < 1:
        parser.error("--snapshots must be >= 1")
    if args.snapshot_batch_size is not None and args.snapshot_batch_size < 1:
        parser.error("--snapshot-batch-size must be >= 1")
    if args.rss_cap_gib < 0:
        parser.error("--rss-cap-gib must be >= 0")
    if args.setup_only and args.data is None:
        parser.error("--setup-only needs --data (the data would be deleted at the end)")

    config = load_config(args.params)
    opts = Options(
        threads=args.threads,
        memory_limit=args.memory_limit,
        batch_size=args.snapshot_batch_size or config.features.snapshot_batch_size,
        repeat=args.repeat,
        profile=args.profile,
        rss_cap_mib=args.rss_cap_gib * 1024 or None,
    )
    as_of = config.base.as_of_date
    monthly = _bench_snapshots(as_of, args.snapshots)
    # The history starts a full look-back before the first snapshot (the trend windows read
    # two windows back), so the data is what the snapshots read and the scan reads no more.
    lookback = feature_settings(config).lookback_days
    history_start = monthly[0] - timedelta(days=lookback)

    temporary = args.data is None
    root = (args.data or Path(tempfile.mkdtemp(prefix="bench_features_"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    load_start = load_average()
    figures = []
    try:
        for size in args.sizes:
            interim, setup = _prepare(config, root / str(size), size, history_start)
            if args.setup_only:
                print(f"setup: {interim} ready ({json.dumps(setup)})")
                continue
            measured = _measure_size(interim, config, monthly, opts)
            scan_info = measured["runs"]["scan"][0]
            figures.append(_print_size(size, setup, measured, scan_info))
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    if len(figures) > 1:
        _print_overview(figures)
    print(f"\nload average before / after: {load_start} / {load_average()} (2 cores, shared)")
    if figures:
        print(
            "Note: wall times are from a shared machine and are noisy; compare ratios, and rerun "
            "with --repeat 3 for medians. Targets are stated for 100M events."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
