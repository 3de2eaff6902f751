"""The Arrow validation path of streamed tables against the pandas reference, case by case.

Each case is a usage-events export with a problem (the bad-input cases of test_validate and
test_ingest, as text like a CSV and typed like a Parquet or database export). Both paths run on
the same input; the accepted rows, the quarantined rows (values, `_source_row`, `_reason`) and
every count must be identical, and so must the bytes ingest writes. Each case also checks that
the Arrow path really handled it (no silent fallback to the reference).
"""

from __future__ import annotations

import logging

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.core.errors import DataContractError
from pipeline.data.contract import TABLES, arrow_schema
from pipeline.data.sources import DirectorySource, DuckDBSource, NameMapping
from pipeline.data.validate import NumericBounds, ValidationContext, validate_table
from pipeline.data.validate_fast import StreamedValidator, unsupported
from pipeline.stages.ingest import ingest_source
from tests.conftest import AS_OF, tiny_raw_tables, write_dir

SPEC = TABLES["usage_events"]
EVENTS = tiny_raw_tables()["usage_events"]
FALLBACK = "pandas path"


def _context(**kwargs) -> ValidationContext:
    created = pd.Series(
        pd.to_datetime(["2024-01-10T09:00:00Z", "2024-01-31T23:00:00Z", "2024-03-15T12:30:00Z"]),
        index=pd.Index(["A1", "A2", "A3"], dtype="string[pyarrow]"),
    ).astype("datetime64[us, UTC]")
    keys = {
        "accounts": pd.DataFrame({"account_id": pd.array(["A1", "A2", "A3"], "string[pyarrow]")}),
        "users": pd.DataFrame(
            {
                "user_id": pd.array(["U1", "U2", "U3", "U4"], "string[pyarrow]"),
                "account_id": pd.array(["A1", "A2", "A2", "A3"], "string[pyarrow]"),
            }
        ),
    }
    return ValidationContext(as_of=AS_OF, keys=keys, account_created=created, **kwargs)


def _events(**columns) -> pd.DataFrame:
    return EVENTS.assign(**columns)


def _typed(**columns) -> pd.DataFrame:
    """The events as a typed export (Parquet, database) has them."""
    frame = EVENTS.assign(
        occurred_at=pd.to_datetime(EVENTS["occurred_at"]).astype("datetime64[us, UTC]"),
        count=pd.array([3, 1, 2, 10, 1], dtype="int64"),
        value=[12.5, np.nan, 3.0, np.nan, 0.5],
    )
    return frame.assign(**columns)


# name -> (events frame, context settings). Text cases reach ingest as CSV and as Parquet
# strings; typed ones as typed Parquet and a DuckDB table.
TEXT_CASES = {
    "clean": (EVENTS, {}),
    "bad_timestamps": (
        _events(occurred_at=["garbage", "2024-13-01T00:00:00Z", "", None, "2024-04-02T10:00:00Z"]),
        {},
    ),
    "mixed_time_zones": (
        _events(occurred_at=["2024-01-11 10:00:00", *EVENTS["occurred_at"][1:]]),
        {},
    ),
    "trailing_utc": (
        _events(occurred_at=["2024-01-11 10:00:00 UTC", *EVENTS["occurred_at"][1:]]),
        {},
    ),
    "after_as_of_and_before_created": (
        _events(
            occurred_at=[
                "2025-01-01T00:00:00Z",
                "2024-01-01T00:00:00Z",
                "2031-02-06T10:00:00Z",
                "1969-12-31T23:59:59Z",
                "2024-04-02T10:00:00Z",
            ]
        ),
        {},
    ),
    "orphans": (
        _events(account_id=["A9", "A2", "A3", "A3", "A9"], user_id=["U1", "U9", "U3", "U4", None]),
        {},
    ),
    "bad_numbers": (
        _events(
            count=["-1", "1.5", "abc", "2000000000", "0"], value=["inf", "x", "-inf", "", "1e13"]
        ),
        {},
    ),
    "blank_and_padded_ids": (
        _events(account_id=["  ", " A2 ", "A2", "", "A3"], user_id=["U1", " ", "U3", "U4", "  "]),
        {},
    ),
    "categories": (
        _events(
            module=["Dash Board", "API-call", "  Reports ", "", None],
            event_type=["", "V", "a - b", None, "x"],
        ),
        {},
    ),
    "value_map": (
        _events(module=["dash", "reports", "auto", "api", "dash"]),
        {"value_map": {"usage_events": {"module": {"dash": "dashboard", "auto": "automation"}}}},
    ),
    "value_map_on_a_number": (
        _events(count=["one", "1", "two", "10", "1"]),
        {"value_map": {"usage_events": {"count": {"one": "1", "two": "2"}}}},
    ),
    "defaults_and_ignored_columns": (
        EVENTS.drop(columns=["count", "event_type"]).assign(extra=["a", None, "c", "d", "e"]),
        {},
    ),
    "text_too_long": (
        _events(module=["dashboard" * 5, "reports", "x", "api", "y"]),
        {"max_text_chars": 12},
    ),
    "bounds_override": (
        _events(count=["3", "1", "2", "10", "1"], value=["12.5", None, "3", "-4", "0.5"]),
        {
            "bounds": {
                "usage_events": {"count": NumericBounds(max=5), "value": NumericBounds(min=0)}
            }
        },
    ),
    "several_problems_in_a_row": (
        _events(
            account_id=["A9", "A2", "A2", "A3", "A3"],
            occurred_at=["2031-01-11T10:00:00Z", *EVENTS["occurred_at"][1:]],
            count=["-1", "1", "2", "10", "1"],
            value=["inf", None, "3", None, "0.5"],
        ),
        {},
    ),
    "naive_time_zone_configured": (
        _events(occurred_at=[s.replace("Z", "") for s in EVENTS["occurred_at"]]),
        {"naive_timezone": "Europe/Berlin"},
    ),
}

