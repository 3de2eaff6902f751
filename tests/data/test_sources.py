"""Sources: directory (CSV, Parquet parts), DuckDB file and a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from glob import glob
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.core.errors import SourceError
from pipeline.data.contract import PARSE_ERROR
from pipeline.data.sources import DirectorySource, NameMapping, expand_env, open_source, redact
from pipeline.stages.ingest import ingest_source
from tests.conftest import AS_OF, write_dir


def test_directory_source_reads_part_folders(tmp_path, raw_tables):
    raw = write_dir({k: v for k, v in raw_tables.items() if k != "usage_events"}, tmp_path)
    parts = tmp_path / "usage_events"
    parts.mkdir()
    events = raw_tables["usage_events"]
    events.iloc[:2].to_parquet(parts / "part-0.parquet", index=False)
    events.iloc[2:].to_parquet(parts / "part-1.parquet", index=False)
    src = DirectorySource(raw)
    assert "usage_events" in src.tables()
    batches = list(src.iter_batches("usage_events", batch_rows=2))
    assert sum(len(b) for b in batches) == 5
    assert src.read("accounts")["account_id"].tolist() == ["A1", "A2", "A3"]


def test_directory_source_reads_csv_part_folders_and_passes_csv_settings(tmp_path, raw_tables):
    """CSV parts are read in order; open_source hands ingest.max_text_chars to the reader."""
    parts = tmp_path / "usage_events"
    parts.mkdir()
    events = raw_tables["usage_events"]
    events.iloc[:3].to_csv(parts / "part-0.csv", index=False)
    events.iloc[3:].assign(module=["x" * 50, "api"]).to_csv(parts / "part-1.csv", index=False)
    src = open_source(str(tmp_path), max_text_chars=20)
    frame = pd.concat(list(src.iter_batches("usage_events", batch_rows=2)), ignore_index=True)
    assert frame["account_id"].tolist() == events["account_id"].tolist()
    assert frame[PARSE_ERROR].fillna("ok").tolist() == ["ok", "ok", "ok", "field_too_long", "ok"]


def test_directory_source_rejects_mixed_formats(tmp_path, raw_tables):
    parts = tmp_path / "usage_events"
    parts.mkdir()
    raw_tables["usage_events"].to_parquet(parts / "a.parquet")
    raw_tables["usage_events"].to_csv(parts / "b.csv")
    with pytest.raises(SourceError, match="mixes CSV and Parquet"):
        DirectorySource(tmp_path).tables()


def test_open_source_errors_are_clear(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nope"))
    with pytest.raises(SourceError, match="unsupported source"):
        open_source("mysql://u:secret@h/db")
    with pytest.raises(SourceError, match="CHURN_TEST_UNSET_VAR"):
        open_source("postgresql://u:${CHURN_TEST_UNSET_VAR}@localhost/db")
    with pytest.raises(SourceError, match="unknown tables"):
        NameMapping(tables={"acounts": "x"})


def test_secrets_come_from_the_environment_and_are_redacted(monkeypatch):
    monkeypatch.setenv("CHURN_TEST_PW", "s3cret")
    url = expand_env("postgresql://churn:${CHURN_TEST_PW}@127.0.0.1:5432/db")
    assert url == "postgresql://churn:s3cret@127.0.0.1:5432/db"
    assert "s3cret" not in redact(url)


def test_duckdb_file_source(tmp_path, raw_tables):
    db = tmp_path / "crm.duckdb"
    con = duckdb.connect(str(db))
    for name, frame in raw_tables.items():
        con.register("frame", frame)
        con.execute(f'create table "{name}" as select * from frame')
        con.unregister("frame")
    con.close()
    src = open_source(f"duckdb:///{db}")
    report = ingest_source(src, tmp_path / "interim", as_of=AS_OF, batch_rows=2)
    assert report["rows_quarantined"] == 0
    assert report["tables"]["usage_events"]["rows_accepted"] == 5
    assert report["source"].startswith("duckdb")


# --- PostgreSQL: a throwaway cluster on loopback ---------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(password: str | None = None) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields its URL (user churn, no password).

    With `password`, the user churn must log in with it (scram-sha-256), so a test can see
    that a password reached the server intact; without, any login is trusted.
    """
    bin_dir = _pg_bin()
    if bin_dir is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="churn-pg-"))
    data = root / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chmod(root, 0o755)
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    auth = ["--auth=trust"]
    if password is not None:
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        if prefix:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
    port = _free_port()
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "churn",
            *auth,
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "300",  # generous: a loaded two-core machine has taken over 30 s to start it
            "-o",
            f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 300
        import sqlalchemy as sa

        url = f"postgresql://churn@127.0.0.1:{port}/postgres"
        login = sa.engine.URL.create(
            "postgresql+psycopg",
            username="churn",
            password=password,
            host="127.0.0.1",
            port=port,
            database="postgres",
        )
        engine = sa.create_engine(login)
        while True:
            try:
                with engine.connect():
                    break
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        engine.dispose()
        yield url
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_url():
    """Start a real PostgreSQL server on 127.0.0.1 for this module; yield its URL."""
    with postgres_server() as url:
        yield url


