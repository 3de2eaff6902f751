"""The leadership page's first screen, in headless Chromium at 1280x800 (issue 14, item 7).

Above the fold a VP must find how much (the ARR at risk and its change since last week),
where (the top segment and CSM books) and who (the largest accounts at risk), with no
horizontal scrolling and no data-science jargon left unexplained. The test renders the real
page, keeps a screenshot of the first screen under test-artifacts/, and reads what a person
would see: text whose element's box starts above the 800th pixel.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from pipeline.core.config import ReportSection
from pipeline.stages.report import build_report, largest_at_risk, render_html, risk_by
from pipeline.stages.report.words import format_money, group_name
from tests.chromium import Browser
from tests.report_fixtures import tiny_inputs, tiny_lists

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 1280, 800

# Jargon a VP must not meet unexplained: (pattern, gloss that must be in the same block, or
# None when the word must not appear at all). JavaScript regular expressions.
JARGON = [
    (r"\bPSI\b", r"shift|stability"),
    (r"\bSHAP\b", None),
    (r"log-odds", None),
    (r"\blogit\b", None),
    (r"\bROC\b|\bAUC\b", r"ranking|ranked"),
]

# Text nodes whose element starts above the fold, and jargon without its gloss in the same
# block (the nearest paragraph, cell, list item, caption, heading or div).
READ_PAGE = """
(() => {
  const jargon = %s;
  const blocks = 'p,li,td,th,dd,dt,figcaption,h1,h2,h3,h4,div,section';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const above = [];
  const visible = [];
  const offenders = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const el = node.parentElement;
    if (!text || !el || !el.checkVisibility()) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const box = range.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    visible.push(text);
    if (box.top < %d) above.push(text);
    const block = el.closest(blocks) || el;
    for (const [word, gloss] of jargon) {
      if (!new RegExp(word).test(text)) continue;
      if (gloss === null || !new RegExp(gloss, 'i').test(block.innerText)) {
        offenders.push({word: word, text: block.innerText.slice(0, 200)});
      }
    }
  }
  return {
    above: above,
    visible: visible,
    offenders: offenders,
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
  };
})()
"""


def _artifact_dir() -> Path:
    return Path(os.environ.get("CHURN_TEST_ARTIFACTS") or ROOT / "test-artifacts")


def read_first_screen(html_path: Path, shot_name: str) -> dict:
    """Render the page at 1280x800, keep a screenshot of the window, read its text."""
    with Browser(width=WIDTH, height=HEIGHT) as page:
        page.load(html_path)
        seen = page.evaluate(READ_PAGE % (json.dumps(JARGON), HEIGHT))
        seen["screenshot"] = page.screenshot(_artifact_dir() / shot_name)
        seen["errors"] = page.errors()
    return seen


def expected_first_screen(lists, currency: str) -> dict[str, str]:
    """What the first screen must hold, computed from the lists, not from the page."""
    accounts = lists.accounts
    return {
        "total": format_money(float(accounts["expected_arr_at_risk"].sum()), currency),
        "segment": group_name(risk_by(accounts, "segment").iloc[0]["segment"]),
        "account": str(largest_at_risk(accounts, 1).iloc[0]["account_name"]),
    }


def _check(seen: dict, expected: dict[str, str]) -> None:
    assert seen["errors"] == []
    assert seen["scrollWidth"] <= seen["clientWidth"], "the page scrolls sideways at 1280 px"
    above = "\n".join(seen["above"])
    for what, text in expected.items():
        assert text in above, f"the first screen lacks the {what} {text!r}"
    assert seen["offenders"] == [], seen["offenders"]
    with seen["screenshot"].open("rb") as f:
        header = f.read(24)
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    assert (width, height) == (WIDTH, HEIGHT)


def test_first_screen_answers_how_much_where_and_who(tmp_path):
    lists = tiny_lists(60, weeks=3)
    settings = ReportSection(top_features=4, dependence_plots=2, largest_accounts=10, currency="€")
    html = render_html(build_report(tiny_inputs(lists), settings))
    page = tmp_path / "leadership.html"
    page.write_text(html, encoding="utf-8")
    seen = read_first_screen(page, "leadership_first_screen_tiny.png")
    _check(seen, expected_first_screen(lists, "€"))
    above = "\n".join(seen["above"])
    # the change since last week is stated (trend.csv holds three weeks)
    assert any(t.startswith(("up €", "down €", "unchanged since")) for t in seen["above"]), above
    visible = "\n".join(seen["visible"])
    assert "Mid-market" in visible and "mid_market" not in visible  # names in words
    assert "$" not in visible  # every amount in the currency of the settings


def test_first_screen_says_when_there_is_no_earlier_week(tmp_path):
    lists = tiny_lists(24, weeks=1)
    html = render_html(build_report(tiny_inputs(lists), ReportSection()))
    page = tmp_path / "leadership.html"
    page.write_text(html, encoding="utf-8")
    seen = read_first_screen(page, "leadership_first_screen_one_week.png")
    _check(seen, expected_first_screen(lists, "$"))
    assert "no earlier week to compare with" in seen["above"]


def test_first_screen_of_the_demo_report(demo_repo, tmp_path):
    """The page `churn report` writes for the demo outputs (hostile names and all)."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.stages.report import read_lists

    reports = demo_repo / "reports"
    lists_dir = next((reports / "lists").iterdir())
    leadership_page = tmp_path / "leadership.html"
    args = ["report", "--params", str(demo_repo / "params.yaml"), "--lists", str(lists_dir)]
    args += ["--metrics", str(reports / "metrics.json"), "--plots", str(reports / "plots")]
    args += ["--backtest", str(reports / "backtest.json")]
    args += ["--feature-summary", str(reports / "feature_summary.json")]
    args += ["--models", str(demo_repo / "models"), "--out", str(leadership_page)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    seen = read_first_screen(leadership_page, "leadership_first_screen.png")
    _check(seen, expected_first_screen(read_lists(lists_dir), "$"))


def test_a_page_with_jargon_fails_the_check(tmp_path):
    """The jargon check can fail: an unexplained SHAP and a bare ROC-AUC are caught."""
    lists = tiny_lists(24)
    context = build_report(tiny_inputs(lists), ReportSection())
    context = replace(context, warnings=[{"title": "Note", "message": "mean |SHAP| 0.3"}])
    html = render_html(context).replace("</main>", "<p>Model ROC-AUC 0.81.</p></main>")
    page = tmp_path / "leadership.html"
    page.write_text(html, encoding="utf-8")
    seen = read_first_screen(page, "leadership_jargon_check.png")
    words = sorted({o["word"] for o in seen["offenders"]})
    assert words == [r"\bROC\b|\bAUC\b", r"\bSHAP\b"]
