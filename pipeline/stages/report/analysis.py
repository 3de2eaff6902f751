"""The report's numbers: pure functions over the lists' frames and the metrics dicts.

Nothing here scores or explains again: probabilities, expected ARR at risk and SHAP values are
the score stage's, quality figures the evaluate and backtest stages'. What this module adds is
aggregation (means and sums over those numbers) into the frames and dicts the page shows: what
drives churn (importance per signal and per family), where the risk is (by segment, region,
tenure cohort and CSM), how the week compares with earlier ones, and whether the model can be
trusted. Every function leaves its inputs untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from features.registry import Feature
from pipeline.core.errors import ReportError
from pipeline.stages.report.inputs import TREND_COLUMNS
from pipeline.stages.report.words import Metric, family_title

COHORT_FIRST_90 = "First 90 days"
COHORT_LATER = "After 90 days"


# --- what drives churn -----------------------------------------------------------------------


def registry_map(registry: Sequence[Feature]) -> dict[str, Feature]:
    """The registry keyed by feature name (a signal the registry lacks is simply absent)."""
    return {f.name: f for f in registry}


def driver_importance(shap: pd.DataFrame, registry: Sequence[Feature]) -> pd.DataFrame:
    """Mean absolute SHAP value per feature (global importance), largest first.

    Columns: feature, description (plain language), family, family_title, actionable,
    mean_abs_shap (log-odds), share (of the summed importance).
    """
    known = registry_map(registry)
    mean_abs = shap.abs().mean(axis=0)
    total = float(mean_abs.sum())
    rows = []
    for name, value in mean_abs.items():
        feature = known.get(str(name))
        rows.append(
            {
                "feature": str(name),
                "description": feature.description if feature else str(name),
                "family": feature.family if feature else "other",
                "family_title": family_title(feature.family) if feature else "Other",
                "actionable": bool(feature.actionable) if feature else False,
                "mean_abs_shap": float(value),
                "share": float(value) / total if total > 0 else math.nan,
            }
        )
    out = pd.DataFrame(rows)
    return out.sort_values(["mean_abs_shap", "feature"], ascending=[False, True]).reset_index(
        drop=True
    )


def family_importance(shap: pd.DataFrame, registry: Sequence[Feature]) -> pd.DataFrame:
    """Mean over accounts of the absolute *summed* SHAP value of each family, largest first.

    SHAP values add up, so a family's contribution to one account is the sum of its features'
    values; taking the absolute value after summing lets a family's features offset each other
    (30-day and 90-day active users often push in opposite directions) instead of double
    counting them. Columns: family, family_title, features, mean_abs_shap, share.
    """
    known = registry_map(registry)
    families = pd.Series({c: known[c].family if c in known else "other" for c in shap.columns})
    rows = []
    for family, members in families.groupby(families, sort=False):
        summed = shap[list(members.index)].sum(axis=1)
        rows.append(
            {
                "family": str(family),
                "family_title": family_title(str(family)) if family != "other" else "Other",
                "features": len(members),
                "mean_abs_shap": float(summed.abs().mean()),
            }
        )
    out = pd.DataFrame(rows)
    total = float(out["mean_abs_shap"].sum())
    out["share"] = out["mean_abs_shap"] / total if total > 0 else math.nan
    return out.sort_values(["mean_abs_shap", "family"], ascending=[False, True]).reset_index(
        drop=True
    )


def numeric_values(values: pd.Series) -> pd.Series | None:
    """A feature's values as floats, or None for a categorical feature (segment, plan)."""
    if isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(values):
        return None
    if pd.api.types.is_object_dtype(values):
        converted = pd.to_numeric(values, errors="coerce")
        return None if converted.isna().sum() > values.isna().sum() else converted.astype(float)
    return values.astype("Float64").astype(float)


