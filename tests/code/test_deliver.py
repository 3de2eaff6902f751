"""Delivery: each CSM gets exactly one email holding only their own list.

A real SMTP server (aiosmtpd, with AUTH) runs on 127.0.0.1; lists directories are built here in
the manifest format of the lists stage (see pipeline/lists/manifest.py).
"""

from __future__ import annotations

import csv
import email
import inspect
import io
import json
import logging
import os
import signal
import socket
from datetime import UTC, date, datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.config import Config, parse_config
from pipeline.core.errors import ConfigError, DeliveryError
from pipeline.core.layout import deliveries_dir_for
from pipeline.core.secrets import redact
from pipeline.lists.manifest import read_manifest
from pipeline.stages.deliver import run_deliver
from pipeline.stages.deliver.channel import Message, safe_token
from pipeline.stages.deliver.email import (
    EmailChannel,
    attachment_filename,
    rfc5322_date,
    stamped_with_send_time,
)
from pipeline.stages.deliver.journal import JOURNAL_FILE, LOCK_FILE, DeliveryJournal, run_lock
from pipeline.stages.deliver.registry import CHANNELS
from pipeline.stages.deliver.settings import SmtpSettings, delivery_settings, smtp_credentials
from pipeline.stages.deliver.webhook import (
    clip,
    escape_mrkdwn,
    retry_after_seconds,
    url_secrets,
    webhook_url,
)
from pipeline.stages.deliver.webhook import format_money as webhook_money
from tests.conftest import tiny_raw_tables, write_dir

# Plain-text AUTH is fine on loopback in tests; production uses starttls or ssl.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

AS_OF = "2026-11-16"
USER, PASSWORD = "churn-bot", "s3cret pass"
ENV = {"TEST_SMTP_USER": USER, "TEST_SMTP_PASSWORD": PASSWORD}

# csm_id -> (name, email, account ids); carol has no email, dave has nothing on his list.
CSMS = {
    "alice": ("Alice Adams", "alice@example.com", ["A-1", "A-2", "A-3"]),
    "bob": ("Bob Brown", "bob@example.com", ["B-1", "B-2"]),
    "carol": ("Carol Chen", None, ["C-1"]),
    "dave": ("Dave Diaz", "dave@example.com", []),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_lists(root: Path, csms: dict = CSMS, *, as_of: str = AS_OF, edit=None) -> Path:
    """A lists directory as the lists stage writes it; `edit` may change manifest entries."""
    return fill_lists(root / "lists" / as_of, csms, as_of=as_of, edit=edit)


def fill_lists(lists: Path, csms: dict = CSMS, *, as_of: str = AS_OF, edit=None) -> Path:
    (lists / "csm").mkdir(parents=True)
    entries = []
    for csm_id, (name, address, accounts) in csms.items():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["list_rank", "account_id", "account_name", "csm_id", "probability"])
        for rank, account in enumerate(accounts, start=1):
            writer.writerow([rank, account, f'\'=HYPERLINK("x","{account} Corp")', csm_id, 0.5])
        (lists / "csm" / f"{csm_id}.csv").write_text(buffer.getvalue())
        rows = "".join(f"<tr><td>{a}</td><td>&lt;script&gt;{a}</td></tr>\n" for a in accounts)
        (lists / "csm" / f"{csm_id}.html").write_text(
            f"<!doctype html>\n<html><body><h1>{name}: é</h1>\n"
            f"<table>\n{rows}</table></body></html>\n"
        )
        entries.append(
            {
                "csm_id": csm_id,
                "csm_name": name,
                "csm_email": address,
                "csv": f"csm/{csm_id}.csv",
                "html": f"csm/{csm_id}.html",
                "n_accounts": len(accounts),
                "n_owned": 10,
                "arr_at_risk_listed": 1000.0 * len(accounts),
            }
        )
    if edit is not None:
        edit(entries)
    n_listed = sum(len(accounts) for _, _, accounts in csms.values())
    manifest = {
        "as_of": as_of,
        "model_version": "run-123",
        "model_source": "models/",
        "data_version": "md5-abc",
        "rank_by": "expected_arr_at_risk",
        "capacity_per_csm": 5,
        "base_value": -2.0,
        "warnings": [],
        "csms": entries,
        "n_accounts": 10 * len(csms),
        "n_listed": n_listed,
        "n_unassigned": 0,
        "arr_total": 100000.0,
        "expected_arr_at_risk": 1000.0 * n_listed,
        "risk_bands": {"high": 0.35, "medium": 0.15},
        "risk_band_counts": {"high": 1, "medium": 2, "low": 3},
        "previous_week": "2026-11-09",
        "trend_weeks": 8,
        "shap_method": "tree",
        "additivity_max_error": 0.0,
        "drift_checked": True,
    }
    (lists / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return lists


def params(port: int, **deliver) -> dict:
    section = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "timeout_seconds": 5,
        "username_env": "TEST_SMTP_USER",
        "password_env": "TEST_SMTP_PASSWORD",
        "from_address": "churn-lists@example.com",
        "from_name": "Churn early warning",
        "reply_to": "cs-ops@example.com",
        "empty_list": "note",
    }
    section.update(deliver)
    return {"base": {"as_of_date": AS_OF}, "deliver": section}


def config(port: int, **deliver) -> Config:
    """The typed config of `params` (what the CLI hands to run_deliver)."""
    return parse_config(params(port, **deliver))


