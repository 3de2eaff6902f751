"""Shared fixtures: a tiny, valid raw dataset in the contract's shape, as text like a CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")


def pytest_configure(config):
    # py4j logs "Closing down clientserver connection" at interpreter exit, after pytest has
    # closed the log streams, which prints a spurious "Logging error" below the summary.
    import logging

    logging.getLogger("py4j").setLevel(logging.WARNING)


def tiny_raw_tables() -> dict[str, pd.DataFrame]:
    """Two CSMs, three accounts and a little of everything, all valid."""
    return {
        "csms": pd.DataFrame(
            {
                "csm_id": ["CSM1", "CSM2"],
                "name": ["Ada Lovelace", "Grace Hopper"],
                "email": ["ada@example.com", "grace@example.com"],
            }
        ),
        "accounts": pd.DataFrame(
            {
                "account_id": ["A1", "A2", "A3"],
                "account_name": ["Acme", "Globex", "Initech"],
                "segment": ["smb", "mid_market", "enterprise"],
                "industry": ["retail", "software", "finance"],
                "region": ["emea", "na", "na"],
                "created_at": [
                    "2024-01-10T09:00:00Z",
                    "2024-02-01T00:00:00+01:00",
                    "2024-03-15T12:30:00Z",
                ],
                "csm_id": ["CSM1", "CSM1", "CSM2"],
            }
        ),
        "contracts": pd.DataFrame(
            {
                "contract_id": ["K1", "K2", "K3", "K4"],
                "account_id": ["A1", "A2", "A3", "A1"],
                "start_date": ["2024-01-10", "2024-02-01", "2024-03-15", "2024-02-10"],
                "end_date": ["2024-02-10", "2025-02-01", "2026-03-15", "2024-03-10"],
                "arr": ["1200", "24000.5", "250000", "1200"],
                "seats": ["5", "40", "300", "5"],
                "plan": ["starter", "growth", "enterprise", "starter"],
            }
        ),
        "users": pd.DataFrame(
            {
                "user_id": ["U1", "U2", "U3", "U4"],
                "account_id": ["A1", "A2", "A2", "A3"],
                "created_at": [
                    "2024-01-10T10:00:00Z",
                    "2024-02-02T08:00:00Z",
                    "2024-02-03T08:00:00Z",
                    "2024-03-16T08:00:00Z",
                ],
                "role": ["admin", "admin", "member", "admin"],
                "deactivated_at": [None, None, "2024-06-01T00:00:00Z", None],
            }
        ),
        "usage_events": pd.DataFrame(
            {
                "account_id": ["A1", "A2", "A2", "A3", "A3"],
                "user_id": ["U1", "U2", "U3", "U4", None],
                "occurred_at": [
                    "2024-01-11T10:00:00Z",
                    "2024-02-05T10:00:00Z",
                    "2024-02-06T10:00:00Z",
                    "2024-04-01T10:00:00Z",
                    "2024-04-02T10:00:00Z",
                ],
                "module": ["dashboard", "reports", "automation", "api", "dashboard"],
                "event_type": ["view", "view", "run", "call", "view"],
                "count": ["3", "1", "2", "10", "1"],
                "value": ["12.5", None, "3", None, "0.5"],
            }
        ),
        "trainings": pd.DataFrame(
            {
                "user_id": ["U1", "U2"],
                "account_id": ["A1", "A2"],
                "course_id": ["basics", "basics"],
                "enrolled_at": ["2024-01-12T00:00:00Z", "2024-02-10T00:00:00Z"],
                "completed_at": ["2024-01-20T00:00:00Z", None],
                "score": ["88", None],
            }
        ),
        "support_tickets": pd.DataFrame(
            {
                "ticket_id": ["T1", "T2"],
                "account_id": ["A2", "A3"],
                "priority": ["high", "urgent"],
                "opened_at": ["2024-03-01T09:00:00Z", "2024-05-01T09:00:00Z"],
                "first_response_at": ["2024-03-01T15:00:00Z", None],
                "resolved_at": ["2024-03-03T09:00:00Z", None],
                "sla_first_response_hours": ["4", "1"],
                "sla_resolution_hours": ["48", "24"],
                "escalated": ["false", "true"],
            }
        ),
        "nps_responses": pd.DataFrame(
            {
                "account_id": ["A1", "A2"],
                "user_id": ["U1", None],
                "responded_at": ["2024-04-01T00:00:00Z", "2024-04-02T00:00:00Z"],
                "score": ["9", "3"],
            }
        ),
        "satisfaction_responses": pd.DataFrame(
            {
                "account_id": ["A1", "A2", "A3"],
                "user_id": ["U1", None, "U4"],
                "responded_at": [
                    "2024-03-01T00:00:00Z",
                    "2024-04-02T00:00:00Z",
                    "2024-05-02T00:00:00Z",
                ],
                "survey": ["csat", "csat", "ces"],
                "score": ["4", "2", "6"],
            }
        ),
        "csm_touchpoints": pd.DataFrame(
            {
                "account_id": ["A1", "A3"],
                "occurred_at": ["2024-02-01T14:00:00Z", "2024-06-01T14:00:00Z"],
                "kind": ["call", "qbr"],
            }
        ),
        "account_attributes": pd.DataFrame(
            {
                "account_id": ["A1", "A1", "A2"],
                "attribute": ["employees", "employees", "channel"],
                "value": ["12", "30", "partner"],
                "valid_from": [
                    "2024-01-10T09:00:00Z",
                    "2024-06-01T00:00:00Z",
                    "2024-02-01T00:00:00Z",
                ],
            }
        ),
    }


def write_dir(tables: dict[str, pd.DataFrame], directory: Path, fmt: str = "csv") -> Path:
    """Write raw tables as a source directory (CSV or Parquet)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(directory / f"{name}.csv", index=False)
        else:
            frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


