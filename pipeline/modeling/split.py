"""The out-of-time split: which snapshot dates train, validate and test the model.

Shared by training (which makes the split), evaluation (which tests on the same period) and the
backtest (which replays the test period), read back from `training_info.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import date

import numpy as np
import pandas as pd

from pipeline.core.errors import TrainingError
from pipeline.core.labels import RENEWAL_DATE, LabelRule

#: What a labelled row is in the split: a part, or purged (its outcome falls in a later part).
PARTS = ("train", "valid", "test")
PURGED = "purged"


@dataclass(frozen=True)
class Split:
    """The three parts, separated by each row's decision date (renewal + grace).

    Test: the rows whose snapshot falls in [test_start, test_end]. Validation: the earlier
    rows whose outcome is decided in [valid_start, valid_end] (valid_end is `embargo_days`
    before test_start). Training: the rows decided before valid_start, minus the embargo.
    A row whose outcome falls in a later part than its snapshot would put it is purged, so no
    renewal outcome is in two parts and no part learns from a later part's outcomes; no fixed
    horizon-long gap wastes the history of a company on monthly terms. `train_start` and
    `train_end` are the training rows' first and last snapshot (for the record).
    """

    train_start: date
    train_end: date
    valid_start: date
    valid_end: date
    test_start: date
    test_end: date
    embargo_days: int = 0

    def assign(
        self, snapshot_dates: pd.Series, renewal_dates: pd.Series, rule: LabelRule
    ) -> pd.Series:
        """'train', 'valid', 'test' or 'purged' per row, from its snapshot and decision date."""
        snap = pd.to_datetime(pd.Series(snapshot_dates)).reset_index(drop=True)
        decision = rule.decision_dates(pd.Series(renewal_dates)).reset_index(drop=True)
        embargo = pd.Timedelta(days=self.embargo_days)
        test_start = pd.Timestamp(self.test_start)
        valid_start = pd.Timestamp(self.valid_start)
        out = np.full(len(snap), PURGED, dtype=object)
        before_test = (snap < test_start).to_numpy()
        in_test = ~before_test & (snap <= pd.Timestamp(self.test_end)).to_numpy()
        train = before_test & (decision < valid_start - embargo).to_numpy()
        valid = (
            before_test
            & (decision >= valid_start).to_numpy()
            & (decision < test_start - embargo).to_numpy()
        )
        out[train] = "train"
        out[valid] = "valid"
        out[in_test] = "test"
        return pd.Series(out, index=pd.Series(snapshot_dates).index, dtype="string")

    def parts(self, table: pd.DataFrame, rule: LabelRule) -> dict[str, pd.DataFrame]:
        """The labelled rows of `table` per part, and the purged ones under 'purged'."""
        part = self.assign(table["snapshot_date"], table[RENEWAL_DATE], rule)
        return {name: table[(part == name).to_numpy()] for name in (*PARTS, PURGED)}

    def as_dict(self) -> dict[str, object]:
        return {k: (v if isinstance(v, int) else str(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_info(cls, info: dict) -> Split:
        """The split a model was trained with, from its training info."""
        try:
            fields = dict(info["split"])
            embargo = int(fields.pop("embargo_days", 0))
            dates = {k: pd.Timestamp(v).date() for k, v in fields.items()}
            return cls(**dates, embargo_days=embargo)
        except (KeyError, TypeError, ValueError) as err:
            raise TrainingError(f"training info has no usable split: {err}") from err


def purged_split(
    table: pd.DataFrame,
    *,
    valid_months: int,
    test_months: int,
    embargo_days: int,
    rule: LabelRule,
) -> Split:
    """The split of the labelled rows of `table`: test = the snapshots of the last
    `test_months`; validation = the outcomes decided in the `valid_months` before the test
    (less the embargo); training = the outcomes decided before (less the embargo).

    Raises a TrainingError naming the setting to change when a part would be empty.
    """
    dates = pd.to_datetime(pd.Series(table["snapshot_date"]).dropna().unique()).sort_values()
    if len(dates) == 0:
        raise TrainingError("no labelled snapshots: nothing to train on")
    last = dates[-1]
    test_start = last - pd.DateOffset(months=test_months) + pd.Timedelta(days=1)
    valid_start = test_start - pd.DateOffset(months=valid_months)
    valid_end = test_start - pd.Timedelta(days=embargo_days + 1)
    if valid_end < valid_start:
        raise TrainingError(
            f"train.embargo_days ({embargo_days}) is longer than the validation period "
            f"({valid_months} months): lower it or raise train.valid_months"
        )
    probe = Split(
        train_start=dates[0].date(),
        train_end=dates[0].date(),
        valid_start=valid_start.date(),
        valid_end=valid_end.date(),
        test_start=test_start.date(),
        test_end=last.date(),
        embargo_days=embargo_days,
    )
    part = probe.assign(table["snapshot_date"], table[RENEWAL_DATE], rule)
    train_dates = pd.to_datetime(pd.Series(table["snapshot_date"]).to_numpy()[part == "train"])
    if len(train_dates) == 0:
        raise TrainingError(
            f"labelled snapshots span {dates[0].date()} to {last.date()}: no outcome is decided "
            f"before the validation period starts ({valid_start.date()}) with "
            f"train.test_months = {test_months} and train.valid_months = {valid_months}; lower "
            "them or use more history"
        )
    return replace(probe, train_start=train_dates.min().date(), train_end=train_dates.max().date())


def long_term_days(table: pd.DataFrame, quantile: float = 0.9) -> int | None:
    """How long the data's terms last (the `quantile` over contracts of the longest time to
    renewal each contract shows, its snapshots seeing the term from near its start): what a
    label horizon must cover for most terms to be labelled from their start."""
    if "contract_id" not in table.columns or table.empty:
        return None
    ahead = (pd.to_datetime(table[RENEWAL_DATE]) - pd.to_datetime(table["snapshot_date"])).dt.days
    per_contract = ahead.groupby(table["contract_id"].to_numpy()).max()
    return int(per_contract.quantile(quantile)) if len(per_contract) else None
