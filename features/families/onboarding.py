"""An account's first days as a customer (`onboarding_days`, 90 by default), strictly as of t.

An account 40 days old has only 40 days: the cutoff is min(created day + onboarding_days, t).
All snapshots after that share one cutoff, so the events are joined to the few distinct
cutoffs per account, not to every snapshot.
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.plays import PLAYS
from features.sql import day_of_timestamp, flag, ratio


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
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
        for d in settings.activation_days
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
        alias="oa",
        join_on="oa.account_id = s.account_id"
        f" AND oa.cutoff_day = LEAST(s.created_day + {n}, s.snap_day)",
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
        alias="ou",
        join_on="ou.account_id = s.account_id AND ou.cutoff_day = oa.cutoff_day",
    )
    views = [cutoffs, users, usage]
    if "trainings" in tables:
        views.append(_trainings())
    return views


def _trainings() -> Statement:
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
        alias="ot",
        join_on="ot.account_id = s.account_id AND ot.cutoff_day = oa.cutoff_day",
    )


def _fixed(settings: DeclarationSettings) -> list[Feature]:
    n = settings.onboarding_days
    activation = [
        Feature(
            name=f"seats_activated_{d}d",
            family="onboarding",
            description=f"Share of seats active within the first {d} days",
            unit="share",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["onboarding"],
            when_missing="no seats on the contract",
            sql=ratio(f"oa.activated_{d}d", "s.seats"),
        )
        for d in settings.activation_days
    ]
    return [
        Feature(
            name="tenure_days",
            family="onboarding",
            description="Days as a customer",
            unit="days",
            dtype="int",
            direction="neither",
            actionable=False,
            play=PLAYS["none"],
            sql="s.snap_day - s.created_day",
        ),
        Feature(
            name=f"in_first_{n}_days",
            family="onboarding",
            description=f"In the first {n} days as a customer",
            unit="",
            dtype="bool",
            direction="neither",
            actionable=False,
            play=PLAYS["onboarding"],
            sql=flag(f"s.snap_day - s.created_day < {n}"),
        ),
        Feature(
            name="days_to_first_value",
            family="onboarding",
            description="Days from start to first product use",
            unit="days",
            dtype="float",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["onboarding"],
            when_missing=f"no product use in the first {n} days",
            sql="CAST(ou.first_value_day - s.created_day AS DOUBLE)",
        ),
        *activation,
        Feature(
            name="onboarding_modules",
            family="onboarding",
            description=f"Modules used in the first {n} days",
            unit="modules",
            dtype="int",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["onboarding"],
            sql="COALESCE(ou.onboarding_modules, 0)",
        ),
        Feature(
            name="onboarding_trainings",
            family="onboarding",
            description=f"Trainings completed in the first {n} days",
            unit="trainings",
            dtype="int",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["onboarding"],
            tables=("trainings",),
            sql="ot.onboarding_trainings",
        ),
    ]


FAMILY = FeatureFamily(
    name="onboarding",
    title="First 90 days",
    tables=("trainings",),
    views=_views,
    fixed=_fixed,
)
