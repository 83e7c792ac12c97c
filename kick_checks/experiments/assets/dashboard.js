// kick-checks dashboard: reads the JSON block #kick-data and draws the table, tree, charts and item diff.
// State (filters, sort, the picked runs, axes) lives in location.hash, so a link reopens the same view.
"use strict";

const DATA = JSON.parse(document.getElementById("kick-data").textContent);
const RUNS = DATA.experiments;
const BY_ID = Object.fromEntries(RUNS.map((run) => [run.id, run]));
const TASKS = Object.keys(DATA.tasks);
const SHOWN_ITEMS = 200;
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
// One colour per method, fixed over all runs (not over the ones a filter leaves), so both charts and every view
// of them agree on what orange means.
const METHOD_COLORS = Object.fromEntries(distinct(RUNS.map((r) => r.method)).map((m, i) => [m, PALETTE[i % PALETTE.length]]));
const DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"];
// A score on fewer items than this is marked: for a rate its 95% interval is then wider than +-0.14.
const SMALL_N = 50;
const AXES = {
  size: { label: "stored size of the compressed layers (MB)", get: (r) => (r.size == null ? null : r.size / 1e6), lower: true },
  ratio: { label: "size relative to dense 16-bit", get: (r) => r.ratio, lower: true },
  prefill: { label: "prefill throughput (tokens/s, measured)", get: (r) => r.prefill, lower: false },
  decode: { label: "decode throughput (tokens/s, measured)", get: (r) => r.decode, lower: false },
  sparsity: { label: "sparsity", get: (r) => r.sparsity, lower: false },
};
const state = { model: "", method: "", bits: "", sparsity: "", q: "", sort: "", desc: false, a: "", b: "", task: "", x: "size", y: "" };

function reportError(message) {
  const box = document.getElementById("errors");
  box.textContent += (box.textContent ? "\n" : "") + "dashboard error: " + message;
}
window.addEventListener("error", (event) => reportError(event.message));

function esc(value) {
  return String(value == null ? "" : value).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function num(value, digits = 3) {
  return value == null || Number.isNaN(value) ? "\u2014" : Number(value).toFixed(digits);
}
function percent(value) {
  return value == null ? "\u2014" : (100 * value).toFixed(0) + "%";
}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  for (const key of Object.keys(state)) {
    if (params.has(key)) state[key] = key === "desc" ? params.get(key) === "1" : params.get(key);
  }
}
function writeHash() {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(state)) {
    if (value !== "" && value !== false) params.set(key, value === true ? "1" : value);
  }
  history.replaceState(null, "", "#" + params.toString());
}

function scoreOf(run, task) {
  const entry = run.tasks[task];
  return entry ? entry.score : null;
}

function itemsOf(run, task) {
  const entry = run.tasks[task];
  return entry && entry.n != null ? entry.n : null;
}
function isSmallN(run, task) {
  // perplexity counts 2048-token windows, not items: its nine windows are the whole text
  const n = itemsOf(run, task);
  return n != null && n < SMALL_N && DATA.tasks[task].metric !== "perplexity";
}
function scoreCell(run, task) {
  const n = itemsOf(run, task);
  const mark = isSmallN(run, task) ? "\u26a0 " : "";
  return esc(num(scoreOf(run, task), task === "perplexity" ? 1 : 3)) + (n == null ? "" : `<span class="n">${mark}n=${n}</span>`);
}
function scoreTitle(run, task) {
  const entry = run.tasks[task];
  if (!entry) return "";
  const n = itemsOf(run, task);
  const size = n == null ? "number of items unknown" : `${n} items` +
    (isSmallN(run, task) ? `: few, a rate on them has a 95% interval of about \u00b1${(0.98 / Math.sqrt(n)).toFixed(2)}` : "");
  return size + (entry.note ? "; " + entry.note : "");
}

function visibleRows() {
  const q = state.q.toLowerCase();
  return RUNS.filter((run) =>
    (!state.model || run.model === state.model) &&
    (!state.method || run.method === state.method) &&
    (!state.bits || String(run.bits == null ? "none" : run.bits) === state.bits) &&
    (!state.sparsity || String(run.sparsity) === state.sparsity) &&
    (!q || [run.id, run.label, run.pattern, run.file || ""].join(" ").toLowerCase().includes(q)));
}