class Collector:
    """aiosmtpd handler: keeps every accepted message; refuses the addresses in `refuse`."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.refuse: set[str] = set()
        self.logins: list[tuple[int, bytes]] = []  # (session, login) per AUTH attempt

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "login": session.auth_data.login if session.auth_data else None,
                "message": email.message_from_bytes(envelope.content, policy=policy.default),
            }
        )
        return "250 Message accepted"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((id(session), auth_data.login))
        ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        # handled=False: aiosmtpd itself answers 535 on failure (its default stays silent).
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture
def smtp_server():
    # aiosmtpd logs from its own thread, which can outlive pytest's capture of the test
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    handler = Collector()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=handler.authenticate,
        auth_required=True,
        auth_require_tls=False,  # plain loopback in tests; production uses starttls or ssl
    )
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()


def by_recipient(handler: Collector) -> dict[str, list]:
    out: dict[str, list] = {}
    for item in handler.received:
        for rcpt in item["rcpt_tos"]:
            out.setdefault(rcpt, []).append(item)
    return out


def csv_account_ids(message) -> list[str]:
    (attachment,) = list(message.iter_attachments())
    rows = csv.DictReader(io.StringIO(attachment.get_content()))
    return [row["account_id"] for row in rows]


def all_accounts() -> set[str]:
    return {a for _, _, accounts in CSMS.values() for a in accounts}


# --- against a real SMTP server --------------------------------------------------------------


def test_every_csm_receives_exactly_one_message_with_only_their_accounts(tmp_path, smtp_server):
    port, handler = smtp_server
    lists = write_lists(tmp_path)
    result = run_deliver(config(port), lists, environ=ENV)

    received = by_recipient(handler)
    assert sorted(received) == ["alice@example.com", "bob@example.com", "dave@example.com"]
    for csm_id in ("alice", "bob"):
        name, address, accounts = CSMS[csm_id]
        (item,) = received[address]
        assert item["rcpt_tos"] == [address]
        assert item["mail_from"] == "churn-lists@example.com"
        assert item["login"] == USER.encode()
        message = item["message"]
        assert message["To"].addresses[0].addr_spec == address
        assert message["To"].addresses[0].display_name == name
        assert str(message["Reply-To"]) == "cs-ops@example.com"
        assert AS_OF in message["Subject"] and f"{len(accounts)} accounts" in message["Subject"]
        assert csv_account_ids(message) == accounts
        (attachment,) = list(message.iter_attachments())
        assert attachment.get_filename() == f"churn-list-{AS_OF}-{csm_id}.csv"
        assert attachment.get_content_type() == "text/csv"
        html = message.get_body(preferencelist=("html",)).get_content().replace("\r\n", "\n")
        assert html == (lists / "csm" / f"{csm_id}.html").read_text()
        others = all_accounts() - set(accounts)
        assert all(a in html for a in accounts)
        assert not any(a in html for a in others)
        text = message.get_body(preferencelist=("plain",)).get_content()
        assert f"Hello {name}" in text
        assert f'1. =HYPERLINK("x","{accounts[0]} Corp")' in text  # no CSV defusing quote
        assert not any(a in text for a in others)

    (note,) = received["dave@example.com"]
    assert "no accounts need attention" in note["message"]["Subject"]
    assert list(note["message"].iter_attachments()) == []

    counts = result.counts
    assert (counts["sent"], counts["skipped"], counts["skipped_no_email"], counts["failed"]) == (
        3,
        1,
        1,
        0,
    )
    logged = json.loads((deliveries_dir_for(lists) / "delivery.json").read_text())
    status = {row["csm_id"]: row for row in logged["csms"]}
    assert status["carol"]["status"] == "skipped" and status["carol"]["recipient"] is None
    assert status["alice"] == {
        **status["alice"],
        "status": "sent",
        "recipient": "alice@example.com",
        "n_accounts": 3,
    }
    assert logged["counts"]["skipped_no_email"] == 1 and logged["mode"] == "smtp"


def test_one_refused_recipient_does_not_stop_the_others_and_a_rerun_sends_only_it(
    tmp_path, smtp_server
):
    port, handler = smtp_server
    lists = write_lists(tmp_path)
    handler.refuse = {"alice@example.com"}
    first = run_deliver(config(port), lists, environ=ENV)
    status = {o.csm_id: o for o in first.outcomes}
    assert status["alice"].status == "failed" and "550" in status["alice"].detail
    assert status["bob"].status == "sent" and status["dave"].status == "sent"
    assert sorted(by_recipient(handler)) == ["bob@example.com", "dave@example.com"]
    assert first.counts["failed"] == 1

    # Retry after the fault is fixed: only alice gets mail; bob and dave are not sent twice.
    handler.refuse = set()
    handler.received.clear()
    second = run_deliver(config(port), lists, environ=ENV)
    assert [item["rcpt_tos"] for item in handler.received] == [["alice@example.com"]]
    assert second.counts["failed"] == 0 and second.counts["sent"] == 3

    handler.received.clear()
    run_deliver(config(port), lists, environ=ENV, resend=True)
    assert len(handler.received) == 3


def test_credentials_come_from_the_environment_and_a_failed_login_is_tried_once(
    tmp_path, smtp_server
):
    port, handler = smtp_server
    lists = write_lists(tmp_path)
    result = run_deliver(config(port), lists, environ={**ENV, "TEST_SMTP_PASSWORD": "wrong"})
    assert handler.received == []
    # One connection tried to log in (smtplib tries each mechanism), not one per CSM.
    assert len({session for session, _ in handler.logins}) == 1
    assert {login for _, login in handler.logins} == {USER.encode()}
    attempts = len(handler.logins)
    failed = [o for o in result.outcomes if o.status == "failed"]
    assert len(failed) == 3
    assert all("SMTP connection to 127.0.0.1" in o.detail for o in failed)

    with pytest.raises(ConfigError, match="TEST_SMTP_PASSWORD"):
        run_deliver(config(port), lists, environ={"TEST_SMTP_USER": USER})
    assert len(handler.logins) == attempts


# --- Date: the send time; Message-ID: the content -------------------------------------------


def _clocked_email(monkeypatch, clock):
    """Register the email channel with an injected send clock (what the tests control)."""
    monkeypatch.setitem(
        CHANNELS, "email", lambda cfg: EmailChannel.from_config(cfg.deliver, clock=clock)
    )


def test_a_real_send_is_dated_with_the_time_it_is_sent(tmp_path, smtp_server, monkeypatch):
    port, handler = smtp_server
    lists = write_lists(tmp_path)
    sent_at = datetime(2026, 11, 17, 6, 30, 5, 123456, tzinfo=UTC)
    _clocked_email(monkeypatch, lambda: sent_at)
    run_deliver(config(port), lists, environ=ENV)
    dates = {item["rcpt_tos"][0]: item["message"]["Date"] for item in handler.received}
    assert len(dates) == 3
    for header in dates.values():
        assert str(header) == "Tue, 17 Nov 2026 06:30:05 +0000"  # RFC 5322, UTC
        assert abs((header.datetime - sent_at).total_seconds()) < 1

    # Without an injected clock: the wall clock at the send, not the as-of date.
    monkeypatch.undo()
    handler.received.clear()
    before = datetime.now(UTC)
    run_deliver(config(port), lists, environ=ENV, resend=True)
    after = datetime.now(UTC)
    for item in handler.received:
        moment = item["message"]["Date"].datetime
        assert moment.utcoffset().total_seconds() == 0
        assert before.replace(microsecond=0) - timedelta(seconds=1) <= moment <= after


def test_the_message_id_does_not_move_with_the_date(tmp_path, smtp_server, monkeypatch):
    """Two sends of one list at different times: one Message-ID, two Dates; a send cut off
    mid-way is resent with its Message-ID and the new time."""
    port, handler = smtp_server
    lists = write_lists(tmp_path)
    first_time = datetime(2026, 11, 16, 7, 0, 0, tzinfo=UTC)
    later = datetime(2026, 11, 16, 9, 45, 30, tzinfo=UTC)
    _clocked_email(monkeypatch, lambda: first_time)
    run_deliver(config(port), lists, environ=ENV)
    first = {i["rcpt_tos"][0]: i["message"] for i in handler.received}

    # As a kill after the server stored dave's note but before its `sent` record leaves it.
    journal = deliveries_dir_for(lists) / JOURNAL_FILE
    journal.write_text("".join(journal.read_text().splitlines(keepends=True)[:5]))
    (deliveries_dir_for(lists) / "delivery.json").unlink()
    handler.received.clear()
    _clocked_email(monkeypatch, lambda: later)
    result = run_deliver(config(port), lists, environ=ENV)
    (resent,) = handler.received
    assert resent["rcpt_tos"] == ["dave@example.com"]
    assert resent["message"]["Message-ID"] == first["dave@example.com"]["Message-ID"]
    assert resent["message"]["Date"].datetime == later
    assert first["dave@example.com"]["Date"].datetime == first_time
    dave = next(o for o in result.outcomes if o.csm_id == "dave")
    assert "same Message-ID" in dave.detail

    # --resend at yet another time: every id the same as the first send's.
    handler.received.clear()
    _clocked_email(monkeypatch, lambda: later + timedelta(days=1))
    run_deliver(config(port), lists, environ=ENV, resend=True)
    again = {i["rcpt_tos"][0]: i["message"] for i in handler.received}
    assert {r: m["Message-ID"] for r, m in again.items()} == {
        r: m["Message-ID"] for r, m in first.items()
    }
    assert {m["Date"].datetime for m in again.values()} == {later + timedelta(days=1)}


def test_the_send_date_is_stamped_on_a_copy_and_must_be_aware(tmp_path):
    lists = write_lists(tmp_path)
    built = EmailChannel.from_config(config(25).deliver).build(
        read_manifest(lists).csms[0], lists, read_manifest(lists)
    )
    moment = datetime(2026, 11, 16, 8, 0, tzinfo=timezone(timedelta(hours=2)))
    stamped = stamped_with_send_time(built.payload, moment)
    assert stamped["Date"] == "Mon, 16 Nov 2026 06:00:00 +0000"  # converted to UTC
    assert built.payload["Date"] == "Mon, 16 Nov 2026 00:00:00 +0000"  # the preview, unchanged
    assert stamped["Message-ID"] == built.payload["Message-ID"]
    with pytest.raises(ValueError, match="naive"):
        rfc5322_date(datetime(2026, 11, 16, 8, 0))


# --- dry run ---------------------------------------------------------------------------------


def test_dry_run_writes_byte_identical_eml_files_on_rerun(tmp_path):
    lists = write_lists(tmp_path)
    outbox = tmp_path / "outbox"
    closed_port = free_port()  # nothing listens: a dry run must not connect
    result = run_deliver(config(closed_port), lists, dry_run=True, outbox=outbox, environ={})
    files = sorted(outbox.glob("*.eml"))
    assert [f.name for f in files] == ["alice.eml", "bob.eml", "dave.eml"]
    first = {f.name: f.read_bytes() for f in files}
    first_log = (deliveries_dir_for(lists) / "delivery.json").read_bytes()
    assert {o.status for o in result.outcomes} == {"dry-run", "skipped"}

    # A rerun at another time writes the same bytes: a dry run's Date is the as-of preview.
    time_moves = iter(datetime(2026, 12, d, 12, tzinfo=UTC) for d in range(1, 30))
    channel = EmailChannel.from_config(config(closed_port).deliver, clock=lambda: next(time_moves))
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(CHANNELS, "email", lambda cfg: channel)
        run_deliver(config(closed_port), lists, dry_run=True, outbox=outbox, environ={})
    assert {f.name: f.read_bytes() for f in sorted(outbox.glob("*.eml"))} == first
    assert (deliveries_dir_for(lists) / "delivery.json").read_bytes() == first_log

    message = email.message_from_bytes(first["bob.eml"], policy=policy.default)
    assert csv_account_ids(message) == CSMS["bob"][2]
    assert message["Date"] == "Mon, 16 Nov 2026 00:00:00 +0000"
    assert message["Message-ID"].startswith(f"<churn-list.{AS_OF}.bob.")
    assert b"\r\n" in first["bob.eml"]

    # Different content, different Message-ID (mail clients drop repeated ids).
    (lists / "csm" / "bob.html").write_text("<p>B-1 B-2 changed</p>")
    run_deliver(config(closed_port), lists, dry_run=True, outbox=outbox, environ={})
    changed = email.message_from_bytes((outbox / "bob.eml").read_bytes(), policy=policy.default)
    assert changed["Message-ID"] != message["Message-ID"]


def test_empty_list_can_be_skipped(tmp_path):
    lists = write_lists(tmp_path)
    result = run_deliver(
        config(free_port(), empty_list="skip"), lists, dry_run=True, outbox=tmp_path / "o"
    )
    dave = next(o for o in result.outcomes if o.csm_id == "dave")
    assert (dave.status, dave.detail) == ("skipped", "empty list")
    assert not (tmp_path / "o" / "dave.eml").exists()


def test_manifest_fields_the_email_does_not_show_leave_its_bytes_alone(tmp_path):
    """The Message-ID is what stops a resend: a figure the email does not carry must not move
    it, or a rescore that only changes n_owned would mail every CSM again."""
    outboxes = []
    for n_owned in (10, 99):
        lists = write_lists(tmp_path / str(n_owned), edit=_set("bob", n_owned=n_owned))
        outbox = tmp_path / f"outbox-{n_owned}"
        run_deliver(config(free_port()), lists, dry_run=True, outbox=outbox)
        outboxes.append({f.name: f.read_bytes() for f in sorted(outbox.glob("*.eml"))})
    assert outboxes[0] == outboxes[1] and len(outboxes[0]) == 3


# --- the channel interface: the run loop and the log know no email ---------------------------


MEMORY_LOG = "delivery.memory.json"  # each channel but email keeps its own summary log


class MemoryChannel:
    """A stand-in second channel: messages to a list in memory, a CSM's id as the destination."""

    name = "memory"
    missing_recipient = "no memory address"

    def __init__(self, refuse=(), on_send=None):
        self.refuse = set(refuse)
        self.sent: list[Message] = []
        self.on_send = on_send  # called with each message just before it counts as sent

    def recipient(self, entry):
        return None if entry.csm_id == "carol" else f"#{entry.csm_id}"

    def build(self, entry, lists_dir, manifest):
        if entry.csm_id in self.refuse:
            raise DeliveryError(f"CSM {entry.csm_id!r}: refused by the test")
        payload = f"{entry.csm_id}:{entry.n_accounts}"
        return Message(entry.csm_id, f"#{entry.csm_id}", f"id-{payload}", payload)

    def open_transport(self, *, dry_run, outbox, environ):
        channel = self

        class Transport:
            status, mode = ("dry-run", "dry-run") if dry_run else ("sent", "memory")

            def send(self, message):
                if channel.on_send is not None:
                    channel.on_send(message)
                channel.sent.append(message)
                return f"memory:{message.recipient}"

            def close(self):
                pass

        return Transport()


