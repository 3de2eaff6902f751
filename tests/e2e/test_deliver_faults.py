"""Delivery is exactly once under faults: real `churn deliver` runs killed mid-way, then rerun.

Each test starts a real SMTP server (aiosmtpd) on loopback that holds the conversation at one
point (the first EHLO, the k-th MAIL FROM, the k-th message after the server has stored it but
before it answers, the final QUIT), runs `python -m pipeline deliver` as a subprocess over a
synthetic week of nine CSMs, signals the process while it is held there, and reruns the
delivery. Across both runs every CSM must have received their list exactly once, counted at the
server by recipient and Message-ID. The one allowed exception is the documented in-flight
case: a SIGKILL after the server stored a message but before the run saw its "250", where the
rerun sends the message again with the same Message-ID (mail clients show it once).

Nothing waits on wall-clock time: the test waits until the server says the run is held (or
until the run logs that it saw SIGTERM), with generous deadlines for a loaded machine.
"""

from __future__ import annotations

import asyncio
import email
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from email import policy
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller

from pipeline.core.config import parse_config
from pipeline.core.layout import deliveries_dir_for
from pipeline.stages.deliver import run_deliver
from tests.code.test_deliver import free_port, params, write_lists

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 120.0  # generous: two loaded cores, a cold interpreter start per run

# Nine CSMs, each with a list, so that every one of them gets a message.
CSMS = {
    f"csm{n:02d}": (f"CSM Number {n}", f"csm{n:02d}@example.com", [f"A-{n}-1", f"A-{n}-2"])
    for n in range(1, 10)
}
ADDRESSES = [address for _, address, _ in CSMS.values()]


class HoldingHandler:
    """Accepts every message; holds the conversation at `hold_at` = (command, n-th call).

    A held command waits (without blocking the server's event loop, so other connections go
    on) until `release` is set. DATA stores the message before it holds: the server has it,
    the client has not yet heard so.
    """

    def __init__(self, hold_at: tuple[str, int] | None) -> None:
        self.hold_at = hold_at
        self.calls: Counter[str] = Counter()
        self.held = threading.Event()
        self.release = threading.Event()
        self.received: list[tuple[str, str]] = []  # (recipient, Message-ID)

    async def _maybe_hold(self, command: str) -> None:
        self.calls[command] += 1
        if self.hold_at == (command, self.calls[command]):
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        await self._maybe_hold("EHLO")
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        await self._maybe_hold("MAIL")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        for rcpt in envelope.rcpt_tos:
            self.received.append((rcpt, str(message["Message-ID"])))
        await self._maybe_hold("DATA")
        return "250 Message accepted"

    async def handle_QUIT(self, server, session, envelope):
        await self._maybe_hold("QUIT")
        return "221 Bye"


@pytest.fixture
def week(tmp_path):
    """A week's lists directory: nine CSMs, two accounts each, all with an email address."""
    return write_lists(tmp_path, CSMS)


@pytest.fixture
def serve():
    """Start a holding SMTP server on a free loopback port: serve(hold_at) -> (port, handler)."""
    # aiosmtpd logs the dead client's connection from its own thread; not this test's subject.
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    controllers: list[tuple[Controller, HoldingHandler]] = []

    def start(hold_at: tuple[str, int] | None) -> tuple[int, HoldingHandler]:
        handler = HoldingHandler(hold_at)
        controller = Controller(handler, hostname="127.0.0.1", port=free_port())
        controller.start()
        controllers.append((controller, handler))
        return controller.port, handler

    yield start
    for controller, handler in controllers:
        handler.release.set()
        controller.stop()


def fault_params(port: int) -> dict:
    # No login (loopback); a long timeout so a held server never turns into a timeout failure.
    return params(port, username_env=None, password_env=None, timeout_seconds=600)


def start_delivery(lists: Path, port: int, workdir: Path, name: str) -> subprocess.Popen:
    """`python -m pipeline deliver` on the week, as cron would run it; stderr to a file."""
    params_file = workdir / f"params-{port}.yaml"
    params_file.write_text(yaml.safe_dump(fault_params(port)))
    stderr = (workdir / f"{name}.stderr").open("wb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipeline", "deliver"]
    command += ["--params", str(params_file), "--lists", str(lists)]
    try:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    finally:
        stderr.close()


