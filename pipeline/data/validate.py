"""Pure validation and normalisation of one input table against the data contract.

A problem with the table as a whole (a missing column, a column of the wrong type) raises
`DataContractError`. A problem with single rows quarantines those rows with reason codes, so a
user's pipeline keeps running on the good rows and nothing is lost silently: every row read is
either accepted or quarantined. The reason codes are listed in `docs/data-contract.md`.

Some problems cost a field, not the row, because dropping the row would cost more than the
field is worth: a lifecycle field stamped at or after as-of (a user deactivated after the
extract) is blanked, a CSM's unusable email is blanked, an account whose CSM is unknown keeps
its CSM id. Those rows are accepted and counted (`blanked_after_as_of`, `blanked_by_reason`,
`unknown_references`), so the report still says what was changed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow

from pipeline.core.errors import DataContractError
from pipeline.data.contract import (
    EARLIEST_DATE,
    PARSE_ERROR,
    ROW_STAMPS,
    ColumnSpec,
    TableSpec,
    pandas_dtype,
    pandera_schema,
)

SOURCE_ROW = "_source_row"
REASON = "_reason"

# A time of day followed by a UTC offset or Z: only then does a string carry its time zone.
# (A bare date such as 2024-01-01 ends in "-01", which is not an offset.)
_HAS_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.I)
# Databases and log exports write "2024-05-01 10:00:00 UTC"; the zone is as explicit as a Z.
_UTC_SUFFIX = re.compile(r"\d\s*UTC$", re.I)
_UTC_WORD = re.compile(r"\s*UTC$", re.I)
# The time and zone of a timestamp, for a date column: "2024-05-01T00:00:00+02:00" is
# 1 May where it was written, so the day is read before the offset, never via UTC.
_TIME_ZONE_SUFFIX = re.compile(
    r"(\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$", re.I
)
# An unknown value is shown (log, report) cut to this length: it may be a whole merged row.
_SHOWN_CHARS = 80
# Whole numbers beyond this cannot be stored as int64 (and are never a real count).
_INT_LIMIT = 2.0**63
# pandera names its failed checks by the check function; ours name the rule that was broken.
_PANDERA_CHECK_CODES = {
    "not_nullable": "missing_value",
    "isin": "allowed_values",
    "greater_than_or_equal_to": "below_minimum",
    "less_than_or_equal_to": "above_maximum",
}
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


@dataclass(frozen=True)
class NumericBounds:
    """A plausible range for one numeric column (`ingest.bounds`); None keeps the contract's."""

    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class ValidationContext:
    """What validating one table needs to know about the data as a whole.

    `keys` holds the accepted key columns of tables validated earlier (for foreign keys);
    `account_created` maps account_id to the account's created_at (UTC). The user's settings
    are per table: `value_map` ({table: {column: {their_value: contract_value}}}) is applied
    before anything is checked; `bounds` ({table: {column: NumericBounds}}) overrides the
    contract's plausible ranges; `max_text_chars` (None: no limit) catches a field that
    swallowed its neighbours through an unbalanced quote.
    """

    as_of: pd.Timestamp
    keys: dict[str, pd.DataFrame] = field(default_factory=dict)
    account_created: pd.Series | None = None
    naive_timezone: str | None = None
    value_map: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)
    max_text_chars: int | None = None
    bounds: Mapping[str, Mapping[str, NumericBounds]] = field(default_factory=dict)


@dataclass
class TableResult:
    """Accepted rows (typed, normalised) and quarantined rows (raw values plus reasons).

    `accepted` is a pandas frame from `validate_table` and an Arrow table (typed as the
    interim Parquet) from the Arrow path of `pipeline.data.validate_fast`.

    The counters beside the reasons describe accepted rows that were changed or flagged, not
    dropped: `blanked_after_as_of` {column: n}, `blanked_by_reason` {code: n} (a field that
    failed its pattern), `unknown_references` {code: n} (a soft foreign key without a match).
    `unknown_values` {column: {export value: n}} counts the values outside a category's
    allowed set (those rows are quarantined), so the user knows what to put in value_map.
    """

    accepted: pd.DataFrame | pa_arrow.Table
    quarantined: pd.DataFrame
    reason_counts: Counter[str]
    ignored_columns: list[str]
    defaulted_columns: list[str]
    unknown_values: dict[str, Counter[str]] = field(default_factory=dict)
    blanked_after_as_of: Counter[str] = field(default_factory=Counter)
    blanked_by_reason: Counter[str] = field(default_factory=Counter)
    unknown_references: Counter[str] = field(default_factory=Counter)

    @property
    def rows_read(self) -> int:
        return len(self.accepted) + len(self.quarantined)