def test_a_second_channel_needs_only_its_module_and_a_registration(tmp_path, monkeypatch):
    channel = MemoryChannel(refuse={"bob"})
    monkeypatch.setitem(CHANNELS, "memory", lambda deliver: channel)
    lists = write_lists(tmp_path)
    first = run_deliver(config(free_port()), lists, channel="memory", environ={})

    status = {o.csm_id: (o.status, o.detail, o.recipient) for o in first.outcomes}
    assert status == {
        "alice": ("sent", "", "#alice"),
        "bob": ("failed", "CSM 'bob': refused by the test", "#bob"),
        "carol": ("skipped", "no memory address", None),
        "dave": ("sent", "", "#dave"),
    }
    assert [m.payload for m in channel.sent] == ["alice:3", "dave:0"]
    logged = json.loads((deliveries_dir_for(lists) / MEMORY_LOG).read_text())
    assert logged["mode"] == "memory" and logged["counts"]["skipped_no_email"] == 1

    # The "already sent" check works on the channel's own message ids.
    channel.refuse.clear()
    channel.sent.clear()
    second = run_deliver(config(free_port()), lists, channel="memory", environ={})
    assert [m.csm_id for m in channel.sent] == ["bob"] and second.counts["sent"] == 3

    with pytest.raises(ConfigError, match="unknown delivery channel 'pigeon'"):
        run_deliver(config(free_port()), lists, channel="pigeon")