TYPED_CASES = {
    "typed_clean": (_typed(), {}),
    "typed_bad_values": (
        _typed(
            count=pd.array([-1, 0, 2, 2_000_000_000, 1], dtype="int64"),
            value=[np.inf, np.nan, -np.inf, 1e13, 0.5],
        ),
        {},
    ),
    "typed_counts_with_gaps": (_typed(count=pd.array([3, None, -2, 10, 1], dtype="Int64")), {}),
    "typed_stamps": (
        _typed(
            occurred_at=pd.to_datetime(
                [
                    "2025-01-01T00:00:00Z",
                    None,
                    "1969-01-01T00:00:00Z",
                    "2024-01-01T00:00:00Z",
                    "2024-04-02T10:00:00Z",
                ]
            ).astype("datetime64[ms, UTC]")
        ),
        {},
    ),
    "typed_nanosecond_stamps": (
        _typed(
            occurred_at=pd.to_datetime(EVENTS["occurred_at"]).astype("datetime64[ns, UTC]")
            + pd.Timedelta(1, "ns")
        ),
        {},
    ),
    "typed_naive_stamps": (
        _typed(
            occurred_at=pd.to_datetime(EVENTS["occurred_at"])
            .dt.tz_localize(None)
            .astype("datetime64[us]")
        ),
        {"naive_timezone": "America/New_York"},
    ),
    "typed_integer_ids_and_no_users": (
        _typed(account_id=pd.array([1, 2, 2, 3, 9], dtype="int64"), user_id=[None] * 5),
        {},
    ),
    "typed_orphans_and_blanks": (
        _typed(account_id=["A1", "  ", "A2", "A3", "A4"], user_id=["U2", "U2", None, "U4", ""]),
        {},
    ),
}


def _assert_same(reference, arrow) -> None:
    """Two TableResults agree on everything ingest writes or reports."""
    expected = pa.Table.from_pandas(
        reference.accepted, schema=arrow_schema(SPEC), preserve_index=False
    )
    assert arrow.accepted.equals(expected, check_metadata=True)
    pd.testing.assert_frame_equal(arrow.quarantined, reference.quarantined)
    assert arrow.reason_counts == reference.reason_counts
    assert arrow.unknown_values == reference.unknown_values
    assert arrow.unknown_references == reference.unknown_references
    assert arrow.blanked_after_as_of == reference.blanked_after_as_of
    assert arrow.blanked_by_reason == reference.blanked_by_reason
    assert arrow.ignored_columns == reference.ignored_columns
    assert arrow.defaulted_columns == reference.defaulted_columns


def _run_both(frame: pd.DataFrame, context: ValidationContext, first_row: int = 0):
    """Both paths on `frame` as a Parquet source would hand it over (Arrow, then pandas)."""
    batch = pa.Table.from_pandas(frame, preserve_index=False)
    reference = validate_table(batch.to_pandas(), SPEC, context, first_row=first_row)
    arrow = StreamedValidator(SPEC, context).validate(batch, first_row=first_row)
    assert arrow is not None, "the Arrow path fell back to pandas"
    return reference, arrow


@pytest.mark.parametrize("case", sorted({**TEXT_CASES, **TYPED_CASES}))
def test_both_paths_agree_on_a_batch(case):
    frame, settings = {**TEXT_CASES, **TYPED_CASES}[case]
    reference, arrow = _run_both(frame, _context(**settings), first_row=7)
    _assert_same(reference, arrow)


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_both_paths_agree_on_a_csv_frame(case):
    """The text as the CSV reader hands it over: a pandas frame beside its Arrow form."""
    frame, settings = TEXT_CASES[case]
    raw = frame.astype("str").where(frame.notna(), None).astype("str")
    context = _context(**settings)
    reference = validate_table(raw, SPEC, context)
    arrow = StreamedValidator(SPEC, context).validate(
        pa.Table.from_pandas(raw, preserve_index=False), raw=raw
    )
    assert arrow is not None
    _assert_same(reference, arrow)


