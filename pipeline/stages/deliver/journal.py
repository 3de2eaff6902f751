"""The delivery journal: every send recorded durably before and after it happens.

`reports/deliveries/<as-of>/journal.jsonl` is what makes delivery exactly once under faults.
Before a message is handed to its transport the run appends `sending <message id>` and fsyncs
it; once the server has accepted the message it appends `sent <message id>` (or `failed`, with
the reason) and fsyncs again. A rerun replays the journal before it sends anything:

- a message recorded `sent` is not sent again (unless `--resend`);
- a message recorded `failed` is sent again, as after any refused send;
- a message recorded `sending` with no outcome was in flight when its run died (SIGKILL, the
  OOM killer, a power cut). The server may or may not have it: the kill may have come before
  the connection, or after the server stored the message but before its "250 OK" arrived, or
  before the `sent` record was written. It is sent again, with the same Message-ID (ids are a
  function of the content, see `channel.Message`), and the log says so. A missing weekly list
  is worse than a repeated one, and mail systems that see a Message-ID twice (Gmail, most IMAP
  clients) show the message once; at worst the CSM sees the same list twice, never none.

Why an append-only JSONL file with fsync rather than SQLite: a run appends two short records per
CSM and a rerun reads them all, so nothing needs queries or indexes; one writer at a time is
guaranteed by the run lock (`run_lock`, held for the whole run, which also answers "two runs at
once"), and SQLite's own locking would not cover a run anyway (a transaction held open for the
run could not commit each record on its own). A line-per-record text file is what an on-call
person can read with `cat` or `jq` at 6 a.m., has no `-wal`/`-shm` companions to copy along,
and its one failure mode is easy to repair: a power cut can leave the last line torn. A torn
last record is dropped when the journal is next opened; that is safe, because a torn `sending`
was never followed by a send (the send waits for the fsync), and a torn `sent` leaves its
`sending` standing, so the message counts as in flight and is sent again with its Message-ID.

Records carry the wall-clock time (the journal is an audit trail); the summary log,
`delivery.json`, stays free of it, and is rebuilt from the journal's view on every run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.errors import DeliveryError
from pipeline.stages.deliver.channel import Message

log = logging.getLogger(__name__)

# Both live in the week's deliveries directory, beside delivery.json.
JOURNAL_FILE = "journal.jsonl"
LOCK_FILE = "delivery.lock"

EVENTS = ("sending", "sent", "failed")
_RECORD_KEYS = ("event", "csm_id", "message_id")


# --- replay: from records to what is known about each message (pure) ------------------------


@dataclass(frozen=True)
class JournalState:
    """What the journal knows: messages the server accepted, and those whose send was cut off.

    `in_flight` holds the ids whose last record is `sending`: their run died between the two
    records, so the server may or may not have them. `attempts` counts `sending` records per id.
    """

    sent: frozenset[str] = frozenset()
    in_flight: frozenset[str] = frozenset()
    attempts: Mapping[str, int] = field(default_factory=dict)

    def including_sent(self, message_ids: Iterable[str]) -> JournalState:
        """This state with more ids known as sent (from a summary log older than the journal)."""
        sent = self.sent | frozenset(message_ids)
        return JournalState(sent, self.in_flight - sent, self.attempts)


def replay(records: Iterable[Mapping[str, object]]) -> JournalState:
    """The state the records lead to, in order. Once sent, a message stays sent."""
    sent: set[str] = set()
    last: dict[str, str] = {}
    attempts: dict[str, int] = {}
    for record in records:
        message_id = str(record["message_id"])
        event = str(record["event"])
        last[message_id] = event
        if event == "sending":
            attempts[message_id] = attempts.get(message_id, 0) + 1
        elif event == "sent":
            sent.add(message_id)
    in_flight = {mid for mid, event in last.items() if event == "sending"} - sent
    return JournalState(frozenset(sent), frozenset(in_flight), attempts)


def parse_journal(data: bytes, path: Path) -> tuple[list[dict], int]:
    """The complete records of a journal's bytes, and how many bytes they span.

    A last line without its newline is a record torn by a crash and is left out (the caller
    decides whether to cut it off). Any other unreadable line is an error: the journal is what
    prevents sending a list twice, and guessing would mail a CSM again or not at all.
    """
    complete = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:complete].splitlines(), start=1):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise _unreadable(path, number, str(err)) from err
        if not isinstance(record, dict) or any(not record.get(k) for k in _RECORD_KEYS):
            raise _unreadable(path, number, f"a record needs {', '.join(_RECORD_KEYS)}")
        if record["event"] not in EVENTS:
            raise _unreadable(path, number, f"unknown event {record['event']!r}")
        records.append(record)
    return records, complete


def _unreadable(path: Path, line: int, why: str) -> DeliveryError:
    return DeliveryError(
        f"delivery journal {path}, line {line}, is unreadable ({why}): it is what prevents "
        "sending a list twice. Look at it; moving it away makes the next run send every list "
        "again"
    )


def read_journal(path: Path) -> JournalState:
    """The state of the journal at `path`, read only (a dry run); no file: nothing sent yet."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return JournalState()
    return replay(parse_journal(data, Path(path))[0])