@pytest.fixture
def raw_tables() -> dict[str, pd.DataFrame]:
    return tiny_raw_tables()


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """A small simulated company (60 accounts), ingested: (interim_dir, validation report)."""
    from pipeline.data.sources import DirectorySource
    from pipeline.stages.ingest import ingest_source
    from pipeline.stages.simulate import SimulationConfig, write_simulation

    root = tmp_path_factory.mktemp("small_demo")
    config = SimulationConfig(n_accounts=60, seed=7)
    write_simulation(config, root / "raw", root / "truth")
    as_of = pd.Timestamp(config.as_of_date, tz="UTC")
    report = ingest_source(DirectorySource(root / "raw"), root / "interim", as_of=as_of)
    return root / "interim", report, config


def feature_settings(as_of) -> FeatureSettings:  # noqa: F821 - imported lazily
    """The default feature settings (params.yaml) with the data's as-of date."""
    from features.definitions import settings_from_config
    from pipeline.feature_engine.build import day_number

    return settings_from_config(make_config(), day_number(as_of))


ROOT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def default_params() -> dict:
    """The repository's params.yaml as a dict (tests override what they need)."""
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def make_config(params: dict | None = None):
    """The typed config of a params dict (default: the repository's params.yaml)."""
    from pipeline.core.config import parse_config

    return parse_config(default_params() if params is None else params)


@pytest.fixture(scope="session")
def medium_demo(tmp_path_factory):
    """A simulated company big enough to train on (500 accounts): features and a model.

    Returns a dict with the paths (interim, features, models, truth) and the params used.
    """
    from pipeline.data.sources import DirectorySource
    from pipeline.stages.features import run_features
    from pipeline.stages.ingest import ingest_source
    from pipeline.stages.simulate import SimulationConfig, write_simulation
    from pipeline.stages.train import run_train

    root = tmp_path_factory.mktemp("medium_demo")
    params = default_params()
    config = SimulationConfig(n_accounts=500, seed=11, start_date=params["simulate"]["start_date"])
    write_simulation(config, root / "raw", root / "truth")
    as_of = pd.Timestamp(config.as_of_date, tz="UTC")
    ingest_source(DirectorySource(root / "raw"), root / "interim", as_of=as_of)
    params["base"]["as_of_date"] = str(config.as_of_date)
    params["features"]["duckdb"] = {"threads": 1}
    config = make_config(params)
    run_features(config, root / "interim", root / "features.parquet", root / "summary.json")
    run_train(config, root / "features.parquet", root / "models")
    return {
        "root": root,
        "params": params,
        "config": config,
        "interim": root / "interim",
        "features": root / "features.parquet",
        "models": root / "models",
        "truth": root / "truth" / "renewal_decisions.parquet",
    }