class _Reasons:
    """Collects reason codes per row position, in the order they were found."""

    def __init__(self, n_rows: int) -> None:
        self.n_rows = n_rows
        self.masks: dict[str, np.ndarray] = {}

    def add(self, code: str, mask: pd.Series | np.ndarray) -> None:
        arr = np.asarray(mask, dtype=bool)
        if not arr.any():
            return
        if code in self.masks:
            self.masks[code] = self.masks[code] | arr
        else:
            self.masks[code] = arr

    def any(self) -> np.ndarray:
        out = np.zeros(self.n_rows, dtype=bool)
        for mask in self.masks.values():
            out |= mask
        return out

    def labels(self, positions: np.ndarray) -> list[str]:
        parts: list[list[str]] = [[] for _ in range(len(positions))]
        for code, mask in self.masks.items():
            for i in np.flatnonzero(mask[positions]):  # only the (few) rows that hit
                parts[i].append(code)
        return ["; ".join(p) for p in parts]

    def counts(self) -> Counter[str]:
        return Counter({code: int(mask.sum()) for code, mask in self.masks.items()})


def _examples(raw: pd.DataFrame, mask: np.ndarray | pd.Series, columns: list[str]) -> pd.DataFrame:
    return raw.loc[np.asarray(mask, dtype=bool), columns].head(5)


def _blank_to_na(values: pd.Series) -> pd.Series:
    text = values.astype(pandas_dtype("text")).str.strip()
    return text.mask(text == "", pd.NA)


