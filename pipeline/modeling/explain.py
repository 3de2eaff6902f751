"""Explanations: SHAP values per account and the reason codes a CSM reads.

A probability alone does not tell a CSM what to do. SHAP values split each account's model
score (log-odds) into one contribution per feature, exactly: LightGBM's `pred_contrib` for trees
(the same values as shap.TreeExplainer), coefficient x standardised value for the logistic
model, and their weighted mean for a blend. Reason codes turn the largest risk-raising
contributions into plain words:

- drivers are grouped by feature family (usage, training, support...), because a CSM acts on
  "support is hurting this account", not on three correlated SLA counters;
- each reason names the account's value and what is typical for its segment (the
  interquartile range over that segment's scored accounts), so "4 breaches" has a yardstick;
- each reason carries the registry's play (what to do);
- drivers a CSM cannot change (segment, tenure, contract terms: `Feature.actionable` False) are
  kept apart, as context, never mixed with what to act on.

Everything here is pure: frames in, frames out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.registry import FAMILIES, Feature
from pipeline.core.errors import ExplainError
from pipeline.modeling.learners import ADDITIVITY_TOLERANCE

log = logging.getLogger(__name__)

REASON_SEPARATOR = " | "
# Units written after the number; others are clear from the feature's description.
SPELLED_UNITS = ("days", "hours", "months")


def shap_values(learner, X: pd.DataFrame, *, num_threads: int = 0) -> tuple[pd.DataFrame, float]:
    """Contributions (log-odds) per row and feature, and the base value (the expected score):
    exact TreeSHAP for trees, exact linear contributions for the logistic model, their
    weighted mean for a blend (pipeline.modeling.learners). `num_threads` 0 uses all cores."""
    return learner.contributions(X, num_threads=num_threads)


def explain(
    learner, X: pd.DataFrame, raw_score: np.ndarray, *, num_threads: int = 0
) -> tuple[pd.DataFrame, float, float]:
    """Contributions checked against the model's own scores: (shap, base value, largest gap)."""
    shap, base = shap_values(learner, X, num_threads=num_threads)
    return shap, base, check_additivity(shap, base, raw_score)


def check_additivity(
    shap: pd.DataFrame,
    base_value: float,
    raw_score: np.ndarray,
    *,
    tol: float = ADDITIVITY_TOLERANCE,
) -> float:
    """Base value + contributions must equal the model's raw log-odds for every row.

    Returns the largest absolute difference; raises when it exceeds `tol`, because reasons
    built on contributions that do not add up to the score would explain another model.
    """
    raw_score = np.asarray(raw_score, dtype=float)
    if len(raw_score) != len(shap):
        raise ExplainError(f"{len(raw_score)} raw scores for {len(shap)} rows of SHAP values")
    if not len(shap):
        return 0.0
    gap = np.abs(base_value + shap.to_numpy().sum(axis=1) - raw_score)
    worst = float(gap.max())
    if worst > tol:
        row = int(gap.argmax())
        raise ExplainError(
            f"SHAP values do not add up to the model score: off by {worst:.3g} on row {row} "
            f"(base {base_value:.6f}, score {raw_score[row]:.6f})"
        )
    return worst


# --- plain-language values -------------------------------------------------------------------


def segment_label(segment: object) -> str:
    """'mid_market' -> 'mid-market'; a missing segment reads as 'all accounts'."""
    if segment is None or (isinstance(segment, float) and math.isnan(segment)):
        return "all accounts"
    text = str(segment)
    return text.replace("_", "-") if text and text != "<NA>" else "all accounts"


#: A tenure band needs this many accounts to be the yardstick; smaller ones use the segment.
MIN_PEERS = 10


def peer_groups(segments: pd.Series, tenure_days: pd.Series, *, onboarding_days: int) -> pd.Series:
    """Who an account is compared with: its segment, and for an account in its first
    `onboarding_days` the segment's accounts of that tenure, so an 8-day-old account is not
    told it has fewer active users than mature peers over 90 days. A band with fewer than
    MIN_PEERS accounts falls back to the whole segment (an interquartile range of three
    accounts is no yardstick).
    """
    segment = segments.astype("object").where(segments.notna(), None)
    young = (pd.to_numeric(tenure_days, errors="coerce") < onboarding_days).to_numpy()
    band = pd.Series(
        [
            f"{seg} accounts in their first {onboarding_days} days" if is_young else seg
            for seg, is_young in zip(segment, young, strict=True)
        ],
        index=segments.index,
        dtype="object",
    )
    sizes = band.map(band.value_counts())
    return band.where(~young | (sizes >= MIN_PEERS), segment)


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def format_value(feature: Feature, value: object) -> str:
    """A feature value as a CSM reads it: 4, 35%, 12 days, yes, enterprise."""
    if _is_missing(value):
        return feature.when_missing
    if feature.dtype == "category":
        return segment_label(value) if feature.name == "segment" else str(value)
    number = float(value)
    if feature.dtype == "bool":
        return "yes" if number >= 0.5 else "no"
    if feature.unit == "share":
        return f"{number:.0%}"
    if feature.dtype == "int" or feature.unit in (*SPELLED_UNITS, "ARR"):
        text = f"{number:,.0f}"
    else:
        text = f"{number:,.1f}"
    return f"{text} {feature.unit}" if feature.unit in SPELLED_UNITS else text


