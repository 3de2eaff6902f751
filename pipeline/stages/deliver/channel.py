"""The delivery channel interface: what every way of delivering a CSM's list provides.

A channel turns one CSM's manifest entry into a `Message` and opens a `Transport` that sends
messages (or, in a dry run, writes them to the outbox). The run loop, the delivery log and the
CLI see only these types, never a channel's own payload, so a channel (`email`, `webhook`) is
one module implementing `Channel` and `Transport` plus a line in `registry.CHANNELS`.

What a channel must keep, because the run loop and the log rely on it:
- `build` uses only that CSM's entry and files (read through `list_files.read_csm_list`, which keeps
  paths inside the as-of directory and refuses another CSM's rows), and gives one recipient.
- `Message.message_id` is a function of the content: the same lists and settings give the same
  id, which is how a rerun knows a list already went out; changed content gives a new id.
- Problems with one CSM (a bad address, a refused recipient) raise `DeliveryError`, `OSError`
  or `ValueError`; the run loop records them as that CSM's failure and goes on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipeline.lists.manifest import CsmEntry, ListsManifest

_UNSAFE_TOKEN = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Message:
    """One CSM's list, built and ready to hand to its channel's transport.

    `payload` is whatever the channel's transport sends (an `EmailMessage` for email); nothing
    outside the channel looks inside it.
    """

    csm_id: str
    recipient: str
    message_id: str
    payload: object


class Transport(Protocol):
    """Where a channel's messages go: a real send, or the dry run's outbox."""

    # The CSM's status after a successful `send` ("sent", or "dry-run" for the outbox).
    status: str
    # The delivery log's `mode` for a run through this transport ("smtp", "dry-run").
    mode: str

    def send(self, message: Message) -> str:
        """Deliver one message to its one recipient; return where it went (for the log)."""
        ...

    def close(self) -> None:
        """Release connections; called once after the last CSM, also after an error."""
        ...


class Channel(Protocol):
    """One way of delivering lists, with its settings already checked."""

    name: str
    # The skip detail for a CSM `recipient` finds no destination for ("no email address").
    missing_recipient: str

    def recipient(self, entry: CsmEntry) -> str | None:
        """The CSM's destination on this channel as the manifest gives it; None skips the CSM."""
        ...

    def build(self, entry: CsmEntry, lists_dir: Path, manifest: ListsManifest) -> Message:
        """Read this CSM's files (only theirs) and build their message."""
        ...

    def open_transport(
        self, *, dry_run: bool, outbox: Path, environ: Mapping[str, str]
    ) -> Transport:
        """The transport for this run; credentials are read (and checked) here, not earlier."""
        ...


def safe_token(csm_id: str) -> str:
    """A file-name and message-id safe form of a CSM id; a hash suffix keeps it unique."""
    token = _UNSAFE_TOKEN.sub("-", csm_id).strip("-")
    if token != csm_id or not token:
        token = f"{token or 'csm'}-{hashlib.sha256(csm_id.encode()).hexdigest()[:8]}"
    return token


def content_digest(*parts: str | bytes) -> str:
    """SHA-256 over length-prefixed parts, so ("ab", "c") and ("a", "bc") differ.

    Channels derive message ids from it: equal content, equal id, across runs and machines.
    """
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big") + data)
    return hasher.hexdigest()
