"""How a CSM's list is ranked: own accounts only, at or above the risk floor, most urgent value
at risk first, cut at capacity; and the short "watch" section below the floor.

One ranking for the real weekly lists (score) and for their replay over the test period
(backtest), so the backtest measures the lists CSMs actually get: both go through
`action_ranks`, with the same floor and the same priority.

The rule, in order:
1. priority = the `rank_by` column (expected ARR at risk, or probability) x an urgency weight
   of the days to renewal (`urgency_weight`): a B2B customer churns at a renewal, and the
   decision is taken in the months before it, so of two accounts with the same value at risk
   the one renewing sooner is the one an hour helps now.
2. An action list holds only accounts whose probability is at or above the action floor (the
   start of the `score.action_floor` risk band): a low-risk account never takes a slot while
   a riskier one waits, whatever its ARR.
3. Within each list: priority descending, missing last, ties broken by account_id, cut at
   capacity. The same input gives the same lists in any row order.
4. Below the floor, a few accounts per CSM that are moving (risk rose since last week) or
   renewing soon go to a "watch" section (`watch_ranks`), never to the action list.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.config import UrgencySettings
from pipeline.core.errors import ListError
from pipeline.core.labels import LABEL

RANK_BY = ("expected_arr_at_risk", "probability")
FLOOR_BANDS = ("high", "medium", "low")
SCORED_COLUMNS = ["account_id", "snapshot_date", "csm_id", "arr", "renewal_date", LABEL]
LISTED_COLUMNS = [
    "snapshot_date",
    "csm_id",
    "rank",
    "account_id",
    "probability",
    "arr",
    "expected_arr_at_risk",
    "priority",
    "renewal_date",
    LABEL,
]
#: Urgency switched off: priority is the rank_by column itself.
NO_URGENCY = UrgencySettings(enabled=False)


def _check_ranking(capacity: int, rank_by: str) -> None:
    if rank_by not in RANK_BY:
        raise ListError(f"rank_by must be one of {list(RANK_BY)}, not {rank_by!r}")
    _check_capacity(capacity, "capacity", minimum=1)


def _check_capacity(capacity: int, name: str, *, minimum: int) -> None:
    if (
        isinstance(capacity, bool)
        or not isinstance(capacity, int | np.integer)
        or capacity < minimum
    ):
        kind = "a positive" if minimum else "a non-negative"
        raise ListError(f"{name} must be {kind} whole number of accounts, not {capacity!r}")


def _check_floor(floor: float) -> None:
    if not 0.0 <= floor <= 1.0:
        raise ListError(f"floor must be a probability between 0 and 1, not {floor!r}")


def floor_probability(action_floor: str, *, high: float, medium: float) -> float:
    """The probability at which the action floor's risk band starts (0 for "low": every
    account). Tied to the risk bands, so the list and the band column never disagree."""
    if action_floor not in FLOOR_BANDS:
        raise ListError(f"action_floor must be one of {list(FLOOR_BANDS)}, not {action_floor!r}")
    return {"high": high, "medium": medium, "low": 0.0}[action_floor]


# --- priority --------------------------------------------------------------------------------


def urgency_weight(days_to_renewal: object, urgency: UrgencySettings) -> np.ndarray:
    """The weight of each renewal's nearness: 1 within `horizon_days` (or already past), then
    floor + (1 - floor) x 0.5 ** ((days - horizon) / half_life).

    Bounded in [floor, 1] with floor > 0, so a far renewal is ranked lower but never zeroed
    out (a large account at high risk renewing next year still lists); continuous at the
    horizon and non-increasing in the days, so a sooner renewal never weighs less. An
    unknown renewal date weighs the floor: urgency only ever lifts a renewal known to be
    near. Switched off (`enabled: false`), every weight is 1.
    """
    days = np.asarray(pd.Series(days_to_renewal, dtype="Float64").to_numpy(float, na_value=np.nan))
    if not urgency.enabled:
        return np.ones(len(days))
    beyond = np.clip(days - urgency.horizon_days, 0.0, None)
    weight = urgency.floor + (1.0 - urgency.floor) * np.exp2(-beyond / urgency.half_life_days)
    return np.where(np.isnan(days), urgency.floor, weight)


def days_to_renewal(scored: pd.DataFrame) -> pd.Series:
    """Whole days from each row's snapshot_date to its renewal_date (empty when unknown)."""
    renewal = pd.to_datetime(scored["renewal_date"])
    snapshot = pd.to_datetime(scored["snapshot_date"])
    return (renewal - snapshot).dt.days.astype("Int64")


