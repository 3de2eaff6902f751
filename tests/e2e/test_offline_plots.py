"""`dvc plots diff` and `dvc plots show` render offline, with nothing but the page itself.

DVC's own page loads Vega from cdn.jsdelivr.net and stays blank without network; `.dvc/config`
sets `plots.html_template` to `.dvc/html/offline.html`, which inlines the libraries. The test
runs real DVC in a scratch git + DVC repository holding this repository's `.dvc/config`, its
template and the `plots:` of its dvc.yaml (on a few rows of data), then opens the page in
headless Chromium: every chart must be drawn, with no request but the file and data: URIs.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.chromium import Browser

ROOT = Path(__file__).resolve().parents[2]
DVC = [sys.executable, "-m", "dvc"]
# What the plots in dvc.yaml read: a few rows of each, enough to draw a line.
PLOT_DATA = {
    "roc.csv": "fpr,tpr\n0.0,0.0\n0.1,0.5\n0.4,0.8\n1.0,1.0\n",
    "precision_recall.csv": "recall,precision\n0.0,1.0\n0.5,0.6\n1.0,0.1\n",
    "calibration.csv": "predicted,observed\n0.05,0.04\n0.2,0.25\n0.6,0.55\n",
    "lift.csv": "population_share,captured_share\n0.0,0.0\n0.1,0.45\n1.0,1.0\n",
}
# Resolves once every chart is drawn (vega-embed renders asynchronously after the load event).
CHARTS = """
new Promise(resolve => {
  const started = Date.now();
  const look = () => {
    const charts = Array.from(document.querySelectorAll('.vega-embed .marks'), el => {
      const box = el.getBoundingClientRect();
      return {tag: el.tagName.toLowerCase(), width: box.width, height: box.height};
    });
    if (charts.length >= %d || Date.now() - started > 15000) resolve(charts);
    else setTimeout(look, 100);
  };
  look();
})
"""


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    for key in ("GIT_DIR", "GIT_WORK_TREE"):
        env.pop(key, None)
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


def _plot_definitions() -> list[dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]


def _scratch_repo(work: Path, *, repo_config: bool) -> Path:
    """A committed git + DVC repository with the plots of dvc.yaml, then a changed ROC curve
    in the workspace, so `dvc plots diff` has two revisions to draw."""
    work.mkdir()
    _run(["git", "init", "-q"], work)
    _run([*DVC, "init", "-q"], work)
    if repo_config:
        shutil.copy(ROOT / ".dvc" / "config", work / ".dvc" / "config")
        shutil.copytree(ROOT / ".dvc" / "html", work / ".dvc" / "html")
    (work / "dvc.yaml").write_text(yaml.safe_dump({"plots": _plot_definitions()}))
    plots = work / "reports" / "plots"
    plots.mkdir(parents=True)
    for name, text in PLOT_DATA.items():
        (plots / name).write_text(text)
    _run(["git", "add", "-A"], work)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "plots"], work)
    (plots / "roc.csv").write_text("fpr,tpr\n0.0,0.0\n0.1,0.6\n0.4,0.9\n1.0,1.0\n")
    return work


def _page(repo: Path, command: str) -> Path:
    out = repo / "plots_page"
    _run([*DVC, "plots", command, "-o", str(out)], repo)
    page = out / "index.html"
    assert page.is_file()
    return page


def test_the_repository_configures_the_offline_template():
    """`plots.html_template` (relative to .dvc/) names a template DVC accepts, with no CDN."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    template = ROOT / ".dvc" / config["plots"]["html_template"]
    text = template.read_text(encoding="utf-8")
    assert "{plot_divs}" in text  # DVC refuses a template without it
    # DVC's CDN <script src> tags go where the scripts placeholder is: there must be none
    assert "{scripts}" not in text
    assert "<script src" not in text.replace(" ", "")
    for library in ("vega@5", "vega-lite@5", "vega-embed@6"):
        assert library in text
    assert text.count("Redistribution and use in source and binary forms") == 3  # licences
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", str(template.relative_to(ROOT))], cwd=ROOT
    )
    assert ignored.returncode == 1, "the template would not be committed"  # 0: ignored


@pytest.mark.slow
def test_dvc_default_page_needs_the_network(tmp_path):
    """Why the template exists: without it, DVC's page loads its libraries from a CDN."""
    text = _page(_scratch_repo(tmp_path / "repo", repo_config=False), "show").read_text()
    assert '<script src="https://cdn.jsdelivr.net/npm/vega@' in text


@pytest.mark.slow
@pytest.mark.parametrize("command", ["diff", "show"])
def test_dvc_plots_page_renders_offline(tmp_path, command):
    page_file = _page(_scratch_repo(tmp_path / "repo", repo_config=True), command)
    expected = len(_plot_definitions())
    with Browser(width=1280, height=900) as page:
        page.load(page_file)
        charts = page.evaluate(CHARTS % expected)
        artifacts = Path(os.environ.get("CHURN_TEST_ARTIFACTS") or ROOT / "test-artifacts")
        page.full_page_screenshot(artifacts / f"dvc_plots_{command}.png")
        errors = page.errors()
        requests = page.requested_urls()
    assert errors == []
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests
    assert len(charts) == expected, charts
    assert all(c["tag"] in ("canvas", "svg") for c in charts), charts
    assert all(c["width"] > 100 and c["height"] > 100 for c in charts), charts
    if command == "diff":  # the charts hold both revisions: the workspace and the last commit
        text = page_file.read_text()
        assert '"rev": "workspace"' in text and '"rev": "HEAD"' in text
