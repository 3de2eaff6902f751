"""No secret is ever shown: URIs and DSNs are redacted in logs, reports and error messages.

Passwords hold the characters that break naive redaction (`@` `:` `/` `%`), raw and
percent-encoded; a redacted text must hold neither the password nor any tail of it.
"""

from __future__ import annotations

import io
import logging
import random
import socket
import string
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.errors import SourceError
from pipeline.core.secrets import REDACTED, RedactingFilter, redact
from pipeline.data.sources import open_source

_RANDOM = random.Random(13)
# Any printable character but whitespace: a password typed into a URI may hold them all.
LONG_RANDOM = "".join(
    _RANDOM.choice(string.ascii_letters + string.digits + string.punctuation) for _ in range(40)
)
# The same without the characters that end a query value or a DSN word (& # ; , and quotes).
LONG_RANDOM_PLAIN = "".join(
    _RANDOM.choice(string.ascii_letters + string.digits + "@:/%!$*+-_.~=") for _ in range(40)
)
PASSWORDS = ["p@ss", "pa:ss", "pa/ss", "pa%2Fss", "p%ss", "p@ss/w:rd%x", LONG_RANDOM]


def assert_hidden(text: str, password: str) -> None:
    """Neither the password nor any tail of it (3+ characters), raw or percent-encoded."""
    for form in {password, quote(password, safe="")}:
        for start in range(len(form) - 2):
            assert form[start:] not in text, f"{form[start:]!r} of {form!r} leaked: {text!r}"


def userinfo_uris(password: str) -> list[str]:
    encoded = quote(password, safe="")
    return [
        f"postgresql://user:{password}@localhost:1/db",
        f"postgresql+psycopg://user:{password}@db.internal:5432/crm?sslmode=require",
        f"http://user:{password}@mlflow.internal:5000",
        f"https://user:{password}@mlflow.internal/#/experiments/1",
        f"postgresql://user:{encoded}@localhost:1/db",
        f"mysql://user:{password}@h/db",
    ]


@pytest.mark.parametrize("password", PASSWORDS)
def test_userinfo_passwords_are_hidden_and_the_rest_is_kept(password):
    for uri in userinfo_uris(password):
        for text in (uri, f"cannot connect to {uri}: refused", f"'{uri}', then more text"):
            out = redact(text)
            assert_hidden(out, password)
            assert f"user:{REDACTED}@" in out
    assert redact(f"postgresql://user:{password}@localhost:1/db") == (
        "postgresql://user:***@localhost:1/db"
    )
    assert redact(f"http://user:{password}@mlflow.internal:5000") == (
        "http://user:***@mlflow.internal:5000"
    )


@pytest.mark.parametrize("password", [*PASSWORDS[:-1], LONG_RANDOM_PLAIN])
def test_query_string_dsn_and_mapping_secrets_are_hidden(password):
    texts = [
        f"https://s3.example.com/bucket/f?X-Amz-Signature={password}&x=1",
        f"https://h/path?password={password}",
        f"https://h/path?a=1&token={password}&b=2",
        f"https://h/path?secret={password}",
        f"https://h/path?api_key={password}",
        f"https://h/path?key={password}#frag",
        f"s3://bucket/x?access_key={password}&aws_secret_access_key={password}",
        f"host=db.internal port=5432 password={password} dbname=crm",
        f"connection info: host=x user=u password={password}",
        f"host=x password='{password} with spaces' dbname=y",
        f"{{'password': '{password}', 'host': 'x'}}",
        f'{{"token": "{password}"}}',
    ]
    for text in texts:
        assert_hidden(redact(text), password)
    assert redact(f"host=db password={password} dbname=crm") == "host=db password=*** dbname=crm"


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://churn@127.0.0.1:5432/postgres",
        "postgresql://127.0.0.1:5432/postgres?sslmode=require&application_name=churn",
        "sqlite:////home/me/churn/mlflow.db",
        "sqlite:///mlflow.db",
        "http://mlflow.internal:5000/#/experiments/1/runs/abc",
        "http://[::1]:5000/api",
        "duckdb:///data/crm.duckdb",
        "models:/churn-model@champion",
        "runs:/0123abcd/model",
        "file:///tmp/artifacts",
        "data/raw/demo",
        "directory data/raw/demo",
        "s3://bucket/key@v2/part-0.parquet",
        "scored 4000 accounts at 2026-11-16 (model 3, data md5-abc)",
        "ada@example.com",
    ],
)
def test_text_without_credentials_is_unchanged(text):
    assert redact(text) == text


def test_known_secrets_are_hidden_out_of_context():
    """A driver may quote a password without its URI: masked when the caller knows it."""
    message = "FATAL: password authentication failed (sent 'p@ss/w:rd', p%40ss%2Fw%3Ard)"
    out = redact(message, secrets=["p@ss/w:rd"])
    assert_hidden(out, "p@ss/w:rd")
    assert "FATAL: password authentication failed" in out