# --- exactly once under faults: the journal and the lock (killed runs: tests/e2e) -------------


def _journal(lists: Path) -> Path:
    return deliveries_dir_for(lists) / JOURNAL_FILE


def _records(lists: Path) -> list[dict]:
    return [json.loads(line) for line in _journal(lists).read_text().splitlines()]


def _memory_run(monkeypatch, lists, channel, **kwargs):
    monkeypatch.setitem(CHANNELS, "memory", lambda deliver: channel)
    return run_deliver(config(free_port()), lists, channel="memory", environ={}, **kwargs)


def test_each_send_is_journalled_durably_before_and_after_it(tmp_path, monkeypatch):
    lists = write_lists(tmp_path)
    seen_at_send = []

    def check_journal(message):
        # While the channel sends, the journal on disk already says "sending" for this message.
        last = _records(lists)[-1]
        seen_at_send.append((last["event"], last["message_id"] == message.message_id))

    channel = MemoryChannel(on_send=check_journal)
    _memory_run(monkeypatch, lists, channel)
    assert seen_at_send == [("sending", True)] * 3
    assert [(r["csm_id"], r["event"]) for r in _records(lists)] == [
        ("alice", "sending"),
        ("alice", "sent"),
        ("bob", "sending"),
        ("bob", "sent"),
        ("dave", "sending"),
        ("dave", "sent"),
    ]
    assert all(r["as_of"] == AS_OF and r["attempt"] == 1 for r in _records(lists)[::2])


