"""SQL fragments every family writes with: integer time, literals, safe ratios.

Time is handled as integers so DuckDB and Spark agree exactly: `*_epoch` columns are whole
seconds since 1970-01-01 UTC, `*_day` columns are whole days since then. The helpers write
DuckDB's dialect; SQLGlot transpiles it for Spark.
"""

from __future__ import annotations

SECONDS_PER_DAY = 86_400


def epoch(column: str) -> str:
    """Whole seconds since the epoch of a UTC timestamp column."""
    return f"CAST(FLOOR(EPOCH({column})) AS BIGINT)"


def day_of_timestamp(column: str) -> str:
    """Day number (days since 1970-01-01 UTC) of a UTC timestamp column."""
    return f"CAST(FLOOR(EPOCH({column}) / {SECONDS_PER_DAY}) AS BIGINT)"


def day_of_date(column: str) -> str:
    """Day number of a DATE column."""
    return f"CAST(FLOOR(EPOCH(CAST({column} AS TIMESTAMP)) / {SECONDS_PER_DAY}) AS BIGINT)"


def quote(value: str) -> str:
    """A text literal (single quotes doubled; SQLGlot escapes it for Spark)."""
    return "'" + str(value).replace("'", "''") + "'"


def quote_list(values: tuple[str, ...]) -> str:
    """Text values as a SQL list for `IN (...)`; NULL when empty, so `IN (NULL)` matches none."""
    return ", ".join(quote(v) for v in values) or "NULL"


def double(value: float) -> str:
    """A DOUBLE literal: a bare 1.5 is DOUBLE in DuckDB but DECIMAL in Spark, which then rounds
    divisions."""
    return f"CAST({float(value)!r} AS DOUBLE)"


def ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator, empty where the denominator is zero or empty."""
    return (
        f"CASE WHEN ({denominator}) IS NULL OR ({denominator}) = 0 THEN NULL "
        f"ELSE CAST({numerator} AS DOUBLE) / ({denominator}) END"
    )


def days_since(epoch_column: str) -> str:
    """Fractional days from an epoch-seconds column to the snapshot instant (alias `s`)."""
    return f"CAST(s.snap_epoch - {epoch_column} AS DOUBLE) / {SECONDS_PER_DAY}"


def flag(condition: str) -> str:
    """1 where the condition holds, else 0 (a boolean feature as a number on both engines)."""
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"
