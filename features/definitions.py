"""Point-in-time feature and label definitions, written once as SQL (DuckDB dialect).

The same statements run on DuckDB as written and on Apache Spark after SQLGlot transpiles them,
so they stick to constructs both engines share. Every statement is a named view; the engine
creates them in order (`Statement.materialize` marks the ones worth computing once).

Point in time: a snapshot at date t is the instant t 00:00 UTC. A feature at t reads only rows
stamped strictly before t (`< snap_epoch`, or `< snap_day` for day-grain data). Windows are
half-open: the last w days are [t - w days, t). The label looks only after t.

Time is handled as integers so both engines agree exactly: `*_epoch` columns are whole seconds
since 1970-01-01 UTC, `*_day` columns are whole days since then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.core.config import Config

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class Statement:
    """One named SQL view (DuckDB dialect)."""

    name: str
    sql: str
    materialize: bool = False
    # Independent of the snapshot dates: built once even when snapshots run in batches.
    static: bool = False


@dataclass(frozen=True)
class FeatureSettings:
    """The knobs of the feature definitions, unpacked from params.yaml."""

    windows: tuple[int, ...]
    advanced_modules: tuple[str, ...]
    priority_weights: dict[str, float]
    label_horizon_days: int
    renewal_grace_days: int
    as_of_day: int
    onboarding_days: int = 90

    @property
    def max_window(self) -> int:
        return max(self.windows)


def epoch(column: str) -> str:
    """Whole seconds since the epoch of a UTC timestamp column."""
    return f"CAST(FLOOR(EPOCH({column})) AS BIGINT)"


def day_of_timestamp(column: str) -> str:
    """Day number (days since 1970-01-01 UTC) of a UTC timestamp column."""
    return f"CAST(FLOOR(EPOCH({column}) / {SECONDS_PER_DAY}) AS BIGINT)"


def day_of_date(column: str) -> str:
    """Day number of a DATE column."""
    return f"CAST(FLOOR(EPOCH(CAST({column} AS TIMESTAMP)) / {SECONDS_PER_DAY}) AS BIGINT)"


def _quote(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values) or "NULL"


def _double(value: float) -> str:
    # A bare 1.5 is DOUBLE in DuckDB but DECIMAL in Spark, which then rounds divisions.
    return f"CAST({float(value)!r} AS DOUBLE)"


def _ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator, empty where the denominator is zero or empty."""
    return (
        f"CASE WHEN ({denominator}) IS NULL OR ({denominator}) = 0 THEN NULL "
        f"ELSE CAST({numerator} AS DOUBLE) / ({denominator}) END"
    )


# --- inputs and snapshots -----------------------------------------------------------------


def _snapshot_rows() -> Statement:
    """One row per snapshot and account with a contract active at t, with its current term.

    Active at t: the term started before t and ends on or after t (a term ending on t is the
    one whose renewal is decided at t, so the account never drops out on its renewal day).
    Several active terms (an upgrade overlapping the old term): the current one ends last.
    """
    return Statement(
        "snap",
        f"""
        WITH active AS (
            SELECT
                d.snapshot_date, d.snap_day, d.snap_epoch,
                c.account_id, c.contract_id, c.arr, c.seats, c.plan,
                {day_of_date("c.start_date")} AS start_day,
                {day_of_date("c.end_date")} AS renewal_day,
                ROW_NUMBER() OVER (
                    PARTITION BY c.account_id, d.snapshot_date
                    ORDER BY c.end_date DESC, c.start_date DESC, c.contract_id DESC
                ) AS term_rank
            FROM snapshot_dates AS d
            JOIN contracts AS c
              ON c.start_date < d.snapshot_date AND c.end_date >= d.snapshot_date
        )
        SELECT
            t.account_id, t.snapshot_date, t.snap_day, t.snap_epoch,
            t.contract_id, t.arr, t.seats, t.plan, t.start_day, t.renewal_day,
            a.segment,
            {day_of_timestamp("a.created_at")} AS created_day
        FROM active AS t
        JOIN accounts AS a ON a.account_id = t.account_id
        WHERE t.term_rank = 1
        """,
        materialize=True,
    )


