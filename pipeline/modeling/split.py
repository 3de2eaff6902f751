"""The out-of-time split: which snapshot dates train, validate and test the model.

Shared by training (which makes the split), evaluation (which tests on the same period) and the
backtest (which replays the test period), read back from `training_info.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import pandas as pd

from pipeline.core.errors import TrainingError


@dataclass(frozen=True)
class Split:
    """Snapshot date ranges (inclusive) of the three periods."""

    train_start: date
    train_end: date
    valid_start: date
    valid_end: date
    test_start: date
    test_end: date

    def assign(self, snapshot_dates: pd.Series) -> pd.Series:
        """'train', 'valid', 'test' or missing (in a gap) per snapshot date."""
        d = pd.to_datetime(snapshot_dates)
        out = pd.Series(pd.NA, index=snapshot_dates.index, dtype="string")
        for name in ("train", "valid", "test"):
            lo = pd.Timestamp(getattr(self, f"{name}_start"))
            hi = pd.Timestamp(getattr(self, f"{name}_end"))
            out[(d >= lo) & (d <= hi)] = name
        return out

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_info(cls, info: dict) -> Split:
        """The split a model was trained with, from its training info."""
        try:
            return cls(**{k: pd.Timestamp(v).date() for k, v in info["split"].items()})
        except (KeyError, TypeError, ValueError) as err:
            raise TrainingError(f"training info has no usable split: {err}") from err


def out_of_time_split(
    labelled_dates: pd.Series, *, valid_months: int, test_months: int, gap_days: int
) -> Split:
    """Periods from the labelled snapshot dates: test = the last `test_months`, validation =
    the `valid_months` ending `gap_days` before the test starts, train = everything before.

    The gap between the last training (and validation) snapshot and the first test snapshot is
    at least `gap_days`, the label horizon: no label window is shared with the test period.
    """
    dates = pd.to_datetime(pd.Series(labelled_dates).dropna().unique()).sort_values()
    if len(dates) == 0:
        raise TrainingError("no labelled snapshots: nothing to train on")
    last = dates[-1]
    test_start = last - pd.DateOffset(months=test_months) + pd.Timedelta(days=1)
    valid_end = test_start - pd.Timedelta(days=gap_days)
    valid_start = valid_end - pd.DateOffset(months=valid_months) + pd.Timedelta(days=1)
    train_dates = dates[dates < valid_start]
    if len(train_dates) == 0:
        raise TrainingError(
            f"labelled snapshots span {dates[0].date()} to {last.date()}: too short for "
            f"{test_months} test months, a {gap_days}-day gap and {valid_months} validation "
            "months; lower train.test_months/valid_months or use more history"
        )
    return Split(
        train_start=train_dates[0].date(),
        train_end=train_dates[-1].date(),
        valid_start=valid_start.date(),
        valid_end=valid_end.date(),
        test_start=test_start.date(),
        test_end=last.date(),
    )
