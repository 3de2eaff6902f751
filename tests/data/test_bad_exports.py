"""Exports as real users hand them over, broken in the ways real exports break.

Each case asserts the error type and that the message names the table and the file, or, where
rows are involved, that every record of the file is counted: the rows a source yields (and the
report's rows read) equal the records counted from the file itself, and broken records are
flagged in `_parse_error` instead of vanishing into a neighbour.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.base import Statement
from pipeline.cli import app
from pipeline.core.errors import DataContractError, EngineError, SourceError
from pipeline.data.contract import PARSE_ERROR
from pipeline.data.sources import DirectorySource, open_source
from pipeline.feature_engine.engines import DuckDBEngine, engine_resource_error
from pipeline.stages.ingest import ingest_source
from tests.conftest import AS_OF, write_dir

ACCOUNT_HEADER = "account_id,account_name,segment,industry,region,created_at,csm_id"


def _accounts_csv(n: int, *, name_of=lambda i: f"Account {i}") -> list[str]:
    """Lines of an accounts export (header first), all valid unless `name_of` breaks one."""
    return [ACCOUNT_HEADER] + [
        f"A{i},{name_of(i)},smb,retail,emea,2024-01-10T09:00:00Z,CSM1" for i in range(n)
    ]


def _raw_with_accounts(tmp_path: Path, raw_tables, lines: list[str]) -> Path:
    """A source directory of the tiny fixture whose accounts file is `lines`."""
    others = {k: v for k, v in raw_tables.items() if k != "accounts"}
    raw = write_dir(others, tmp_path / "raw")
    (raw / "accounts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return raw


def _physical_records(path: Path) -> int:
    """Records counted from the file itself: non-blank lines after the header (no quoted
    newlines in these fixtures)."""
    return sum(1 for line in path.read_text().splitlines()[1:] if line.strip())


def _parse_errors(frame: pd.DataFrame) -> dict[str, int]:
    if PARSE_ERROR not in frame.columns:
        return {}
    return frame[PARSE_ERROR].value_counts().to_dict()


# --- a table given twice, stray files in part folders ------------------------------------------


def test_table_given_as_file_and_parts_folder_is_refused(tmp_path, raw_tables):
    raw = write_dir(raw_tables, tmp_path, fmt="parquet")
    (raw / "usage_events").mkdir()
    raw_tables["usage_events"].to_parquet(raw / "usage_events" / "part-0.parquet")
    with pytest.raises(SourceError) as err:
        DirectorySource(raw).tables()
    message = str(err.value)
    assert "table 'usage_events' is given more than once" in message
    assert str(raw / "usage_events.parquet") in message
    assert f"{raw / 'usage_events'}/" in message


def test_table_given_as_csv_and_parquet_is_refused(tmp_path, raw_tables):
    raw = write_dir(raw_tables, tmp_path)
    raw_tables["accounts"].to_parquet(raw / "accounts.parquet")
    with pytest.raises(SourceError) as err:
        DirectorySource(raw).read("accounts")
    assert "table 'accounts'" in str(err.value)
    assert str(raw / "accounts.csv") in str(err.value)
    assert str(raw / "accounts.parquet") in str(err.value)


def test_subfolder_in_parts_folder_is_refused_by_name(tmp_path, raw_tables):
    """A copy of the parts in a subfolder once doubled usage: it must not be read silently."""
    parts = tmp_path / "usage_events"
    (parts / "backup").mkdir(parents=True)
    raw_tables["usage_events"].to_parquet(parts / "part-0.parquet")
    raw_tables["usage_events"].to_parquet(parts / "backup" / "part-0.parquet")
    with pytest.raises(SourceError) as err:
        DirectorySource(tmp_path).tables()
    assert "table 'usage_events'" in str(err.value)
    assert str(parts / "backup") in str(err.value)


def test_spark_temporary_folder_is_refused_as_an_unfinished_write(tmp_path, raw_tables):
    parts = tmp_path / "usage_events"
    (parts / "_temporary" / "0").mkdir(parents=True)
    raw_tables["usage_events"].to_parquet(parts / "part-0.parquet")
    with pytest.raises(SourceError, match=r"_temporary.*unfinished or failed write"):
        DirectorySource(tmp_path).tables()


def test_macos_forks_and_spark_markers_are_skipped_and_logged(tmp_path, raw_tables, caplog):
    parts = tmp_path / "usage_events"
    parts.mkdir()
    events = raw_tables["usage_events"]
    events.iloc[:2].to_parquet(parts / "part-0.parquet", index=False)
    events.iloc[2:].to_parquet(parts / "part-1.parquet", index=False)
    (parts / "._part-0.parquet").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # not Parquet
    (parts / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (parts / "_SUCCESS").write_bytes(b"")
    (parts / ".part-0.parquet.crc").write_bytes(b"crc")
    with caplog.at_level(logging.INFO, logger="pipeline.data.sources"):
        frames = list(DirectorySource(tmp_path).iter_batches("usage_events", batch_rows=10))
    assert sum(len(f) for f in frames) == len(events)
    for skipped in ("._part-0.parquet", ".DS_Store", "_SUCCESS", ".part-0.parquet.crc"):
        assert str(parts / skipped) in caplog.text


def test_transactional_commit_marker_is_refused(tmp_path, raw_tables):
    """Databricks' _started_/_committed_ markers mean some parts may be from aborted writes."""
    parts = tmp_path / "usage_events"
    parts.mkdir()
    raw_tables["usage_events"].to_parquet(parts / "part-0.parquet")
    (parts / "_committed_8312").write_text('{"added":["part-0.parquet"]}')
    with pytest.raises(SourceError) as err:
        DirectorySource(tmp_path).tables()
    assert "table 'usage_events'" in str(err.value)
    assert str(parts / "_committed_8312") in str(err.value)