def with_priority(scored: pd.DataFrame, *, rank_by: str, urgency: UrgencySettings) -> pd.DataFrame:
    """`scored` with `priority` = its `rank_by` column x the urgency weight of the days from
    snapshot_date to renewal_date: the value every list is ranked by."""
    if rank_by not in RANK_BY:
        raise ListError(f"rank_by must be one of {list(RANK_BY)}, not {rank_by!r}")
    weight = urgency_weight(days_to_renewal(scored), urgency)
    value = scored[rank_by].astype("float64").to_numpy()
    return scored.assign(priority=value * weight)


# --- action lists ----------------------------------------------------------------------------


def list_ranks(
    scored: pd.DataFrame,
    *,
    group: list[str],
    capacity: int,
    by: str = "priority",
    unassigned: bool = False,
) -> pd.Series:
    """Each row's rank on its list (1 = top), empty when it is not on one.

    Lists are the groups of `group` (csm_id, or snapshot_date and csm_id). Rows without a CSM
    form one more list, the unassigned one, when `unassigned` is set, else they are on none.
    Within a list: `by` descending, missing values last, ties broken by account_id, so the
    same input always gives the same lists, in any row order.
    """
    _check_capacity(capacity, "capacity", minimum=1)
    owned = scored if unassigned else scored[scored["csm_id"].notna()]
    ranked = owned.sort_values(
        [*group, by, "account_id"],
        ascending=[True] * len(group) + [False, True],
        na_position="last",
        kind="stable",
    )
    rank = ranked.groupby(group, sort=False, dropna=False).cumcount() + 1
    rank = rank[rank <= capacity].astype("int64")
    return rank.reindex(scored.index).astype("Int64")


def _at_or_above(scored: pd.DataFrame, floor: float) -> np.ndarray:
    return scored["probability"].ge(floor).fillna(False).to_numpy(dtype=bool)


def action_ranks(
    scored: pd.DataFrame, *, group: list[str], capacity: int, floor: float, unassigned: bool
) -> pd.Series:
    """The one ranking of action lists: accounts at or above `floor` only, by priority.

    `scored` needs account_id, csm_id, probability and priority. Both the weekly lists and the
    backtest's replay call this, so the two can never rank differently.
    """
    _check_floor(floor)
    if "priority" not in scored.columns:
        raise ListError("scored frame has no priority column (see with_priority)")
    eligible = scored[_at_or_above(scored, floor)]
    ranks = list_ranks(eligible, group=group, capacity=capacity, unassigned=unassigned)
    return ranks.reindex(scored.index).astype("Int64")


def rank_lists(scored: pd.DataFrame, *, capacity: int, floor: float) -> pd.Series:
    """This week's rank of each account on its list (1 = top), empty when not listed.

    `scored` holds one row per account with account_id, csm_id (empty: no known CSM),
    probability and priority (`with_priority`). Accounts below `floor` (score.action_floor)
    need no action and are on no list. Accounts without a known CSM are ranked on the
    unassigned list, so they are never dropped from the week's view. The floor has no
    default: every caller states it, so no list is ever built without it.
    """
    if scored["account_id"].duplicated().any():
        raise ListError("scored accounts hold duplicate account_id values")
    ranks = action_ranks(scored, group=["csm_id"], capacity=capacity, floor=floor, unassigned=True)
    return ranks.rename("list_rank")


# --- the watch section -----------------------------------------------------------------------


