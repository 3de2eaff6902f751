"""A database password with `@`, `:`, `/` or `%` reaches a real PostgreSQL server intact, and a
failed login never shows it (the server checks the password: scram-sha-256, not trust)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from pipeline.core.errors import SourceError
from pipeline.data.sources import open_source
from tests.code.test_secrets import assert_hidden
from tests.data.test_sources import postgres_server

pytestmark = pytest.mark.postgres

ENV = "CHURN_TEST_DB_PASSWORD"


def _at(url: str, password: str) -> str:
    return url.replace("postgresql://churn@", f"postgresql://churn:{password}@")


@pytest.mark.parametrize(
    ("password", "forms"),
    [
        # `%2F` is an escape: typed raw, it would mean `/`, so this one comes encoded or from
        # the environment (where a value is always the raw secret)
        ("p@ss/w:rd%2F%x?", ["environment", "encoded"]),
        # no valid escape in it: typed raw into the URL works too
        ("p@ss/w:rd%x?&=", ["environment", "encoded", "raw"]),
    ],
)
def test_a_password_with_url_characters_logs_in(monkeypatch, password, forms):
    monkeypatch.setenv(ENV, password)
    with postgres_server(password=password) as url:
        locations = {
            "environment": _at(url, f"${{{ENV}}}"),
            "encoded": _at(url, quote(password, safe="")),
            "raw": _at(url, password),
        }
        for form in forms:
            source = open_source(locations[form])
            assert source.tables() == set(), form  # logged in: an empty database
            assert_hidden(source.description, password)

        monkeypatch.setenv(ENV, "wr@ng/pa:ss%")
        for location in (_at(url, f"${{{ENV}}}"), _at(url, "wr@ng/pa:ss%")):
            with pytest.raises(SourceError, match="password authentication failed") as caught:
                open_source(location)
            assert_hidden(str(caught.value), password)
            assert_hidden(str(caught.value), "wr@ng/pa:ss%")
