"""Column builders: integer codes and microsecond offsets to the pandas columns of a table.

The generators work in numpy (indices into vocabularies, microseconds since start_date); these
turn them into the columns the raw tables hold: Arrow-backed strings (built through a
dictionary, so millions of rows cost one small array of names), UTC timestamps, and dates as
``datetime.date`` objects.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa


def sequential_ids(prefix: str, count: int, width: int) -> pa.Array:
    """Ids ``prefix`` + 1..count, zero-padded to ``width`` digits (wider if count needs it)."""
    width = max(width, len(str(count)))
    numbers = np.arange(1, count + 1).astype(str)
    return pa.array(np.char.add(prefix, np.char.zfill(numbers, width)), type=pa.string())


def str_column(values: pa.Array | np.ndarray | list, codes: np.ndarray | None = None) -> pd.Series:
    """A pandas ``str`` column (Arrow-backed), optionally by indexing a small dictionary."""
    arr = values if isinstance(values, pa.Array) else pa.array(np.asarray(values, dtype=object))
    if codes is not None:
        arr = pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32()), arr).cast(
            pa.string()
        )
    return pd.Series(arr, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def ts_column(start_date: date, rel_us: np.ndarray, valid: np.ndarray | None = None) -> pd.Series:
    """UTC timestamps (microseconds) from offsets relative to start_date; NaT where not valid."""
    base = np.datetime64(start_date, "us")
    values = base + rel_us.astype("timedelta64[us]")
    if valid is not None:
        values = np.where(valid, values, np.datetime64("NaT", "us"))
    return pd.Series(pd.DatetimeIndex(values).tz_localize("UTC"))


def date_column(start_date: date, day: np.ndarray) -> pd.Series:
    """Dates as ``datetime.date`` objects: what pandas gives back when reading a date32 column."""
    values = np.datetime64(start_date, "D") + day.astype("timedelta64[D]")
    return pd.Series(values.astype(object), dtype=object)
