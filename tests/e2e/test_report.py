"""The leadership report: core aggregations on tiny frames, a self-contained page with escaped
names, the same numbers as metrics.json, backtest.json and the lists, and a clean render in
headless Chromium (console, images, requests, a screenshot kept as a test artefact)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.config import ConfigError, ReportSection, parse_config
from pipeline.lists.manifest import manifest_bytes, parse_manifest
from pipeline.stages.report import (
    COHORT_FIRST_90,
    ListOutputs,
    ReportError,
    build_report,
    check_lists,
    driver_importance,
    effect_direction,
    family_importance,
    known_limits,
    largest_at_risk,
    lower_first,
    read_lists,
    render_html,
    risk_by,
    swarm_offsets,
    trust_metrics,
    with_cohort,
)
from tests.chromium import Browser
from tests.report_fixtures import (
    REGISTRY,
    TINY_METRICS,
    small_settings,
    tiny_inputs,
    tiny_lists,
)

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


# --- tiny inputs -----------------------------------------------------------------------------


# --- core ------------------------------------------------------------------------------------


def test_driver_importance_ranks_by_mean_absolute_shap_with_plain_names():
    shap = pd.DataFrame({"sla_breaches_90d": [0.5, -0.5], "active_users_30d": [0.1, 0.1]})
    out = driver_importance(shap, REGISTRY)
    assert list(out["feature"]) == ["sla_breaches_90d", "active_users_30d"]
    assert out.loc[0, "mean_abs_shap"] == pytest.approx(0.5)
    assert out.loc[0, "description"].startswith("SLA breaches")
    assert out.loc[0, "family"] == "support" and out["share"].sum() == pytest.approx(1.0)


def test_family_importance_sums_a_familys_values_before_taking_the_size():
    # two usage features that always offset each other: the family moves nothing
    shap = pd.DataFrame(
        {
            "active_users_30d": [0.4, -0.2],
            "active_users_90d": [-0.4, 0.2],
            "sla_breaches_90d": [0.1, 0.1],
        }
    )
    out = family_importance(shap, REGISTRY).set_index("family")
    assert out.loc["usage", "mean_abs_shap"] == pytest.approx(0.0)
    assert out.loc["support", "mean_abs_shap"] == pytest.approx(0.1)
    assert out.loc["usage", "features"] == 2


def test_risk_by_aggregates_the_lists_numbers_and_keeps_missing_groups():
    accounts = pd.DataFrame(
        {
            "account_id": ["a", "b", "c"],
            "region": ["emea", "emea", None],
            "arr": [100.0, 300.0, 50.0],
            "probability": [0.5, 0.1, 0.2],
            "expected_arr_at_risk": [50.0, 30.0, 10.0],
            "on_list": [True, False, True],
        }
    )
    out = risk_by(accounts, "region").set_index("region")
    assert out.loc["emea", "expected_arr_at_risk"] == 80.0
    assert out.loc["emea", "arr_at_risk_share"] == pytest.approx(0.2)
    assert out.loc["emea", "mean_probability"] == pytest.approx(0.3)
    assert out.loc["(none)", "on_list"] == 1
    assert list(out.index) == ["emea", "(none)"]  # most ARR at risk first
    assert accounts["region"].isna().sum() == 1  # input untouched


def test_cohorts_and_largest_accounts():
    accounts = tiny_lists().accounts
    cohort = with_cohort(accounts)
    assert set(cohort["tenure_cohort"]) <= {COHORT_FIRST_90, "After 90 days"}
    assert (cohort["tenure_cohort"] == COHORT_FIRST_90).sum() == accounts["first_90_days"].sum()
    top = largest_at_risk(accounts, 3)
    assert len(top) == 3
    assert (
        list(top["expected_arr_at_risk"])
        == sorted(accounts["expected_arr_at_risk"], reverse=True)[:3]
    )


def test_swarm_offsets_stay_in_their_row_and_are_deterministic():
    values = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.5])
    offsets = swarm_offsets(values)
    assert np.all(np.abs(offsets) <= 0.4 + 1e-12)
    assert len(set(offsets[:4])) == 4  # equal values are spread, not drawn on top of each other
    assert offsets[4] == 0.0
    np.testing.assert_array_equal(offsets, swarm_offsets(values))
    assert swarm_offsets(np.array([])).size == 0


def test_effect_direction_reads_the_sign_of_the_relation():
    x = pd.Series(np.arange(20, dtype=float))
    assert effect_direction(x, x * 0.1) == "higher"
    assert effect_direction(x, -x) == "lower"
    assert effect_direction(x, pd.Series(np.sin(x * 3))) in {"mixed", "higher", "lower"}
    assert effect_direction(pd.Series(["smb", "ent"] * 10), x) == "mixed"


def test_lower_first_keeps_acronyms():
    assert lower_first("Active users") == "active users"
    assert lower_first("SLA breaches") == "SLA breaches"


def _set(frame: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    out = frame.copy()
    out.loc[row, column] = value
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: replace(t, accounts=t.accounts.drop(columns="arr")), "lacks columns ['arr']"),
        (lambda t: replace(t, shap=t.shap.drop(index="A003")), "only in accounts.parquet (A003)"),
        (lambda t: replace(t, features=t.features.drop(columns="segment")), "different features"),
        (lambda t: replace(t, accounts=_set(t.accounts, 2, "probability", 1.5)), "outside [0, 1]"),
        (lambda t: replace(t, accounts=_set(t.accounts, 2, "account_id", "A001")), "duplicated"),
        (lambda t: replace(t, trend=t.trend.drop(columns="week")), "trend.csv lacks"),
    ],
)
def test_check_lists_names_what_does_not_fit(change, message):
    with pytest.raises(ReportError, match=re.escape(message)):
        check_lists(change(tiny_lists()))


def write_lists(lists: ListOutputs, lists_dir: Path) -> Path:
    """The tiny lists in the score stage's file layout (what `read_lists` reads)."""
    lists_dir.mkdir(parents=True)
    (lists_dir / "manifest.json").write_bytes(manifest_bytes(lists.manifest))
    lists.accounts.to_parquet(lists_dir / "accounts.parquet")
    lists.shap.reset_index().to_parquet(lists_dir / "shap.parquet")
    lists.features.reset_index().to_parquet(lists_dir / "features.parquet")
    lists.trend.to_csv(lists_dir / "trend.csv", index=False)
    return lists_dir


