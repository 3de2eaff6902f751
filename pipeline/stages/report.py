"""Report stage: one self-contained HTML page for leadership (`reports/leadership.html`).

The page answers four questions a VP of customer success asks: what drives churn, where the
risk is, whether the model can be trusted, and how the risk moves week over week; a model card
closes it. It computes nothing a second time: probabilities, expected ARR at risk and SHAP
values come from the score stage's lists (`reports/lists/<as-of>/`), quality figures from
`reports/metrics.json`, `reports/plots/` and `reports/backtest.json`. What this module adds is
aggregation (means and sums over those numbers), figures and words.

Layout: pure core functions that take frames and dicts and return frames, dicts or matplotlib
figures; `build_report` assembles them into the template's context and `render_html` renders
it; `load_inputs` and `run_report` are the I/O edge. Every headline number is wrapped in a
`data-metric` marker holding the exact source value, so a test can hold the page to its source
files. The page is static: no JavaScript, no external URL (a Content-Security-Policy forbids
loading anything but the embedded images), every data-supplied string escaped by Jinja.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from features.registry import FAMILIES, Feature
from pipeline.core.errors import ReportError
from pipeline.modeling.plots import curve_figures

log = logging.getLogger(__name__)

ACCOUNT_COLUMNS = [
    "account_id",
    "account_name",
    "csm_id",
    "csm_name",
    "segment",
    "region",
    "tenure_days",
    "first_90_days",
    "arr",
    "probability",
    "risk_band",
    "expected_arr_at_risk",
    "renewal_date",
    "days_to_renewal",
    "on_list",
    "reasons",
]
TREND_COLUMNS = ["week", "n_accounts", "arr_total", "expected_arr_at_risk", "mean_probability"]
LIST_FILES = ("manifest.json", "accounts.parquet", "shap.parquet", "features.parquet", "trend.csv")
COHORT_FIRST_90 = "First 90 days"
COHORT_LATER = "After 90 days"
TRAINING_INFO = "training_info.json"  # pipeline.stages.train.INFO_FILE, without importing LightGBM
MIN_SEGMENT_TEST_ROWS = 100  # fewer labelled test rows than this: a segment's AUC is noisy
FAMILY_COLOURS = {
    "usage": "#1f77b4",
    "training": "#2ca02c",
    "support": "#d62728",
    "onboarding": "#9467bd",
    "engagement": "#ff7f0e",
    "commercial": "#7f7f7f",
}
_PNG_DPI = 110


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListOutputs:
    """The score stage's files for one as-of date, as frames (shap/features keyed by account)."""

    manifest: dict
    accounts: pd.DataFrame
    shap: pd.DataFrame
    features: pd.DataFrame
    trend: pd.DataFrame


@dataclass(frozen=True)
class ReportInputs:
    """Everything the page shows, already read from disk."""

    lists: ListOutputs
    metrics: dict[str, float]
    backtest: dict[str, float | None]
    feature_summary: dict
    training_info: dict
    curves: dict[str, pd.DataFrame]
    registry: list[Feature]
    label_horizon_days: int
    renewal_grace_days: int
    capacity_per_csm: int | None = None


@dataclass(frozen=True)
class ReportSettings:
    """How much the page shows (params `report`)."""

    top_features: int = 15
    dependence_plots: int = 4
    largest_accounts: int = 10


def _examples(values: Sequence[object], n: int = 3) -> str:
    shown = [str(v) for v in list(values)[:n]]
    more = f" (and {len(values) - n} more)" if len(values) > n else ""
    return ", ".join(shown) + more


