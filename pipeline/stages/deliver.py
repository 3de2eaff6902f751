"""Delivery stage: email each CSM their own weekly list (HTML body, CSV attached) over SMTP.

The lists stage writes `reports/lists/<as-of>/manifest.json` with one entry per CSM naming that
CSM's CSV and HTML files. Delivery turns each entry into one email and hands it to a
transport: SMTP for the weekly run, or an outbox of `.eml` files for a dry run.

What this module guarantees, and why:
- A CSM only ever receives their own accounts. Each message is built from that CSM's manifest
  entry alone; its file paths must stay inside the as-of directory (no `..`, no absolute
  paths, no symlinks out); no two entries may share a file; a CSV with a `csm_id` column must
  hold only that CSM's rows. Every message has exactly one recipient.
- Header injection is impossible: names, addresses and ids with line breaks or other control
  characters are refused with an error naming the CSM.
- One CSM's problem never stops the others. Problems with a CSM's entry or its sending are
  recorded as that CSM's failure; the run goes on and the caller exits nonzero at the end.
  Problems with the manifest as a whole stop the run before anything is sent.
- Messages are deterministic: Date comes from the as-of date, Message-ID from the as-of date,
  the CSM id and a hash of the content, MIME boundaries from that hash. A dry run rerun on the
  same lists writes byte-identical `.eml` files, and a message recorded as sent in the delivery
  log is not sent again (a retry after a partial failure reaches only the CSMs who missed out).

Layout: pure core (`delivery_settings`, `parse_manifest`, `build_list_message`,
`build_empty_note`, `delivery_log`) and the I/O edge (`SmtpTransport`, `OutboxTransport`,
`iter_deliveries`, `delivery_dir`, `run_deliver`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import logging
import os
import re
import smtplib
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time
from email import errors as email_errors
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from pipeline.core.errors import ConfigError, DeliveryError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
LOG_NAME = "delivery.json"
OUTBOX_NAME = "outbox"
STATUSES = ("sent", "skipped", "failed", "dry-run")
SECURITY_MODES = ("starttls", "ssl", "none")
EMPTY_LIST_MODES = ("note", "skip")
# The wire format: CRLF line ends, lines folded at 78. Used for SMTP and for .eml files alike.
WIRE_POLICY = policy.SMTP
TEXT_CTE = "quoted-printable"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_TOKEN = re.compile(r"[^A-Za-z0-9_-]+")


# --- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SenderSettings:
    """Who the lists come from and what to do with an empty list."""

    from_address: str
    from_name: str | None = None
    reply_to: str | None = None
    empty_list: str = "note"


@dataclass(frozen=True)
class SmtpSettings:
    """Where to send. Credentials are named by environment variable, never stored here."""

    host: str
    port: int
    security: str = "starttls"
    timeout_seconds: float = 30.0
    username_env: str | None = None
    password_env: str | None = None


_KNOWN_KEYS = {
    "host",
    "port",
    "security",
    "timeout_seconds",
    "username_env",
    "password_env",
    "from_address",
    "from_name",
    "reply_to",
    "empty_list",
}


def _optional_str(cfg: Mapping[str, Any], key: str) -> str | None:
    value = cfg.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"deliver.{key} must be text, got {value!r}")
    return value


def delivery_settings(cfg: Mapping[str, Any]) -> tuple[SenderSettings, SmtpSettings]:
    """Validate the `deliver` section of params.yaml into sender and SMTP settings."""
    unknown = sorted(set(cfg) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            f"deliver section has unknown keys {unknown}; known: {sorted(_KNOWN_KEYS)}"
        )
    from_address = _optional_str(cfg, "from_address")
    if from_address is None:
        raise ConfigError("deliver.from_address is required (the address the lists come from)")
    from_name = _optional_str(cfg, "from_name")
    reply_to = _optional_str(cfg, "reply_to")
    for key, value in (("from_address", from_address), ("reply_to", reply_to)):
        if value is not None:
            try:
                _address(None, value, what=f"deliver.{key}", owner="params.yaml")
            except DeliveryError as err:
                raise ConfigError(str(err)) from err
    if from_name is not None and _CONTROL.search(from_name):
        raise ConfigError(f"deliver.from_name {from_name!r} contains a line break or control char")
    empty_list = cfg.get("empty_list", "note")
    if empty_list not in EMPTY_LIST_MODES:
        raise ConfigError(
            f"deliver.empty_list must be one of {EMPTY_LIST_MODES}, got {empty_list!r}"
        )
    security = cfg.get("security", "starttls")
    if security not in SECURITY_MODES:
        raise ConfigError(f"deliver.security must be one of {SECURITY_MODES}, got {security!r}")
    host = _optional_str(cfg, "host")
    if host is None:
        raise ConfigError("deliver.host is required (the SMTP server)")
    try:
        port = int(cfg.get("port", 465 if security == "ssl" else 587))
        timeout = float(cfg.get("timeout_seconds", 30))
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"deliver.port and deliver.timeout_seconds must be numbers: {err}"
        ) from err
    if not 0 < port < 65536 or timeout <= 0:
        raise ConfigError(f"deliver.port {port} or deliver.timeout_seconds {timeout} out of range")
    sender = SenderSettings(from_address, from_name, reply_to, empty_list)
    smtp = SmtpSettings(
        host=host,
        port=port,
        security=security,
        timeout_seconds=timeout,
        username_env=_optional_str(cfg, "username_env"),
        password_env=_optional_str(cfg, "password_env"),
    )
    return sender, smtp


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def smtp_credentials(smtp: SmtpSettings, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """Username and password from the environment variables the settings name; None = no login.

    A named variable that is unset is an error rather than a silent unauthenticated attempt:
    cron jobs start with a bare environment, and the fix should be obvious from the message.
    """
    if smtp.username_env is None:
        if smtp.password_env is not None:
            raise ConfigError("deliver.password_env is set but deliver.username_env is not")
        return None
    if smtp.password_env is None:
        raise ConfigError("deliver.username_env is set but deliver.password_env is not")
    missing = [name for name in (smtp.username_env, smtp.password_env) if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"environment variable(s) {', '.join(missing)} not set: they hold the SMTP login "
            "named by deliver.username_env/password_env (set them, or set both to null to send "
            "without login)"
        )
    if smtp.security == "none" and not _is_loopback(smtp.host):
        raise ConfigError(
            f"refusing to send SMTP credentials unencrypted to {smtp.host}: set deliver.security "
            "to starttls or ssl"
        )
    return environ[smtp.username_env], environ[smtp.password_env]


# --- manifest --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsmEntry:
    """One CSM's line in the manifest: who they are and which files hold their list."""

    csm_id: str
    csm_name: str
    csm_email: str | None
    csv: str
    html: str
    n_accounts: int


