"""Readers for the places a user's raw data lives: a directory of files, or a SQL database.

One interface for all of them, so ingestion does not care where rows come from:
`tables()` lists what is there, `read(name)` loads a small table whole and `iter_batches(name)`
streams a large one (usage events) in bounded chunks. Names and columns are mapped from the
user's own to the contract's here, at the edge.
"""

from __future__ import annotations

import codecs
import csv
import gc
import gzip
import itertools
import logging
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from pipeline.core.errors import DataContractError, SourceError
from pipeline.data.contract import PARSE_ERROR, TABLES

log = logging.getLogger(__name__)

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FILE_SUFFIXES = (".parquet", ".csv", ".csv.gz")


class Source(Protocol):
    """Where raw tables come from."""

    description: str

    def tables(self) -> set[str]:
        """Contract names of the tables this source has."""
        ...

    def read(self, table: str) -> pd.DataFrame:
        """The whole table, columns already mapped to contract names."""
        ...

    def iter_batches(self, table: str, batch_rows: int) -> Iterator[pd.DataFrame]:
        """The table in chunks of at most `batch_rows` rows, columns mapped."""
        ...


@dataclass(frozen=True)
class NameMapping:
    """The user's own table and column names, mapped onto the contract's.

    `tables` maps a contract table name to the user's table (or file) name; `columns` maps, per
    contract table, the user's column name to the contract's.
    """

    tables: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted((set(self.tables) | set(self.columns)) - set(TABLES))
        if unknown:
            raise SourceError(
                f"ingest.table_map/column_map name unknown tables {unknown}; "
                f"the contract's tables are {sorted(TABLES)}"
            )

    def source_name(self, table: str) -> str:
        return self.tables.get(table, table)

    def rename(self, table: str, frame: pd.DataFrame) -> pd.DataFrame:
        mapping = dict(self.columns.get(table, {}))
        if not mapping:
            return frame
        clashes = [c for c in mapping.values() if c in frame.columns and c not in mapping]
        if clashes:
            raise DataContractError(
                table,
                clashes[0],
                "column_map renames a column onto a name the table already has",
            )
        return frame.rename(columns=mapping)


def expand_env(text: str) -> str:
    """Replace ${NAME} with the environment variable, so secrets stay out of params.yaml."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SourceError(f"the source URL needs environment variable {name}, which is unset")
        return os.environ[name]

    return _ENV_VAR.sub(value, text)


def redact(url: str) -> str:
    """The URL without its password, for logs and reports."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


# Part folders: what else a export tool leaves next to the data, and whether that is harmless.
# Anything not listed (a stray file, a subfolder) is refused by name: reading it, or silently
# not reading it, could change the row counts without anyone noticing.
_HARMLESS_MARKERS = {
    "_SUCCESS": "Spark/Hadoop job-success marker",
    ".DS_Store": "macOS Finder metadata",
    "_metadata": "Parquet summary metadata (no rows of its own)",
    "_common_metadata": "Parquet summary schema (no rows of its own)",
}
_TRANSACTION_MARKERS = ("_committed_", "_started_")


