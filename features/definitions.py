"""The feature table as SQL views (DuckDB dialect), assembled from the feature families.

The same statements run on DuckDB as written and on Apache Spark after SQLGlot transpiles them,
so they stick to constructs both engines share. Every statement is a named view; the engine
creates them in order (`Statement.materialize` marks the ones worth computing once).

The order: the snapshot rows and the shared usage grain (this module), each family's views
(`features/families/`, in registry order), the labels (`features/labels.py`), and the final
SELECT that joins them and writes each feature's declared expression. Point in time and the
integer time representation are described in `features.base` and `features.sql`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from features.base import DeclarationSettings, Feature, FeatureSettings, Statement
from features.labels import label_statement
from features.names import event_type_columns
from features.registry import FAMILIES, build_registry
from features.sql import (
    SECONDS_PER_DAY,
    day_of_date,
    day_of_timestamp,
    epoch,
    quote,
    quote_list,
)

if TYPE_CHECKING:
    from pipeline.core.config import Config

__all__ = [
    "SECONDS_PER_DAY",
    "DeclarationSettings",
    "FeatureSettings",
    "Statement",
    "day_of_date",
    "day_of_timestamp",
    "epoch",
    "feature_statements",
    "settings_from_config",
]


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


def _module_bits(settings: FeatureSettings) -> Statement:
    """A bit per product module, so distinct modules over a window are a BIT_OR away.

    Over a saved grain (`settings.grain_state_before_day`) the saved modules keep their bits
    (`module_bits_state`) and modules new to the events take the next ones, so the saved
    bit sets stay right; distinct counts do not depend on which bit a module has.
    """
    if settings.grain_state_before_day is None:
        sql = """
        SELECT module,
               CAST(POWER(2, ROW_NUMBER() OVER (ORDER BY module) - 1) AS BIGINT) AS bit
        FROM (SELECT DISTINCT module FROM usage_events) AS m
        """
    else:
        sql = """
        SELECT module, bit FROM module_bits_state
        UNION ALL
        SELECT n.module,
               CAST(POWER(2, k.saved + ROW_NUMBER() OVER (ORDER BY n.module) - 1) AS BIGINT)
        FROM (
            SELECT DISTINCT module FROM usage_events
            WHERE module NOT IN (SELECT module FROM module_bits_state)
        ) AS n
        CROSS JOIN (SELECT COUNT(*) AS saved FROM module_bits_state) AS k
        """
    return Statement("module_bits", sql, materialize=True, static=True)


def user_day_columns(settings: DeclarationSettings) -> dict[str, str]:
    """The user-day grain's measures: column -> its aggregate over the usage rows `e`.

    With `settings.usage_value` it sums the events' values (and counts the events that carry
    one); with `settings.event_types`, the events of each type (columns `events_type_<slug>`).
    The saved grain of an incremental run has exactly these columns.
    """
    columns = {
        "events": "SUM(e.count)",
        "advanced_events": f"SUM(CASE WHEN e.module IN ({quote_list(settings.advanced_modules)})"
        " THEN e.count ELSE 0 END)",
        "modules": "BIT_OR(b.bit)",
    }
    if settings.usage_value:
        columns["value_sum"] = "SUM(e.value)"
        columns["valued_events"] = "SUM(CASE WHEN e.value IS NOT NULL THEN e.count ELSE 0 END)"
    for event_type, column in event_type_columns(settings.event_types).items():
        columns[column] = (
            f"SUM(CASE WHEN e.event_type = {quote(event_type)} THEN e.count ELSE 0 END)"
        )
    return columns


def _user_day(settings: FeatureSettings) -> list[Statement]:
    """Usage pre-aggregated to account, user and day: the grain usage and onboarding read.

    One pass over the events, the only one. With a saved grain
    (`settings.grain_state_before_day`), the pass covers only the days from that day on
    (`user_day_new`) and `user_day` is the saved days and those together.
    """
    columns = user_day_columns(settings)
    day = day_of_timestamp("e.occurred_at")
    measures = ",\n               ".join(f"{agg} AS {col}" for col, agg in columns.items())
    since = settings.grain_state_before_day
    aggregate = f"""
        SELECT e.account_id, e.user_id, {day} AS day,
               {measures}
        FROM usage_events AS e
        JOIN module_bits AS b ON b.module = e.module
        {"" if since is None else f"WHERE {day} >= {since}"}
        GROUP BY e.account_id, e.user_id, {day}
        """
    if since is None:
        return [Statement("user_day", aggregate, materialize=True, static=True)]
    names = ", ".join(["account_id", "user_id", "day", *columns])
    return [
        Statement("user_day_new", aggregate, materialize=True, static=True),
        Statement(
            "user_day",
            f"""
            SELECT {names} FROM user_day_state WHERE day < {since}
            UNION ALL
            SELECT {names} FROM user_day_new
            """,
            static=True,
        ),
    ]


def _first_completion(*, has_trainings: bool) -> Statement:
    """Each user's first training completion (epoch seconds), for trained active users.

    Kept apart from `user_day` so the usage grain does not change as trainings arrive (an
    incremental run reuses the saved grain). Without trainings: no rows, so nobody is trained.
    """
    if has_trainings:
        sql = f"""
        SELECT account_id, user_id, MIN({epoch("completed_at")}) AS first_completion_epoch
        FROM trainings WHERE completed_at IS NOT NULL
        GROUP BY account_id, user_id
        """
    else:
        sql = """
        SELECT account_id, user_id, CAST(NULL AS BIGINT) AS first_completion_epoch
        FROM user_day WHERE 1 = 0
        """
    return Statement("user_first_completion", sql, materialize=True, static=True)


# --- assembly --------------------------------------------------------------------------------


def _requested(
    settings: FeatureSettings, tables: frozenset[str], feature_names: list[str]
) -> list[Feature]:
    """The declared features behind `feature_names`, or an error naming what cannot be built."""
    declared = {f.name: f for f in build_registry(settings.windows, settings=settings)}
    unknown = [name for name in feature_names if name not in declared]
    if unknown:
        raise ValueError(
            f"features {unknown} are not declared under these settings (a registry built with "
            "other settings? pass them: build_registry(windows, settings=settings))"
        )
    features = [declared[name] for name in feature_names]
    missing = {f.name: sorted(set(f.tables) - tables) for f in features if set(f.tables) - tables}
    if missing:
        raise ValueError(f"features need tables that are not present: {missing}")
    return features


def feature_statements(
    settings: FeatureSettings, tables: set[str], feature_names: list[str]
) -> list[Statement]:
    """Every view, in order; the last one, `features`, is the feature table with labels.

    `tables` are the optional tables present; a family's views that need an absent table are
    left out. `feature_names` fixes the output columns and their order (from the registry).
    """
    present = frozenset(tables)
    features = _requested(settings, present, feature_names)
    statements = [
        _snapshot_rows(),
        _module_bits(settings),
        *_user_day(settings),
        _first_completion(has_trainings="trainings" in present),
    ]
    for family in FAMILIES.values():
        statements += family.statements(settings, present)
    statements.append(label_statement(settings))
    joined = [st for st in statements if st.alias is not None]
    aliases = [st.alias for st in joined]
    assert len(aliases) == len(set(aliases)), f"two views share an alias: {aliases}"
    select = ",\n               ".join(f"{f.sql} AS {f.name}" for f in features)
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
            {chr(10).join(st.join_clause() for st in joined)}
            """,
        )
    )
    return statements