def test_unexpected_file_in_parts_folder_is_refused(tmp_path, raw_tables):
    parts = tmp_path / "usage_events"
    parts.mkdir()
    raw_tables["usage_events"].to_parquet(parts / "part-0.parquet")
    (parts / "export-notes.txt").write_text("exported by Jo")
    with pytest.raises(SourceError, match=r"unexpected file .*export-notes.txt"):
        DirectorySource(tmp_path).tables()


def test_cli_exits_2_with_one_line_for_a_doubled_table(tmp_path, raw_tables):
    raw = write_dir(raw_tables, tmp_path / "raw")
    raw_tables["accounts"].to_parquet(raw / "accounts.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump({"base": {"as_of_date": "2025-01-01"}, "ingest": {"source": str(raw)}})
    )
    result = CliRunner().invoke(
        app, ["ingest", "--params", str(params), "--out", str(tmp_path / "interim")]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "table 'accounts' is given more than once" in result.output
    assert not (tmp_path / "interim").exists()


# --- CSV records: quotes, ragged rows, runaway fields --------------------------------------------


def test_unbalanced_quote_flags_every_swallowed_record(tmp_path, raw_tables):
    """One opening quote without its closing one swallowed 190 of 300 accounts into one name.

    Every one of those records is now its own row, flagged, and counted as read.
    """
    lines = _accounts_csv(300, name_of=lambda i: '"Broken, Inc' if i == 110 else f"Acct {i}")
    raw = _raw_with_accounts(tmp_path, raw_tables, lines)
    frame = DirectorySource(raw).read("accounts")
    assert len(frame) == _physical_records(raw / "accounts.csv") == 300
    assert _parse_errors(frame) == {"unbalanced_quote": 190}
    assert frame["account_name"].str.len().max() < 100  # nothing merged into one name
    assert frame.loc[111, "account_id"] == "A111"  # the swallowed rows keep their own values

    report = ingest_source(DirectorySource(raw), tmp_path / "interim", as_of=AS_OF)
    accounts = report["tables"]["accounts"]
    assert accounts["rows_read"] == 300
    assert accounts["rows_accepted"] + accounts["rows_quarantined"] == 300
    assert accounts["quarantined_by_reason"].get("unbalanced_quote") == 190


def test_unbalanced_quote_stops_ingest_at_the_quarantine_limit(tmp_path, raw_tables):
    lines = _accounts_csv(300, name_of=lambda i: '"Broken' if i == 110 else f"Acct {i}")
    raw = _raw_with_accounts(tmp_path, raw_tables, lines)
    with pytest.raises(DataContractError, match=r"table 'accounts'.*unbalanced_quote"):
        ingest_source(
            DirectorySource(raw), tmp_path / "interim", as_of=AS_OF, max_quarantine_share=0.01
        )
    assert not (tmp_path / "interim").exists()


def test_quoted_commas_quotes_and_newlines_are_one_record_each(tmp_path, raw_tables):
    names = {3: '"Smith, Jones & Co"', 4: '"The ""Best"" Ltd"', 5: '"Two\nlines"'}
    lines = _accounts_csv(8, name_of=lambda i: names.get(i, f"Acct {i}"))
    raw = _raw_with_accounts(tmp_path, raw_tables, lines)
    for batch_rows in (None, 2):  # the quoted newline falls inside and across batches
        frames = list(DirectorySource(raw).iter_batches("accounts", batch_rows))
        frame = pd.concat(frames, ignore_index=True)
        assert len(frame) == 8
        assert _parse_errors(frame) == {}
        assert frame["account_name"].tolist()[3:6] == [
            "Smith, Jones & Co",
            'The "Best" Ltd',
            "Two\nlines",
        ]


def test_two_unbalanced_quotes_that_pair_up_are_still_flagged(tmp_path, raw_tables):
    """Quotes in two rows can pair up into a record with the right number of fields; the
    continuation lines still look like whole records, so the span is flagged, not accepted."""
    names = {2: '"Broken', 5: 'Also broken"'}
    lines = _accounts_csv(8, name_of=lambda i: names.get(i, f"Acct {i}"))
    raw = _raw_with_accounts(tmp_path, raw_tables, lines)
    frame = DirectorySource(raw).read("accounts")
    assert len(frame) == 8
    assert _parse_errors(frame) == {"unbalanced_quote": 4}
    assert frame.loc[frame[PARSE_ERROR].notna(), "account_id"].tolist() == ["A2", "A3", "A4", "A5"]


def test_runaway_quote_in_a_large_file_stays_bounded_and_resyncs(tmp_path, raw_tables):
    """A quote that never closes in a big usage file: the csv field limit stops the runaway
    record, its lines are flagged, and the lines after it parse as records again."""
    header = "account_id,user_id,occurred_at,module,event_type,count"
    body = [f"A1,U1,2024-01-11T10:00:00Z,dashboard,view,{i}" for i in range(6000)]
    body[10] = 'A1,U1,2024-01-11T10:00:00Z,"dashboard,view,1'
    path = tmp_path / "usage_events.csv"
    path.write_text("\n".join([header, *body]) + "\n")
    frames = list(DirectorySource(tmp_path).iter_batches("usage_events", batch_rows=1000))
    assert all(len(f) <= 1000 for f in frames)
    frame = pd.concat(frames, ignore_index=True)
    assert len(frame) == _physical_records(path) == 6000
    flagged = frame[PARSE_ERROR].notna()
    assert set(frame.loc[flagged, PARSE_ERROR]) == {"unbalanced_quote"}
    assert (
        10 < flagged.sum() < 6000 and not flagged.iloc[:10].any() and not flagged.iloc[-10:].any()
    )


def test_ragged_rows_are_flagged_without_shifting_values(tmp_path, raw_tables):
    lines = _accounts_csv(6)
    lines[2] = "A1,Short row,smb"  # too few fields
    lines[4] = "A3,Long row,smb,retail,emea,2024-01-10T09:00:00Z,CSM1,extra,fields"  # too many
    raw = _raw_with_accounts(tmp_path, raw_tables, lines)
    frame = DirectorySource(raw).read("accounts")
    assert len(frame) == 6
    assert frame[PARSE_ERROR].fillna("ok").tolist()[1:4] == ["ragged_row", "ok", "ragged_row"]
    assert frame.loc[1, "segment"] == "smb" and pd.isna(frame.loc[1, "csm_id"])
    assert frame.loc[3, "csm_id"] == "CSM1"

    report = ingest_source(DirectorySource(raw), tmp_path / "interim", as_of=AS_OF)
    accounts = report["tables"]["accounts"]
    assert accounts["rows_read"] == _physical_records(raw / "accounts.csv")
    assert accounts["rows_accepted"] + accounts["rows_quarantined"] == accounts["rows_read"]
    assert accounts["quarantined_by_reason"].get("ragged_row") == 2


def test_field_longer_than_max_text_chars_is_flagged(tmp_path, raw_tables):
    lines = _accounts_csv(4, name_of=lambda i: "x" * 150 if i == 2 else f"Acct {i}")
    raw = _raw_with_accounts(tmp_path, raw_tables, lines)
    frame = DirectorySource(raw, max_text_chars=100).read("accounts")
    assert len(frame) == 4
    assert _parse_errors(frame) == {"field_too_long": 1}
    assert _parse_errors(DirectorySource(raw).read("accounts")) == {}  # default: 2000 chars


def test_header_with_unbalanced_quote_cannot_be_trusted(tmp_path, raw_tables):
    lines = _accounts_csv(3)
    lines[0] = lines[0].replace("segment", '"segment')
    raw = _raw_with_accounts(tmp_path, raw_tables, lines)
    with pytest.raises(DataContractError) as err:
        DirectorySource(raw).read("accounts")
    assert "table 'accounts'" in str(err.value)
    assert str(raw / "accounts.csv") in str(err.value)
    assert "header row (line 1) has an unbalanced quote" in str(err.value)


def test_header_naming_a_column_twice_is_refused(tmp_path, raw_tables):
    lines = _accounts_csv(3)
    lines[0] = lines[0].replace("industry", "segment")
    raw = _raw_with_accounts(tmp_path, raw_tables, lines)
    with pytest.raises(DataContractError, match=r"table 'accounts', column 'segment'.*more than"):
        DirectorySource(raw).read("accounts")


def test_excel_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path, raw_tables):
    raw = _raw_with_accounts(tmp_path, raw_tables, _accounts_csv(3))
    path = raw / "accounts.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    frame = DirectorySource(raw).read("accounts")
    assert frame.columns[0] == "account_id" and len(frame) == 3


