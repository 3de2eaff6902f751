"""The webhook channel against a real HTTP server on 127.0.0.1: one POST per CSM, only theirs.

The server (`http.server` in a thread, a free port) records every request and answers from a
script per CSM (200 by default; 500, 429 with Retry-After, 400, or no answer at all), so the
retry, failure and exactly-once behaviour is seen as a receiver sees it. The lists are written
in the lists stage's own CSV format (`pipeline.lists.render.list_csv`, every cell defused).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from pipeline.core.config import parse_config
from pipeline.core.errors import ConfigError
from pipeline.core.layout import deliveries_dir_for
from pipeline.lists.render import LIST_COLUMNS, list_csv
from pipeline.stages.deliver import run_deliver
from pipeline.stages.deliver.registry import CHANNELS
from pipeline.stages.deliver.webhook import WebhookChannel
from tests.code.test_deliver import AS_OF, params, write_lists

ROOT = Path(__file__).resolve().parents[2]
URL_ENV = "TEST_CHURN_WEBHOOK_URL"
# The secret parts of the URL: a Slack-like path and a token in the query string.
PATH_SECRET = "T0001/B0002/pathSecret9f8e7d"
QUERY_SECRET = "querySecret4c3b2a"
HOSTILE = "<!channel> Evil & Co <https://evil.example/x|click here> <@U123>"

# csm_id -> (name, email, [(account_id, name, probability, expected ARR at risk, reason)])
ACCOUNTS = {
    "alice": [
        ("A-1", "=Acme Corp", 0.6612, 11819.4, "Active users: 3 (typical for SMB: 30 to 98)"),
        ("A-2", HOSTILE, 0.41, 1_234_567.0, "Support: 9 open tickets | NPS: 2"),
        ("A-3", "Third Account", 0.2, 800.0, "Executive sponsor silent for 120 days"),
    ],
    "bob": [("B-1", "Bobcat Ltd", 0.37, 5000.0, "No QBR in 200 days")],
    "carol": [("C-1", "Carol's Café", 0.5, 2500.0, "")],
    "dave": [],
}
CSMS = {
    "alice": ("Alice <Adams> & Partners", "alice@example.com", ["A-1", "A-2", "A-3"]),
    "bob": ("Bob Brown", "bob@example.com", ["B-1"]),
    "carol": ("Carol Chen", None, ["C-1"]),
    "dave": ("Dave Diaz", "dave@example.com", []),
}


def write_week(tmp_path: Path) -> Path:
    """A week's lists (manifest of tests.code.test_deliver) with CSVs as the lists stage writes."""
    lists = write_lists(tmp_path, CSMS)
    for csm_id, accounts in ACCOUNTS.items():
        rows = []
        for rank, (account_id, name, probability, at_risk, reasons) in enumerate(accounts, 1):
            row = dict.fromkeys(LIST_COLUMNS, "")
            row.update(
                rank=str(rank),
                account_id=account_id,
                account_name=name,
                probability=f"{probability:.4f}",
                expected_arr_at_risk=f"{at_risk:.2f}",
                renewal_date="2027-01-15",
                days_to_renewal="60",
                reasons=reasons,
                as_of=AS_OF,
            )
            rows.append(row)
        (lists / "csm" / f"{csm_id}.csv").write_text(list_csv(rows))
    return lists


@dataclass
class Hook:
    """What the server saw, and how it answers: `script[csm name]` is a list of answers."""

    requests: list[dict] = field(default_factory=list)
    script: dict[str, list[tuple[int, dict, bytes]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def posts_for(self, csm_name: str) -> list[dict]:
        return [r for r in self.requests if csm_name in r["json"]["text"]]


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            payload = json.loads(body)
            with state.lock:
                state.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                        "json": payload,
                    }
                )
                answer = (200, {}, b"ok")
                for name, answers in state.script.items():
                    if name in payload["text"] and answers:
                        answer = answers.pop(0)
            status, headers, text = answer
            if status == 0:  # no answer in time: hold the connection open
                state.release.wait(10)
                return
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format, *args):  # the server's own access log: not needed
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    state.url = f"http://127.0.0.1:{port}/services/{PATH_SECRET}?token={QUERY_SECRET}"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def webhook_config(**webhook):
    settings = {"url_env": URL_ENV, "top_accounts": 2, "backoff_seconds": 0.5, **webhook}
    raw = params(25, webhook=settings)
    raw["report"] = {"currency": "€"}
    return parse_config(raw)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The webhook channel with its waits recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setitem(
        CHANNELS, "webhook", lambda cfg: WebhookChannel.from_config(cfg, sleep=waited.append)
    )
    return waited


