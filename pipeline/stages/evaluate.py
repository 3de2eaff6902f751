"""Evaluate stage: the model against its baselines (and, on demo data, the oracle) on the test
period, with the curves DVC plots and the report draw.

Every figure is computed once here and written to `reports/metrics.json`; MLflow, the report
and the README read that file instead of recomputing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pipeline.core.atomic import atomic_path, write_json
from pipeline.core.config import Config
from pipeline.core.errors import TrainingError
from pipeline.core.labels import LABEL, LabelRule, labelled
from pipeline.core.layout import TRUTH_PIT_ORACLE
from pipeline.modeling.baselines import fit_logistic, health_risk, predict_logistic
from pipeline.modeling.champion import interval
from pipeline.modeling.design import design_matrix
from pipeline.modeling.metrics import binary_metrics, curves, precision_recall_at_capacity
from pipeline.modeling.oracle import attach_oracle, attach_pit_oracle
from pipeline.modeling.split import Split
from pipeline.modeling.store import LoadedModel, load_model

log = logging.getLogger(__name__)


def test_frame(
    table: pd.DataFrame, model: LoadedModel, *, horizon_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, test rows) of the labelled table, by the split the model was trained with:
    the training rows purged the same way (the grace period recorded in its training info), so
    the baselines learn from exactly the model's rows."""
    split = Split.from_info(model.info)
    rule = LabelRule(horizon_days=horizon_days, grace_days=int(model.info["purge_grace_days"]))
    parts = split.parts(labelled(table), rule)
    return parts["train"], parts["test"]


def selection_metrics(info: dict) -> dict[str, float]:
    """Each candidate's mean fold score and interval from model selection (training info), as
    flat metrics: `selection_<candidate>_<metric>` with `_low` and `_high`, and
    `selection_chosen_<candidate>` = 1 for the one in use."""
    selection = info.get("selection")
    if not selection:
        return {}
    metric = selection["metric"]
    out: dict[str, float] = {}
    for name, scored in selection["candidates"].items():
        out[f"selection_{name}_{metric}"] = float(scored["score"])
        out[f"selection_{name}_{metric}_low"] = float(scored["low"])
        out[f"selection_{name}_{metric}_high"] = float(scored["high"])
    out[f"selection_chosen_{selection['chosen']}"] = 1.0
    return out