@dataclass(frozen=True)
class Manifest:
    """The lists of one as-of date, stamped with the model and data versions."""

    as_of: date
    model_version: str
    data_version: str
    csms: tuple[CsmEntry, ...]


def _entry(raw: object, index: int) -> CsmEntry:
    where = f"manifest csms[{index}]"
    if not isinstance(raw, dict):
        raise DeliveryError(f"{where} is not an object: {raw!r}")
    missing = sorted({"csm_id", "csv", "html", "n_accounts"} - set(raw))
    if missing:
        raise DeliveryError(f"{where} lacks {missing}: {raw!r}")
    csm_id = raw["csm_id"]
    if not isinstance(csm_id, str) or not csm_id:
        raise DeliveryError(f"{where}: csm_id must be non-empty text, got {csm_id!r}")
    name = raw.get("csm_name") or csm_id
    email = raw.get("csm_email") or None
    n_accounts = raw["n_accounts"]
    if isinstance(n_accounts, bool) or not isinstance(n_accounts, int) or n_accounts < 0:
        raise DeliveryError(
            f"{where} (CSM {csm_id!r}): n_accounts must be a count, got {n_accounts!r}"
        )
    for key, value in (
        ("csm_name", name),
        ("csm_email", email),
        ("csv", raw["csv"]),
        ("html", raw["html"]),
    ):
        if value is not None and not isinstance(value, str):
            raise DeliveryError(f"{where} (CSM {csm_id!r}): {key} must be text, got {value!r}")
    return CsmEntry(csm_id, name, email, raw["csv"], raw["html"], n_accounts)


