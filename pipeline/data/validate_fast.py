"""Validation of streamed tables (usage events) in Arrow compute, with the rules of `validate`.

`validate.validate_table` is the reference: pandas and pandera, clear but about 1 s per million
event rows. `StreamedValidator` applies the same rules to an Arrow batch with vectorised
`pyarrow.compute` kernels and gives the same `TableResult`: the same accepted rows (as an Arrow
table typed like the interim Parquet, with the pandas metadata the reference writes, so the
files are byte for byte the same), the same quarantined rows and reason codes, the same counts.

What is shared rather than re-implemented, so the two paths cannot drift:
- reason bookkeeping (`validate._Reasons`: the order of codes in `_reason`, the counts);
- the quarantine frame (`validate.quarantine_frame`), built from the raw rows of the (few)
  quarantined positions, as pandas sees them;
- text parsing: a timestamp or number column that arrives as text (CSV, or a Parquet export
  of strings) is parsed by the reference parser (vectorised pandas) for that column only, and
  so is any column of a type the Arrow path does not read itself (naive timestamps,
  nanoseconds, float counts). Typed Parquet columns, the case at 100M rows, never touch pandas.

What the Arrow path does not do at all (a table with duplicate keys, row rules, text
patterns, date or boolean columns) makes `unsupported` name the reason; the caller then
validates that table with the reference path. `validate` returns None for a batch it cannot
take (a required column missing, a column whose type it cannot convert), and the caller
validates that batch with the reference path, which also raises the reference's errors.
"""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.data.contract import (
    EARLIEST_DATE,
    PARSE_ERROR,
    ROW_STAMPS,
    ColumnSpec,
    TableSpec,
    arrow_schema,
    pandas_dtype,
)
from pipeline.data.validate import (
    _PANDERA_CHECK_CODES,
    _SHOWN_CHARS,
    NumericBounds,
    TableResult,
    ValidationContext,
    _blank_to_na,
    _coerce_column,
    _map_values,
    _parse_error_reasons,
    _Reasons,
    kept_counts,
    quarantine_frame,
)

log = logging.getLogger(__name__)

_KINDS = frozenset({"id", "text", "category", "timestamp", "int", "float"})
_TIMESTAMP = pa.timestamp("us", tz="UTC")
# Integers beyond 2**53 change when the reference passes them through float64; leave them to it.
_EXACT_FLOAT_INT = 2**53
_CATEGORY_SEPARATORS = r"[\s\-]+"


class _NotConvertible(Exception):
    """This batch holds a column the Arrow path cannot read; the reference validates it."""


def unsupported(spec: TableSpec) -> str | None:
    """Why `spec` needs the reference path, or None when the Arrow path covers all its rules."""
    if spec.primary_key is not None:
        return "duplicate-key checks"
    if spec.row_rules:
        return "row rules"
    for col in spec.columns:
        if col.kind not in _KINDS:
            return f"{col.kind} column {col.name}"
        if col.pattern is not None:
            return f"text pattern on {col.name}"
        if col.max_years_after_as_of is not None or (
            col.kind == "timestamp" and col.before_as_of and col.name != ROW_STAMPS.get(spec.name)
        ):
            return f"lifecycle timestamp {col.name}"
    return None


def _pandas_metadata(spec: TableSpec) -> dict[bytes, bytes]:
    """The schema metadata `pa.Table.from_pandas` gives the reference's accepted frame."""
    empty = pd.DataFrame({c.name: pd.Series([], dtype=pandas_dtype(c.kind)) for c in spec.columns})
    table = pa.Table.from_pandas(empty, schema=arrow_schema(spec), preserve_index=False)
    return dict(table.schema.metadata or {})