def _module_bits() -> Statement:
    """A bit per product module, so distinct modules over a window are a BIT_OR away."""
    return Statement(
        "module_bits",
        """
        SELECT module,
               CAST(POWER(2, ROW_NUMBER() OVER (ORDER BY module) - 1) AS BIGINT) AS bit
        FROM (SELECT DISTINCT module FROM usage_events) AS m
        """,
        materialize=True,
        static=True,
    )


def _user_day(settings: FeatureSettings, has_trainings: bool) -> Statement:
    """Usage pre-aggregated to account, user and day: the grain every usage feature needs."""
    first_completion_join = ""
    first_completion_col = "CAST(NULL AS BIGINT) AS first_completion_epoch"
    if has_trainings:
        first_completion_join = f"""
        LEFT JOIN (
            SELECT user_id, account_id, MIN({epoch("completed_at")}) AS first_completion_epoch
            FROM trainings WHERE completed_at IS NOT NULL
            GROUP BY user_id, account_id
        ) AS fc ON fc.user_id = g.user_id AND fc.account_id = g.account_id"""
        first_completion_col = "fc.first_completion_epoch"
    return Statement(
        "user_day",
        f"""
        SELECT g.account_id, g.user_id, g.day, g.events, g.advanced_events, g.modules,
               {first_completion_col}
        FROM (
            SELECT e.account_id, e.user_id,
                   {day_of_timestamp("e.occurred_at")} AS day,
                   SUM(e.count) AS events,
                   SUM(CASE WHEN e.module IN ({_quote(settings.advanced_modules)})
                            THEN e.count ELSE 0 END) AS advanced_events,
                   BIT_OR(b.bit) AS modules
            FROM usage_events AS e
            JOIN module_bits AS b ON b.module = e.module
            GROUP BY e.account_id, e.user_id, {day_of_timestamp("e.occurred_at")}
        ) AS g{first_completion_join}
        """,
        materialize=True,
        static=True,
    )


# --- families --------------------------------------------------------------------------------


def _usage(settings: FeatureSettings) -> list[Statement]:
    """Usage per account and snapshot, in two steps to keep the distinct counts cheap.

    Step one reduces the snapshot x user-day join to one row per account, snapshot and user
    with 0/1 flags per window; step two adds the flags up. Distinct counts over the fanned-out
    join would hash every joined row once per count.
    """
    lookback = 2 * settings.max_window
    windows = sorted(set(settings.windows) | {30})
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
        "COUNT(CASE WHEN u.day >= s.snap_day - 30 THEN 1 END) AS days_30d",
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
         AND u.day >= s.snap_day - {lookback}
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
        f"COALESCE(SUM(CASE WHEN {user} THEN p.days_30d END), 0) AS user_days_30d",
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
    )
    return [per_user, usage]


def _onboarding(settings: FeatureSettings) -> list[Statement]:
    """First-90-days behaviour, strictly as of t: an account 40 days old has only 40 days.

    The cutoff is min(created day + 90, t). All snapshots after day 90 share one cutoff, so the
    events are joined to the few distinct cutoffs per account, not to every snapshot.
    """
    n = settings.onboarding_days
    cutoffs = Statement(
        "onboarding_cutoffs",
        f"""
        SELECT DISTINCT account_id, created_day,
               LEAST(created_day + {n}, snap_day) AS cutoff_day
        FROM snap
        """,
        materialize=True,
    )
    activation = ", ".join(
        f"COUNT(DISTINCT CASE WHEN f.first_day < LEAST(o.created_day + {d}, o.cutoff_day)"
        f" THEN f.user_id END) AS activated_{d}d"
        for d in (30, 60, 90)
    )
    users = Statement(
        "onboarding_users",
        f"""
        SELECT o.account_id, o.cutoff_day, {activation}
        FROM onboarding_cutoffs AS o
        LEFT JOIN (
            SELECT account_id, user_id, MIN(day) AS first_day
            FROM user_day WHERE user_id IS NOT NULL
            GROUP BY account_id, user_id
        ) AS f ON f.account_id = o.account_id AND f.first_day < o.cutoff_day
        GROUP BY o.account_id, o.cutoff_day
        """,
    )
    usage = Statement(
        "onboarding_usage",
        """
        SELECT o.account_id, o.cutoff_day,
               MIN(u.day) AS first_value_day,
               BIT_COUNT(BIT_OR(u.modules)) AS onboarding_modules
        FROM onboarding_cutoffs AS o
        LEFT JOIN user_day AS u
          ON u.account_id = o.account_id AND u.day < o.cutoff_day
        GROUP BY o.account_id, o.cutoff_day
        """,
    )
    return [cutoffs, users, usage]


