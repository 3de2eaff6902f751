"""Readers for the places a user's raw data lives: a directory of files, or a SQL database.

One interface for all of them, so ingestion does not care where rows come from:
`tables()` lists what is there, `read(name)` loads a small table whole and `iter_batches(name)`
streams a large one (usage events) in bounded chunks. Names and columns are mapped from the
user's own to the contract's here, at the edge.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow.dataset as ds

from pipeline.core.errors import DataContractError, SourceError
from pipeline.data.contract import TABLES

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


class DirectorySource:
    """A directory with one file per table (`accounts.parquet`, `accounts.csv`), or one
    sub-directory of Parquet/CSV part files per table (`usage_events/part-0.parquet`).

    CSV is read as text, so that the contract's parsers decide what is a valid number or date
    and can quarantine single bad values instead of failing the whole file.
    """

    def __init__(self, path: Path, mapping: NameMapping | None = None) -> None:
        self.path = Path(path)
        self.mapping = mapping or NameMapping()
        self.description = f"directory {self.path}"
        if not self.path.is_dir():
            raise SourceError(f"source directory {self.path} does not exist")

    def _files(self, table: str) -> list[Path]:
        name = self.mapping.source_name(table)
        for suffix in _FILE_SUFFIXES:
            candidate = self.path / f"{name}{suffix}"
            if candidate.is_file():
                return [candidate]
        folder = self.path / name
        if folder.is_dir():
            parts = sorted(
                p for p in folder.rglob("*") if p.is_file() and p.name.endswith(_FILE_SUFFIXES)
            )
            kinds = {_kind(p) for p in parts}
            if len(kinds) > 1:
                raise SourceError(f"{folder} mixes CSV and Parquet files; use one format")
            return parts
        return []

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
            if _kind(path) == "csv":
                chunks = pd.read_csv(
                    path,
                    dtype=str,
                    keep_default_na=False,
                    na_values=[""],
                    chunksize=batch_rows,
                )
                if batch_rows is None:
                    chunks = [chunks]
                for chunk in chunks:
                    yield self.mapping.rename(table, chunk)
            else:
                dataset = ds.dataset(path, format="parquet")
                if batch_rows is None:
                    yield self.mapping.rename(table, dataset.to_table().to_pandas())
                    continue
                for batch in dataset.to_batches(batch_size=batch_rows):
                    if batch.num_rows:
                        yield self.mapping.rename(table, batch.to_pandas())


def _kind(path: Path) -> str:
    return "parquet" if path.name.endswith(".parquet") else "csv"


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
) -> Source:
    """Open the source named in params.

    A directory path; `duckdb:///file.db` (relative; four slashes for an absolute path); or
    `postgresql://user:${PASSWORD}@host:port/db` (${...} is read from the environment).
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
    return DirectorySource(Path(location), mapping)