def test_bare_carriage_return_line_endings_are_a_clear_error(tmp_path, raw_tables):
    raw = _raw_with_accounts(tmp_path, raw_tables, _accounts_csv(3))
    path = raw / "accounts.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
    with pytest.raises(SourceError, match=r"table 'accounts': file .*accounts\.csv.*carriage"):
        DirectorySource(raw).read("accounts")


# --- files that cannot be read at all -------------------------------------------------------------


def test_non_utf8_csv_names_the_byte_and_the_setting(tmp_path, raw_tables):
    lines = _accounts_csv(5, name_of=lambda i: "Café Olé" if i == 3 else f"Acct {i}")
    raw = _raw_with_accounts(tmp_path, raw_tables, [])
    path = raw / "accounts.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    with pytest.raises(SourceError) as err:
        DirectorySource(raw).read("accounts")
    message = str(err.value)
    offset = path.read_bytes().index(b"\xe9")
    assert "table 'accounts'" in message and str(path) in message
    assert f"byte {offset}" in message and "line 5" in message
    assert "ingest.encoding" in message and "cp1252" in message

    frame = open_source(str(raw), encoding="cp1252").read("accounts")
    assert frame.loc[3, "account_name"] == "Café Olé"


def test_unknown_encoding_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="unknown text encoding 'utf-9'"):
        DirectorySource(tmp_path, encoding="utf-9")


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_zero_byte_file_is_a_source_error(tmp_path, raw_tables, suffix):
    raw = write_dir({k: v for k, v in raw_tables.items() if k != "contracts"}, tmp_path)
    (raw / f"contracts{suffix}").write_bytes(b"")
    with pytest.raises(SourceError) as err:
        ingest_source(DirectorySource(raw), tmp_path / "interim", as_of=AS_OF)
    assert "table 'contracts'" in str(err.value)
    assert str(raw / f"contracts{suffix}") in str(err.value)
    assert "empty (0 bytes)" in str(err.value)


