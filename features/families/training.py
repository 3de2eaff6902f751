"""User training coverage: completions, scores, trained users and admins.

`trained_user_share` reads the usage view (`u`): who was active comes from usage, whether they
had completed a training by t from `user_day`'s first completion.
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.plays import PLAYS
from features.sql import SECONDS_PER_DAY, days_since, epoch, ratio


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
    if "trainings" not in tables:
        return []
    windows = ", ".join(
        f"COUNT(CASE WHEN t.completed_epoch >= s.snap_epoch - {w * SECONDS_PER_DAY}"
        f" THEN 1 END) AS trainings_completed_{w}d"
        for w in settings.windows
    )
    views = [
        Statement(
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
            alias="tr",
        )
    ]
    if "users" in tables:
        views.append(_admins_trained())
    return views


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
        alias="ad",
    )


def _per_window(w: int, settings: DeclarationSettings) -> list[Feature]:
    return [
        Feature(
            name=f"trainings_completed_{w}d",
            family="training",
            description=f"Trainings completed in the last {w} days",
            unit="trainings",
            dtype="int",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["enablement"],
            tables=("trainings",),
            window_days=w,
            sql=f"tr.trainings_completed_{w}d",
        ),
    ]


def _fixed(settings: DeclarationSettings) -> list[Feature]:
    return [
        Feature(
            name="trained_user_share",
            family="training",
            description="Share of active users who completed a training",
            unit="share",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["enablement"],
            monotone=True,
            tables=("trainings",),
            when_missing=f"no active users in the last {settings.max_window} days",
            sql=ratio("u.trained_active_users", f"u.active_users_{settings.max_window}d"),
        ),
        Feature(
            name="mean_training_score",
            family="training",
            description="Mean assessment score of completed trainings",
            unit="points",
            dtype="float",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["enablement"],
            tables=("trainings",),
            when_missing="no completed training with a score",
            sql="tr.mean_training_score",
        ),
        Feature(
            name="admins_trained",
            family="training",
            description="Admins who completed a training",
            unit="admins",
            dtype="int",
            direction="lower_is_riskier",
            actionable=True,
            play=PLAYS["admin_training"],
            tables=("trainings", "users"),
            sql="ad.admins_trained",
        ),
        Feature(
            name="days_since_last_training",
            family="training",
            description="Days since a user last completed a training",
            unit="days",
            dtype="float",
            direction="higher_is_riskier",
            actionable=True,
            play=PLAYS["enablement"],
            tables=("trainings",),
            when_missing="no training completed yet",
            sql=days_since("tr.last_completion_epoch"),
        ),
    ]


FAMILY = FeatureFamily(
    name="training",
    title="User training coverage",
    tables=("trainings", "users"),
    views=_views,
    per_window=_per_window,
    fixed=_fixed,
)
