"""The report's words: how numbers are written, and every sentence the page builds from data.

Numbers are formatted here once, so a value reads the same in a headline card, a table cell
and a caption, and the tests that compare the page with its source files know the rounding.
The sentences (trust summary, dependence captions, label definition, known limits) and the
model card's facts are derived from the inputs, never typed into the template, so they stay
true when the data or the model changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from features.registry import FAMILIES, Feature
from pipeline.lists.manifest import ListsManifest

MIN_SEGMENT_TEST_ROWS = 100  # fewer labelled test rows than this: a segment's AUC is noisy


# --- values ----------------------------------------------------------------------------------


def format_value(value: float | None, kind: str) -> str:
    """A number as the page shows it ('n/a' when there is none)."""
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


def none_if_nan(value: object) -> float | None:
    """A float, or None for every kind of missing value (None, pd.NA, NaN) the frames hold."""
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def signed_money(value: object) -> str:
    """A week-over-week change: '+12.5k', '−3.1k' (a real minus sign), '–' when there is none."""
    number = none_if_nan(value)
    if number is None:
        return "–"
    if number == 0:
        return "0"
    return ("+" if number > 0 else "−") + format_money(abs(number))


@dataclass(frozen=True)
class Metric:
    """One headline number: its source file's key and value, and how the page shows it.

    The page writes `key`, `source` and `raw` into a `data-metric` marker next to `display`,
    so a test can hold every headline figure to the file it came from.
    """

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


# --- names -----------------------------------------------------------------------------------


def family_title(family: str) -> str:
    """A feature family's plain-language title ('support' -> 'Support and SLA breaches')."""
    return FAMILIES[family].title if family in FAMILIES else family


def lower_first(text: str) -> str:
    """'Active users' -> 'active users', but 'SLA breaches' stays (an acronym leads)."""
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]


# --- sentences -------------------------------------------------------------------------------


def dependence_sentence(feature: Feature | None, name: str, direction: str) -> str:
    """One sentence saying what a dependence plot shows, in plain words.

    `direction` is `analysis.effect_direction`'s verdict; the sentence only claims a
    more-or-less relation when the data shows one.
    """
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


#: Fewer trees than this is a model that barely learned (early stopping gave up at once).
MIN_TREES = 5


def model_warning(metrics: Mapping[str, float], training_info: Mapping[str, object]) -> str | None:
    """The plain warning for a model that must not be read for drivers, or None.

    Near chance: the 90% interval of its test ROC-AUC over accounts reaches 0.5. Tiny: early
    stopping kept only a handful of trees. Either way the page names no drivers from it.
    """
    low = metrics.get("roc_auc_low")
    trees = training_info.get("best_iteration")
    if low is not None and float(low) <= 0.5:
        return (
            f"This model is not reliably better than chance: its ROC-AUC on the test period "
            f"could be as low as {float(low):.3f} (90% interval over accounts; 0.5 is a coin "
            "toss). Do not act on its drivers; use the lists with care and look at the data."
        )
    if isinstance(trees, int) and trees < MIN_TREES:
        return (
            f"This model learned almost nothing: training stopped after {trees} "
            f"tree{'s' if trees != 1 else ''}. Its drivers are not shown."
        )
    return None


def trust_summary(metrics: Mapping[str, float]) -> str:
    """One plain sentence comparing the model with the best baseline (and the oracle).

    A CS leader compares a model with the score their platform already shows, and a data
    scientist with the simplest model that works: the verdict is stated against the stronger
    of the two, and says plainly when a baseline does as well or better.
    """
    model = float(metrics["roc_auc"])
    text = f"On the test period the model's ROC-AUC is {model:.3f}"
    low, high = metrics.get("roc_auc_low"), metrics.get("roc_auc_high")
    if low is not None and high is not None:
        text += f" (90% interval over accounts: {float(low):.3f} to {float(high):.3f})"
    baselines = {
        "the rule-based health score": metrics.get("health_score_roc_auc"),
        "a plain logistic regression on the same signals": metrics.get("logreg_roc_auc"),
    }
    known = {name: float(v) for name, v in baselines.items() if v is not None}
    if known:
        name, best = max(known.items(), key=lambda item: (item[1], item[0]))
        if model > best + 0.005:
            text += f", better than the best baseline, {name} ({best:.3f})"
        elif model < best - 0.005:
            text += f"; {name} does better ({best:.3f}): prefer it until this model improves"
        else:
            text += f", no better than {name} ({best:.3f})"
        health = known.get("the rule-based health score")
        if health is not None and name != "the rule-based health score":
            text += f"; the rule-based health score reaches {health:.3f}"
    pit, oracle = metrics.get("pit_oracle_roc_auc"), metrics.get("oracle_roc_auc")
    if pit is not None:
        text += (
            f"; on this demo data the best a model could reach from what each snapshot knows "
            f"(the simulator's point-in-time probabilities) is {float(pit):.3f}"
        )
        if oracle is not None:
            text += (
                f", and {float(oracle):.3f} knowing each account's state just before its "
                "renewal, which no snapshot can"
            )
    elif oracle is not None:
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
    warnings: Sequence[Mapping[str, object]],
    training_info: Mapping[str, object],
) -> list[str]:
    """Limits a reader must know before acting on the page, derived from the inputs.

    `warnings` are the scoring warnings of the lists manifest (each with a kind and a message):
    a stale table or a drifted feature limits what this week's page can claim.
    """
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
        titles = ", ".join(family_title(f) for f in missing)
        limits.append(f"Feature families missing (their tables were not supplied): {titles}.")
    if partial:
        titles = ", ".join(family_title(f) for f in partial)
        limits.append(f"Feature families only partly available: {titles}.")
    if "oracle_roc_auc" in metrics:
        limits.append(
            "These figures come from the simulated demo company, not from real customers."
        )
    for warning in warnings:
        if warning.get("message"):
            limits.append(f"Scoring warning ({warning.get('kind', 'note')}): {warning['message']}")
    return limits


