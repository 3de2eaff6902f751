"""Support and SLA breaches, as they were knowable at t.

A deadline (opened + SLA hours) is breached once it has passed without a response (or
resolution) at or before it; the breach is dated at the deadline. So a response that came
after t can never change a feature at t. The escalation flag has no timestamp, so it counts
only for tickets resolved before t, when it is final.
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.plays import PLAYS
from features.sql import SECONDS_PER_DAY, double, epoch, ratio


def _tickets(settings: FeatureSettings) -> Statement:
    """Tickets with their deadlines and priority weight, in epoch seconds."""
    weights = " ".join(
        f"WHEN '{p}' THEN {double(w)}" for p, w in sorted(settings.priority_weights.items())
    )
    return Statement(
        "tickets",
        f"""
        SELECT account_id, escalated,
               CASE priority {weights} ELSE {double(1)} END AS weight,
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


def _window_aggregates(w: int) -> list[str]:
    """The per-window counts, and the breaches of the window before (for the trend)."""
    aggs = []
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
    return aggs


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
    if "support_tickets" not in tables:
        return []
    lookback = settings.lookback_days * SECONDS_PER_DAY
    aggs = [agg for w in settings.windows for agg in _window_aggregates(w)]
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
        alias="sp",
    )
    return [_tickets(settings), support]


def _per_window(w: int, settings: DeclarationSettings) -> list[Feature]:
    breaches = f"(sp.first_response_breaches_{w}d + sp.resolution_breaches_{w}d)"
    prev_breaches = f"(sp.prev_first_response_breaches_{w}d + sp.prev_resolution_breaches_{w}d)"
    return [
        Feature(
            name=f"tickets_opened_{w}d",
            family="support",
            description=f"Support tickets opened in the last {w} days",
            unit="tickets",
            dtype="int",
            direction="higher_is_riskier",
            actionable=False,
            play=PLAYS["support"],
            tables=("support_tickets",),
            window_days=w,
            sql=f"sp.tickets_opened_{w}d",
        ),
        Feature(
            name=f"sla_breaches_{w}d",
            family="support",
            description=f"SLA breaches (first response or resolution) in the last {w} days",
            unit="breaches",
            dtype="int",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["support"],
            monotone=True,
            tables=("support_tickets",),
            window_days=w,
            sql=breaches,
        ),
        Feature(
            name=f"first_response_breaches_{w}d",
            family="support",
            description=f"First-response SLA breaches in the last {w} days",
            unit="breaches",
            dtype="int",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["support"],
            monotone=True,
            tables=("support_tickets",),
            window_days=w,
            sql=f"sp.first_response_breaches_{w}d",
        ),
        Feature(
            name=f"resolution_breaches_{w}d",
            family="support",
            description=f"Resolution SLA breaches in the last {w} days",
            unit="breaches",
            dtype="int",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["support"],
            monotone=True,
            tables=("support_tickets",),
            window_days=w,
            sql=f"sp.resolution_breaches_{w}d",
        ),
        Feature(
            name=f"sla_breach_rate_{w}d",
            family="support",
            description=f"Share of SLA deadlines missed in the last {w} days",
            unit="share",
            dtype="float",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["support"],
            monotone=True,
            tables=("support_tickets",),
            window_days=w,
            when_missing=f"no SLA deadline in the last {w} days",
            sql=ratio(breaches, f"sp.sla_deadlines_{w}d"),
        ),
        Feature(
            name=f"weighted_sla_breaches_{w}d",
            family="support",
            description=f"SLA breaches weighted by priority, last {w} days",
            unit="points",
            dtype="float",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["support"],
            monotone=True,
            tables=("support_tickets",),
            window_days=w,
            sql=f"COALESCE(sp.weighted_sla_breaches_{w}d, 0)",
        ),
        Feature(
            name=f"sla_breaches_trend_{w}d",
            family="support",
            description=f"Change in SLA breaches, last {w} days against the {w} before",
            unit="breaches",
            dtype="int",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["support"],
            tables=("support_tickets",),
            window_days=w,
            sql=f"{breaches} - {prev_breaches}",
        ),
        Feature(
            name=f"escalations_{w}d",
            family="support",
            description=f"Escalated tickets (closed) in the last {w} days",
            unit="tickets",
            dtype="int",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["escalation"],
            monotone=True,
            tables=("support_tickets",),
            window_days=w,
            sql=f"sp.escalations_{w}d",
        ),
        Feature(
            name=f"median_resolution_hours_{w}d",
            family="support",
            description=f"Median time to resolve tickets, last {w} days",
            unit="hours",
            dtype="float",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["support"],
            tables=("support_tickets",),
            window_days=w,
            when_missing=f"no ticket resolved in the last {w} days",
            sql=f"sp.median_resolution_hours_{w}d",
        ),
    ]


def _fixed(settings: DeclarationSettings) -> list[Feature]:
    return [
        Feature(
            name="tickets_open_past_sla",
            family="support",
            description="Tickets open past their resolution SLA now",
            unit="tickets",
            dtype="int",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["support"],
            monotone=True,
            tables=("support_tickets",),
            sql="sp.tickets_open_past_sla",
        ),
    ]


FAMILY = FeatureFamily(
    name="support",
    title="Support and SLA breaches",
    tables=("support_tickets",),
    views=_views,
    per_window=_per_window,
    fixed=_fixed,
)