def test_a_send_cut_off_mid_way_is_sent_again_with_the_same_message_id(tmp_path, monkeypatch):
    lists = write_lists(tmp_path)
    channel = MemoryChannel()
    _memory_run(monkeypatch, lists, channel)
    first_ids = {m.csm_id: m.message_id for m in channel.sent}
    # As a SIGKILL between the server's "250" and the `sent` record leaves it: dave's send is
    # recorded as started only, and the run never wrote its summary.
    lines = _journal(lists).read_text().splitlines(keepends=True)
    _journal(lists).write_text("".join(lines[:5]))
    (deliveries_dir_for(lists) / MEMORY_LOG).unlink()

    channel.sent.clear()
    second = _memory_run(monkeypatch, lists, channel)
    assert [(m.csm_id, m.message_id) for m in channel.sent] == [("dave", first_ids["dave"])]
    status = {o.csm_id: o for o in second.outcomes}
    assert status["dave"].status == "sent" and "same Message-ID" in status["dave"].detail
    assert status["alice"].detail.startswith("already sent")
    assert [r["attempt"] for r in _records(lists) if r["event"] == "sending"] == [1, 1, 1, 2]


def test_a_torn_last_record_is_dropped_and_a_corrupt_journal_stops_the_run(tmp_path, monkeypatch):
    lists = write_lists(tmp_path)
    channel = MemoryChannel()
    _memory_run(monkeypatch, lists, channel)
    intact = _journal(lists).read_bytes()
    # A power cut mid-append leaves half a line; the next run cuts it off and goes on.
    _journal(lists).write_bytes(intact + b'{"as_of": "2026-11-16", "csm_id": "bo')
    channel.sent.clear()
    _memory_run(monkeypatch, lists, channel)
    assert channel.sent == [] and _journal(lists).read_bytes() == intact

    # A bad line that is not the torn tail is not guessed around: nothing is sent.
    _journal(lists).write_bytes(b"not json\n" + intact)
    with pytest.raises(DeliveryError, match=r"journal .* line 1, is unreadable"):
        _memory_run(monkeypatch, lists, channel)
    assert channel.sent == []


def test_a_journal_that_cannot_be_written_stops_the_run_before_the_next_send(tmp_path, monkeypatch):
    lists = write_lists(tmp_path)
    channel = MemoryChannel()
    real = DeliveryJournal.record_sending

    def disk_full_at_dave(journal, message):
        if message.csm_id == "dave":
            raise DeliveryError("could not record 'sending' (no space left on device)")
        return real(journal, message)

    monkeypatch.setattr(DeliveryJournal, "record_sending", disk_full_at_dave)
    with pytest.raises(DeliveryError, match="no space left"):
        _memory_run(monkeypatch, lists, channel)
    assert [m.csm_id for m in channel.sent] == ["alice", "bob"]  # not dave, unrecorded
    logged = json.loads((deliveries_dir_for(lists) / MEMORY_LOG).read_text())
    sent = [row["csm_id"] for row in logged["csms"] if row["status"] == "sent"]
    assert sent == ["alice", "bob"]


def test_sigterm_stops_after_the_message_in_hand(tmp_path, monkeypatch):
    lists = write_lists(
        tmp_path, {f"csm{n}": (f"C {n}", f"c{n}@example.com", []) for n in range(4)}
    )
    before = signal.getsignal(signal.SIGTERM)

    def terminate_during_the_second(message):
        if message.csm_id == "csm1":
            # Without the run's handler this SIGTERM would end pytest itself.
            assert signal.getsignal(signal.SIGTERM) is not before, "no SIGTERM handler"
            os.kill(os.getpid(), signal.SIGTERM)  # handled: the run keeps this message

    channel = MemoryChannel(on_send=terminate_during_the_second)
    result = _memory_run(monkeypatch, lists, channel)
    assert [m.csm_id for m in channel.sent] == ["csm0", "csm1"]
    status = {o.csm_id: (o.status, o.detail) for o in result.outcomes}
    assert status["csm1"] == ("sent", "")
    assert status["csm2"][0] == "failed" and "stopped by SIGTERM" in status["csm2"][1]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the run's only

    channel.on_send = None
    channel.sent.clear()
    _memory_run(monkeypatch, lists, channel)
    assert [m.csm_id for m in channel.sent] == ["csm2", "csm3"]


def test_a_second_run_of_the_week_is_refused_while_the_first_holds_the_lock(tmp_path, monkeypatch):
    lists = write_lists(tmp_path)
    channel = MemoryChannel()
    with run_lock(deliveries_dir_for(lists) / LOCK_FILE):
        with pytest.raises(DeliveryError, match=rf"another delivery run \(process {os.getpid()}"):
            _memory_run(monkeypatch, lists, channel)
        with pytest.raises(DeliveryError, match="another delivery run"):
            run_deliver(config(free_port()), lists, dry_run=True, outbox=tmp_path / "o")
    assert channel.sent == [] and not (tmp_path / "o").exists()
    _memory_run(monkeypatch, lists, channel)  # released, also after the failed attempts
    assert len(channel.sent) == 3