def _onboarding_trainings(settings: FeatureSettings) -> Statement:
    return Statement(
        "onboarding_training",
        f"""
        SELECT o.account_id, o.cutoff_day, COUNT(t.user_id) AS onboarding_trainings
        FROM onboarding_cutoffs AS o
        LEFT JOIN trainings AS t
          ON t.account_id = o.account_id AND t.completed_at IS NOT NULL
         AND {day_of_timestamp("t.completed_at")} < o.cutoff_day
        GROUP BY o.account_id, o.cutoff_day
        """,
    )


def _training(settings: FeatureSettings) -> Statement:
    windows = ", ".join(
        f"COUNT(CASE WHEN t.completed_epoch >= s.snap_epoch - {w * SECONDS_PER_DAY}"
        f" THEN 1 END) AS trainings_completed_{w}d"
        for w in settings.windows
    )
    return Statement(
        "f_training",
        f"""
        SELECT s.account_id, s.snapshot_date, {windows},
               AVG(t.score) AS mean_training_score,
               MAX(t.completed_epoch) AS last_completion_epoch
        FROM snap AS s
        LEFT JOIN (
            SELECT account_id, user_id, score, {epoch("completed_at")} AS completed_epoch
            FROM trainings WHERE completed_at IS NOT NULL
        ) AS t ON t.account_id = s.account_id AND t.completed_epoch < s.snap_epoch
        GROUP BY s.account_id, s.snapshot_date
        """,
    )


def _admins_trained() -> Statement:
    """Admins with a login at t (created before t, not deactivated by t) and a completion."""
    return Statement(
        "f_admins",
        f"""
        SELECT s.account_id, s.snapshot_date,
               COUNT(DISTINCT CASE WHEN fc.first_completion_epoch < s.snap_epoch
                                   THEN u.user_id END) AS admins_trained
        FROM snap AS s
        LEFT JOIN users AS u
          ON u.account_id = s.account_id AND u.role = 'admin'
         AND {epoch("u.created_at")} < s.snap_epoch
         AND (u.deactivated_at IS NULL OR {epoch("u.deactivated_at")} >= s.snap_epoch)
        LEFT JOIN (
            SELECT user_id, MIN({epoch("completed_at")}) AS first_completion_epoch
            FROM trainings WHERE completed_at IS NOT NULL GROUP BY user_id
        ) AS fc ON fc.user_id = u.user_id
        GROUP BY s.account_id, s.snapshot_date
        """,
    )