def check_lists(lists: ListOutputs) -> None:
    """Stop with a clear error when the list files do not describe the same accounts.

    The page aggregates accounts.parquet and shap.parquet side by side; if they disagree the
    two halves of the page would describe different portfolios.
    """
    missing = [c for c in ACCOUNT_COLUMNS if c not in lists.accounts.columns]
    if missing:
        raise ReportError(f"accounts.parquet lacks columns {missing}")
    missing = [c for c in TREND_COLUMNS if c not in lists.trend.columns]
    if missing:
        raise ReportError(f"trend.csv lacks columns {missing}")
    ids = lists.accounts["account_id"]
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise ReportError(
            f"accounts.parquet has {len(duplicated)} duplicated account_id, e.g. "
            f"{_examples(duplicated)}"
        )
    for name, frame in (("shap.parquet", lists.shap), ("features.parquet", lists.features)):
        if frame.index.duplicated().any():
            raise ReportError(f"{name} has duplicated account_id, e.g. {frame.index[0]}")
        extra = sorted(set(frame.index) - set(ids))
        absent = sorted(set(ids) - set(frame.index))
        if extra or absent:
            raise ReportError(
                f"{name} and accounts.parquet disagree: {len(extra)} accounts only in {name} "
                f"({_examples(extra)}), {len(absent)} only in accounts.parquet "
                f"({_examples(absent)})"
            )
    shap_cols, feature_cols = list(lists.shap.columns), list(lists.features.columns)
    if set(shap_cols) != set(feature_cols):
        raise ReportError(
            "shap.parquet and features.parquet name different features: only in shap "
            f"{sorted(set(shap_cols) - set(feature_cols))}, only in features "
            f"{sorted(set(feature_cols) - set(shap_cols))}"
        )
    not_numeric = [c for c in shap_cols if not pd.api.types.is_float_dtype(lists.shap[c])]
    if not_numeric:
        raise ReportError(f"shap.parquet columns must be floats (log-odds): {not_numeric}")
    bad = lists.accounts["probability"].dropna()
    bad = bad[(bad < 0) | (bad > 1)]
    if len(bad):
        rows = lists.accounts.loc[bad.index, "account_id"]
        raise ReportError(
            f"accounts.parquet probability outside [0, 1] for {len(bad)} accounts, e.g. "
            f"{_examples(rows.tolist())}"
        )


# --- what drives churn -----------------------------------------------------------------------


def _registry_map(registry: Sequence[Feature]) -> dict[str, Feature]:
    return {f.name: f for f in registry}


def _family_title(family: str) -> str:
    return str(FAMILIES.get(family, {}).get("title", family))


