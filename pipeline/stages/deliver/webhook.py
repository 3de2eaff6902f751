"""The webhook channel: one Slack-compatible JSON message per CSM, POSTed to a secret URL.

Each CSM's message names them and holds the top `deliver.webhook.top_accounts` accounts of
their list (read through `list_files.read_csm_list`, so only theirs): the account's name, its
churn risk, the ARR at risk in `report.currency`, the renewal date and the first reason. The
JSON has a `text` (the notification line, and what webhooks that ignore blocks show) and
Slack `blocks`; Mattermost, Rocket.Chat and most chat webhooks take the same payload.

Why it looks as it does:
- Slack reads `text` and mrkdwn blocks as markup: `<https://x|click>` is a link, `<!channel>`
  and `<@U123>` are mentions. Every value from the data is escaped by Slack's rule (`&`, `<`,
  `>` as `&amp;`, `&lt;`, `&gt;`), so an account named `<!channel>` cannot ping a channel or
  hide a link; values are clipped (before escaping, so no entity is cut in half) to keep each
  block under Slack's 3,000 characters.
- The URL is the secret (whoever holds a Slack webhook URL can post to its channel): it is
  read from the environment variable `deliver.webhook.url_env` only when sending for real,
  never logged, never put in an error message, the journal or the delivery log (they name the
  variable), and every text the transport produces passes through `secrets.redact` with the
  URL and its parts as known secrets. Plain http is refused except to loopback; redirects are
  not followed (urllib would turn the POST into a GET to wherever the server points).
- Exactly once: the run loop's journal covers this channel as it covers email. The
  Message-ID is a hash of the payload's bytes (no time in them), sent as the
  `Idempotency-Key` header, so a receiver that honours it drops the repeat of a send that was
  cut off mid-way.
- HTTP outcomes: 2xx is sent; 429, 5xx and a failed or timed-out connection are retried up to
  `max_attempts` times, waiting `backoff_seconds` doubled each time, or the server's
  Retry-After, capped at `max_retry_after_seconds`; any other status (4xx, 3xx) is that CSM's
  failure with the status and the start of the server's answer.
- A dry run writes each payload, byte for byte what would be POSTed, to
  `<outbox>/<csm>.json`; same lists and params, same bytes.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.message import Message as HttpHeaders
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core.atomic import atomic_path
from pipeline.core.config import Config, WebhookSettings
from pipeline.core.errors import ConfigError, DeliveryError
from pipeline.core.secrets import redact
from pipeline.core.words import format_money
from pipeline.lists.manifest import CsmEntry, ListsManifest
from pipeline.stages.deliver.channel import Message, Transport, content_digest, safe_token
from pipeline.stages.deliver.list_files import csv_rows, plain_cell, read_csm_list
from pipeline.stages.deliver.settings import is_loopback

log = logging.getLogger(__name__)

# Clipped before escaping: escaped, a block's text stays far below Slack's 3,000 characters.
MAX_NAME_CHARS = 150
MAX_REASON_CHARS = 300
MAX_ANSWER_CHARS = 200  # of a server's error answer, in the CSM's failure detail
USER_AGENT = "churn-pipeline-webhook/1"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_RANKING_WORDS = {
    "expected_arr_at_risk": "expected ARR at risk (churn risk × ARR)",
    "probability": "churn risk",
}


# --- the payload (pure) ----------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Text Slack shows as written: `&`, `<` and `>` as entities (Slack's escaping rule).

    Only these three: Slack's markup (links, mentions, `<!here>`) needs `<`, and it decodes
    exactly these entities; escaping more would show `&quot;` to the reader.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """One line (line breaks and runs of spaces collapsed), at most `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class AccountLine:
    """One account of a CSM's message, as plain text (escaped only when the block is built)."""

    rank: int
    name: str
    probability: float | None
    arr_at_risk: float | None
    renewal_date: str
    days_to_renewal: int | None
    first_reason: str


def _number(row: Mapping[str, str], column: str, *, csm_id: str, rank: int) -> float | None:
    text = plain_cell(row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DeliveryError(
            f"CSM {csm_id!r}: list CSV row {rank}, {column} {text!r} is not a number"
        )
    return value


def account_lines(
    rows: Sequence[Mapping[str, str]], *, csm_id: str, limit: int
) -> list[AccountLine]:
    """The first `limit` rows of a CSM's list CSV (in list order) as account lines.

    Cells come back from their CSV defusing (`'=...` -> `=...`): the message is not a
    spreadsheet. A missing column leaves its part of the line out.
    """
    lines = []
    for rank, row in enumerate(rows[:limit], start=1):

        def cell(column: str, row: Mapping[str, str] = row) -> str:
            return plain_cell(row.get(column) or "").strip()

        days = _number(row, "days_to_renewal", csm_id=csm_id, rank=rank)
        reasons = [part.strip() for part in cell("reasons").split(" | ") if part.strip()]
        lines.append(
            AccountLine(
                rank=rank,
                name=cell("account_name") or cell("account_id"),
                probability=_number(row, "probability", csm_id=csm_id, rank=rank),
                arr_at_risk=_number(row, "expected_arr_at_risk", csm_id=csm_id, rank=rank),
                renewal_date=cell("renewal_date"),
                days_to_renewal=None if days is None else int(days),
                first_reason=reasons[0] if reasons else "",
            )
        )
    return lines


def _mrkdwn(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def account_text(line: AccountLine, currency: str) -> str:
    """One account's block: rank and name in bold, then risk, ARR at risk, renewal, reason."""
    facts = []
    if line.probability is not None:
        facts.append(f"risk {line.probability:.0%}")
    if line.arr_at_risk is not None:
        facts.append(f"{format_money(line.arr_at_risk, currency)} ARR at risk")
    if line.renewal_date:
        when = f"renews {line.renewal_date}"
        if line.days_to_renewal is not None and line.days_to_renewal >= 0:
            when += f" (in {line.days_to_renewal} days)"
        facts.append(when)
    text = f"*{line.rank}. {escape_mrkdwn(clip(line.name, MAX_NAME_CHARS))}*"
    if facts:
        text += "\n" + escape_mrkdwn(" · ".join(facts))
    if line.first_reason:
        text += "\nWhy: " + escape_mrkdwn(clip(line.first_reason, MAX_REASON_CHARS))
    return text