def _support(settings: FeatureSettings) -> list[Statement]:
    """SLA breaches as they were knowable at t.

    A deadline (opened + SLA hours) is breached once it has passed without a response (or
    resolution) at or before it; the breach is dated at the deadline. So a response that came
    after t can never change a feature at t. The escalation flag has no timestamp, so it counts
    only for tickets resolved before t, when it is final.
    """
    weights = " ".join(
        f"WHEN '{p}' THEN {_double(w)}" for p, w in sorted(settings.priority_weights.items())
    )
    tickets = Statement(
        "tickets",
        f"""
        SELECT account_id, escalated,
               CASE priority {weights} ELSE {_double(1)} END AS weight,
               {epoch("opened_at")} AS opened_epoch,
               {epoch("first_response_at")} AS response_epoch,
               {epoch("resolved_at")} AS resolved_epoch,
               {epoch("opened_at")} + CAST(sla_first_response_hours * 3600 AS BIGINT)
                   AS response_due_epoch,
               {epoch("opened_at")} + CAST(sla_resolution_hours * 3600 AS BIGINT)
                   AS resolution_due_epoch
        FROM support_tickets
        """,
        materialize=True,
        static=True,
    )
    lookback = 2 * settings.max_window * SECONDS_PER_DAY
    aggs = []
    for w in settings.windows:
        for label, lo, hi in (("", w, 0), ("prev_", 2 * w, w)):
            lo_s, hi_s = lo * SECONDS_PER_DAY, hi * SECONDS_PER_DAY
            in_window = (
                "{col} >= s.snap_epoch - " + str(lo_s) + " AND {col} < s.snap_epoch - " + str(hi_s)
            )
            rdue = in_window.format(col="t.response_due_epoch")
            sdue = in_window.format(col="t.resolution_due_epoch")
            r_breach = f"{rdue} AND NOT COALESCE(t.response_epoch <= t.response_due_epoch, FALSE)"
            s_breach = f"{sdue} AND NOT COALESCE(t.resolved_epoch <= t.resolution_due_epoch, FALSE)"
            aggs += [
                f"COUNT(CASE WHEN {r_breach} THEN 1 END) AS {label}first_response_breaches_{w}d",
                f"COUNT(CASE WHEN {s_breach} THEN 1 END) AS {label}resolution_breaches_{w}d",
            ]
            if label:
                continue
            opened = in_window.format(col="t.opened_epoch")
            resolved = in_window.format(col="t.resolved_epoch")
            aggs += [
                f"COUNT(CASE WHEN {opened} THEN 1 END) AS tickets_opened_{w}d",
                f"COUNT(CASE WHEN {rdue} THEN 1 END) + COUNT(CASE WHEN {sdue} THEN 1 END)"
                f" AS sla_deadlines_{w}d",
                f"SUM(CASE WHEN {r_breach} THEN t.weight ELSE 0 END)"
                f" + SUM(CASE WHEN {s_breach} THEN t.weight ELSE 0 END)"
                f" AS weighted_sla_breaches_{w}d",
                f"COUNT(CASE WHEN {resolved} AND t.escalated THEN 1 END) AS escalations_{w}d",
                f"MEDIAN(CASE WHEN {resolved} THEN"
                f" CAST(t.resolved_epoch - t.opened_epoch AS DOUBLE) / 3600 END)"
                f" AS median_resolution_hours_{w}d",
            ]
    aggs.append(
        "COUNT(CASE WHEN (t.resolved_epoch IS NULL OR t.resolved_epoch >= s.snap_epoch)"
        " AND t.resolution_due_epoch < s.snap_epoch THEN 1 END) AS tickets_open_past_sla"
    )
    support = Statement(
        "f_support",
        f"""
        SELECT s.account_id, s.snapshot_date, {", ".join(aggs)}
        FROM snap AS s
        LEFT JOIN tickets AS t
          ON t.account_id = s.account_id
         AND t.opened_epoch < s.snap_epoch
         AND (t.resolved_epoch IS NULL
              OR t.resolved_epoch >= s.snap_epoch - {lookback}
              OR t.resolution_due_epoch >= s.snap_epoch - {lookback}
              OR t.response_due_epoch >= s.snap_epoch - {lookback})
        GROUP BY s.account_id, s.snapshot_date
        """,
    )
    return [tickets, support]