def deliver(lists: Path, hook: Hook, **kwargs):
    config = kwargs.pop("config", None) or webhook_config()
    return run_deliver(config, lists, channel="webhook", environ={URL_ENV: hook.url}, **kwargs)


def status_of(result) -> dict[str, tuple[str, str]]:
    return {o.csm_id: (o.status, o.detail) for o in result.outcomes}


# --- payload, routing, escaping --------------------------------------------------------------


def test_one_post_per_csm_holding_only_their_top_accounts(tmp_path, hook, sleeps):
    lists = write_week(tmp_path)
    result = deliver(lists, hook)

    # Every CSM has a destination on the webhook (an email address is not needed): four posts.
    assert len(hook.requests) == 4
    assert all(r["path"] == f"/services/{PATH_SECRET}?token={QUERY_SECRET}" for r in hook.requests)
    ids = {o.csm_id: o.message_id for o in result.outcomes}
    for request in hook.requests:
        assert request["headers"]["Content-Type"] == "application/json; charset=utf-8"
        assert request["headers"]["Idempotency-Key"] in ids.values()
        payload = request["json"]
        assert set(payload) == {"text", "blocks"}
        assert payload["blocks"][0]["type"] == "section"
        assert payload["blocks"][-1]["type"] == "context"
        assert all(b["text"]["type"] == "mrkdwn" for b in payload["blocks"][:-1])

    (alice,) = hook.posts_for("Alice &lt;Adams&gt; &amp; Partners")
    assert alice["headers"]["Idempotency-Key"] == ids["alice"]
    blocks = [b["text"]["text"] for b in alice["json"]["blocks"][:-1]]
    assert "3 accounts need attention; the top 2:" in blocks[0]
    assert blocks[1] == (
        "*1. =Acme Corp*\n"  # the CSV's defusing apostrophe is gone: this is not a spreadsheet
        "risk 66% · €11,819 ARR at risk · renews 2027-01-15 (in 60 days)\n"
        "Why: Active users: 3 (typical for SMB: 30 to 98)"
    )
    assert "€1.2M ARR at risk" in blocks[2] and "Why: Support: 9 open tickets" in blocks[2]
    assert "NPS" not in blocks[2]  # the first reason only
    assert len(blocks) == 3  # heading + top 2: A-3 is not in the message
    body = alice["body"].decode()
    assert "Third Account" not in body
    for other in ("Bobcat", "Café"):
        assert other not in body

    (bob,) = hook.posts_for("Bob Brown")
    assert "Bobcat Ltd" in bob["body"].decode() and "Acme" not in bob["body"].decode()
    (carol,) = hook.posts_for("Carol Chen")
    assert "Carol's Café" in carol["json"]["blocks"][1]["text"]["text"]  # UTF-8 as is
    (dave,) = hook.posts_for("Dave Diaz")
    assert "None of your accounts need attention" in dave["json"]["blocks"][0]["text"]["text"]
    assert len(dave["json"]["blocks"]) == 2

    logged = json.loads((deliveries_dir_for(lists) / "delivery.webhook.json").read_text())
    assert logged["mode"] == "webhook" and logged["counts"]["sent"] == 4
    assert {row["recipient"] for row in logged["csms"]} == {f"${URL_ENV}"}
    assert not (deliveries_dir_for(lists) / "delivery.json").exists()  # email's log untouched
    assert sleeps == []


def test_account_names_cannot_inject_slack_markup(tmp_path, hook, sleeps):
    lists = write_week(tmp_path)
    deliver(lists, hook)
    (alice,) = [r for r in hook.requests if "Adams" in r["json"]["text"]]
    strings = [alice["json"]["text"]]
    strings += [b["text"]["text"] for b in alice["json"]["blocks"][:-1]]
    strings += [e["text"] for e in alice["json"]["blocks"][-1]["elements"]]
    joined = "\n".join(strings)
    # No raw < or > anywhere: no link, no <!channel>, no <@user> mention can be formed.
    assert "<" not in joined and ">" not in joined
    assert (
        "*2. &lt;!channel&gt; Evil &amp; Co &lt;https://evil.example/x|click here&gt; "
        "&lt;@U123&gt;*"
    ) in joined
    assert "&amp;" in alice["json"]["text"]  # the CSM's name, escaped in the notification too
    assert "&" not in joined.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "")


