"""Sentiment and engagement: NPS answers and CSM touchpoints (two optional tables).

NPS means weigh every answer the same, also answers that share a timestamp; a detractor is an
answer at or below `detractor_max_score`. "Recent" QBRs are those within `qbr_window_days`.
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.plays import PLAYS
from features.sql import SECONDS_PER_DAY, days_since, epoch, flag, ratio


def _nps_views(settings: FeatureSettings) -> list[Statement]:
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
            aggs.append(
                ratio(
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
        alias="np",
    )
    return [responses, nps]


def _touchpoints_view(settings: FeatureSettings) -> Statement:
    windows = ", ".join(
        f"COUNT(CASE WHEN p.occurred_epoch >= s.snap_epoch - {w * SECONDS_PER_DAY}"
        f" THEN 1 END) AS touchpoints_{w}d"
        for w in settings.windows
    )
    qbr_window = settings.qbr_window_days * SECONDS_PER_DAY
    return Statement(
        "f_touchpoints",
        f"""
        SELECT s.account_id, s.snapshot_date, {windows},
               MAX(CASE WHEN p.kind = 'exec_sponsor' THEN p.occurred_epoch END)
                   AS last_exec_epoch,
               COUNT(CASE WHEN p.kind = 'qbr'
                          AND p.occurred_epoch >= s.snap_epoch - {qbr_window}
                          THEN 1 END) AS recent_qbrs
        FROM snap AS s
        LEFT JOIN (
            SELECT account_id, kind, {epoch("occurred_at")} AS occurred_epoch
            FROM csm_touchpoints
        ) AS p ON p.account_id = s.account_id AND p.occurred_epoch < s.snap_epoch
        GROUP BY s.account_id, s.snapshot_date
        """,
        alias="tp",
    )


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
    views = []
    if "nps_responses" in tables:
        views += _nps_views(settings)
    if "csm_touchpoints" in tables:
        views.append(_touchpoints_view(settings))
    return views


def _per_window(w: int, settings: DeclarationSettings) -> list[Feature]:
    return [
        Feature(
            name=f"touchpoints_{w}d",
            family="engagement",
            description=f"CSM touchpoints in the last {w} days",
            unit="touchpoints",
            dtype="int",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["engagement"],
            tables=("csm_touchpoints",),
            window_days=w,
            sql=f"tp.touchpoints_{w}d",
        ),
        Feature(
            name=f"nps_mean_{w}d",
            family="engagement",
            description=f"Mean NPS answer in the last {w} days",
            unit="points",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["sentiment"],
            tables=("nps_responses",),
            window_days=w,
            when_missing=f"no NPS answer in the last {w} days",
            sql=f"np.nps_mean_{w}d",
        ),
        Feature(
            name=f"nps_trend_{w}d",
            family="engagement",
            description=f"Change in mean NPS, last {w} days against the {w} before",
            unit="points",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["sentiment"],
            tables=("nps_responses",),
            when_missing=f"no NPS answers to compare (last {w} days and the {w} before)",
            window_days=w,
            sql=f"np.nps_mean_{w}d - np.prev_nps_mean_{w}d",
        ),
    ]


def _fixed(settings: DeclarationSettings) -> list[Feature]:
    detractor = settings.detractor_max_score
    return [
        Feature(
            name="latest_nps",
            family="engagement",
            description="Latest NPS answer",
            unit="points",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["sentiment"],
            tables=("nps_responses",),
            when_missing="no NPS answer yet",
            sql="np.latest_nps",
        ),
        Feature(
            name="nps_detractor",
            family="engagement",
            description=f"Latest NPS answer is a detractor (0-{detractor})",
            unit="",
            dtype="bool",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["sentiment"],
            tables=("nps_responses",),
            # no answer yet: unknown, not "not a detractor"
            sql=f"CASE WHEN np.latest_nps IS NULL THEN NULL"
            f" WHEN np.latest_nps <= {detractor} THEN 1 ELSE 0 END",
        ),
        Feature(
            name="days_since_exec_contact",
            family="engagement",
            description="Days since the last executive-sponsor contact",
            unit="days",
            dtype="float",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["exec"],
            tables=("csm_touchpoints",),
            when_missing="no executive-sponsor contact on record",
            sql=days_since("tp.last_exec_epoch"),
        ),
        Feature(
            name="qbr_last_quarter",
            family="engagement",
            description=f"QBR held in the last {settings.qbr_window_days} days",
            unit="",
            dtype="bool",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["qbr"],
            tables=("csm_touchpoints",),
            sql=flag("tp.recent_qbrs > 0"),
        ),
    ]


FAMILY = FeatureFamily(
    name="engagement",
    title="Sentiment and engagement",
    tables=("nps_responses", "csm_touchpoints"),
    views=_views,
    per_window=_per_window,
    fixed=_fixed,
)