def test_a_dry_run_writes_nothing_to_the_journal_and_a_summary_log_still_counts(
    tmp_path, monkeypatch
):
    lists = write_lists(tmp_path)
    run_deliver(config(free_port()), lists, dry_run=True, outbox=tmp_path / "o")
    assert not _journal(lists).exists()

    # A week delivered before the journal existed: its summary log records who has their list.
    channel = MemoryChannel()
    _memory_run(monkeypatch, lists, channel)
    _journal(lists).unlink()
    channel.sent.clear()
    _memory_run(monkeypatch, lists, channel)
    assert channel.sent == []


# --- never another CSM's data; no header injection -------------------------------------------


def _set(target: str, **changes):
    def edit(entries):
        next(e for e in entries if e["csm_id"] == target).update(changes)

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("alice", csm_name="Alice\r\nBcc: everyone@example.com"), "line break"),
        (_set("alice", csm_email="alice@example.com\nBcc: everyone@example.com"), "line break"),
        (_set("alice", csm_email="alice@example.com, eve@example.com"), "not an email"),
        (_set("alice", csm_email="alice@"), "not an email"),
        (_set("alice", csv="../../secret.csv"), "must be relative"),
        (_set("alice", html="/etc/hostname"), "must be relative"),
        (_set("alice", csv="csm/missing.csv"), "not found"),
        (_set("alice", n_accounts=2), "manifest says 2 accounts"),
    ],
)
def test_a_bad_entry_fails_only_that_csm(tmp_path, edit, message):
    lists = write_lists(tmp_path, edit=edit)
    outbox = tmp_path / "outbox"
    result = run_deliver(config(free_port()), lists, dry_run=True, outbox=outbox)
    status = {o.csm_id: o for o in result.outcomes}
    assert status["alice"].status == "failed"
    assert message in status["alice"].detail and "'alice'" in status["alice"].detail
    assert status["bob"].status == "dry-run" and status["dave"].status == "dry-run"
    assert sorted(f.name for f in outbox.glob("*.eml")) == ["bob.eml", "dave.eml"]


def test_a_symlink_out_of_the_lists_directory_is_refused(tmp_path):
    lists = write_lists(tmp_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("account_id\nX-1\n")
    (lists / "csm" / "alice.csv").unlink()
    (lists / "csm" / "alice.csv").symlink_to(secret)
    result = run_deliver(config(free_port()), lists, dry_run=True, outbox=tmp_path / "o")
    alice = next(o for o in result.outcomes if o.csm_id == "alice")
    assert alice.status == "failed" and "leads outside" in alice.detail


def test_a_csv_holding_another_csms_accounts_is_refused(tmp_path):
    lists = write_lists(tmp_path)
    path = lists / "csm" / "alice.csv"
    path.write_text(path.read_text() + "4,B-1,Bob's account,bob,0.9\n")
    lists_json = json.loads((lists / "manifest.json").read_text())
    lists_json["csms"][0]["n_accounts"] = 4
    (lists / "manifest.json").write_text(json.dumps(lists_json))
    result = run_deliver(config(free_port()), lists, dry_run=True, outbox=tmp_path / "o")
    alice = next(o for o in result.outcomes if o.csm_id == "alice")
    assert alice.status == "failed" and "rows of other CSMs ['bob']" in alice.detail


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("bob", csv="csm/alice.csv"), "same file"),
        (_set("bob", csm_id="alice"), "twice"),
        (_set("bob", n_accounts="2"), "n_accounts"),
    ],
)
def test_manifest_problems_stop_the_run_before_anything_is_sent(tmp_path, edit, message):
    lists = write_lists(tmp_path, edit=edit)
    with pytest.raises(DeliveryError, match=message):
        run_deliver(config(free_port()), lists, dry_run=True, outbox=tmp_path / "o")
    assert (
        not (tmp_path / "o").exists() and not (deliveries_dir_for(lists) / "delivery.json").exists()
    )


def test_manifest_date_must_match_its_directory(tmp_path):
    lists = write_lists(tmp_path)
    moved = lists.rename(lists.parent / "2026-11-09")
    with pytest.raises(DeliveryError, match="2026-11-09"):
        run_deliver(config(free_port()), moved, dry_run=True)


def test_attachment_names_are_safe_and_distinct():
    assert safe_token("alice") == "alice"
    hostile = attachment_filename(date(2026, 11, 16), "../x y\r\n")
    assert "/" not in hostile and "\n" not in hostile and ".." not in hostile
    assert hostile.startswith("churn-list-2026-11-16-x-y-") and hostile.endswith(".csv")
    assert safe_token("a b") != safe_token("a-b")


# --- settings --------------------------------------------------------------------------------


def _deliver_section(**changes):
    """config.deliver of `params` with some keys changed (None removes nothing: it is null)."""
    raw = params(25)
    return parse_config({**raw, "deliver": {**raw["deliver"], **changes}}).deliver


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # caught by the typed config, naming the key
        ({"hostname": "x"}, "deliver.hostname: unknown key"),
        ({"security": "tls"}, "deliver.security"),
        ({"port": "smtp"}, "deliver.port"),
        ({"port": 70000}, "deliver.port"),
        ({"timeout_seconds": 0}, "deliver.timeout_seconds"),
        ({"empty_list": "maybe"}, "deliver.empty_list"),
        # caught by the delivery settings, before anything is sent
        ({"from_address": "lists@example.com\r\nBcc: x@example.com"}, "line break"),
        ({"from_address": None}, "from_address is required"),
        ({"from_address": ""}, "from_address is required"),
        ({"reply_to": "ops@example.com, eve@example.com"}, "deliver.reply_to .* not an email"),
        ({"from_name": "Churn\nBcc: x@example.com"}, "deliver.from_name"),
        ({"host": None}, "deliver.host is required"),
    ],
)
def test_bad_settings_are_clear_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        delivery_settings(_deliver_section(**change))