def test_read_lists_reads_the_typed_manifest_and_the_frames(tmp_path):
    lists = tiny_lists()
    read = read_lists(write_lists(lists, tmp_path / "lists"))
    assert read.manifest == lists.manifest
    assert str(read.manifest.as_of) == "2026-11-16" and read.manifest.capacity_per_csm == 2
    pd.testing.assert_frame_equal(read.shap, lists.shap)
    assert list(read.accounts["account_id"]) == list(lists.accounts["account_id"])
    check_lists(read)


def test_read_lists_names_what_is_missing_or_malformed(tmp_path):
    with pytest.raises(ReportError, match="run `churn score`"):
        read_lists(tmp_path / "absent")
    lists_dir = write_lists(tiny_lists(), tmp_path / "lists")
    (lists_dir / "trend.csv").unlink()
    with pytest.raises(ReportError, match=re.escape("lacks ['trend.csv']")):
        read_lists(lists_dir)
    lists_dir = write_lists(tiny_lists(), tmp_path / "bad_manifest")
    payload = json.loads((lists_dir / "manifest.json").read_text())
    del payload["model_version"]
    (lists_dir / "manifest.json").write_text(json.dumps(payload))
    with pytest.raises(ReportError, match="model_version"):
        read_lists(lists_dir)
    (lists_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        read_lists(lists_dir)


def test_importing_the_report_leaves_the_matplotlib_backend_alone():
    """No pyplot, no `matplotlib.use`: a notebook that imports the report keeps inline charts."""
    code = (
        "import sys, matplotlib; import pipeline.stages.report, pipeline.modeling.plots; "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
        "assert matplotlib.rcParams._get_backend_or_none() is None, 'backend chosen'"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_trust_needs_roc_auc_and_limits_say_when_the_model_loses():
    with pytest.raises(ReportError, match="roc_auc"):
        trust_metrics({"pr_auc": 0.3}, {})
    limits = known_limits(
        metrics={"roc_auc": 0.6, "health_score_roc_auc": 0.7, "segment_smb_rows": 12.0},
        feature_summary={"families_unavailable": ["training"]},
        warnings=[{"kind": "stale_table", "message": "usage is 9 days old"}],
        training_info={},
    )
    text = " ".join(limits)
    assert "no better than the rule-based health score" in text
    assert "Only 12 test rows for the SMB segment" in text
    assert "User training coverage" in text
    assert "usage is 9 days old" in text


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"top_features": 0}, "report.top_features"),
        ({"dependence_plots": "4"}, "report.dependence_plots"),
        ({"unknown": 1}, "report.unknown: unknown key"),
        ({"top_features": True}, "report.top_features"),
    ],
)
def test_report_settings_reject_bad_values(cfg, key):
    raw = {"base": {"as_of_date": "2026-11-16"}, "report": cfg}
    with pytest.raises(ConfigError, match=re.escape(key)):
        parse_config(raw)


