"""Benchmark of the weekly scoring run at scale: scoring, explaining and listing 100k accounts.

Why: the score stage runs every Monday over the whole book. Its cost beyond feature extraction
is the model (eight weekly rescorings for the trend and the flags), the SHAP values of every
account, the reason codes, the drift check, and one CSV and one HTML page per CSM. Aim: at
most 60 s for 100k accounts on 2 cores.

How: a 100k-account feature frame is synthesised from the demo's feature table (rows resampled
with replacement, so values and their joint distribution are real), for the as-of week and the
weeks before it (about 10% of accounts change from one week to the next, so the flags and the
"moved most" explanations have work to do), with 400 CSMs. That isolates scoring + SHAP +
lists from feature extraction, which is timed separately on the demo's validated tables (and at
scale by `bench/bench_features.py`).

Printed: wall time and throughput of each step, the peak RSS of the process, and the ratio of
the whole run to a reference measured in the same process: a plain `booster.predict` of the
same 100k rows (the least any scoring pays).

Examples::

    python -m bench.bench_score                      # 100k accounts, models/ and demo features
    python -m bench.bench_score --rows 20000 --threads 1
    python -m bench.bench_score --no-features        # skip the feature-extraction timing
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.definitions import registry_for
from pipeline.core.config import Config, load_config
from pipeline.modeling.design import design_matrix
from pipeline.modeling.explain import reason_codes, shap_values
from pipeline.modeling.store import load_model
from pipeline.monitoring import feature_drift
from pipeline.stages.score import render_outputs, score_accounts, score_settings, weeks_to_score


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(label: str, results: dict, fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    results[label] = time.perf_counter() - start
    return value


def synthesize(
    demo: pd.DataFrame, *, rows: int, as_of: date, weeks: list[date], n_csms: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(weekly feature table, accounts, csms) for `rows` accounts over `weeks`.

    Week by week going back from as-of, about 10% of the accounts take another demo row.
    """
    rng = np.random.default_rng(seed)
    ids = pd.array([f"B{i:07d}" for i in range(rows)], dtype="string")
    pick = rng.integers(0, len(demo), rows)
    frames = []
    for week in sorted(weeks, reverse=True):
        week_rows = demo.iloc[pick].reset_index(drop=True)
        frame = week_rows.assign(account_id=ids, snapshot_date=week)
        days = frame["days_to_renewal"].fillna(30).clip(lower=0).astype(int)
        frame["renewal_date"] = [as_of + timedelta(days=int(d)) for d in days]
        frames.append(frame)
        change = rng.random(rows) < 0.1
        pick = np.where(change, rng.integers(0, len(demo), rows), pick)
    weekly = pd.concat(frames[::-1], ignore_index=True)
    csm_ids = [f"CSM{i:04d}" for i in range(n_csms)]
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "account_name": [f"Account {i} <Ltd>" for i in range(rows)],
            "region": rng.choice(["emea", "north_america", "apac", "latam"], rows),
            "industry": rng.choice(["software", "retail", "finance"], rows),
            "csm_id": rng.choice(csm_ids, rows),
        }
    )
    csms = pd.DataFrame(
        {
            "csm_id": csm_ids,
            "name": [f"CSM {i}" for i in range(n_csms)],
            "email": [f"csm{i}@example.com" for i in range(n_csms)],
        }
    )
    return weekly, accounts, csms


