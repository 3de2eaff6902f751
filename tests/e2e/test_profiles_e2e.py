"""End to end on companies that do not look like the demo: `dvc repro` of the whole pipeline on
each simulator profile (plg_monthly, minimal, other_vocabulary), in a scratch copy of the repo
with the profile's params overlay (`pipeline.stages.simulate.profiles`) merged into params.yaml.

The scratch repository is built the way tests/e2e/test_pipeline_e2e.py builds the demo's: the
pipeline and feature packages, dvc.yaml, a params.yaml with small sizes, `git init`, `dvc init`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.stages.simulate.profiles import COMPANY_PROFILES

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ("plg_monthly", "minimal", "other_vocabulary")
#: Accounts per profile: the fewest that give train's split its 20 churned rows per period
#: (minimal's renewals are mostly annual, as the demo's, whose end-to-end test uses 400).
N_ACCOUNTS = {"plg_monthly": 300, "minimal": 400, "other_vocabulary": 300}
#: How much of a failed run's output an assertion message shows.
_TAIL_CHARS = 6000


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(cwd))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # mlflow.set_tracking_uri (earlier tests) exports the URI; the scratch repo tracks alone
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def profile_params(name: str, *, n_accounts: int | None = None) -> dict:
    """The repository's params.yaml with the profile chosen, its overlay merged in, and the
    small sizes of an end-to-end test."""
    params = COMPANY_PROFILES[name].with_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    params["simulate"]["profile"] = name
    params["simulate"]["n_accounts"] = n_accounts or N_ACCOUNTS[name]
    params["features"]["duckdb"] = {"threads": 1, "memory_limit": None}
    return params


@pytest.fixture(scope="module", params=PROFILES)
def repo(request, tmp_path_factory) -> dict:
    """A scratch repository per profile with `dvc repro` run once: its path, params, and the
    seconds the run took (shown with -s)."""
    name = request.param
    work = tmp_path_factory.mktemp(f"repo_{name}")
    for package in ("pipeline", "features"):
        shutil.copytree(
            ROOT / package, work / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "dvc.yaml", work / "dvc.yaml")
    params = profile_params(name)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _run(args, work).returncode == 0
    start = time.perf_counter()
    result = _run(["dvc", "repro"], work)
    seconds = time.perf_counter() - start
    print(f"\n[{name}] dvc repro: {seconds:.1f} s")
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"[{name}] dvc repro failed:\n{output[-_TAIL_CHARS:]}"
    return {"name": name, "path": work, "params": params, "seconds": seconds}


@pytest.mark.slow
def test_ingest_keeps_every_row_it_reads(repo):
    """rows_read = accepted + quarantined for every table, and no table quarantines more than
    ingest.max_quarantine_share (the run would have stopped)."""
    report = json.loads((repo["path"] / "data/interim/validation_report.json").read_text())
    limit = repo["params"]["ingest"]["max_quarantine_share"]
    profile = COMPANY_PROFILES[repo["name"]]
    present = {t for t, entry in report["tables"].items() if entry["status"] == "ok"}
    assert present == set(profile.tables), repo["name"]
    for table, entry in report["tables"].items():
        assert entry["rows_read"] == entry["rows_accepted"] + entry["rows_quarantined"], table
        if entry["rows_read"]:
            assert entry["rows_quarantined"] / entry["rows_read"] <= limit, (table, entry)
    assert report["rows_read"] == report["rows_accepted"] + report["rows_quarantined"]


@pytest.mark.slow
def test_the_weekly_lists_hold_accounts_and_the_unassigned_list_is_not_empty(repo):
    as_of = repo["params"]["base"]["as_of_date"]
    lists = repo["path"] / "reports" / "lists" / str(as_of)
    manifest = json.loads((lists / "manifest.json").read_text())
    assert manifest["n_accounts"] > 0
    assert manifest["n_listed"] > 0 or manifest["csms"]
    unassigned = manifest["unassigned"]
    # The unassigned book is never dropped: its list exists and counts every such account; it
    # holds the ones at or above the action floor (possibly none in a given week).
    accounts = pd.read_parquet(lists / "accounts.parquet")
    book = accounts[accounts["csm_id"].isna()]
    assert unassigned is not None and unassigned["n_owned"] == len(book) > 0, manifest
    assert unassigned["n_accounts"] == int(book["list_rank"].notna().sum()), unassigned
    assert (lists / unassigned["csv"]).is_file() and (lists / unassigned["html"]).is_file()
    assert manifest["n_unassigned"] > 0
    if repo["name"] == "minimal":  # no CSM at all: the whole book is unassigned
        assert manifest["csms"] == [] and manifest["n_unassigned"] == manifest["n_accounts"]
    else:
        assert manifest["csms"], "accounts with a known CSM get their CSM's list"
        assert set(unassigned["by_reason"]) >= {"no_csm", "unknown_csm"}, unassigned


@pytest.mark.slow
def test_the_model_is_trained_evaluated_and_reported(repo):
    metrics = json.loads((repo["path"] / "reports" / "metrics.json").read_text())
    assert metrics["test_rows"] > 0 and 0.0 < metrics["roc_auc"] <= 1.0
    assert 0.0 < metrics.get("oracle_matched_share", 1.0) <= 1.0
    page = (repo["path"] / "reports" / "leadership.html").read_text()
    assert "<html" in page


#: Features each profile's exports make possible, which the trained model must have been given.
EXPECTED_FEATURES = {
    "plg_monthly": (
        "events_type_view_30d",
        "usage_value_30d",
        "active_days_30d",
        "csat_mean_90d",
        "sla_breaches_90d",
    ),
    "minimal": ("attr_employees", "attr_channel", "attr_discount_pct", "active_days_30d"),
    "other_vocabulary": ("sla_breaches_90d", "active_users_30d", "trained_user_share"),
}


@pytest.mark.slow
def test_the_model_uses_what_the_exports_carry(repo):
    """The vocabulary resolved from the profile's data (event types, values, attributes) is
    what the model was trained on and what it keeps for scoring."""
    info = json.loads((repo["path"] / "models" / "training_info.json").read_text())
    schema = json.loads((repo["path"] / "models" / "feature_schema.json").read_text())
    names = {c["name"] for c in schema["features"]}
    missing = [n for n in EXPECTED_FEATURES[repo["name"]] if n not in names]
    assert not missing, (repo["name"], missing)
    summary = json.loads((repo["path"] / "reports" / "feature_summary.json").read_text())
    assert info["vocabulary"] == summary["vocabulary"]
    if repo["name"] == "minimal":
        assert dict(info["vocabulary"]["attributes"])["channel"] == "category"
