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
from pipeline.core.config import ReportSection
from pipeline.core.words import GROUP_WORDS, group_name  # noqa: F401 - the report's names
from pipeline.core.words import format_money as core_format_money
from pipeline.lists.manifest import ListsManifest

#: The currency symbol of `report.currency`'s default (the default itself lives in the config).
DEFAULT_CURRENCY = ReportSection().currency

MIN_SEGMENT_TEST_ROWS = 100  # fewer labelled test rows than this: a segment's AUC is noisy


# --- values ----------------------------------------------------------------------------------


def format_value(value: float | None, kind: str, currency: str = DEFAULT_CURRENCY) -> str:
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
        return format_money(value, currency)
    return f"{value:.3f}"


def format_money(value: float, currency: str = DEFAULT_CURRENCY) -> str:
    """An amount as a person writes it (`pipeline.core.words.format_money`), in the report's
    default currency unless told."""
    return core_format_money(value, currency)


def none_if_nan(value: object) -> float | None:
    """A float, or None for every kind of missing value (None, pd.NA, NaN) the frames hold."""
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def signed_money(value: object, currency: str = DEFAULT_CURRENCY) -> str:
    """A week-over-week change: '+$12,500', '−$3,100' (a real minus sign), '–' when none."""
    number = none_if_nan(value)
    if number is None:
        return "–"
    if number == 0:
        return f"{currency}0"
    return ("+" if number > 0 else "") + format_money(number, currency)


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
    currency: str = DEFAULT_CURRENCY

    @property
    def display(self) -> str:
        return format_value(self.value, self.kind, self.currency)

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


def direction_words(description: str, direction: str) -> str:
    """Which way a driver pushes risk, in words: 'lower active users raises risk'.

    `direction` is `analysis.effect_direction`'s verdict (higher, lower, or anything else
    for no simple relation); a driver's size alone does not tell a VP what to watch for.
    """
    lowered = lower_first(description)
    if direction == "higher":
        return f"higher {lowered} raises risk"
    if direction == "lower":
        return f"lower {lowered} raises risk"
    return f"{lowered}: no simple more-or-less effect"


def week_change(
    latest: float | None,
    previous: float | None,
    *,
    previous_week: str | None = None,
    currency: str = DEFAULT_CURRENCY,
) -> str:
    """The change of ARR at risk since last week in words, or 'no earlier week' honestly.

    'up $12,300 (+4.1%) since 2026-11-09'; 'down ...'; 'unchanged since ...'. Without an
    earlier scored week (a first run, or trend.csv of one week) it says so instead of
    inventing a zero change.
    """
    now, before = none_if_nan(latest), none_if_nan(previous)
    if now is None or before is None:
        return "no earlier week to compare with"
    since = f"since {previous_week}" if previous_week else "since last week"
    delta = now - before
    if round(delta) == 0:
        return f"unchanged {since}"
    way = "up" if delta > 0 else "down"
    share = f" ({delta / before:+,.1%})".replace("-", "−") if before > 0 else ""
    return f"{way} {format_money(abs(delta), currency)}{share} {since}"


#: A scoring warning's kind, glossed in plain words (the score stage writes the message).
WARNING_GLOSS = {
    "drift": "Data shift: a signal's values this week differ from what the model was trained "
    "on (measured by PSI, the population stability index: above 0.25 is a large shift), so "
    "its scores lean on less familiar data",
    "stale": "Stale data: a source table has had no new rows for a while, so recent changes "
    "are missing from the scores",
    "empty": "Missing data: a source table is empty, so its signals say nothing this week",
}


def warning_title(kind: object) -> str:
    """The plain heading shown before a scoring warning's message."""
    return WARNING_GLOSS.get(str(kind), f"Note ({kind})")


def precision_note(
    model: float | None, backtest: float | None, *, capacity: int | None, rank_by: str | None
) -> str | None:
    """One definition of precision and why the page's two precision figures differ.

    The evaluate stage takes each CSM's top `capacity` test accounts by churn probability at
    each (monthly) snapshot; the backtest replays the real weekly lists, ranked as they are
    (by `rank_by`), and pools every listed week. Same definition, two different lists: a
    reader seeing 40% and 30% must not think one of them is wrong.
    """
    model, backtest = none_if_nan(model), none_if_nan(backtest)
    if model is None and backtest is None:
        return None
    k = f"top {capacity}" if capacity else "top accounts"
    text = (
        "Precision means one thing on this page: of the accounts put on a CSM's list, the share "
        "that churned at their renewal."
    )
    if model is not None:
        text += (
            f" On the test period, taking each CSM's {k} accounts by churn probability at each "
            f"snapshot, it is {format_value(model, 'share')}."
        )
    if backtest is not None:
        order = (
            "expected ARR at risk (large accounts first)"
            if rank_by == "expected_arr_at_risk"
            else "churn probability"
        )
        text += (
            f" Replaying the weekly lists as CSMs get them (ranked by {order}, every week "
            f"counted), it is {format_value(backtest, 'share')}."
        )
    if model is not None and backtest is not None:
        text += (
            " The two differ because the lists differ: ranking by revenue at stake puts some "
            "large, less likely accounts on the list, and an account that stays listed for "
            "several weeks counts once per week in the replay."
            if rank_by == "expected_arr_at_risk"
            else " The two differ because the replay counts an account once for every week it "
            "stays listed, and its weeks are not the test snapshots."
        )
    return text


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
            f"This model is not reliably better than chance: its ranking quality (ROC-AUC) on the "
            f"test period "
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
    text = (
        "On the test period the model's ranking quality (ROC-AUC: the chance that it ranks an "
        f"account that churned above one that renewed; 0.5 is a coin flip) is {model:.3f}"
    )
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
            f"score (ranking quality, ROC-AUC, {float(model):.3f} against {float(health):.3f}): "
            "use its lists "
            "alongside the health score, not instead of it."
        )
    for key, rows in sorted(metrics.items()):
        if key.startswith("segment_") and key.endswith("_rows") and rows < MIN_SEGMENT_TEST_ROWS:
            segment = key[len("segment_") : -len("_rows")]
            limits.append(
                f"Only {rows:.0f} test rows for the {group_name(segment)} segment: its ranking "
                "quality (ROC-AUC) is uncertain."
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
            title = warning_title(warning.get("kind", "note"))
            limits.append(f"{title}. {warning['message']}")
    return limits


CANDIDATE_NAMES = {
    "lightgbm": "LightGBM",
    "logistic": "logistic regression",
    "blend": "blend of the two",
}
METRIC_NAMES = {
    "pr_auc": "PR-AUC (how well churners are ranked at the top)",
    "roc_auc": "ROC-AUC (ranking quality: the chance a churner is ranked above a renewal)",
    "log_loss": "log loss (how close the probabilities are to what happened)",
}


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
