"""Satisfaction surveys other than NPS: CSAT and customer effort score (one optional table).

Means weigh every answer the same, also answers that share a timestamp; the latest answer is
the mean of the answers at the latest instant before t. Whether a high CES is good depends on
the survey's wording (`ces_higher_is_easier`), so the risk direction of the CES features comes
from the settings.
"""

from __future__ import annotations

from features.base import (
    DeclarationSettings,
    Direction,
    Feature,
    FeatureFamily,
    FeatureSettings,
    Statement,
)
from features.plays import PLAYS
from features.sql import SECONDS_PER_DAY, epoch, quote, ratio

TABLE = "satisfaction_responses"
SURVEYS = ("csat", "ces")


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
    if TABLE not in tables:
        return []
    responses = Statement(
        "satisfaction_by_time",
        f"""
        SELECT account_id, survey, {epoch("responded_at")} AS responded_epoch,
               SUM(CAST(score AS DOUBLE)) AS score_sum, COUNT(*) AS answers
        FROM {TABLE}
        GROUP BY account_id, survey, {epoch("responded_at")}
        """,
        materialize=True,
        static=True,
    )
    aggs = []
    for survey in SURVEYS:
        of_survey = f"r.survey = {quote(survey)}"
        for w in settings.windows:
            cond = f"{of_survey} AND r.responded_epoch >= s.snap_epoch - {w * SECONDS_PER_DAY}"
            aggs.append(
                ratio(
                    f"SUM(CASE WHEN {cond} THEN r.score_sum END)",
                    f"SUM(CASE WHEN {cond} THEN r.answers END)",
                )
                + f" AS {survey}_mean_{w}d"
            )
        # one row per survey and instant, and never a missing mean where the instant is set,
        # so MAX_BY has one answer to return on both engines
        aggs.append(
            f"MAX_BY(CASE WHEN {of_survey} THEN r.score_sum / r.answers END,"
            f" CASE WHEN {of_survey} THEN r.responded_epoch END) AS latest_{survey}"
        )
    satisfaction = Statement(
        "f_satisfaction",
        f"""
        SELECT s.account_id, s.snapshot_date, {", ".join(aggs)}
        FROM snap AS s
        LEFT JOIN satisfaction_by_time AS r
          ON r.account_id = s.account_id AND r.responded_epoch < s.snap_epoch
        GROUP BY s.account_id, s.snapshot_date
        """,
        alias="sat",
    )
    return [responses, satisfaction]


def _ces_direction(settings: DeclarationSettings) -> Direction:
    return "lower_is_riskier" if settings.ces_higher_is_easier else "higher_is_riskier"


def _ces_scale(settings: DeclarationSettings) -> str:
    return "higher is easier" if settings.ces_higher_is_easier else "higher is more effort"


def _per_window(w: int, settings: DeclarationSettings) -> list[Feature]:
    return [
        Feature(
            name=f"csat_mean_{w}d",
            family="satisfaction",
            description=f"Mean CSAT answer in the last {w} days",
            unit="points",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["satisfaction"],
            tables=(TABLE,),
            window_days=w,
            when_missing=f"no CSAT answer in the last {w} days",
            sql=f"sat.csat_mean_{w}d",
        ),
        Feature(
            name=f"ces_mean_{w}d",
            family="satisfaction",
            description=f"Mean customer effort score ({_ces_scale(settings)}) in the last {w} days",
            unit="points",
            dtype="float",
            direction=_ces_direction(settings),
            actionable=True,
            play=PLAYS["effort"],
            tables=(TABLE,),
            window_days=w,
            when_missing=f"no effort-score answer in the last {w} days",
            sql=f"sat.ces_mean_{w}d",
        ),
    ]


def _fixed(settings: DeclarationSettings) -> list[Feature]:
    return [
        Feature(
            name="latest_csat",
            family="satisfaction",
            description="Latest CSAT answer",
            unit="points",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["satisfaction"],
            tables=(TABLE,),
            when_missing="no CSAT answer yet",
            sql="sat.latest_csat",
        ),
        Feature(
            name="latest_ces",
            family="satisfaction",
            description=f"Latest customer effort score ({_ces_scale(settings)})",
            unit="points",
            dtype="float",
            direction=_ces_direction(settings),
            actionable=True,
            play=PLAYS["effort"],
            tables=(TABLE,),
            when_missing="no effort-score answer yet",
            sql="sat.latest_ces",
        ),
    ]


FAMILY = FeatureFamily(
    name="satisfaction",
    title="CSAT and customer effort",
    tables=(TABLE,),
    views=_views,
    per_window=_per_window,
    fixed=_fixed,
)
