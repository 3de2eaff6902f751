"""The template's context: the report's numbers, words and figures put together.

`build_report` is the report's core: it takes the inputs already read from disk and the
`report` settings, and returns a `ReportContext` of plain values, frames as row lists and
figures as PNG data URIs. It reads no file and writes none, so a test can build a page from
tiny in-memory frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from pipeline.core.config import ReportSection
from pipeline.modeling.plots import curve_figures
from pipeline.stages.report.analysis import (
    COHORT_FIRST_90,
    csm_risk,
    driver_importance,
    effect_direction,
    family_importance,
    largest_at_risk,
    portfolio_figures,
    registry_map,
    risk_by,
    trend_table,
    trust_metrics,
    with_cohort,
)
from pipeline.stages.report.figures import (
    beeswarm_figure,
    dependence_figure,
    family_figure,
    figure_style,
    importance_figure,
    segment_risk_figure,
    trend_figure,
)
from pipeline.stages.report.inputs import ReportInputs, check_lists
from pipeline.stages.report.page import figure_data_uri
from pipeline.stages.report.words import (
    Metric,
    dependence_sentence,
    direction_words,
    group_name,
    model_card,
    model_warning,
    precision_note,
    trust_summary,
    warning_title,
    week_change,
)

# The portfolio cards: key of portfolio_figures, label, how the value is written.
PORTFOLIO_CARDS = {
    "accounts": ("Accounts scored", "count"),
    "arr_total": ("ARR scored", "money"),
    "expected_arr_at_risk": ("Expected ARR at risk", "money"),
    "arr_at_risk_share": ("Share of ARR at risk", "share"),
    "accounts_on_lists": ("Accounts on CSM lists", "count"),
    "high_risk_accounts": ("High-risk accounts", "count"),
}
CURVE_CAPTIONS = {
    "calibration": "Each point is a group of test accounts with similar predicted "
    "probability: on the diagonal, a predicted 30% means 30% of them churned.",
    "lift": "How many of the churners a CSM team reaches by working down the model's "
    "ranking: the further above the diagonal, the fewer calls it takes.",
}
CURVE_TITLES = {"calibration": "Calibration", "lift": "Cumulative gains (lift)"}


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
    first_screen: dict = field(default_factory=dict)
    currency: str = "$"
    figures: dict[str, EmbeddedFigure] = field(default_factory=dict)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts for the template, with every kind of missing value as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _embed(key: str, title: str, caption: str, fig: Figure) -> EmbeddedFigure:
    return EmbeddedFigure(key, title, caption, figure_data_uri(fig))


#: Rows per block of the first screen (segments, CSM books, accounts): what fits above the fold.
FIRST_SCREEN_ROWS = 5


def first_screen(
    portfolio: dict[str, float],
    by_segment: pd.DataFrame,
    by_csm: pd.DataFrame,
    largest: pd.DataFrame,
    trend: pd.DataFrame,
    *,
    as_of: str,
    currency: str,
) -> dict:
    """How much, where and who: what a VP reads before scrolling.

    How much: the expected ARR at risk and its change since the previous scored week of
    trend.csv (said honestly when there is none). Where: the segments and the CSM books that
    hold the most of it, each book with its exposure (the share of that CSM's ARR at risk),
    so a small book at high risk is not hidden by a big one. Who: the largest accounts at risk.
    """
    trend = trend.sort_values("week").reset_index(drop=True)
    weeks = [str(w) for w in trend["week"]] if len(trend) else []
    latest = portfolio["expected_arr_at_risk"]
    # The change compares trend.csv's own rows (all weeks rescored with the same model), the
    # as-of week with the one before it, so a model change never shows up as a risk change.
    now = previous = previous_week = None
    at = weeks.index(as_of) if as_of in weeks else len(weeks) - 1
    if at > 0:
        now = float(trend.iloc[at]["expected_arr_at_risk"])
        previous, previous_week = float(trend.iloc[at - 1]["expected_arr_at_risk"]), weeks[at - 1]
    segments = by_segment.head(FIRST_SCREEN_ROWS).assign(
        name=by_segment["segment"].head(FIRST_SCREEN_ROWS).map(group_name)
    )
    total = latest if latest > 0 else math.nan
    segments = segments.assign(share_of_risk=segments["expected_arr_at_risk"] / total)
    return {
        "at_risk": Metric(
            "expected_arr_at_risk", "Expected ARR at risk", latest, "lists", "money", currency
        ),
        "share": portfolio["arr_at_risk_share"],
        "arr_total": portfolio["arr_total"],
        "change": week_change(now, previous, previous_week=previous_week, currency=currency),
        "change_value": None if previous is None or now is None else now - previous,
        "segments": _records(segments),
        "csms": _records(by_csm.head(FIRST_SCREEN_ROWS)),
        "accounts": _records(largest.assign(segment_name=largest["segment"].map(group_name))),
    }


def build_report(inputs: ReportInputs, settings: ReportSection) -> ReportContext:
    """Everything the page shows, from the inputs (figures already rendered to PNG)."""
    lists = inputs.lists
    check_lists(lists)
    registry = registry_map(inputs.registry)
    accounts = with_cohort(lists.accounts)
    shap = lists.shap
    features = lists.features.reindex(shap.index)
    manifest = lists.manifest

    portfolio_values = portfolio_figures(accounts)
    portfolio = [
        Metric(key, label, portfolio_values[key], "lists", kind, settings.currency)
        for key, (label, kind) in PORTFOLIO_CARDS.items()
    ]

    # A signal with no effect, or one value for every account, is never named as a driver.
    varying = {str(c) for c in features.columns if features[c].nunique(dropna=True) > 1}
    importance = driver_importance(shap, inputs.registry)
    importance = importance[
        (importance["mean_abs_shap"] > 0) & importance["feature"].isin(varying)
    ].reset_index(drop=True)
    warning = model_warning(inputs.metrics, inputs.training_info)
    families = family_importance(shap, inputs.registry)
    by_segment = risk_by(accounts, "segment")
    by_cohort = risk_by(accounts, "tenure_cohort")
    trend = trend_table(lists.trend)
    figures: dict[str, EmbeddedFigure] = {}
    with figure_style():  # around drawing too: tick labels are made when a figure is saved
        figures["families"] = _embed(
            "families",
            "Drivers by family",
            "Each bar is a family of related signals (usage, support, ...); its length is how "
            "much that family moves a typical account's predicted churn risk, in either "
            "direction.",
            family_figure(families),
        )
        figures["importance"] = _embed(
            "importance",
            "Top drivers",
            "Each bar is one signal; its length is how much it moves a typical account's "
            "predicted churn risk, in either direction, and its colour is its family.",
            importance_figure(importance, top=settings.top_features),
        )
        figures["beeswarm"] = _embed(
            "beeswarm",
            "How the drivers act on each account",
            "Each dot is one account: dots right of the line had their risk raised by that "
            "signal, dots left had it lowered, and red dots have a high value of the signal, "
            "blue a low one.",
            beeswarm_figure(shap, features, importance, top=settings.top_features),
        )
        dependence = []
        for name in importance["feature"].head(settings.dependence_plots):
            feature = registry.get(name)
            label = feature.description if feature else name
            direction = effect_direction(features[name], shap[name])
            dependence.append(
                _embed(
                    f"dependence_{name}",
                    label,
                    dependence_sentence(feature, name, direction),
                    dependence_figure(features[name], shap[name], label=label),
                )
            )
        figures["segment_risk"] = _embed(
            "segment_risk",
            "Expected ARR at risk by segment and tenure",
            "Each bar is the sum over a group's accounts of churn probability times ARR, the "
            "revenue the group is expected to lose at its coming renewals.",
            segment_risk_figure(by_segment, by_cohort),
        )
        curves = {k: v for k, v in inputs.curves.items() if k in CURVE_CAPTIONS}
        for name, fig in curve_figures(curves).items():
            figures[name] = _embed(name, CURVE_TITLES[name], CURVE_CAPTIONS[name], fig)
        if len(trend) >= 2:
            figures["trend"] = _embed(
                "trend",
                "ARR at risk over time",
                "Each point is one scored week: the expected ARR at risk across all accounts "
                "active that week, all weeks scored with the same model.",
                trend_figure(trend),
            )

    top_accounts = largest_at_risk(accounts, settings.largest_accounts)
    # Which way each named driver pushes risk: its size alone says nothing to act on.
    shown = importance.head(settings.top_features)
    directions = {
        name: direction_words(
            registry[name].description if name in registry else name,
            effect_direction(features[name], shap[name]),
        )
        for name in shown["feature"]
    }
    shown = shown.assign(direction=shown["feature"].map(directions))
    first_90 = by_cohort[by_cohort["tenure_cohort"] == COHORT_FIRST_90]
    latest = trend.iloc[-1] if len(trend) else None
    previous = trend.iloc[-2] if len(trend) >= 2 else None
    return ReportContext(
        as_of=str(manifest.as_of),
        portfolio=portfolio,
        warnings=[{**w, "title": warning_title(w.get("kind", "note"))} for w in manifest.warnings],
        currency=settings.currency,
        first_screen=first_screen(
            portfolio_values,
            by_segment,
            csm_risk(accounts),
            largest_at_risk(accounts, FIRST_SCREEN_ROWS),
            trend,
            as_of=str(manifest.as_of),
            currency=settings.currency,
        ),
        drivers={
            "features": _records(shown),
            "families": _records(families),
            "dependence": dependence,
            "signals": int(shap.shape[1]),
            "top_actionable": ([] if warning else _records(shown[shown["actionable"]].head(3))),
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
            "capacity_per_csm": manifest.capacity_per_csm,
            "rank_by": manifest.rank_by,
            "unassigned": manifest.unassigned.model_dump() if manifest.unassigned else None,
        },
        trust={
            **trust_metrics(inputs.metrics, inputs.backtest),
            "summary": trust_summary(inputs.metrics),
            "warning": warning,
            "capacity_per_csm": inputs.capacity_per_csm,
            "precision_note": precision_note(
                inputs.metrics.get("precision_at_capacity"),
                inputs.backtest.get("backtest_precision_at_capacity"),
                capacity=inputs.capacity_per_csm,
                rank_by=manifest.rank_by,
            ),
        },
        trend={
            "rows": _records(trend),
            "latest": None if latest is None else latest.to_dict(),
            "previous": None if previous is None else previous.to_dict(),
        },
        card=model_card(
            training_info=inputs.training_info,
            feature_summary=inputs.feature_summary,
            manifest=manifest,
            metrics=inputs.metrics,
            label_horizon_days=inputs.label_horizon_days,
            renewal_grace_days=inputs.renewal_grace_days,
        ),
        figures=figures,
    )