def driver_importance(shap: pd.DataFrame, registry: Sequence[Feature]) -> pd.DataFrame:
    """Mean absolute SHAP value per feature (global importance), largest first.

    Columns: feature, description (plain language), family, family_title, actionable,
    mean_abs_shap (log-odds), share (of the summed importance).
    """
    known = _registry_map(registry)
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
                "family_title": _family_title(feature.family) if feature else "Other",
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
    known = _registry_map(registry)
    families = pd.Series({c: known[c].family if c in known else "other" for c in shap.columns})
    rows = []
    for family, members in families.groupby(families, sort=False):
        summed = shap[list(members.index)].sum(axis=1)
        rows.append(
            {
                "family": str(family),
                "family_title": _family_title(str(family)) if family != "other" else "Other",
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


def lower_first(text: str) -> str:
    """'Active users' -> 'active users', but 'SLA breaches' stays (an acronym leads)."""
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]


def dependence_sentence(feature: Feature | None, name: str, direction: str) -> str:
    """One sentence saying what a dependence plot shows, in plain words."""
    lowered = lower_first(feature.description if feature else name)
    what = (
        f"Each dot is one account: {lowered} (across) against how much that value moved its "
        "predicted churn risk (up means more risk)"
    )
    if direction == "higher":
        return f"{what}; higher values go with more risk."
    if direction == "lower":
        return f"{what}; lower values go with more risk."
    return f"{what}; the effect is not a simple more-or-less relation."


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


@dataclass(frozen=True)
class Metric:
    """One headline number: its source file's key and value, and how the page shows it."""

    key: str
    label: str
    value: float | None
    source: str  # metrics | backtest | lists
    kind: str = "ratio"  # ratio (3 decimals) | share (percent) | lift | days | count | money

    @property
    def display(self) -> str:
        return format_value(self.value, self.kind)

    @property
    def raw(self) -> str:
        return "" if self.value is None else repr(float(self.value))


def format_value(value: float | None, kind: str) -> str:
    """A number as the page shows it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if kind == "share":
        return f"{value:.1%}"
    if kind == "lift":
        return f"{value:.2f}×"
    if kind == "days":
        return f"{value:.0f} days"
    if kind == "count":
        return f"{value:,.0f}"
    if kind == "money":
        return format_money(value)
    return f"{value:.3f}"


def format_money(value: float) -> str:
    """ARR in a compact form (no currency: the data's currency is not known)."""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:,.2f}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:,.1f}k"
    return f"{value:,.0f}"


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
        ("roc_auc", "ROC-AUC", "ratio"),
        ("pr_auc", "PR-AUC", "ratio"),
        ("lift_top_decile", "Top-decile lift", "lift"),
        ("precision_at_capacity", "Precision at CSM capacity", "share"),
        ("recall_at_capacity", "Recall at CSM capacity", "share"),
        ("brier", "Brier score", "ratio"),
        ("ece", "Expected calibration error", "ratio"),
    ]
    rows = []
    for key, label, kind in model:
        row = {"label": label, "model": _metric(metrics, key, label, "metrics", kind)}
        for prefix in ("health_score_", "logreg_", "oracle_"):
            row[prefix.rstrip("_")] = _metric(metrics, prefix + key, label, "metrics", kind)
        rows.append(row)
    backtest_rows = [
        ("backtest_precision_at_capacity", "Listed accounts that churned", "share"),
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
            "roc_auc": _metric(metrics, f"segment_{seg}_roc_auc", "ROC-AUC", "metrics", "ratio"),
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
        "has_logreg": "logreg_roc_auc" in metrics,
    }


def trust_summary(metrics: Mapping[str, float]) -> str:
    """One plain sentence comparing the model with the health score (and the oracle)."""
    model = float(metrics["roc_auc"])
    text = f"On the test period the model's ROC-AUC is {model:.3f}"
    health = metrics.get("health_score_roc_auc")
    if health is not None:
        health = float(health)
        if model > health + 0.005:
            verdict = "better than"
        elif model < health - 0.005:
            verdict = "worse than"
        else:
            verdict = "no better than"
        text += f", {verdict} the rule-based health score ({health:.3f})"
    oracle = metrics.get("oracle_roc_auc")
    if oracle is not None:
        text += (
            f"; the best any model could reach on this demo data, with the simulator's true "
            f"probabilities, is {float(oracle):.3f}"
        )
    return text + "."


# --- model card ------------------------------------------------------------------------------


def label_definition(*, label_horizon_days: int, renewal_grace_days: int) -> str:
    """The churn label in plain words (docs/features.md has the precise rules)."""
    return (
        "An account churns when its current contract term ends and no following contract starts "
        f"within {renewal_grace_days} days of the end date. A snapshot is labelled only when "
        f"its renewal falls within {label_horizon_days} days and the outcome is settled; later "
        "renewals are censored (unknown, never counted as retained)."
    )


def known_limits(
    *,
    metrics: Mapping[str, float],
    feature_summary: Mapping[str, object],
    manifest: Mapping[str, object],
    training_info: Mapping[str, object],
) -> list[str]:
    """Limits a reader must know before acting on the page, derived from the inputs."""
    limits = [
        "Drivers are associations the model learned, not proven causes: acting on one is a "
        "hypothesis to test, not a guaranteed save.",
        "Labels exist only once a renewal is settled, so the newest months are scored but not "
        "yet validated.",
    ]
    split = training_info.get("split") or {}
    if split.get("valid_start") and split.get("valid_end"):
        ece = metrics.get("ece")
        tail = f"; on the test period the calibration error is {float(ece):.3f}" if ece else ""
        limits.append(
            f"Probabilities are calibrated on {split['valid_start']} to {split['valid_end']}{tail}."
        )
    health, model = metrics.get("health_score_roc_auc"), metrics.get("roc_auc")
    if health is not None and model is not None and float(model) <= float(health):
        limits.append(
            f"On the test period the model ranks accounts no better than the rule-based health "
            f"score (ROC-AUC {float(model):.3f} against {float(health):.3f}): use its lists "
            "alongside the health score, not instead of it."
        )
    for key, rows in sorted(metrics.items()):
        if key.startswith("segment_") and key.endswith("_rows") and rows < MIN_SEGMENT_TEST_ROWS:
            segment = key[len("segment_") : -len("_rows")]
            limits.append(
                f"Only {rows:.0f} test rows for the {segment} segment: its ROC-AUC is uncertain."
            )
    missing = list(feature_summary.get("families_unavailable") or [])
    partial = list(feature_summary.get("families_partial") or [])
    if missing:
        titles = ", ".join(_family_title(f) for f in missing)
        limits.append(f"Feature families missing (their tables were not supplied): {titles}.")
    if partial:
        titles = ", ".join(_family_title(f) for f in partial)
        limits.append(f"Feature families only partly available: {titles}.")
    if "oracle_roc_auc" in metrics:
        limits.append(
            "These figures come from the simulated demo company, not from real customers."
        )
    for warning in manifest.get("warnings") or []:
        if isinstance(warning, Mapping) and warning.get("message"):
            limits.append(f"Scoring warning ({warning.get('kind', 'note')}): {warning['message']}")
    return limits


def model_card(
    *,
    training_info: Mapping[str, object],
    feature_summary: Mapping[str, object],
    manifest: Mapping[str, object],
    metrics: Mapping[str, float],
    label_horizon_days: int,
    renewal_grace_days: int,
) -> dict:
    """The model card's facts: data window, label, feature families, versions, known limits."""
    split = dict(training_info.get("split") or {})
    rows = dict(training_info.get("rows") or {})
    families_used = [_family_title(f) for f in feature_summary.get("families_available") or [] if f]
    return {
        "as_of": manifest.get("as_of"),
        "model_version": manifest.get("model_version"),
        "model_source": manifest.get("model_source"),
        "data_version": manifest.get("data_version"),
        "split": split,
        "rows": rows,
        "snapshots": {
            "first": feature_summary.get("first_snapshot"),
            "last": feature_summary.get("last_snapshot"),
            "accounts": feature_summary.get("accounts"),
        },
        "purged_train_rows": training_info.get("purged_train_rows"),
        "calibration": training_info.get("calibration"),
        "best_iteration": training_info.get("best_iteration"),
        "label": label_definition(
            label_horizon_days=label_horizon_days, renewal_grace_days=renewal_grace_days
        ),
        "families_used": families_used,
        "families_missing": [
            _family_title(f) for f in feature_summary.get("families_unavailable") or []
        ],
        "families_partial": [
            _family_title(f) for f in feature_summary.get("families_partial") or []
        ],
        "features_unavailable": list(feature_summary.get("features_unavailable") or []),
        "limits": known_limits(
            metrics=metrics,
            feature_summary=feature_summary,
            manifest=manifest,
            training_info=training_info,
        ),
    }


# --- figures ---------------------------------------------------------------------------------


def _plain_ticks() -> matplotlib.ticker.Formatter:
    """Tick labels as plain numbers (log scales default to mathtext, which is off here)."""
    return matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.4g}")