CANDIDATE_NAMES = {
    "lightgbm": "LightGBM",
    "logistic": "logistic regression",
    "blend": "blend of the two",
}
METRIC_NAMES = {"pr_auc": "PR-AUC", "roc_auc": "ROC-AUC", "log_loss": "log loss"}


def selection_summary(training_info: Mapping[str, object]) -> str | None:
    """How the model was chosen, with every candidate's validation score and interval, and
    whether the winner's lead is beyond the noise (its interval above the runner-up's score):
    a reader should not take a 0.005 lead for a better model."""
    selection = training_info.get("selection")
    if not isinstance(selection, Mapping) or not selection.get("candidates"):
        return None
    metric = str(selection["metric"])
    candidates = dict(selection["candidates"])
    chosen = str(selection["chosen"])
    higher = metric != "log_loss"
    ranked = sorted(candidates, key=lambda n: candidates[n]["score"], reverse=higher)
    parts = [
        f"{CANDIDATE_NAMES.get(n, n)} {candidates[n]['score']:.3f} "
        f"({candidates[n]['low']:.3f} to {candidates[n]['high']:.3f})"
        for n in ranked
    ]
    text = (
        f"Chosen by {METRIC_NAMES.get(metric, metric)} on {len(selection.get('folds') or [])} "
        f"validation folds before the test period: {'; '.join(parts)}."
    )
    others = [n for n in ranked if n != chosen]
    if others:
        runner = candidates[others[0]]["score"]
        win = candidates[chosen]
        clear = win["low"] > runner if higher else win["high"] < runner
        text += (
            " Its lead is beyond the noise of which accounts renewed when."
            if clear
            else " The lead is within the noise: the candidates are about equally good."
        )
    return text


def model_card(
    *,
    training_info: Mapping[str, object],
    feature_summary: Mapping[str, object],
    manifest: ListsManifest,
    metrics: Mapping[str, float],
    label_horizon_days: int,
    renewal_grace_days: int,
) -> dict:
    """The model card's facts: data window, label, feature families, versions, known limits."""
    split = dict(training_info.get("split") or {})
    rows = dict(training_info.get("rows") or {})
    families_used = [family_title(f) for f in feature_summary.get("families_available") or [] if f]
    return {
        "as_of": str(manifest.as_of),
        "model_version": manifest.model_version,
        "model_source": manifest.model_source,
        "data_version": manifest.data_version,
        "split": split,
        "rows": rows,
        "snapshots": {
            "first": feature_summary.get("first_snapshot"),
            "last": feature_summary.get("last_snapshot"),
            "accounts": feature_summary.get("accounts"),
        },
        "purged_rows": training_info.get("purged_rows"),
        "calibration": training_info.get("calibration"),
        "best_iteration": training_info.get("best_iteration"),
        "selection": selection_summary(training_info),
        "model_description": training_info.get("model_description")
        or f"LightGBM, {training_info.get('best_iteration')} trees",
        "label": label_definition(
            label_horizon_days=label_horizon_days, renewal_grace_days=renewal_grace_days
        ),
        "families_used": families_used,
        "families_missing": [
            family_title(f) for f in feature_summary.get("families_unavailable") or []
        ],
        "families_partial": [
            family_title(f) for f in feature_summary.get("families_partial") or []
        ],
        "features_unavailable": list(feature_summary.get("features_unavailable") or []),
        "limits": known_limits(
            metrics=metrics,
            feature_summary=feature_summary,
            warnings=manifest.warnings,
            training_info=training_info,
        ),
    }