@pytest.mark.parametrize(("security", "port"), [("ssl", 465), ("starttls", 587), ("none", 587)])
def test_the_port_defaults_to_the_security_modes_port(security, port):
    _, smtp = delivery_settings(_deliver_section(security=security, port=None))
    assert (smtp.host, smtp.port, smtp.security) == ("127.0.0.1", port, security)


def test_no_login_in_clear_text_to_a_remote_host():
    smtp = SmtpSettings("mail.example.com", 25, "none", 5, "TEST_SMTP_USER", "TEST_SMTP_PASSWORD")
    with pytest.raises(ConfigError, match="unencrypted"):
        smtp_credentials(smtp, ENV)
    no_login = SmtpSettings("mail.example.com", 25, "none", 5, None, None)
    assert smtp_credentials(no_login, {}) is None


# --- CLI -------------------------------------------------------------------------------------

runner = CliRunner()


def _params_file(tmp_path, **deliver) -> str:
    import yaml

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params(free_port(), **deliver)))
    return str(path)


def test_cli_dry_run_and_exit_codes(tmp_path, monkeypatch):
    lists = write_lists(tmp_path)
    outbox = tmp_path / "outbox"
    args = ["deliver", "--params", _params_file(tmp_path), "--lists", str(lists)]
    ok = runner.invoke(app, [*args, "--dry-run", "--outbox", str(outbox)])
    assert ok.exit_code == 0, ok.output
    assert len(list(outbox.glob("*.eml"))) == 3
    assert (
        json.loads((deliveries_dir_for(lists) / "delivery.json").read_text())["counts"]["dry-run"]
        == 3
    )

    # Default --lists: reports/lists/<base.as_of_date> under the working directory.
    monkeypatch.chdir(tmp_path)
    write_lists(tmp_path / "reports")
    default = runner.invoke(app, ["deliver", "--params", _params_file(tmp_path), "--dry-run"])
    assert default.exit_code == 0, default.output
    assert len(list((tmp_path / "reports/deliveries" / AS_OF / "outbox").glob("*.eml"))) == 3

    bad = write_lists(tmp_path / "bad", edit=_set("bob", csm_name="Bob\nBcc: x@example.com"))
    failed = runner.invoke(
        app, ["deliver", "--params", _params_file(tmp_path), "--lists", str(bad), "--dry-run"]
    )
    assert failed.exit_code == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lists", "{tmp}/nowhere"], "manifest.json not found"),
        (["--lists", "{lists}", "--outbox", "{tmp}/o"], "only with --dry-run"),
        (["--lists", "{lists}", "--params", "{tmp}/missing.yaml"], "not found"),
        (["--lists", "{lists}", "--params", "{tmp}/nodeliver.yaml"], "from_address is required"),
        (["--lists", "{lists}"], "TEST_SMTP_USER"),
    ],
)
def test_cli_errors_exit_2_with_a_clear_message(tmp_path, monkeypatch, extra, message):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    lists = write_lists(tmp_path)
    (tmp_path / "nodeliver.yaml").write_text(f"base: {{as_of_date: '{AS_OF}'}}\n")
    extra = [part.format(tmp=tmp_path, lists=lists) for part in extra]
    result = runner.invoke(app, ["deliver", "--params", _params_file(tmp_path), *extra])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_cli_deliver_help_documents_every_option():
    result = runner.invoke(app, ["deliver", "--help"])
    assert result.exit_code == 0
    for option in ("--params", "--lists", "--dry-run", "--outbox", "--log", "--resend"):
        assert option in result.output


# --- the weekly job (scoring replaced by a stand-in that rewrites the lists directory) -------


def test_weekly_scores_then_delivers_and_a_rerun_sends_nothing_twice(
    tmp_path, monkeypatch, smtp_server
):
    import pipeline.stages.score
    from pipeline.core.atomic import atomic_path

    port, handler = smtp_server
    monkeypatch.chdir(tmp_path)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    calls = []

    real_signature = inspect.signature(pipeline.stages.score.run_score)

    def fake_run_score(config, **kwargs):
        real_signature.bind(config, **kwargs)  # weekly calls the real function's arguments
        # scoring sees the week's date and the extract ingested just before it
        assert config.base.as_of_date == date.fromisoformat(AS_OF)
        report = json.loads((kwargs["interim_dir"] / "validation_report.json").read_text())
        assert report["as_of"].startswith(AS_OF) and report["rows_accepted"] > 0
        # the weekly job keeps its usage grain between weeks (a git-ignored cache)
        assert kwargs["feature_state"] == Path("data/state/usage_grain")
        calls.append(kwargs["out_dir"])
        with atomic_path(kwargs["out_dir"]) as tmp:  # like the score stage: dir replaced
            fill_lists(tmp)
        return read_manifest(kwargs["out_dir"])

    monkeypatch.setattr(pipeline.stages.score, "run_score", fake_run_score)
    write_dir(tiny_raw_tables(), tmp_path / "raw")
    weekly_params = params(port)
    weekly_params["base"]["as_of_date"] = "2025-01-01"  # overridden by --as-of
    weekly_params["ingest"] = {"source": str(tmp_path / "raw")}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(json.dumps(weekly_params))  # JSON is YAML
    command = ["weekly", "--params", str(params_file), "--as-of", AS_OF]
    first = runner.invoke(app, command)
    assert first.exit_code == 0, first.output
    assert calls == [Path("reports/lists") / AS_OF]
    assert sorted(by_recipient(handler)) == [
        "alice@example.com",
        "bob@example.com",
        "dave@example.com",
    ]

    second = runner.invoke(app, command)
    assert second.exit_code == 0, second.output
    assert len(calls) == 2 and len(handler.received) == 3  # rescored, nobody mailed twice
    logged = json.loads((tmp_path / "reports/deliveries" / AS_OF / "delivery.json").read_text())
    assert logged["counts"]["sent"] == 3