def test_report_settings_default_and_accept_whole_numbers():
    config = parse_config({"base": {"as_of_date": "2026-11-16"}, "report": {"top_features": 3}})
    assert config.report == ReportSection(top_features=3, dependence_plots=4, largest_accounts=10)


class _Page(HTMLParser):
    """Collects the page's data-metric markers, image sources and every URL attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[dict] = []
        self.images: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.chunks: list[str] = []  # the text a reader sees (no style, no title)
        self._open: dict | None = None
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self._hidden += tag in ("style", "title", "script")
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            if attrs.get(name):
                self.urls.append(attrs[name])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if "data-metric" in attrs:
            self._open = {**attrs, "text": ""}

    def handle_data(self, data):
        if not self._hidden:
            self.chunks.append(data)
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        self._hidden -= tag in ("style", "title", "script")
        if tag == "span" and self._open is not None:
            self.metrics.append(self._open)
            self._open = None

    @property
    def text(self) -> str:
        return " ".join(self.chunks)


def parse_page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_page_is_self_contained_and_escapes_every_name():
    context = build_report(tiny_inputs(), small_settings())
    html = render_html(context)
    page = parse_page(html)
    assert "script" not in page.tags and "<script" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;img src=x" in html
    assert "segment &lt;b&gt;shifted&lt;/b&gt;" in html  # manifest warnings are data too
    assert 'http-equiv="Content-Security-Policy"' in html
    # only in-page anchors and embedded images: nothing to fetch
    assert all(u.startswith(("#", "data:image/png;base64,")) for u in page.urls), page.urls
    assert len(page.images) == len(context.figures) + len(context.drivers["dependence"])
    for src in page.images:
        png = base64.b64decode(src.split(",", 1)[1])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # captions: one sentence per plot
    assert html.count("<figcaption>") == len(page.images)


def test_page_counts_the_unassigned_accounts_and_points_to_their_list():
    lists = tiny_lists()
    first_three = lists.accounts.index < 3
    accounts = lists.accounts.assign(
        csm_id=lists.accounts["csm_id"].mask(first_three),
        csm_name=pd.Series(lists.accounts["csm_name"], dtype="string").mask(first_three),
    )
    unassigned = {
        "csv": "unassigned.csv",
        "html": "unassigned.html",
        "n_accounts": 2,
        "n_owned": 3,
        "by_reason": {"no_csm": 1, "unknown_csm": 2},
    }
    manifest = lists.manifest.model_copy(
        update={
            "n_unassigned": 3,
            "unassigned": parse_manifest(
                {**lists.manifest.model_dump(mode="json"), "unassigned": unassigned}
            ).unassigned,
        }
    )
    html = render_html(
        build_report(
            tiny_inputs(ListOutputs(manifest, accounts, lists.shap, lists.features, lists.trend)),
            small_settings(),
        )
    )
    page = parse_page(html)
    marker = next(m for m in page.metrics if m["data-metric"] == "unassigned_accounts")
    assert marker["data-value"] == "3" and marker["text"] == "3"
    text = " ".join(html.split())
    assert "1 with no CSM in the export, 2 whose CSM is not in the csms table" in text
    assert "the 2 with the most expected ARR at risk are on the unassigned list" in text
    assert "Unassigned" in text  # the By CSM table has their row
    assert "unassigned_accounts" not in render_html(build_report(tiny_inputs(), small_settings()))


def test_page_with_one_scored_week_says_the_trend_is_to_come():
    context = build_report(tiny_inputs(tiny_lists(weeks=1)), small_settings())
    assert "trend" not in context.figures
    assert "the trend appears once several weeks have been scored" in render_html(context)


# --- the demo: stage, numbers, browser -------------------------------------------------------


def _report_args(repo: Path, out: Path) -> list[str]:
    as_of = json.loads((next((repo / "reports" / "lists").iterdir()) / "manifest.json").read_text())
    return [
        "report",
        "--params",
        str(repo / "params.yaml"),
        "--lists",
        str(repo / "reports" / "lists" / as_of["as_of"]),
        "--metrics",
        str(repo / "reports" / "metrics.json"),
        "--plots",
        str(repo / "reports" / "plots"),
        "--backtest",
        str(repo / "reports" / "backtest.json"),
        "--feature-summary",
        str(repo / "reports" / "feature_summary.json"),
        "--models",
        str(repo / "models"),
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def leadership_page(demo_repo) -> Path:
    """`churn report` on the demo outputs; returns reports/leadership.html."""
    out = demo_repo / "reports" / "leadership.html"
    result = runner.invoke(app, _report_args(demo_repo, out))
    assert result.exit_code == 0, result.output
    return out


def test_cli_report_errors_exit_2(demo_repo, tmp_path):
    args = _report_args(demo_repo, tmp_path / "page.html")
    missing = list(args)
    missing[missing.index("--lists") + 1] = str(tmp_path / "no-lists")
    result = runner.invoke(app, missing)
    assert result.exit_code == 2
    assert "churn score" in result.output
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"pr_auc": 0.3}))
    no_auc = list(args)
    no_auc[no_auc.index("--metrics") + 1] = str(metrics)
    result = runner.invoke(app, no_auc)
    assert result.exit_code == 2 and "roc_auc" in result.output
    assert not (tmp_path / "page.html").exists()


def _displayed_number(text: str) -> tuple[float, float]:
    """The number a marker shows and half its last digit (the rounding it allows)."""
    text = text.strip()
    match = re.search(r"-?[\d,]*\.?\d+", text)
    assert match, text
    digits = match.group().replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    value, half = float(digits), 0.5 * 10**-decimals
    scale = {"%": 0.01, "k": 1e3, "M": 1e6}.get(text[match.end() : match.end() + 1], 1.0)
    return value * scale, half * scale


def test_headline_figures_are_the_numbers_in_metrics_json_backtest_and_lists(
    leadership_page, demo_repo
):
    page = parse_page(leadership_page.read_text())
    metrics = json.loads((demo_repo / "reports" / "metrics.json").read_text())
    backtest = json.loads((demo_repo / "reports" / "backtest.json").read_text())
    lists_dir = next((demo_repo / "reports" / "lists").iterdir())
    accounts = pd.read_parquet(lists_dir / "accounts.parquet")
    manifest = json.loads((lists_dir / "manifest.json").read_text())
    from_lists = {
        "accounts": float(len(accounts)),
        "arr_total": float(accounts["arr"].sum()),
        "expected_arr_at_risk": float(accounts["expected_arr_at_risk"].sum()),
        "accounts_on_lists": float(accounts["on_list"].sum()),
        "high_risk_accounts": float((accounts["risk_band"] == "high").sum()),
    }
    for segment, part in accounts.groupby("segment"):
        from_lists[f"segment:{segment}:expected_arr_at_risk"] = float(
            part["expected_arr_at_risk"].sum()
        )
    sources = {"metrics": metrics, "backtest": backtest, "lists": from_lists}
    shown = {(m["data-source"], m["data-metric"]) for m in page.metrics}
    required = {
        ("metrics", "roc_auc"),
        ("metrics", "health_score_roc_auc"),
        ("metrics", "oracle_roc_auc"),
        ("metrics", "pit_oracle_roc_auc"),
        ("metrics", "lift_top_decile"),
        ("metrics", "precision_at_capacity"),
        ("metrics", "ece"),
        ("backtest", "backtest_precision_at_capacity"),
        ("backtest", "backtest_lead_time_arr_share"),
        ("lists", "expected_arr_at_risk"),
        ("lists", "accounts"),
    }
    assert required <= shown, required - shown
    checked = 0
    for marker in page.metrics:
        source = sources[marker["data-source"]]
        if marker["data-metric"] not in source:
            continue  # e.g. the share of ARR at risk: a ratio of two checked figures
        expected = source[marker["data-metric"]]
        if expected is None:
            assert marker["data-value"] == "" and marker["text"].strip() == "n/a"
            continue
        assert float(marker["data-value"]) == pytest.approx(expected, rel=1e-12), marker
        shown_value, rounding = _displayed_number(marker["text"])
        assert abs(shown_value - expected) <= rounding * (1 + 1e-9), marker
        checked += 1
    assert checked >= len(required)
    # the lists' own totals agree with the page's
    assert from_lists["expected_arr_at_risk"] == pytest.approx(
        manifest.get("expected_arr_at_risk", from_lists["expected_arr_at_risk"]), abs=0.01
    )


def _artifact_dir() -> Path:
    return Path(os.environ.get("CHURN_TEST_ARTIFACTS") or ROOT / "test-artifacts")


def test_report_renders_in_headless_chromium(leadership_page):
    with Browser(width=1280, height=900) as page:
        page.load(leadership_page)
        images = page.evaluate(
            "Promise.all(Array.from(document.images).map(img => img.decode().then("
            "() => ({alt: img.alt, width: img.naturalWidth, height: img.naturalHeight}),"
            "() => ({alt: img.alt, width: 0, height: 0}))))",
        )
        title = page.evaluate("document.title")
        sections = page.evaluate("Array.from(document.querySelectorAll('h2'), h => h.textContent)")
        shot = page.full_page_screenshot(_artifact_dir() / "leadership_report.png")
        errors = page.errors()
        requests = page.requested_urls()
    assert errors == []
    assert len(images) >= 8
    broken = [img["alt"] for img in images if img["width"] == 0 or img["height"] == 0]
    assert broken == []
    assert title.startswith("Churn risk report")
    assert sections == [
        "What drives churn",
        "Where the risk is",
        "Can we trust it",
        "Trend",
        "Model card",
    ]
    # the page itself and its embedded images: nothing else was fetched
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    assert shot.stat().st_size > 50_000
    with shot.open("rb") as f:
        header = f.read(24)
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    assert width == 1280 and height > 2000


def test_same_inputs_give_the_same_page():
    """Byte-identical output for identical inputs: no timestamps, no random jitter."""
    first = render_html(build_report(tiny_inputs(), small_settings()))
    assert first == render_html(build_report(tiny_inputs(), small_settings()))


def test_headline_compares_with_the_best_baseline_and_says_when_it_wins():
    from pipeline.stages.report.words import trust_summary

    wins = trust_summary({"roc_auc": 0.80, "health_score_roc_auc": 0.62, "logreg_roc_auc": 0.83})
    assert "a plain logistic regression on the same signals does better (0.830)" in wins
    assert "prefer it" in wins and "health score reaches 0.620" in wins
    ahead = trust_summary({"roc_auc": 0.88, "health_score_roc_auc": 0.77, "logreg_roc_auc": 0.80})
    assert "better than the best baseline, a plain logistic regression" in ahead
    tie = trust_summary({"roc_auc": 0.80, "health_score_roc_auc": 0.802})
    assert "no better than the rule-based health score" in tie
    fair = trust_summary({"roc_auc": 0.88, "pit_oracle_roc_auc": 0.90, "oracle_roc_auc": 0.93})
    assert "(the simulator's point-in-time probabilities) is 0.900" in fair
    assert "0.930 knowing each account's state just before its renewal" in fair


def test_a_near_chance_or_tiny_model_is_flagged_and_names_no_drivers():
    near_chance = {**TINY_METRICS, "roc_auc": 0.56, "roc_auc_low": 0.47, "roc_auc_high": 0.64}
    context = build_report(tiny_inputs(metrics=near_chance), small_settings())
    assert (
        context.trust["warning"] and "not reliably better than chance" in context.trust["warning"]
    )
    assert context.drivers["top_actionable"] == []
    html = " ".join(render_html(context).split())
    assert 'data-warning="weak_model"' in html and "strongest drivers" not in html
    tiny = tiny_inputs(training_info={"split": {}, "best_iteration": 2})
    assert "stopped after 2 trees" in build_report(tiny, small_settings()).trust["warning"]
    healthy = build_report(tiny_inputs(), small_settings())
    assert healthy.trust["warning"] is None and healthy.drivers["top_actionable"]


def test_signals_without_effect_or_variance_are_never_named_as_drivers():
    lists = tiny_lists()
    top = lists.shap.abs().mean().idxmax()
    features = lists.features.assign(**{top: 1.0})  # one value for every account
    shap = lists.shap.assign(**{lists.shap.columns[-1]: 0.0})  # no effect at all
    context = build_report(
        tiny_inputs(ListOutputs(lists.manifest, lists.accounts, shap, features, lists.trend)),
        small_settings(),
    )
    named = {d["feature"] for d in context.drivers["top_actionable"]}
    named |= {d["feature"] for d in context.drivers.get("top", [])}
    assert top not in named and lists.shap.columns[-1] not in named


def test_the_model_card_says_how_the_model_was_chosen_and_whether_the_lead_is_real():
    from pipeline.stages.report.words import selection_summary

    def info(chosen_low: float) -> dict:
        return {
            "selection": {
                "metric": "pr_auc",
                "chosen": "blend",
                "folds": [{}, {}, {}],
                "candidates": {
                    "lightgbm": {"score": 0.55, "low": 0.47, "high": 0.62},
                    "logistic": {"score": 0.54, "low": 0.48, "high": 0.61},
                    "blend": {"score": 0.57, "low": chosen_low, "high": 0.64},
                },
            }
        }

    close = selection_summary(info(0.49))
    assert close.startswith("Chosen by PR-AUC (how well churners are ranked at the top) on 3")
    assert close.index("blend of the two 0.570") < close.index("LightGBM 0.550")
    assert "within the noise" in close
    assert "beyond the noise" in selection_summary(info(0.56))
    assert selection_summary({"split": {}}) is None  # a model from before selection


def test_first_screen_holds_the_total_its_change_the_books_and_the_largest_accounts():
    lists = tiny_lists(weeks=3)
    context = build_report(
        tiny_inputs(lists), small_settings().model_copy(update={"currency": "€"})
    )
    first = context.first_screen
    accounts = lists.accounts
    assert first["at_risk"].value == pytest.approx(accounts["expected_arr_at_risk"].sum())
    assert first["at_risk"].display.startswith("€")
    # trend.csv's own weeks are compared (1,000, 2,000, 3,000), never the lists with the trend
    assert first["change"] == "up €1,000 (+50.0%) since 2026-11-09"
    assert first["change_value"] == pytest.approx(1000.0)
    # CSM books with their exposure: the share of the book's own ARR at risk
    for book in first["csms"]:
        own = accounts[accounts["csm_name"] == book["csm_name"]]
        assert book["arr_at_risk_share"] == pytest.approx(
            own["expected_arr_at_risk"].sum() / own["arr"].sum()
        )
    names = [a["account_name"] for a in first["accounts"]]
    assert len(names) == 5
    assert names == list(largest_at_risk(accounts, 5)["account_name"])
    assert {s["name"] for s in first["segments"]} <= {"SMB", "Mid-market", "Enterprise"}
    html = render_html(context)
    assert "up €1,000 (+50.0%) since 2026-11-09" in html and "$" not in parse_page(html).text


def test_no_earlier_week_is_said_not_invented():
    context = build_report(tiny_inputs(tiny_lists(weeks=1)), small_settings())
    assert context.first_screen["change"] == "no earlier week to compare with"
    assert context.first_screen["change_value"] is None


def test_drivers_say_which_way_they_push_and_precision_is_defined_once():
    context = build_report(tiny_inputs(), small_settings())
    directions = {d["feature"]: d["direction"] for d in context.drivers["features"]}
    # the tiny SHAP values: fewer active users and more SLA breaches raise risk
    assert directions["active_users_30d"].startswith("lower ")
    assert directions["sla_breaches_90d"].startswith("higher ")
    assert directions["active_users_30d"].endswith("raises risk")
    html = render_html(context)
    assert html.count("Precision means") == 1
    assert "log-odds" not in html and "SHAP" not in parse_page(html).text