def test_the_cases_are_not_all_clean():
    """The comparison is only worth something if the cases quarantine rows for many reasons."""
    codes = set()
    for frame, settings in {**TEXT_CASES, **TYPED_CASES}.values():
        reference, _ = _run_both(frame, _context(**settings))
        codes |= {code.split(":")[0] for code in reference.reason_counts}
    assert codes >= {
        "unparseable_timestamp",
        "missing_timezone",
        "after_as_of",
        "before_account_created",
        "orphan",
        "unparseable_number",
        "not_finite",
        "out_of_bounds",
        "below_minimum",
        "missing_value",
        "text_too_long",
    }


@pytest.mark.parametrize(
    ("frame", "settings"),
    [
        (_events(occurred_at=[s.replace("Z", "") for s in EVENTS["occurred_at"]]), {}),
        (_events(occurred_at=["x", "y", "z", "", "w"]), {}),
        (_events(count=["a", "b", "c", "d", "e"]), {}),
        (_typed(occurred_at=pd.to_datetime(EVENTS["occurred_at"]).dt.tz_localize(None)), {}),
        (_typed(occurred_at=[1, 2, 3, 4, 5]), {}),
        (EVENTS.drop(columns=["module"]), {}),
    ],
    ids=[
        "naive_text",
        "no_timestamp",
        "no_number",
        "naive_typed",
        "numbers_as_stamps",
        "no_module",
    ],
)
def test_both_paths_stop_with_the_same_error(frame, settings):
    context = _context(**settings)
    batch = pa.Table.from_pandas(frame, preserve_index=False)
    with pytest.raises(DataContractError) as reference:
        validate_table(batch.to_pandas(), SPEC, context)
    validator = StreamedValidator(SPEC, context)
    with pytest.raises(DataContractError) as arrow:
        result = validator.validate(batch)
        if result is None:  # a batch the Arrow path declines goes to the reference
            validate_table(batch.to_pandas(), SPEC, context)
    assert str(arrow.value) == str(reference.value)


def test_reason_order_follows_each_chunks_first_hits():
    """`_reason` lists codes in the order the rules first hit within the chunk, as pandas:
    a count too large for int64 is flagged while parsing (before `value`), a merely
    implausible one by the bounds after it, under the same code."""
    frame = _typed(
        count=[2e9, 1e19, 1.0, 1.0, 1.0],
        value=[np.inf, np.nan, 1.0, np.nan, 0.5],
        account_id=["A9", "A2", "A2", "A3", "A3"],
    )
    reference, arrow = _run_both(frame, _context())
    assert arrow.quarantined["_reason"].tolist() == reference.quarantined["_reason"].tolist()
    assert (
        reference.quarantined["_reason"]
        .tolist()[0]
        .startswith("out_of_bounds:count; not_finite:value; orphan:account_id->accounts")
    )
    reference, arrow = _run_both(frame.iloc[[0]], _context())
    assert arrow.quarantined["_reason"].tolist() == reference.quarantined["_reason"].tolist()
    assert (
        reference.quarantined["_reason"]
        .tolist()[0]
        .startswith("not_finite:value; out_of_bounds:count")
    )


# --- whole ingest runs: the same bytes on disk ---------------------------------------------------


def _write_source(tmp_path, events: pd.DataFrame, kind: str):
    tables = dict(tiny_raw_tables(), usage_events=events)
    if kind in ("csv", "parquet"):
        return DirectorySource(write_dir(tables, tmp_path / "raw", kind))
    if kind == "parts":  # a folder of Parquet parts, renamed columns mapped from params
        raw = write_dir(
            {k: v for k, v in tables.items() if k != "usage_events"}, tmp_path / "raw", "parquet"
        )
        (raw / "usage_events").mkdir()
        renamed = events.rename(columns={"occurred_at": "ts"})
        for i, start in enumerate(range(0, len(renamed), 2)):
            renamed.iloc[start : start + 2].to_parquet(raw / "usage_events" / f"part-{i}.parquet")
        return DirectorySource(raw, NameMapping(columns={"usage_events": {"ts": "occurred_at"}}))
    path = tmp_path / "raw.duckdb"
    with duckdb.connect(str(path)) as con:
        for name, frame in tables.items():
            con.register("frame", frame)
            con.execute(f'create table "{name}" as select * from frame')
            con.unregister("frame")
    return DuckDBSource(path)


