"""Product usage depth: active users, modules, advanced usage, stickiness, recency.

Reads `user_day` (usage per account, user and UTC day, built in `features.definitions`).
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.plays import PLAYS, advanced_play
from features.sql import ratio


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
    """Usage per account and snapshot, in two steps to keep the distinct counts cheap.

    Step one reduces the snapshot x user-day join to one row per account, snapshot and user
    with 0/1 flags per window; step two adds the flags up. Distinct counts over the fanned-out
    join would hash every joined row once per count.
    """
    sticky = settings.stickiness_days
    windows = sorted(set(settings.windows) | {sticky})
    flags = []
    for w in windows:
        cur = f"u.day >= s.snap_day - {w}"
        prev = f"u.day >= s.snap_day - {2 * w} AND u.day < s.snap_day - {w}"
        flags += [
            f"MAX(CASE WHEN {cur} THEN 1 ELSE 0 END) AS in_{w}d",
            f"MAX(CASE WHEN {prev} THEN 1 ELSE 0 END) AS in_prev_{w}d",
            f"BIT_OR(CASE WHEN {cur} THEN u.modules END) AS modules_{w}d",
            f"SUM(CASE WHEN {cur} THEN u.events END) AS events_{w}d",
            f"SUM(CASE WHEN {cur} THEN u.advanced_events END) AS advanced_events_{w}d",
        ]
    flags += [
        f"COUNT(CASE WHEN u.day >= s.snap_day - {sticky} THEN 1 END) AS days_{sticky}d",
        # first training completion, for training's trained_user_share (no trainings: never)
        "MAX(CASE WHEN u.first_completion_epoch < s.snap_epoch THEN 1 ELSE 0 END) AS trained",
        "MAX(u.day) AS last_day",
    ]
    per_user = Statement(
        "usage_per_user",
        f"""
        SELECT s.account_id, s.snapshot_date, u.user_id,
               {", ".join(flags)}
        FROM snap AS s
        JOIN user_day AS u
          ON u.account_id = s.account_id
         AND u.day < s.snap_day
         AND u.day >= s.snap_day - {settings.lookback_days}
        GROUP BY s.account_id, s.snapshot_date, u.user_id
        """,
    )
    user = "p.user_id IS NOT NULL"
    maxw = settings.max_window
    sums = []
    for w in windows:
        sums += [
            f"COALESCE(SUM(CASE WHEN {user} THEN p.in_{w}d END), 0) AS active_users_{w}d",
            f"COALESCE(SUM(CASE WHEN {user} THEN p.in_prev_{w}d END), 0) AS prev_active_users_{w}d",
            f"COALESCE(BIT_COUNT(BIT_OR(p.modules_{w}d)), 0) AS distinct_modules_{w}d",
            f"SUM(p.events_{w}d) AS events_{w}d",
            f"SUM(p.advanced_events_{w}d) AS advanced_events_{w}d",
        ]
    sums += [
        f"COALESCE(SUM(CASE WHEN {user} THEN p.days_{sticky}d END), 0) AS user_days_{sticky}d",
        f"COALESCE(SUM(CASE WHEN {user} AND p.in_{maxw}d = 1 THEN p.trained END), 0)"
        " AS trained_active_users",
        "MAX(p.last_day) AS last_active_day",
    ]
    usage = Statement(
        "f_usage",
        f"""
        SELECT s.account_id, s.snapshot_date,
               {", ".join(sums)}
        FROM snap AS s
        LEFT JOIN usage_per_user AS p
          ON p.account_id = s.account_id AND p.snapshot_date = s.snapshot_date
        GROUP BY s.account_id, s.snapshot_date
        """,
        alias="u",
    )
    return [per_user, usage]


def _per_window(w: int, settings: DeclarationSettings) -> list[Feature]:
    return [
        Feature(
            name=f"active_users_{w}d",
            family="usage",
            description=f"Active users in the last {w} days",
            unit="users",
            dtype="int",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["adoption"],
            window_days=w,
            sql=f"u.active_users_{w}d",
        ),
        Feature(
            name=f"active_user_share_{w}d",
            family="usage",
            description=f"Active users as a share of purchased seats, last {w} days",
            unit="share",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["adoption"],
            window_days=w,
            sql=ratio(f"u.active_users_{w}d", "s.seats"),
        ),
        Feature(
            name=f"distinct_modules_{w}d",
            family="usage",
            description=f"Product modules used in the last {w} days",
            unit="modules",
            dtype="int",
            direction="lower_is_riskier",
            actionable=True,
            play=advanced_play(settings.advanced_modules),
            window_days=w,
            sql=f"COALESCE(u.distinct_modules_{w}d, 0)",
        ),
        Feature(
            name=f"advanced_usage_share_{w}d",
            family="usage",
            description=f"Share of usage in advanced modules, last {w} days",
            unit="share",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=advanced_play(settings.advanced_modules),
            window_days=w,
            sql=ratio(f"u.advanced_events_{w}d", f"u.events_{w}d"),
        ),
        Feature(
            name=f"events_per_active_user_{w}d",
            family="usage",
            description=f"Events per active user in the last {w} days",
            unit="events",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["adoption"],
            window_days=w,
            sql=ratio(f"u.events_{w}d", f"u.active_users_{w}d"),
        ),
        Feature(
            name=f"active_users_trend_{w}d",
            family="usage",
            description=f"Change in active users, last {w} days against the {w} before",
            unit="share",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["adoption"],
            window_days=w,
            # relative change; from no users at all, the count itself
            sql=f"CAST(u.active_users_{w}d - u.prev_active_users_{w}d AS DOUBLE)"
            f" / GREATEST(u.prev_active_users_{w}d, 1)",
        ),
    ]


def _fixed(settings: DeclarationSettings) -> list[Feature]:
    sticky = settings.stickiness_days
    return [
        Feature(
            name=f"stickiness_{sticky}d",
            family="usage",
            description=f"Daily over monthly active users ({sticky} days)",
            unit="share",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["adoption"],
            sql=ratio(f"u.user_days_{sticky}d", f"u.active_users_{sticky}d * {sticky}"),
        ),
        Feature(
            name="days_since_last_activity",
            family="usage",
            description="Days since anyone used the product",
            unit="days",
            dtype="float",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["engagement"],
            # no activity in the look-back: capped one day beyond it
            sql=f"CAST(COALESCE(s.snap_day - u.last_active_day, {settings.lookback_days + 1})"
            " AS DOUBLE)",
        ),
    ]


FAMILY = FeatureFamily(
    name="usage",
    title="Product usage depth",
    views=_views,
    per_window=_per_window,
    fixed=_fixed,
)