# --- the journal a sending run appends to ----------------------------------------------------


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable too (POSIX; Windows has no directory fsync)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DeliveryJournal:
    """The journal of one week's deliveries, open for appending; hold `run_lock` while open.

    Every record is one JSON line, written with a single append and fsynced before the method
    returns, so a record the caller has seen written survives a kill or a power cut.
    """

    def __init__(self, path: Path, *, as_of: str) -> None:
        self.path = Path(path)
        self.as_of = as_of
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as err:
            raise DeliveryError(f"cannot open the delivery journal {self.path}: {err}") from err
        try:
            if created:
                _fsync_directory(self.path.parent)
            self.state = self._load()
        except BaseException:
            os.close(self._fd)
            raise

    def _load(self) -> JournalState:
        data = self.path.read_bytes()
        records, complete = parse_journal(data, self.path)
        if complete < len(data):
            # A crash tore the last record; appending after it would merge two records.
            log.warning(
                "delivery journal %s: dropping a torn last record (%d bytes) left by a crash",
                self.path,
                len(data) - complete,
            )
            os.ftruncate(self._fd, complete)
            os.fsync(self._fd)
        return replay(records)

    def _append(self, event: str, message: Message, **extra: object) -> None:
        record = {
            "as_of": self.as_of,
            "csm_id": message.csm_id,
            "event": event,
            "message_id": message.message_id,
            "pid": os.getpid(),
            "recipient": message.recipient,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **extra,
        }
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        try:
            written = os.write(self._fd, line)
            if written != len(line):  # a full disk mid-line: the next open drops the torn tail
                raise OSError(f"short write ({written} of {len(line)} bytes)")
            os.fsync(self._fd)
        except OSError as err:
            raise DeliveryError(
                f"could not record {event!r} for CSM {message.csm_id!r} in the delivery journal "
                f"{self.path}: {err}. Stopped, so that nothing is sent unrecorded; a rerun "
                "sends what is missing"
            ) from err

    def record_sending(self, message: Message) -> int:
        """Record that `message` is about to be sent; return which attempt this is (1 first)."""
        attempt = self.state.attempts.get(message.message_id, 0) + 1
        self._append("sending", message, attempt=attempt)
        return attempt

    def record_sent(self, message: Message, location: str) -> None:
        """Record that the server (or channel) accepted `message`."""
        self._append("sent", message, location=location)

    def record_failed(self, message: Message, detail: str) -> None:
        """Record that sending `message` raised; a rerun sends it again."""
        self._append("failed", message, detail=detail)

    def close(self) -> None:
        os.close(self._fd)


# --- one run at a time -----------------------------------------------------------------------


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on the open file without waiting; False when another holds it.

    The operating system drops the lock when its holder exits, however it exits (SIGKILL
    included), so a killed run never leaves a stale lock behind.
    """
    if os.name == "nt":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:  # EACCES or EDEADLOCK: another process holds it
            return False
        return True
    import fcntl

    try:
        # flock, not lockf: its locks belong to the open file, so they also conflict within one
        # process (two run_deliver calls in one program).
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    except (OSError, AttributeError):  # no pread on Windows
        return ""
    return f" (process {text})" if text.isdigit() else ""


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold the week's delivery lock for the block; a DeliveryError if another run holds it.

    A second run on the same week fails at once, before it reads the journal or sends
    anything, rather than wait: the first run may be stuck on a dead server for a while, and
    cron should show the overlap. The lock file stays in place (it holds the last holder's
    process id); removing it would let a third run lock a new file while the first still runs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            raise DeliveryError(
                f"another delivery run{_holder(fd)} is delivering this week's lists (lock "
                f"{path} is held): wait for it to finish and run again; the rerun sends only "
                "what it did not"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock
