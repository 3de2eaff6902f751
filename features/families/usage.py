"""Product usage depth: active users and days, events, modules, advanced usage, stickiness,
recency; event values and counts per event type where the settings ask for them.

Reads `user_day` (usage per account, user and UTC day, built in `features.definitions`).
Everything that adds up or merges over days (active days, events, advanced events, modules,
user-days, values, event types, the last active day) comes from the account-day grain, so an
event log without user ids still gives it. Distinct users come from spans of each user's
activity (`_user_span_views`). No view joins a snapshot to its whole user history, so a
snapshot costs about the same whatever the cadence; docs/feature-engine.md has the figures.
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.names import event_type_columns
from features.plays import PLAYS, advanced_play
from features.sql import ratio

# Spans of user activity are listed per block of this many days (see `_user_span_views`):
# smaller blocks mean fewer spans per lookup but more copies of long spans.
SPAN_BLOCK_DAYS = 16


def _from(settings: FeatureSettings, column: str, *, first: bool = False) -> str:
    """The filter to the days this run's snapshots can read (none when not known)."""
    since = settings.history_from_day
    if since is None:
        return ""
    return f"{'WHERE' if first else ' AND'} {column} >= {since}"


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
    """Usage per account and snapshot: sums from the account-day grain, users from spans.

    Joining each snapshot to its user-days over the look-back (the earlier shape) costs user-days
    x snapshots; the account-day join costs 5 to 10x less here, and users need only a lookup.
    """
    return [*_user_span_views(settings), *_activity_views(settings)]


def _user_windows(settings: DeclarationSettings) -> list[int]:
    """The windows users are counted over: the feature windows and the stickiness window."""
    return sorted(set(settings.windows) | {settings.stickiness_days})


def _user_span_views(settings: FeatureSettings) -> list[Statement]:
    """Active users per window, from each user's last active day before each edge.

    A user is active in [t - w, t) when their last active day before t is on or after t - w;
    in [t - 2w, t - w) when their last active day before t - w is on or after t - 2w. So each
    snapshot needs, per user, the last active day before a few edge days b (t, and t - w for
    the trends). The user-day d is that day exactly when d < b <= the user's next active day:
    a span (d, next]. The next active day may lie after t, yet only "next >= b" is read, which
    holds for the last day before b whatever happens later: later rows never change the day
    found (the leakage property test checks it). Spans are cut at d + reach (older days are
    never read) and listed once per block of SPAN_BLOCK_DAYS days they touch, so an edge finds
    its spans with an equi-join on (account, block) and a filter, never a range join over the
    snapshot's whole history.
    The cost is one sort of the user-day grain, paid once, plus per edge the users active
    near it; a snapshot costs about the same whatever the cadence.
    """
    # every snapshot reads at most the look-back (a longer stickiness window is cut to it)
    lookback = settings.lookback_days
    reach = min(max(_user_windows(settings)), lookback)
    block = SPAN_BLOCK_DAYS
    offsets = reach // block + 1  # the most extra blocks a span of length <= reach touches
    spans = Statement(
        "user_spans",
        f"""
        SELECT account_id, day, first_completion_epoch, span_end,
               CAST(FLOOR((day + 1) / {block}) AS BIGINT) AS first_block,
               CAST(FLOOR(span_end / {block}) AS BIGINT) AS last_block
        FROM (
            SELECT n.account_id, n.user_id, n.day, fc.first_completion_epoch,
                   LEAST(COALESCE(n.next_day, n.day + {reach}), n.day + {reach}) AS span_end
            FROM (
                SELECT account_id, user_id, day,
                       LEAD(day) OVER (PARTITION BY account_id, user_id ORDER BY day)
                           AS next_day
                FROM user_day
                WHERE user_id IS NOT NULL{_from(settings, "day")}
            ) AS n
            LEFT JOIN user_first_completion AS fc
              ON fc.account_id = n.account_id AND fc.user_id = n.user_id
        ) AS c
        """,
        materialize=True,
        static=True,
    )
    # A span is found through its first block; one that reaches into later blocks is also
    # listed once per later block (few: most users are back within a block).
    numbers = " UNION ALL ".join(f"SELECT {k} AS k" for k in range(1, offsets + 1))
    later_blocks = Statement(
        "user_span_later_blocks",
        f"""
        SELECT p.account_id, p.day, p.first_completion_epoch, p.span_end,
               p.first_block + o.k AS block
        FROM user_spans AS p
        JOIN ({numbers}) AS o ON o.k <= p.last_block - p.first_block
        WHERE p.last_block > p.first_block
        """,
        materialize=True,
        static=True,
    )
    edge_rows = [("0", "s.snap_day")] + [(str(w), f"s.snap_day - {w}") for w in settings.windows]
    edges = " UNION ALL ".join(
        f"SELECT s.account_id, s.snapshot_date, {edge} AS edge, {day} AS edge_day FROM snap AS s"
        for edge, day in edge_rows
    )
    snap_edges = Statement(
        "snap_edges",
        f"""
        SELECT account_id, snapshot_date, edge, edge_day,
               CAST(FLOOR(edge_day / {block}) AS BIGINT) AS block
        FROM ({edges}) AS e
        """,
        materialize=True,
    )
    maxw = settings.max_window
    counts = [
        f"COUNT(CASE WHEN x.edge = 0 AND x.day >= s.snap_day - {min(w, lookback)} THEN 1 END)"
        f" AS active_users_{w}d"
        for w in _user_windows(settings)
    ]
    counts += [
        f"COUNT(CASE WHEN x.edge = {w} AND x.day >= s.snap_day - {2 * w} THEN 1 END)"
        f" AS prev_active_users_{w}d"
        for w in settings.windows
    ]
    # first training completion, for training's trained_user_share (no trainings: never)
    counts.append(
        f"COUNT(CASE WHEN x.edge = 0 AND x.day >= s.snap_day - {maxw}"
        " AND x.first_completion_epoch < s.snap_epoch THEN 1 END) AS trained_active_users"
    )
    users = Statement(
        "f_usage",
        f"""
        SELECT s.account_id, s.snapshot_date,
               {", ".join(counts)}
        FROM snap AS s
        LEFT JOIN (
            SELECT e.account_id, e.snapshot_date, e.edge, b.day, b.first_completion_epoch
            FROM snap_edges AS e
            JOIN user_spans AS b ON b.account_id = e.account_id AND b.first_block = e.block
            WHERE b.day < e.edge_day AND b.span_end >= e.edge_day
            UNION ALL
            SELECT e.account_id, e.snapshot_date, e.edge, b.day, b.first_completion_epoch
            FROM snap_edges AS e
            JOIN user_span_later_blocks AS b ON b.account_id = e.account_id AND b.block = e.block
            WHERE b.day < e.edge_day AND b.span_end >= e.edge_day
        ) AS x ON x.account_id = s.account_id AND x.snapshot_date = s.snapshot_date
        GROUP BY s.account_id, s.snapshot_date
        """,
        alias="u",
    )
    return [spans, later_blocks, snap_edges, users]