def slack_payload(
    entry: CsmEntry,
    as_of: date,
    model_version: str,
    data_version: str,
    rank_by: str,
    lines: Sequence[AccountLine],
    *,
    currency: str,
) -> dict:
    """One CSM's message: `text` (the notification) and `blocks` (heading, accounts, footer)."""
    name = escape_mrkdwn(clip(entry.csm_name, MAX_NAME_CHARS))
    n = entry.n_accounts
    if n == 0:
        summary = "none of your accounts need attention this week"
    else:
        summary = f"{n} {'account needs' if n == 1 else 'accounts need'} attention"
    text = f"Churn watch list {as_of.isoformat()} for {name}: {summary}"
    heading = f"*Churn watch list for {name}*, data as of {as_of.isoformat()}\n"
    if n == 0:
        heading += "None of your accounts need attention this week."
    elif len(lines) < n:
        heading += f"{summary}; the top {len(lines)}:"
    else:
        heading += f"{summary}:"
    ranking = _RANKING_WORDS.get(rank_by, rank_by.replace("_", " "))
    footer = (
        f"Ranked by {ranking}. Model version {model_version}, data version {data_version}. "
        "Your full list, with every reason and play, is in this week's list email."
    )
    return {
        "text": text,
        "blocks": [
            _mrkdwn(heading),
            *(_mrkdwn(account_text(line, currency)) for line in lines),
            {"type": "context", "elements": [{"type": "mrkdwn", "text": escape_mrkdwn(footer)}]},
        ],
    }


