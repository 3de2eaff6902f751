"""An account's first days as a customer (`onboarding_days`, 90 by default), strictly as of t.

An account 40 days old has only 40 days: the cutoff is min(created day + onboarding_days, t).
All snapshots after that share one cutoff, so the events are joined to the few distinct
cutoffs per account, not to every snapshot; the shared cutoff's aggregates are built once per
run, whatever the number of snapshot batches.
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.plays import PLAYS
from features.sql import day_of_timestamp, flag, ratio


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
    """The onboarding aggregates per (account, cutoff), for mature and young cutoffs apart.

    An account past its first `onboarding_days` has one cutoff (created day + n) for every
    snapshot: its aggregates are built once per run (`static`), not once per batch of
    snapshots. Only the young accounts' cutoffs (the snapshot day itself) depend on the
    snapshots. An account without a created day is always young (its cutoff is the snapshot,
    as LEAST skips the missing term).
    """
    n = settings.onboarding_days
    mature = Statement(
        "onboarding_mature_cutoffs",
        f"""
        SELECT account_id, created_day, created_day + {n} AS cutoff_day
        FROM (SELECT account_id, {day_of_timestamp("created_at")} AS created_day FROM accounts)
             AS a
        WHERE created_day IS NOT NULL
        """,
        materialize=True,
        static=True,
    )
    young = Statement(
        "onboarding_young_cutoffs",
        f"""
        SELECT DISTINCT account_id, created_day, snap_day AS cutoff_day
        FROM snap
        WHERE created_day IS NULL OR snap_day < created_day + {n}
        """,
        materialize=True,
    )
    first_day = Statement(
        "user_first_day",
        """
        SELECT account_id, user_id, MIN(day) AS first_day
        FROM user_day WHERE user_id IS NOT NULL
        GROUP BY account_id, user_id
        """,
        materialize=True,
        static=True,
    )
    views = [mature, young, first_day]
    joins = {
        "onboarding_users": (
            "oa",
            "oa.account_id = s.account_id"
            f" AND oa.cutoff_day = LEAST(s.created_day + {n}, s.snap_day)",
        ),
        "onboarding_usage": (
            "ou",
            "ou.account_id = s.account_id AND ou.cutoff_day = oa.cutoff_day",
        ),
    }
    if "trainings" in tables:
        joins["onboarding_training"] = (
            "ot",
            "ot.account_id = s.account_id AND ot.cutoff_day = oa.cutoff_day",
        )
    for name, (alias, join_on) in joins.items():
        aggregate = _AGGREGATES[name]
        views += [
            Statement(
                f"{name}_mature",
                aggregate(settings, "onboarding_mature_cutoffs"),
                materialize=True,
                static=True,
            ),
            Statement(f"{name}_young", aggregate(settings, "onboarding_young_cutoffs")),
            Statement(
                name,
                f"SELECT * FROM {name}_mature UNION ALL SELECT * FROM {name}_young",
                alias=alias,
                join_on=join_on,
            ),
        ]
    return views


def _users(settings: FeatureSettings, cutoffs: str) -> str:
    """Users activated by each checkpoint (first active day before it and before the cutoff)."""
    activation = ", ".join(
        f"COUNT(DISTINCT CASE WHEN f.first_day < LEAST(o.created_day + {d}, o.cutoff_day)"
        f" THEN f.user_id END) AS activated_{d}d"
        for d in settings.activation_days
    )
    return f"""
        SELECT o.account_id, o.cutoff_day, {activation}
        FROM {cutoffs} AS o
        LEFT JOIN user_first_day AS f
          ON f.account_id = o.account_id AND f.first_day < o.cutoff_day
        GROUP BY o.account_id, o.cutoff_day
        """


def _usage(settings: FeatureSettings, cutoffs: str) -> str:
    """The first day of use and the modules used before each cutoff."""
    return f"""
        SELECT o.account_id, o.cutoff_day,
               MIN(u.day) AS first_value_day,
               BIT_COUNT(BIT_OR(u.modules)) AS onboarding_modules
        FROM {cutoffs} AS o
        LEFT JOIN user_day AS u
          ON u.account_id = o.account_id AND u.day < o.cutoff_day
        GROUP BY o.account_id, o.cutoff_day
        """


def _trainings(settings: FeatureSettings, cutoffs: str) -> str:
    """Trainings completed before each cutoff."""
    return f"""
        SELECT o.account_id, o.cutoff_day, COUNT(t.user_id) AS onboarding_trainings
        FROM {cutoffs} AS o
        LEFT JOIN trainings AS t
          ON t.account_id = o.account_id AND t.completed_at IS NOT NULL
         AND {day_of_timestamp("t.completed_at")} < o.cutoff_day
        GROUP BY o.account_id, o.cutoff_day
        """


_AGGREGATES = {
    "onboarding_users": _users,
    "onboarding_usage": _usage,
    "onboarding_training": _trainings,
}


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