def _declared(config: Config) -> dict:
    """The declaration settings' values from the typed config's `features` section.

    `usage_value` is False here: whether usage_events carries values is a fact of the data,
    resolved where the data is read (as the advanced modules are).
    """
    f = config.features
    return dict(
        windows=tuple(sorted(set(f.windows))),
        onboarding_days=int(f.onboarding_days),
        activation_days=tuple(sorted(set(f.activation_days))),
        stickiness_days=int(f.stickiness_days),
        qbr_window_days=int(f.qbr_window_days),
        detractor_max_score=int(f.detractor_max_score),
        advanced_modules=tuple(f.advanced_modules or ()),
        event_types=tuple(f.event_types or ()),
        usage_value=False,
        attributes=tuple(sorted((f.attributes or {}).items())),
        ces_higher_is_easier=bool(f.ces_higher_is_easier),
    )


def settings_from_config(config: Config, as_of_day: int) -> FeatureSettings:
    """The definitions' settings from the typed config's `features` and `base` sections."""
    f = config.features
    rule = config.label_rule
    return FeatureSettings(
        **_declared(config),
        priority_weights={str(k): float(v) for k, v in f.priority_weights.items()},
        label_horizon_days=int(rule.horizon_days),
        renewal_grace_days=int(rule.grace_days),
        as_of_day=as_of_day,
    )


def registry_for(config: Config) -> list[Feature]:
    """The registry the config's feature settings declare (names, order, descriptions).

    Every caller that needs feature metadata (training, scoring, the report, the registry doc)
    builds it here, so the registry and the SQL are always built from the same settings.
    """
    settings = DeclarationSettings(**_declared(config))
    return build_registry(settings.windows, settings=settings)
