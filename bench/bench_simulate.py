"""Benchmark of the demo-data simulator at scale: throughput, peak memory, output size.

Runs ``write_simulation`` at the requested size and prints wall time, usage_events rows,
rows/s, peak RSS and output size, next to two references measured in the same process:

* the default ``SimulationConfig`` (the simulate section's defaults: 1,500 accounts over three
  years; the demo in params.yaml is larger), and
* a raw floor: writing the same number of random rows with the same schema, chunking and
  compression straight from numpy to parquet (no simulation at all).

The ratio to the raw floor says how much the simulation itself costs on top of the I/O.

Examples::

    python bench/bench_simulate.py                          # default demo size
    python bench/bench_simulate.py --target-events 100000000
    python bench/bench_simulate.py --n-accounts 20000 --out /tmp/sim --keep
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stages.simulate import (
    MODULE_EVENT_TYPES,
    MODULES,
    RAW_TABLE_SCHEMAS,
    SimulationConfig,
    write_simulation,
)


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _dir_size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _run_simulation(config: SimulationConfig, out: Path, *, progress: bool) -> dict[str, float]:
    start = time.perf_counter()
    rows = write_simulation(config, out / "raw", out / "truth", progress=progress)
    wall = time.perf_counter() - start
    events = rows["usage_events"]
    return {
        "n_accounts": config.n_accounts,
        "wall_s": wall,
        "usage_events": events,
        "events_per_s": events / wall,
        "raw_mib": _dir_size_mib(out / "raw"),
        "usage_mib": _dir_size_mib(out / "raw" / "usage_events"),
        "parts": len(list((out / "raw" / "usage_events").glob("*.parquet"))),
        "other_rows": sum(v for k, v in rows.items() if k != "usage_events"),
    }


def _raw_write_floor(n_rows: int, n_parts: int, out: Path, seed: int) -> dict[str, float]:
    """Write ``n_rows`` random usage rows straight from numpy: the floor any simulator pays."""
    schema = RAW_TABLE_SCHEMAS["usage_events"]
    rng = np.random.default_rng(seed)
    n_accounts, n_users = 100_000, 2_000_000
    account_ids = pa.array([f"A{i:06d}" for i in range(1, n_accounts + 1)])
    user_ids = pa.array([f"U{i:07d}" for i in range(1, n_users + 1)])
    modules = pa.array(list(MODULES))
    events = pa.array([e for m in MODULES for e in MODULE_EVENT_TYPES[m]])
    out.mkdir(parents=True)
    per_part = -(-n_rows // max(n_parts, 1))
    start = time.perf_counter()
    written = 0
    part = 0
    while written < n_rows:
        n = min(per_part, n_rows - written)
        user = np.sort(rng.integers(0, n_users, n, dtype=np.int32))
        code = rng.integers(0, len(events), n, dtype=np.int32)

        def take(dictionary: pa.Array, codes: np.ndarray) -> pa.Array:
            return pa.DictionaryArray.from_arrays(pa.array(codes), dictionary).cast(pa.string())

        table = pa.Table.from_arrays(
            [
                take(account_ids, user // 20),
                take(user_ids, user),
                pa.array(
                    rng.integers(1_700_000_000, 1_790_000_000, n) * 1_000_000,
                    type=pa.timestamp("us", tz="UTC"),
                ),
                take(modules, code // 2),
                take(events, code),
                pa.array(1 + rng.poisson(1.5, n)),
            ],
            schema=schema,
        )
        pq.write_table(table, out / f"part-{part:05d}.parquet", compression="zstd")
        written += n
        part += 1
    wall = time.perf_counter() - start
    return {"wall_s": wall, "rows": n_rows, "rows_per_s": n_rows / wall, "mib": _dir_size_mib(out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--n-accounts", type=int, help="accounts to simulate")
    size.add_argument(
        "--target-events",
        type=int,
        help="approximate usage_events rows wanted; n_accounts is derived from the default run",
    )
    parser.add_argument("--out", type=Path, help="output directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the output (default: delete)")
    parser.add_argument(
        "--chunk-accounts",
        type=int,
        default=SimulationConfig.events_chunk_accounts,
        help="accounts per usage_events chunk (default: simulate.events_chunk_accounts)",
    )
    parser.add_argument(
        "--seed", type=int, default=SimulationConfig.seed, help="seed (default: base.seed)"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar over chunks")
    parser.add_argument("--skip-floor", action="store_true", help="skip the raw-write reference")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    if args.out is not None and out.exists() and any(out.iterdir()):
        parser.error(f"--out {out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    try:
        # Reference 1 (and pilot): the default demo config.
        reference = _run_simulation(
            SimulationConfig(seed=args.seed), out / "reference", progress=False
        )
        reference_rss = _peak_rss_mib()
        shutil.rmtree(out / "reference")

        if args.target_events:
            per_account = reference["usage_events"] / reference["n_accounts"]
            n_accounts = max(1, round(args.target_events / per_account))
        else:
            n_accounts = args.n_accounts or SimulationConfig.n_accounts
        config = SimulationConfig(
            n_accounts=n_accounts, seed=args.seed, events_chunk_accounts=args.chunk_accounts
        )
        print(f"simulating {n_accounts:,} accounts (chunks of {args.chunk_accounts}) into {out}")
        main_run = _run_simulation(config, out / "run", progress=args.progress)
        main_rss = _peak_rss_mib()
        if not args.keep:
            shutil.rmtree(out / "run")

        floor = None
        if not args.skip_floor:
            floor = _raw_write_floor(
                main_run["usage_events"], main_run["parts"], out / "floor", args.seed
            )
            shutil.rmtree(out / "floor")
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)

    bytes_per_row = main_run["usage_mib"] * 2**20 / max(main_run["usage_events"], 1)
    rows = [
        ("accounts", f"{main_run['n_accounts']:,}", f"{reference['n_accounts']:,}"),
        ("usage_events rows", f"{main_run['usage_events']:,}", f"{reference['usage_events']:,}"),
        ("rows of the other tables", f"{main_run['other_rows']:,}", f"{reference['other_rows']:,}"),
        ("usage_events parts", f"{main_run['parts']:,}", f"{reference['parts']:,}"),
        ("wall time (s)", f"{main_run['wall_s']:.1f}", f"{reference['wall_s']:.2f}"),
        (
            "usage_events rows/s",
            f"{main_run['events_per_s']:,.0f}",
            f"{reference['events_per_s']:,.0f}",
        ),
        ("peak RSS so far (MiB)", f"{main_rss:,.0f}", f"{reference_rss:,.0f}"),
        (
            "output size, raw dir (MiB)",
            f"{main_run['raw_mib']:,.1f}",
            f"{reference['raw_mib']:,.1f}",
        ),
        ("bytes per usage row (parquet)", f"{bytes_per_row:.1f}", ""),
        (
            "throughput vs default demo",
            f"{main_run['events_per_s'] / reference['events_per_s']:.2f}x",
            "",
        ),
    ]
    if floor is not None:
        rows += [
            ("raw numpy->parquet floor (s)", f"{floor['wall_s']:.1f}", ""),
            ("raw floor rows/s", f"{floor['rows_per_s']:,.0f}", ""),
            ("simulation wall / raw floor", f"{main_run['wall_s'] / floor['wall_s']:.2f}x", ""),
        ]
    print()
    print(f"{'':32}{'this run':>18}{'default demo':>18}")
    for label, value, ref in rows:
        print(f"{label:32}{value:>18}{ref:>18}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