def evaluate_model(
    table: pd.DataFrame,
    model: LoadedModel,
    *,
    accounts: pd.DataFrame,
    capacity: int,
    seed: int,
    horizon_days: int,
    truth: pd.DataFrame | None = None,
    pit: pd.DataFrame | None = None,
) -> tuple[dict[str, float], dict[str, pd.DataFrame], pd.DataFrame]:
    """Metrics (flat dict), curves, and the scored test rows. On demo data, `truth` (the
    simulator's decisions) gives the full-information oracle and `pit` (its point-in-time
    probabilities per snapshot) the point-in-time oracle: the fair ceiling."""
    train, test = test_frame(table, model, horizon_days=horizon_days)
    if test.empty:
        raise TrainingError("the test period has no labelled rows")
    y = test[LABEL].astype(float).to_numpy()
    scored = test[["account_id", "snapshot_date", "renewal_date", "segment", "arr", LABEL]].copy()
    scored["p_model"] = model.predict(test)
    scored["p_health"] = health_risk(test)
    categorical = [c["name"] for c in model.schema["features"] if c["dtype"] == "category"]
    logreg = fit_logistic(
        design_matrix(train, model.schema), train[LABEL], categorical=categorical, seed=seed
    )
    scored["p_logreg"] = predict_logistic(
        logreg, design_matrix(test, model.schema), categorical=categorical
    )
    scored = scored.merge(accounts[["account_id", "csm_id"]], on="account_id", how="left")
    scored.index = test.index

    metrics: dict[str, float] = {}
    metrics.update(binary_metrics(y, scored["p_model"]))
    metrics.update(binary_metrics(y, scored["p_health"], prefix="health_score_"))
    metrics.update(binary_metrics(y, scored["p_logreg"], prefix="logreg_"))
    group = ["csm_id", "snapshot_date"]
    for name, col in (("", "p_model"), ("health_score_", "p_health"), ("logreg_", "p_logreg")):
        precision, recall = precision_recall_at_capacity(
            scored.fillna({"csm_id": "unassigned"}), score=col, label=LABEL, k=capacity, group=group
        )
        metrics[f"{name}precision_at_capacity"] = precision
        metrics[f"{name}recall_at_capacity"] = recall
    for segment, part in scored.groupby("segment", sort=True):
        ys = part[LABEL].astype(float)
        metrics[f"segment_{segment}_rows"] = float(len(part))
        metrics[f"segment_{segment}_churn_rate"] = float(ys.mean())
        if ys.nunique() == 2:
            seg = binary_metrics(ys, part["p_model"], prefix=f"segment_{segment}_")
            metrics.update({k: v for k, v in seg.items() if k.endswith(("roc_auc", "pr_auc"))})
            metrics[f"segment_{segment}_health_score_roc_auc"] = binary_metrics(
                ys, part["p_health"]
            )["roc_auc"]
    if truth is not None:
        oracle = attach_oracle(test, truth)
        scored["p_oracle"] = oracle
        matched = oracle.notna().to_numpy()
        metrics["oracle_matched_share"] = float(matched.mean())
        if matched.any():
            om = binary_metrics(y[matched], oracle[matched], prefix="oracle_")
            metrics.update({k: om[k] for k in ("oracle_roc_auc", "oracle_pr_auc", "oracle_brier")})
    if pit is not None:
        at_snapshot = attach_pit_oracle(test, pit)
        scored["p_pit_oracle"] = at_snapshot
        matched = at_snapshot.notna().to_numpy()
        metrics["pit_oracle_matched_share"] = float(matched.mean())
        if matched.any() and len(set(y[matched])) == 2:
            pm = binary_metrics(y[matched], at_snapshot[matched], prefix="pit_oracle_")
            keys = ("pit_oracle_roc_auc", "pit_oracle_pr_auc", "pit_oracle_brier")
            metrics.update({k: pm[k] for k in keys})
    # Is the model better than chance at all? A 90% interval over accounts says.
    low, high = interval(
        y,
        scored["p_model"].to_numpy(),
        scored["account_id"].to_numpy(),
        metric="roc_auc",
        resamples=200,
        confidence=0.9,
        seed=seed,
    )
    metrics["roc_auc_low"], metrics["roc_auc_high"] = low, high
    metrics.update(selection_metrics(model.info))
    metrics["test_rows"] = float(len(test))
    metrics["test_churn_rate"] = float(y.mean())
    metrics["train_rows"] = float(len(train))
    metrics = {k: round(float(v), 6) for k, v in sorted(metrics.items())}
    return metrics, curves(y, scored["p_model"].to_numpy()), scored


def load_truth(truth_path: Path | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The simulator's decisions and, beside them, its point-in-time oracle (either may be
    absent: real data has neither)."""
    if truth_path is None or not Path(truth_path).is_file():
        return None, None
    pit_path = Path(truth_path).parent / TRUTH_PIT_ORACLE
    pit = pd.read_parquet(pit_path) if pit_path.is_file() else None
    return pd.read_parquet(truth_path), pit


def run_evaluate(
    config: Config,
    features_path: Path,
    models_dir: Path,
    interim_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    truth_path: Path | None,
) -> dict[str, float]:
    """The evaluate stage's edge."""
    table = pd.read_parquet(features_path)
    model = load_model(models_dir)
    accounts = pd.read_parquet(
        Path(interim_dir) / "accounts.parquet", columns=["account_id", "csm_id"]
    )
    truth, pit = load_truth(truth_path)
    metrics, plot_frames, _ = evaluate_model(
        table,
        model,
        accounts=accounts,
        capacity=config.evaluate.capacity_per_csm,
        seed=config.base.seed,
        horizon_days=config.features.label_horizon_days,
        truth=truth,
        pit=pit,
    )
    write_json(metrics, metrics_path)
    with atomic_path(Path(plots_dir)) as tmp:
        tmp.mkdir(parents=True)
        for name, frame in plot_frames.items():
            frame.round(6).to_csv(tmp / f"{name}.csv", index=False)
    return metrics