def _record_text(logger: logging.Logger, emit) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        emit()
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_log_filter_redacts_messages_arguments_and_tracebacks(password):
    logger = logging.getLogger("tests.secrets")
    logger.setLevel(logging.INFO)
    uri = f"postgresql://user:{password}@localhost:1/db"

    def emit():
        logger.info("connecting to %s", uri)
        logger.warning(f"retrying {uri}")
        try:
            raise RuntimeError(f"could not reach {uri}")
        except RuntimeError:
            logger.exception("failed")

    text = _record_text(logger, emit)
    assert_hidden(text, password)
    assert text.count("postgresql://user:***@localhost:1/db") == 3
    assert "RuntimeError" in text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: a connection there fails fast


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_postgresql_connection_error_never_holds_the_password(monkeypatch, password):
    port = _closed_port()
    monkeypatch.setenv("CHURN_TEST_DB_PASSWORD", password)
    for location in (
        f"postgresql://churn:{password}@127.0.0.1:{port}/db",  # typed raw into params
        f"postgresql://churn:{quote(password, safe='')}@127.0.0.1:{port}/db",  # encoded
        f"postgresql://churn:${{CHURN_TEST_DB_PASSWORD}}@127.0.0.1:{port}/db",  # environment
    ):
        with pytest.raises(SourceError) as caught:
            open_source(location)
        message = str(caught.value)
        assert_hidden(message, password)
        # the password reached the driver whole: the error is about the server, not the host
        assert f"cannot connect to postgresql://churn:***@127.0.0.1:{port}/db" in message
        assert "resolve host" not in message and caught.value.__cause__ is None


def test_a_libpq_dsn_is_refused_without_showing_its_password():
    with pytest.raises(SourceError, match="unsupported source") as caught:
        open_source("host=127.0.0.1 port=1 dbname=crm password=p@ss/w:rd")
    assert_hidden(str(caught.value), "p@ss/w:rd")


runner = CliRunner()


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_cli_never_prints_the_password(tmp_path, monkeypatch, password):
    params = tmp_path / "params.yaml"
    params.write_text("base: {as_of_date: '2026-11-16'}\n")
    port = _closed_port()
    source = f"postgresql://churn:{password}@127.0.0.1:{port}/db"
    for command in (["ingest", "--source", source], ["check", "--source", source]):
        result = runner.invoke(app, [*command, "--params", str(params)])
        assert result.exit_code == 2, result.output
        assert "cannot connect to postgresql://churn:***@127.0.0.1" in result.output
        assert "Traceback" not in result.output
        assert_hidden(result.output, password)

    # the same from params, with the password in the environment
    monkeypatch.setenv("CHURN_TEST_DB_PASSWORD", password)
    params.write_text(
        "base: {as_of_date: '2026-11-16'}\n"
        f"ingest: {{source: 'postgresql://churn:${{CHURN_TEST_DB_PASSWORD}}@127.0.0.1:{port}/db'}}\n"
    )
    result = runner.invoke(app, ["ingest", "--params", str(params)])
    assert result.exit_code == 2 and "cannot connect to" in result.output
    assert_hidden(result.output, password)


def test_the_cli_log_handler_redacts_what_libraries_log():
    """The handler the CLI installs redacts the records of any logger, not only ours."""
    result = runner.invoke(app, ["contract"])  # any command sets up logging
    assert result.exit_code == 0
    (handler,) = [
        h
        for h in logging.getLogger().handlers
        if any(isinstance(f, RedactingFilter) for f in h.filters)
    ]
    record = logging.LogRecord(
        "sqlalchemy.engine", logging.INFO, __file__, 1, "url %s", ("http://u:p@ss@h/",), None
    )
    assert handler.filter(record) and record.getMessage() == "url http://u:***@h/"


def test_a_driver_error_quoting_the_url_is_redacted(monkeypatch):
    """Whatever the driver says about the URL it was given, the SourceError hides it."""
    import sqlalchemy as sa

    def refusing(url, **kwargs):
        raise sa.exc.ArgumentError(f"Could not parse SQLAlchemy URL from string '{url}'")

    monkeypatch.setattr(sa, "create_engine", refusing)
    for password in PASSWORDS:
        with pytest.raises(SourceError, match="Could not parse") as caught:
            open_source(f"postgresql://churn:{password}@127.0.0.1:1/db")
        assert_hidden(str(caught.value), password)


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_cli_error_line_is_redacted(capsys, password):
    """Any ChurnError the CLI prints, whoever raised it (say the model store naming its
    tracking URI), is shown without credentials."""
    import typer

    from pipeline.cli import _fail
    from pipeline.core.errors import ScoringError

    uri = f"http://user:{password}@mlflow.internal:5000"
    with pytest.raises(typer.Exit) as exit_info:
        _fail(ScoringError(f"cannot load models:/churn-model@champion from the store {uri}: x"))
    assert exit_info.value.exit_code == 2
    printed = capsys.readouterr().err
    assert "the store http://user:***@mlflow.internal:5000: x" in " ".join(printed.split())
    assert_hidden(printed, password)


def test_a_traceback_never_shows_local_variables():
    """A bug's traceback would print each frame's locals, connection URLs among them."""
    assert app.pretty_exceptions_show_locals is False
