"""The docs describe the code as it is."""

from __future__ import annotations

from pathlib import Path

from features.registry import build_registry, registry_markdown
from pipeline.data.contract import TABLES, contract_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_data_contract_doc_matches_the_code():
    doc = (ROOT / "docs" / "data-contract.md").read_text()
    begin = "<!-- BEGIN GENERATED: churn contract -->\n"
    generated = doc.split(begin, 1)[1].split("<!-- END GENERATED -->", 1)[0]
    assert generated == contract_markdown(), "regenerate with: churn contract"
    for name, spec in TABLES.items():
        assert f"### `{name}`" in generated
        for column in spec.column_names:
            assert f"| `{column}` |" in generated


def test_features_doc_matches_the_registry():
    doc = (ROOT / "docs" / "features.md").read_text()
    generated = doc.split("<!-- BEGIN GENERATED: churn registry -->\n", 1)[1]
    generated = generated.split("<!-- END GENERATED -->", 1)[0]
    registry = build_registry((30, 90))
    assert generated == registry_markdown(registry), "regenerate with: churn registry"
    for feature in registry:
        assert f"| `{feature.name}` |" in generated