def _nps(settings: FeatureSettings) -> list[Statement]:
    responses = Statement(
        "nps_by_time",
        f"""
        SELECT account_id, {epoch("responded_at")} AS responded_epoch,
               SUM(CAST(score AS DOUBLE)) AS score_sum, COUNT(*) AS answers
        FROM nps_responses
        GROUP BY account_id, {epoch("responded_at")}
        """,
        materialize=True,
        static=True,
    )
    aggs = []
    for w in settings.windows:
        lo, hi = w * SECONDS_PER_DAY, 2 * w * SECONDS_PER_DAY
        current = f"n.responded_epoch >= s.snap_epoch - {lo}"
        previous = (
            f"n.responded_epoch >= s.snap_epoch - {hi} AND n.responded_epoch < s.snap_epoch - {lo}"
        )
        for name, cond in ((f"nps_mean_{w}d", current), (f"prev_nps_mean_{w}d", previous)):
            # every answer weighs the same, also answers that share a timestamp
            aggs.append(
                _ratio(
                    f"SUM(CASE WHEN {cond} THEN n.score_sum END)",
                    f"SUM(CASE WHEN {cond} THEN n.answers END)",
                )
                + f" AS {name}"
            )
    nps = Statement(
        "f_nps",
        f"""
        SELECT s.account_id, s.snapshot_date, {", ".join(aggs)},
               MAX_BY(n.score_sum / n.answers, n.responded_epoch) AS latest_nps
        FROM snap AS s
        LEFT JOIN nps_by_time AS n
          ON n.account_id = s.account_id AND n.responded_epoch < s.snap_epoch
        GROUP BY s.account_id, s.snapshot_date
        """,
    )
    return [responses, nps]


def _touchpoints(settings: FeatureSettings) -> Statement:
    windows = ", ".join(
        f"COUNT(CASE WHEN p.occurred_epoch >= s.snap_epoch - {w * SECONDS_PER_DAY}"
        f" THEN 1 END) AS touchpoints_{w}d"
        for w in settings.windows
    )
    return Statement(
        "f_touchpoints",
        f"""
        SELECT s.account_id, s.snapshot_date, {windows},
               MAX(CASE WHEN p.kind = 'exec_sponsor' THEN p.occurred_epoch END)
                   AS last_exec_epoch,
               COUNT(CASE WHEN p.kind = 'qbr'
                          AND p.occurred_epoch >= s.snap_epoch - {90 * SECONDS_PER_DAY}
                          THEN 1 END) AS qbrs_last_quarter
        FROM snap AS s
        LEFT JOIN (
            SELECT account_id, kind, {epoch("occurred_at")} AS occurred_epoch
            FROM csm_touchpoints
        ) AS p ON p.account_id = s.account_id AND p.occurred_epoch < s.snap_epoch
        GROUP BY s.account_id, s.snapshot_date
        """,
    )


def _commercial() -> Statement:
    """Contract history before the current term: renewals so far and the last ARR change."""
    return Statement(
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
    )


def _labels(settings: FeatureSettings) -> Statement:
    """churned = 1 when the current term ends at r without renewal, 0 when it renews.

    Defined only when r is within the horizon after t and r + grace has passed by the data's
    as-of date: renewed (a following contract that starts by r + grace and runs past r) or
    churned (none). Otherwise empty: censored, never 'retained'. An early renewal is not
    used before r + grace either: churn cannot be known that early, so labelling the renewals
    alone would make the latest periods look healthier than they were.
    """
    grace = settings.renewal_grace_days
    return Statement(
        "labels",
        f"""
        SELECT s.account_id, s.snapshot_date,
               CASE
                   WHEN s.renewal_day - s.snap_day > {settings.label_horizon_days} THEN NULL
                   WHEN s.renewal_day + {grace} > {settings.as_of_day} THEN NULL
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
         AND c.start_day >= s.snap_day AND c.start_day <= s.renewal_day + {grace}
         AND c.end_day > s.renewal_day
        GROUP BY s.account_id, s.snapshot_date, s.renewal_day, s.snap_day
        """,
    )


# --- assembly --------------------------------------------------------------------------------


def _days_since(epoch_col: str) -> str:
    return f"CAST(s.snap_epoch - {epoch_col} AS DOUBLE) / {SECONDS_PER_DAY}"


