"""``kick dashboard``: one self-contained HTML file, checked in headless Chromium (skipped where it is absent)."""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from experiment_reports import outcomes, report, write

from kick_checks.cli import main
from kick_checks.experiments.dashboard import dashboard_data
from kick_checks.experiments.store import load_store
from kick_checks.session import shipped_baselines_dir

SWEEP = Path(__file__).parent.parent / "docs" / "sweep"
CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (apt-get install chromium; "
                                                             ".ci/run installs it)")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory) -> tuple[Path, int]:
    """Three committed sweep reports (100-item samples), three runs of a toy model (B lost q000; a 20-item run), a
    truncated file; the HTML built by ``kick dashboard``. Returns the file and the number of experiments it must
    show."""
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
    write(folder / "toy-small.json", report({"method": "magnitude", "sparsity": 0.7},
                                            {"factoid_qa": outcomes(0.3, 20, seed=4)}, dense,
                                            size=600_000, blocks=[0.05, 1.2, 2.0, 3.0]))
    (folder / "truncated.json").write_text('{"tasks": [')
    out = folder / "dashboard.html"
    assert main(["dashboard", str(folder), "--out", str(out)]) == 0
    return out, 3 + 1 + 3 + 1  # sweep runs, their dense parent, toy runs, theirs


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
    assert "2 of 8 experiments" in dom


#: Appended to a copy of the page: once it has drawn, lay out what a reader sees as JSON in <pre id="measured">.
MEASURE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const box = document.querySelector("#table-section .scroll").getBoundingClientRect();
  const heads = [...document.querySelectorAll("#experiments th[data-key^='task:']")].map((th) => {
    const rect = th.getBoundingClientRect();
    return { key: th.dataset.key, left: rect.left, right: rect.right };
  });
  const traces = (id) => document.getElementById(id).data.map((t) => ({ name: t.name, marker: (t.marker || {}).color,
                                                                         line: (t.line || {}).color }));
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({ box: { left: box.left, right: box.right }, heads,
                                     tradeoff: traces("tradeoff"), divergence: traces("divergence") });
  document.body.appendChild(out);
}, 100));
</script></body>"""


def cell(dom: str, experiment: str, task_index: int) -> str:
    """The ``<td>`` of a task score in an experiment's row (task columns follow pick, experiment and spec)."""
    row = re.search(rf'<tr data-experiment="{re.escape(experiment)}".*?</tr>', dom, re.S).group(0)
    return re.findall(r"<td.*?</td>", row, re.S)[3 + task_index]


@needs_chromium
def test_chromium_shows_items_per_score_keeps_the_scores_in_view_and_one_colour_per_method(dashboard, tmp_path):
    """A 20-item score is marked and says its n; at 1400 px every task column is in view without scrolling; a
    method has one colour in the trade-off and the divergence chart; the sweep's dense 0.520 says where it is from."""
    path, _ = dashboard
    page = tmp_path / "measured.html"
    page.write_text(path.read_text().replace("</body>", MEASURE))
    dom, console = chromium_dom(page, "x=size&y=factoid_qa", tmp_path / "profile")
    assert console == [], console
    measured = json.loads(html.unescape(between(dom, '<pre id="measured">', "</pre>").split(">", 1)[1]))
    assert len(measured["heads"]) == 5
    for head in measured["heads"]:
        assert measured["box"]["left"] <= head["left"] and head["right"] <= measured["box"]["right"], head

    factoid = 0  # the first task column
    small = cell(dom, "toy-small", factoid)
    assert "small-n" in small and "n=20" in small and "20 items: few" in small
    full = cell(dom, "wanda-s50", factoid)
    assert "small-n" not in full and "n=100" in full
    dense = html.unescape(cell(dom, "dense smollm2-135m (bfloat16)", factoid))
    assert "0.520" in dense and "n=100" in dense and "on the 100 items they answered" in dense
    shipped = json.loads((shipped_baselines_dir() / "smollm2-135m" / "factoid_qa.json").read_text())["score"]
    assert f"factoid_qa.json ({shipped:.3f} on 239 items) was recorded under other settings (decoding:" in dense

    methods = {row["id"]: row["method"] for row in dashboard_data(load_store([path.parent]))["experiments"]}
    marker_of = {trace["name"]: trace["marker"] for trace in measured["tradeoff"]
                 if trace.get("name") in methods.values()}
    assert {"wanda", "magnitude", "sparsegpt", "gptq"} <= set(marker_of)
    assert len(set(marker_of.values())) == len(marker_of)  # one colour per method, no two methods alike
    lines = [trace for trace in measured["divergence"] if trace.get("name") in methods]
    assert {trace["name"] for trace in lines} == {"toy-a", "toy-b", "toy-small"}
    for trace in lines:
        assert trace["line"] == marker_of[methods[trace["name"]]], trace
