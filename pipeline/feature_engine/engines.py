"""Execution engines for the feature definitions: DuckDB (default) and Apache Spark.

Both take the same `Statement`s (DuckDB-dialect SQL); Spark gets them transpiled by SQLGlot.
Inputs are registered as views over the interim Parquet files, so neither engine loads data it
does not need.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pandas as pd

from features.definitions import Statement
from pipeline.core.errors import EngineError

log = logging.getLogger(__name__)


class Engine(Protocol):
    name: str

    @property
    def version(self) -> str: ...

    def register_parquet(self, name: str, path: Path) -> None: ...

    def register_frame(self, name: str, frame: pd.DataFrame) -> None: ...

    def run(self, statements: list[Statement]) -> pd.DataFrame: ...

    def query(self, sql: str) -> pd.DataFrame: ...

    def write_parquet(self, sql: str, path: Path) -> None: ...

    def close(self) -> None: ...


def _parquet_glob(path: Path) -> str:
    return str(path / "*.parquet") if path.is_dir() else str(path)


class DuckDBEngine:
    """In-process DuckDB over Parquet; the session time zone is UTC so dates never shift.

    Running out of memory, or of disk while DuckDB spills to its temp directory, is fixed by a
    setting, not by us, so both become an `EngineError` that names the setting.
    """

    name = "duckdb"

    def __init__(
        self,
        *,
        threads: int | None = None,
        memory_limit: str | None = None,
        temp_directory: str | None = None,
    ) -> None:
        import duckdb

        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute("SET enable_progress_bar = false")
        self._built: set[str] = set()
        settings = {
            "threads": str(int(threads)) if threads else None,
            "memory_limit": memory_limit or None,
            "temp_directory": temp_directory,  # "" turns spilling off; None keeps DuckDB's
        }
        for key, value in settings.items():
            if value is None:
                continue
            try:
                self._con.execute(f"SET {key} = '{_sql_text(value)}'")
            except duckdb.Error as err:
                raise EngineError(
                    f"features.duckdb.{key}: DuckDB does not accept {value!r} ({err})"
                ) from err

    def register_parquet(self, name: str, path: Path) -> None:
        self._built.clear()  # new inputs: snapshot-independent views must be rebuilt
        source = _sql_text(_parquet_glob(Path(path)))
        self._con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{source}')"
        )

    def register_frame(self, name: str, frame: pd.DataFrame) -> None:
        with _duckdb_errors(self._con, f"loading {name}"):
            self._con.register(f"{name}_frame", frame)
            self._con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_frame")
            self._con.unregister(f"{name}_frame")

    def run(self, statements: list[Statement]) -> pd.DataFrame:
        *views, final = statements
        for st in views:
            if st.static and st.name in self._built:
                continue
            kind = "TEMP TABLE" if st.materialize else "TEMP VIEW"
            log.debug("duckdb: %s %s", kind, st.name)
            with _duckdb_errors(self._con, f"building {st.name}"):
                self._con.execute(f"CREATE OR REPLACE {kind} {st.name} AS {st.sql}")
            self._built.add(st.name)
        with _duckdb_errors(self._con, f"computing {final.name}"):
            return self._con.execute(
                f"SELECT * FROM ({final.sql}) AS q ORDER BY account_id, snapshot_date"
            ).df()

    def query(self, sql: str) -> pd.DataFrame:
        """The rows of one query over the registered tables and built views."""
        with _duckdb_errors(self._con, "running a query"):
            return self._con.execute(sql).df()

    @property
    def version(self) -> str:
        import duckdb

        return duckdb.__version__

    def write_parquet(self, sql: str, path: Path) -> None:
        """One query's rows to a Parquet file (in DuckDB, without a round trip to pandas)."""
        target = _sql_text(str(path))
        with _duckdb_errors(self._con, f"writing {Path(path).name}"):
            self._con.execute(f"COPY ({sql}) TO '{target}' (FORMAT PARQUET)")

    def close(self) -> None:
        self._con.close()


def _sql_text(value: str) -> str:
    return str(value).replace("'", "''")


@contextmanager
def _duckdb_errors(con, doing: str) -> Iterator[None]:
    """Turn DuckDB running out of memory or disk into an `EngineError` naming what to set.

    Other DuckDB errors are ours (bad SQL in a feature) and keep their traceback.
    """
    import duckdb

    try:
        yield
    except (duckdb.OutOfMemoryException, duckdb.IOException) as err:
        translated = engine_resource_error(
            err,
            doing,
            memory_limit=_setting(con, "memory_limit"),
            threads=_setting(con, "threads"),
            temp_directory=_temp_directory(con),
        )
        if translated is None:
            raise
        raise translated from err


