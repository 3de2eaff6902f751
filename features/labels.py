"""The label view: `churned` at each snapshot, by the shared rule in `pipeline.core.labels`.

churned = 1 when the current term ends at r without renewal, 0 when it renews. Defined only
when r is within the horizon after t and r + grace has passed by the data's as-of date:
renewed (a following contract that starts by r + grace and runs past r) or churned (none).
Otherwise empty: censored, never 'retained'. An early renewal is not used before r + grace
either: churn cannot be known that early, so labelling the renewals alone would make the
latest periods look healthier than they were. `LabelRule` writes the horizon and decision
tests, so the purge and the backtest censor by the very same rule.
"""

from __future__ import annotations

from features.base import FeatureSettings, Statement
from features.sql import day_of_date


def label_statement(settings: FeatureSettings) -> Statement:
    """One row per account and snapshot with `churned` (NULL when censored)."""
    rule = settings.label_rule
    in_horizon = rule.in_horizon_sql("s.renewal_day", "s.snap_day")
    decided = rule.decided_sql("s.renewal_day", settings.as_of_day)
    return Statement(
        "labels",
        f"""
        SELECT s.account_id, s.snapshot_date,
               CASE
                   WHEN NOT {in_horizon} THEN NULL
                   WHEN NOT {decided} THEN NULL
                   WHEN MIN(c.start_day) IS NOT NULL THEN 0
                   ELSE 1
               END AS churned
        FROM snap AS s
        LEFT JOIN (
            SELECT account_id, contract_id,
                   {day_of_date("start_date")} AS start_day,
                   {day_of_date("end_date")} AS end_day
            FROM contracts
        ) AS c
          ON c.account_id = s.account_id AND c.contract_id <> s.contract_id
         AND c.start_day >= s.snap_day AND c.start_day <= s.renewal_day + {rule.grace_days}
         AND c.end_day > s.renewal_day
        GROUP BY s.account_id, s.snapshot_date, s.renewal_day, s.snap_day
        """,
        alias="lb",
    )