def parse_manifest(payload: object) -> Manifest:
    """Check the manifest as a whole: its date, and that no two CSMs share an id or a file.

    A shared file would mean one CSM receives another's accounts, so it stops the whole run.
    Problems confined to one entry (its address, its paths) are left to that CSM's delivery.
    """
    if not isinstance(payload, dict):
        raise DeliveryError("manifest is not a JSON object")
    try:
        as_of = date.fromisoformat(str(payload["as_of"]))
    except (KeyError, ValueError) as err:
        raise DeliveryError(f"manifest has no valid as_of date (YYYY-MM-DD): {err}") from err
    raw_csms = payload.get("csms")
    if not isinstance(raw_csms, list):
        raise DeliveryError("manifest has no 'csms' list")
    entries = tuple(_entry(raw, i) for i, raw in enumerate(raw_csms))
    seen_ids: set[str] = set()
    seen_files: dict[str, str] = {}
    for entry in entries:
        if entry.csm_id in seen_ids:
            raise DeliveryError(f"manifest lists CSM {entry.csm_id!r} twice")
        seen_ids.add(entry.csm_id)
        for relative in (entry.csv, entry.html):
            key = os.path.normpath(relative)
            if key in seen_files:
                raise DeliveryError(
                    f"manifest gives CSMs {seen_files[key]!r} and {entry.csm_id!r} the same file "
                    f"{relative!r}: refusing to send one CSM's list to another"
                )
            seen_files[key] = entry.csm_id
    return Manifest(
        as_of=as_of,
        model_version=str(payload.get("model_version", "unknown")),
        data_version=str(payload.get("data_version", "unknown")),
        csms=entries,
    )


# --- messages --------------------------------------------------------------------------------


def _header_safe(value: str, *, what: str, owner: str) -> str:
    if _CONTROL.search(value):
        raise DeliveryError(
            f"{owner}: {what} {value!r} contains a line break or control character "
            "(refused: it would allow header injection)"
        )
    return value


def _address(name: str | None, email: str, *, what: str, owner: str) -> Address:
    """One address, strictly: a bare addr-spec (no display part, no list, no line breaks)."""
    _header_safe(email, what=what, owner=owner)
    if name is not None:
        _header_safe(name, what="name", owner=owner)
    try:
        address = Address(display_name=name or "", addr_spec=email.strip())
    except (ValueError, IndexError, email_errors.HeaderParseError) as err:
        raise DeliveryError(f"{owner}: {what} {email!r} is not an email address ({err})") from err
    if not address.username or not address.domain:
        raise DeliveryError(f"{owner}: {what} {email!r} is not an email address (user@domain)")
    return address


def safe_token(csm_id: str) -> str:
    """A file-name and Message-ID safe form of a CSM id; a hash suffix keeps it unique."""
    token = _UNSAFE_TOKEN.sub("-", csm_id).strip("-")
    if token != csm_id or not token:
        token = f"{token or 'csm'}-{hashlib.sha256(csm_id.encode()).hexdigest()[:8]}"
    return token


def attachment_filename(as_of: date, csm_id: str) -> str:
    """The CSV attachment's name: as-of date and safe CSM id, nothing from the file system."""
    return f"churn-list-{as_of.isoformat()}-{safe_token(csm_id)}.csv"