@pytest.fixture(scope="session")
def learner_models(medium_demo, tmp_path_factory):
    """medium_demo's features trained with each candidate pinned (a short search): a dict of
    kind -> LoadedModel, plus the features path and the known rows' count."""
    import copy
    from dataclasses import replace

    from pipeline.modeling.learners import BlendLearner
    from pipeline.modeling.store import load_model, save_model
    from pipeline.stages.train import run_train

    root = tmp_path_factory.mktemp("learners")
    out: dict = {"features": medium_demo["features"]}
    for kind in ("lightgbm", "logistic"):
        params = copy.deepcopy(medium_demo["params"])
        params["train"]["selection"] = {"candidates": [kind], "trials": 2, "folds": 2}
        run_train(make_config(params), medium_demo["features"], root / kind)
        out[kind] = load_model(root / kind)
        out[f"{kind}_dir"] = root / kind
    # a blend of the two (same split, same schema), written and read back through the store
    blend = replace(
        out["lightgbm"], learner=BlendLearner(out["lightgbm"].learner, out["logistic"].learner, 0.4)
    )
    save_model(blend, root / "blend")
    out["blend"], out["blend_dir"] = load_model(root / "blend"), root / "blend"
    return out


# Account and CSM names that attack spreadsheets (formula injection) and HTML pages.
HOSTILE_NAMES = [
    '=HYPERLINK("http://x","y")',
    "+cmd",
    "@SUM(1)",
    "-2+3",
    "<script>alert(1)</script>",
]


@pytest.fixture(scope="session")
def scored_demo(medium_demo, tmp_path_factory):
    """medium_demo scored at its as-of date by `run_score`, on a copy of its validated tables
    whose account names (and two CSM names) are hostile.

    Returns a dict: out (the lists directory), interim (the copy), manifest, params.
    """
    import copy
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.stages.score import run_score

    root = tmp_path_factory.mktemp("scored_demo")
    interim = root / "interim"
    shutil.copytree(medium_demo["interim"], interim)
    for table, column, count in (("accounts", "account_name", None), ("csms", "name", 2)):
        path = interim / f"{table}.parquet"
        original = pq.read_table(path)
        frame = original.to_pandas()
        rows = len(frame) if count is None else count
        names = HOSTILE_NAMES if count is None else HOSTILE_NAMES[::-1]
        frame.loc[: rows - 1, column] = [names[i % len(names)] for i in range(rows)]
        pq.write_table(pa.Table.from_pandas(frame, schema=original.schema), path)
    params = copy.deepcopy(medium_demo["params"])
    manifest = run_score(
        medium_demo["config"],
        as_of=None,
        interim_dir=interim,
        model_ref=str(medium_demo["models"]),
        reference_features=medium_demo["features"],
        out_dir=root / "lists",
    )
    return {
        "out": root / "lists",
        "interim": interim,
        "manifest": manifest.model_dump(mode="json"),
        "params": params,
        "config": medium_demo["config"],
        "models": medium_demo["models"],
        "features": medium_demo["features"],
        "truth": medium_demo["root"] / "truth" / "accounts.parquet",
    }


@pytest.fixture(scope="session")
def demo_repo(medium_demo, scored_demo, tmp_path_factory):
    """medium_demo's outputs (evaluated, backtested, scored) laid out like a checkout after
    `dvc repro`: the leadership report and the notebooks read it. See tests/report_fixtures.py.
    """
    from tests.report_fixtures import build_demo_repo

    return build_demo_repo(
        medium_demo, scored_demo["out"], tmp_path_factory.mktemp("demo_repo") / "repo"
    )
