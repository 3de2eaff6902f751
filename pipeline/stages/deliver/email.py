"""The email channel: one MIME message per CSM (HTML body, CSV attached), over SMTP or to .eml.

Why the messages look as they do:
- Header injection is impossible: names, addresses, ids and version stamps with line breaks or
  other control characters are refused (`headers`), with an error naming the CSM.
- Every message has exactly one recipient, the CSM of the manifest entry it was built from.
- Messages are deterministic: Message-ID comes from the as-of date, the CSM id and a hash of
  the content, MIME boundaries from that hash. A dry run rerun on the same lists writes
  byte-identical `.eml` files, and the delivery log can tell a message that already went out
  from one whose content changed.
- `Date:` is the time the message is sent. `SmtpTransport` stamps it (UTC, RFC 5322) on a copy
  of the built message just before the SMTP transaction, from its clock (injectable, for
  tests). Neither the Message-ID nor the content digest sees the Date, so a message resent
  after a cut-off send keeps its Message-ID and carries its new send time. A dry run sends
  nothing, so its `.eml` files carry a preview Date, the as-of date at 00:00 UTC (the date the
  data is as of): the same for every rerun, which keeps the outbox byte-identical.
- Every text part is quoted-printable, so the message is 7-bit clean whatever the server.
"""

from __future__ import annotations

import copy
import smtplib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, date, datetime, time
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from pipeline.core.atomic import atomic_path
from pipeline.core.config import DeliverSection
from pipeline.core.errors import DeliveryError
from pipeline.lists.manifest import CsmEntry, ListsManifest
from pipeline.stages.deliver.channel import Message, Transport, content_digest, safe_token
from pipeline.stages.deliver.headers import header_safe, parse_address
from pipeline.stages.deliver.list_files import read_csm_list
from pipeline.stages.deliver.settings import (
    SenderSettings,
    SmtpSettings,
    delivery_settings,
    smtp_credentials,
)

# The wire format: CRLF line ends, lines folded at 78. Used for SMTP and for .eml files alike.
WIRE_POLICY = policy.SMTP
TEXT_CTE = "quoted-printable"
# The entry fields, in this order, that every Message-ID has always been derived from. Fields the
# manifest gained later (n_owned, arr_at_risk_listed) are not in the email, so not in the id.
_DIGEST_ENTRY_FIELDS = ("csm_id", "csm_name", "csm_email", "csv", "html", "n_accounts")


# --- building --------------------------------------------------------------------------------


def utc_now() -> datetime:
    """The wall clock, in UTC: the default clock of a real send."""
    return datetime.now(UTC)


def rfc5322_date(moment: datetime) -> str:
    """A `Date:` value for an aware instant, in UTC ("Mon, 16 Nov 2026 08:01:02 +0000")."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the send clock gave a naive datetime {moment!r}; it must be aware")
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0))


def preview_date(as_of: date) -> str:
    """The Date of a message that is not sent (dry run): the as-of date at 00:00 UTC."""
    return rfc5322_date(datetime.combine(as_of, time(0, 0), tzinfo=UTC))


def stamped_with_send_time(message: EmailMessage, moment: datetime) -> EmailMessage:
    """A copy of `message` whose Date is `moment`; the built message itself is left as it is.

    Only the Date changes: the Message-ID, the boundaries and every part stay, so the journal
    and a rerun see the same message whatever time it goes out.
    """
    stamped = copy.deepcopy(message)
    stamped.replace_header("Date", rfc5322_date(moment))
    return stamped


def attachment_filename(as_of: date, csm_id: str) -> str:
    """The CSV attachment's name: as-of date and safe CSM id, nothing from the file system."""
    return f"churn-list-{as_of.isoformat()}-{safe_token(csm_id)}.csv"


def _message_digest(
    entry: CsmEntry, manifest: ListsManifest, sender: SenderSettings, *content: str | bytes
) -> str:
    entry_fields = {name: getattr(entry, name) for name in _DIGEST_ENTRY_FIELDS}
    return content_digest(
        repr(entry_fields),
        repr(asdict(sender)),
        manifest.model_version,
        manifest.data_version,
        *content,
    )


def _subject(as_of: date, n_accounts: int) -> str:
    if n_accounts == 0:
        return f"Churn watch list {as_of.isoformat()}: no accounts need attention"
    noun = "account needs" if n_accounts == 1 else "accounts need"
    return f"Churn watch list {as_of.isoformat()}: {n_accounts} {noun} attention"


def _headers(
    message: EmailMessage,
    entry: CsmEntry,
    manifest: ListsManifest,
    sender: SenderSettings,
    digest: str,
) -> None:
    owner = f"CSM {entry.csm_id!r}"
    header_safe(entry.csm_id, what="csm_id", owner=owner)
    if entry.csm_email is None:
        raise DeliveryError(f"{owner} has no email address")
    recipient = parse_address(entry.csm_name, entry.csm_email, what="email", owner=owner)
    origin = parse_address(
        sender.from_name, sender.from_address, what="from_address", owner="params"
    )
    message["From"] = origin
    message["To"] = recipient
    if sender.reply_to:
        message["Reply-To"] = parse_address(None, sender.reply_to, what="reply_to", owner="params")
    message["Subject"] = _subject(manifest.as_of, entry.n_accounts)
    # The preview Date (what a dry run writes); a real send replaces it with the send time.
    message["Date"] = preview_date(manifest.as_of)
    token = safe_token(entry.csm_id)
    message["Message-ID"] = (
        f"<churn-list.{manifest.as_of.isoformat()}.{token}.{digest[:16]}@{origin.domain}>"
    )
    message["X-Churn-As-Of"] = manifest.as_of.isoformat()
    message["X-Churn-CSM"] = entry.csm_id
    stamps = {"Model": manifest.model_version, "Data": manifest.data_version}
    for what, value in stamps.items():
        message[f"X-Churn-{what}-Version"] = header_safe(
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


def plain_text_list(entry: CsmEntry, manifest: ListsManifest, account_names: list[str]) -> str:
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
    manifest: ListsManifest,
    sender: SenderSettings,
    *,
    html: str,
    csv_bytes: bytes,
    account_names: list[str],
) -> EmailMessage:
    """One CSM's email: plain text and their HTML list as alternatives, their CSV attached."""
    digest = _message_digest(entry, manifest, sender, html, csv_bytes)
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