def _final_columns(settings: FeatureSettings, tables: set[str]) -> dict[str, str]:
    """Feature name -> SQL expression over the family views (aliases s, u, ...)."""
    cols: dict[str, str] = {}
    for w in settings.windows:
        cols[f"active_users_{w}d"] = f"u.active_users_{w}d"
        cols[f"active_user_share_{w}d"] = _ratio(f"u.active_users_{w}d", "s.seats")
        cols[f"distinct_modules_{w}d"] = f"COALESCE(u.distinct_modules_{w}d, 0)"
        cols[f"advanced_usage_share_{w}d"] = _ratio(f"u.advanced_events_{w}d", f"u.events_{w}d")
        cols[f"events_per_active_user_{w}d"] = _ratio(f"u.events_{w}d", f"u.active_users_{w}d")
        cols[f"active_users_trend_{w}d"] = (
            f"CAST(u.active_users_{w}d - u.prev_active_users_{w}d AS DOUBLE)"
            f" / GREATEST(u.prev_active_users_{w}d, 1)"
        )
    cols["stickiness_30d"] = _ratio("u.user_days_30d", "u.active_users_30d * 30")
    lookback = 2 * settings.max_window
    cols["days_since_last_activity"] = (
        f"CAST(COALESCE(s.snap_day - u.last_active_day, {lookback + 1}) AS DOUBLE)"
    )
    if "trainings" in tables:
        for w in settings.windows:
            cols[f"trainings_completed_{w}d"] = f"tr.trainings_completed_{w}d"
        cols["trained_user_share"] = _ratio(
            "u.trained_active_users", f"u.active_users_{settings.max_window}d"
        )
        cols["mean_training_score"] = "tr.mean_training_score"
        if "users" in tables:
            cols["admins_trained"] = "ad.admins_trained"
        cols["days_since_last_training"] = _days_since("tr.last_completion_epoch")
    if "support_tickets" in tables:
        for w in settings.windows:
            breaches = f"(sp.first_response_breaches_{w}d + sp.resolution_breaches_{w}d)"
            prev = f"(sp.prev_first_response_breaches_{w}d + sp.prev_resolution_breaches_{w}d)"
            cols[f"tickets_opened_{w}d"] = f"sp.tickets_opened_{w}d"
            cols[f"sla_breaches_{w}d"] = breaches
            cols[f"first_response_breaches_{w}d"] = f"sp.first_response_breaches_{w}d"
            cols[f"resolution_breaches_{w}d"] = f"sp.resolution_breaches_{w}d"
            cols[f"sla_breach_rate_{w}d"] = _ratio(breaches, f"sp.sla_deadlines_{w}d")
            cols[f"weighted_sla_breaches_{w}d"] = f"COALESCE(sp.weighted_sla_breaches_{w}d, 0)"
            cols[f"sla_breaches_trend_{w}d"] = f"{breaches} - {prev}"
            cols[f"escalations_{w}d"] = f"sp.escalations_{w}d"
            cols[f"median_resolution_hours_{w}d"] = f"sp.median_resolution_hours_{w}d"
        cols["tickets_open_past_sla"] = "sp.tickets_open_past_sla"
    cols["tenure_days"] = "s.snap_day - s.created_day"
    cols["in_first_90_days"] = (
        f"CASE WHEN s.snap_day - s.created_day < {settings.onboarding_days} THEN 1 ELSE 0 END"
    )
    cols["days_to_first_value"] = "CAST(ou.first_value_day - s.created_day AS DOUBLE)"
    for d in (30, 60, 90):
        cols[f"seats_activated_{d}d"] = _ratio(f"oa.activated_{d}d", "s.seats")
    cols["onboarding_modules"] = "COALESCE(ou.onboarding_modules, 0)"
    if "trainings" in tables:
        cols["onboarding_trainings"] = "ot.onboarding_trainings"
    if "csm_touchpoints" in tables:
        for w in settings.windows:
            cols[f"touchpoints_{w}d"] = f"tp.touchpoints_{w}d"
        cols["days_since_exec_contact"] = _days_since("tp.last_exec_epoch")
        cols["qbr_last_quarter"] = "CASE WHEN tp.qbrs_last_quarter > 0 THEN 1 ELSE 0 END"
    if "nps_responses" in tables:
        for w in settings.windows:
            cols[f"nps_mean_{w}d"] = f"np.nps_mean_{w}d"
            cols[f"nps_trend_{w}d"] = f"np.nps_mean_{w}d - np.prev_nps_mean_{w}d"
        cols["latest_nps"] = "np.latest_nps"
        cols["nps_detractor"] = (
            "CASE WHEN np.latest_nps IS NULL THEN NULL WHEN np.latest_nps <= 6 THEN 1 ELSE 0 END"
        )
    cols["arr"] = "s.arr"
    cols["seats"] = "s.seats"
    cols["segment"] = "s.segment"
    cols["plan"] = "s.plan"
    cols["term_months"] = (
        f"CAST(ROUND(CAST(s.renewal_day - s.start_day AS DOUBLE) / {_double(30.4375)}) AS BIGINT)"
    )
    cols["days_to_renewal"] = "s.renewal_day - s.snap_day"
    cols["prior_renewals"] = "cm.prior_renewals"
    cols["arr_change_last_renewal"] = (
        "CASE WHEN cm.previous_arr IS NULL OR cm.previous_arr = 0 THEN NULL"
        " ELSE s.arr / cm.previous_arr - 1 END"
    )
    return cols


