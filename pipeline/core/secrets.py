"""Credentials out of everything we show or keep: logs, reports, MLflow tags, error messages.

A connection string names its password in one of a few ways: the userinfo of a URI
(`postgresql://user:password@host/db`), a query parameter (`?password=...`, `&token=...`) or a
libpq key=value DSN (`host=db password=...`). `redact` replaces every such secret in a piece of
text with `***` and leaves a URI without credentials exactly as it was.

A password typed into a URI is often not percent-encoded, so it may hold a raw `@`, `:`, `/`
or `%`. Such a URI is split the way that cannot leak a tail: the userinfo runs to the *last*
`@` of the URI, not the first, and everything in it after the user name is hidden.
`RedactingFilter` applies the same to every log record, as a safety net for a URI logged by
code (ours or a library's) that did not redact it first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "***"

# A parameter whose value is a secret, by its name (case-insensitive): one that contains
# password, passwd, passphrase, pwd, secret, token, credential or signature (client_secret,
# access_token, X-Amz-Signature), one that ends in key (api_key, AccountKey,
# aws_secret_access_key), or pass, pw, sig, auth, authorization.
_SECRET_NAME = (
    r"[A-Za-z0-9_.\-]*(?:passw(?:or)?d|passphrase|pwd|secret|token|credential|signature)"
    r"[A-Za-z0-9_.\-]*"
    r"|[A-Za-z0-9_.\-]*key|pass|pw|sig|auth|authorization"
)
# The start of a URI: scheme://
_SCHEME = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://")
# A URI query parameter: `?name=value` or `&name=value`; the value ends at & # or whitespace.
_QUERY_SECRET = re.compile(rf"(?P<lead>[?&;](?:{_SECRET_NAME})=)(?P<value>[^&#\s]*)", re.I)
# A libpq-style `name=value` (or `name = 'quoted value'`) at the start of a word.
_DSN_SECRET = re.compile(
    rf"(?P<lead>(?<![^\s(\[{{,;\"'])(?:{_SECRET_NAME})\s*=(?!=)\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|\S+)",
    re.I,
)
# A JSON or Python-dict entry: "password": "value" / 'password': 'value'.
_MAPPING_SECRET = re.compile(
    rf"(?P<lead>(?P<q>[\"'])(?:{_SECRET_NAME})(?P=q)\s*:\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')",
    re.I,
)


def _userinfo_end(text: str, start: int) -> int | None:
    """Index of the `@` that ends the userinfo of the URI whose authority starts at `start`
    (None: it has no userinfo with a password).

    The userinfo runs to the last `@` of the URI, so a raw `@` or `/` in a password stays
    inside it. Without any `@` before the authority, `name:` followed by something that is
    not a port number still starts a password: one with a raw space ends at the next `@` on
    the line, and one cut short (no `@` at all) is hidden to the end of the URI.
    """
    token_end = _SPACE.search(text, start)
    stop = token_end.start() if token_end else len(text)
    token = text[start:stop]
    authority = re.split(r"[/?#]", token, maxsplit=1)[0]
    at = token.rfind("@")
    if "@" in authority:
        return start + at
    if ":" not in authority or authority.startswith("["):
        return None  # a host (maybe an IPv6 literal); an `@` further on is in the path
    if authority.split(":", 1)[1].isdigit() or not authority.split(":", 1)[1]:
        # host:port, unless an `@` follows: then `user:12/34@host` (a raw `/`), hidden too
        return start + at if at != -1 else None
    if at != -1:
        return start + at
    line_end = text.find("\n", stop)
    beyond = text.find("@", stop, line_end if line_end != -1 else len(text))
    return beyond if beyond != -1 else stop


def _redact_uris(text: str) -> str:
    out: list[str] = []
    done = 0
    for match in _SCHEME.finditer(text):
        if match.start() < done:
            continue  # inside the userinfo just hidden
        start = match.end()
        end = _userinfo_end(text, start)
        if end is None:
            continue
        userinfo = text[start:end]
        if ":" not in userinfo:
            continue  # a user name alone is no secret
        user = userinfo.split(":", 1)[0]
        out.append(text[done:start] + f"{user}:{REDACTED}")
        done = end
    out.append(text[done:])
    return "".join(out)


_SPACE = re.compile(r"\s")


def _hide(match: re.Match[str]) -> str:
    return match.group("lead") + REDACTED


def redact(text: str, *, secrets: Iterable[str] = ()) -> str:
    """`text` with the credentials of every URI and DSN in it replaced by `***`.

    Hides the password in a URI's userinfo (kept: the scheme, user name, host, port and path),
    secret query parameters (`password`, `token`, `secret`, `key`, `access_key`, `auth`...),
    the same names in libpq `name=value` strings and in JSON/dict text. `secrets` are known
    secret values (say, the password just parsed out of a URL) hidden wherever they appear,
    raw or percent-encoded: a driver's own error message may quote them out of context.
    Text without credentials comes back unchanged.
    """
    text = str(text)
    # Two-character secrets would garble ordinary words; a URI's userinfo is hidden anyway.
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, REDACTED)
    text = _redact_uris(text)
    text = _QUERY_SECRET.sub(_hide, text)
    text = _MAPPING_SECRET.sub(_hide, text)
    return _DSN_SECRET.sub(_hide, text)


class RedactingFilter(logging.Filter):
    """Redacts credentials in every record that passes (message, arguments and traceback).

    Installed on the CLI's log handler, so it also covers the records of libraries (MLflow,
    SQLAlchemy) that log a connection URI as they were given it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format: the handler would print msg and args
            message = f"{record.msg} {record.args!r}"
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
