"""`dvc exp show` stays readable: what dvc.yaml declares as metrics, and the README recipe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _flat_keys(value, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [k for key, v in value.items() for k in _flat_keys(v, f"{prefix}{key}.")]
    if isinstance(value, list):
        return [k for i, v in enumerate(value) for k in _flat_keys(v, f"{prefix}{i}.")]
    return [prefix.rstrip(".")]


def _declared(kind: str) -> list[str]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        for entry in stage.get(kind, []):
            paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def test_the_feature_summary_is_a_plain_output_not_a_metric():
    assert "reports/feature_summary.json" not in _declared("metrics")
    assert "reports/feature_summary.json" in _declared("outs")


def test_declared_metrics_stay_a_readable_number_of_columns():
    """Every metrics file becomes `dvc exp show` columns: a budget catches a summary declared
    as a metric (the feature summary alone was 768 columns)."""
    keys = [
        k
        for path in _declared("metrics")
        for k in _flat_keys(json.loads((ROOT / path).read_text()))
    ]
    assert 0 < len(keys) < 120, len(keys)


def test_the_readme_recipe_keeps_exp_show_under_sixty_columns():
    """The documented `--drop` pattern leaves the headline metrics, and fewer than 60 columns."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"dvc exp show --only-changed --drop '([^']+)'", readme)
    assert match, "README lacks the dvc exp show recipe"
    drop = re.compile(match.group(1))
    keys = [
        k
        for path in _declared("metrics")
        for k in _flat_keys(json.loads((ROOT / path).read_text()))
    ]
    shown = [k for k in keys if not drop.fullmatch(k)]
    assert len(shown) < 60, shown
    for headline in ("roc_auc", "pr_auc", "ece", "lift_top_decile", "precision_at_capacity"):
        assert headline in shown
