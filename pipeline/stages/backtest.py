"""Backtest stage: replay the weekly CSM lists over the model's test period.

Offline metrics score every test row; a CSM only ever sees the top k of *their* accounts each
Monday. This stage rebuilds those lists week by week from point-in-time features, then asks
what a CS team would ask of them: how many listed accounts really churned (precision at
capacity), how much churned ARR showed up on a list early enough to act (lead time), and how
much the list changes from one week to the next (stability).

Layout: pure core functions over frames (`scored_frame`, `weekly_lists`, `weekly_figures`,
`backtest_metrics`) and one I/O edge (`run_backtest`).

Conventions:
- A week is a snapshot date (a Monday); features at that date use only data before it.
- Labels are the feature table's `churned`: 1 if the current term ends in churn within the
  label horizon, 0 if it renews, empty when the outcome is not known (censored). Renewals
  later than the as-of date minus the grace period are censored as well, whichever way they
  went (`pipeline.core.labels.censor_undecided`). Censored rows are still ranked and listed
  (a CSM would have seen them) but left out of precision and recall, numerator and
  denominator alike; their number is reported.
- CSM ownership is today's (accounts.parquet has no history); accounts without a CSM are on no
  list but still count as missed churn in recall.
- Lists are the weekly lists' ranking (`pipeline.lists.ranking.weekly_lists`): the same action
  floor (score.action_floor and score.risk_bands), the same priority (score.rank_by x
  score.urgency), the same capacity. CSMs' marks are not replayed: the marks log is not an
  input of this stage, so the replay measures the lists before any account was held.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path, write_json
from pipeline.core.config import Config
from pipeline.core.errors import BacktestError
from pipeline.core.labels import LABEL, censor_undecided
from pipeline.feature_engine.build import (
    compute_features,
    feature_settings,
    read_present_tables,
    snapshot_dates,
)
from pipeline.feature_engine.vocabulary import Vocabulary
from pipeline.lists.ranking import SCORED_COLUMNS, check_scored, floor_probability, weekly_lists
from pipeline.modeling.split import Split
from pipeline.modeling.store import load_model

log = logging.getLogger(__name__)

WEEKLY_COLUMNS = [
    "week",
    "precision_at_capacity",
    "listed",
    "jaccard_vs_previous",
    "new_entries",
    "listed_labelled",
    "listed_churned",
    "recall_at_capacity",
]


# --- core ------------------------------------------------------------------------------------


def scored_frame(
    table: pd.DataFrame, probability: np.ndarray, accounts: pd.DataFrame
) -> pd.DataFrame:
    """One row per account and week: the model's probability, ARR, owner, renewal and label.

    `table` is the weekly feature table, `probability` the model's calibrated churn probability
    for each of its rows (same order), `accounts` the ownership table (account_id, csm_id).
    """
    probability = np.asarray(probability, dtype=float)
    if len(probability) != len(table):
        raise BacktestError(
            f"{len(probability)} probabilities for {len(table)} feature rows: they must match"
        )
    missing = [
        c
        for c in ("account_id", "snapshot_date", "arr", "renewal_date", LABEL)
        if c not in table.columns
    ]
    if missing:
        raise BacktestError(f"feature table lacks columns {missing}")
    owners = accounts[["account_id", "csm_id"]].astype({"account_id": "string"})
    if owners["account_id"].duplicated().any():
        raise BacktestError("accounts table has duplicate account_id values")
    out = table[["account_id", "snapshot_date", "arr", "renewal_date", LABEL]].astype(
        {"account_id": "string", "arr": "float64", LABEL: "Float64"}
    )
    out = out.merge(owners, on="account_id", how="left", validate="many_to_one")
    out["csm_id"] = out["csm_id"].astype("string")
    out["probability"] = probability
    out["expected_arr_at_risk"] = out["probability"] * out["arr"]
    return out[[*SCORED_COLUMNS, "probability", "expected_arr_at_risk"]]


def _list_sets(lists: pd.DataFrame) -> dict[tuple, frozenset]:
    """(csm_id, week) -> the accounts on that list."""
    return {
        (csm, week): frozenset(group["account_id"])
        for (csm, week), group in lists.groupby(["csm_id", "snapshot_date"], sort=True)
    }


def list_changes(lists: pd.DataFrame, weeks: list) -> pd.DataFrame:
    """Week-over-week change of each CSM's list: Jaccard with the previous week, new entries.

    One row per CSM and replay week after the first. A CSM with no list in a week (no active
    accounts) has an empty list; a pair of empty lists has no Jaccard (left empty) and no
    new-entries figure.
    """
    sets = _list_sets(lists)
    csms = sorted(lists["csm_id"].dropna().unique())
    rows = []
    for csm in csms:
        for previous, week in itertools.pairwise(weeks):
            before = sets.get((csm, previous), frozenset())
            now = sets.get((csm, week), frozenset())
            union = before | now
            rows.append(
                {
                    "csm_id": csm,
                    "snapshot_date": week,
                    "jaccard": len(before & now) / len(union) if union else math.nan,
                    "new_entries": float(len(now - before)) if now else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=["csm_id", "snapshot_date", "jaccard", "new_entries"])


def _weeks(scored: pd.DataFrame) -> list:
    return sorted(scored["snapshot_date"].unique())


def _hits(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(labelled, churned) masks; censored rows are neither."""
    label = frame[LABEL].astype("Float64")
    return label.notna(), (label == 1).fillna(False).astype(bool)