def _take_as_pandas(batch: pa.Table, positions: np.ndarray) -> pd.DataFrame:
    """Rows of `batch` exactly as `batch.to_pandas()` would show them.

    The pandas dtype of a column can depend on the whole column (an integer column with a
    missing value becomes float64, unless the pandas metadata says Int64), so the rows are
    converted together with one extra row that is missing where the whole column has a gap,
    which is then dropped.
    """
    gaps = [column.null_count > 0 for column in batch.columns]
    rows = batch.take(pa.array(np.append(positions, 0).astype(np.int64)))
    extra = [
        _with_last_missing(column) if gap else column
        for column, gap in zip(rows.columns, gaps, strict=True)
    ]
    rows = pa.Table.from_arrays(extra, schema=rows.schema)
    return rows.to_pandas().iloc[:-1].reset_index(drop=True)


def _with_last_missing(column: pa.ChunkedArray) -> pa.Array:
    values = column.combine_chunks()
    last = np.zeros(len(values), dtype=bool)
    last[-1] = True
    return pc.if_else(pa.array(last), pa.scalar(None, values.type), values)


def _mask(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A boolean Arrow result as a numpy mask, missing as False."""
    filled = pc.fill_null(values, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks() if filled.num_chunks != 1 else filled.chunk(0)
    return filled.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _blank_to_null(text: pa.Array) -> pa.Array:
    """`validate._blank_to_na` in Arrow: trimmed, and empty text as missing."""
    if pa.types.is_null(text.type):
        return pa.nulls(len(text), pa.string())
    trimmed = pc.utf8_trim_whitespace(text.cast(pa.string()))
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _decoded(values: pa.Array, encoded: pa.DictionaryArray, dictionary: pa.Array) -> pa.Array:
    """`dictionary` at the rows of `encoded`; `values` themselves when no entry changed
    (the usual case: then the strings need not be copied)."""
    same = pc.equal(dictionary, encoded.dictionary.cast(pa.string()))
    if dictionary.null_count == 0 and pc.all(same).as_py() is not False:
        return values.cast(pa.string())
    return pc.take(dictionary, encoded.indices)


def _is_text(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def _int_range_exact(values: pa.Array) -> bool:
    if values.null_count == len(values):
        return True
    bounds = pc.min_max(values)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return abs(low) <= _EXACT_FLOAT_INT and abs(high) <= _EXACT_FLOAT_INT


class StreamedValidator:
    """Validates the batches of one streamed table against one `ValidationContext`.

    The lookups the rules need (accepted keys of referenced tables, account creation times)
    are built once per table, not once per batch.
    """

    def __init__(self, spec: TableSpec, context: ValidationContext) -> None:
        reason = unsupported(spec)
        if reason is not None:
            raise ValueError(f"{spec.name}: the Arrow path does not check {reason}")
        self.spec = spec
        self.context = context
        self.schema = arrow_schema(spec).with_metadata(_pandas_metadata(spec))
        self.value_map = {
            name: mapping
            for name, mapping in context.value_map.get(spec.name, {}).items()
            if mapping
        }
        self.as_of = pa.scalar(context.as_of.tz_convert("UTC").to_pydatetime(), _TIMESTAMP)
        self.earliest = pa.scalar(EARLIEST_DATE.tz_localize("UTC").to_pydatetime(), _TIMESTAMP)
        self.foreign_keys = []
        for fk in spec.foreign_keys:
            ref = context.keys.get(fk.ref_table)
            if ref is None:
                continue  # the referenced table is optional and absent
            uniques = [
                pa.array(ref[c].dropna().unique(), type=pa.string()).cast(pa.string())
                for c in fk.ref_columns
            ]
            indices = [
                pc.index_in(pa.array(ref[c], type=pa.string()), value_set=known)
                for c, known in zip(fk.ref_columns, uniques, strict=True)
            ]
            ref_codes = self._key_codes(indices, uniques)
            self.foreign_keys.append((fk, uniques, pc.unique(ref_codes.drop_null())))
        self._parsed_by_pandas: set[str] = set()
        self.created = None
        if context.account_created is not None:
            created = context.account_created
            self.created = (
                pa.array(created.index.astype(pandas_dtype("id")), type=pa.string()),
                pa.array(created.astype(pandas_dtype("timestamp")), type=_TIMESTAMP),
            )

    @staticmethod
    def _key_codes(indices: list[pa.Array], uniques: list[pa.Array]) -> pa.Array:
        """One integer per key tuple (missing where any part is unknown), to compare tuples.

        `indices` are the positions of each key part in its `uniques` (see `_index_in`).
        """
        code = None
        for index, known in zip(indices, uniques, strict=True):
            index = index.cast(pa.int64())
            code = index if code is None else pc.add(pc.multiply(code, len(known)), index)
        return code

    # --- columns ---------------------------------------------------------------------------

    def _coerce(
        self,
        col: ColumnSpec,
        values: pa.Array,
        as_pandas,
        raw_column,
        reasons: _Reasons,
        encodings: dict[str, tuple[pa.Array, pa.Array]],
    ) -> pa.Array:
        """One column typed and normalised as the reference does it (adding its reasons)."""
        kind = col.kind
        data_type = values.type
        target = arrow_schema(self.spec).field(col.name).type
        if pa.types.is_null(data_type):
            return pa.nulls(len(values), target)
        if kind in ("id", "text") and _is_text(data_type):
            # Ids repeat: trimming, and later the key lookups, work on the distinct values.
            encoded = pc.dictionary_encode(values)
            dictionary = _blank_to_null(encoded.dictionary)
            encodings[col.name] = (encoded.indices, dictionary)
            return _decoded(values, encoded, dictionary)
        if kind in ("id", "text") and pa.types.is_integer(data_type):
            return _blank_to_null(values.cast(pa.string()))
        if kind == "category" and _is_text(data_type):
            encoded = pc.dictionary_encode(values)
            words = pc.utf8_lower(_blank_to_null(encoded.dictionary))
            words = pc.replace_substring_regex(words, _CATEGORY_SEPARATORS, "_")
            return _decoded(values, encoded, words)
        if kind == "timestamp" and pa.types.is_timestamp(data_type) and data_type.tz is not None:
            try:
                return values.cast(_TIMESTAMP)  # safe: a cast that would lose precision raises
            except pa.ArrowInvalid:
                pass
        if kind == "int" and pa.types.is_integer(data_type) and _int_range_exact(values):
            return values.cast(pa.int64())
        if kind == "float" and (pa.types.is_floating(data_type) or pa.types.is_integer(data_type)):
            numbers = values.cast(pa.float64(), safe=False)
            infinite = pc.is_inf(numbers)
            reasons.add(f"not_finite:{col.name}", _mask(infinite))
            unusable = pc.or_(pc.is_nan(numbers), infinite)
            return pc.if_else(unusable, pa.scalar(None, pa.float64()), numbers)
        # Anything else (text timestamps and numbers above all) goes through the reference
        # parser for this one column, which also raises the reference's errors.
        if col.name not in self._parsed_by_pandas:
            self._parsed_by_pandas.add(col.name)
            log.info(
                "%s.%s: %s values are parsed by the pandas parser (slower than typed ones)",
                self.spec.name,
                col.name,
                data_type,
            )
        parsed = _coerce_column(
            as_pandas(),
            raw_column().to_frame(col.name),
            self.spec,
            col,
            reasons,
            self.context.naive_timezone,
        )
        try:
            return pa.array(parsed, type=target, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise _NotConvertible(f"{col.name}: {err}") from err

    # --- the batch -------------------------------------------------------------------------

    def validate(
        self, batch: pa.Table, *, first_row: int = 0, raw: pd.DataFrame | None = None
    ) -> TableResult | None:
        """Validate one batch (columns already named as in the contract).

        `raw`, when the source produced the batch from a pandas frame (CSV, SQLAlchemy), is that
        frame: quarantined rows and text parsing then read it rather than a conversion back.
        Returns None when the batch needs the reference path.
        """
        spec = self.spec
        if isinstance(batch, pa.RecordBatch):
            batch = pa.Table.from_batches([batch])
        if raw is not None:
            raw = raw.reset_index(drop=True)
        names = [n for n in batch.column_names if n != PARSE_ERROR]
        missing = [c.name for c in spec.columns if c.required and c.name not in names]
        if missing or len(set(batch.column_names)) != len(batch.column_names):
            return None
        try:
            return self._validate(batch, names, first_row, raw)
        except _NotConvertible:
            return None

    def _validate(
        self, batch: pa.Table, names: list[str], first_row: int, raw: pd.DataFrame | None
    ) -> TableResult:
        spec = self.spec
        n = batch.num_rows
        ignored = [str(c) for c in names if c not in spec.column_names]
        defaulted = [c.name for c in spec.columns if c.name not in names]

        def raw_arrow(name: str) -> pa.Array:
            column = batch.column(name)
            return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)

        def raw_pandas(name: str) -> pd.Series:
            if name in defaulted:
                return pd.Series([spec.column(name).default] * n, name=name)
            if raw is not None:
                return raw[name]
            return batch.column(name).to_pandas().rename(name)

        reasons = _Reasons(n)
        encodings: dict[str, tuple[pa.Array, pa.Array]] = {}
        if PARSE_ERROR in batch.column_names:
            _parse_error_reasons(raw_pandas(PARSE_ERROR).reset_index(drop=True), reasons)

        typed: dict[str, pa.Array] = {}
        for col in spec.columns:
            name = col.name
            if name in self.value_map:
                mapped = _map_values(raw_pandas(name), self.value_map[name])
                values = pa.array(mapped, type=pa.string(), from_pandas=True)

                def as_pandas(mapped=mapped):
                    return mapped

            elif name in defaulted:
                default = col.default
                values = pa.nulls(n) if default is None else pa.array(np.full(n, default))

                def as_pandas(name=name):
                    return raw_pandas(name)

            else:
                values = raw_arrow(name)

                def as_pandas(name=name):
                    return raw_pandas(name)

            typed[name] = self._coerce(
                col, values, as_pandas, lambda name=name: raw_pandas(name), reasons, encodings
            )

        unknown_values = self._unknown_values(typed, raw_pandas)
        self._text_reasons(typed, reasons)
        self._bounds_reasons(typed, reasons)
        self._pandera_reasons(typed, reasons, skip=reasons.any())
        unknown_refs: dict[str, np.ndarray] = {}
        self._relational_reasons(typed, encodings, reasons, unknown_refs)

        bad = reasons.any()
        table = pa.Table.from_arrays([typed[c.name] for c in spec.columns], schema=self.schema)
        accepted = table.filter(pa.array(~bad)) if bad.any() else table
        positions = np.flatnonzero(bad)
        columns = spec.column_names + ignored
        if len(positions) == 0:
            rows = pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
        elif raw is not None:
            rows = raw.iloc[positions].reset_index(drop=True)
        else:
            rows = _take_as_pandas(batch.select(names), positions)
        rows = rows.assign(**{name: spec.column(name).default for name in defaulted})
        quarantined = quarantine_frame(
            rows[columns], positions, reasons.labels(positions), first_row
        )
        return TableResult(
            accepted=accepted,
            quarantined=quarantined,
            reason_counts=reasons.counts(),
            ignored_columns=ignored,
            defaulted_columns=defaulted,
            unknown_values=unknown_values,
            blanked_after_as_of=Counter(),
            blanked_by_reason=Counter(),
            unknown_references=kept_counts(unknown_refs, bad),
        )

    # --- rules, in the reference's order -----------------------------------------------------

    def _unknown_values(self, typed, raw_pandas) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for col in self.spec.columns:
            if col.kind != "category" or col.allowed is None:
                continue
            values = typed[col.name]
            allowed = pa.array(list(col.allowed), type=pa.string())
            unknown = _mask(pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, allowed))))
            if unknown.any():
                source = raw_pandas(col.name).reset_index(drop=True)
                shown = _blank_to_na(source[unknown]).str.slice(0, _SHOWN_CHARS)
                out[col.name] = Counter({str(k): int(v) for k, v in shown.value_counts().items()})
        return out

    def _text_reasons(self, typed, reasons: _Reasons) -> None:
        limit = self.context.max_text_chars
        if limit is None:
            return
        for col in self.spec.columns:
            if col.kind in ("id", "text", "category"):
                too_long = pc.greater(pc.utf8_length(typed[col.name]), limit)
                reasons.add(f"text_too_long:{col.name}", _mask(too_long))

    def _bounds_reasons(self, typed, reasons: _Reasons) -> None:
        overrides = self.context.bounds.get(self.spec.name, {})
        for col in self.spec.columns:
            values = typed[col.name]
            code = f"out_of_bounds:{col.name}"
            if col.kind in ("float", "int"):
                override = overrides.get(col.name, NumericBounds())
                high = override.max if override.max is not None else col.plausible_max
                if override.min is not None:
                    reasons.add(code, _mask(pc.less(values.cast(pa.float64()), override.min)))
                if high is not None:
                    reasons.add(code, _mask(pc.greater(values.cast(pa.float64()), high)))
            elif col.kind == "timestamp":
                reasons.add(code, _mask(pc.less(values, self.earliest)))

    def _pandera_reasons(self, typed, reasons: _Reasons, skip: np.ndarray) -> None:
        """The contract's pandera checks, on the rows no earlier rule quarantined.

        pandera reports its failures grouped by column and check name, sorted: the codes are
        added in that order so that `_reason` lists them as the reference does.
        """
        checks: list[tuple[str, str, np.ndarray]] = []
        for col in self.spec.columns:
            values = typed[col.name]
            present = pc.is_valid(values)
            if col.allowed is not None:
                allowed = pa.array(list(col.allowed), type=pa.string())
                outside = pc.and_(present, pc.invert(pc.is_in(values, value_set=allowed)))
                checks.append((col.name, "isin", _mask(outside)))
            if col.min_value is not None:
                checks.append(
                    (col.name, "greater_than_or_equal_to", _mask(pc.less(values, col.min_value)))
                )
            if col.max_value is not None:
                checks.append(
                    (col.name, "less_than_or_equal_to", _mask(pc.greater(values, col.max_value)))
                )
            if not col.nullable:
                checks.append((col.name, "not_nullable", ~_mask(present)))
        for column, check, mask in sorted(checks, key=lambda c: (c[0], c[1])):
            reasons.add(f"{_PANDERA_CHECK_CODES[check]}:{column}", mask & ~skip)

    @staticmethod
    def _index_in(typed, encodings, name: str, value_set: pa.Array) -> pa.Array:
        """Position of each row's `name` in `value_set` (missing when absent)."""
        if name in encodings:
            indices, dictionary = encodings[name]
            return pc.take(pc.index_in(dictionary, value_set=value_set), indices)
        return pc.index_in(typed[name], value_set=value_set)

    def _relational_reasons(self, typed, encodings, reasons: _Reasons, unknown_refs) -> None:
        for fk, uniques, ref_codes in self.foreign_keys:
            present = np.ones(len(typed[fk.columns[0]]), dtype=bool)
            for name in fk.columns:
                present &= _mask(pc.is_valid(typed[name]))
            if not present.any():
                continue
            indices = [
                self._index_in(typed, encodings, name, known)
                for name, known in zip(fk.columns, uniques, strict=True)
            ]
            found = _mask(pc.is_in(self._key_codes(indices, uniques), value_set=ref_codes))
            if fk.unknown_code is not None:
                unknown_refs[fk.unknown_code] = present & ~found
            else:
                reasons.add(f"orphan:{'+'.join(fk.columns)}->{fk.ref_table}", present & ~found)

        created = None
        if self.created is not None and "account_id" in typed:
            keys, stamps = self.created
            created = pc.take(stamps, self._index_in(typed, encodings, "account_id", keys))
        stamp = ROW_STAMPS.get(self.spec.name)
        for col in self.spec.columns:
            if col.kind != "timestamp":
                continue
            values = typed[col.name]
            if col.name == stamp and col.before_as_of:
                reasons.add(f"after_as_of:{col.name}", _mask(pc.greater_equal(values, self.as_of)))
            if col.after_account_created and created is not None:
                reasons.add(f"before_account_created:{col.name}", _mask(pc.less(values, created)))