def watch_ranks(
    scored: pd.DataFrame,
    *,
    capacity: int,
    floor: float,
    change_threshold: float,
    renewal_window_days: int,
) -> pd.Series:
    """Each account's rank on its CSM's watch section (1 = top), empty when not on it.

    Accounts below the action floor need no play this week, but a CSM wants to see the few
    that are moving: those whose churn probability rose by at least `change_threshold` since
    last week, or that renew within `renewal_window_days` (the renewal flag's window). At
    most `capacity` of them per CSM (the unassigned book is one more group), by priority,
    ties by account_id; capacity 0 switches the section off. An account on an action list,
    at or above the floor, or held by a mark (`mark_hold`: addressed or snoozed) is never
    on watch. `scored` needs account_id, csm_id, probability, priority, probability_change
    (empty: not scored last week), days_to_renewal and list_rank; mark_hold is optional.
    """
    _check_capacity(capacity, "watch capacity", minimum=0)
    _check_floor(floor)
    out = pd.Series(pd.NA, index=scored.index, dtype="Int64", name="watch_rank")
    if capacity == 0 or scored.empty:
        return out
    below = ~_at_or_above(scored, floor) & scored["probability"].notna().to_numpy()
    unlisted = scored["list_rank"].isna().to_numpy()
    held = (
        scored["mark_hold"].fillna(False).to_numpy(dtype=bool)
        if "mark_hold" in scored.columns
        else np.zeros(len(scored), dtype=bool)
    )
    rose = (
        scored["probability_change"].astype("Float64").ge(change_threshold).fillna(False)
    ).to_numpy(dtype=bool)
    soon = (
        scored["days_to_renewal"].astype("Float64").le(renewal_window_days).fillna(False)
    ).to_numpy(dtype=bool)
    candidates = scored[below & unlisted & ~held & (rose | soon)]
    if candidates.empty:
        return out
    ranks = list_ranks(candidates, group=["csm_id"], capacity=capacity, unassigned=True)
    return ranks.reindex(scored.index).astype("Int64").rename("watch_rank")


# --- the rule in words and figures -----------------------------------------------------------


def ranking_rule(
    *,
    rank_by: str,
    action_floor: str,
    floor: float,
    urgency: UrgencySettings,
    capacity: int,
    watch_per_csm: int,
    change_threshold: float,
    renewal_window_days: int,
) -> dict:
    """The ranking rule, machine-readable (for the manifest) with a one-sentence summary a
    page can show as is, so "why is this account above that one" has an answer on the page."""
    value = "expected ARR at risk" if rank_by == "expected_arr_at_risk" else "churn risk"
    if action_floor == "low":
        who = "every account"
    else:
        who = f"accounts at {action_floor} risk or above (churn risk {100 * floor:.0f}% or more)"
    if urgency.enabled and urgency.floor < 1.0:
        order = (
            f"{value} weighted by how soon the renewal is (full weight within "
            f"{urgency.horizon_days} days, falling to {urgency.floor:g} for renewals far off)"
        )
    else:
        order = value
    summary = f"Up to {capacity} {who}, ranked by {order}."
    if watch_per_csm and action_floor != "low":
        summary += (
            f" Below that, up to {watch_per_csm} to watch: risk up {100 * change_threshold:.0f}"
            f" points or more since last week, or renewing within {renewal_window_days} days."
        )
    return {
        "rank_by": rank_by,
        "order_by": "priority",
        "action_floor": action_floor,
        "floor_probability": floor,
        "urgency": urgency.model_dump(),
        "capacity_per_csm": capacity,
        "watch_per_csm": watch_per_csm,
        "watch_change_threshold": change_threshold,
        "watch_renewal_window_days": renewal_window_days,
        "summary": summary,
    }


# --- the backtest's replay -------------------------------------------------------------------


def check_scored(scored: pd.DataFrame) -> None:
    """A weekly scored frame: the columns lists need, one row per account and week."""
    needed = [*SCORED_COLUMNS, "probability", "expected_arr_at_risk"]
    missing = [c for c in needed if c not in scored.columns]
    if missing:
        raise ListError(f"scored frame lacks columns {missing}")
    if scored.duplicated(["account_id", "snapshot_date"]).any():
        raise ListError("scored frame has more than one row per account and week")


def weekly_lists(
    scored: pd.DataFrame,
    *,
    capacity: int,
    rank_by: str,
    floor: float,
    urgency: UrgencySettings,
) -> pd.DataFrame:
    """Each CSM's list per week (the backtest's replay): one row per listed account with
    snapshot_date, csm_id, rank (1 = top), priority and the scored columns.

    Ranked exactly as the weekly lists are (`action_ranks`: the floor, then priority from
    rank_by and urgency); accounts without a CSM are on no replayed list (nobody would
    have acted on them). The floor and urgency have no defaults, like `rank_lists`.
    """
    _check_ranking(capacity, rank_by)
    check_scored(scored)
    prioritised = with_priority(scored, rank_by=rank_by, urgency=urgency)
    ranks = action_ranks(
        prioritised,
        group=["snapshot_date", "csm_id"],
        capacity=capacity,
        floor=floor,
        unassigned=False,
    )
    listed = prioritised.assign(rank=ranks)[ranks.notna().to_numpy()]
    listed = listed.assign(rank=listed["rank"].astype("int64"))
    listed = listed.sort_values(["snapshot_date", "csm_id", "rank"], kind="stable")
    return listed[LISTED_COLUMNS].reset_index(drop=True)
