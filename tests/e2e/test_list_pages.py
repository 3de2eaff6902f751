"""A CSM's list page and its email, in headless Chromium at phone, tablet and desktop widths.

Issue 14, items 3 to 5: the page must not scroll sideways at 400 px (the email is read on a
phone) nor at 800 or 1280 px, must load nothing but itself, log no error and show no
data-science word. The email is built with the deliver stage's own builder and its HTML part
is what is rendered, so what a CSM receives is what is checked. Screenshots are kept under
test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import os
from datetime import date
from email import message_from_bytes, policy
from pathlib import Path

import pandas as pd
import pytest

from pipeline.lists.manifest import CsmEntry, parse_manifest
from pipeline.lists.render import render_lists
from pipeline.stages.deliver.email import build_list_message, message_bytes
from pipeline.stages.deliver.settings import SenderSettings
from tests.chromium import Browser
from tests.code.test_render import JARGON, RULE, STAMP, account, frame

ROOT = Path(__file__).resolve().parents[2]
LONG = "Vereinigte Großhandelsgesellschaft für Landmaschinen und Industriebedarf mbH & Co. KG"

READ = """
(() => ({
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
  text: document.body.innerText,
  cards: getComputedStyle(document.querySelector('table.action tr')).display,
}))()
"""


def _artifacts() -> Path:
    return Path(os.environ.get("CHURN_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "lists"


def realistic_book() -> pd.DataFrame:
    """Eight action rows, long names, a watch section, a mark that came back, hostile text."""
    rows = [
        account(
            i,
            list_rank=i,
            account_name=name,
            arr=arr,
            expected_arr_at_risk=arr * p,
            priority=arr * p,
            probability=p,
            change=change,
            probability_last_week=max(p - 0.1, 0.0),
            moved_most="active users: 18 -> 4 (30 days)" if change == "risen" else None,
            new_on_list=i % 3 == 0,
        )
        for i, (name, arr, p, change) in enumerate(
            [
                ("<script>alert('x')</script> Holdings", 240_000.0, 0.38, "risen"),
                (LONG, 1_180_500.0, 0.22, "steady"),
                ("Acme", 11_819.0, 0.61, "new"),
                ('=HYPERLINK("http://evil","click")', 58_000.0, 0.35, "fallen"),
                ("Globex Corporation International Services", 96_400.0, 0.29, "risen"),
                ("Initech", 7_200.0, 0.74, "steady"),
                ("Umbrella_Logistics_Europe_Subsidiary_Number_Seven", 150_000.0, 0.19, "steady"),
                ("Hooli", 33_000.0, 0.45, "risen"),
            ],
            start=1,
        )
    ]
    rows[2].update(
        mark_state="addressed",
        mark_back=True,
        mark_reason="back: risk 31% -> 61% since addressed on 2026-11-02 (exec sponsor call)",
        mark_note="CFO wants a price review before renewal",
        last_touch_date=None,
        last_touch_kind=None,
        open_tickets=0,
        open_tickets_breached=0,
    )
    rows += [
        account(20, watch_rank=1, probability=0.12, risk_band="low", change="risen"),
        account(21, watch_rank=2, probability=0.09, risk_band="low", days_to_renewal=12),
        account(30, csm="C2", list_rank=1),
    ]
    return frame(rows)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The list files of CSM C1, the drift warning included in what the stage hands over."""
    warnings = [
        {"kind": "drift", "feature": "x", "message": "feature x drifted: PSI 0.4 > 0.25"},
        {
            "kind": "stale_table",
            "table": "usage_events",
            "latest": "2026-10-20",
            "days_old": 27,
            "message": "table usage_events looks stale",
        },
    ]
    files, entries, _ = render_lists(
        realistic_book(),
        stamp=STAMP,
        warnings=warnings,
        rank_by="expected_arr_at_risk",
        renewal_window_days=90,
        currency="$",
        ranking=RULE,
    )
    out = tmp_path_factory.mktemp("lists")
    for name, data in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    entry = next(e for e in entries if e["csm_id"] == "C1")
    return out, entry


