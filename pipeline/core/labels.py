"""Labels: what `churned` means and when an outcome is decided, defined once.

A snapshot at day t is labelled by the renewal of the term active at t, on day r:
- churned = 1 when no following contract starts by r + grace; 0 when one does (a renewal);
- only when r is within the label horizon after t;
- only once the outcome is *decided*: on day r + grace. Before that a churn cannot be told
  from a late renewal, so the row is censored (empty), never counted as retained.

The decision day is used three times: by the label SQL (censor rows not decided by the data's
as-of date), by the purge between training and validation (no renewal outcome in both), and by
the backtest (censor what was not decided by the as-of date). All three call `LabelRule`, so
the rule cannot drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

LABEL = "churned"
ID_COLUMNS = ("account_id", "snapshot_date")
RENEWAL_DATE = "renewal_date"


@dataclass(frozen=True)
class LabelRule:
    """The label horizon and the renewal grace period (from params)."""

    horizon_days: int
    grace_days: int

    # --- SQL (the feature definitions: integer day numbers) ---------------------------------

    def decided_sql(self, renewal_day: str, by_day: int | str) -> str:
        """SQL: the outcome of a renewal on `renewal_day` is decided by day `by_day`."""
        return f"({renewal_day} + {int(self.grace_days)} <= {by_day})"

    def in_horizon_sql(self, renewal_day: str, snapshot_day: str) -> str:
        """SQL: the renewal falls within the label horizon after the snapshot."""
        return f"({renewal_day} - {snapshot_day} <= {int(self.horizon_days)})"

    # --- frames (purge and backtest: dates) --------------------------------------------------

    def decision_dates(self, renewal_dates: pd.Series) -> pd.Series:
        """The day each renewal's outcome is decided: renewal date + grace."""
        return pd.to_datetime(renewal_dates) + pd.Timedelta(days=self.grace_days)

    def decided(self, renewal_dates: pd.Series, *, by: date) -> np.ndarray:
        """True where the renewal's outcome is decided on or before `by`."""
        return (self.decision_dates(renewal_dates) <= pd.Timestamp(by)).to_numpy(dtype=bool)

    def decided_before(self, renewal_dates: pd.Series, *, start: date) -> np.ndarray:
        """True where the outcome is decided strictly before `start` (a period's first day)."""
        return self.decided(renewal_dates, by=start - timedelta(days=1))


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose outcome is known (censored rows are for scoring only)."""
    return table[table[LABEL].notna()]


def censor_undecided(frame: pd.DataFrame, *, as_of: date, rule: LabelRule) -> pd.DataFrame:
    """Labels only for renewals whose outcome was decided by the data's `as_of` date.

    A renewal is seen as soon as the next contract starts, but a churn only once the grace
    period has passed with none, so near the data's end the feature table knows the renewals
    and not yet the churns. Keeping those rows would count them all as retained and bias
    precision down; censoring them keeps both outcomes equally visible.
    """
    undecided = ~rule.decided(frame[RENEWAL_DATE], by=as_of)
    label = frame[LABEL].astype("Float64").mask(undecided)
    return frame.assign(**{LABEL: label})
