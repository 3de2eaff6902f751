"""The delivery run: every CSM of one week's manifest, one outcome each, whatever happens.

Problems with the settings, the credentials, the delivery journal or the manifest as a whole
stop the run before anything is sent. Problems confined to one CSM (their address, their files,
a refused recipient) are that CSM's failure: the run goes on, and the caller exits nonzero at
the end.

Exactly once under faults: one run at a time holds the week's lock, and every send is framed by
two fsynced journal records (`journal`), `sending` before it and `sent` (or `failed`) after it.
A rerun skips what the journal records as sent, sends what failed or never started, and sends a
message cut off mid-send again with its same Message-ID (see `journal` for why). SIGTERM stops
the run gracefully: the message being sent is finished and recorded, the rest are left for a
rerun, and the summary log is written; a second SIGTERM stops at once.

Nothing here knows which channel it drives: it sees `Channel`, `Transport` and `Message`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipeline.core.config import Config
from pipeline.core.errors import DeliveryError
from pipeline.core.layout import DELIVERY_LOG, MANIFEST_FILE, OUTBOX_DIR, deliveries_dir_for
from pipeline.lists.manifest import ListsManifest, ManifestError, read_manifest
from pipeline.stages.deliver.channel import Channel, Transport
from pipeline.stages.deliver.journal import (
    JOURNAL_FILE,
    LOCK_FILE,
    DeliveryJournal,
    JournalState,
    read_journal,
    run_lock,
)
from pipeline.stages.deliver.log import (
    CsmDelivery,
    delivery_counts,
    read_already_sent,
    write_delivery_log,
)
from pipeline.stages.deliver.registry import DEFAULT_CHANNEL, make_channel

log = logging.getLogger(__name__)

# Summary-log details of the two kinds of rerun decisions the journal makes.
ALREADY_SENT = "already sent by an earlier run; --resend sends it again"
RESENT_IN_FLIGHT = (
    "sent again with the same Message-ID: an earlier run was stopped while sending it, so the "
    "server may already have it (mail clients show a repeated Message-ID once)"
)


def _describe(err: Exception) -> str:
    return str(err) if isinstance(err, DeliveryError) else f"{type(err).__name__}: {err}"


def _not_stopped() -> str | None:
    return None


def iter_deliveries(
    lists_dir: Path,
    manifest: ListsManifest,
    channel: Channel,
    transport: Transport,
    *,
    history: JournalState | None = None,
    journal: DeliveryJournal | None = None,
    skip_empty: bool = False,
    stop_reason: Callable[[], str | None] = _not_stopped,
) -> Iterator[CsmDelivery]:
    """Deliver each CSM's list in turn, yielding one outcome per CSM whatever happens.

    A CSM's failure (bad entry, missing file, refused recipient) is recorded and the next CSM
    goes ahead. A message `history` records as sent is not resent; one it records in flight is
    resent (same id) with a note. With a `journal`, each send is recorded in it before and
    after; a journal that cannot be written stops the run (a DeliveryError), never a send.
    Once `stop_reason` returns a reason, no further message is sent: the CSMs left are failed
    as "not attempted", for a rerun.
    """
    if history is None:
        history = JournalState()
    for entry in manifest.csms:
        recipient = channel.recipient(entry)
        base = {
            "csm_id": entry.csm_id,
            "csm_name": entry.csm_name,
            "recipient": recipient,
            "n_accounts": entry.n_accounts,
        }
        if recipient is None:
            log.warning(
                "CSM %r has %s: list not delivered", entry.csm_id, channel.missing_recipient
            )
            yield CsmDelivery(**base, status="skipped", detail=channel.missing_recipient)
            continue
        if entry.n_accounts == 0 and skip_empty:
            log.info("CSM %r has no accounts on the list: skipped", entry.csm_id)
            yield CsmDelivery(**base, status="skipped", detail="empty list")
            continue
        try:
            message = channel.build(entry, lists_dir, manifest)
        except (DeliveryError, OSError, ValueError) as err:
            detail = _describe(err)
            log.error("CSM %r: delivery failed: %s", entry.csm_id, detail)
            yield CsmDelivery(**base, status="failed", detail=detail)
            continue
        message_id = message.message_id
        if message_id in history.sent:
            log.info("CSM %r: this list was already sent (%s)", entry.csm_id, message_id)
            yield CsmDelivery(**base, status="sent", detail=ALREADY_SENT, message_id=message_id)
            continue
        stopped = stop_reason()
        if stopped is not None:
            detail = f"not attempted: {stopped}; a rerun sends it"
            yield CsmDelivery(**base, status="failed", detail=detail, message_id=message_id)
            continue
        note = ""
        if message_id in history.in_flight:
            note = RESENT_IN_FLIGHT
            log.warning("CSM %r: %s (%s)", entry.csm_id, note, message_id)
        if journal is not None:
            journal.record_sending(message)  # durable before the send starts
        try:
            location = transport.send(message)
        # smtplib's and other transports' network errors are OSErrors.
        except (DeliveryError, OSError, ValueError) as err:
            detail = _describe(err)
            if journal is not None:
                journal.record_failed(message, detail)
            log.error("CSM %r: delivery failed: %s", entry.csm_id, detail)
            yield CsmDelivery(**base, status="failed", detail=detail, message_id=message_id)
            continue
        if journal is not None:
            journal.record_sent(message, location)
        log.info(
            "CSM %r: %d accounts -> %s (%s)",
            entry.csm_id,
            entry.n_accounts,
            location,
            transport.status,
        )
        yield CsmDelivery(
            **base,
            status=transport.status,
            detail=note,
            message_id=message_id,
            location=location,
        )


class GracefulStop:
    """While entered (in the main thread), SIGTERM asks the run to stop after the current send.

    Killing a run in the middle of an SMTP transaction leaves a message whose fate is unknown
    (see `journal`); finishing the one in hand and stopping before the next avoids that, and
    lets the summary log be written. The CSMs not reached are failed as "not attempted" (so
    the command exits 1, as after any partial failure, and a rerun sends them). The handler
    then restores the default, so a second SIGTERM stops the process at once (the journal
    still covers it). Elsewhere (a worker thread, no SIGTERM on the platform) it does nothing.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._installed = False
        self._previous: object = signal.SIG_DFL

    def __enter__(self) -> GracefulStop:
        sigterm = getattr(signal, "SIGTERM", None)
        if sigterm is not None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(sigterm, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.reason = "the run was stopped by SIGTERM"
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log.warning(
            "SIGTERM: finishing the message being sent, then stopping; the lists not sent are "
            "left for a rerun (a second SIGTERM stops at once)"
        )

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            previous = self._previous if self._previous is not None else signal.SIG_DFL
            signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def read_lists_manifest(lists_dir: Path) -> ListsManifest:
    """The week's manifest; its directory name, when a date, must be its as-of date.

    A manifest copied into another week's directory would send last week's list as this
    week's, and the log of that week would record it as sent.
    """
    try:
        manifest = read_manifest(lists_dir)
    except ManifestError as err:
        raise DeliveryError(str(err)) from err
    try:
        dir_date = date.fromisoformat(Path(lists_dir).resolve().name)
    except ValueError:
        dir_date = None
    if dir_date is not None and dir_date != manifest.as_of:
        raise DeliveryError(
            f"{Path(lists_dir) / MANIFEST_FILE} is for as-of {manifest.as_of} but sits in the "
            f"directory of {dir_date}"
        )
    return manifest


def log_name(channel: str) -> str:
    """The summary log's file name for a channel: `delivery.json` (email), `delivery.<name>.json`.

    Each channel keeps its own summary, so a Slack run after the email run of the same week
    does not replace the email's record; the journal is shared (message ids differ by channel).
    """
    return DELIVERY_LOG if channel == DEFAULT_CHANNEL else f"delivery.{channel}.json"


@dataclass(frozen=True)
class DeliveryResult:
    """A finished run: the manifest, each CSM's outcome and where the log went."""

    manifest: ListsManifest
    outcomes: list[CsmDelivery]
    log_path: Path

    @property
    def counts(self) -> dict[str, int]:
        """CSMs per status (sent, dry-run, skipped, failed) and skipped_no_email."""
        return delivery_counts(self.outcomes)


def run_deliver(
    config: Config,
    lists_dir: Path,
    *,
    dry_run: bool = False,
    outbox: Path | None = None,
    log_path: Path | None = None,
    resend: bool = False,
    environ: Mapping[str, str] | None = None,
    channel: str = DEFAULT_CHANNEL,
) -> DeliveryResult:
    """The delivery edge: check settings, read the manifest, send (or write the outbox), log.

    `channel` names a channel of `registry.CHANNELS` (email, webhook). The journal, the lock,
    the summary log (`log_name`) and the outbox default to `reports/deliveries/<as-of>`
    beside the lists (not inside them: the lists directory is the score stage's output,
    replaced as a whole on a rescore, which would take the record that prevents double sends
    with it). The journal and the lock always live there, whatever `log_path` says, so that
    every run of a week sees the same record. A dry run reads the journal but writes nothing
    to it. Raises ConfigError or DeliveryError before anything is sent when the settings, the
    credentials, the journal, the lock (another run of the week is under way) or the manifest
    as a whole are unusable; per-CSM failures are in the result.
    """
    lists_dir = Path(lists_dir)
    environ = os.environ if environ is None else environ
    chosen = make_channel(channel, config)
    manifest = read_lists_manifest(lists_dir)
    deliveries_dir = deliveries_dir_for(lists_dir)
    log_path = Path(log_path) if log_path is not None else deliveries_dir / log_name(channel)
    journal_path = deliveries_dir / JOURNAL_FILE

    # The lock first: the journal is read and written by one run at a time.
    with run_lock(deliveries_dir / LOCK_FILE), GracefulStop() as stop:
        journal = (
            None if dry_run else DeliveryJournal(journal_path, as_of=manifest.as_of.isoformat())
        )
        try:
            history = JournalState()
            if not resend:
                # Summary logs written before there was a journal still count as a record.
                known = journal.state if journal is not None else read_journal(journal_path)
                history = known.including_sent(read_already_sent(log_path, manifest.as_of).values())
            transport = chosen.open_transport(
                dry_run=dry_run,
                outbox=Path(outbox) if outbox is not None else deliveries_dir / OUTBOX_DIR,
                environ=environ,
            )
            outcomes: list[CsmDelivery] = []
            try:
                for outcome in iter_deliveries(
                    lists_dir,
                    manifest,
                    chosen,
                    transport,
                    history=history,
                    journal=journal,
                    skip_empty=config.deliver.empty_list == "skip",
                    stop_reason=lambda: stop.reason,
                ):
                    outcomes.append(outcome)
            finally:
                transport.close()
                # Written even after an unexpected error; the journal is the record that counts.
                write_delivery_log(manifest, outcomes, mode=transport.mode, log_path=log_path)
        finally:
            if journal is not None:
                journal.close()
    return DeliveryResult(manifest, outcomes, log_path)