# --- exactly once, retries, failures ---------------------------------------------------------


def test_a_rerun_posts_nothing_and_resend_posts_again(tmp_path, hook, sleeps):
    lists = write_week(tmp_path)
    first = deliver(lists, hook)
    assert len(hook.requests) == 4
    second = deliver(lists, hook)
    assert len(hook.requests) == 4  # nothing posted twice
    assert all(detail.startswith("already sent") for _, detail in status_of(second).values())
    assert [o.message_id for o in second.outcomes] == [o.message_id for o in first.outcomes]

    deliver(lists, hook, resend=True)
    keys = [r["headers"]["Idempotency-Key"] for r in hook.requests]
    assert keys[4:] == keys[:4]  # the same key: a receiver that honours it drops the repeat


def test_a_500_then_200_is_retried_and_retry_after_is_honoured_and_capped(tmp_path, hook, sleeps):
    lists = write_week(tmp_path)
    hook.script = {
        "Bob Brown": [(500, {}, b"upstream down"), (200, {}, b"ok")],
        "Carol Chen": [(429, {"Retry-After": "7"}, b"slow down"), (200, {}, b"ok")],
        "Dave Diaz": [(503, {"Retry-After": "3600"}, b""), (502, {}, b""), (200, {}, b"ok")],
    }
    result = deliver(lists, hook, config=webhook_config(max_retry_after_seconds=20))
    assert {status for status, _ in status_of(result).values()} == {"sent"}
    assert [len(hook.posts_for(n)) for n in ("Bob Brown", "Carol Chen", "Dave Diaz")] == [2, 2, 3]
    # bob: backoff 0.5 s; carol: Retry-After 7; dave: 3600 capped at 20, then backoff 0.5 * 2.
    assert sleeps == [0.5, 7.0, 20.0, 1.0]
    bob_keys = {r["headers"]["Idempotency-Key"] for r in hook.posts_for("Bob Brown")}
    assert len(bob_keys) == 1  # a retry is the same message


def test_a_400_is_that_csms_failure_and_a_rerun_sends_only_it(tmp_path, hook, sleeps):
    lists = write_week(tmp_path)
    hook.script = {"Bob Brown": [(400, {}, b"invalid_payload\nsecond line")]}
    first = deliver(lists, hook)
    status = status_of(first)
    assert status["bob"] == ("failed", "webhook answered HTTP 400: invalid_payload second line")
    assert {status[c][0] for c in ("alice", "carol", "dave")} == {"sent"}
    assert len(hook.posts_for("Bob Brown")) == 1 and sleeps == []  # a 4xx is not retried
    logged = json.loads((deliveries_dir_for(lists) / "delivery.webhook.json").read_text())
    assert logged["counts"]["failed"] == 1

    hook.requests.clear()
    second = deliver(lists, hook)
    assert [r["json"]["text"] for r in hook.requests] == [
        f"Churn watch list {AS_OF} for Bob Brown: 1 account needs attention"
    ]
    assert second.counts["failed"] == 0 and second.counts["sent"] == 4


def test_5xx_until_the_attempts_run_out_and_a_timeout_are_failures(tmp_path, hook, sleeps):
    lists = write_week(tmp_path)
    hook.script = {
        "Bob Brown": [(500, {}, b"")] * 5,
        "Dave Diaz": [(0, {}, b"")] * 2,  # the server never answers
    }
    config = webhook_config(max_attempts=2, timeout_seconds=0.5)
    result = deliver(lists, hook, config=config)
    status = status_of(result)
    assert status["bob"] == ("failed", "webhook failed after 2 attempts, last: HTTP 500")
    assert status["dave"][0] == "failed" and "timed out" in status["dave"][1]
    assert len(hook.posts_for("Bob Brown")) == 2 and len(hook.posts_for("Dave Diaz")) == 2
    assert status["alice"][0] == "sent" and status["carol"][0] == "sent"