def build_empty_note(
    entry: CsmEntry, manifest: ListsManifest, sender: SenderSettings
) -> EmailMessage:
    """A short note for a CSM with nothing on their list this week (no attachment)."""
    digest = _message_digest(entry, manifest, sender, "empty-note")
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


def message_bytes(message: EmailMessage) -> bytes:
    """The message as sent on the wire (and as written to a .eml file)."""
    return message.as_bytes(policy=WIRE_POLICY)


# --- the channel -----------------------------------------------------------------------------


class EmailChannel:
    """Email delivery: a CSM's address from the manifest, messages built as above."""

    name = "email"
    missing_recipient = "no email address"

    def __init__(
        self,
        sender: SenderSettings,
        smtp: SmtpSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sender = sender
        self.smtp = smtp
        self.clock = clock

    @classmethod
    def from_config(
        cls, deliver: DeliverSection, *, clock: Callable[[], datetime] = utc_now
    ) -> EmailChannel:
        """The channel for `config.deliver`; a ConfigError names the first unusable setting.

        `clock` gives each real send's Date (tests inject a fixed one).
        """
        return cls(*delivery_settings(deliver), clock=clock)

    def recipient(self, entry: CsmEntry) -> str | None:
        return entry.csm_email

    def build(self, entry: CsmEntry, lists_dir: Path, manifest: ListsManifest) -> Message:
        # An empty list's files are not read: the note says nothing that is in them.
        if entry.n_accounts == 0:
            email_message = build_empty_note(entry, manifest, self.sender)
        else:
            files = read_csm_list(lists_dir, entry)
            email_message = build_list_message(
                entry,
                manifest,
                self.sender,
                html=files.html,
                csv_bytes=files.csv_bytes,
                account_names=files.account_names,
            )
        return Message(
            csm_id=entry.csm_id,
            recipient=email_message["To"].addresses[0].addr_spec,
            message_id=str(email_message["Message-ID"]),
            payload=email_message,
        )

    def open_transport(
        self, *, dry_run: bool, outbox: Path, environ: Mapping[str, str]
    ) -> Transport:
        if dry_run:
            return OutboxTransport(outbox)
        credentials = smtp_credentials(self.smtp, environ)
        return SmtpTransport(
            self.smtp, credentials, envelope_from=self.sender.from_address, clock=self.clock
        )


def _email_of(message: Message) -> EmailMessage:
    if not isinstance(message.payload, EmailMessage):
        raise TypeError(f"the email channel cannot send a {type(message.payload).__name__}")
    return message.payload


# --- transports ------------------------------------------------------------------------------


class OutboxTransport:
    """Dry run: one `.eml` file per CSM, written atomically, named after the CSM id."""

    status = "dry-run"
    mode = "dry-run"

    def __init__(self, outbox: Path) -> None:
        self.outbox = Path(outbox)

    def send(self, message: Message) -> str:
        target = self.outbox / f"{safe_token(message.csm_id)}.eml"
        with atomic_path(target) as tmp:
            tmp.write_bytes(message_bytes(_email_of(message)))
        return str(target)

    def close(self) -> None:
        """Nothing to release: each file is complete once `send` returns."""


def describe_smtp_error(err: Exception) -> str:
    """What the server said, readable in the delivery log (not a Python repr of bytes)."""
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{rcpt} refused: {code} {msg.decode(errors='replace')}"
            for rcpt, (code, msg) in err.recipients.items()
        )
    if isinstance(err, smtplib.SMTPResponseException):
        return f"SMTP {err.smtp_code} {err.smtp_error.decode(errors='replace')}"
    return f"{type(err).__name__}: {err}"


class SmtpTransport:
    """SMTP over one reused connection; reconnects after a broken one.

    Each message goes out with its Date set to `clock()` at the moment it is handed over.

    A failed connect or login is remembered: the remaining CSMs fail at once with the same
    error instead of each waiting for the timeout again.
    """

    status = "sent"
    mode = "smtp"

    def __init__(
        self,
        settings: SmtpSettings,
        credentials: tuple[str, str] | None,
        *,
        envelope_from: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.envelope_from = envelope_from
        self.clock = clock
        self._smtp: smtplib.SMTP | None = None
        self._connect_error: DeliveryError | None = None

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

    def send(self, message: Message) -> str:
        email_message = _email_of(message)
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
            self._smtp.send_message(
                stamped_with_send_time(email_message, self.clock()),
                from_addr=self.envelope_from,
                to_addrs=[message.recipient],
            )
        except (
            smtplib.SMTPRecipientsRefused,
            smtplib.SMTPSenderRefused,
            smtplib.SMTPDataError,
        ) as err:
            raise DeliveryError(describe_smtp_error(err)) from err
        except (OSError, smtplib.SMTPException) as err:
            self.close()
            raise DeliveryError(describe_smtp_error(err)) from err
        return f"{self.settings.host}:{self.settings.port}"

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None
