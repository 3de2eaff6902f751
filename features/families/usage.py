"""Product usage depth: active users and days, events, modules, advanced usage, stickiness,
recency; event values and counts per event type where the settings ask for them.

Reads `user_day` (usage per account, user and UTC day, built in `features.definitions`). The
counts that do not need users (active days, events, values, event types) come from the
account-day grain, so an event log without user ids still gives them.
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.names import event_type_columns
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
    return [per_user, usage, *_activity_views(settings)]


def _activity_views(settings: FeatureSettings) -> list[Statement]:
    """Usage per account and UTC day, and its windows per snapshot (alias `ua`)."""
    sums = ["SUM(events) AS events"]
    if settings.usage_value:
        sums += ["SUM(value_sum) AS value_sum", "SUM(valued_events) AS valued_events"]
    types = list(event_type_columns(settings.event_types).values())
    sums += [f"SUM({column}) AS {column}" for column in types]
    account_day = Statement(
        "account_day",
        f"""
        SELECT account_id, day, {", ".join(sums)}
        FROM user_day
        GROUP BY account_id, day
        """,
        materialize=True,
        static=True,
    )
    aggs = []
    for w in settings.windows:
        cur = f"a.day >= s.snap_day - {w}"
        prev = f"a.day >= s.snap_day - {2 * w} AND a.day < s.snap_day - {w}"
        aggs += [
            f"COUNT(CASE WHEN {cur} THEN 1 END) AS active_days_{w}d",
            f"COALESCE(SUM(CASE WHEN {cur} THEN a.events END), 0) AS events_{w}d",
            f"COALESCE(SUM(CASE WHEN {prev} THEN a.events END), 0) AS prev_events_{w}d",
        ]
        if settings.usage_value:
            aggs += [
                f"SUM(CASE WHEN {cur} THEN a.value_sum END) AS value_sum_{w}d",
                f"SUM(CASE WHEN {cur} THEN a.valued_events END) AS valued_events_{w}d",
            ]
        aggs += [
            f"COALESCE(SUM(CASE WHEN {cur} THEN a.{column} END), 0) AS {column}_{w}d"
            for column in types
        ]
    activity = Statement(
        "f_activity",
        f"""
        SELECT s.account_id, s.snapshot_date,
               {", ".join(aggs)}
        FROM snap AS s
        LEFT JOIN account_day AS a
          ON a.account_id = s.account_id
         AND a.day < s.snap_day
         AND a.day >= s.snap_day - {settings.lookback_days}
        GROUP BY s.account_id, s.snapshot_date
        """,
        alias="ua",
    )
    return [account_day, activity]


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
            when_missing="no seats on the contract",
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
            when_missing=f"no product events in the last {w} days",
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
            when_missing=f"no active users in the last {w} days",
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
        *_activity_features(w, settings),
    ]


def _activity_features(w: int, settings: DeclarationSettings) -> list[Feature]:
    """Volume without users: active days, events and their trend, values, event types."""
    features = [
        Feature(
            name=f"active_days_{w}d",
            family="usage",
            description=f"Days with any product usage in the last {w} days",
            unit="days",
            dtype="int",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["engagement"],
            window_days=w,
            sql=f"ua.active_days_{w}d",
        ),
        Feature(
            name=f"events_{w}d",
            family="usage",
            description=f"Product events in the last {w} days",
            unit="events",
            dtype="int",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["adoption"],
            window_days=w,
            sql=f"ua.events_{w}d",
        ),
        Feature(
            name=f"events_trend_{w}d",
            family="usage",
            description=f"Change in product events, last {w} days against the {w} before",
            unit="share",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["adoption"],
            window_days=w,
            # relative change; from no events at all, the count itself
            sql=f"CAST(ua.events_{w}d - ua.prev_events_{w}d AS DOUBLE)"
            f" / GREATEST(ua.prev_events_{w}d, 1)",
        ),
    ]
    if settings.usage_value:
        # A value can be revenue or errors: no risk direction is a business fact.
        features += [
            Feature(
                name=f"usage_value_{w}d",
                family="usage",
                description=f"Total value of the product events in the last {w} days",
                unit="",
                dtype="float",
                direction="neither",
                actionable=True,
                play=PLAYS["usage_review"],
                window_days=w,
                when_missing=f"no events with a value in the last {w} days",
                sql=f"ua.value_sum_{w}d",
            ),
            Feature(
                name=f"usage_value_per_event_{w}d",
                family="usage",
                description=f"Value per product event (events with a value), last {w} days",
                unit="",
                dtype="float",
                direction="neither",
                actionable=True,
                play=PLAYS["usage_review"],
                window_days=w,
                when_missing=f"no events with a value in the last {w} days",
                sql=ratio(f"ua.value_sum_{w}d", f"ua.valued_events_{w}d"),
            ),
        ]
    features += [
        Feature(
            name=f"{column}_{w}d",
            family="usage",
            description=f"'{event_type}' events in the last {w} days",
            unit="events",
            dtype="int",
            # an error-like type is riskier when higher, a feature-use type when lower
            direction="neither",
            actionable=True,
            play=PLAYS["usage_review"],
            window_days=w,
            sql=f"ua.{column}_{w}d",
        )
        for event_type, column in event_type_columns(settings.event_types).items()
    ]
    return features


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
            when_missing=f"no active users in the last {sticky} days",
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