class DirectorySource:
    """A directory with one file per table (`accounts.parquet`, `accounts.csv`), or one
    sub-directory of Parquet/CSV part files per table (`usage_events/part-0.parquet`).

    CSV is read as text, so that the contract's parsers decide what is a valid number or date
    and can quarantine single bad values instead of failing the whole file. CSV is parsed
    record by record against the physical lines of the file, so a broken record (an unbalanced
    quote, a ragged row, a runaway field) is flagged in the `_parse_error` column and counted,
    never merged into its neighbour or dropped.
    """

    def __init__(
        self,
        path: Path,
        mapping: NameMapping | None = None,
        *,
        encoding: str = "utf-8",
        max_text_chars: int = 2000,
    ) -> None:
        self.path = Path(path)
        self.mapping = mapping or NameMapping()
        self.encoding = encoding
        self.max_text_chars = max_text_chars
        self.description = f"directory {self.path}"
        self._resolved: dict[str, list[Path]] = {}
        if not self.path.is_dir():
            raise SourceError(f"source directory {self.path} does not exist")
        try:
            codecs.lookup(encoding)
        except LookupError as err:
            raise SourceError(f"unknown text encoding {encoding!r} (ingest.encoding)") from err

    def _files(self, table: str) -> list[Path]:
        """The data files of `table`, refusing layouts where what to read is ambiguous."""
        if table not in self._resolved:
            self._resolved[table] = self._find_files(table)
        return self._resolved[table]

    def _find_files(self, table: str) -> list[Path]:
        name = self.mapping.source_name(table)
        candidates = [self.path / f"{name}{suffix}" for suffix in _FILE_SUFFIXES]
        found = [p for p in candidates if p.is_file()]
        folder = self.path / name
        if folder.is_dir():
            found.append(folder)
        if len(found) > 1:
            shown = ", ".join(f"{p}{'/' if p.is_dir() else ''}" for p in found)
            raise SourceError(
                f"table '{table}' is given more than once: {shown}; keep exactly one (a single "
                "file or one folder of parts), since reading either alone would drop the rows "
                "of the other"
            )
        if not found:
            return []
        if found[0].is_file():
            return found
        parts = _part_files(table, folder)
        kinds = {_kind(p) for p in parts}
        if len(kinds) > 1:
            raise SourceError(f"{folder} mixes CSV and Parquet files; use one format")
        if not parts:
            log.warning("%s: folder %s holds no part files; table treated as absent", table, folder)
        return parts

    def tables(self) -> set[str]:
        return {t for t in TABLES if self._files(t)}

    def read(self, table: str) -> pd.DataFrame:
        frames = list(self.iter_batches(table, batch_rows=None))
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def iter_batches(self, table: str, batch_rows: int | None) -> Iterator[pd.DataFrame]:
        files = self._files(table)
        if not files:
            raise SourceError(f"table '{table}' not found in {self.path}")
        for path in files:
            if path.stat().st_size == 0:
                kind = "Parquet" if _kind(path) == "parquet" else "CSV"
                raise SourceError(
                    f"table '{table}': file {path} is empty (0 bytes), not a readable {kind} "
                    "file; the export was probably interrupted, so export it again"
                )
            if _kind(path) == "csv":
                chunks = _read_csv(
                    path,
                    table,
                    encoding=self.encoding,
                    max_text_chars=self.max_text_chars,
                    batch_rows=batch_rows,
                )
            else:
                chunks = _read_parquet(path, table, batch_rows)
            for chunk in chunks:
                yield self.mapping.rename(table, chunk)


def _part_files(table: str, folder: Path) -> list[Path]:
    """The part files of a table's folder; known-harmless markers are skipped, anything else
    that is not a part file is refused by name."""
    parts = []
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if entry.is_dir():
            hint = ""
            if name == "_temporary":
                hint = " (Spark's folder of an unfinished or failed write: export again)"
            elif "=" in name:
                hint = " (a Hive-style partition: its key would be lost; export one flat folder)"
            raise SourceError(
                f"table '{table}': folder {folder} contains a subfolder {entry}{hint}; part "
                "files must sit directly in the table's folder, and subfolders are not read"
            )
        if name.startswith("._"):
            log.info("%s: skipping %s (a macOS resource fork, not data)", table, entry)
        elif name in _HARMLESS_MARKERS:
            log.info("%s: skipping %s (%s)", table, entry, _HARMLESS_MARKERS[name])
        elif name.startswith(".") and name.endswith(".crc"):
            log.info("%s: skipping %s (a Hadoop checksum file)", table, entry)
        elif name.startswith(_TRANSACTION_MARKERS):
            raise SourceError(
                f"table '{table}': folder {folder} has a transactional commit marker {entry}; "
                "with it, some part files may belong to aborted writes and must not be read. "
                "Export the table again without transactional commit (or as one file)"
            )
        elif name.startswith((".", "_")) or not name.endswith(_FILE_SUFFIXES):
            raise SourceError(
                f"table '{table}': unexpected file {entry} in the parts folder {folder}; only "
                f"part files ending in {', '.join(_FILE_SUFFIXES)} are read. Remove it or move "
                "it elsewhere"
            )
        else:
            parts.append(entry)
    return parts