def test_corrupt_parquet_file_is_a_source_error(tmp_path, raw_tables):
    raw = write_dir(raw_tables, tmp_path, fmt="parquet")
    path = raw / "accounts.parquet"
    path.write_bytes(path.read_bytes()[:-40])  # cut off the footer, as a failed copy does
    with pytest.raises(SourceError) as err:
        DirectorySource(raw).read("accounts")
    assert "table 'accounts'" in str(err.value)
    assert f"{path} is not a readable Parquet file" in str(err.value)


def test_corrupt_parquet_part_names_the_part(tmp_path, raw_tables):
    parts = tmp_path / "usage_events"
    parts.mkdir()
    raw_tables["usage_events"].to_parquet(parts / "part-0.parquet")
    (parts / "part-1.parquet").write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(SourceError) as err:
        list(DirectorySource(tmp_path).iter_batches("usage_events", batch_rows=2))
    assert "table 'usage_events'" in str(err.value)
    assert f"{parts / 'part-1.parquet'} is not a readable Parquet file" in str(err.value)


def test_truncated_gzip_csv_is_a_source_error(tmp_path, raw_tables):
    import gzip

    lines = "\n".join(_accounts_csv(2000)).encode()
    path = tmp_path / "accounts.csv.gz"
    path.write_bytes(gzip.compress(lines)[:-3000])  # an interrupted download
    with pytest.raises(SourceError) as err:
        DirectorySource(tmp_path).read("accounts")
    assert "table 'accounts'" in str(err.value) and str(path) in str(err.value)