def stderr_of(workdir: Path, name: str) -> str:
    return (workdir / f"{name}.stderr").read_text(errors="replace")


def wait_until(condition, what: str, process: subprocess.Popen, workdir: Path, name: str):
    """Poll `condition` until true; fail at the deadline or when the process ended first."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if process.poll() is not None:
            pytest.fail(
                f"the delivery run exited ({process.returncode}) before {what}:\n"
                f"{stderr_of(workdir, name)}"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} within {DEADLINE_SECONDS}s:\n{stderr_of(workdir, name)}")
        time.sleep(0.02)


def journal_records(lists: Path) -> list[dict]:
    """The week's journal, one record a line (a documented file: read as an operator would)."""
    path = deliveries_dir_for(lists) / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(lists: Path) -> dict[str, dict]:
    logged = json.loads((deliveries_dir_for(lists) / "delivery.json").read_text())
    return {row["csm_id"]: row for row in logged["csms"]}


def rerun(lists: Path, port: int):
    """The rerun after the fault: a real delivery of the same week to the same server."""
    return run_deliver(parse_config(fault_params(port)), lists, environ={})


def assert_each_csm_received_once(handler: HoldingHandler, *, in_flight: str | None = None):
    """Exactly one message per CSM at the server; `in_flight`'s may be there twice, same id."""
    ids_by_recipient: dict[str, list[str]] = {}
    for recipient, message_id in handler.received:
        ids_by_recipient.setdefault(recipient, []).append(message_id)
    assert sorted(ids_by_recipient) == sorted(ADDRESSES)
    for address, ids in ids_by_recipient.items():
        if address == in_flight:
            assert len(ids) == 2 and len(set(ids)) == 1, (address, ids)
        else:
            assert len(ids) == 1, (address, ids)
    every_id = [ids[0] for ids in ids_by_recipient.values()]
    assert len(set(every_id)) == len(CSMS)  # one distinct Message-ID per CSM