def _kind(path: Path) -> str:
    return "parquet" if path.name.endswith(".parquet") else "csv"


def _read_parquet(path: Path, table: str, batch_rows: int | None) -> Iterator[pd.DataFrame]:
    """One Parquet file in record batches; an unreadable file names itself and its table."""
    try:
        dataset = ds.dataset(path, format="parquet")
        if batch_rows is None:
            yield dataset.to_table().to_pandas()
            return
        for batch in dataset.to_batches(batch_size=batch_rows):
            if batch.num_rows:
                yield batch.to_pandas()
    except (pa.ArrowException, OSError) as err:
        raise SourceError(
            f"table '{table}': file {path} is not a readable Parquet file ({err}); export it again"
        ) from err


# --- CSV, record by record ----------------------------------------------------------------------

_BLOCK_BYTES = 1 << 20
UNBALANCED_QUOTE = "unbalanced_quote"
RAGGED_ROW = "ragged_row"
FIELD_TOO_LONG = "field_too_long"


class _Lines:
    """The decoded physical lines of a CSV file, in blocks, for `csv.reader`.

    Decoding here, block by block, rather than in `open()`, lets a bad byte be reported by its
    offset and line. The blocks stay available (`between`) until `release`, so the caller can
    look at exactly the physical lines behind the records it parsed; the csv module itself
    pulls lines through C (`itertools.chain`), which keeps the common case fast.
    """

    def __init__(self, raw: BinaryIO, encoding: str, table: str, path: Path) -> None:
        self._raw = raw
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._table = table
        self._path = path
        self._bytes = 0
        self._lines_decoded = 0
        # (index of the block's first line, its lines, its longest line), oldest first
        self._kept: list[tuple[int, list[str], int]] = []

    def stream(self) -> Iterator[str]:
        """Every physical line, each ending in its newline (the last one may not)."""
        return itertools.chain.from_iterable(self._blocks())

    def _blocks(self) -> Iterator[list[str]]:
        tail = ""
        while True:
            try:
                block = self._raw.read(_BLOCK_BYTES)
            except (OSError, EOFError, zlib.error) as err:  # a truncated or corrupt .gz
                raise SourceError(
                    f"table '{self._table}': file {self._path} cannot be read after byte "
                    f"{self._bytes} ({err}); export it again"
                ) from err
            buffered = self._decoder.getstate()[0]
            try:
                text = tail + self._decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                raise self._decode_error(buffered + block, len(buffered), err) from err
            self._bytes += len(block)
            if block:
                pieces = text.split("\n")
                tail = pieces.pop()
                lines = [piece + "\n" for piece in pieces]
            else:
                lines = [text] if text else []
            if lines:
                longest = max(map(len, lines))
                self._kept.append((self._lines_decoded, lines, longest))
                self._lines_decoded += len(lines)
                yield lines
            if not block:
                return

    def between(self, start: int, end: int) -> list[str]:
        """Physical lines `start` (0-based) up to `end`, from the blocks still kept."""
        out: list[str] = []
        for first, lines, _ in self._kept:
            if first + len(lines) > start and first < end:
                out.extend(lines[max(0, start - first) : end - first])
        return out

    def longest_between(self, start: int, end: int) -> int:
        """An upper bound on the length of lines `start` to `end` (their blocks' longest)."""
        return max(
            (n for first, lines, n in self._kept if first + len(lines) > start and first < end),
            default=0,
        )

    def release(self, end: int) -> None:
        """Forget the blocks that hold only lines before `end`."""
        self._kept = [k for k in self._kept if k[0] + len(k[1]) > end]

    def _decode_error(self, data: bytes, buffered: int, err: UnicodeDecodeError) -> SourceError:
        # `data` is the decoder's carried-over bytes (already counted) plus the new block.
        offset = self._bytes - buffered + err.start
        before = data[: err.start].decode(self._encoding, errors="replace")
        line = self._lines_decoded + 1 + before.count("\n")
        snippet = data[max(0, err.start - 30) : err.end + 10]
        return SourceError(
            f"table '{self._table}': file {self._path} is not valid {self._encoding} text at "
            f"byte {offset} (line {line}, near {snippet!r}); set ingest.encoding in params.yaml "
            "to the encoding the export was written in, e.g. cp1252 (Excel on Windows) or "
            "latin-1"
        )


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _read_csv(
    path: Path,
    table: str,
    *,
    encoding: str,
    max_text_chars: int,
    batch_rows: int | None,
) -> Iterator[pd.DataFrame]:
    """A CSV file as text frames of at most `batch_rows` rows, one row per record of the file.

    Records are parsed in batches by the csv module (fast path); a batch is re-parsed record by
    record (`_exact_records`) only when its records did not map one to one onto physical lines
    (a quoted newline, or a broken quote) or the parser gave up on a record. Every physical
    line ends up in exactly one row (blank lines in none), so rows cannot vanish before they
    are counted; broken ones carry a reason in `PARSE_ERROR` for validation to quarantine.
    """
    with _open_binary(path) as raw:
        lines = _Lines(raw, encoding, table, path)
        reader = csv.reader(lines.stream())
        header = _header(reader, table, path)
        width = len(header)
        batch = batch_rows or 100_000
        rows: list[list[str]] = []
        reasons: list[str | None] = []
        produced = False
        finished = False
        while not finished:
            start = reader.line_num
            try:
                parsed = _parse_batch(reader, batch)
                finished = len(parsed) < batch
            except csv.Error as err:
                _raise_if_line_endings(err, table, path, reader.line_num)
                parsed = None  # the parser gave up inside this batch: redo it exactly
            end = reader.line_num
            if parsed is not None and len(parsed) == end - start:  # one line per record
                if lines.longest_between(start, end) <= max_text_chars and all(
                    len(fields) == width for fields in parsed
                ):
                    rows.extend(parsed)
                    reasons.extend([None] * len(parsed))
                else:
                    consumed = lines.between(start, end)
                    _single_line_records(parsed, consumed, width, max_text_chars, rows, reasons)
            else:
                _exact_records(lines.between(start, end), width, max_text_chars, rows, reasons)
            lines.release(end)
            # A broken quote re-split into its lines can give more rows than records parsed.
            while batch_rows is not None and len(rows) >= batch_rows:
                yield _frame(rows[:batch_rows], reasons[:batch_rows], header)
                produced = True
                rows, reasons = rows[batch_rows:], reasons[batch_rows:]
        if rows or not produced:
            yield _frame(rows, reasons, header)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while millions of row lists are made.

    Otherwise it rescans them again and again (most of the time of a CSV read); rows hold no
    reference cycles, so nothing is left uncollected. The previous state is restored.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_batch(reader, batch: int) -> list[list[str]]:
    with _gc_paused():
        return list(itertools.islice(reader, batch))


