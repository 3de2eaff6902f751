"""Metrics on hand-made examples, and the evaluate stage on a small simulated company."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.modeling.metrics import (
    binary_metrics,
    capacity_flags,
    expected_calibration_error,
    lift_at,
    precision_recall_at_capacity,
)
from pipeline.stages.evaluate import run_evaluate

REQUIRED_KEYS = {
    "roc_auc",
    "pr_auc",
    "brier",
    "ece",
    "lift_top_decile",
    "health_score_roc_auc",
    "logreg_roc_auc",
    "oracle_roc_auc",
    "oracle_pr_auc",
    "precision_at_capacity",
    "recall_at_capacity",
}


def test_ece_by_hand():
    # bin [0.1,0.2): p=0.15 twice, observed 1/2 -> |0.5-0.15| * 2 rows
    # bin [0.8,0.9): p=0.85 twice, observed 2/2 -> |1-0.85| * 2 rows
    p = np.array([0.15, 0.15, 0.85, 0.85])
    y = np.array([0, 1, 1, 1])
    assert expected_calibration_error(y, p) == pytest.approx((0.35 * 2 + 0.15 * 2) / 4)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_lift_by_hand():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    score = np.array([0.9, 0.1, 0.2, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05])
    # top 10% = 1 row (the 0.9), churned; base rate 0.2 -> lift 5
    assert lift_at(y, score, share=0.1) == pytest.approx(5.0)


def test_capacity_lists_are_per_csm_and_week():
    frame = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d", "e", "f"],
            "csm_id": ["x", "x", "x", "y", "y", "y"],
            "snapshot_date": ["w1"] * 6,
            "p": [0.9, 0.8, 0.1, 0.3, 0.2, 0.2],
            "churned": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        }
    )
    flags = capacity_flags(frame, score="p", k=2, group=["csm_id", "snapshot_date"])
    # CSM y: d (0.3), then the 0.2 tie broken by account_id: e before f
    assert flags.tolist() == [True, True, False, True, True, False]
    precision, recall = precision_recall_at_capacity(
        frame, score="p", label="churned", k=2, group=["csm_id", "snapshot_date"]
    )
    assert precision == pytest.approx(2 / 4)  # a and e among a, b, d, e
    assert recall == pytest.approx(2 / 3)  # a, e of a, c, e


def test_binary_metrics_need_both_classes():
    with pytest.raises(ValueError, match="both churned and retained"):
        binary_metrics(np.zeros(5), np.full(5, 0.1))


def test_evaluate_writes_required_metrics_and_plots(medium_demo, tmp_path):
    metrics_path, plots = tmp_path / "metrics.json", tmp_path / "plots"
    metrics = run_evaluate(
        medium_demo["config"],
        medium_demo["features"],
        medium_demo["models"],
        medium_demo["interim"],
        metrics_path,
        plots,
        medium_demo["truth"],
    )
    assert set(metrics) >= REQUIRED_KEYS
    assert json.loads(metrics_path.read_text()) == metrics
    assert metrics["oracle_matched_share"] == 1.0
    # the point-in-time oracle sees each test row from its own snapshot: a fairer, lower bar
    assert metrics["pit_oracle_matched_share"] >= 0.95
    assert metrics["roc_auc"] < metrics["pit_oracle_roc_auc"] < metrics["oracle_roc_auc"]
    for name in ("roc", "precision_recall", "calibration", "lift"):
        frame = pd.read_csv(plots / f"{name}.csv")
        assert len(frame) > 1
    assert all(np.isfinite(v) for v in metrics.values())
    assert {"segment_smb_roc_auc", "segment_smb_rows"} <= set(metrics)
    # every candidate's validation score and interval, and which one is in use
    info = json.loads((medium_demo["models"] / "training_info.json").read_text())
    metric = info["selection"]["metric"]
    for name, scored in info["selection"]["candidates"].items():
        assert metrics[f"selection_{name}_{metric}"] == pytest.approx(scored["score"])
        low, high = (
            metrics[f"selection_{name}_{metric}_low"],
            metrics[f"selection_{name}_{metric}_high"],
        )
        assert low <= metrics[f"selection_{name}_{metric}"] <= high
    assert metrics[f"selection_chosen_{info['learner']}"] == 1.0


def test_minimum_quality_on_a_small_fixed_demo(medium_demo, tmp_path):
    """Sensible floors for 500 accounts (the default demo is held to the issue's targets)."""
    metrics = run_evaluate(
        medium_demo["config"],
        medium_demo["features"],
        medium_demo["models"],
        medium_demo["interim"],
        tmp_path / "m.json",
        tmp_path / "plots",
        medium_demo["truth"],
    )
    # measured on this demo (seed 11): roc_auc 0.83, lift 4.4, ece 0.02, oracle gap 0.12; the
    # test period holds only ~30 churned rows, so the floors leave room for that noise
    assert metrics["roc_auc"] >= 0.75
    assert metrics["lift_top_decile"] >= 3.0
    assert metrics["ece"] <= 0.05
    assert metrics["oracle_roc_auc"] - metrics["roc_auc"] <= 0.15
