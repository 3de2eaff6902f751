"""The docs describe the code as it is."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from features.definitions import registry_for
from features.registry import registry_markdown
from pipeline.core.config import load_config
from pipeline.data.contract import TABLES, contract_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_data_contract_doc_matches_the_code():
    doc = (ROOT / "docs" / "data-contract.md").read_text()
    begin = "<!-- BEGIN GENERATED: churn contract -->\n"
    generated = doc.split(begin, 1)[1].split("<!-- END GENERATED -->", 1)[0]
    assert generated == contract_markdown(), (
        "regenerate with: churn contract --write docs/data-contract.md"
    )
    for name, spec in TABLES.items():
        assert f"### `{name}`" in generated
        for column in spec.column_names:
            assert f"| `{column}` |" in generated


def test_features_doc_matches_the_registry():
    doc = (ROOT / "docs" / "features.md").read_text()
    generated = doc.split("<!-- BEGIN GENERATED: churn registry -->\n", 1)[1]
    generated = generated.split("<!-- END GENERATED -->", 1)[0]
    registry = registry_for(load_config(ROOT / "params.yaml"))
    assert generated == registry_markdown(registry), (
        "regenerate with: churn registry --write docs/features.md"
    )
    for feature in registry:
        assert f"| `{feature.name}` |" in generated


def test_the_generated_blocks_are_rewritten_in_place(tmp_path):
    """`churn registry --write` replaces only its block, so the doc is regenerated, not edited."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    doc = tmp_path / "features.md"
    doc.write_text(
        "intro\n<!-- BEGIN GENERATED: churn registry -->\nstale\n<!-- END GENERATED -->\nend\n"
    )
    result = CliRunner().invoke(
        app, ["registry", "--params", str(ROOT / "params.yaml"), "--write", str(doc)]
    )
    assert result.exit_code == 0, result.output
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("<!-- END GENERATED -->\nend\n")
    expected = registry_markdown(registry_for(load_config(ROOT / "params.yaml")))
    assert expected in text and "stale" not in text
    doc.write_text("no markers here\n")
    result = CliRunner().invoke(
        app, ["registry", "--params", str(ROOT / "params.yaml"), "--write", str(doc)]
    )
    assert (
        result.exit_code == 2 and "no '<!-- BEGIN GENERATED: churn registry -->'" in result.output
    )


# --- docs/how-to.md: the worked examples run against the code ------------------------------

HOW_TO = ROOT / "docs" / "how-to.md"


def _section(title: str) -> str:
    text = HOW_TO.read_text()
    assert f"\n## {title}\n" in text, f"docs/how-to.md has no section {title!r}"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(section: str, language: str) -> list[str]:
    parts = section.split(f"```{language}\n")[1:]
    return [part.split("\n```", 1)[0] + "\n" for part in parts]


def _exec(source: str) -> dict:
    namespace: dict = {"__name__": "how_to_example"}
    exec(compile(source, str(HOW_TO), "exec"), namespace)
    return namespace


def test_the_how_to_feature_example_builds_and_computes(tmp_path, monkeypatch):
    """The worked feature, added to the support family's windowed features as the how-to says,
    is declared once per window by the registry and computed on the fixture company."""
    from dataclasses import replace
    from types import MappingProxyType

    import features.definitions
    import features.registry
    import pipeline.feature_engine.build
    from features.families import support
    from features.registry import FAMILIES, build_registry
    from tests.feature_fixtures import SETTINGS, SNAPSHOT, compute_features, fixture_tables

    (block,) = _blocks(_section("Adding a feature"), "python")
    declare = _exec(block)["tickets_per_seat"]
    family = replace(
        support.FAMILY, per_window=lambda w, s: [*support._per_window(w, s), declare(w)]
    )
    families = MappingProxyType({**FAMILIES, "support": family})
    for module in (features.registry, features.definitions, pipeline.feature_engine.build):
        monkeypatch.setattr(module, "FAMILIES", families)

    names = [f.name for f in build_registry(SETTINGS.windows, settings=SETTINGS)]
    for w in SETTINGS.windows:
        assert names.index(f"tickets_per_seat_{w}d") == names.index(f"tickets_opened_{w}d") + 9
    table = compute_features(fixture_tables(), tmp_path, [SNAPSHOT])
    assert len(table) > 0
    for w in SETTINGS.windows:
        expected = table[f"tickets_opened_{w}d"] / table["seats"].where(table["seats"] > 0)
        got = table[f"tickets_per_seat_{w}d"]
        assert got.notna().any() and (table[f"tickets_opened_{w}d"] > 0).any()
        pd.testing.assert_series_equal(got, expected, check_names=False, check_dtype=False)


