"""Readers for the places a user's raw data lives: a directory of files, or a SQL database.

One interface for all of them, so ingestion does not care where rows come from:
`tables()` lists what is there, `read(name)` loads a small table whole and `iter_batches(name)`
streams a large one (usage events) in bounded chunks. Names and columns are mapped from the
user's own to the contract's here, at the edge.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from pipeline.core.config import IngestSection
from pipeline.core.errors import DataContractError, SourceError
from pipeline.core.secrets import redact
from pipeline.data.contract import TABLES
from pipeline.data.csv_records import read_csv_records

log = logging.getLogger(__name__)

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
# A libpq key=value connection string (`host=db dbname=crm password=...`), not a path.
_LIBPQ_DSN = re.compile(r"(?:^|\s)(?:host|hostaddr|dbname|user|password|port|sslmode)\s*=")
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

    def rename_arrow(self, table: str, batch: pa.Table) -> pa.Table:
        """`rename` for an Arrow table (same mapping, same clash check)."""
        mapping = dict(self.columns.get(table, {}))
        if not mapping:
            return batch
        names = batch.column_names
        clashes = [c for c in mapping.values() if c in names and c not in mapping]
        if clashes:
            raise DataContractError(
                table,
                clashes[0],
                "column_map renames a column onto a name the table already has",
            )
        return batch.rename_columns([mapping.get(n, n) for n in names])


def expand_env(text: str) -> str:
    """Replace ${NAME} with the environment variable, so secrets stay out of params.yaml.

    In the user:password part of a URL the value is the secret itself, so it is
    percent-encoded there: a password holding `@`, `:`, `/` or `%` reaches the server intact
    and cannot spill into the host name.
    """
    userinfo = _userinfo_span(text)

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SourceError(f"the source URL needs environment variable {name}, which is unset")
        if userinfo is not None and userinfo[0] <= match.start() < userinfo[1]:
            return quote(os.environ[name], safe="")
        return os.environ[name]

    return _ENV_VAR.sub(value, text)


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """(start, end) of the userinfo of `scheme://userinfo@host/...`, None when it has none.

    The userinfo runs to the last `@` of the URL, so a password typed with a raw `@`, `:`,
    `/` or `?` stays in it, and `redact` (which splits the same way) hides all of it. An `@`
    in the query string must be written `%40`.
    """
    scheme = _URL_SCHEME.match(url)
    if scheme is None:
        return None
    at = url.rfind("@", scheme.end())
    return None if at == -1 else (scheme.end(), at)


def _connection_url(url: str) -> tuple[str, str | None]:
    """`url` with its user name and password percent-encoded, and the password itself.

    Either may arrive raw (typed into params) or encoded (`%40` for `@`); both are decoded
    first, so an encoded one is not encoded twice. The driver gets exactly one encoding.
    """
    span = _userinfo_span(url)
    if span is None:
        return url, None
    user, _, password = url[span[0] : span[1]].partition(":")
    secret = unquote(password) if password else None
    encoded = quote(unquote(user), safe="") + (f":{quote(secret, safe='')}" if secret else "")
    return url[: span[0]] + encoded + url[span[1] :], secret


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
                chunks = read_csv_records(
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

    def iter_arrow_batches(
        self, table: str, batch_rows: int
    ) -> Iterator[tuple[pa.Table, pd.DataFrame | None]]:
        """`iter_batches` as Arrow tables, in exactly the same chunks (so parts line up).

        Parquet files are never converted to pandas; a CSV chunk is parsed into a pandas frame
        (record by record, see `csv_records`), which comes along as the second item so that
        validation can read the text as parsed.
        """
        files = self._files(table)
        if not files or any(_kind(p) == "csv" or p.stat().st_size == 0 for p in files):
            for frame in self.iter_batches(table, batch_rows):
                yield _arrow_of(frame), frame
            return
        for path in files:
            for batch in _read_parquet_arrow(path, table, batch_rows):
                yield self.mapping.rename_arrow(table, pa.Table.from_batches([batch])), None


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


def _read_parquet_arrow(path: Path, table: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """`_read_parquet`'s batches (the same rows in the same chunks), as Arrow record batches.

    Read ahead by one batch only: the scanner's default (16 batches) held about 1.7 GB of a
    100M-row file in memory and was slower on two busy cores; ingest reads one chunk ahead
    itself, in a thread, while it validates the current one.
    """
    try:
        batches = ds.dataset(path, format="parquet").to_batches(
            batch_size=batch_rows, batch_readahead=1, fragment_readahead=1
        )
        for batch in batches:
            if batch.num_rows:
                yield batch
    except (pa.ArrowException, OSError) as err:
        raise SourceError(
            f"table '{table}': file {path} is not a readable Parquet file ({err}); export it again"
        ) from err


def _arrow_of(frame: pd.DataFrame) -> pa.Table | None:
    """A pandas chunk as Arrow, or None when a column will not convert (mixed objects)."""
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError):
        return None


def iter_arrow_batches(
    source: Source, table: str, batch_rows: int
) -> Iterator[tuple[pa.Table | None, pd.DataFrame | None]]:
    """The chunks of `source.iter_batches` as (Arrow table, pandas frame or None).

    Sources that read Arrow natively hand over Arrow only; others give their pandas frame and
    its Arrow conversion (None when it does not convert: then only the frame is usable).
    """
    native = getattr(source, "iter_arrow_batches", None)
    if native is not None:
        yield from native(table, batch_rows)
        return
    for frame in source.iter_batches(table, batch_rows):
        yield _arrow_of(frame), frame


# --- CSV, record by record ----------------------------------------------------------------------


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

    def iter_arrow_batches(
        self, table: str, batch_rows: int
    ) -> Iterator[tuple[pa.Table, pd.DataFrame | None]]:
        """`iter_batches` as Arrow tables, in the same chunks."""
        reader = self._con.sql(self._query(table)).to_arrow_reader(batch_rows)
        for batch in reader:
            if batch.num_rows:
                yield self.mapping.rename_arrow(table, pa.Table.from_batches([batch])), None


class SQLAlchemySource:
    """Tables of a database reached through SQLAlchemy (PostgreSQL with psycopg)."""

    def __init__(self, url: str, mapping: NameMapping | None = None, schema: str | None = None):
        import sqlalchemy as sa

        self.mapping = mapping or NameMapping()
        self.schema = schema
        self.description = redact(url)
        encoded, password = _connection_url(url)
        try:
            self._engine = sa.create_engine(_with_driver(encoded))
            with self._engine.connect():
                pass
        except Exception as err:  # the driver's own error says why (auth, host, database)
            why = redact(str(err), secrets=[password] if password else [])
            # `from None`: the driver's exception, unredacted, stays out of any traceback
            raise SourceError(f"cannot connect to {self.description}: {why}") from None

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
    `postgresql://user:${PASSWORD}@host:port/db` (${...} is read from the environment; in
    the user:password part its value is the raw secret, percent-encoded here).
    `encoding` and `max_text_chars` (ingest.encoding, ingest.max_text_chars) apply to CSV
    files; databases hand over typed, already-decoded values.
    """
    location = expand_env(str(location))
    if location.startswith("duckdb:///"):
        # As in SQLAlchemy: duckdb:///relative/file.db, duckdb:////absolute/file.db
        return DuckDBSource(Path(location.removeprefix("duckdb:///")), mapping, schema or "main")
    if re.match(r"^postgres(ql)?(\+\w+)?://", location):
        return SQLAlchemySource(location, mapping, schema)
    if "://" in location or _LIBPQ_DSN.search(location):
        raise SourceError(
            f"unsupported source {redact(location)}: use a directory, duckdb:///path.db or "
            "postgresql://user:${PASSWORD}@host:port/db"
        )
    return DirectorySource(
        Path(location), mapping, encoding=encoding, max_text_chars=max_text_chars
    )


def configured_source(ingest: IngestSection, *, location: str | None = None) -> Source:
    """The source `ingest` names (or `location`), with its name mapping and reading settings:
    the one way ingest and `churn check` open a user's data."""
    return open_source(
        location or ingest.source,
        mapping=NameMapping(tables=ingest.table_map, columns=ingest.column_map),
        schema=ingest.schema_name,
        encoding=ingest.encoding,
        max_text_chars=ingest.max_text_chars,
    )