def _money_tick(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.0f}"


def _money_ticks() -> matplotlib.ticker.Formatter:
    """Short money tick labels ('250k', '1.5M'); at most a few ticks fit a small panel."""
    return matplotlib.ticker.FuncFormatter(lambda v, _: _money_tick(v))


@contextmanager
def figure_style() -> Iterator[None]:
    """Plain text everywhere: a '$' in a segment or region name must not start mathtext."""
    with plt.rc_context({"text.parse_math": False, "font.size": 9, "axes.titlesize": 10}):
        yield


def importance_figure(importance: pd.DataFrame, *, top: int) -> plt.Figure:
    """Horizontal bars: mean |SHAP| of the top features, coloured by family."""
    shown = importance.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(shown) + 1.2), dpi=_PNG_DPI)
    colours = [FAMILY_COLOURS.get(f, "#bcbd22") for f in shown["family"]]
    ax.barh(shown["description"], shown["mean_abs_shap"], color=colours)
    ax.set_xlabel("Mean absolute effect on churn risk (log-odds)")
    ax.set_title(f"Top {len(shown)} drivers of predicted churn")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=FAMILY_COLOURS.get(f, "#bcbd22"))
        for f in dict.fromkeys(shown["family"][::-1])
    ]
    labels = list(dict.fromkeys(shown["family_title"][::-1]))
    ax.legend(handles, labels, loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def family_figure(families: pd.DataFrame) -> plt.Figure:
    """Horizontal bars: mean |summed SHAP| per feature family."""
    shown = families.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * len(shown) + 1.2), dpi=_PNG_DPI)
    colours = [FAMILY_COLOURS.get(f, "#bcbd22") for f in shown["family"]]
    ax.barh(shown["family_title"], shown["mean_abs_shap"], color=colours)
    for y, share in enumerate(shown["share"]):
        ax.annotate(
            f"{share:.0%}",
            (shown["mean_abs_shap"].iloc[y], y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("Mean absolute effect of the family on churn risk (log-odds)")
    ax.set_title("Drivers grouped by family")
    ax.margins(x=0.12)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def swarm_offsets(values: np.ndarray, *, bins: int = 100) -> np.ndarray:
    """Vertical offsets in [-0.4, 0.4] that stack points with similar values (a beeswarm).

    Values are cut into `bins` equal-width bins; inside a bin the points alternate above and
    below the centre line, so a bin's height shows how many accounts share that effect.
    Deterministic: ties keep their input order.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.zeros(0)
    span = float(values.max() - values.min())
    quant = np.round(bins * (values - values.min()) / (span if span > 0 else 1.0))
    order = np.argsort(quant, kind="stable")
    rank = pd.Series(quant[order]).groupby(quant[order]).cumcount().to_numpy()
    layer = np.ceil(rank / 2) * np.where(rank % 2 == 1, 1.0, -1.0)
    offsets = np.empty(len(values))
    offsets[order] = layer
    peak = float(np.abs(offsets).max())
    return offsets * (0.4 / peak) if peak > 0 else offsets


def value_colour_scale(values: pd.Series) -> np.ndarray:
    """Each value's percentile rank within the feature (NaN where missing or categorical).

    Ranks rather than raw values, so that one huge account does not paint all others blue.
    """
    numeric = numeric_values(values)
    if numeric is None:
        return np.full(len(values), np.nan)
    return numeric.rank(pct=True).to_numpy(dtype=float)


def beeswarm_figure(
    shap: pd.DataFrame, features: pd.DataFrame, importance: pd.DataFrame, *, top: int
) -> plt.Figure:
    """SHAP summary plot: one row per top feature, one dot per account, coloured by value."""
    shown = importance.head(top)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(shown) + 1.6), dpi=_PNG_DPI)
    cmap = plt.get_cmap("coolwarm")
    scatter = None
    for row, name in enumerate(shown["feature"][::-1]):
        values = shap[name].to_numpy(dtype=float)
        colour = value_colour_scale(features[name].reindex(shap.index))
        y = row + swarm_offsets(values)
        known = ~np.isnan(colour)
        ax.scatter(values[~known], y[~known], s=6, color="#b0b0b0", alpha=0.8, linewidths=0)
        scatter = ax.scatter(
            values[known],
            y[known],
            s=6,
            c=colour[known],
            cmap=cmap,
            vmin=0,
            vmax=1,
            alpha=0.8,
            linewidths=0,
        )
    ax.axvline(0, color="#444444", lw=0.8)
    ax.set_yticks(range(len(shown)), list(shown["description"][::-1]))
    ax.set_ylim(-0.6, len(shown) - 0.4)
    ax.set_xlabel("Effect on churn risk (log-odds): left lowers it, right raises it")
    ax.set_title("How each driver moves each account's risk")
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=ax, fraction=0.03, pad=0.02, ticks=[0, 1])
        bar.ax.set_yticklabels(["low", "high"])
        bar.set_label("Feature value (grey: none / category)")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def dependence_figure(values: pd.Series, shap_values: pd.Series, *, label: str) -> plt.Figure:
    """A driver's value (x) against its SHAP value (y), one dot per account.

    Categorical features show one column of dots per category; accounts without a value are
    counted in a note rather than drawn at an invented position.
    """
    fig, ax = plt.subplots(figsize=(4.6, 3.4), dpi=_PNG_DPI)
    numeric = numeric_values(values)
    if numeric is None:
        cats = values.astype("string").fillna("(none)")
        levels = sorted(cats.unique())
        positions = cats.map({c: i for i, c in enumerate(levels)}).to_numpy(dtype=float)
        jitter = swarm_offsets(shap_values.to_numpy(dtype=float), bins=40) * 0.8
        ax.scatter(positions + jitter, shap_values, s=7, alpha=0.6, linewidths=0)
        ax.set_xticks(range(len(levels)), levels, rotation=20)
    else:
        known = numeric.notna().to_numpy()
        x = numeric[known].to_numpy()
        ax.scatter(x, shap_values[known], s=7, alpha=0.6, linewidths=0)
        if len(x) and x.min() >= 0 and x.max() > 50 * max(float(np.median(x)), 1.0):
            ax.set_xscale("symlog", linthresh=max(float(np.median(x)), 1.0))
            ax.xaxis.set_major_formatter(_plain_ticks())
        missing = int((~known).sum())
        if missing:
            ax.set_title(
                f"{missing} accounts without a value not shown",
                loc="left",
                fontsize=7,
                color="#555555",
            )
    ax.axhline(0, color="#444444", lw=0.8)
    ax.set_xlabel(label)
    ax.set_ylabel("Effect on churn risk (log-odds)")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def segment_risk_figure(by_segment: pd.DataFrame, by_cohort: pd.DataFrame) -> plt.Figure:
    """Expected ARR at risk by segment and by tenure cohort, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.8), dpi=_PNG_DPI)
    for ax, frame, column, title in (
        (axes[0], by_segment, "segment", "By segment"),
        (axes[1], by_cohort, "tenure_cohort", "By tenure"),
    ):
        shown = frame.iloc[::-1]
        ax.barh(shown[column].astype(str), shown["expected_arr_at_risk"], color="#d62728")
        for y, (value, share) in enumerate(
            zip(shown["expected_arr_at_risk"], shown["arr_at_risk_share"], strict=True)
        ):
            ax.annotate(
                f"{format_money(value)} ({share:.0%} of ARR)",
                (value, y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        ax.set_title(title)
        ax.set_xlabel("Expected ARR at risk")
        ax.xaxis.set_major_formatter(_money_ticks())
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
        ax.margins(x=0.45)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def trend_figure(trend: pd.DataFrame) -> plt.Figure:
    """Expected ARR at risk per scored week."""
    fig, ax = plt.subplots(figsize=(7.5, 2.8), dpi=_PNG_DPI)
    weeks = pd.to_datetime(trend["week"])
    ax.plot(weeks, trend["expected_arr_at_risk"], marker="o", color="#d62728", lw=1.5)
    if len(weeks) <= 16:  # label the scored weeks themselves, not the locator's dates
        ax.set_xticks(weeks, [w.strftime("%Y-%m-%d") for w in weeks])
    ax.set_ylabel("Expected ARR at risk")
    ax.set_title("Expected ARR at risk, week by week")
    ax.set_ylim(0, 1.12 * max(float(trend["expected_arr_at_risk"].max()), 1.0))
    ax.yaxis.set_major_formatter(_money_ticks())
    fig.autofmt_xdate()
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def figure_data_uri(fig: plt.Figure) -> str:
    """The figure as a base64 PNG data URI (then closed: the page embeds every image)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- assembly --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedFigure:
    """An image embedded in the page and the one sentence that says what it shows."""

    key: str
    title: str
    caption: str
    uri: str
    alt: str = ""


@dataclass
class ReportContext:
    """The template's input: plain values, frames as row lists, figures as data URIs."""

    as_of: str
    portfolio: list[Metric]
    warnings: list[dict]
    drivers: dict
    risk: dict
    trust: dict
    trend: dict
    card: dict
    figures: dict[str, EmbeddedFigure] = field(default_factory=dict)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts for the template, with every kind of missing value as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def build_report(inputs: ReportInputs, settings: ReportSettings) -> ReportContext:
    """Everything the page shows, from the inputs (figures already rendered to PNG)."""
    lists = inputs.lists
    check_lists(lists)
    registry = _registry_map(inputs.registry)
    accounts = with_cohort(lists.accounts)
    shap = lists.shap
    features = lists.features.reindex(shap.index)
    as_of = str(lists.manifest.get("as_of") or "")

    portfolio_values = portfolio_figures(accounts)
    kinds = {
        "accounts": ("Accounts scored", "count"),
        "arr_total": ("ARR scored", "money"),
        "expected_arr_at_risk": ("Expected ARR at risk", "money"),
        "arr_at_risk_share": ("Share of ARR at risk", "share"),
        "accounts_on_lists": ("Accounts on CSM lists", "count"),
        "high_risk_accounts": ("High-risk accounts", "count"),
    }
    portfolio = [
        Metric(key, label, portfolio_values[key], "lists", kind)
        for key, (label, kind) in kinds.items()
    ]

    importance = driver_importance(shap, inputs.registry)
    families = family_importance(shap, inputs.registry)
    figures: dict[str, EmbeddedFigure] = {}
    with figure_style():
        figures["families"] = EmbeddedFigure(
            "families",
            "Drivers by family",
            "Each bar is a family of related signals (usage, support, ...); its length is how "
            "much that family moves a typical account's predicted churn risk, in either "
            "direction.",
            figure_data_uri(family_figure(families)),
        )
        figures["importance"] = EmbeddedFigure(
            "importance",
            "Top drivers",
            "Each bar is one signal; its length is how much it moves a typical account's "
            "predicted churn risk, in either direction, and its colour is its family.",
            figure_data_uri(importance_figure(importance, top=settings.top_features)),
        )
        figures["beeswarm"] = EmbeddedFigure(
            "beeswarm",
            "How the drivers act on each account",
            "Each dot is one account: dots right of the line had their risk raised by that "
            "signal, dots left had it lowered, and red dots have a high value of the signal, "
            "blue a low one.",
            figure_data_uri(beeswarm_figure(shap, features, importance, top=settings.top_features)),
        )
        dependence = []
        for name in importance["feature"].head(settings.dependence_plots):
            feature = registry.get(name)
            label = feature.description if feature else name
            direction = effect_direction(features[name], shap[name])
            dependence.append(
                EmbeddedFigure(
                    f"dependence_{name}",
                    label,
                    dependence_sentence(feature, name, direction),
                    figure_data_uri(dependence_figure(features[name], shap[name], label=label)),
                )
            )
        by_segment = risk_by(accounts, "segment")
        by_cohort = risk_by(accounts, "tenure_cohort")
        figures["segment_risk"] = EmbeddedFigure(
            "segment_risk",
            "Expected ARR at risk by segment and tenure",
            "Each bar is the sum over a group's accounts of churn probability times ARR, the "
            "revenue the group is expected to lose at its coming renewals.",
            figure_data_uri(segment_risk_figure(by_segment, by_cohort)),
        )
        curve_captions = {
            "calibration": "Each point is a group of test accounts with similar predicted "
            "probability: on the diagonal, a predicted 30% means 30% of them churned.",
            "lift": "How many of the churners a CSM team reaches by working down the model's "
            "ranking: the further above the diagonal, the fewer calls it takes.",
        }
        curves = {k: v for k, v in inputs.curves.items() if k in curve_captions}
        for name, fig in curve_figures(curves).items():
            figures[name] = EmbeddedFigure(
                name,
                "Calibration" if name == "calibration" else "Cumulative gains (lift)",
                curve_captions[name],
                figure_data_uri(fig),
            )
        trend = trend_table(lists.trend)
        if len(trend) >= 2:
            figures["trend"] = EmbeddedFigure(
                "trend",
                "ARR at risk over time",
                "Each point is one scored week: the expected ARR at risk across all accounts "
                "active that week, all weeks scored with the same model.",
                figure_data_uri(trend_figure(trend)),
            )

    top_accounts = largest_at_risk(accounts, settings.largest_accounts)
    first_90 = by_cohort[by_cohort["tenure_cohort"] == COHORT_FIRST_90]
    latest = trend.iloc[-1] if len(trend) else None
    previous = trend.iloc[-2] if len(trend) >= 2 else None
    return ReportContext(
        as_of=as_of,
        portfolio=portfolio,
        warnings=[w for w in lists.manifest.get("warnings") or [] if isinstance(w, Mapping)],
        drivers={
            "features": _records(importance.head(settings.top_features)),
            "families": _records(families),
            "dependence": dependence,
            "signals": int(shap.shape[1]),
            "top_actionable": _records(importance[importance["actionable"]].head(3)),
        },
        risk={
            "segment": _records(by_segment),
            "region": _records(risk_by(accounts, "region")),
            "cohort": _records(by_cohort),
            "csm": _records(csm_risk(accounts)),
            "largest": _records(top_accounts),
            "first_90_share": (
                float(first_90["expected_arr_at_risk"].sum())
                / portfolio_values["expected_arr_at_risk"]
                if portfolio_values["expected_arr_at_risk"] > 0
                else math.nan
            ),
            "capacity_per_csm": lists.manifest.get("capacity_per_csm"),
            "rank_by": lists.manifest.get("rank_by"),
        },
        trust={
            **trust_metrics(inputs.metrics, inputs.backtest),
            "summary": trust_summary(inputs.metrics),
            "capacity_per_csm": inputs.capacity_per_csm,
        },
        trend={
            "rows": _records(trend),
            "latest": None if latest is None else latest.to_dict(),
            "previous": None if previous is None else previous.to_dict(),
        },
        card=model_card(
            training_info=inputs.training_info,
            feature_summary=inputs.feature_summary,
            manifest=lists.manifest,
            metrics=inputs.metrics,
            label_horizon_days=inputs.label_horizon_days,
            renewal_grace_days=inputs.renewal_grace_days,
        ),
        figures=figures,
    )


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = lambda v: format_value(_none_if_nan(v), "money")
    env.filters["signed_money"] = signed_money
    env.filters["share"] = lambda v: format_value(_none_if_nan(v), "share")
    env.filters["ratio"] = lambda v: format_value(_none_if_nan(v), "ratio")
    env.filters["count"] = lambda v: format_value(_none_if_nan(v), "count")
    env.filters["lower_first"] = lower_first
    env.filters["text"] = lambda v: "" if v is None or v is pd.NA or v != v else str(v)
    return env


def signed_money(value: object) -> str:
    """A week-over-week change: '+12.5k', '−3.1k' (a real minus sign), '–' when there is none."""
    number = _none_if_nan(value)
    if number is None:
        return "–"
    if number == 0:
        return "0"
    return ("+" if number > 0 else "−") + format_money(abs(number))


def _none_if_nan(value: object) -> float | None:
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def render_html(context: ReportContext) -> str:
    """The page as one HTML string (all data-supplied text escaped by the template engine)."""
    return _environment().get_template("leadership.html.j2").render(report=context)


# --- I/O edge --------------------------------------------------------------------------------


def read_lists(lists_dir: Path) -> ListOutputs:
    """The score stage's files for one as-of date."""
    lists_dir = Path(lists_dir)
    if not lists_dir.is_dir():
        raise ReportError(f"{lists_dir} not found: run `churn score` (or `dvc repro`) first")
    absent = [name for name in LIST_FILES if not (lists_dir / name).is_file()]
    if absent:
        raise ReportError(f"{lists_dir} lacks {absent}: run `churn score` again")
    try:
        manifest = json.loads((lists_dir / "manifest.json").read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{lists_dir / 'manifest.json'} is not valid JSON: {err}") from err
    frames = {}
    for name in ("shap", "features"):
        frame = pd.read_parquet(lists_dir / f"{name}.parquet")
        if "account_id" not in frame.columns:
            raise ReportError(f"{lists_dir / f'{name}.parquet'} has no account_id column")
        frames[name] = frame.set_index("account_id")
    return ListOutputs(
        manifest=manifest,
        accounts=pd.read_parquet(lists_dir / "accounts.parquet"),
        shap=frames["shap"],
        features=frames["features"],
        trend=pd.read_csv(lists_dir / "trend.csv"),
    )


def _read_json(path: Path, hint: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path} not found: {hint}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path} must hold a JSON object")
    return data


def load_inputs(
    *,
    lists_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    backtest_path: Path,
    feature_summary_path: Path,
    models_dir: Path,
    windows: Sequence[int],
    label_horizon_days: int,
    renewal_grace_days: int,
    capacity_per_csm: int | None = None,
) -> ReportInputs:
    """Read every input the page needs; a missing one is named with the command that makes it."""
    from features.registry import build_registry

    curves = {}
    for name in ("calibration", "lift"):
        path = Path(plots_dir) / f"{name}.csv"
        if not path.is_file():
            raise ReportError(f"{path} not found: run `churn evaluate` first")
        curves[name] = pd.read_csv(path)
    return ReportInputs(
        lists=read_lists(lists_dir),
        metrics=_read_json(metrics_path, "run `churn evaluate` first"),
        backtest=_read_json(backtest_path, "run `churn backtest` first"),
        feature_summary=_read_json(feature_summary_path, "run `churn features` first"),
        training_info=_read_json(Path(models_dir) / TRAINING_INFO, "run `churn train` first"),
        curves=curves,
        registry=build_registry(windows),
        label_horizon_days=int(label_horizon_days),
        renewal_grace_days=int(renewal_grace_days),
        capacity_per_csm=capacity_per_csm,
    )


def report_settings(cfg: Mapping[str, object] | None) -> ReportSettings:
    """ReportSettings from the params `report` section (absent keys keep their defaults)."""
    from pipeline.core.errors import ConfigError

    cfg = dict(cfg or {})
    known = {"top_features", "dependence_plots", "largest_accounts"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigError(f"report section has unknown keys {unknown}; known: {sorted(known)}")
    for key, value in cfg.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"report.{key} must be a whole number >= 1, not {value!r}")
    return ReportSettings(**cfg)


def run_report(
    params: dict,
    *,
    lists_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    backtest_path: Path,
    feature_summary_path: Path,
    models_dir: Path,
    out: Path,
) -> ReportContext:
    """The report stage's edge: read the inputs, build the page, write it atomically."""
    from pipeline.core.atomic import atomic_path
    from pipeline.core.config import section, setting

    settings = report_settings(params.get("report"))
    features_cfg = section(params, "features")
    capacity = (params.get("evaluate") or {}).get("capacity_per_csm")
    inputs = load_inputs(
        lists_dir=lists_dir,
        metrics_path=metrics_path,
        plots_dir=plots_dir,
        backtest_path=backtest_path,
        feature_summary_path=feature_summary_path,
        models_dir=models_dir,
        windows=features_cfg.get("windows", [30, 90]),
        label_horizon_days=int(setting(params, "features.label_horizon_days")),
        renewal_grace_days=int(setting(params, "base.renewal_grace_days")),
        capacity_per_csm=capacity,
    )
    context = build_report(inputs, settings)
    html = render_html(context)
    with atomic_path(Path(out)) as tmp:
        tmp.write_text(html, encoding="utf-8")
    log.info("report: %d figures, %d KB -> %s", len(context.figures), len(html) // 1024, out)
    return context