function fillSelect(id, values, current, all = "all") {
  const select = document.getElementById(id);
  select.innerHTML = (all ? `<option value="">${esc(all)}</option>` : "") +
    values.map(([value, label]) => `<option value="${esc(value)}"${String(value) === String(current) ? " selected" : ""}>${esc(label)}</option>`).join("");
}
function distinct(values) {
  return [...new Set(values)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function renderFilters() {
  fillSelect("filter-model", distinct(RUNS.map((r) => r.model)).map((m) => [m, m]), state.model);
  fillSelect("filter-method", distinct(RUNS.map((r) => r.method)).map((m) => [m, m]), state.method);
  fillSelect("filter-bits", distinct(RUNS.map((r) => (r.bits == null ? "none" : String(r.bits)))).map((b) => [b, b]), state.bits);
  fillSelect("filter-sparsity", distinct(RUNS.map((r) => r.sparsity)).map((s) => [String(s), percent(s)]), state.sparsity);
  document.getElementById("filter-text").value = state.q;
  const ids = RUNS.map((r) => [r.id, `${r.id} (${r.label})`]);
  fillSelect("diff-a", ids, state.a, "pick A");
  fillSelect("diff-b", ids, state.b, "pick B");
  fillSelect("chart-y", TASKS.map((t) => [t, `${t} (${DATA.tasks[t].metric})`]), state.y, "");
  fillSelect("chart-x", Object.entries(AXES).map(([key, axis]) => [key, axis.label]), state.x, "");
}

function columns() {
  // The task scores come right after the run's name, so they stay in view on a laptop screen; the measured
  // figures and the spec's parts (also in "spec" and the filters) follow.
  const cols = [
    { key: "id", label: "experiment", text: true, get: (r) => r.id },
    { key: "label", label: "spec", text: true, get: (r) => r.label },
  ];
  for (const task of TASKS) {
    cols.push({ key: "task:" + task, label: task, task: true, get: (r) => scoreOf(r, task), html: (r) => scoreCell(r, task),
      cls: (r) => ((r.tasks[task] && r.tasks[task].verdict) || "") + (isSmallN(r, task) ? " small-n" : ""),
      title: (r) => scoreTitle(r, task) });
  }
  cols.push(
    { key: "size", label: "size MB", get: (r) => r.size, show: (r) => (r.size == null ? "\u2014" : (r.size_derived ? "\u2248" : "") + (r.size / 1e6).toFixed(1)), title: (r) => r.format || "" },
    { key: "ratio", label: "vs dense", get: (r) => r.ratio, show: (r) => percent(r.ratio) },
    { key: "prefill", label: "prefill tok/s", get: (r) => r.prefill, show: (r) => num(r.prefill, 0) },
    { key: "decode", label: "decode tok/s", get: (r) => r.decode, show: (r) => num(r.decode, 1) },
    { key: "kl", label: "KL", get: (r) => r.kl, show: (r) => num(r.kl, 3) },
    { key: "flagged_block", label: "breaks at", get: (r) => r.flagged_block, show: (r) => (r.flagged_block == null ? "\u2014" : "block " + r.flagged_block) },
    { key: "method", label: "method", text: true, get: (r) => r.method },
    { key: "sparsity", label: "sparsity", get: (r) => r.sparsity, show: (r) => percent(r.sparsity) },
    { key: "pattern", label: "pattern", text: true, get: (r) => (r.sparsity ? r.pattern : "") },
    { key: "bits", label: "bits", get: (r) => r.bits, show: (r) => (r.bits == null ? "" : r.bits) },
  );
  return cols;
}

function renderTable() {
  const cols = columns();
  const rows = visibleRows();
  const col = cols.find((c) => c.key === state.sort);
  if (col) {
    rows.sort((x, y) => {
      const a = col.get(x), b = col.get(y);
      if (a == null || b == null) return a == null ? (b == null ? 0 : 1) : -1;
      const order = a < b ? -1 : a > b ? 1 : 0;
      return state.desc ? -order : order;
    });
  }
  const table = document.getElementById("experiments");
  // task names break after "." and "_", so a task column is as wide as its scores, not its name
  table.tHead.innerHTML = "<tr><th>pick</th>" + cols.map((c) =>
    `<th data-key="${esc(c.key)}" class="${c.text ? "text" : ""}${c.task ? "task" : ""}${c.key === state.sort ? " sorted" + (state.desc ? "" : " asc") : ""}">${esc(c.label).replace(/([._])/g, "$1<wbr>")}</th>`).join("") + "</tr>";
  table.tBodies[0].innerHTML = rows.map((r) => {
    const classes = [r.dense ? "dense" : "", r.id === state.a ? "picked-a" : "", r.id === state.b ? "picked-b" : ""].join(" ");
    const missing = r.missing.length ? ` title="not in this report: ${esc(r.missing.join(", "))}"` : "";
    return `<tr data-experiment="${esc(r.id)}" class="${classes}"${missing}><td><button class="pick" data-pick="a">A</button><button class="pick" data-pick="b">B</button></td>` +
      cols.map((c) => `<td class="${c.text ? "text" : ""} ${c.cls ? esc(c.cls(r)) : ""}"${c.title ? ` title="${esc(c.title(r))}"` : ""}>${c.html ? c.html(r) : esc(c.show ? c.show(r) : c.get(r))}</td>`).join("") + "</tr>";
  }).join("");
  document.getElementById("row-count").textContent = `${rows.length} of ${RUNS.length} experiments`;
}

function renderTree() {
  const children = {};
  const roots = [];
  for (const run of RUNS) {
    if (run.parent_id && BY_ID[run.parent_id]) (children[run.parent_id] = children[run.parent_id] || []).push(run);
    else roots.push(run);
  }
  const firstTask = TASKS.find((t) => t !== "perplexity") || TASKS[0];
  const node = (run) => {
    const kids = (children[run.id] || []).sort((a, b) => (a.label < b.label ? -1 : 1));
    const derived = run.parent && run.parent.how ? ` \u2014 ${run.parent.how}` : "";
    const absent = run.parent && run.parent.in_store === false ? ` (parent ${run.parent.label} not in the store)` : "";
    const score = firstTask ? `${firstTask} ${num(scoreOf(run, firstTask))}` : "";
    return `<li><span class="node" data-node="${esc(run.id)}">${esc(run.label)}</span><span class="meta">${esc(run.id)}; ${esc(score)}${esc(derived)}${esc(absent)}</span>` +
      (kids.length ? "<ul>" + kids.map(node).join("") + "</ul>" : "") + "</li>";
  };
  const models = distinct(roots.map((r) => r.model));
  document.getElementById("tree").innerHTML = "<ul>" + models.map((model) =>
    `<li><strong>${esc(model)}</strong><ul>${roots.filter((r) => r.model === model).map(node).join("")}</ul></li>`).join("") +
    "</ul><p class=\"hint\">Click a run to diff it against its parent.</p>";
}

function paretoFront(points, lowerX, higherY) {
  const better = (p, q) => (lowerX ? p.x <= q.x : p.x >= q.x) && (higherY ? p.y >= q.y : p.y <= q.y) && (p.x !== q.x || p.y !== q.y);
  return points.filter((p) => !points.some((q) => better(q, p))).sort((p, q) => p.x - q.x);
}

function renderChart() {
  const task = state.y || TASKS.find((t) => t !== "perplexity") || TASKS[0];
  const axis = AXES[state.x] || AXES.size;
  const higherY = !DATA.tasks[task] || DATA.tasks[task].higher_is_better;
  const rows = visibleRows();
  const points = rows.map((r) => ({ x: axis.get(r), y: scoreOf(r, task), run: r })).filter((p) => p.x != null && p.y != null);
  const methods = distinct(points.map((p) => p.run.method));
  const traces = methods.map((method) => {
    const mine = points.filter((p) => p.run.method === method);
    return { type: "scatter", mode: "markers", name: method, x: mine.map((p) => p.x), y: mine.map((p) => p.y),
      text: mine.map((p) => `${p.run.id}<br>${p.run.label}${p.run.size_derived && state.x === "size" ? "<br>size derived from zero counts" : ""}`),
      hovertemplate: "%{text}<br>%{x:.3g}, %{y:.3f}<extra></extra>", marker: { size: 10, color: METHOD_COLORS[method] } };
  });
  for (const model of distinct(points.map((p) => p.run.model))) {
    const front = paretoFront(points.filter((p) => p.run.model === model), axis.lower, higherY);
    traces.push({ type: "scatter", mode: "lines+markers", name: `Pareto front (${model})`, x: front.map((p) => p.x), y: front.map((p) => p.y),
      text: front.map((p) => p.run.id), hovertemplate: "front: %{text}<extra></extra>",
      line: { dash: "dot", color: "#111" }, marker: { symbol: "circle-open", size: 16, color: "#111" } });
  }
  const lacking = rows.length - rows.filter((r) => axis.get(r) != null).length;
  document.getElementById("chart-note").textContent = `${points.length} experiments plotted` +
    (lacking ? `; ${lacking} have no ${axis.label} (reports made before kick-checks measured it)` : "") +
    (axis.lower ? "; lower x and " : "; higher x and ") + (higherY ? "higher" : "lower") + " score is better.";
  Plotly.react("tradeoff", traces, {
    margin: { t: 20, r: 20 }, xaxis: { title: { text: axis.label } },
    yaxis: { title: { text: `${task} (${DATA.tasks[task] ? DATA.tasks[task].metric : ""})` }, type: task === "perplexity" ? "log" : "linear" },
    legend: { orientation: "h", y: 1.12 },
  }, { displaylogo: false, responsive: true });
}

function aggregate(task, scores) {
  if (!scores.length) return null;
  const mean = scores.reduce((s, v) => s + v, 0) / scores.length;
  return DATA.tasks[task] && DATA.tasks[task].metric === "perplexity" ? Math.exp(mean) : mean;
}

function mcnemarP(lost, gained) {
  // one-sided P(X >= lost), X ~ Binomial(lost + gained, 1/2): how likely this many losses if nothing changed
  const n = lost + gained;
  if (n === 0) return 1;
  let logTerm = -n * Math.LN2, total = 0;
  for (let k = 0; k <= n; k++) {
    if (k > 0) logTerm += Math.log((n - k + 1) / k);
    if (k >= lost) total += Math.exp(logTerm);
  }
  return Math.min(1, total);
}

function itemHtml(task, id, answers, kind) {
  const [question, gold, category] = (DATA.texts[task] || {})[id] || ["", "", ""];
  const rows = [["item", `${id}${category ? " [" + category + "]" : ""}`]];
  if (question) rows.push(["question", question]);
  if (gold) rows.push(["gold", gold]);
  for (const [label, answer] of answers) if (answer != null) rows.push([label, answer]);
  return `<div class="item ${kind}" data-item="${esc(id)}">` + rows.map(([label, value], index) =>
    `<span>${esc(label)}</span><span class="${label === "question" ? "q" : index > 2 || label.startsWith("A") || label.startsWith("B") ? "ans" : ""}${label.startsWith("B") ? " b-answer" : ""}">${esc(value)}</span>`).join("") + "</div>";
}

function groupedItems(task, title, ids, answersOf, kind) {
  const groups = {};
  for (const id of ids) {
    const category = ((DATA.texts[task] || {})[id] || [])[2] || "no category";
    (groups[category] = groups[category] || []).push(id);
  }
  let shown = 0;
  let html = `<div class="items ${kind}"><h3>${esc(title)} (${ids.length})</h3>`;
  for (const category of Object.keys(groups).sort()) {
    html += `<h4>${esc(category)} (${groups[category].length})</h4>`;
    for (const id of groups[category]) {
      if (shown++ >= SHOWN_ITEMS) break;
      html += itemHtml(task, id, answersOf(id), kind);
    }
  }
  if (ids.length > SHOWN_ITEMS) html += `<p class="note">${ids.length - SHOWN_ITEMS} more not shown.</p>`;
  return html + "</div>";
}

function renderDiff() {
  const box = document.getElementById("diff");
  const a = BY_ID[state.a], b = BY_ID[state.b];
  const tasks = a && b ? TASKS.filter((t) => a.tasks[t] && b.tasks[t]) : [];
  fillSelect("diff-task", tasks.map((t) => [t, t]), state.task, "");
  if (!a || !b) { box.innerHTML = "<p class=\"note\">Pick A and B in the table (or click a run in the provenance tree).</p>"; return; }
  if (a.model_key !== b.model_key) { box.innerHTML = `<p class="note">${esc(a.id)} and ${esc(b.id)} are runs of different models: not comparable.</p>`; return; }
  const task = tasks.includes(state.task) ? state.task : tasks[0];
  if (!task) { box.innerHTML = "<p class=\"note\">A and B share no task.</p>"; return; }
  const itemsA = (DATA.items[a.id] || {})[task], itemsB = (DATA.items[b.id] || {})[task];
  const dense = b.dense_id && !a.dense && !b.dense ? (DATA.items[b.dense_id] || {})[task] : null;
  const sign = DATA.tasks[task].higher_is_better ? 1 : -1;
  if (itemsA && itemsB) {
    const shared = Object.keys(itemsA).filter((id) => id in itemsB);
    const lost = shared.filter((id) => sign * itemsB[id][0] < sign * itemsA[id][0]);
    const gained = shared.filter((id) => sign * itemsB[id][0] > sign * itemsA[id][0]);
    const scoreA = aggregate(task, shared.map((id) => itemsA[id][0])), scoreB = aggregate(task, shared.map((id) => itemsB[id][0]));
    const p = DATA.tasks[task].binary && DATA.tasks[task].higher_is_better ? `; McNemar one-sided p = ${mcnemarP(lost.length, gained.length).toPrecision(2)}` : "";
    const partial = shared.length !== Object.keys(itemsA).length || shared.length !== Object.keys(itemsB).length ?
      ` (the ${shared.length} items both answered: A has ${Object.keys(itemsA).length}, B ${Object.keys(itemsB).length})` : "";
    const answersOf = (id) => [["dense", dense && dense[id] ? dense[id][1] : null], ["A " + a.id, itemsA[id][1]], ["B " + b.id, itemsB[id][1]]];
    box.innerHTML = `<p id="diff-summary">${esc(task)}: A ${num(scoreA)} \u2192 B ${num(scoreB)} on ${shared.length} items${esc(partial)}; ` +
      `B lost ${lost.length}, gained ${gained.length}${esc(p)}</p><div class="columns">` +
      groupedItems(task, "lost by B", lost, answersOf, "lost") + groupedItems(task, "gained by B", gained, answersOf, "gained") + "</div>";
    return;
  }
  const recorded = (DATA.recorded[b.id] || {})[task];
  if (a.dense && recorded && itemsB) {
    const answersOf = (id) => [["A dense", "(right in dense)"], ["B " + b.id, itemsB[id] ? itemsB[id][1] : ""]];
    box.innerHTML = `<p id="diff-summary">${esc(task)}: as B's own gate compared it with dense: B lost ${recorded.lost.length}, gained ${recorded.gained} ` +
      `(dense ${num(recorded.dense)} \u2192 B ${num(scoreOf(b, task))}); the dense answers are not in this store, so gained items are only counted.</p>` +
      groupedItems(task, "lost by B", recorded.lost, answersOf, "lost");
    return;
  }
  const notes = Object.assign({}, (DATA.recorded[a.id] || {}).notes, (DATA.recorded[b.id] || {}).notes);
  box.innerHTML = `<p class="note">No items of ${esc(task)} for ${esc(itemsA ? b.id : a.id)}: ${esc(notes[task] || "the report holds none")}.</p>`;
}

function renderDivergence() {
  const rows = visibleRows().filter((r) => r.blocks);
  const note = document.getElementById("divergence-note");
  if (!rows.length) {
    note.textContent = `None of the ${visibleRows().length} experiments shown carries a divergence measurement (reports made before kick-checks measured it, or runs with --kick-no-measure).`;
    document.getElementById("divergence").hidden = true;
    return;
  }
  document.getElementById("divergence").hidden = false;
  note.textContent = "Relative difference of each block's output hidden states from the dense model on the fixed probe (mean over tokens); the ring marks the block that added the most.";
  const traces = [];
  const longest = Math.max(...rows.map((r) => r.blocks.length));
  const seen = {};
  rows.forEach((r) => {
    const picked = r.id === state.a || r.id === state.b;
    const color = METHOD_COLORS[r.method];
    const nth = seen[r.method] || 0;
    seen[r.method] = nth + 1;
    const dash = DASHES[nth % DASHES.length];  // the runs of one method share its colour and differ in dash
    traces.push({ type: "scatter", mode: "lines", name: r.id, x: r.blocks.map((_, i) => i), y: r.blocks, line: { width: picked ? 4 : 1.5, color, dash },
      hovertemplate: `${esc(r.label)}<br>block %{x}: %{y:.3g}<extra></extra>` });
    if (r.flagged_block != null) {
      traces.push({ type: "scatter", mode: "markers", showlegend: false, x: [r.flagged_block], y: [r.blocks[r.flagged_block]],
        marker: { symbol: "circle-open", size: 14, color, line: { width: 2, color } }, hovertemplate: `${esc(r.id)} added the most at block %{x}<extra></extra>` });
    }
  });
  Plotly.react("divergence", traces, { margin: { t: 20 }, legend: { orientation: "h", y: 1.12 },
    xaxis: { title: { text: "decoder block" }, dtick: longest > 40 ? 4 : 1, zeroline: false, range: [-0.5, longest - 0.5] },
    yaxis: { title: { text: "relative difference from dense" }, type: "log" } }, { displaylogo: false, responsive: true });
}

function renderSummary() {
  const runs = RUNS.filter((r) => r.file);
  document.getElementById("summary").textContent = `${runs.length} runs and ${RUNS.length - runs.length} dense parents, ` +
    `${distinct(RUNS.map((r) => r.model)).length} model(s); generated ${DATA.generated} by kick-checks ${DATA.version}.` +
    (runs.some((r) => r.missing.length) ? " Some reports predate the efficiency and divergence measurements: their cells show \u2014 (hover a row for what is missing)." : "");
  document.getElementById("problems").innerHTML = DATA.problems.map((p) => `<li>skipped ${esc(p)}</li>`).join("");
}

function render(parts) {
  for (const part of parts) {
    try { part(); } catch (error) { reportError(`${part.name}: ${error && error.stack ? error.stack : error}`); }
  }
  writeHash();
}
const ALL = [renderFilters, renderTable, renderTree, renderChart, renderDiff, renderDivergence];

function bind() {
  const onChange = (id, key, parts) => document.getElementById(id).addEventListener("change", (event) => { state[key] = event.target.value; render(parts); });
  onChange("filter-model", "model", ALL);
  onChange("filter-method", "method", ALL);
  onChange("filter-bits", "bits", ALL);
  onChange("filter-sparsity", "sparsity", ALL);
  document.getElementById("filter-text").addEventListener("input", (event) => { state.q = event.target.value; render([renderTable, renderChart, renderDivergence]); });
  onChange("diff-a", "a", [renderTable, renderDiff, renderDivergence]);
  onChange("diff-b", "b", [renderTable, renderDiff, renderDivergence]);
  onChange("diff-task", "task", [renderDiff]);
  onChange("chart-x", "x", [renderChart]);
  onChange("chart-y", "y", [renderChart]);
  document.getElementById("experiments").addEventListener("click", (event) => {
    const header = event.target.closest("th[data-key]");
    if (header) {
      state.desc = state.sort === header.dataset.key ? !state.desc : false;
      state.sort = header.dataset.key;
      render([renderTable]);
      return;
    }
    const button = event.target.closest("button[data-pick]");
    if (button) {
      state[button.dataset.pick] = button.closest("tr").dataset.experiment;
      render([renderFilters, renderTable, renderDiff, renderDivergence]);
    }
  });
  document.getElementById("tree").addEventListener("click", (event) => {
    const target = event.target.closest("[data-node]");
    if (!target) return;
    const run = BY_ID[target.dataset.node];
    state.b = run.id;
    state.a = run.parent_id || "";
    render([renderFilters, renderTable, renderDiff, renderDivergence]);
    document.getElementById("diff-section").scrollIntoView();
  });
}

readHash();
bind();
render(ALL);
