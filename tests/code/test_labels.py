"""The label rule is one rule: SQL labels, the training purge and the backtest's censoring agree
on when a renewal's outcome is decided."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd
import pytest

from pipeline.core.labels import LABEL, LabelRule, censor_undecided

RULE = LabelRule(horizon_days=365, grace_days=30)
EPOCH = date(1970, 1, 1)


def _day(d: date) -> int:
    return (d - EPOCH).days


@pytest.mark.parametrize("grace", [0, 1, 30])
def test_sql_and_frames_agree_on_the_decision_day(grace):
    rule = LabelRule(horizon_days=365, grace_days=grace)
    as_of = date(2025, 3, 1)
    renewals = [as_of - timedelta(days=k) for k in range(-3, 40)]
    frame = pd.DataFrame({"renewal_date": renewals})
    con = duckdb.connect()
    con.register("r", pd.DataFrame({"renewal_day": [_day(d) for d in renewals]}))
    in_sql = con.execute(f"SELECT {rule.decided_sql('renewal_day', _day(as_of))} AS d FROM r").df()[
        "d"
    ]
    in_frames = rule.decided(frame["renewal_date"], by=as_of)
    assert in_sql.tolist() == in_frames.tolist()
    # the boundary is where the rule says: decided exactly when renewal + grace <= as-of
    assert in_frames.tolist() == [d + timedelta(days=grace) <= as_of for d in renewals]


def test_in_horizon_sql_is_inclusive_of_the_horizon():
    con = duckdb.connect()
    sql = RULE.in_horizon_sql("r", "s")
    values = con.execute(f"SELECT {sql} FROM (SELECT 365 AS r, 0 AS s UNION ALL SELECT 366, 0)")
    assert [row[0] for row in values.fetchall()] == [True, False]


def test_censoring_uses_the_same_decision_day_as_the_labels():
    as_of = date(2025, 3, 1)
    frame = pd.DataFrame(
        {
            "renewal_date": [as_of - timedelta(days=30), as_of - timedelta(days=29)],
            LABEL: pd.array([0.0, 0.0], dtype="Float64"),
        }
    )
    out = censor_undecided(frame, as_of=as_of, rule=RULE)
    assert out[LABEL].tolist() == [0.0, pd.NA]
    assert frame[LABEL].tolist() == [0.0, 0.0]  # input untouched