def effect_direction(values: pd.Series, shap_values: pd.Series) -> str:
    """'higher' when higher values go with more risk, 'lower' for the reverse, else 'mixed'.

    The correlation between the rank of a feature's value and its SHAP value says in which
    direction the model uses it: ranks keep one extreme account from deciding, raw SHAP values
    let the few accounts the feature moves a lot count for more than the many it barely moves.
    Below 0.3 in absolute value the relation is not monotone enough to state.
    """
    numeric = numeric_values(values)
    if numeric is None:
        return "mixed"
    both = pd.DataFrame({"x": numeric, "y": shap_values}).dropna()
    if len(both) < 3 or both["x"].nunique() < 2 or both["y"].nunique() < 2:
        return "mixed"
    rho = both["x"].rank().corr(both["y"])
    if rho >= 0.3:
        return "higher"
    if rho <= -0.3:
        return "lower"
    return "mixed"


# --- where the risk is -----------------------------------------------------------------------


def with_cohort(accounts: pd.DataFrame) -> pd.DataFrame:
    """The accounts with a `tenure_cohort` column (first 90 days or later)."""
    first = accounts["first_90_days"].astype("boolean").fillna(False).astype(bool)
    return accounts.assign(tenure_cohort=np.where(first, COHORT_FIRST_90, COHORT_LATER))


def risk_by(accounts: pd.DataFrame, by: str | Sequence[str]) -> pd.DataFrame:
    """Accounts, ARR, mean churn probability and expected ARR at risk per group.

    Columns: the group column(s), accounts, arr, mean_probability, expected_arr_at_risk,
    arr_at_risk_share (expected ARR at risk over ARR), on_list; largest ARR at risk first.
    Accounts without a value for the group column are grouped as "(none)".
    """
    keys = [by] if isinstance(by, str) else list(by)
    frame = accounts.assign(
        **{k: accounts[k].astype("string").fillna("(none)") for k in keys},
        on_list=accounts["on_list"].astype("boolean").fillna(False).astype(int),
    )
    out = (
        frame.groupby(keys, sort=True, dropna=False)
        .agg(
            accounts=("account_id", "size"),
            arr=("arr", "sum"),
            mean_probability=("probability", "mean"),
            expected_arr_at_risk=("expected_arr_at_risk", "sum"),
            on_list=("on_list", "sum"),
        )
        .reset_index()
    )
    out = out.assign(
        arr_at_risk_share=np.where(out["arr"] > 0, out["expected_arr_at_risk"] / out["arr"], np.nan)
    )
    return out.sort_values(
        ["expected_arr_at_risk", *keys], ascending=[False] + [True] * len(keys)
    ).reset_index(drop=True)


def csm_risk(accounts: pd.DataFrame) -> pd.DataFrame:
    """`risk_by` per CSM, labelled with the CSM's name (unassigned accounts as '(none)')."""
    frame = accounts.assign(
        csm_id=accounts["csm_id"].astype("string").fillna("(none)"),
        csm_name=accounts["csm_name"].astype("string").fillna("Unassigned"),
    )
    return risk_by(frame, ["csm_id", "csm_name"])


def largest_at_risk(accounts: pd.DataFrame, n: int) -> pd.DataFrame:
    """The `n` accounts with the most expected ARR at risk (ties: higher probability first)."""
    ordered = accounts.sort_values(
        ["expected_arr_at_risk", "probability", "account_id"],
        ascending=[False, False, True],
        kind="stable",
    )
    return ordered.head(n).reset_index(drop=True)


def portfolio_figures(accounts: pd.DataFrame) -> dict[str, float]:
    """Totals over the scored accounts, as the lists hold them (keys used as page markers)."""
    arr = float(accounts["arr"].sum())
    at_risk = float(accounts["expected_arr_at_risk"].sum())
    return {
        "accounts": float(len(accounts)),
        "arr_total": arr,
        "expected_arr_at_risk": at_risk,
        "arr_at_risk_share": at_risk / arr if arr > 0 else math.nan,
        "mean_probability": float(accounts["probability"].mean()),
        "accounts_on_lists": float(accounts["on_list"].astype("boolean").fillna(False).sum()),
        "high_risk_accounts": float((accounts["risk_band"].astype("string") == "high").sum()),
    }


