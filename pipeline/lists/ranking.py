"""How a CSM's list is ranked: own accounts only, highest risk first, cut at capacity.

One ranking for the real weekly lists (score) and for their replay over the test period
(backtest), so the backtest measures the lists CSMs actually get.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.core.errors import ListError
from pipeline.core.labels import LABEL

RANK_BY = ("expected_arr_at_risk", "probability")
SCORED_COLUMNS = ["account_id", "snapshot_date", "csm_id", "arr", "renewal_date", LABEL]
LISTED_COLUMNS = [
    "snapshot_date",
    "csm_id",
    "rank",
    "account_id",
    "probability",
    "arr",
    "expected_arr_at_risk",
    "renewal_date",
    LABEL,
]


def _check_ranking(capacity: int, rank_by: str) -> None:
    if rank_by not in RANK_BY:
        raise ListError(f"rank_by must be one of {list(RANK_BY)}, not {rank_by!r}")
    if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 1:
        raise ListError(f"capacity must be a positive whole number of accounts, not {capacity!r}")


def list_ranks(
    scored: pd.DataFrame,
    *,
    group: list[str],
    capacity: int,
    rank_by: str,
    unassigned: bool = False,
) -> pd.Series:
    """Each row's rank on its list (1 = top), empty when it is not on one.

    Lists are the groups of `group` (csm_id, or snapshot_date and csm_id). Rows without a CSM
    form one more list, the unassigned one, when `unassigned` is set, else they are on none.
    Within a list: `rank_by` descending, missing scores last, ties broken by account_id, so the
    same input always gives the same lists, in any row order.
    """
    _check_ranking(capacity, rank_by)
    owned = scored if unassigned else scored[scored["csm_id"].notna()]
    ranked = owned.sort_values(
        [*group, rank_by, "account_id"],
        ascending=[True] * len(group) + [False, True],
        na_position="last",
        kind="stable",
    )
    rank = ranked.groupby(group, sort=False, dropna=False).cumcount() + 1
    rank = rank[rank <= capacity].astype("int64")
    return rank.reindex(scored.index).astype("Int64")


def rank_lists(
    scored: pd.DataFrame, *, capacity: int, rank_by: str, floor: float = 0.0
) -> pd.Series:
    """This week's rank of each account on its list (1 = top), empty when not listed.

    `scored` holds one row per account with account_id, csm_id (empty: no known CSM), the
    `rank_by` column and probability. An action list holds only accounts that need action:
    those whose probability is at or above `floor` (score.action_floor), so a low-risk
    account never takes a slot while a riskier one waits; the rest are on no list. Accounts
    without a known CSM are ranked on the unassigned list, so they are never dropped from the
    week's view.
    """
    if scored["account_id"].duplicated().any():
        raise ListError("scored accounts hold duplicate account_id values")
    if not 0.0 <= floor <= 1.0:
        raise ListError(f"floor must be a probability between 0 and 1, not {floor!r}")
    eligible = scored[scored["probability"].ge(floor).fillna(False).to_numpy(dtype=bool)]
    ranks = list_ranks(
        eligible, group=["csm_id"], capacity=capacity, rank_by=rank_by, unassigned=True
    )
    return ranks.reindex(scored.index).astype("Int64").rename("list_rank")


def check_scored(scored: pd.DataFrame) -> None:
    """A weekly scored frame: the columns lists need, one row per account and week."""
    needed = [*SCORED_COLUMNS, "probability", "expected_arr_at_risk"]
    missing = [c for c in needed if c not in scored.columns]
    if missing:
        raise ListError(f"scored frame lacks columns {missing}")
    if scored.duplicated(["account_id", "snapshot_date"]).any():
        raise ListError("scored frame has more than one row per account and week")


def weekly_lists(scored: pd.DataFrame, *, capacity: int, rank_by: str) -> pd.DataFrame:
    """Each CSM's list per week (the backtest's replay): one row per listed account with
    snapshot_date, csm_id, rank (1 = top) and the scored columns."""
    _check_ranking(capacity, rank_by)
    check_scored(scored)
    ranks = list_ranks(
        scored, group=["snapshot_date", "csm_id"], capacity=capacity, rank_by=rank_by
    )
    listed = scored.assign(rank=ranks)[ranks.notna().to_numpy()]
    listed = listed.assign(rank=listed["rank"].astype("int64"))
    listed = listed.sort_values(["snapshot_date", "csm_id", "rank"], kind="stable")
    return listed[LISTED_COLUMNS].reset_index(drop=True)
