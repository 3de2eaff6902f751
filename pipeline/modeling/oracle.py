"""The simulator's oracles beside a model's test rows (demo and profile data only).

Two ceilings, both read from the ground truth the simulate stage writes next to the raw data:

- the full-information oracle: the probability each renewal decision was drawn with, from the
  latent state of the window just before it. No model scoring a snapshot months earlier can
  know that state, so it flatters the gap;
- the point-in-time (PIT) oracle: the same decision's expected probability given what the
  world held at the snapshot (the simulator's Monte Carlo over the rest of the path). That is
  the fair target: a perfect model of the snapshot would reach it and no further.

Both join on the test rows' own keys; a row the truth does not hold gets NaN, and the caller
reports the matched share instead of dropping rows.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["attach_oracle", "attach_pit_oracle"]


def _dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.date


def attach_oracle(test: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """The simulator's true churn probability of each test row's renewal decision (by account
    and renewal date), aligned with ``test``; NaN where the truth has no such decision."""
    keys = truth.rename(columns={"decision_date": "renewal_date"})[
        ["account_id", "renewal_date", "true_churn_probability"]
    ].copy()
    keys["renewal_date"] = _dates(keys["renewal_date"])
    keys["account_id"] = keys["account_id"].astype("string")
    merged = test[["account_id", "renewal_date"]].merge(
        keys, on=["account_id", "renewal_date"], how="left", validate="many_to_one"
    )
    return pd.Series(merged["true_churn_probability"].to_numpy(), index=test.index)


def attach_pit_oracle(test: pd.DataFrame, pit: pd.DataFrame) -> pd.Series:
    """The PIT oracle's probability of each test row (by account, snapshot date and renewal
    date: the same renewal seen from the same day), aligned with ``test``; NaN where the
    oracle's snapshot grid has no such row (another snapshot cadence, or a snapshot outside
    the renewal's term)."""
    keys = pit[["account_id", "snapshot_date", "renewal_date", "pit_churn_probability"]].copy()
    keys["account_id"] = keys["account_id"].astype("string")
    rows = test[["account_id", "snapshot_date", "renewal_date"]].copy()
    for frame in (keys, rows):
        frame["snapshot_date"] = _dates(frame["snapshot_date"])
        frame["renewal_date"] = _dates(frame["renewal_date"])
    rows["account_id"] = rows["account_id"].astype("string")
    merged = rows.merge(
        keys, on=["account_id", "snapshot_date", "renewal_date"], how="left", validate="many_to_one"
    )
    return pd.Series(merged["pit_churn_probability"].to_numpy(), index=test.index)