def engine_resource_error(
    err: Exception, doing: str, *, memory_limit: str, threads: str, temp_directory: str
) -> EngineError | None:
    """The `EngineError` for a DuckDB out-of-memory or disk-full error, or None for others.

    A full disk shows up either as an IO error ("No space left on device") or, because DuckDB
    caps its temp directory at the free disk space, as an out-of-memory error about
    `max_temp_directory_size`; both ask for disk space, not memory.
    """
    import duckdb

    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    spill_to = temp_directory or "(none: spilling is off)"
    if "no space left" in text.lower() or "max_temp_directory_size" in text:
        return EngineError(
            f"DuckDB ran out of disk space while {doing}: it spills to its temp directory "
            f"{spill_to} when memory is short. Free disk space there, point the temp "
            "directory at a larger disk, or raise features.duckdb.memory_limit so it spills "
            f"less ({first})"
        )
    if isinstance(err, duckdb.OutOfMemoryException):
        return EngineError(
            f"DuckDB ran out of memory while {doing} (memory_limit {memory_limit}, threads "
            f"{threads}): raise features.duckdb.memory_limit, lower features.duckdb.threads "
            "(each thread needs its own working memory) or features.snapshot_batch_size; "
            f"spilling also needs free disk space in the temp directory {spill_to} ({first})"
        )
    return None


def _setting(con, name: str) -> str:
    try:
        return str(con.execute(f"SELECT current_setting('{name}')").fetchone()[0])
    except Exception:  # a broken connection must not hide the error being reported
        return "unknown"


def _temp_directory(con) -> str:
    directory = _setting(con, "temp_directory")
    return str(Path(directory).resolve()) if directory and directory != "unknown" else directory


def to_spark_sql(sql: str) -> str:
    """DuckDB-dialect SQL as Spark SQL."""
    import sqlglot

    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


SPARK_MISSING = (
    "features.engine is 'spark' but Apache Spark is not installed: "
    "pip install 'churn-pipeline[spark]' (or set features.engine: duckdb)"
)


# The saved usage grain's fingerprints use DuckDB's row hash, so it is kept on DuckDB only.
STATE_NEEDS_DUCKDB = (
    "the saved usage grain (--feature-state) is built on DuckDB only; "
    "set features.engine: duckdb for the weekly job"
)


class SparkEngine:
    """Apache Spark (local mode by default; any master URL for a cluster)."""

    name = "spark"

    def __init__(
        self,
        *,
        master: str = "local[2]",
        shuffle_partitions: int = 8,
        driver_memory: str = "4g",
        scratch: Path | None = None,
    ) -> None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        try:
            from pyspark.sql import SparkSession
        except ImportError as err:  # the core install has no Spark: it is an extra
            raise EngineError(SPARK_MISSING) from err
        try:
            builder = (
                SparkSession.builder.master(master)
                .appName("churn-features")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
                .config("spark.driver.memory", driver_memory)
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.sql.ansi.enabled", "false")
            )
            self._spark = builder.getOrCreate()
        except Exception as err:  # Java missing, port clash...: say so plainly
            raise EngineError(f"cannot start Spark ({master}): {err}") from err
        self._spark.sparkContext.setLogLevel("ERROR")
        self._cached: list = []
        self._built: set[str] = set()

    def register_parquet(self, name: str, path: Path) -> None:
        self._built.clear()  # new inputs: snapshot-independent views must be rebuilt
        self._spark.read.parquet(_parquet_glob(Path(path))).createOrReplaceTempView(name)

    def register_frame(self, name: str, frame: pd.DataFrame) -> None:
        self._spark.createDataFrame(frame).createOrReplaceTempView(name)

    def run(self, statements: list[Statement]) -> pd.DataFrame:
        *views, final = statements
        for st in views:
            if st.static and st.name in self._built:
                continue
            self._built.add(st.name)
            df = self._spark.sql(to_spark_sql(st.sql))
            if st.materialize:
                df = df.cache()
                self._cached.append(df)
            df.createOrReplaceTempView(st.name)
        result = self._spark.sql(to_spark_sql(final.sql)).orderBy("account_id", "snapshot_date")
        return result.toPandas()

    def query(self, sql: str) -> pd.DataFrame:
        return self._spark.sql(to_spark_sql(sql)).toPandas()

    @property
    def version(self) -> str:
        return str(self._spark.version)

    def write_parquet(self, sql: str, path: Path) -> None:
        raise EngineError(STATE_NEEDS_DUCKDB)

    def close(self) -> None:
        for df in self._cached:
            df.unpersist()
        self._spark.catalog.clearCache()


def open_engine(name: str, options: dict | None = None) -> Engine:
    """The engine named in params (`features.engine`), with its options."""
    options = dict(options or {})
    if name == "duckdb":
        return DuckDBEngine(**options)
    if name == "spark":
        return SparkEngine(**options)
    raise EngineError(f"features.engine must be 'duckdb' or 'spark', not {name!r}")