def _activity_views(settings: FeatureSettings) -> list[Statement]:
    """Usage per account and UTC day, and its windows per snapshot (alias `ua`): every usage
    measure that adds up or merges over days, so users are never needed for it."""
    sums = [
        "SUM(events) AS events",
        "SUM(advanced_events) AS advanced_events",
        "BIT_OR(modules) AS modules",
        "COUNT(user_id) AS users",
    ]
    if settings.usage_value:
        sums += ["SUM(value_sum) AS value_sum", "SUM(valued_events) AS valued_events"]
    types = list(event_type_columns(settings.event_types).values())
    sums += [f"SUM({column}) AS {column}" for column in types]
    account_day = Statement(
        "account_day",
        f"""
        SELECT account_id, day, {", ".join(sums)}
        FROM user_day
        {_from(settings, "day", first=True)}
        GROUP BY account_id, day
        """,
        materialize=True,
        static=True,
    )
    sticky = settings.stickiness_days
    aggs = [
        # user-days with a known user over the stickiness window (users active per day, summed)
        f"COALESCE(SUM(CASE WHEN a.day >= s.snap_day - {sticky} THEN a.users END), 0)"
        f" AS user_days_{sticky}d",
        "MAX(a.day) AS last_active_day",
    ]
    for w in settings.windows:
        cur = f"a.day >= s.snap_day - {w}"
        prev = f"a.day >= s.snap_day - {2 * w} AND a.day < s.snap_day - {w}"
        aggs += [
            f"COUNT(CASE WHEN {cur} THEN 1 END) AS active_days_{w}d",
            f"COALESCE(SUM(CASE WHEN {cur} THEN a.events END), 0) AS events_{w}d",
            f"COALESCE(SUM(CASE WHEN {prev} THEN a.events END), 0) AS prev_events_{w}d",
            f"SUM(CASE WHEN {cur} THEN a.advanced_events END) AS advanced_events_{w}d",
            f"COALESCE(BIT_COUNT(BIT_OR(CASE WHEN {cur} THEN a.modules END)), 0)"
            f" AS distinct_modules_{w}d",
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
            sql=f"ua.distinct_modules_{w}d",
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
            sql=ratio(f"ua.advanced_events_{w}d", f"ua.events_{w}d"),
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
            sql=ratio(f"ua.events_{w}d", f"u.active_users_{w}d"),
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
            sql=ratio(f"ua.user_days_{sticky}d", f"u.active_users_{sticky}d * {sticky}"),
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
            sql=f"CAST(COALESCE(s.snap_day - ua.last_active_day, {settings.lookback_days + 1})"
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