def test_weekly_stops_before_delivery_when_scoring_fails(tmp_path, monkeypatch):
    import pipeline.stages.score

    def failing_run_score(config, **kwargs):
        raise pipeline.stages.score.ScoringError(
            "model features differ: missing 'sla_breaches_90d'"
        )

    monkeypatch.setattr(pipeline.stages.score, "run_score", failing_run_score)
    result = runner.invoke(app, ["weekly", "--params", _params_file(tmp_path), "--no-ingest"])
    assert result.exit_code == 2
    assert "sla_breaches_90d" in result.output and "Traceback" not in result.output


# --- the webhook channel's pure parts (against a real HTTP server: tests/e2e/test_webhook.py) -


def test_slack_escaping_covers_exactly_slacks_three_characters():
    assert escape_mrkdwn("<!channel> A&B <https://x.example|y> <@U1>") == (
        "&lt;!channel&gt; A&amp;B &lt;https://x.example|y&gt; &lt;@U1&gt;"
    )
    assert escape_mrkdwn("&lt;") == "&amp;lt;"  # & first: an entity in the data stays text
    assert escape_mrkdwn('O\'Brien "Co" *bold*') == 'O\'Brien "Co" *bold*'
    assert clip("a\nb   c", 10) == "a b c"
    assert clip("x" * 20, 10) == "x" * 9 + "…"


@pytest.mark.parametrize("value", [0.0, 12.5, 11_819.4, -3_100.0, 999_949.0, 999_950.0, 1.23e7])
def test_webhook_amounts_read_as_on_the_leadership_page(value):
    from pipeline.stages.report.words import format_money as report_money

    for currency in ("$", "€", "CHF "):
        assert webhook_money(value, currency) == report_money(value, currency)


def test_retry_after_is_seconds_or_an_http_date():
    now = datetime(2026, 11, 16, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(" 2.5 ", now) == 2.5
    assert retry_after_seconds("Mon, 16 Nov 2026 08:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Mon, 16 Nov 2026 07:00:00 GMT", now) == 0.0  # already past
    for unusable in (None, "", "soon", "-1", "nan", "inf"):
        assert retry_after_seconds(unusable, now) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "TEST_HOOK is not set"),
        ("", "TEST_HOOK is not set"),
        ("http://hooks.example.com/services/s3cr3tpath", "plain http to a remote host"),
        ("ftp://hooks.example.com/services/s3cr3tpath", "not an http"),
        ("https:///services/s3cr3tpath", "not an http"),
        ("https://hooks.example.com/s3cr3tpath two", "space or a control character"),
        ("https://hooks.example.com/s3cr3tpath\r\nX: y", "space or a control character"),
        ("https://hooks.example.com:port/s3cr3tpath", "not a valid URL"),
    ],
)
def test_a_bad_webhook_url_is_refused_without_showing_it(url, message):
    environ = {} if url is None else {"TEST_HOOK": url}
    with pytest.raises(ConfigError, match=message) as refused:
        webhook_url("TEST_HOOK", environ)
    assert "s3cr3t" not in str(refused.value)


def test_a_good_webhook_url_passes():
    for url in ("https://hooks.slack.com/services/T0/B0/x", "http://127.0.0.1:8080/h?token=t"):
        assert webhook_url("TEST_HOOK", {"TEST_HOOK": url}) == url
    # What the transport hides: the URL, and its path (Slack's secret) wherever it shows.
    url = "https://hooks.example.com/services/T1/B2/pathtok3n"
    text = f"failed: {url}; server said: no hook at /services/T1/B2/pathtok3n"
    assert "pathtok3n" not in redact(text, secrets=url_secrets(url))


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        ({"urlenv": "X"}, "deliver.webhook.urlenv: unknown key"),
        ({"top_accounts": 0}, "deliver.webhook.top_accounts"),
        ({"top_accounts": 46}, "deliver.webhook.top_accounts"),
        ({"max_attempts": 0}, "deliver.webhook.max_attempts"),
        ({"timeout_seconds": 0}, "deliver.webhook.timeout_seconds"),
        ({"url_env": "MY-HOOK"}, "not an environment variable name"),
    ],
)
def test_bad_webhook_settings_are_clear_errors(tmp_path, webhook, message):
    lists = write_lists(tmp_path)
    with pytest.raises(ConfigError, match=message):
        run_deliver(config(25, webhook=webhook), lists, channel="webhook", dry_run=True)


def test_the_webhook_needs_no_email_settings(tmp_path):
    lists = write_lists(tmp_path)
    no_email = parse_config({"base": {"as_of_date": AS_OF}})
    result = run_deliver(no_email, lists, channel="webhook", dry_run=True, outbox=tmp_path / "o")
    assert result.counts["dry-run"] == 4  # carol too: the webhook needs no email address
    assert result.log_path.name == "delivery.webhook.json"


def test_cli_deliver_webhook_dry_run(tmp_path):
    lists = write_lists(tmp_path)
    outbox = tmp_path / "outbox"
    args = ["deliver", "--params", _params_file(tmp_path), "--lists", str(lists)]
    ok = runner.invoke(app, [*args, "--channel", "webhook", "--dry-run", "--outbox", str(outbox)])
    assert ok.exit_code == 0, ok.output
    payloads = {f.name: json.loads(f.read_text()) for f in sorted(outbox.glob("*.json"))}
    assert sorted(payloads) == ["alice.json", "bob.json", "carol.json", "dave.json"]
    assert "Alice Adams" in payloads["alice.json"]["text"]
    unknown = runner.invoke(app, [*args, "--channel", "pigeon", "--dry-run"])
    assert unknown.exit_code == 2 and "unknown delivery channel 'pigeon'" in unknown.output
    for command in ("deliver", "weekly"):
        assert "--channel" in runner.invoke(app, [command, "--help"]).output