@dataclass(frozen=True)
class SegmentNorms:
    """What is typical per segment: the words shown next to a value, and the medians that
    decide whether a value sits on the risky side."""

    texts: dict[tuple[str, str], str]  # (segment label, feature) -> "0-1", "20%-45%", ...
    medians: pd.DataFrame  # segment label x numeric feature


def segment_norms(
    values: pd.DataFrame, segments: pd.Series, features: list[Feature]
) -> SegmentNorms:
    """Per segment and feature: the interquartile range in words and the median.

    Numbers: the interquartile range over the segment's accounts ("0-1", "20%-45%"); yes/no
    features: how many of the segment's accounts have it ("yes for 12%"). Categories have no
    typical value.
    """
    keys = segments.map(segment_label).astype(str)
    texts: dict[tuple[str, str], str] = {}
    numeric = [f for f in features if f.dtype != "category"]
    frame = values[[f.name for f in numeric]].astype("float64").assign(_segment=keys.to_numpy())
    grouped = frame.groupby("_segment", sort=True)
    q25, q50, q75 = grouped.quantile(0.25), grouped.quantile(0.5), grouped.quantile(0.75)
    means = grouped.mean()
    for segment in q25.index:
        for f in numeric:
            lo, hi = q25.at[segment, f.name], q75.at[segment, f.name]
            if f.dtype == "bool":
                share = means.at[segment, f.name]
                text = "n/a" if _is_missing(share) else f"yes for {share:.0%}"
            elif _is_missing(lo) or _is_missing(hi):
                text = "n/a"
            else:
                a, b = format_value(f, lo), format_value(f, hi)
                text = a if a == b else f"{a.removesuffix(' ' + f.unit)}-{b}"
            texts[(segment, f.name)] = text
    return SegmentNorms(texts, q50)


def risky_side(
    values: pd.DataFrame, segments: pd.Series, features: list[Feature], medians: pd.DataFrame
) -> np.ndarray:
    """Whether each value sits on the risky side of its segment's median (rows x features).

    A SHAP value can be positive for a value that is, by the registry's business direction,
    reassuring (an NPS of 9 nudging the score up through an interaction). Telling a CSM "NPS 9"
    is a reason for risk costs the list its credibility, so such drivers are not shown as
    reasons. Missing values, features with no direction and categories always qualify.
    """
    keys = segments.map(segment_label).astype(str).to_numpy()
    out = np.ones((len(values), len(features)), dtype=bool)
    for j, f in enumerate(features):
        if f.dtype == "category" or f.direction == "neither" or f.name not in medians.columns:
            continue
        x = values[f.name].to_numpy(dtype=float, na_value=np.nan)
        median = medians[f.name].reindex(keys).to_numpy(dtype=float)
        side = x > median if f.direction == "higher_is_riskier" else x < median
        out[:, j] = side | np.isnan(x) | np.isnan(median)
    return out


def describe_driver(feature: Feature, value: object, segment: object, typical: dict) -> str:
    """'<what>: <value>; typical for <segment>: <range>' (no range for categories)."""
    text = f"{feature.description}: {format_value(feature, value)}"
    label = segment_label(segment)
    rng = typical.get((label, feature.name))
    if rng is not None and rng != "n/a":
        text += f"; typical for {label}: {rng}"
    return text


# --- reason codes ----------------------------------------------------------------------------