def payload_bytes(payload: Mapping) -> bytes:
    """The JSON as posted and as the dry run writes it (UTF-8, fixed key order, one newline)."""
    return (json.dumps(payload, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


@dataclass(frozen=True)
class WebhookPayload:
    """What the transports of this channel send: the JSON body, ready to post."""

    body: bytes


def webhook_message_id(as_of: date, csm_id: str, body: bytes) -> str:
    """A function of the CSM and the body alone: equal payloads, equal ids (no time in it)."""
    digest = content_digest("webhook", csm_id, body)
    return f"churn-webhook.{as_of.isoformat()}.{safe_token(csm_id)}.{digest[:16]}"


# --- the URL (the secret) --------------------------------------------------------------------


def webhook_url(url_env: str, environ: Mapping[str, str]) -> str:
    """The webhook URL from the environment, checked; no error message ever holds it."""
    url = environ.get(url_env, "")
    where = f"the webhook URL in environment variable {url_env} (deliver.webhook.url_env)"
    if not url:
        raise ConfigError(f"environment variable {url_env} is not set: it holds the webhook URL")
    if _CONTROL_OR_SPACE.search(url):
        raise ConfigError(f"{where} holds a space or a control character")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigError(f"{where} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(f"{where} is not an http(s) URL with a host")
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"{where} is plain http to a remote host: refused, because the URL is a secret "
            "and would cross the network readable (use https)"
        )
    return url


def url_secrets(url: str) -> list[str]:
    """The URL and the parts of it that are secret on their own (path, query), for `redact`."""
    parts = urlsplit(url)
    return [s for s in (url, parts.path, parts.query, parts.path + "?" + parts.query) if s]


# --- the channel -----------------------------------------------------------------------------


def utc_now() -> datetime:
    """The wall clock, in UTC (for a Retry-After given as a date)."""
    return datetime.now(UTC)


class WebhookChannel:
    """Webhook delivery: every CSM goes to the one URL, their name in their message."""

    name = "webhook"
    missing_recipient = "no webhook destination"

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        currency: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
        opener: urllib.request.OpenerDirector | None = None,
    ) -> None:
        if not _ENV_NAME.fullmatch(settings.url_env):
            raise ConfigError(
                f"deliver.webhook.url_env {settings.url_env!r} is not an environment variable "
                "name (letters, digits, underscores)"
            )
        self.settings = settings
        self.currency = currency
        self.sleep = sleep
        self.clock = clock
        self.opener = opener

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
    ) -> WebhookChannel:
        """The channel for `deliver.webhook` and `report.currency` (tests inject sleep, clock)."""
        return cls(
            config.deliver.webhook, currency=config.report.currency, sleep=sleep, clock=clock
        )

    def recipient(self, entry: CsmEntry) -> str | None:
        # What the logs and the journal show: the variable's name, never the URL.
        return f"${self.settings.url_env}"

    def build(self, entry: CsmEntry, lists_dir: Path, manifest: ListsManifest) -> Message:
        lines: list[AccountLine] = []
        if entry.n_accounts > 0:  # an empty list's files are not read, as for email
            files = read_csm_list(lists_dir, entry)
            rows = csv_rows(files.csv_bytes.decode("utf-8-sig"))
            rows = [row for row in rows if row.get("section", "action") != "watch"]
            lines = account_lines(rows, csm_id=entry.csm_id, limit=self.settings.top_accounts)
        payload = slack_payload(
            entry,
            manifest.as_of,
            manifest.model_version,
            manifest.data_version,
            manifest.rank_by,
            lines,
            currency=self.currency,
        )
        body = payload_bytes(payload)
        return Message(
            csm_id=entry.csm_id,
            recipient=f"${self.settings.url_env}",
            message_id=webhook_message_id(manifest.as_of, entry.csm_id, body),
            payload=WebhookPayload(body),
        )

    def open_transport(
        self, *, dry_run: bool, outbox: Path, environ: Mapping[str, str]
    ) -> Transport:
        if dry_run:
            return WebhookOutboxTransport(outbox)
        url = webhook_url(self.settings.url_env, environ)
        return HttpTransport(
            url,
            self.settings,
            sleep=self.sleep,
            clock=self.clock,
            opener=self.opener,
        )


def _payload_of(message: Message) -> WebhookPayload:
    if not isinstance(message.payload, WebhookPayload):
        raise TypeError(f"the webhook channel cannot send a {type(message.payload).__name__}")
    return message.payload