def _digest(*parts: str | bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big") + data)
    return hasher.hexdigest()


def _subject(as_of: date, n_accounts: int) -> str:
    if n_accounts == 0:
        return f"Churn watch list {as_of.isoformat()}: no accounts need attention"
    noun = "account needs" if n_accounts == 1 else "accounts need"
    return f"Churn watch list {as_of.isoformat()}: {n_accounts} {noun} attention"


def _headers(
    message: EmailMessage,
    entry: CsmEntry,
    manifest: Manifest,
    sender: SenderSettings,
    digest: str,
) -> None:
    owner = f"CSM {entry.csm_id!r}"
    _header_safe(entry.csm_id, what="csm_id", owner=owner)
    if entry.csm_email is None:
        raise DeliveryError(f"{owner} has no email address")
    recipient = _address(entry.csm_name, entry.csm_email, what="email", owner=owner)
    origin = _address(sender.from_name, sender.from_address, what="from_address", owner="params")
    message["From"] = origin
    message["To"] = recipient
    if sender.reply_to:
        message["Reply-To"] = _address(None, sender.reply_to, what="reply_to", owner="params")
    message["Subject"] = _subject(manifest.as_of, entry.n_accounts)
    # Deterministic stamps: reruns on the same lists give the same bytes and the same id.
    message["Date"] = format_datetime(datetime.combine(manifest.as_of, time(0, 0), tzinfo=UTC))
    token = safe_token(entry.csm_id)
    message["Message-ID"] = (
        f"<churn-list.{manifest.as_of.isoformat()}.{token}.{digest[:16]}@{origin.domain}>"
    )
    message["X-Churn-As-Of"] = manifest.as_of.isoformat()
    message["X-Churn-CSM"] = entry.csm_id
    stamps = {"Model": manifest.model_version, "Data": manifest.data_version}
    for what, value in stamps.items():
        message[f"X-Churn-{what}-Version"] = _header_safe(
            value, what=f"{what.lower()}_version", owner="manifest"
        )


def _fix_boundaries(message: EmailMessage, digest: str) -> None:
    """Replace the random MIME boundaries the email package would draw with hash-derived ones."""
    payload = message.as_bytes(policy=WIRE_POLICY)
    for number, part in enumerate(p for p in message.walk() if p.is_multipart()):
        boundary = f"==churn-{digest[:32]}-{number}=="
        # Base64/quoted-printable bodies cannot hold '==churn-<hash>'; checked, not assumed.
        if boundary.encode() in payload:
            raise DeliveryError(f"MIME boundary {boundary!r} occurs in the content")
        part.set_boundary(boundary)


def plain_text_list(entry: CsmEntry, manifest: Manifest, account_names: list[str]) -> str:
    """The plain-text alternative: the ranked account names and where the details are."""
    lines = [
        f"Hello {entry.csm_name},",
        "",
        f"{entry.n_accounts} of your accounts "
        f"{'needs' if entry.n_accounts == 1 else 'need'} attention this week",
        f"(data as of {manifest.as_of.isoformat()}), top of the list first:",
        "",
    ]
    lines += [f"  {rank}. {name}" for rank, name in enumerate(account_names, start=1)]
    if account_names:
        lines.append("")
    lines += [
        "The HTML version shows each account's reasons and suggested plays;",
        "the attached CSV holds the same list.",
        "",
        f"Model version: {manifest.model_version}; data version: {manifest.data_version}.",
        "",
    ]
    return "\n".join(lines)


def build_list_message(
    entry: CsmEntry,
    manifest: Manifest,
    sender: SenderSettings,
    *,
    html: str,
    csv_bytes: bytes,
    account_names: list[str],
) -> EmailMessage:
    """One CSM's email: plain text and their HTML list as alternatives, their CSV attached."""
    digest = _digest(
        repr(asdict(entry)),
        repr(asdict(sender)),
        manifest.model_version,
        manifest.data_version,
        html,
        csv_bytes,
    )
    message = EmailMessage(policy=policy.default)
    _headers(message, entry, manifest, sender, digest)
    # Quoted-printable keeps every part 7-bit clean, whatever the server's 8BITMIME support.
    message.set_content(plain_text_list(entry, manifest, account_names), cte=TEXT_CTE)
    message.add_alternative(html, subtype="html", cte=TEXT_CTE)
    message.add_attachment(
        csv_bytes,
        maintype="text",
        subtype="csv",
        filename=attachment_filename(manifest.as_of, entry.csm_id),
    )
    _fix_boundaries(message, digest)
    return message


def build_empty_note(entry: CsmEntry, manifest: Manifest, sender: SenderSettings) -> EmailMessage:
    """A short note for a CSM with nothing on their list this week (no attachment)."""
    digest = _digest(
        repr(asdict(entry)),
        repr(asdict(sender)),
        manifest.model_version,
        manifest.data_version,
        "empty-note",
    )
    message = EmailMessage(policy=policy.default)
    _headers(message, entry, manifest, sender, digest)
    message.set_content(
        f"Hello {entry.csm_name},\n\n"
        f"None of your accounts need attention this week "
        f"(data as of {manifest.as_of.isoformat()}).\n\n"
        f"Model version: {manifest.model_version}; data version: {manifest.data_version}.\n",
        cte=TEXT_CTE,
    )
    return message


def csv_rows(csv_text: str) -> list[dict[str, str]]:
    """The rows of a list CSV (leading '#' comment lines skipped), for the ownership check."""
    lines = csv_text.splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return list(csv.DictReader(io.StringIO("".join(lines))))


def check_list_rows(rows: list[dict[str, str]], entry: CsmEntry) -> None:
    """Refuse a CSV that holds another CSM's accounts or disagrees with the manifest's count."""
    if rows and "csm_id" in rows[0]:
        foreign = sorted({row["csm_id"] for row in rows} - {entry.csm_id})
        if foreign:
            raise DeliveryError(
                f"CSM {entry.csm_id!r}: list CSV holds rows of other CSMs {foreign[:5]}"
            )
    if rows and "account_id" in rows[0] and len(rows) != entry.n_accounts:
        raise DeliveryError(
            f"CSM {entry.csm_id!r}: manifest says {entry.n_accounts} accounts, the list CSV holds "
            f"{len(rows)}"
        )


def _plain_cell(value: str) -> str:
    """A CSV cell for plain text: drop the apostrophe that defuses a spreadsheet formula."""
    if len(value) > 1 and value[0] == "'" and value[1] in "=+-@\t\r":
        return value[1:]
    return value


def message_bytes(message: EmailMessage) -> bytes:
    """The message as sent on the wire (and as written to a .eml file)."""
    return message.as_bytes(policy=WIRE_POLICY)


# --- delivery log ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CsmDelivery:
    """What happened to one CSM's list."""

    csm_id: str
    csm_name: str
    recipient: str | None
    n_accounts: int
    status: str
    detail: str = ""
    message_id: str | None = None
    location: str | None = None


def delivery_counts(outcomes: list[CsmDelivery]) -> dict[str, int]:
    """How many CSMs ended in each status, plus those skipped for want of an address."""
    counts = {status: sum(o.status == status for o in outcomes) for status in STATUSES}
    counts["skipped_no_email"] = sum(
        o.status == "skipped" and o.recipient is None for o in outcomes
    )
    return counts


def delivery_log(manifest: Manifest, outcomes: list[CsmDelivery], *, mode: str) -> dict:
    """The delivery log: per CSM status, recipient and count; no wall-clock time (stable file)."""
    return {
        "as_of": manifest.as_of.isoformat(),
        "mode": mode,
        "model_version": manifest.model_version,
        "data_version": manifest.data_version,
        "counts": delivery_counts(outcomes),
        "csms": [asdict(o) for o in outcomes],
    }


def already_sent(previous: object, as_of: date) -> dict[str, str]:
    """CSM id -> Message-ID of messages an earlier run's log records as sent for this as-of."""
    if not isinstance(previous, dict) or previous.get("as_of") != as_of.isoformat():
        return {}
    sent = {}
    for row in previous.get("csms") or []:
        if isinstance(row, dict) and row.get("status") == "sent" and row.get("message_id"):
            sent[str(row["csm_id"])] = str(row["message_id"])
    return sent


# --- edge: files and transports --------------------------------------------------------------


def read_manifest(lists_dir: Path) -> Manifest:
    """Read and check `<lists_dir>/manifest.json`; the directory name must match its as-of date."""
    path = Path(lists_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DeliveryError(f"{path} not found: run the lists stage first, or pass --lists")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DeliveryError(f"{path} is not valid JSON: {err}") from err
    manifest = parse_manifest(payload)
    try:
        dir_date = date.fromisoformat(Path(lists_dir).resolve().name)
    except ValueError:
        dir_date = None
    if dir_date is not None and dir_date != manifest.as_of:
        raise DeliveryError(
            f"{path} is for as-of {manifest.as_of} but sits in the directory of {dir_date}"
        )
    return manifest


def list_file(lists_dir: Path, relative: str, *, csm_id: str, kind: str) -> Path:
    """Resolve one of a CSM's files, refusing anything outside the as-of directory."""
    owner = f"CSM {csm_id!r}"
    pure = PurePosixPath(relative)
    if not relative or "\\" in relative or pure.is_absolute() or ".." in pure.parts:
        raise DeliveryError(f"{owner}: {kind} path {relative!r} must be relative, inside the lists")
    root = Path(lists_dir).resolve()
    path = (root / pure).resolve()
    if not path.is_relative_to(root):
        raise DeliveryError(f"{owner}: {kind} path {relative!r} leads outside {root}")
    if not path.is_file():
        raise DeliveryError(f"{owner}: {kind} list {path} not found")
    return path


def prepare_message(
    lists_dir: Path, manifest: Manifest, entry: CsmEntry, sender: SenderSettings
) -> EmailMessage:
    """Read one CSM's files (only theirs) and build their message."""
    if entry.n_accounts == 0:
        return build_empty_note(entry, manifest, sender)
    csv_path = list_file(lists_dir, entry.csv, csm_id=entry.csm_id, kind="csv")
    html_path = list_file(lists_dir, entry.html, csm_id=entry.csm_id, kind="html")
    csv_bytes = csv_path.read_bytes()
    try:
        html = html_path.read_text(encoding="utf-8")
        rows = csv_rows(csv_bytes.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise DeliveryError(f"CSM {entry.csm_id!r}: list file is not UTF-8: {err}") from err
    check_list_rows(rows, entry)
    names = [_plain_cell(row.get("account_name") or row.get("account_id") or "") for row in rows]
    return build_list_message(
        entry,
        manifest,
        sender,
        html=html,
        csv_bytes=csv_bytes,
        account_names=[n for n in names if n],
    )


class Transport(Protocol):
    """Where messages go: `status` names the outcome of a successful `send`."""

    status: str

    def send(self, message: EmailMessage, *, envelope_from: str, recipient: str) -> str:
        """Deliver one message to exactly one recipient; return where it went."""
        ...


class OutboxTransport:
    """Dry run: one `.eml` file per CSM, written atomically, named after the To header's CSM."""

    status = "dry-run"

    def __init__(self, outbox: Path) -> None:
        self.outbox = Path(outbox)

    def send(self, message: EmailMessage, *, envelope_from: str, recipient: str) -> str:
        from pipeline.core.atomic import atomic_path

        target = self.outbox / f"{safe_token(str(message['X-Churn-CSM']))}.eml"
        with atomic_path(target) as tmp:
            tmp.write_bytes(message_bytes(message))
        return str(target)


class SmtpTransport:
    """SMTP over one reused connection; reconnects after a broken one.

    A failed connect or login is remembered: the remaining CSMs fail at once with the same
    error instead of each waiting for the timeout again.
    """

    status = "sent"

    def __init__(self, settings: SmtpSettings, credentials: tuple[str, str] | None) -> None:
        self.settings = settings
        self.credentials = credentials
        self._smtp: smtplib.SMTP | None = None
        self._connect_error: Exception | None = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.security == "ssl":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.credentials is not None:
                smtp.login(*self.credentials)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: EmailMessage, *, envelope_from: str, recipient: str) -> str:
        if self._connect_error is not None:
            raise DeliveryError(f"not attempted: {self._connect_error}")
        if self._smtp is None:
            try:
                self._smtp = self._connect()
            except (OSError, smtplib.SMTPException) as err:
                where = f"{self.settings.host}:{self.settings.port}"
                self._connect_error = DeliveryError(f"SMTP connection to {where} failed: {err}")
                raise self._connect_error from err
        try:
            # smtplib resets the session itself after a refused recipient or message.
            self._smtp.send_message(message, from_addr=envelope_from, to_addrs=[recipient])
        except (
            smtplib.SMTPRecipientsRefused,
            smtplib.SMTPSenderRefused,
            smtplib.SMTPDataError,
        ):
            raise
        except (OSError, smtplib.SMTPException):
            self.close()
            raise
        return f"{self.settings.host}:{self.settings.port}"

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None


def iter_deliveries(
    lists_dir: Path,
    manifest: Manifest,
    sender: SenderSettings,
    transport: Transport,
    *,
    previously_sent: Mapping[str, str] | None = None,
) -> Iterator[CsmDelivery]:
    """Deliver each CSM's list in turn, yielding one outcome per CSM whatever happens.

    A CSM's failure (bad entry, missing file, refused recipient) is recorded and the next CSM
    goes ahead. A message whose Message-ID the previous log records as sent is not resent.
    """
    previously_sent = previously_sent or {}
    for entry in manifest.csms:
        base = {
            "csm_id": entry.csm_id,
            "csm_name": entry.csm_name,
            "recipient": entry.csm_email,
            "n_accounts": entry.n_accounts,
        }
        if entry.csm_email is None:
            log.warning("CSM %r has no email address: list not delivered", entry.csm_id)
            yield CsmDelivery(**base, status="skipped", detail="no email address")
            continue
        if entry.n_accounts == 0 and sender.empty_list == "skip":
            log.info("CSM %r has no accounts on the list: skipped", entry.csm_id)
            yield CsmDelivery(**base, status="skipped", detail="empty list")
            continue
        message_id = None
        try:
            message = prepare_message(lists_dir, manifest, entry, sender)
            message_id = str(message["Message-ID"])
            if previously_sent.get(entry.csm_id) == message_id:
                log.info("CSM %r: this list was already sent (%s)", entry.csm_id, message_id)
                yield CsmDelivery(
                    **base,
                    status="sent",
                    detail="already sent by an earlier run; --resend sends it again",
                    message_id=message_id,
                )
                continue
            location = transport.send(
                message,
                envelope_from=sender.from_address,
                recipient=message["To"].addresses[0].addr_spec,
            )
        except (DeliveryError, OSError, ValueError, smtplib.SMTPException) as err:
            detail = _describe(err)
            log.error("CSM %r: delivery failed: %s", entry.csm_id, detail)
            yield CsmDelivery(**base, status="failed", detail=detail, message_id=message_id)
            continue
        log.info(
            "CSM %r: %d accounts -> %s (%s)",
            entry.csm_id,
            entry.n_accounts,
            location,
            transport.status,
        )
        yield CsmDelivery(**base, status=transport.status, message_id=message_id, location=location)


def _describe(err: Exception) -> str:
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{rcpt} refused: {code} {msg.decode(errors='replace')}"
            for rcpt, (code, msg) in err.recipients.items()
        )
    if isinstance(err, smtplib.SMTPResponseException):
        return f"SMTP {err.smtp_code} {err.smtp_error.decode(errors='replace')}"
    return f"{type(err).__name__}: {err}" if not isinstance(err, DeliveryError) else str(err)


@dataclass(frozen=True)
class DeliveryResult:
    """A finished run: the manifest, each CSM's outcome and where the log went."""

    manifest: Manifest
    outcomes: list[CsmDelivery]
    log_path: Path

    @property
    def counts(self) -> dict[str, int]:
        return delivery_counts(self.outcomes)


def delivery_dir(lists_dir: Path) -> Path:
    """Where a week's delivery log and outbox live: reports/deliveries/<as-of> beside
    reports/lists/<as-of>.

    Not inside the lists directory: that is the score stage's DVC output, which a rescore
    replaces as a whole (the log that prevents double sends would go with it) and which DVC
    would report as modified after every delivery.
    """
    lists_dir = Path(lists_dir)
    return lists_dir.parent.parent / "deliveries" / lists_dir.name


def run_deliver(
    params: dict,
    lists_dir: Path,
    *,
    dry_run: bool = False,
    outbox: Path | None = None,
    log_path: Path | None = None,
    resend: bool = False,
    environ: Mapping[str, str] | None = None,
) -> DeliveryResult:
    """The delivery edge: read settings and the manifest, send (or write .eml), write the log.

    Raises ConfigError or DeliveryError before anything is sent when the settings, the
    credentials or the manifest as a whole are unusable. Per-CSM failures are in the result.
    """
    from pipeline.core.atomic import write_json
    from pipeline.core.config import section

    lists_dir = Path(lists_dir)
    environ = os.environ if environ is None else environ
    sender, smtp = delivery_settings(section(params, "deliver"))
    manifest = read_manifest(lists_dir)
    log_path = Path(log_path) if log_path is not None else delivery_dir(lists_dir) / LOG_NAME

    previously_sent: dict[str, str] = {}
    if not resend and log_path.is_file():
        try:
            previously_sent = already_sent(json.loads(log_path.read_text()), manifest.as_of)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DeliveryError(
                f"delivery log {log_path} is unreadable ({err}): it is what prevents sending a "
                "list twice; move it away or pass --resend"
            ) from err

    transport: OutboxTransport | SmtpTransport
    if dry_run:
        transport = OutboxTransport(
            outbox if outbox is not None else delivery_dir(lists_dir) / OUTBOX_NAME
        )
    else:
        transport = SmtpTransport(smtp, smtp_credentials(smtp, environ))

    outcomes: list[CsmDelivery] = []
    try:
        for outcome in iter_deliveries(
            lists_dir, manifest, sender, transport, previously_sent=previously_sent
        ):
            outcomes.append(outcome)
    finally:
        if isinstance(transport, SmtpTransport):
            transport.close()
        # Written even after an unexpected error: it records who already has their list.
        mode = "dry-run" if dry_run else "smtp"
        write_json(delivery_log(manifest, outcomes, mode=mode), log_path)
    return DeliveryResult(manifest, outcomes, log_path)