def _load_postgres(url: str, tables: dict[str, pd.DataFrame], schema: str) -> None:
    """Load the fixture with real column types: timestamptz, date, numeric, boolean."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as con:
        con.execute(sa.text(f"create schema if not exists {schema}"))
        for name, frame in tables.items():
            typed = frame.copy()
            for col in typed.columns:
                if col.endswith("_at"):
                    typed[col] = pd.to_datetime(typed[col], utc=True, format="ISO8601")
                elif col.endswith("_date"):
                    typed[col] = pd.to_datetime(typed[col]).dt.date
                elif col in ("arr", "score", "sla_first_response_hours", "sla_resolution_hours"):
                    typed[col] = pd.to_numeric(typed[col])
                elif col in ("seats", "count"):
                    typed[col] = pd.to_numeric(typed[col]).astype("int64")
                elif col == "escalated":
                    typed[col] = typed[col] == "true"
            typed.to_sql(name, con, schema=schema, index=False, if_exists="replace")
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_source_against_a_real_server(tmp_path, raw_tables, postgres_url):
    raw_tables["crm_accounts"] = raw_tables.pop("accounts")
    _load_postgres(postgres_url, raw_tables, schema="crm")
    mapping = NameMapping(tables={"accounts": "crm_accounts"})
    src = open_source(postgres_url, mapping=mapping, schema="crm")
    assert "accounts" in src.tables()
    report = ingest_source(src, tmp_path / "interim", as_of=AS_OF, batch_rows=2)
    assert report["rows_quarantined"] == 0
    assert report["tables"]["accounts"]["rows_accepted"] == 3
    assert report["tables"]["usage_events"]["rows_accepted"] == 5
    accounts = pd.read_parquet(tmp_path / "interim" / "accounts.parquet")
    assert accounts["created_at"].iloc[1] == pd.Timestamp("2024-01-31T23:00:00Z")
    tickets = pd.read_parquet(tmp_path / "interim" / "support_tickets.parquet")
    assert tickets["escalated"].tolist() == [False, True]


@pytest.mark.postgres
def test_postgresql_bad_rows_are_quarantined(tmp_path, raw_tables, postgres_url):
    raw_tables["contracts"] = raw_tables["contracts"].assign(arr=["1200", "-24000", "250000", "1"])
    _load_postgres(postgres_url, raw_tables, schema="bad")
    report = ingest_source(
        open_source(postgres_url, schema="bad"), tmp_path / "interim", as_of=AS_OF
    )
    assert report["tables"]["contracts"]["quarantined_by_reason"] == {"below_minimum:arr": 1}


def test_postgresql_unreachable_server_is_a_clear_error():
    port = _free_port()  # nothing listens there
    with pytest.raises(SourceError, match="cannot connect to postgresql://churn:\\*\\*\\*@"):
        open_source(f"postgresql://churn:pw@127.0.0.1:{port}/db")