def bench_feature_extraction(config: Config, interim: Path, as_of: date, weeks: list[date]):
    """Wall time of build_features over the demo's validated tables: one date, and the weeks a
    scoring run needs."""
    from pipeline.feature_engine.build import build_features, feature_settings, read_present_tables
    from pipeline.feature_engine.engines import open_engine

    tables, _ = read_present_tables(interim)
    settings = feature_settings(config, as_of=as_of)
    out = {}
    for label, dates in (("1 date", [as_of]), (f"{len(weeks)} weeks", weeks)):
        engine = open_engine("duckdb", config.features.duckdb.model_dump())
        start = time.perf_counter()
        result = build_features(engine, interim, tables, dates, settings)
        engine.close()
        out[label] = (time.perf_counter() - start, len(result.table))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="Accounts to score.")
    parser.add_argument("--csms", type=int, default=400, help="CSMs the accounts are spread over.")
    parser.add_argument("--models", type=Path, default=Path("models"), help="Model directory.")
    parser.add_argument(
        "--features",
        type=Path,
        default=Path("data/processed/features.parquet"),
        help="Demo feature table to resample rows from (and the drift reference).",
    )
    parser.add_argument("--interim", type=Path, default=Path("data/interim"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--threads", type=int, default=0, help="LightGBM threads (0: all cores).")
    parser.add_argument("--no-features", action="store_true", help="Skip feature extraction.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    config = load_config(args.params)
    settings = score_settings(config)
    as_of = config.base.as_of_date
    weeks = weeks_to_score(as_of, settings.trend_weeks)
    model = load_model(args.models)
    registry = {f.name: f for f in registry_for(config)}
    features = [registry[n] for n in model.feature_names]
    demo = pd.read_parquet(args.features)
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    print(
        f"model: {model.booster.num_trees()} trees, {len(model.feature_names)} features; "
        f"{args.rows:,} accounts, {args.csms} CSMs, {len(weeks)} weeks scored"
    )

    setup = time.perf_counter()
    weekly, accounts, csms = synthesize(
        demo, rows=args.rows, as_of=as_of, weeks=weeks, n_csms=args.csms, seed=args.seed
    )
    reference_rows = demo.sample(n=min(args.rows, len(demo) * 5), replace=True, random_state=1)
    print(f"setup (synthesis): {time.perf_counter() - setup:.1f} s")
    rss_before = _peak_rss_mib()

    t: dict[str, float] = {}
    now = weekly[weekly["snapshot_date"] == as_of]
    X_now = _timed("design matrix (1 week)", t, design_matrix, now, model.schema)
    _timed(
        "reference: booster.predict",
        t,
        model.booster.predict,
        X_now,
        raw_score=True,
        num_threads=args.threads,
    )
    shap, _ = _timed(
        "  of which SHAP, pred_contrib (1 week)",
        t,
        shap_values,
        model.booster,
        X_now,
        num_threads=args.threads,
    )
    _timed(
        "  of which reason codes",
        t,
        reason_codes,
        shap,
        now[model.feature_names].reset_index(drop=True),
        now["segment"].reset_index(drop=True),
        features,
        top_n=settings.top_reasons,
    )
    del shap

    start = time.perf_counter()
    result = _timed(
        "score_accounts (8 weeks scored, SHAP, reasons, lists, flags, trend)",
        t,
        score_accounts,
        weekly,
        model,
        features,
        accounts,
        csms,
        as_of=as_of,
        settings=settings,
        num_threads=args.threads,
    )
    drift = _timed(
        "drift (PSI of every feature)",
        t,
        feature_drift,
        reference_rows,
        result.features,
        model,
        bins=settings.drift_bins,
    )
    stamp = {
        "as_of": as_of,
        "model_version": "bench",
        "model_source": str(args.models),
        "data_version": "bench",
    }
    files = _timed(
        "render (CSV + HTML per CSM, parquet, manifest)",
        t,
        render_outputs,
        result,
        stamp=stamp,
        warnings=[],
        settings=settings,
        drift=drift,
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_start = time.perf_counter()
        for relative, payload in files.items():
            target = Path(tmp) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
        t["write files"] = time.perf_counter() - write_start
    total = time.perf_counter() - start
    peak = _peak_rss_mib()

    print()
    width = max(len(k) for k in t) + 2
    for label, seconds in t.items():
        rows = args.rows
        print(f"{label:<{width}} {seconds:8.2f} s  {rows / seconds:>12,.0f} accounts/s")
    print(
        f"{'TOTAL scoring + explaining + lists':<{width}} {total:8.2f} s  "
        f"{args.rows / total:>12,.0f} accounts/s"
    )
    ratio = total / t["reference: booster.predict"]
    print(f"ratio to a plain booster.predict of the same rows: {ratio:.1f}x")
    print(
        f"peak RSS: {peak:,.0f} MiB (after setup: {rss_before:,.0f} MiB); "
        f"{len(files)} files, {sum(len(v) for v in files.values()) / 2**20:.1f} MiB; "
        f"{int(result.accounts['on_list'].sum()):,} accounts listed"
    )
    verdict = "within" if total <= 60 else "ABOVE"
    print(f"aim: <= 60 s for 100k accounts on 2 cores -> {verdict} ({total:.1f} s)")

    if not args.no_features and (args.interim / "validation_report.json").is_file():
        print("\nfeature extraction (DuckDB) on the demo's validated tables:")
        for label, (seconds, n) in bench_feature_extraction(
            config, args.interim, as_of, weeks
        ).items():
            print(f"  {label:<10} {seconds:6.2f} s for {n:,} account-weeks")
        print("  (at scale: python -m bench.bench_features --target-events ...)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