def test_a_redirect_is_not_followed(tmp_path, hook, sleeps):
    lists = write_week(tmp_path)
    hook.script = {"Bob Brown": [(302, {"Location": hook.url + "&moved=1"}, b"")]}
    status = status_of(deliver(lists, hook))
    assert status["bob"] == ("failed", "webhook answered HTTP 302 (redirects are not followed)")
    assert len(hook.requests) == 4  # no GET or second POST to the Location


# --- settings and the secret -----------------------------------------------------------------


def test_a_missing_or_unsafe_url_stops_the_run_before_anything_is_posted(tmp_path, hook):
    lists = write_week(tmp_path)
    with pytest.raises(ConfigError, match=f"{URL_ENV} is not set"):
        run_deliver(webhook_config(), lists, channel="webhook", environ={})
    remote = f"http://hooks.example.com/services/{PATH_SECRET}"
    with pytest.raises(ConfigError, match="plain http to a remote host") as refused:
        run_deliver(webhook_config(), lists, channel="webhook", environ={URL_ENV: remote})
    assert PATH_SECRET not in str(refused.value)
    assert hook.requests == []


def test_dry_run_writes_the_payloads_byte_identical_and_needs_no_url(tmp_path, hook):
    lists = write_week(tmp_path)
    outbox = tmp_path / "outbox"
    config = webhook_config()
    run_deliver(config, lists, channel="webhook", dry_run=True, outbox=outbox, environ={})
    files = {f.name: f.read_bytes() for f in sorted(outbox.glob("*.json"))}
    assert sorted(files) == ["alice.json", "bob.json", "carol.json", "dave.json"]
    run_deliver(config, lists, channel="webhook", dry_run=True, outbox=outbox, environ={})
    assert {f.name: f.read_bytes() for f in sorted(outbox.glob("*.json"))} == files
    assert hook.requests == []

    # The dry run's file is exactly what a real run posts.
    deliver(lists, hook)
    posted = {r["json"]["text"]: r["body"] for r in hook.requests}
    assert sorted(posted.values()) == sorted(files.values())


def test_the_url_is_in_no_output_log_or_file(tmp_path, hook):
    """`churn deliver --channel webhook` as cron runs it, through a retry, a failure and
    successes: neither the URL nor any secret part of it appears anywhere."""
    lists = write_week(tmp_path)
    hook.script = {
        "Bob Brown": [(400, {}, f"bad hook {hook.url}".encode())],  # a server echoing it back
        "Carol Chen": [(503, {}, b"busy"), (200, {}, b"ok")],
    }
    raw = params(25, webhook={"url_env": URL_ENV, "backoff_seconds": 0})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "pipeline", "--verbose", "deliver", "--channel", "webhook"]
    command += ["--params", str(params_file), "--lists", str(lists)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), URL_ENV: hook.url}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=300)
    output = run.stdout.decode() + run.stderr.decode()
    assert run.returncode == 1, output  # bob failed
    assert "HTTP 400" in output and "HTTP 503" in output  # the failure and the retry are logged
    assert len(hook.requests) == 5

    written = {p: p.read_bytes().decode() for p in tmp_path.rglob("*") if p.is_file()}
    assert any(p.name == "journal.jsonl" for p in written)
    assert any(p.name == "delivery.webhook.json" for p in written)
    for secret in (hook.url, PATH_SECRET, QUERY_SECRET, "pathSecret", "querySecret"):
        assert secret not in output
        for path, text in written.items():
            if path != params_file:
                assert secret not in text, path


def test_no_log_record_holds_the_url(tmp_path, hook, sleeps, caplog):
    """In process, without the CLI's redacting log filter: the channel's own records are clean."""
    lists = write_week(tmp_path)
    hook.script = {"Bob Brown": [(503, {}, hook.url.encode()), (404, {}, hook.url.encode())]}
    with caplog.at_level(logging.DEBUG):
        result = deliver(lists, hook)
    assert "HTTP 404" in status_of(result)["bob"][1]
    assert "HTTP 503" in caplog.text
    for secret in (PATH_SECRET, QUERY_SECRET):
        assert secret not in caplog.text
        assert all(secret not in o.detail for o in result.outcomes)