def weekly_figures(lists: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """One row per replay week: precision and recall at capacity, list size and stability.

    precision_at_capacity: churned / labelled among that week's listed rows (empty if none is
    labelled). jaccard_vs_previous and new_entries: means over CSMs of the list's Jaccard with
    the CSM's previous-week list and of its accounts not on that list (empty in week one).
    """
    weeks = _weeks(scored)
    labelled, churned = _hits(lists)
    listed = lists.assign(labelled=labelled, churned_hit=churned)
    per_week = listed.groupby("snapshot_date").agg(
        listed=("account_id", "size"),
        listed_labelled=("labelled", "sum"),
        listed_churned=("churned_hit", "sum"),
    )
    _, all_churned = _hits(scored)
    churned_rows = all_churned.groupby(scored["snapshot_date"]).sum()
    changes = list_changes(lists, weeks).groupby("snapshot_date")[["jaccard", "new_entries"]]
    stability = changes.mean()
    out = pd.DataFrame({"week": weeks})
    out = out.join(per_week, on="week").join(stability, on="week")
    out[["listed", "listed_labelled", "listed_churned"]] = (
        out[["listed", "listed_labelled", "listed_churned"]].fillna(0).astype("int64")
    )
    out["precision_at_capacity"] = out["listed_churned"] / out["listed_labelled"].where(
        out["listed_labelled"] > 0
    )
    out["recall_at_capacity"] = out["listed_churned"] / (
        out["week"].map(churned_rows).astype(float).where(lambda s: s > 0)
    )
    out = out.rename(columns={"jaccard": "jaccard_vs_previous"})
    return out.reindex(columns=WEEKLY_COLUMNS)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The smallest value at which the cumulative weight reaches half the total (NaN if none)."""
    values, weights = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    if len(values) == 0 or weights.sum() <= 0:
        return math.nan
    order = np.lexsort((values,))
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def churn_warnings(lists: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """Every churned renewal in the replay window and the warning the lists gave it.

    A churn event is an (account, renewal date) with `churned` == 1 whose renewal falls
    between the first and last replay week; its ARR is the term's ARR at its last snapshot.
    It was flagged if the account sat on its CSM's list in a week on or before that renewal
    (and after any earlier churn of the same account): a list from an earlier term counts, so
    a monthly contract can be flagged months ahead. warning_days = renewal date - first week
    flagged (empty when never flagged).
    """
    weeks = _weeks(scored)
    _, churned = _hits(scored)
    events = scored[churned]
    if weeks:
        in_window = (events["renewal_date"] >= weeks[0]) & (events["renewal_date"] <= weeks[-1])
        events = events[in_window]
    events = (
        events.sort_values(["account_id", "renewal_date", "snapshot_date"], kind="stable")
        .groupby(["account_id", "renewal_date"], sort=True)
        .agg(arr=("arr", "last"), csm_id=("csm_id", "last"))
        .reset_index()
    )
    previous = events.groupby("account_id")["renewal_date"].shift(1)
    events = events.assign(previous_churn=previous)
    flags = events[["account_id", "renewal_date", "previous_churn"]].merge(
        lists[["account_id", "snapshot_date"]], on="account_id", how="inner"
    )
    before = flags["snapshot_date"] <= flags["renewal_date"]
    after_previous = flags["previous_churn"].isna() | (
        flags["snapshot_date"] > flags["previous_churn"]
    )
    first_flag = (
        flags[before & after_previous]
        .groupby(["account_id", "renewal_date"], sort=True)["snapshot_date"]
        .min()
        .rename("first_flagged")
        .reset_index()
    )
    out = events.drop(columns="previous_churn").merge(
        first_flag, on=["account_id", "renewal_date"], how="left"
    )
    flagged = out["first_flagged"].notna()
    days = pd.Series(np.nan, index=out.index)
    days[flagged] = (
        pd.to_datetime(out.loc[flagged, "renewal_date"])
        - pd.to_datetime(out.loc[flagged, "first_flagged"])
    ).dt.days.astype(float)
    return out.assign(warning_days=days)


def backtest_metrics(
    lists: pd.DataFrame, scored: pd.DataFrame, *, lead_days: int
) -> dict[str, float]:
    """The replay's figures as a flat dict (keys prefixed `backtest_`).

    - precision_at_capacity: churned / labelled over all listed rows of all weeks (pooled);
      recall_at_capacity: listed churned rows / all churned rows (censored rows in neither).
    - lead_time_arr_share: of the ARR that churned at a renewal within the replay window, the
      share on its CSM's list at least once `lead_days` or more before the renewal.
      lead_time_arr_share_eligible: the same over renewals at least `lead_days` after the first
      replay week only, which the replay could have flagged that early.
      flagged_arr_share: the share flagged at any time before its renewal.
      median_warning_days: ARR-weighted median of days from first flag to renewal, over the
      churned ARR that was flagged (median_warning_days_unweighted: over flagged renewals).
    - jaccard_week_over_week: mean over CSMs and weeks of the Jaccard index of consecutive
      lists; new_entries_per_list: mean accounts per list not on the CSM's previous list.
    - counts: weeks, CSMs with a list, listed rows (and how many of them censored), scored rows,
      rows without a CSM, churned renewals and their ARR.
    """
    if isinstance(lead_days, bool) or not isinstance(lead_days, int | np.integer) or lead_days < 0:
        raise BacktestError(f"lead_days must be a whole number of days >= 0, not {lead_days!r}")
    check_scored(scored)
    weeks = _weeks(scored)
    labelled, churned = _hits(lists)
    _, scored_churned = _hits(scored)
    hits = float(churned.sum())
    n_labelled = float(labelled.sum())

    events = churn_warnings(lists, scored)
    total_arr = float(events["arr"].sum())
    warned = events["warning_days"] >= lead_days
    eligible_from = pd.Timestamp(weeks[0]) + pd.Timedelta(days=lead_days) if weeks else None
    eligible = (
        pd.to_datetime(events["renewal_date"]) >= eligible_from
        if weeks
        else pd.Series(False, index=events.index)
    )
    eligible_arr = float(events.loc[eligible, "arr"].sum())
    flagged = events["warning_days"].notna()

    changes = list_changes(lists, weeks)

    def share(numerator: float, denominator: float) -> float:
        return numerator / denominator if denominator > 0 else math.nan

    metrics = {
        "precision_at_capacity": share(hits, n_labelled),
        "recall_at_capacity": share(hits, float(scored_churned.sum())),
        "lead_time_arr_share": share(float(events.loc[warned, "arr"].sum()), total_arr),
        "lead_time_arr_share_eligible": share(
            float(events.loc[warned & eligible, "arr"].sum()), eligible_arr
        ),
        "flagged_arr_share": share(float(events.loc[flagged, "arr"].sum()), total_arr),
        "median_warning_days": weighted_median(
            events.loc[flagged, "warning_days"].to_numpy(), events.loc[flagged, "arr"].to_numpy()
        ),
        "median_warning_days_unweighted": float(events.loc[flagged, "warning_days"].median())
        if flagged.any()
        else math.nan,
        "jaccard_week_over_week": float(changes["jaccard"].mean()),
        "new_entries_per_list": float(changes["new_entries"].mean()),
        "weeks": float(len(weeks)),
        "csms": float(lists["csm_id"].nunique()),
        "listed_rows": float(len(lists)),
        "listed_censored_rows": float(len(lists) - n_labelled),
        "scored_rows": float(len(scored)),
        "scored_labelled_rows": float(scored[LABEL].notna().sum()),
        "unassigned_rows": float(scored["csm_id"].isna().sum()),
        "churned_renewals": float(len(events)),
        "churned_renewals_eligible": float(eligible.sum()),
        "churned_arr": total_arr,
    }
    return {f"backtest_{k}": round(float(v), 6) for k, v in sorted(metrics.items())}


# --- I/O edge --------------------------------------------------------------------------------


def _json_ready(metrics: dict[str, float]) -> dict[str, float | None]:
    """NaN (a figure with nothing to measure) as null: strict JSON has no NaN."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def run_backtest(
    config: Config,
    interim_dir: Path,
    models_dir: Path,
    out_metrics: Path,
    out_weekly: Path,
) -> dict[str, float]:
    """The backtest stage's edge: weekly features over the test period, score, list, measure.

    Reads the validated tables in `interim_dir` and the model in `models_dir`; writes the
    figures (JSON, DVC metrics) to `out_metrics` and the per-week figures (CSV) to `out_weekly`.
    Lists are ranked as the score stage ranks them (the action floor, then priority from
    `score.rank_by` and `score.urgency`), at the capacity the model is evaluated at
    (`evaluate.capacity_per_csm`).
    """
    interim_dir = Path(interim_dir)
    capacity = config.evaluate.capacity_per_csm
    rank_by = config.score.rank_by
    bands = config.score.risk_bands
    floor = floor_probability(config.score.action_floor, high=bands.high, medium=bands.medium)
    lead_days = config.backtest.lead_days
    as_of = config.base.as_of_date
    tables, _ = read_present_tables(interim_dir)

    model = load_model(models_dir)
    split = Split.from_info(model.info)
    start, end = split.test_start, min(split.test_end, as_of)
    weeks = snapshot_dates(start, end, "weekly")
    if not weeks:
        raise BacktestError(f"the test period {start} to {end} holds no Monday to replay")
    log.info(
        "backtest: %d weeks from %s to %s, capacity %d, by %s, floor %.2f, urgency %s",
        len(weeks),
        weeks[0],
        weeks[-1],
        capacity,
        rank_by,
        floor,
        "on" if config.score.urgency.enabled else "off",
    )
    settings = feature_settings(
        config, interim_dir=interim_dir, vocabulary=Vocabulary.from_info(model.info)
    )
    features = compute_features(config, interim_dir, tables, weeks, settings=settings)
    table = features.table
    if table.empty:
        raise BacktestError(f"no active accounts in the weeks {weeks[0]} to {weeks[-1]}")

    accounts = pd.read_parquet(interim_dir / "accounts.parquet", columns=["account_id", "csm_id"])
    scored = scored_frame(table, model.predict(table), accounts)
    scored = censor_undecided(scored, as_of=as_of, rule=config.label_rule)
    lists = weekly_lists(
        scored, capacity=capacity, rank_by=rank_by, floor=floor, urgency=config.score.urgency
    )
    weekly = weekly_figures(lists, scored)
    metrics = backtest_metrics(lists, scored, lead_days=lead_days)

    write_json(_json_ready(metrics), Path(out_metrics))
    with atomic_path(Path(out_weekly)) as tmp:
        weekly.round(6).to_csv(tmp, index=False)
    log.info(
        "backtest: precision at capacity %.3f, churned ARR flagged %d+ days ahead %.3f, "
        "week-over-week Jaccard %.3f",
        metrics["backtest_precision_at_capacity"],
        lead_days,
        metrics["backtest_lead_time_arr_share"],
        metrics["backtest_jaccard_week_over_week"],
    )
    return metrics
