"""The docs describe the code as it is."""

from __future__ import annotations

from pathlib import Path

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