def test_the_how_to_model_candidate_example_fits_and_keeps_directions():
    """The sparse logistic candidate searches, fits exact contributions and holds a
    coefficient against its declared direction at 0, on a small synthetic problem."""
    from pipeline.modeling.explain import check_additivity
    from pipeline.modeling.selection import Fold

    (block,) = _blocks(_section("Adding a model candidate"), "python")
    example = _exec(block)
    rng = np.random.default_rng(0)
    n = 600
    X = pd.DataFrame(
        {
            "breaches": rng.poisson(2.0, n).astype(float),
            "seats_used": rng.uniform(0, 1, n),
            "noise": rng.normal(size=n),
            "segment": pd.Categorical(rng.choice(["smb", "enterprise"], n)),
        }
    )
    logit = -1.0 + 0.8 * X["breaches"] - 2.5 * X["seats_used"]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    rows = np.arange(n)
    folds = [
        Fold(date(2024, 1, 1), date(2024, 3, 31), rows < 300, (rows >= 300) & (rows < 450)),
        Fold(date(2024, 4, 1), date(2024, 6, 30), rows < 450, rows >= 450),
    ]
    # seats_used truly lowers the risk; declared the other way round, it must be held at 0
    monotone = {"breaches": 1, "seats_used": 1}
    candidate = example["search_sparse_logistic"](
        X, y, folds, categorical=["segment"], metric="pr_auc", seed=0, monotone=monotone
    )
    assert candidate.name == "sparse_logistic"
    assert candidate.params["C"] in example["SPARSE_C_GRID"]
    assert [len(r) for r in candidate.fold_raw] == [150, 150]
    draft = example["prepare_linear"](X, categorical=["segment"])
    learner = example["fit_sparse_linear"](
        draft, draft.standardised(X), y, C=0.1, seed=0, monotone=monotone
    )
    coef = {(c.feature, c.kind): c.coef for c in learner.columns}
    assert coef[("breaches", "value")] > 0
    assert coef[("seats_used", "value")] == 0.0
    assert learner.kind == "logistic"  # stored as linear.json by the unchanged model store
    contributions, base = learner.contributions(X)
    assert check_additivity(contributions, base, learner.raw(X)) < 1e-6


def test_the_how_to_names_what_exists():
    """Every file, setting and code name the how-to points at is there, and its label SQL is
    the current label view with one added condition."""
    import importlib
    import re

    text = HOW_TO.read_text()
    for path in sorted(set(re.findall(r"`((?:pipeline|features|tests|docs)/[\w/.-]+)`", text))):
        assert (ROOT / path).exists(), f"docs/how-to.md names {path}, which does not exist"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key in (
        "base.renewal_grace_days",
        "features.label_horizon_days",
        "features.windows",
        "train.selection.candidates",
    ):
        assert key in text
        node = params
        for part in key.split("."):
            node = node[part]
    names = {
        "features.families.support": ["_per_window", "_views"],
        "features.sql": ["ratio"],
        "features.labels": ["label_statement"],
        "features.definitions": ["settings_from_config"],
        "pipeline.modeling.selection": ["SIMPLICITY", "choose"],
        "pipeline.modeling.learners": ["ADDITIVITY_TOLERANCE", "solve_linear", "LinearLearner"],
        "pipeline.core.config": ["CandidateName"],
        "pipeline.core.labels": ["LabelRule"],
        "pipeline.stages.train": ["train_model"],
        "pipeline.stages.report.words": ["CANDIDATE_NAMES"],
        "tests.data.test_features_fixtures": ["EXPECTED"],
    }
    for module, attributes in names.items():
        loaded = importlib.import_module(module)
        for name in attributes:
            assert re.search(rf"`{name}[`(\[]", text), f"docs/how-to.md no longer names {name}"
            assert hasattr(loaded, name), f"{module}.{name} named in docs/how-to.md is gone"
    (sql,) = _blocks(_section("Changing the label rule"), "sql")
    added = " AND c.arr >= 0.5 * s.arr"
    assert added in sql
    current = (ROOT / "features" / "labels.py").read_text()
    current_words = " ".join(current.replace("SELECT account_id, contract_id,", "SELECT").split())
    example_words = " ".join(
        sql.replace(added, "").replace("SELECT account_id, contract_id, arr,", "SELECT").split()
    )
    assert example_words in current_words, "the label view changed: update docs/how-to.md"
