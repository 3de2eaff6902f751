"""Contract and commercial: the current term from the snapshot row, and the contract history.

Everything here reads required tables (accounts, contracts), so the family is always present.
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.plays import PLAYS
from features.sql import day_of_date, double

# The mean month length of the Gregorian calendar, in days.
DAYS_PER_MONTH = 30.4375


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
    """Contract history before the current term: renewals so far and the last ARR change."""
    history = Statement(
        "f_commercial",
        f"""
        SELECT s.account_id, s.snapshot_date,
               COUNT(c.contract_id) AS prior_renewals,
               MAX_BY(c.arr, c.start_day * 1000000 + c.end_day) AS previous_arr
        FROM snap AS s
        LEFT JOIN (
            SELECT account_id, contract_id, arr,
                   {day_of_date("start_date")} AS start_day,
                   {day_of_date("end_date")} AS end_day
            FROM contracts
        ) AS c ON c.account_id = s.account_id AND c.start_day < s.start_day
        GROUP BY s.account_id, s.snapshot_date
        """,
        alias="cm",
    )
    return [history]


def _fixed(settings: DeclarationSettings) -> list[Feature]:
    return [
        Feature(
            name="arr",
            family="commercial",
            description="Annual recurring revenue",
            unit="ARR",
            dtype="float",
            direction="neither",
            actionable=False,
            play=PLAYS["none"],
            sql="s.arr",
        ),
        Feature(
            name="seats",
            family="commercial",
            description="Purchased seats",
            unit="seats",
            dtype="int",
            direction="neither",
            actionable=False,
            play=PLAYS["none"],
            sql="s.seats",
        ),
        Feature(
            name="segment",
            family="commercial",
            description="Customer segment",
            unit="",
            dtype="category",
            direction="neither",
            actionable=False,
            play=PLAYS["none"],
            sql="s.segment",
        ),
        Feature(
            name="plan",
            family="commercial",
            description="Plan",
            unit="",
            dtype="category",
            direction="neither",
            actionable=False,
            play=PLAYS["none"],
            sql="s.plan",
        ),
        Feature(
            name="term_months",
            family="commercial",
            description="Length of the current term",
            unit="months",
            dtype="int",
            direction="neither",
            actionable=False,
            play=PLAYS["none"],
            sql="CAST(ROUND(CAST(s.renewal_day - s.start_day AS DOUBLE)"
            f" / {double(DAYS_PER_MONTH)}) AS BIGINT)",
        ),
        Feature(
            name="days_to_renewal",
            family="commercial",
            description="Days until the renewal date",
            unit="days",
            dtype="int",
            direction="neither",
            actionable=False,
            play=PLAYS["renewal"],
            sql="s.renewal_day - s.snap_day",
        ),
        Feature(
            name="prior_renewals",
            family="commercial",
            description="Renewals so far",
            unit="renewals",
            dtype="int",
            direction="lower_is_riskier",
            actionable=False,
            play=PLAYS["none"],
            sql="cm.prior_renewals",
        ),
        Feature(
            name="arr_change_last_renewal",
            family="commercial",
            description="ARR change at the last renewal",
            unit="share",
            dtype="float",
            direction="lower_is_riskier",
            actionable=False,
            play=PLAYS["renewal"],
            when_missing="no renewal yet (first term)",
            sql="CASE WHEN cm.previous_arr IS NULL OR cm.previous_arr = 0 THEN NULL"
            " ELSE s.arr / cm.previous_arr - 1 END",
        ),
    ]


FAMILY = FeatureFamily(
    name="commercial",
    title="Contract and commercial",
    views=_views,
    fixed=_fixed,
)
