"""``kick dashboard``: one self-contained HTML file, checked in headless Chromium (skipped where it is absent)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from experiment_reports import outcomes, report, write

from kick_checks.cli import main
from kick_checks.experiments.dashboard import dashboard_data
from kick_checks.experiments.store import load_store

SWEEP = Path(__file__).parent.parent / "docs" / "sweep"
CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (apt-get install chromium; "
                                                             ".ci/run installs it)")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> tuple[Path, int]:
    """Three committed sweep reports, two runs of a toy model (B lost q000), a truncated file; the HTML built by
    ``kick dashboard``. Returns the file and the number of experiments it must show."""
    folder = tmp_path_factory.mktemp("store")
    for name in ("wanda-s50", "sparsegpt-2of4", "gptq-4bit"):
        shutil.copy(SWEEP / f"{name}.json", folder / f"{name}.json")
    dense = {"factoid_qa": outcomes(0.8, 40, seed=1)}
    write(folder / "toy-a.json", report({"method": "wanda", "sparsity": 0.3},
                                        {"factoid_qa": outcomes(0.75, 40, seed=2, right=(0,))}, dense,
                                        blocks=[0.01, 0.02, 0.05, 0.3]))
    write(folder / "toy-b.json", report({"method": "magnitude", "sparsity": 0.5},
                                        {"factoid_qa": outcomes(0.4, 40, seed=3, wrong=(0,))}, dense,
                                        size=800_000, blocks=[0.02, 0.9, 1.5, 2.0]))
    (folder / "truncated.json").write_text('{"tasks": [')
    out = folder / "dashboard.html"
    assert main(["dashboard", str(folder), "--out", str(out)]) == 0
    return out, 3 + 1 + 2 + 1  # sweep runs, their dense parent, toy runs, theirs


def test_the_file_is_self_contained_and_holds_every_experiment(dashboard):
    path, count = dashboard
    html = path.read_text()
    assert html.count("<script") == 3 and "plotly.js v" in html  # data, the plotting library, the page's script
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
    assert "src=" not in markup and "http" not in markup  # nothing is fetched: it opens offline
    store = load_store([path.parent])
    data = dashboard_data(store)
    assert len(data["experiments"]) == count and len(store.problems) == 1
    toy_b = next(row for row in data["experiments"] if row["id"] == "toy-b")
    assert toy_b["flagged_block"] == 1 and toy_b["size"] == 800_000 and toy_b["prefill"] == 900.0
    old = next(row for row in data["experiments"] if row["id"] == "gptq-4bit")
    assert old["size_derived"] and old["prefill"] is None and "efficiency" in old["missing"]
    assert data["texts"]["factoid_qa"]["q000"][0] == "Question number 0?"


def chromium_dom(page: Path, fragment: str, profile: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message (errors included) Chromium logged."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000",
               "--window-size=1400,2000", "--dump-dom", f"{page.as_uri()}#{fragment}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def between(html: str, start: str, end: str) -> str:
    return html[html.index(start):html.index(end, html.index(start))]


@needs_chromium
def test_chromium_shows_rows_the_lost_item_and_the_charts_without_errors(dashboard, tmp_path):
    path, count = dashboard
    dom, console = chromium_dom(path, "a=toy-a&b=toy-b&task=factoid_qa&x=size&y=factoid_qa", tmp_path / "profile")
    assert console == [], console
    assert between(dom, '<div id="errors"', "</div>").endswith('role="alert">')  # the page's error box is empty
    assert len(re.findall(r"<tr data-experiment=", between(dom, "<tbody>", "</tbody>"))) == count
    assert "skipped " in dom and "truncated.json" in dom
    lost = between(dom, '<div class="items lost">', '<div class="items gained">')
    assert 'data-item="q000"' in lost and "Question number 0?" in lost and "wrong 0" in lost
    assert re.search(r'id="diff-summary">factoid_qa: A 0\.\d+ → B 0\.\d+ on 40 items; B lost \d+', dom)
    tradeoff = between(dom, 'id="tradeoff"', 'id="diff-section"')
    assert "main-svg" in tradeoff and len(re.findall(r'class="point"', tradeoff)) >= count - 1
    assert "Pareto front" in tradeoff
    divergence = between(dom, 'id="divergence"', "</section>")
    assert "main-svg" in divergence and "toy-b" in divergence


@needs_chromium
def test_chromium_filters_and_sorts_from_the_link(dashboard, tmp_path):
    path, _ = dashboard
    dom, console = chromium_dom(path, "method=wanda&sort=size&desc=1", tmp_path / "profile")
    assert console == [], console
    rows = re.findall(r'<tr data-experiment="([^"]+)"', between(dom, "<tbody>", "</tbody>"))
    assert rows == ["wanda-s50", "toy-a"]  # both wanda runs, larger stored size first
    assert "2 of 7 experiments" in dom