def _header(reader, table: str, path: Path) -> list[str]:
    """The header record; a header that spans lines means the file cannot be trusted at all."""
    header: list[str] | None = []
    broken = False
    while header == []:  # blank lines before the header
        start = reader.line_num
        try:
            header = next(reader, None)
        except csv.Error as err:
            _raise_if_line_endings(err, table, path, reader.line_num)
            header, broken = None, True
    if header is None and not broken:
        raise DataContractError(table, None, f"file {path} has no header row (only blank lines)")
    if broken or reader.line_num - start > 1:
        raise DataContractError(
            table,
            None,
            f"file {path}: the header row (line {start + 1}) has an unbalanced quote, so no "
            "record of the file can be located; fix the header's quoting and export again",
        )
    if header and header[0].startswith("\ufeff"):  # Excel's UTF-8 byte order mark
        header[0] = header[0][1:]
    header = [name or f"Unnamed: {i}" for i, name in enumerate(header)]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataContractError(
            table,
            repeated[0],
            f"file {path}: the header names column{'s' if len(repeated) > 1 else ''} "
            f"{', '.join(repeated)} more than once; rename so each column is named once",
        )
    return header


def _raise_if_line_endings(err: csv.Error, table: str, path: Path, line: int) -> None:
    if "new-line character" in str(err):
        raise SourceError(
            f"table '{table}': file {path} (near line {line}) ends its lines with a bare carriage "
            "return (old Mac format); export it again with ordinary line endings (LF or CRLF)"
        ) from err