def reason_codes(
    shap: pd.DataFrame,
    values: pd.DataFrame,
    segments: pd.Series,
    features: list[Feature],
    *,
    top_n: int,
    context_n: int | None = None,
) -> pd.DataFrame:
    """Per account: the top risk-raising families (actionable drivers), their plays, and the
    non-actionable drivers as context.

    `shap` and `values` hold one row per account (same index) and one column per model
    feature; `segments` the account's segment (for what is typical). A family's weight is the
    sum of its actionable features' SHAP values; it is a reason when that sum raises risk
    (> 0), described by its feature with the largest contribution among those whose value is
    on the risky side of the segment's median (`risky_side`; a family with none is skipped).
    Context: the non-actionable features that raise risk, largest first, same rule.

    Returns, per row: reasons (plain text, joined by " | "), plays (the reasons' plays, each
    once), context (non-actionable drivers), top_families (comma-separated family keys),
    top_features (the features named in reasons).
    """
    if top_n < 1:
        raise ExplainError(f"top_n must be at least 1, not {top_n}")
    context_n = top_n if context_n is None else context_n
    by_name = {f.name: f for f in features}
    missing = [c for c in shap.columns if c not in by_name]
    if missing:
        raise ExplainError(f"no registry entry for the model features {missing}")
    names = list(shap.columns)
    S = shap.to_numpy(dtype=float)
    n = len(S)
    actionable = np.array([by_name[c].actionable for c in names])
    families = [fam for fam in FAMILIES if any(by_name[c].family == fam for c in names)]
    family_of = np.array([families.index(by_name[c].family) for c in names])

    norms = segment_norms(values, segments, [by_name[c] for c in names])
    risky = risky_side(values, segments, [by_name[c] for c in names], norms.medians)
    # A feature can describe a reason when it raises risk and its value is on the risky side.
    shown = np.where((S > 0) & risky, S, -np.inf)

    # Family weight (all its actionable contributions) and its strongest showable feature.
    weight = np.full((n, len(families)), -np.inf)
    strongest = np.full((n, len(families)), -1, dtype=np.int64)
    for k in range(len(families)):
        cols = np.flatnonzero(actionable & (family_of == k))
        if len(cols):
            weight[:, k] = S[:, cols].sum(axis=1)
            best = np.argmax(shown[:, cols], axis=1)
            has = np.isfinite(shown[np.arange(n), cols[best]])
            strongest[:, k] = np.where(has, cols[best], -1)
    order = np.argsort(-weight, axis=1, kind="stable")

    context_cols = np.flatnonzero(~actionable)
    context_order = (
        context_cols[np.argsort(-shown[:, context_cols], axis=1, kind="stable")[:, :context_n]]
        if len(context_cols)
        else np.empty((n, 0), dtype=np.int64)
    )

    value_rows = values[names].to_numpy(dtype=object)
    segment_rows = segments.to_numpy(dtype=object)
    reasons, plays, context, top_families, top_features = [], [], [], [], []
    for i in range(n):
        texts, row_plays, fams, feats = [], [], [], []
        for k in order[i]:
            if len(texts) == top_n or not weight[i, k] > 0:
                break
            col = strongest[i, k]
            if col < 0:
                continue
            feature = by_name[names[col]]
            title = FAMILIES[feature.family].title
            described = describe_driver(feature, value_rows[i, col], segment_rows[i], norms.texts)
            texts.append(f"{title}: {described}")
            if feature.play and feature.play not in row_plays:
                row_plays.append(feature.play)
            fams.append(feature.family)
            feats.append(feature.name)
        notes = []
        for col in context_order[i]:
            if not np.isfinite(shown[i, col]):
                break
            feature = by_name[names[col]]
            notes.append(describe_driver(feature, value_rows[i, col], segment_rows[i], norms.texts))
        reasons.append(REASON_SEPARATOR.join(texts))
        plays.append(REASON_SEPARATOR.join(row_plays))
        context.append(REASON_SEPARATOR.join(notes))
        top_families.append(",".join(fams))
        top_features.append(",".join(feats))
    return pd.DataFrame(
        {
            "reasons": reasons,
            "plays": plays,
            "context": context,
            "top_families": top_families,
            "top_features": top_features,
        },
        index=shap.index,
    ).astype("string")


def moved_most(
    shap_now: pd.DataFrame,
    shap_before: pd.DataFrame,
    values_now: pd.DataFrame,
    values_before: pd.DataFrame,
    direction: pd.Series,
    features: list[Feature],
) -> pd.DataFrame:
    """The driver that moved an account's risk most since the previous scoring.

    For an account whose risk rose (`direction` > 0), the feature whose SHAP value rose most;
    for one that fell (< 0), the feature whose SHAP value fell most; nothing otherwise. All
    frames share an index (the accounts to look at). Returns moved_most_feature and
    moved_most (e.g. "SLA breaches ... in the last 90 days: 1 -> 4").
    """
    by_name = {f.name: f for f in features}
    names = list(shap_now.columns)
    delta = shap_now[names].to_numpy(dtype=float) - shap_before[names].to_numpy(dtype=float)
    sign = np.sign(direction.to_numpy(dtype=float))
    signed = delta * sign[:, None]
    pick = np.argmax(signed, axis=1) if len(names) else np.zeros(len(delta), dtype=int)
    feature_out, text_out = [], []
    now_rows = values_now[names].to_numpy(dtype=object)
    before_rows = values_before[names].to_numpy(dtype=object)
    for i, col in enumerate(pick):
        if sign[i] == 0 or not signed[i, col] > 0:
            feature_out.append(pd.NA)
            text_out.append(pd.NA)
            continue
        feature = by_name[names[col]]
        before = format_value(feature, before_rows[i, col])
        now = format_value(feature, now_rows[i, col])
        feature_out.append(feature.name)
        text_out.append(f"{feature.description}: {before} -> {now}")
    return pd.DataFrame(
        {"moved_most_feature": feature_out, "moved_most": text_out}, index=shap_now.index
    ).astype("string")
