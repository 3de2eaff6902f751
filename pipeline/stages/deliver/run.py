"""The delivery run: every CSM of one week's manifest, one outcome each, whatever happens.

Problems with the settings, the credentials, the delivery log or the manifest as a whole stop
the run before anything is sent. Problems confined to one CSM (their address, their files, a
refused recipient) are that CSM's failure: the run goes on, and the caller exits nonzero at the
end. A CSM whose message the previous log records as sent is not sent again, so a retry after
a partial failure reaches only the CSMs who missed out.

Nothing here knows which channel it drives: it sees `Channel`, `Transport` and `Message`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pipeline.core.config import Config
from pipeline.core.errors import DeliveryError
from pipeline.core.layout import DELIVERY_LOG, MANIFEST_FILE, OUTBOX_DIR, deliveries_dir_for
from pipeline.lists.manifest import ListsManifest, ManifestError, read_manifest
from pipeline.stages.deliver.channel import Channel, Transport
from pipeline.stages.deliver.log import (
    CsmDelivery,
    delivery_counts,
    read_already_sent,
    write_delivery_log,
)
from pipeline.stages.deliver.registry import DEFAULT_CHANNEL, make_channel

log = logging.getLogger(__name__)


def _describe(err: Exception) -> str:
    return str(err) if isinstance(err, DeliveryError) else f"{type(err).__name__}: {err}"


def iter_deliveries(
    lists_dir: Path,
    manifest: ListsManifest,
    channel: Channel,
    transport: Transport,
    *,
    previously_sent: Mapping[str, str] | None = None,
    skip_empty: bool = False,
) -> Iterator[CsmDelivery]:
    """Deliver each CSM's list in turn, yielding one outcome per CSM whatever happens.

    A CSM's failure (bad entry, missing file, refused recipient) is recorded and the next CSM
    goes ahead. A message whose id the previous log records as sent is not resent.
    """
    previously_sent = previously_sent or {}
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
        message_id = None
        try:
            message = channel.build(entry, lists_dir, manifest)
            message_id = message.message_id
            if previously_sent.get(entry.csm_id) == message_id:
                log.info("CSM %r: this list was already sent (%s)", entry.csm_id, message_id)
                yield CsmDelivery(
                    **base,
                    status="sent",
                    detail="already sent by an earlier run; --resend sends it again",
                    message_id=message_id,
                )
                continue
            location = transport.send(message)
        # smtplib's and other transports' network errors are OSErrors.
        except (DeliveryError, OSError, ValueError) as err:
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

    The log and the outbox default to `reports/deliveries/<as-of>` beside the lists (not
    inside them: the lists directory is the score stage's output, replaced as a whole on a
    rescore, which would take the log that prevents double sends with it). Raises ConfigError
    or DeliveryError before anything is sent when the settings, the credentials or the
    manifest as a whole are unusable; per-CSM failures are in the result.
    """
    lists_dir = Path(lists_dir)
    environ = os.environ if environ is None else environ
    chosen = make_channel(channel, config.deliver)
    manifest = read_lists_manifest(lists_dir)
    deliveries_dir = deliveries_dir_for(lists_dir)
    log_path = Path(log_path) if log_path is not None else deliveries_dir / DELIVERY_LOG
    previously_sent = {} if resend else read_already_sent(log_path, manifest.as_of)
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
            previously_sent=previously_sent,
            skip_empty=config.deliver.empty_list == "skip",
        ):
            outcomes.append(outcome)
    finally:
        transport.close()
        # Written even after an unexpected error: it records who already has their list.
        write_delivery_log(manifest, outcomes, mode=transport.mode, log_path=log_path)
    return DeliveryResult(manifest, outcomes, log_path)