def feature_statements(
    settings: FeatureSettings, tables: set[str], feature_names: list[str]
) -> list[Statement]:
    """Every view, in order; the last one, `features`, is the feature table with labels.

    `tables` are the optional tables present; families that need an absent table are left out.
    `feature_names` fixes the output columns and their order (from the registry).
    """
    statements = [_snapshot_rows(), _module_bits(), _user_day(settings, "trainings" in tables)]
    statements += _usage(settings)
    statements += _onboarding(settings)
    joins = [
        "LEFT JOIN f_usage AS u ON u.account_id = s.account_id"
        " AND u.snapshot_date = s.snapshot_date",
        "LEFT JOIN onboarding_users AS oa ON oa.account_id = s.account_id"
        " AND oa.cutoff_day = LEAST(s.created_day + "
        f"{settings.onboarding_days}, s.snap_day)",
        "LEFT JOIN onboarding_usage AS ou ON ou.account_id = s.account_id"
        " AND ou.cutoff_day = oa.cutoff_day",
    ]

    def join(view: str, alias: str) -> str:
        return (
            f"LEFT JOIN {view} AS {alias} ON {alias}.account_id = s.account_id"
            f" AND {alias}.snapshot_date = s.snapshot_date"
        )

    if "trainings" in tables:
        statements += [_training(settings), _onboarding_trainings(settings)]
        joins += [
            join("f_training", "tr"),
            "LEFT JOIN onboarding_training AS ot ON ot.account_id = s.account_id"
            " AND ot.cutoff_day = oa.cutoff_day",
        ]
        if "users" in tables:
            statements.append(_admins_trained())
            joins.append(join("f_admins", "ad"))
    if "support_tickets" in tables:
        statements += _support(settings)
        joins.append(join("f_support", "sp"))
    if "nps_responses" in tables:
        statements += _nps(settings)
        joins.append(join("f_nps", "np"))
    if "csm_touchpoints" in tables:
        statements.append(_touchpoints(settings))
        joins.append(join("f_touchpoints", "tp"))
    statements += [_commercial(), _labels(settings)]
    joins += [join("f_commercial", "cm"), join("labels", "lb")]

    columns = _final_columns(settings, tables)
    missing = [name for name in feature_names if name not in columns]
    assert not missing, f"registry features without a definition: {missing}"
    select = ",\n               ".join(f"{columns[name]} AS {name}" for name in feature_names)
    statements.append(
        Statement(
            "features",
            f"""
            SELECT s.account_id, s.snapshot_date,
                   {select},
                   s.contract_id,
                   s.renewal_day,
                   lb.churned
            FROM snap AS s
            {chr(10).join(joins)}
            """,
        )
    )
    return statements


def settings_from_config(config: Config, as_of_day: int) -> FeatureSettings:
    """The definitions' settings from the typed config's `features` and `base` sections."""
    f = config.features
    return FeatureSettings(
        windows=tuple(sorted(set(f.windows))),
        advanced_modules=tuple(f.advanced_modules),
        priority_weights={str(k): float(v) for k, v in f.priority_weights.items()},
        label_horizon_days=int(f.label_horizon_days),
        renewal_grace_days=int(config.base.renewal_grace_days),
        as_of_day=as_of_day,
        onboarding_days=int(f.onboarding_days),
    )