def email_html(lists_dir: Path, entry: dict, out: Path) -> Path:
    """The HTML part of the email the deliver stage builds for this CSM, as a file."""
    manifest = parse_manifest(
        json.loads(
            json.dumps(
                {
                    "as_of": STAMP["as_of"].isoformat(),
                    "model_version": STAMP["model_version"],
                    "model_source": "models",
                    "data_version": STAMP["data_version"],
                    "rank_by": "expected_arr_at_risk",
                    "capacity_per_csm": 10,
                    "base_value": 0.0,
                    "warnings": [],
                    "csms": [entry],
                    "n_accounts": 11,
                    "n_listed": 9,
                    "n_unassigned": 0,
                    "arr_total": 1.0,
                    "expected_arr_at_risk": 1.0,
                    "risk_bands": {"high": 0.35, "medium": 0.15},
                    "risk_band_counts": {"high": 1, "medium": 1, "low": 1},
                    "previous_week": date(2026, 11, 9).isoformat(),
                    "trend_weeks": 8,
                    "shap_method": "tree",
                    "additivity_max_error": 0.0,
                    "drift_checked": True,
                }
            )
        )
    )
    csm = CsmEntry(**entry)
    message = build_list_message(
        csm,
        manifest,
        SenderSettings(from_address="churn@example.com", from_name="Churn lists"),
        html=(lists_dir / csm.html).read_text(encoding="utf-8"),
        csv_bytes=(lists_dir / csm.csv).read_bytes(),
        account_names=["Acme"],
    )
    parsed = message_from_bytes(message_bytes(message), policy=policy.default)
    html = parsed.get_body(preferencelist=("html",)).get_content()
    out.write_text(html, encoding="utf-8")
    return out


def look(path: Path, width: int, shot: str) -> dict:
    """Open `path` at `width` px, keep a full-page screenshot, return what the checks need."""
    with Browser(width=width, height=900, mobile=width < 600) as page:
        page.load(path)
        seen = page.evaluate(READ)
        page.full_page_screenshot(_artifacts() / shot)
        seen["errors"] = page.errors()
        seen["requests"] = page.requested_urls()
    seen["file"] = path.resolve().as_uri()
    return seen


def check(seen: dict, width: int) -> None:
    assert seen["errors"] == [], seen["errors"]
    assert seen["requests"] == [seen["file"]], seen["requests"]
    assert seen["scrollWidth"] <= seen["innerWidth"] == width, (
        f"the page scrolls sideways at {width} px: {seen['scrollWidth']} > {seen['innerWidth']}"
    )
    assert JARGON.findall(seen["text"]) == [], JARGON.findall(seen["text"])
    assert "Accounts that need action" in seen["text"]
    assert "back on your list" in seen["text"]
    assert "Watch: no action needed yet" in seen["text"]
    # one card per account on a phone, a table row on a wider screen
    assert seen["cards"] == ("block" if width <= 600 else "table-row")


@pytest.mark.parametrize("width", [400, 800, 1280])
def test_list_page_at_phone_tablet_and_desktop_width(rendered, width):
    lists_dir, entry = rendered
    seen = look(lists_dir / entry["html"], width, f"csm_list_{width}.png")
    check(seen, width)
    assert "$1,180,500" in seen["text"] and "Mid-market" in seen["text"]
    assert "<script>alert('x')</script> Holdings" in seen["text"]  # shown as text, not run


@pytest.mark.parametrize("width", [400, 800])
def test_email_body_at_phone_and_tablet_width(rendered, tmp_path, width):
    lists_dir, entry = rendered
    html = email_html(lists_dir, entry, tmp_path / "email.html")
    check(look(html, width, f"csm_email_{width}.png"), width)


def test_the_overflow_check_can_fail(rendered, tmp_path):
    """Without the phone layout (and with cells that cannot wrap) the page overflows at 400."""
    lists_dir, entry = rendered
    html = (lists_dir / entry["html"]).read_text(encoding="utf-8")
    broken = html.replace("@media (max-width: 600px)", "@media (max-width: 1px)")
    broken = broken.replace("overflow-wrap: anywhere; word-break: break-word;", "")
    broken = broken.replace("</style>", "td { white-space: nowrap; }\n</style>")
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    seen = look(path, 400, "csm_list_broken_400.png")
    assert seen["scrollWidth"] > seen["innerWidth"]