# --- trend -----------------------------------------------------------------------------------


def trend_table(trend: pd.DataFrame) -> pd.DataFrame:
    """trend.csv by week with the week-over-week change of expected ARR at risk."""
    frame = trend[TREND_COLUMNS].copy()
    frame["week"] = pd.to_datetime(frame["week"]).dt.date
    frame = frame.sort_values("week").reset_index(drop=True)
    return frame.assign(change=frame["expected_arr_at_risk"].diff())


# --- can we trust it -------------------------------------------------------------------------


def _metric(source: Mapping[str, object], key: str, label: str, origin: str, kind: str):
    if key not in source:
        return None
    value = source[key]
    return Metric(key, label, None if value is None else float(value), origin, kind)


def trust_metrics(metrics: Mapping[str, float], backtest: Mapping[str, float | None]) -> dict:
    """The headline quality figures, grouped for the page; keys absent from a file are skipped.

    ROC-AUC is required (the page has nothing to say about trust without it).
    """
    if "roc_auc" not in metrics:
        raise ReportError("metrics.json has no roc_auc: run `churn evaluate` first")
    model = [
        ("roc_auc", "Ranking quality (ROC-AUC)", "ratio"),
        ("pr_auc", "Ranking of churners at the top (PR-AUC)", "ratio"),
        ("lift_top_decile", "Top-decile lift", "lift"),
        ("precision_at_capacity", "Precision at CSM capacity", "share"),
        ("recall_at_capacity", "Recall at CSM capacity", "share"),
        ("brier", "Brier score", "ratio"),
        ("ece", "Expected calibration error", "ratio"),
    ]
    rows = []
    for key, label, kind in model:
        row = {"label": label, "model": _metric(metrics, key, label, "metrics", kind)}
        for prefix in ("health_score_", "logreg_", "pit_oracle_", "oracle_"):
            row[prefix.rstrip("_")] = _metric(metrics, prefix + key, label, "metrics", kind)
        rows.append(row)
    backtest_rows = [
        ("backtest_precision_at_capacity", "Precision of the replayed lists", "share"),
        ("backtest_lead_time_arr_share", "Churned ARR flagged ahead of renewal", "share"),
        ("backtest_flagged_arr_share", "Churned ARR flagged at any time", "share"),
        ("backtest_median_warning_days", "Median warning before renewal", "days"),
        ("backtest_jaccard_week_over_week", "List overlap week over week", "share"),
        ("backtest_weeks", "Weeks replayed", "count"),
    ]
    replay = [
        m
        for key, label, kind in backtest_rows
        if (m := _metric(backtest, key, label, "backtest", kind)) is not None
    ]
    segments = sorted(
        {k[len("segment_") : -len("_rows")] for k in metrics if k.startswith("segment_")}
        & {k[len("segment_") : -len("_rows")] for k in metrics if k.endswith("_rows")}
    )
    per_segment = [
        {
            "segment": seg,
            "rows": _metric(metrics, f"segment_{seg}_rows", "Test rows", "metrics", "count"),
            "churn_rate": _metric(
                metrics, f"segment_{seg}_churn_rate", "Churn rate", "metrics", "share"
            ),
            "roc_auc": _metric(
                metrics, f"segment_{seg}_roc_auc", "Ranking quality (ROC-AUC)", "metrics", "ratio"
            ),
            "health_score_roc_auc": _metric(
                metrics, f"segment_{seg}_health_score_roc_auc", "Health score", "metrics", "ratio"
            ),
        }
        for seg in segments
    ]
    return {
        "model_rows": rows,
        "backtest": replay,
        "segments": per_segment,
        "has_oracle": "oracle_roc_auc" in metrics,
        "has_pit_oracle": "pit_oracle_roc_auc" in metrics,
        "has_logreg": "logreg_roc_auc" in metrics,
    }
