"""A tiny hand-made dataset for feature tests, and a helper that turns it into features.

Four accounts, each built around the cases the point-in-time definitions must get right, with
few enough rows that every feature can be worked out by hand (see test_features_fixtures.py):

- `mature`: created 2022-07-10, on its second term, renews on the day the term ends. Usage
  right at the window edges (exactly t - 30 days, exactly t, and two events whose local time
  is on the other side of midnight UTC), a deactivated admin, a training completed after t,
  two NPS answers stamped at the same instant.
- `no_usage`: no usage events, trainings, tickets, answers or touchpoints at all; its term
  ends without a renewal (a new contract starts after the grace period): churned.
- `young`: created 2024-04-22, 40 days before the main snapshot; one user's first activity
  comes after t.
- `support`: the SLA cases: a late first response, a ticket never answered and still open
  past its deadlines, a response after t to a deadline before t, deadlines still ahead at t,
  escalations resolved before and after t; renewed after a gap inside the grace period.

Usage events carry event types with a space, a quote and a backslash in them (and one
without a type) and a `value` on a few rows; CSAT/CES answers and account attributes sit on
the window edges too (exactly t - 30 days, exactly t, a value that starts to hold at t).
`ALL_KINDS` declares the features that exist only for some data (event types, values,
attributes); `SETTINGS` declares the rest.

Values are text, as a CSV export would give them; ingest parses and validates them exactly as
it would a user's data.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd

from features.definitions import FeatureSettings
from pipeline.data.sources import DirectorySource
from pipeline.feature_engine.build import build_features, day_number, present_tables
from pipeline.feature_engine.engines import DuckDBEngine, Engine
from pipeline.stages.ingest import ingest_source
from tests.conftest import write_dir

AS_OF = pd.Timestamp("2025-01-01", tz="UTC")
SNAPSHOT = date(2024, 6, 1)
LATER_SNAPSHOT = date(2024, 9, 1)
DATES = [SNAPSHOT, LATER_SNAPSHOT]

SETTINGS = FeatureSettings(
    windows=(30, 90),
    advanced_modules=("automation", "analytics", "api"),
    priority_weights={"low": 1, "normal": 2, "high": 3, "urgent": 5},
    label_horizon_days=365,
    renewal_grace_days=30,
    as_of_day=day_number(AS_OF.date()),
    # the named settings the hand-computed values assume (params.yaml's defaults)
    onboarding_days=90,
    activation_days=(30, 60, 90),
    stickiness_days=30,
    qbr_window_days=90,
    detractor_max_score=6,
)

# Every kind of feature. Ingest normalises categories (lowercase, spaces and dashes as "_"),
# so the event types and attribute names are spelled as in the interim data: "API call" is
# api_call there, "Discount %" is discount_%. "api_call!" never occurs and shares its slug
# with api_call; "region_code" never occurs.
ALL_KINDS = replace(
    SETTINGS,
    event_types=("view", "api_call", "api_call!", "rule's_run", "report\\export"),
    usage_value=True,
    attributes=(
        ("channel", "category"),
        ("discount_%", "number"),
        ("employees", "number"),
        ("region_code", "category"),
    ),
)

MATURE, NO_USAGE, YOUNG, SUPPORT = "mature", "no_usage", "young", "support"
ACCOUNTS = (MATURE, NO_USAGE, YOUNG, SUPPORT)


def _frame(columns: list[str], rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns, dtype=object)


def fixture_tables() -> dict[str, pd.DataFrame]:
    """The raw tables (contract column names, text values); a fresh copy on every call."""
    accounts = _frame(
        ["account_id", "account_name", "segment", "industry", "region", "created_at", "csm_id"],
        [
            (MATURE, "Mature Co", "enterprise", "retail", "emea", "2022-07-10T09:00:00Z", None),
            (NO_USAGE, "Idle Ltd", "smb", None, None, "2023-03-01T00:00:00Z", None),
            (YOUNG, "Young Inc", "mid_market", "software", "na", "2024-04-22T15:00:00Z", None),
            (SUPPORT, "Ticket AG", "enterprise", "finance", "emea", "2023-06-01T00:00:00Z", None),
        ],
    )
    contracts = _frame(
        ["contract_id", "account_id", "start_date", "end_date", "arr", "seats", "plan"],
        [
            ("K-M1", MATURE, "2022-07-10", "2023-07-10", "10000", "8", "pro"),
            ("K-M2", MATURE, "2023-07-10", "2024-07-10", "12000", "10", "pro"),
            ("K-M3", MATURE, "2024-07-10", "2025-07-10", "15000", "12", "pro"),
            ("K-N1", NO_USAGE, "2023-03-01", "2024-09-01", "6000", "5", "starter"),
            # starts 44 days after K-N1 ends: beyond the 30-day grace, a win-back, not a renewal
            ("K-N2", NO_USAGE, "2024-10-15", "2025-10-15", "3000", "3", "starter"),
            ("K-Y1", YOUNG, "2024-04-22", "2026-04-22", "30000", "20", "growth"),
            ("K-S1", SUPPORT, "2023-06-01", "2024-08-01", "50000", "50", "enterprise"),
            # starts 19 days after K-S1 ends: inside the grace period, a renewal
            ("K-S2", SUPPORT, "2024-08-20", "2025-08-20", "40000", "40", "enterprise"),
        ],
    )
    users = _frame(
        ["user_id", "account_id", "created_at", "role", "deactivated_at"],
        [
            ("M1", MATURE, "2022-07-10T10:00:00Z", "admin", None),
            ("M2", MATURE, "2022-08-01T09:00:00Z", "member", None),
            ("M3", MATURE, "2023-01-10T09:00:00Z", "member", None),
            ("M4", MATURE, "2022-07-11T09:00:00Z", "admin", "2024-03-01T00:00:00Z"),
            ("M5", MATURE, "2024-05-01T09:00:00Z", "admin", None),
            ("N1", NO_USAGE, "2023-03-02T09:00:00Z", "admin", None),
            ("Y1", YOUNG, "2024-04-22T16:00:00Z", "admin", None),
            ("Y2", YOUNG, "2024-04-22T16:00:00Z", "member", None),
            ("Y3", YOUNG, "2024-04-22T16:00:00Z", "member", None),
            ("Y4", YOUNG, "2024-04-22T16:00:00Z", "member", None),
            ("S1", SUPPORT, "2023-06-01T01:00:00Z", "admin", None),
            ("S2", SUPPORT, "2023-06-01T01:00:00Z", "member", None),
        ],
    )
    # Event types with a space, a quote, a backslash and none at all; a `value` on a few rows.
    usage_events = _frame(
        ["account_id", "user_id", "occurred_at", "module", "event_type", "count", "value"],
        [
            (MATURE, "M1", "2022-07-15T10:00:00Z", "dashboard", "view", "1", None),
            (MATURE, "M2", "2022-08-20T10:00:00Z", "reports", "view", "1", None),
            (MATURE, "M3", "2024-02-15T09:00:00Z", "dashboard", "view", "1", "7"),
            (MATURE, "M4", "2024-02-20T09:00:00Z", "reports", "view", "1", None),
            (MATURE, "M3", "2024-04-10T09:00:00Z", "dashboard", "view", "2", None),
            (MATURE, "M3", "2024-05-01T23:59:59Z", "api", "API call", "1", "100"),
            (MATURE, "M1", "2024-05-02T00:00:00Z", "dashboard", "view", "4", "10.5"),
            (MATURE, "M2", "2024-05-20T10:00:00Z", "reports", "view", "3", None),
            (MATURE, "M1", "2024-06-01T00:30:00+02:00", "automation", "rule's run", "2", "4"),
            (MATURE, "M2", "2024-05-31T23:30:00-02:00", "api", "API call", "7", "50"),
            (MATURE, "M2", "2024-06-01T00:00:00Z", "analytics", "view", "5", "1000"),
            (YOUNG, "Y1", "2024-04-23T08:00:00Z", "dashboard", "view", "2", None),
            (YOUNG, "Y2", "2024-05-10T08:00:00Z", "analytics", "view", "3", None),
            (YOUNG, "Y3", "2024-05-25T08:00:00Z", "dashboard", "view", "1", None),
            (YOUNG, "Y2", "2024-05-25T09:00:00Z", "reports", "view", "4", None),
            (YOUNG, "Y3", "2024-05-26T08:00:00Z", "dashboard", None, "1", None),
            (YOUNG, "Y4", "2024-06-15T08:00:00Z", "dashboard", "view", "1", None),
            (SUPPORT, "S1", "2023-07-01T10:00:00Z", "dashboard", "view", "1", None),
            (SUPPORT, "S2", "2024-03-10T10:00:00Z", "dashboard", "report\\export", "5", None),
            (SUPPORT, "S1", "2024-05-15T10:00:00Z", "api", "API call", "10", "0"),
        ],
    )
    trainings = _frame(
        ["user_id", "account_id", "course_id", "enrolled_at", "completed_at", "score"],
        [
            ("M1", MATURE, "basics", "2024-04-10T00:00:00Z", "2024-04-15T12:00:00Z", "90"),
            ("M2", MATURE, "advanced", "2024-05-01T00:00:00Z", "2024-05-10T12:00:00Z", "70"),
            ("M4", MATURE, "basics", "2023-10-01T00:00:00Z", "2023-10-05T00:00:00Z", "80"),
            ("M3", MATURE, "basics", "2024-05-25T00:00:00Z", "2024-06-05T00:00:00Z", "100"),
            ("M5", MATURE, "basics", "2024-05-15T00:00:00Z", None, None),
            ("Y1", YOUNG, "basics", "2024-05-01T00:00:00Z", "2024-05-20T06:00:00Z", "85"),
            ("Y2", YOUNG, "basics", "2024-05-25T00:00:00Z", "2024-06-10T00:00:00Z", "60"),
        ],
    )
    support_tickets = _frame(
        [
            "ticket_id",
            "account_id",
            "priority",
            "opened_at",
            "first_response_at",
            "resolved_at",
            "sla_first_response_hours",
            "sla_resolution_hours",
            "escalated",
        ],
        [
            # answered late, resolved on time
            ("T1", SUPPORT, "high", "2024-05-10T08:00:00Z", "2024-05-10T14:00:00Z",
             "2024-05-11T08:00:00Z", "4", "48", "false"),
            # never answered, still open past both deadlines; escalated but not resolved
            ("T2", SUPPORT, "urgent", "2024-05-20T00:00:00Z", None, None, "1", "72", "true"),
            # answered after t to a deadline before t; resolution due after t
            ("T3", SUPPORT, "normal", "2024-05-31T20:00:00Z", "2024-06-01T09:00:00Z",
             "2024-06-01T10:00:00Z", "2", "24", "true"),
            # both deadlines still ahead at t (the answer will be late, but only after t)
            ("T4", SUPPORT, "low", "2024-05-31T23:00:00Z", "2024-06-01T10:00:00Z",
             "2024-06-02T12:00:00Z", "8", "48", "false"),
            # answered on time, resolved late, escalated, closed before t
            ("T5", SUPPORT, "high", "2024-04-20T09:00:00Z", "2024-04-20T10:00:00Z",
             "2024-04-25T09:00:00Z", "4", "24", "true"),
            # the 90 days before the last 90: one resolution breach
            ("T6", SUPPORT, "normal", "2024-02-01T09:00:00Z", "2024-02-01T10:00:00Z",
             "2024-02-05T09:00:00Z", "4", "24", "true"),
        ],
    )  # fmt: skip
    nps_responses = _frame(
        ["account_id", "user_id", "responded_at", "score"],
        [
            (MATURE, "M1", "2024-05-10T12:00:00Z", "4"),
            (MATURE, "M2", "2024-04-15T00:00:00Z", "10"),
            (MATURE, "M3", "2024-04-15T00:00:00Z", "6"),
            (MATURE, None, "2024-01-20T00:00:00Z", "9"),
            (MATURE, "M1", "2024-07-01T00:00:00Z", "0"),
            (YOUNG, "Y1", "2024-05-15T00:00:00Z", "9"),
        ],
    )
    satisfaction_responses = _frame(
        ["account_id", "user_id", "responded_at", "survey", "score"],
        [
            (MATURE, "M1", "2024-05-02T00:00:00Z", "csat", "4"),
            (MATURE, "M2", "2024-05-01T23:59:59Z", "csat", "2"),
            (MATURE, "M2", "2024-05-20T10:00:00Z", "csat", "5"),
            (MATURE, "M3", "2024-05-20T10:00:00Z", "csat", "2"),
            (MATURE, "M1", "2024-06-01T00:00:00Z", "csat", "1"),
            (MATURE, None, "2024-03-03T00:00:00Z", "ces", "6"),
            (MATURE, "M2", "2024-05-10T00:00:00Z", "ces", "2"),
            (MATURE, "M3", "2023-12-01T00:00:00Z", "ces", "7"),
            (YOUNG, "Y1", "2024-05-15T00:00:00Z", "csat", "80"),
            (SUPPORT, "S1", "2024-04-01T00:00:00Z", "ces", "5"),
        ],
    )
    csm_touchpoints = _frame(
        ["account_id", "occurred_at", "kind"],
        [
            (MATURE, "2024-05-02T00:00:00Z", "call"),
            (MATURE, "2024-03-02T23:00:00Z", "qbr"),
            (MATURE, "2024-01-15T10:00:00Z", "exec_sponsor"),
            (MATURE, "2024-06-01T00:00:00Z", "exec_sponsor"),
            (MATURE, "2024-03-15T10:00:00Z", "meeting"),
            (YOUNG, "2024-05-05T10:00:00Z", "qbr"),
            (SUPPORT, "2024-05-31T12:00:00Z", "exec_sponsor"),
        ],
    )
    account_attributes = _frame(
        ["account_id", "attribute", "value", "valid_from"],
        [
            (MATURE, "employees", "120", "2023-01-01T00:00:00Z"),
            (MATURE, "employees", "150", "2024-06-01T00:00:00Z"),
            (MATURE, "channel", "partner", "2022-07-10T09:00:00Z"),
            (MATURE, "channel", "direct", "2024-03-01T00:00:00Z"),
            (MATURE, "Discount %", "12.5", "2024-01-01T00:00:00Z"),
            (YOUNG, "employees", "about 40", "2024-04-22T15:00:00Z"),
            (YOUNG, "channel", "partner", "2024-04-22T15:00:00Z"),
            (YOUNG, "channel", None, "2024-05-15T00:00:00Z"),
            (SUPPORT, "employees", "1e3", "2023-06-01T00:00:00Z"),
            (SUPPORT, "employees", "2000", "2024-10-01T00:00:00Z"),
        ],
    )
    return {
        "accounts": accounts,
        "contracts": contracts,
        "users": users,
        "usage_events": usage_events,
        "trainings": trainings,
        "support_tickets": support_tickets,
        "nps_responses": nps_responses,
        "satisfaction_responses": satisfaction_responses,
        "csm_touchpoints": csm_touchpoints,
        "account_attributes": account_attributes,
    }


def ingest_tables(
    tables: dict[str, pd.DataFrame], work_dir: Path, *, as_of: pd.Timestamp = AS_OF
) -> tuple[Path, set[str]]:
    """Write `tables` as CSV under `work_dir/raw` and ingest them into `work_dir/interim`.

    Returns the interim directory and the tables ingest accepted. Every row must pass: a row
    quarantined without notice would silently change the hand-computed expectations.
    """
    raw_dir = write_dir(tables, Path(work_dir) / "raw")
    interim_dir = Path(work_dir) / "interim"
    report = ingest_source(DirectorySource(raw_dir), interim_dir, as_of=as_of)
    rejected = {
        name: dict(t["quarantined_by_reason"])
        for name, t in report["tables"].items()
        if t["rows_quarantined"]
    }
    assert not rejected, f"fixture rows were quarantined: {rejected}"
    return interim_dir, present_tables(report)


def features_from_interim(
    interim_dir: Path,
    tables_present: set[str],
    dates: list[date],
    *,
    engine: Engine,
    settings: FeatureSettings = SETTINGS,
) -> pd.DataFrame:
    """The feature table (features, metadata and label) for `dates` on `engine`."""
    return build_features(engine, interim_dir, tables_present, list(dates), settings).table


def compute_features(
    tables: dict[str, pd.DataFrame],
    work_dir: Path,
    dates: list[date] = DATES,
    *,
    engine: Engine | None = None,
    settings: FeatureSettings = SETTINGS,
) -> pd.DataFrame:
    """Ingest `tables` into `work_dir` and build their features for `dates`.

    Without an `engine`, a single-threaded DuckDB is opened and closed here; a given engine is
    left open for the caller.
    """
    interim_dir, present = ingest_tables(tables, work_dir)
    if engine is not None:
        return features_from_interim(interim_dir, present, dates, engine=engine, settings=settings)
    duckdb = DuckDBEngine(threads=1)
    try:
        return features_from_interim(interim_dir, present, dates, engine=duckdb, settings=settings)
    finally:
        duckdb.close()
