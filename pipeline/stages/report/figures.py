"""The report's figures: each function takes frames and returns a matplotlib Figure.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`), never pyplot:
no global backend is chosen and no figure is registered with a figure manager, so importing
the report works headless and leaves a notebook's inline charts alone. Saving or embedding a
figure is the page's job, not this module's.

Build *and* save the figures inside `figure_style()`: matplotlib creates tick labels when a
figure is drawn, so the style must still hold when the figure is rendered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import Formatter, FuncFormatter, MaxNLocator

from pipeline.stages.report.analysis import numeric_values
from pipeline.stages.report.words import format_money

FAMILY_COLOURS = {
    "usage": "#1f77b4",
    "training": "#2ca02c",
    "support": "#d62728",
    "onboarding": "#9467bd",
    "engagement": "#ff7f0e",
    "commercial": "#7f7f7f",
}
OTHER_COLOUR = "#bcbd22"  # a family the colour table does not know
PNG_DPI = 110


@contextmanager
def figure_style() -> Iterator[None]:
    """Plain text everywhere: a '$' in a segment or region name must not start mathtext."""
    with mpl.rc_context({"text.parse_math": False, "font.size": 9, "axes.titlesize": 10}):
        yield


def _plain_ticks() -> Formatter:
    """Tick labels as plain numbers (log scales default to mathtext, which is off here)."""
    return FuncFormatter(lambda v, _: f"{v:,.4g}")


def _money_tick(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.0f}"


def _money_ticks() -> Formatter:
    """Short money tick labels ('250k', '1.5M'); at most a few ticks fit a small panel."""
    return FuncFormatter(lambda v, _: _money_tick(v))


def importance_figure(importance: pd.DataFrame, *, top: int) -> Figure:
    """Horizontal bars: mean |SHAP| of the top features, coloured by family."""
    shown = importance.head(top).iloc[::-1]
    fig = Figure(figsize=(7.5, 0.32 * len(shown) + 1.2), dpi=PNG_DPI)
    ax = fig.subplots()
    colours = [FAMILY_COLOURS.get(f, OTHER_COLOUR) for f in shown["family"]]
    ax.barh(shown["description"], shown["mean_abs_shap"], color=colours)
    ax.set_xlabel("Mean absolute effect on churn risk (log-odds)")
    ax.set_title(f"Top {len(shown)} drivers of predicted churn")
    handles = [
        Rectangle((0, 0), 1, 1, color=FAMILY_COLOURS.get(f, OTHER_COLOUR))
        for f in dict.fromkeys(shown["family"][::-1])
    ]
    labels = list(dict.fromkeys(shown["family_title"][::-1]))
    ax.legend(handles, labels, loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def family_figure(families: pd.DataFrame) -> Figure:
    """Horizontal bars: mean |summed SHAP| per feature family, labelled with its share."""
    shown = families.iloc[::-1]
    fig = Figure(figsize=(7.5, 0.4 * len(shown) + 1.2), dpi=PNG_DPI)
    ax = fig.subplots()
    colours = [FAMILY_COLOURS.get(f, OTHER_COLOUR) for f in shown["family"]]
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
) -> Figure:
    """SHAP summary plot: one row per top feature, one dot per account, coloured by value."""
    shown = importance.head(top)
    fig = Figure(figsize=(7.5, 0.42 * len(shown) + 1.6), dpi=PNG_DPI)
    ax = fig.subplots()
    cmap = mpl.colormaps["coolwarm"]
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


def dependence_figure(values: pd.Series, shap_values: pd.Series, *, label: str) -> Figure:
    """A driver's value (x) against its SHAP value (y), one dot per account.

    Categorical features show one column of dots per category; accounts without a value are
    counted in a note rather than drawn at an invented position.
    """
    fig = Figure(figsize=(4.6, 3.4), dpi=PNG_DPI)
    ax = fig.subplots()
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
        # a long right tail (ARR, seats) would squash every other account into one column
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


def segment_risk_figure(by_segment: pd.DataFrame, by_cohort: pd.DataFrame) -> Figure:
    """Expected ARR at risk by segment and by tenure cohort, side by side."""
    fig = Figure(figsize=(8, 2.8), dpi=PNG_DPI)
    axes = fig.subplots(1, 2)
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
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.margins(x=0.45)  # room for the value labels right of the bars
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def trend_figure(trend: pd.DataFrame) -> Figure:
    """Expected ARR at risk per scored week."""
    fig = Figure(figsize=(7.5, 2.8), dpi=PNG_DPI)
    ax = fig.subplots()
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