# where the server holds the run -> (messages the server has stored by then, CSMs whose send
# the killed run started, CSMs it saw accepted, the CSM whose message may arrive twice)
KILL_POINTS = {
    # connected, `sending` recorded for the first CSM, nothing at the server yet
    "before-the-first-send": (("EHLO", 1), 0, 1, 0, None),
    # three sent; the fourth's MAIL FROM is held: the server does not have it
    "mid-way-before-the-server-has-it": (("MAIL", 4), 3, 4, 3, None),
    # three sent; the fourth stored by the server, its "250" not yet sent: truly in flight
    "mid-way-after-the-server-stored-it": (("DATA", 4), 4, 4, 3, "csm04"),
    # every message sent and recorded, the run closing the connection before its summary
    "after-the-last-send-before-the-summary": (("QUIT", 1), 9, 9, 9, None),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_sigkilled_run_then_a_rerun_send_every_list_exactly_once(tmp_path, week, serve, point):
    hold_at, stored, started, confirmed, twice = KILL_POINTS[point]
    port, handler = serve(hold_at)
    process = start_delivery(week, port, tmp_path, "killed")
    wait_until(handler.held.is_set, f"hold at {hold_at}", process, tmp_path, "killed")
    assert len(handler.received) == stored
    process.kill()  # SIGKILL: no handler, no finally, no summary
    assert process.wait(timeout=DEADLINE_SECONDS) == -signal.SIGKILL
    handler.release.set()

    left = journal_records(week)  # what the killed run left behind

    result = rerun(week, port)
    assert_each_csm_received_once(handler, in_flight=CSMS[twice][1] if twice else None)
    assert result.counts["sent"] == len(CSMS) and result.counts["failed"] == 0

    # The killed run had recorded `sending` before every send it started and `sent` after
    # each one the server accepted.
    assert [r["csm_id"] for r in left if r["event"] == "sending"] == list(CSMS)[:started]
    assert [r["csm_id"] for r in left if r["event"] == "sent"] == list(CSMS)[:confirmed]
    interrupted = set(list(CSMS)[confirmed:started])

    # The summary, rebuilt from the journal, says who got what and how: the message cut off
    # mid-send went again, with the Message-ID of the first attempt, and the log says so.
    rows = summary(week)
    assert {row["status"] for row in rows.values()} == {"sent"}
    details = {csm: row["detail"] for csm, row in rows.items()}
    assert {csm for csm, d in details.items() if "same Message-ID" in d} == interrupted
    assert {csm for csm, d in details.items() if "already sent" in d} == set(list(CSMS)[:confirmed])
    for csm in interrupted:
        attempts = [r for r in journal_records(week) if r["csm_id"] == csm]
        assert [r["event"] for r in attempts] == ["sending", "sending", "sent"]
        assert len({r["message_id"] for r in attempts}) == 1

    # And a third run sends nothing at all.
    before = len(handler.received)
    third = rerun(week, port)
    assert len(handler.received) == before and third.counts["sent"] == len(CSMS)


# (where the server holds the run, CSMs sent by the stopped run, its exit code)
TERM_POINTS = {
    "before-the-first-send": (("EHLO", 1), 1, 1),
    "mid-way-after-the-server-stored-it": (("DATA", 4), 4, 1),
    "after-the-last-send-before-the-summary": (("QUIT", 1), 9, 0),
}


@pytest.mark.parametrize("point", list(TERM_POINTS))
def test_a_sigterm_finishes_the_message_in_hand_then_stops_and_a_rerun_sends_the_rest(
    tmp_path, week, serve, point
):
    hold_at, sent_first, exit_code = TERM_POINTS[point]
    port, handler = serve(hold_at)
    process = start_delivery(week, port, tmp_path, "stopped")
    wait_until(handler.held.is_set, f"hold at {hold_at}", process, tmp_path, "stopped")
    process.send_signal(signal.SIGTERM)
    wait_until(
        lambda: "SIGTERM" in stderr_of(tmp_path, "stopped"),
        "acknowledgement of SIGTERM",
        process,
        tmp_path,
        "stopped",
    )
    handler.release.set()  # the message in hand completes
    assert process.wait(timeout=DEADLINE_SECONDS) == exit_code, stderr_of(tmp_path, "stopped")

    # A graceful stop: the summary is written, the message in hand is sent and recorded, and
    # the CSMs not reached are failed as not attempted.
    rows = summary(week)
    first = list(CSMS)[:sent_first]
    assert [csm for csm, row in rows.items() if row["status"] == "sent"] == first
    for csm in set(CSMS) - set(first):
        assert rows[csm]["status"] == "failed"
        assert "stopped by SIGTERM" in rows[csm]["detail"], rows[csm]
    assert [r["csm_id"] for r in journal_records(week) if r["event"] == "sent"] == first
    assert sorted(rcpt for rcpt, _ in handler.received) == ADDRESSES[:sent_first]

    result = rerun(week, port)
    assert result.counts["sent"] == len(CSMS) and result.counts["failed"] == 0
    assert_each_csm_received_once(handler)  # no in-flight message: not even a same-id repeat


def test_a_second_run_of_the_same_week_fails_clearly_and_sends_nothing(tmp_path, week, serve):
    port, handler = serve(("DATA", 2))
    first = start_delivery(week, port, tmp_path, "first")
    wait_until(
        handler.held.is_set, "the first run held at its second message", first, tmp_path, "first"
    )

    second = start_delivery(week, port, tmp_path, "second")
    second_exit = second.wait(timeout=DEADLINE_SECONDS)
    sent_by_second = len(handler.received) - 2
    handler.release.set()
    assert first.wait(timeout=DEADLINE_SECONDS) == 0, stderr_of(tmp_path, "first")

    assert_each_csm_received_once(handler)
    assert sent_by_second == 0
    error = " ".join(stderr_of(tmp_path, "second").split())
    assert second_exit == 2, error  # the exit code of an error before anything is sent
    assert "another delivery run" in error and f"(process {first.pid})" in error, error
    assert {row["status"] for row in summary(week).values()} == {"sent"}