def _single_line_records(
    parsed: list[list[str]],
    consumed: list[str],
    width: int,
    max_text_chars: int,
    rows: list[list[str]],
    reasons: list[str | None],
) -> None:
    """Records that are one physical line each: flag ragged rows and runaway fields."""
    for fields, line in zip(parsed, consumed, strict=True):
        if not fields:
            continue  # a blank line is not a record
        if len(fields) != width:
            rows.append(_fit(fields, width))
            reasons.append(RAGGED_ROW)
        else:
            rows.append(fields)
            too_long = len(line) > max_text_chars and max(map(len, fields)) > max_text_chars
            reasons.append(FIELD_TOO_LONG if too_long else None)


def _exact_records(
    consumed: list[str],
    width: int,
    max_text_chars: int,
    rows: list[list[str]],
    reasons: list[str | None],
) -> None:
    """Parse `consumed` one record at a time, knowing the physical lines of each.

    A record over several lines is a legitimately quoted newline unless it looks like several
    records swallowed by an unbalanced quote: it has the wrong number of fields, a field longer
    than `max_text_chars`, or a continuation line that by itself has a whole record's worth of
    delimiters. Then every one of its physical lines becomes its own flagged row.
    """
    source = _ListLines(consumed)
    reader = csv.reader(source)
    while True:
        try:
            fields = next(reader, None)
        except csv.Error:  # a field past the csv module's limit: a quote ran away
            span = source.collect()
            _flag_lines(
                span, width, UNBALANCED_QUOTE if len(span) > 1 else FIELD_TOO_LONG, rows, reasons
            )
            continue
        span = source.collect()
        if fields is None:
            return
        if len(span) == 1:
            _single_line_records([fields], span, width, max_text_chars, rows, reasons)
        elif _looks_merged(fields, span, width, max_text_chars):
            _flag_lines(span, width, UNBALANCED_QUOTE, rows, reasons)
        else:
            _single_line_records([fields], ["".join(span)], width, max_text_chars, rows, reasons)


def _looks_merged(fields: list[str], span: list[str], width: int, max_text_chars: int) -> bool:
    if len(fields) != width or max(map(len, fields)) > max_text_chars:
        return True
    return width > 1 and any(line.count(",") >= width - 1 for line in span[1:])


def _flag_lines(
    span: list[str],
    width: int,
    reason: str,
    rows: list[list[str]],
    reasons: list[str | None],
) -> None:
    """One flagged row per non-blank physical line, fields split without quoting, so a person
    can find each line of the export in the quarantine."""
    for line in span:
        if not line.strip():
            continue
        fields = next(csv.reader([line], quoting=csv.QUOTE_NONE), [])
        rows.append(_fit(fields, width))
        reasons.append(reason)


def _fit(fields: list[str], width: int) -> list[str]:
    """A record padded or cut to the header's width; the row is flagged, so no value shifts
    into a column where validation would accept it."""
    if len(fields) >= width:
        return fields[:width]
    return fields + [""] * (width - len(fields))


class _ListLines:
    """Lines from a list, remembering which ones the csv module took for each record."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = iter(lines)
        self.taken: list[str] = []

    def __iter__(self) -> _ListLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line

    def collect(self) -> list[str]:
        taken, self.taken = self.taken, []
        return taken


def _frame(rows: list[list[str]], reasons: list[str | None], header: list[str]) -> pd.DataFrame:
    """Rows as a frame of text; empty fields are missing, as the contract's parsers expect."""
    with _gc_paused():
        frame = pd.DataFrame(rows, columns=header, dtype=str)
    frame = frame.mask(frame == "")
    if any(reason is not None for reason in reasons):
        frame[PARSE_ERROR] = pd.Series(reasons, index=frame.index, dtype="string")
    return frame


