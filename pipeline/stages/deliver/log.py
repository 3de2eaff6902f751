"""The delivery log, `reports/deliveries/<as-of>/delivery.json`: what happened to each CSM.

It is the summary a person (and the CLI) reads after a run, rewritten as a whole at the end of
each run (also after an unexpected error or a SIGTERM): per CSM sent, skipped, failed or
dry-run. The file has no wall-clock time in it, so the same outcome writes the same bytes.

What keeps a rerun from sending a list twice is the journal (`journal`), written before and
after each send: a run killed before it could write this summary still leaves a record. A
rerun rebuilds the summary from what the journal knows (a message it records as sent shows as
"sent", already sent by an earlier run). The summary's "sent" rows are still honoured, for the
logs written before there was a journal.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

from pipeline.core.atomic import write_json
from pipeline.core.errors import DeliveryError
from pipeline.lists.manifest import ListsManifest

STATUSES = ("sent", "skipped", "failed", "dry-run")


@dataclass(frozen=True)
class CsmDelivery:
    """What happened to one CSM's list (one row of the log)."""

    csm_id: str
    csm_name: str
    recipient: str | None
    n_accounts: int
    status: str
    detail: str = ""
    message_id: str | None = None
    location: str | None = None


def delivery_counts(outcomes: list[CsmDelivery]) -> dict[str, int]:
    """How many CSMs ended in each status, plus those skipped for want of an address.

    `skipped_no_email` keeps its name (the CLI and existing logs use it); it counts the CSMs
    the channel had no destination for.
    """
    counts = {status: sum(o.status == status for o in outcomes) for status in STATUSES}
    counts["skipped_no_email"] = sum(
        o.status == "skipped" and o.recipient is None for o in outcomes
    )
    return counts


def delivery_log(manifest: ListsManifest, outcomes: list[CsmDelivery], *, mode: str) -> dict:
    """The log's content: per CSM status, recipient and count; no wall-clock time."""
    return {
        "as_of": manifest.as_of.isoformat(),
        "mode": mode,
        "model_version": manifest.model_version,
        "data_version": manifest.data_version,
        "counts": delivery_counts(outcomes),
        "csms": [asdict(o) for o in outcomes],
    }


def already_sent(previous: object, as_of: date) -> dict[str, str]:
    """CSM id -> message id of the messages an earlier log records as sent for this as-of."""
    if not isinstance(previous, dict) or previous.get("as_of") != as_of.isoformat():
        return {}
    sent = {}
    for row in previous.get("csms") or []:
        if isinstance(row, dict) and row.get("status") == "sent" and row.get("message_id"):
            sent[str(row["csm_id"])] = str(row["message_id"])
    return sent


def read_already_sent(log_path: Path, as_of: date) -> dict[str, str]:
    """`already_sent` of the log at `log_path`; no file means nothing was sent yet.

    An unreadable log is an error, not an empty one: guessing "nothing sent" would mail every
    CSM a second time.
    """
    if not log_path.is_file():
        return {}
    try:
        return already_sent(json.loads(log_path.read_text()), as_of)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DeliveryError(
            f"delivery log {log_path} is unreadable ({err}): it is what prevents sending a "
            "list twice; move it away or pass --resend"
        ) from err


def write_delivery_log(
    manifest: ListsManifest, outcomes: list[CsmDelivery], *, mode: str, log_path: Path
) -> None:
    """Replace the log with this run's outcomes (atomically, sorted keys)."""
    write_json(delivery_log(manifest, outcomes, mode=mode), log_path)