# --- the feature engine out of memory or disk -----------------------------------------------------


def _big_aggregate() -> list[Statement]:
    return [
        Statement(
            "per_key",
            "SELECT i % 300000 AS k, list(i) AS l FROM range(3000000) t(i) GROUP BY k",
            materialize=True,
        ),
        Statement("final", "SELECT 'A1' AS account_id, DATE '2025-01-01' AS snapshot_date"),
    ]


def test_duckdb_out_of_memory_names_the_settings():
    engine = DuckDBEngine(memory_limit="10MB", threads=1, temp_directory="")
    try:
        with pytest.raises(EngineError) as err:
            engine.run(_big_aggregate())
    finally:
        engine.close()
    message = str(err.value)
    assert isinstance(err.value.__cause__, duckdb.OutOfMemoryException)
    assert "ran out of memory while building per_key" in message
    assert "features.duckdb.memory_limit" in message and "features.duckdb.threads" in message


def test_duckdb_spill_without_disk_space_asks_for_disk(tmp_path):
    engine = DuckDBEngine(memory_limit="10MB", threads=1, temp_directory=str(tmp_path / "spill"))
    # DuckDB caps its spill files at the disk's free space; a tiny cap is a full disk.
    engine._con.execute("SET max_temp_directory_size = '1MB'")
    try:
        with pytest.raises(EngineError) as err:
            engine.run(_big_aggregate())
    finally:
        engine.close()
    message = str(err.value)
    assert "ran out of disk space" in message
    assert str((tmp_path / "spill").resolve()) in message and "Free disk space" in message


def test_no_space_left_io_error_becomes_a_disk_message():
    err = duckdb.IOException(
        'IO Error: Could not write file "/scratch/.tmp/duckdb_temp_storage-4.tmp": '
        "No space left on device"
    )
    translated = engine_resource_error(
        err, "building usage_daily", memory_limit="4 GiB", threads="4", temp_directory="/scratch"
    )
    assert isinstance(translated, EngineError)
    assert "out of disk space while building usage_daily" in str(translated)
    assert "/scratch" in str(translated)
    assert (
        engine_resource_error(
            duckdb.IOException("IO Error: No files found that match the pattern"),
            "x",
            memory_limit="1GB",
            threads="1",
            temp_directory="/t",
        )
        is None
    )


def test_unusable_memory_limit_names_the_key():
    with pytest.raises(EngineError, match=r"features.duckdb.memory_limit.*'lots'"):
        DuckDBEngine(memory_limit="lots")


def test_report_counts_match_the_file_for_a_clean_csv_export(tmp_path, raw_tables):
    """The plain case stays plain: no parse-error column, every record read and accepted."""
    raw = write_dir(raw_tables, tmp_path / "raw")
    frame = DirectorySource(raw).read("accounts")
    assert PARSE_ERROR not in frame.columns
    report = ingest_source(DirectorySource(raw), tmp_path / "interim", as_of=AS_OF)
    assert report["tables"]["accounts"]["rows_read"] == _physical_records(raw / "accounts.csv")
    assert report["rows_quarantined"] == 0
    saved = json.loads((tmp_path / "interim" / "validation_report.json").read_text())
    assert saved["rows_read"] == report["rows_read"]
