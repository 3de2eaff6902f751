"""Acceptance benchmark of model selection (issue 12): on every simulator company profile, the
selected model against each candidate alone, the health score and the oracles, on the same
test rows.

For each profile (the demo and the export shapes in pipeline.stages.simulate.profiles) it
simulates the company, ingests and builds features with the CLI in a scratch directory, then
trains the default selection and each candidate pinned (`train.selection.candidates`: the
same seeded search, so a pinned run refits exactly the candidate the selection saw) and
evaluates every model on the test period. It prints, per profile:

- test ROC-AUC and PR-AUC of the selected model, of each candidate, of the project's simple
  logistic baseline and of the rule-based health score;
- the full-information oracle (the simulator's true probability, which knows the latent
  state of the 90 days before each decision) and the point-in-time oracle (the true
  probability given what was knowable at the snapshot): the fair ceiling;
- ECE, the chosen candidate, wall time and peak memory of training, and the checks the issue
  sets: selected >= best single candidate - 0.01 (ROC-AUC and PR-AUC); on the demo, within
  0.03 ROC-AUC of the point-in-time oracle, ECE <= 0.02, >= +0.10 over the health score.

Prints figures; asserts nothing (tests never time anything). Examples::

    python bench/bench_model_selection.py                       # every profile, their sizes
    python bench/bench_model_selection.py --profiles demo --n-accounts 1500
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("demo", "plg_monthly", "minimal", "other_vocabulary")
CANDIDATES = ("lightgbm", "logistic")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def profile_params(name: str, n_accounts: int | None) -> dict:
    from pipeline.stages.simulate.profiles import COMPANY_PROFILES

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if name != "demo":
        params = COMPANY_PROFILES[name].with_params(params)
        params["simulate"]["profile"] = name
    if n_accounts:
        params["simulate"]["n_accounts"] = n_accounts
    return params


def _cli(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DVC_NO_ANALYTICS="1")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"churn {' '.join(args)} failed:\n{done.stderr[-4000:]}")


def run_profile(name: str, n_accounts: int | None, work: Path) -> dict:
    from pipeline.core.config import parse_config
    from pipeline.core.layout import TRUTH_DECISIONS
    from pipeline.modeling.store import load_model
    from pipeline.stages.evaluate import evaluate_model, load_truth
    from pipeline.stages.train import run_train

    params = profile_params(name, n_accounts)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    _cli(["simulate", "--raw-dir", "data/raw/demo", "--truth-dir", "data/ground_truth"], work)
    _cli(["ingest", "--out", "data/interim"], work)
    _cli(["features", "--out", "data/processed/features.parquet"], work)
    prepared = time.perf_counter() - start
    features = work / "data/processed/features.parquet"
    table = pd.read_parquet(features)
    accounts = pd.read_parquet(work / "data/interim/accounts.parquet")
    truth, pit = load_truth(work / "data/ground_truth" / TRUTH_DECISIONS)

    runs: dict[str, dict] = {}
    for run in ("selected", *CANDIDATES):
        run_params = copy.deepcopy(params)
        if run != "selected":
            run_params["train"].setdefault("selection", {})["candidates"] = [run]
        config = parse_config(run_params)
        models = work / f"models_{run}"
        began = time.perf_counter()
        run_train(config, features, models)
        seconds = time.perf_counter() - began
        model = load_model(models)
        metrics, _, _ = evaluate_model(
            table,
            model,
            accounts=accounts,
            capacity=config.evaluate.capacity_per_csm,
            seed=config.base.seed,
            horizon_days=config.features.label_horizon_days,
            truth=truth,
            pit=pit,
        )
        runs[run] = {"metrics": metrics, "info": model.info, "train_s": seconds}
    return {
        "name": name,
        "accounts": params["simulate"]["n_accounts"],
        "rows": len(table),
        "prepare_s": prepared,
        "runs": runs,
    }


def report(result: dict) -> list[str]:
    """The profile's table and its checks; returns the failed checks."""
    runs = result["runs"]
    selected = runs["selected"]["metrics"]
    info = runs["selected"]["info"]
    print(
        f"\n== {result['name']}: {result['accounts']} accounts, {result['rows']} feature rows, "
        f"test {int(selected['test_rows'])} rows (churn {selected['test_churn_rate']:.3f}); "
        f"chosen: {info['model_description']}"
    )
    print(f"{'model':<34}{'ROC-AUC':>9}{'PR-AUC':>9}{'ECE':>8}{'train s':>9}")
    lines = [
        (
            f"selected ({info['learner']})",
            selected["roc_auc"],
            selected["pr_auc"],
            selected["ece"],
            runs["selected"]["train_s"],
        ),
    ]
    for c in CANDIDATES:
        m = runs[c]["metrics"]
        row = (f"candidate {c} alone", m["roc_auc"], m["pr_auc"], m["ece"], runs[c]["train_s"])
        lines.append(row)
    for prefix, label in (
        ("logreg_", "baseline logistic (simple)"),
        ("health_score_", "health score"),
        ("pit_oracle_", "point-in-time oracle"),
        ("oracle_", "full-information oracle"),
    ):
        if f"{prefix}roc_auc" in selected:
            roc, pr = selected[f"{prefix}roc_auc"], selected[f"{prefix}pr_auc"]
            lines.append((label, roc, pr, None, None))
    for label, roc, pr, ece, secs in lines:
        ece_text = f"{ece:8.4f}" if ece is not None else f"{'':8}"
        secs_text = f"{secs:9.1f}" if secs is not None else f"{'':9}"
        print(f"{label:<34}{roc:9.4f}{pr:9.4f}{ece_text}{secs_text}")
    folds = info["selection"]["candidates"]
    metric = info["selection"]["metric"]
    print(
        f"validation ({len(info['selection']['folds'])} folds, {metric}): "
        + ", ".join(
            f"{n} {s['score']:.4f} [{s['low']:.4f}, {s['high']:.4f}]" for n, s in folds.items()
        )
    )

    failed = []

    def check(ok: bool, text: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")
        if not ok:
            failed.append(f"{result['name']}: {text}")

    for metric_name in ("roc_auc", "pr_auc"):
        best = max(runs[c]["metrics"][metric_name] for c in CANDIDATES)
        check(
            selected[metric_name] >= best - 0.01,
            f"selected {metric_name} {selected[metric_name]:.4f} >= best single candidate "
            f"{best:.4f} - 0.01",
        )
    if result["name"] == "demo":
        if "pit_oracle_roc_auc" in selected:
            gap = selected["pit_oracle_roc_auc"] - selected["roc_auc"]
            check(gap <= 0.03, f"within 0.03 ROC-AUC of the point-in-time oracle (gap {gap:.4f})")
        check(selected["ece"] <= 0.02, f"ECE {selected['ece']:.4f} <= 0.02")
        lift = selected["roc_auc"] - selected["health_score_roc_auc"]
        check(lift >= 0.10, f"+{lift:.4f} ROC-AUC over the health score (>= 0.10)")
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=PROFILES)
    parser.add_argument(
        "--n-accounts", type=int, default=None, help="override every profile's size"
    )
    parser.add_argument("--work", type=Path, default=None, help="keep the scratch data here")
    args = parser.parse_args()
    failed: list[str] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.work or Path(tmp)
        for name in args.profiles:
            work = base / name
            work.mkdir(parents=True, exist_ok=True)
            result = run_profile(name, args.n_accounts, work)
            failed += report(result)
    print(
        f"\ntotal {time.perf_counter() - began:.0f} s, peak memory {_peak_rss_mib():.0f} MiB; "
        f"{len(failed)} check(s) failed" + "".join(f"\n  - {f}" for f in failed)
    )


if __name__ == "__main__":
    main()
