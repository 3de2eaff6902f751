"""Model quality metrics a data scientist and a CS leader both read.

Pure functions over arrays: ranking quality (ROC-AUC, PR-AUC), probability quality (Brier, log
loss, expected calibration error) and the business view (top-decile lift; precision and recall
when each CSM can work only their top k accounts).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> float:
    """Mean |observed rate - predicted probability| over equal-width bins, weighted by rows."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(y))


def lift_at(y: np.ndarray, score: np.ndarray, *, share: float = 0.1) -> float:
    """Churn rate among the top `share` by score, over the overall churn rate."""
    y, score = np.asarray(y, dtype=float), np.asarray(score, dtype=float)
    n = max(1, round(len(y) * share))
    order = np.lexsort((np.arange(len(score)), -score))  # ties: keep input order
    base = y.mean()
    return float(y[order[:n]].mean() / base) if base > 0 else float("nan")


def capacity_flags(frame: pd.DataFrame, *, score: str, k: int, group: list[str]) -> pd.Series:
    """True for the top-k rows by score within each group (a CSM's list in one week).

    Ties are broken by account_id so the flags are deterministic.
    """
    ranked = frame.sort_values(
        [*group, score, "account_id"],
        ascending=[True] * len(group)
        + [
            False,
            True,
        ],
    )
    rank = ranked.groupby(group, sort=False).cumcount()
    return (rank < k).reindex(frame.index)


def precision_recall_at_capacity(
    frame: pd.DataFrame, *, score: str, label: str, k: int, group: list[str]
) -> tuple[float, float]:
    """Precision and recall of the lists each CSM can work (top k per CSM and snapshot)."""
    flagged = capacity_flags(frame, score=score, k=k, group=group)
    y = frame[label].astype(float)
    hits = float((y[flagged] == 1).sum())
    precision = hits / max(1, int(flagged.sum()))
    recall = hits / max(1.0, float((y == 1).sum()))
    return precision, recall


def binary_metrics(y: np.ndarray, p: np.ndarray, *, prefix: str = "") -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, log loss, ECE and top-decile lift, as a flat dict."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(np.unique(y)) < 2:
        raise ValueError("metrics need both churned and retained rows")
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return {
        f"{prefix}roc_auc": float(roc_auc_score(y, p)),
        f"{prefix}pr_auc": float(average_precision_score(y, p)),
        f"{prefix}brier": float(brier_score_loss(y, clipped)),
        f"{prefix}log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        f"{prefix}ece": expected_calibration_error(y, p),
        f"{prefix}lift_top_decile": lift_at(y, p, share=0.1),
    }


def curves(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> dict[str, pd.DataFrame]:
    """ROC, precision-recall, calibration and cumulative lift curves as tidy frames."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    fpr, tpr, _ = roc_curve(y, p)
    precision, recall, _ = precision_recall_curve(y, p)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    calib = (
        pd.DataFrame({"bin": which, "predicted": p, "observed": y})
        .groupby("bin")
        .agg(
            predicted=("predicted", "mean"),
            observed=("observed", "mean"),
            rows=("observed", "size"),
        )
        .reset_index()
    )
    order = np.lexsort((np.arange(len(p)), -p))
    cum = np.cumsum(y[order])
    share = np.arange(1, len(y) + 1) / len(y)
    lift = pd.DataFrame({"population_share": share, "captured_share": cum / max(1.0, y.sum())})
    step = max(1, len(lift) // 100)
    return {
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
        "precision_recall": pd.DataFrame({"recall": recall, "precision": precision}),
        "calibration": calib,
        "lift": lift.iloc[::step].reset_index(drop=True),
    }