def _files(directory) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _ingest_both(tmp_path, events, kind, caplog, batch_rows=2, **settings):
    source = _write_source(tmp_path, events, kind)
    outputs = {}
    for validation in ("pandas", "arrow"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pipeline.stages.ingest"):
            try:
                ingest_source(
                    source,
                    tmp_path / validation,
                    as_of=AS_OF,
                    batch_rows=batch_rows,
                    streamed_validation=validation,
                    **settings,
                )
            except DataContractError as err:  # a chunk or the table as a whole is unusable
                outputs[validation] = f"error: {err}"
                continue
        if validation == "arrow":
            assert not [r for r in caplog.records if FALLBACK in r.getMessage()]
        outputs[validation] = _files(tmp_path / validation)
    return outputs


_INGEST_CASES = [(case, kind) for case in sorted(TEXT_CASES) for kind in ("csv", "parquet")] + [
    (case, kind) for case in sorted(TYPED_CASES) for kind in ("parquet", "parts", "duckdb")
]


@pytest.mark.parametrize(("case", "kind"), _INGEST_CASES)
def test_ingest_writes_the_same_bytes_either_way(tmp_path, caplog, case, kind):
    frame, settings = {**TEXT_CASES, **TYPED_CASES}[case]
    outputs = _ingest_both(tmp_path, frame, kind, caplog, **settings)
    if isinstance(outputs["pandas"], str):
        assert outputs["arrow"] == outputs["pandas"]
        return
    assert outputs["arrow"].keys() == outputs["pandas"].keys()
    for name, data in outputs["pandas"].items():
        assert outputs["arrow"][name] == data, name


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_ingest_in_one_chunk_writes_the_same_bytes_either_way(tmp_path, caplog, case):
    frame, settings = TEXT_CASES[case]
    outputs = _ingest_both(tmp_path, frame, "parquet", caplog, batch_rows=1000, **settings)
    assert outputs["arrow"] == outputs["pandas"]


class _PandasOnlySource:
    """A source that yields pandas frames only (as SQLAlchemy does), with a mixed column."""

    def __init__(self, inner: DirectorySource, events: pd.DataFrame) -> None:
        self.inner, self.events, self.description = inner, events, "test source"

    def tables(self):
        return self.inner.tables()

    def read(self, table):
        return self.inner.read(table)

    def iter_batches(self, table, batch_rows):
        for start in range(0, len(self.events), batch_rows):
            yield self.events.iloc[start : start + batch_rows]


def test_a_chunk_arrow_cannot_convert_is_validated_by_pandas_and_logged(tmp_path, caplog):
    # Python objects of mixed types (a driver's Decimal beside text) do not convert to Arrow.
    events = EVENTS.assign(value=pd.Series([12.5, "3", None, 4, "x"], dtype=object))
    source = _PandasOnlySource(_write_source(tmp_path, EVENTS, "parquet"), events)
    outputs = {}
    for validation in ("pandas", "arrow"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pipeline.stages.ingest"):
            ingest_source(
                source,
                tmp_path / validation,
                as_of=AS_OF,
                batch_rows=10,
                streamed_validation=validation,
            )
        outputs[validation] = _files(tmp_path / validation)
    assert any(FALLBACK in r.getMessage() for r in caplog.records)
    assert outputs["arrow"] == outputs["pandas"]


def test_rows_the_csv_reader_flags_are_quarantined_alike(tmp_path, caplog):
    """A broken CSV record (`_parse_error`) is quarantined with the reader's reason."""
    raw = write_dir(tiny_raw_tables(), tmp_path / "raw", "csv")
    lines = (raw / "usage_events.csv").read_text().splitlines()
    lines[2] = lines[2] + ',"unbalanced'
    lines[3] = lines[3] + ",ragged,row"
    (raw / "usage_events.csv").write_text("\n".join(lines) + "\n")
    source = DirectorySource(raw)
    outputs = {}
    for validation in ("pandas", "arrow"):
        report = ingest_source(
            source, tmp_path / validation, as_of=AS_OF, batch_rows=2, streamed_validation=validation
        )
        outputs[validation] = _files(tmp_path / validation)
    assert report["tables"]["usage_events"]["rows_quarantined"] >= 1
    assert outputs["arrow"] == outputs["pandas"]


def test_a_table_with_rules_the_arrow_path_lacks_says_so():
    assert unsupported(SPEC) is None
    assert unsupported(TABLES["accounts"]) is not None  # its primary key needs duplicate checks
    with pytest.raises(ValueError, match="does not check"):
        StreamedValidator(TABLES["accounts"], _context())


def test_unknown_validation_name_is_refused(tmp_path):
    source = _write_source(tmp_path, EVENTS, "parquet")
    with pytest.raises(ValueError, match="streamed_validation"):
        ingest_source(source, tmp_path / "out", as_of=AS_OF, streamed_validation="fast")