class DuckDBSource:
    """Tables of a DuckDB database file, opened read-only."""

    def __init__(self, path: Path, mapping: NameMapping | None = None, schema: str = "main"):
        import duckdb

        self.path = Path(path)
        self.mapping = mapping or NameMapping()
        self.schema = schema
        self.description = f"duckdb {self.path}"
        if not self.path.is_file():
            raise SourceError(f"DuckDB database {self.path} does not exist")
        self._con = duckdb.connect(str(self.path), read_only=True)

    def tables(self) -> set[str]:
        rows = self._con.execute(
            "select table_name from information_schema.tables where table_schema = ?",
            [self.schema],
        ).fetchall()
        present = {r[0] for r in rows}
        return {t for t in TABLES if self.mapping.source_name(t) in present}

    def _query(self, table: str) -> str:
        name = self.mapping.source_name(table).replace('"', '""')
        return f'select * from "{self.schema}"."{name}"'

    def read(self, table: str) -> pd.DataFrame:
        return self.mapping.rename(table, self._con.execute(self._query(table)).df())

    def iter_batches(self, table: str, batch_rows: int) -> Iterator[pd.DataFrame]:
        reader = self._con.sql(self._query(table)).to_arrow_reader(batch_rows)
        for batch in reader:
            if batch.num_rows:
                yield self.mapping.rename(table, batch.to_pandas())


class SQLAlchemySource:
    """Tables of a database reached through SQLAlchemy (PostgreSQL with psycopg)."""

    def __init__(self, url: str, mapping: NameMapping | None = None, schema: str | None = None):
        import sqlalchemy as sa

        self.mapping = mapping or NameMapping()
        self.schema = schema
        self.description = redact(url)
        try:
            self._engine = sa.create_engine(_with_driver(url))
            with self._engine.connect():
                pass
        except Exception as err:  # the driver's own error says why (auth, host, database)
            raise SourceError(f"cannot connect to {redact(url)}: {err}") from err

    def tables(self) -> set[str]:
        import sqlalchemy as sa

        present = set(sa.inspect(self._engine).get_table_names(schema=self.schema))
        return {t for t in TABLES if self.mapping.source_name(t) in present}

    def _select(self, table: str):
        import sqlalchemy as sa

        return sa.select(sa.text("*")).select_from(
            sa.table(self.mapping.source_name(table), schema=self.schema)
        )

    def read(self, table: str) -> pd.DataFrame:
        with self._engine.connect() as con:
            return self.mapping.rename(table, pd.read_sql(self._select(table), con))

    def iter_batches(self, table: str, batch_rows: int) -> Iterator[pd.DataFrame]:
        with self._engine.connect().execution_options(stream_results=True) as con:
            for chunk in pd.read_sql(self._select(table), con, chunksize=batch_rows):
                if len(chunk):
                    yield self.mapping.rename(table, chunk)


def _with_driver(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def open_source(
    location: str,
    *,
    mapping: NameMapping | None = None,
    schema: str | None = None,
    encoding: str = "utf-8",
    max_text_chars: int = 2000,
) -> Source:
    """Open the source named in params.

    A directory path; `duckdb:///file.db` (relative; four slashes for an absolute path); or
    `postgresql://user:${PASSWORD}@host:port/db` (${...} is read from the environment).
    `encoding` and `max_text_chars` (ingest.encoding, ingest.max_text_chars) apply to CSV
    files; databases hand over typed, already-decoded values.
    """
    location = expand_env(str(location))
    if location.startswith("duckdb:///"):
        # As in SQLAlchemy: duckdb:///relative/file.db, duckdb:////absolute/file.db
        return DuckDBSource(Path(location.removeprefix("duckdb:///")), mapping, schema or "main")
    if re.match(r"^postgres(ql)?(\+\w+)?://", location):
        return SQLAlchemySource(location, mapping, schema)
    if "://" in location:
        raise SourceError(
            f"unsupported source {redact(location)}: use a directory, duckdb:///path.db or "
            "postgresql://..."
        )
    return DirectorySource(
        Path(location), mapping, encoding=encoding, max_text_chars=max_text_chars
    )