def _parse_ids(values: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(values.dtype):
        # Integer ids that went through a float column (NaN forces float) print as "12.0".
        finite = values.dropna()
        if len(finite) and (finite == np.floor(finite)).all():
            values = values.astype("Int64")
    return _blank_to_na(values)


def normalise_category(values: pd.Series) -> pd.Series:
    """Category values as ingest stores them: lower case, runs of spaces and dashes as "_"."""
    # Categories have few distinct values: normalise those once, then map back to the rows.
    codes, uniques = pd.factorize(_blank_to_na(values))
    normalised = pd.Series(uniques, dtype=pandas_dtype("category")).str.lower()
    normalised = normalised.str.replace(r"[\s\-]+", "_", regex=True).to_numpy()
    out = pd.Series(
        pd.array(normalised, dtype=pandas_dtype("category")).take(codes, allow_fill=True)
    )
    return out.set_axis(values.index)


def _parse_timestamps(
    values: pd.Series, spec: TableSpec, col: ColumnSpec, naive_timezone: str | None, raw
) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse to UTC; returns (parsed, unparseable mask, missing-time-zone mask)."""
    n = len(values)
    none = np.zeros(n, dtype=bool)
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype(pandas_dtype("timestamp")), none, none
    if pd.api.types.is_datetime64_dtype(dtype):
        return _localise_naive(values, spec, col, naive_timezone, raw), none, none
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        raise DataContractError(
            spec.name,
            col.name,
            f"expected timestamps but the column holds {dtype} values (convert them to ISO 8601 "
            "timestamps with a UTC offset, e.g. 2024-05-01T09:30:00Z)",
            raw[[col.name]].head(5),
        )
    text = _blank_to_na(values)
    present = text.notna().to_numpy()
    aware = text.str.contains(_HAS_OFFSET, na=False).to_numpy()
    naive = present & ~aware
    if naive.any():  # only the (usually no) values without an offset pay for this check
        suffixed = np.zeros(n, dtype=bool)
        suffixed[naive] = text[naive].str.contains(_UTC_SUFFIX, na=False).to_numpy()
        if suffixed.any():
            text = text.copy()
            text[suffixed] = text[suffixed].str.replace(_UTC_WORD, "Z", regex=True)
            aware = aware | suffixed
            naive = naive & ~suffixed
    parsed = pd.Series(pd.NaT, index=values.index, dtype=pandas_dtype("timestamp"))
    if aware.any():
        parsed[aware] = pd.to_datetime(
            text[aware], utc=True, format="ISO8601", errors="coerce"
        ).astype(pandas_dtype("timestamp"))
    missing_tz = none
    if naive.any():
        naive_parsed = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
        if naive_timezone is not None:
            parsed[naive] = _localise_naive(naive_parsed, spec, col, naive_timezone, raw)
        elif not aware.any():
            raise DataContractError(
                spec.name,
                col.name,
                "timestamps carry no time zone; add a UTC offset to the data (e.g. "
                "2024-05-01T09:30:00Z) or set ingest.naive_timezone in params.yaml to the zone "
                "they were recorded in",
                raw.loc[naive, [col.name]].head(5),
            )
        else:
            # Mixed: most values say their zone, these do not; guessing would shift them.
            missing_tz = naive & naive_parsed.reindex(values.index).notna().to_numpy()
    unparseable = present & parsed.isna().to_numpy() & ~missing_tz
    if present.any() and unparseable.sum() == present.sum():
        raise DataContractError(
            spec.name,
            col.name,
            "no value could be read as a timestamp (expected ISO 8601 such as "
            "2024-05-01T09:30:00Z)",
            raw.loc[present, [col.name]].head(5),
        )
    return parsed, unparseable, missing_tz


def _localise_naive(
    values: pd.Series, spec: TableSpec, col: ColumnSpec, naive_timezone: str | None, raw
) -> pd.Series:
    if naive_timezone is None:
        raise DataContractError(
            spec.name,
            col.name,
            "timestamps carry no time zone; store them with a time zone or set "
            "ingest.naive_timezone in params.yaml to the zone they were recorded in",
            raw[[col.name]].head(5),
        )
    localised = values.dt.tz_localize(naive_timezone, ambiguous="NaT", nonexistent="NaT")
    return localised.dt.tz_convert("UTC").astype(pandas_dtype("timestamp"))


def _parse_dates(
    values: pd.Series, spec: TableSpec, col: ColumnSpec, raw
) -> tuple[pd.Series, np.ndarray]:
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        # The calendar day where the value was recorded; converting to UTC first would move
        # 2024-05-01T00:00+02:00 to 30 April.
        parsed = values.dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(dtype):
        parsed = values
    elif pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        raise DataContractError(
            spec.name,
            col.name,
            f"expected dates but the column holds {dtype} values (use ISO 8601, e.g. 2024-05-01)",
            raw[[col.name]].head(5),
        )
    else:
        text = _blank_to_na(values).str.replace(_TIME_ZONE_SUFFIX, r"\1", regex=True)
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
        parsed = parsed.dt.tz_localize(None)
    parsed = parsed.dt.floor("D").astype(pandas_dtype("date"))
    present = values.notna().to_numpy()
    if not isinstance(dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(dtype):
        present = _blank_to_na(values).notna().to_numpy()
    unparseable = present & parsed.isna().to_numpy()
    if present.any() and unparseable.sum() == present.sum():
        raise DataContractError(
            spec.name,
            col.name,
            "no value could be read as a date (expected ISO 8601 such as 2024-05-01)",
            raw.loc[present, [col.name]].head(5),
        )
    return parsed, unparseable


def _parse_numbers(
    values: pd.Series, spec: TableSpec, col: ColumnSpec, raw
) -> tuple[pd.Series, np.ndarray, np.ndarray, np.ndarray]:
    """Parse to float or Int64; returns (parsed, unparseable, not finite, too large for int64).

    `inf`, `Infinity` and `-inf` read as numbers but mean nothing for ARR or seats (and write
    invalid JSON downstream), so they are flagged and blanked here rather than accepted.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataContractError(
            spec.name,
            col.name,
            "expected numbers but the column holds booleans",
            raw[[col.name]].head(5),
        )
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype("float64")
        present = values.notna().to_numpy()
    else:
        text = _blank_to_na(values)
        present = text.notna().to_numpy()
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = present & numbers.isna().to_numpy()
    not_finite = np.isinf(numbers.to_numpy(dtype="float64", na_value=np.nan))
    too_large = np.zeros(len(numbers), dtype=bool)
    if not_finite.any():
        numbers = numbers.mask(not_finite)
    if col.kind == "int":
        too_large = (numbers.abs() >= _INT_LIMIT).fillna(False).to_numpy(dtype=bool)
        if too_large.any():
            numbers = numbers.mask(too_large)
        finite = numbers.notna().to_numpy()
        frac = np.zeros(len(numbers), dtype=bool)
        frac[finite] = numbers.to_numpy()[finite] != np.floor(numbers.to_numpy()[finite])
        bad = bad | frac
        numbers = numbers.mask(frac)
    if present.any() and bad.sum() == present.sum():
        raise DataContractError(
            spec.name,
            col.name,
            f"expected {'whole numbers' if col.kind == 'int' else 'numbers'} but no value "
            "could be read as one",
            raw.loc[present, [col.name]].head(5),
        )
    typed = (
        numbers.astype(pandas_dtype(col.kind))
        if col.kind == "float"
        else (numbers.round().astype(pandas_dtype("int")))
    )
    return typed, bad, not_finite, too_large


def _parse_bools(
    values: pd.Series, spec: TableSpec, col: ColumnSpec, raw
) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(pandas_dtype("bool")), np.zeros(len(values), dtype=bool)
    text = _blank_to_na(values).str.lower()
    text = text.str.replace(r"\.0$", "", regex=True)
    parsed = pd.Series(pd.NA, index=values.index, dtype=pandas_dtype("bool"))
    parsed[text.isin(_TRUE).fillna(False).to_numpy(dtype=bool)] = True
    parsed[text.isin(_FALSE).fillna(False).to_numpy(dtype=bool)] = False
    present = text.notna().to_numpy()
    bad = present & parsed.isna().to_numpy()
    if present.any() and bad.sum() == present.sum():
        raise DataContractError(
            spec.name,
            col.name,
            "expected true/false values but none could be read as one",
            raw.loc[present, [col.name]].head(5),
        )
    return parsed, bad


def _coerce_column(
    values: pd.Series,
    raw: pd.DataFrame,
    spec: TableSpec,
    col: ColumnSpec,
    reasons: _Reasons,
    naive_timezone,
) -> pd.Series:
    if col.kind in ("id", "text"):
        return _parse_ids(values) if col.kind == "id" else _blank_to_na(values)
    if col.kind == "category":
        return normalise_category(values)
    if col.kind == "timestamp":
        parsed, bad, missing_tz = _parse_timestamps(values, spec, col, naive_timezone, raw)
        reasons.add(f"unparseable_timestamp:{col.name}", bad)
        reasons.add(f"missing_timezone:{col.name}", missing_tz)
        return parsed
    if col.kind == "date":
        parsed, bad = _parse_dates(values, spec, col, raw)
        reasons.add(f"unparseable_date:{col.name}", bad)
        return parsed
    if col.kind in ("float", "int"):
        parsed, bad, not_finite, too_large = _parse_numbers(values, spec, col, raw)
        reasons.add(f"unparseable_number:{col.name}", bad)
        reasons.add(f"not_finite:{col.name}", not_finite)
        reasons.add(f"out_of_bounds:{col.name}", too_large)
        return parsed
    parsed, bad = _parse_bools(values, spec, col, raw)
    reasons.add(f"unparseable_bool:{col.name}", bad)
    return parsed


def _pandera_reasons(typed: pd.DataFrame, spec: TableSpec, reasons: _Reasons, skip) -> None:
    """Run the contract's pandera checks and turn row-level failures into reason codes."""
    candidates = typed.loc[~skip]
    try:
        pandera_schema(spec).validate(candidates, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        row_cases = cases[cases["index"].notna()]
        whole = cases[cases["index"].isna()]
        if len(whole):
            first = whole.iloc[0]
            raise DataContractError(
                spec.name, str(first["column"]), f"failed check {first['check']}"
            ) from err
        position = pd.Series(np.arange(len(typed)), index=typed.index)
        for (column, check), group in row_cases.groupby(["column", "check"], sort=True):
            code = f"{_PANDERA_CHECK_CODES.get(str(check).split('(')[0], str(check))}:{column}"
            mask = np.zeros(len(typed), dtype=bool)
            mask[position.loc[group["index"].to_numpy()].to_numpy()] = True
            reasons.add(code, mask)


def _key_index(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Index:
    if len(columns) == 1:
        return pd.Index(frame[columns[0]])
    return pd.MultiIndex.from_frame(frame[list(columns)])


def _relational_reasons(
    typed: pd.DataFrame,
    spec: TableSpec,
    context: ValidationContext,
    reasons: _Reasons,
    unknown_refs: dict[str, np.ndarray],
) -> None:
    """Foreign keys, the row's own stamp against as-of, and stamps against account creation.

    A soft foreign key (`unknown_code`) does not quarantine: its unmatched rows are collected
    in `unknown_refs` and counted once the accepted rows are known.
    """
    for fk in spec.foreign_keys:
        ref = context.keys.get(fk.ref_table)
        if ref is None:
            continue  # the referenced table is optional and absent: nothing to check against
        present = typed[list(fk.columns)].notna().all(axis=1).to_numpy()
        if not present.any():
            continue
        found = _key_index(typed, fk.columns).isin(_key_index(ref, fk.ref_columns))
        if fk.unknown_code is not None:
            unknown_refs[fk.unknown_code] = present & ~found
        else:
            reasons.add(f"orphan:{'+'.join(fk.columns)}->{fk.ref_table}", present & ~found)

    created = None
    if context.account_created is not None and "account_id" in typed:
        created = typed["account_id"].map(context.account_created)
    stamp = ROW_STAMPS.get(spec.name)
    for col in spec.columns:
        values = typed[col.name]
        if col.kind not in ("timestamp", "date"):
            continue
        if col.name == stamp and col.before_as_of:
            reasons.add(f"after_as_of:{col.name}", _at_or_after_as_of(values, col, context))
        if col.after_account_created and created is not None:
            bound = created.dt.tz_localize(None).dt.floor("D") if col.kind == "date" else created
            reasons.add(f"before_account_created:{col.name}", (values < bound).fillna(False))


def _at_or_after_as_of(
    values: pd.Series, col: ColumnSpec, context: ValidationContext
) -> np.ndarray:
    """Timestamps at or after the as-of instant; dates after the as-of day (it may be that day)."""
    if col.kind == "date":
        as_of_date = context.as_of.tz_convert("UTC").tz_localize(None).floor("D")
        return (values > as_of_date).fillna(False).to_numpy(dtype=bool)
    return (values >= context.as_of).fillna(False).to_numpy(dtype=bool)


def _blank_after_as_of(
    typed: pd.DataFrame, spec: TableSpec, context: ValidationContext, reasons: _Reasons
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Blank lifecycle fields (not the row's own stamp) that lie at or after as-of.

    At as-of nobody knew the user would be deactivated next week, so the row is as it was then:
    active. Dropping it instead would also orphan the user's usage and trainings. A required
    (non-nullable) lifecycle field cannot be blanked, so its row is quarantined.
    """
    stamp = ROW_STAMPS.get(spec.name)
    blanked: dict[str, np.ndarray] = {}
    for col in spec.columns:
        if col.kind not in ("timestamp", "date") or not col.before_as_of or col.name == stamp:
            continue
        late = _at_or_after_as_of(typed[col.name], col, context)
        if not late.any():
            continue
        if col.nullable:
            typed = typed.assign(**{col.name: typed[col.name].mask(late)})
            blanked[col.name] = late
        else:
            reasons.add(f"after_as_of:{col.name}", late)
    return typed, blanked


def _bounds_reasons(
    typed: pd.DataFrame, spec: TableSpec, context: ValidationContext, reasons: _Reasons
) -> None:
    """Quarantine implausible values: numbers beyond the plausible range, placeholder dates.

    The numeric range is the contract's `plausible_max` unless `ingest.bounds` says otherwise;
    dates must not predate 1970 and scheduled dates must lie within their horizon.
    """
    overrides = context.bounds.get(spec.name, {})
    for col in spec.columns:
        values = typed[col.name]
        code = f"out_of_bounds:{col.name}"
        if col.kind in ("float", "int"):
            override = overrides.get(col.name, NumericBounds())
            low = override.min
            high = override.max if override.max is not None else col.plausible_max
            if low is not None:
                reasons.add(code, (values < low).fillna(False).to_numpy(dtype=bool))
            if high is not None:
                reasons.add(code, (values > high).fillna(False).to_numpy(dtype=bool))
        elif col.kind in ("timestamp", "date"):
            earliest = EARLIEST_DATE if col.kind == "date" else EARLIEST_DATE.tz_localize("UTC")
            reasons.add(code, (values < earliest).fillna(False).to_numpy(dtype=bool))
            if col.max_years_after_as_of is not None:
                latest = context.as_of + pd.DateOffset(years=col.max_years_after_as_of)
                if col.kind == "date":
                    latest = latest.tz_convert("UTC").tz_localize(None)
                reasons.add(code, (values > latest).fillna(False).to_numpy(dtype=bool))


def _text_reasons(
    typed: pd.DataFrame, spec: TableSpec, context: ValidationContext, reasons: _Reasons
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Overlong text is quarantined; text failing its pattern is blanked or quarantined.

    Returns the table with those values blanked and the masks of blanked values by the
    pattern's code.
    """
    blanked: dict[str, np.ndarray] = {}
    for col in spec.columns:
        if col.kind not in ("id", "text", "category"):
            continue
        values = typed[col.name]
        if context.max_text_chars is not None:
            too_long = (values.str.len() > context.max_text_chars).fillna(False)
            reasons.add(f"text_too_long:{col.name}", too_long.to_numpy(dtype=bool))
        if col.pattern is not None:
            matches = values.str.fullmatch(col.pattern.regex).fillna(True)
            bad = ~matches.to_numpy(dtype=bool)
            if not bad.any():
                continue
            if col.pattern.blank:
                typed = typed.assign(**{col.name: values.mask(bad)})
                blanked[col.pattern.code] = blanked.get(col.pattern.code, bad) | bad
            else:
                reasons.add(f"{col.pattern.code}:{col.name}", bad)
    return typed, blanked


def _unknown_values(
    source_values: pd.DataFrame, typed: pd.DataFrame, spec: TableSpec
) -> dict[str, Counter[str]]:
    """The export's values (before normalising) of categories outside their allowed set."""
    out: dict[str, Counter[str]] = {}
    for col in spec.columns:
        if col.kind != "category" or col.allowed is None:
            continue
        values = typed[col.name]
        unknown = (values.notna() & ~values.isin(list(col.allowed))).to_numpy(dtype=bool)
        if unknown.any():
            shown = _blank_to_na(source_values[col.name])[unknown].str.slice(0, _SHOWN_CHARS)
            out[col.name] = Counter({str(k): int(v) for k, v in shown.value_counts().items()})
    return out


def _map_values(values: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    """Replace the export's values by the contract's (compared as trimmed text)."""
    codes, uniques = pd.factorize(_blank_to_na(values))
    mapped = pd.array([mapping.get(u, u) for u in uniques], dtype=pandas_dtype("text"))
    return pd.Series(mapped.take(codes, allow_fill=True), index=values.index)


def _parse_error_reasons(parse_error: pd.Series | None, reasons: _Reasons) -> None:
    """Rows the source could not parse carry its reason code; each becomes the row's reason."""
    if parse_error is None:
        return
    codes = _blank_to_na(parse_error)
    for code in codes.dropna().unique():
        reasons.add(str(code), (codes == code).fillna(False).to_numpy(dtype=bool))


def _duplicate_reasons(typed: pd.DataFrame, spec: TableSpec, reasons: _Reasons) -> None:
    """Exact duplicate rows keep their first copy; rows that disagree under one key all go.

    When two rows claim the same key with different values we cannot know which is right,
    so neither is trusted.
    """
    if spec.primary_key is None:
        return
    key = list(spec.primary_key)
    ok = ~reasons.any()
    candidates = typed.loc[ok]
    dup_key = candidates.duplicated(key, keep=False)
    if not dup_key.any():
        return
    exact_repeat = candidates.duplicated(keep="first")
    n_versions = candidates.loc[dup_key].drop_duplicates().groupby(key, dropna=False).size()
    conflicting_keys = n_versions[n_versions > 1].index
    conflicting = _key_index(candidates, spec.primary_key).isin(conflicting_keys)
    mask_conflict = np.zeros(len(typed), dtype=bool)
    mask_conflict[np.flatnonzero(ok)] = np.asarray(conflicting) & dup_key.to_numpy()
    mask_repeat = np.zeros(len(typed), dtype=bool)
    mask_repeat[np.flatnonzero(ok)] = exact_repeat.to_numpy() & ~np.asarray(conflicting)
    reasons.add(f"conflicting_duplicate_key:{'+'.join(key)}", mask_conflict)
    reasons.add(f"duplicate_row:{'+'.join(key)}", mask_repeat)


def validate_table(
    raw: pd.DataFrame,
    spec: TableSpec,
    context: ValidationContext,
    *,
    first_row: int = 0,
) -> TableResult:
    """Split one raw table (or one chunk of it) into accepted and quarantined rows.

    `raw` must already use the contract's column names (see `pipeline.data.sources` for mapping).
    `first_row` numbers the rows of a chunk within the whole table, so a quarantined row can be
    found in the source. Quarantined rows keep the export's values (before `value_map`), which
    is what the user has to find and fix.
    """
    parse_error = raw[PARSE_ERROR] if PARSE_ERROR in raw.columns else None
    if parse_error is not None:
        raw = raw.drop(columns=[PARSE_ERROR])
    missing = [c.name for c in spec.columns if c.required and c.name not in raw.columns]
    if missing:
        raise DataContractError(
            spec.name,
            missing[0],
            f"required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing; "
            f"the table has: {', '.join(map(str, raw.columns))}. Map your own column names "
            "with ingest.column_map in params.yaml",
            raw.head(5),
        )
    raw = raw.reset_index(drop=True)
    if parse_error is not None:
        parse_error = parse_error.reset_index(drop=True)
    ignored = [str(c) for c in raw.columns if c not in spec.column_names]
    defaulted = [c.name for c in spec.columns if c.name not in raw.columns]
    raw = raw.assign(**{name: spec.column(name).default for name in defaulted})
    value_map = context.value_map.get(spec.name, {})
    mapped = raw.assign(
        **{
            name: _map_values(raw[name], mapping)
            for name, mapping in value_map.items()
            if mapping and name in raw.columns
        }
    )

    reasons = _Reasons(len(raw))
    _parse_error_reasons(parse_error, reasons)
    typed = pd.DataFrame(
        {
            col.name: _coerce_column(
                mapped[col.name], raw, spec, col, reasons, context.naive_timezone
            )
            for col in spec.columns
        },
        index=raw.index,
    )
    unknown_values = _unknown_values(raw, typed, spec)
    typed, blanked_fields = _text_reasons(typed, spec, context, reasons)
    _bounds_reasons(typed, spec, context, reasons)
    typed, blanked_late = _blank_after_as_of(typed, spec, context, reasons)
    _pandera_reasons(typed, spec, reasons, skip=reasons.any())
    for rule in spec.row_rules:
        reasons.add(rule.code, ~rule.valid(typed).to_numpy(dtype=bool))
    unknown_refs: dict[str, np.ndarray] = {}
    _relational_reasons(typed, spec, context, reasons, unknown_refs)
    _duplicate_reasons(typed, spec, reasons)

    bad = reasons.any()
    accepted = typed.loc[~bad].reset_index(drop=True)
    pandera_schema(spec).validate(accepted)  # invariant: what we accept meets the contract
    positions = np.flatnonzero(bad)
    quarantined = quarantine_frame(
        raw.loc[bad, spec.column_names + ignored], positions, reasons.labels(positions), first_row
    )
    return TableResult(
        accepted=accepted,
        quarantined=quarantined,
        reason_counts=reasons.counts(),
        ignored_columns=ignored,
        defaulted_columns=defaulted,
        unknown_values=unknown_values,
        blanked_after_as_of=kept_counts(blanked_late, bad),
        blanked_by_reason=kept_counts(blanked_fields, bad),
        unknown_references=kept_counts(unknown_refs, bad),
    )


def quarantine_frame(
    rows: pd.DataFrame, positions: np.ndarray, labels: list[str], first_row: int
) -> pd.DataFrame:
    """Quarantined rows as written: the export's values as text, the row number in the
    source (`first_row` is the chunk's first) and the reasons. Shared by both validation
    paths, so their quarantine files cannot differ in format."""
    return (
        rows.astype("string")
        .reset_index(drop=True)
        .assign(**{SOURCE_ROW: positions + first_row, REASON: labels})
    )


def kept_counts(masks: Mapping[str, np.ndarray], bad: np.ndarray) -> Counter[str]:
    """What happened to accepted rows, per code; a quarantined row shows its raw values."""
    return Counter({k: int((m & ~bad).sum()) for k, m in masks.items() if (m & ~bad).any()})