# --- transports ------------------------------------------------------------------------------


class WebhookOutboxTransport:
    """Dry run: one `.json` file per CSM, the exact body a real run would post."""

    status = "dry-run"
    mode = "dry-run"

    def __init__(self, outbox: Path) -> None:
        self.outbox = Path(outbox)

    def send(self, message: Message) -> str:
        target = self.outbox / f"{safe_token(message.csm_id)}.json"
        with atomic_path(target) as tmp:
            tmp.write_bytes(_payload_of(message).body)
        return str(target)

    def close(self) -> None:
        """Nothing to release: each file is complete once `send` returns."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would resend the POST as a GET, and report that as success."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks to wait (delay-seconds or an HTTP date); None: unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _answer(err: urllib.error.HTTPError) -> str:
    """The start of a server's error answer, one line (Slack says `invalid_payload`, say)."""
    try:
        raw = err.read(MAX_ANSWER_CHARS * 4)
    except (OSError, http.client.HTTPException):
        raw = b""
    finally:
        err.close()
    text = clip(re.sub(r"[\x00-\x1f\x7f]", " ", raw.decode("utf-8", errors="replace")), 200)
    return f": {text}" if text else ""


class HttpTransport:
    """POSTs each payload to the webhook URL, retrying what a retry can fix.

    Exceptions leave with `from None` and every text is redacted: urllib's errors carry the
    URL (`HTTPError.url`), and a chained traceback would print it.
    """

    status = "sent"
    mode = "webhook"

    def __init__(
        self,
        url: str,
        settings: WebhookSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
        opener: urllib.request.OpenerDirector | None = None,
    ) -> None:
        self._url = url
        self._secrets = url_secrets(url)
        self.settings = settings
        self.destination = f"${settings.url_env}"
        self._sleep = sleep
        self._clock = clock
        self._opener = opener or urllib.request.build_opener(_NoRedirect)

    def _clean(self, text: str) -> str:
        return redact(text, secrets=self._secrets)

    def _post(self, message: Message) -> int:
        request = urllib.request.Request(
            self._url,
            data=_payload_of(message).body,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Idempotency-Key": message.message_id,
                "User-Agent": USER_AGENT,
            },
        )
        with self._opener.open(request, timeout=self.settings.timeout_seconds) as response:
            response.read()
            return int(response.status)

    def _delay(self, attempt: int, headers: HttpHeaders | None) -> float:
        asked = retry_after_seconds(headers.get("Retry-After") if headers else None, self._clock())
        backoff = self.settings.backoff_seconds * 2 ** (attempt - 1)
        return min(asked if asked is not None else backoff, self.settings.max_retry_after_seconds)

    def send(self, message: Message) -> str:
        attempts = self.settings.max_attempts
        last = ""
        for attempt in range(1, attempts + 1):
            headers: HttpHeaders | None = None
            try:
                status = self._post(message)
                return f"webhook {self.destination}: HTTP {status}"
            except urllib.error.HTTPError as err:
                answer = _answer(err)
                if err.code != 429 and not 500 <= err.code <= 599:
                    followed = " (redirects are not followed)" if 300 <= err.code < 400 else ""
                    detail = f"webhook answered HTTP {err.code}{followed}{answer}"
                    raise DeliveryError(self._clean(detail)) from None
                last, headers = f"HTTP {err.code}{answer}", err.headers
            except (OSError, http.client.HTTPException) as err:  # refused, reset, timed out
                reason = err.reason if isinstance(err, urllib.error.URLError) else err
                last = self._clean(f"{type(err).__name__}: {reason}")
            if attempt < attempts:
                delay = self._delay(attempt, headers)
                log.warning(
                    "CSM %r: webhook %s (attempt %d of %d); trying again in %.1f s",
                    message.csm_id,
                    self._clean(last),
                    attempt,
                    attempts,
                    delay,
                )
                self._sleep(delay)
        raise DeliveryError(
            self._clean(f"webhook failed after {attempts} attempts, last: {last}")
        ) from None

    def close(self) -> None:
        """Nothing to release: urllib opens one connection per request."""
