// workhive dashboard: a small single-page app over /api/v1/ (docs/dashboard.md).
// No framework, nothing from the network but this server. Text from the
// cluster (task ids, output) is only ever set as textContent, never as HTML.
"use strict";

const STATES = ["pending", "ready", "assigned", "running", "succeeded", "failed", "cancelled"];
const COLORS = {};
const CSS = getComputedStyle(document.documentElement);
for (const s of STATES) COLORS[s] = CSS.getPropertyValue("--" + s).trim();
const CRITICAL = CSS.getPropertyValue("--critical").trim();
const COLLAPSE_OVER = 40; // a layer with more tasks is drawn as one block until expanded
const TABLE_ROWS = 500;
const REFETCH_GAP_MS = 2000;
const FAILOVER_AFTER_MS = 2500; // without the event stream this long, try a peer replica

const app = {
  route: null,
  status: null,
  series: [],
  project: null, // the project document of the page shown
  rowIndex: new Map(),
  source: null, // EventSource
  sourceProject: null,
  expanded: new Set(),
  lastFetch: 0,
  fetching: false,
  pending: false,
  view: { x: 20, y: 20, k: 1 },
  filter: { state: "", text: "" },
  failoverTimer: null,
};

// -- DOM helpers ---------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the CSP, attributes are not
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function stateTag(s) {
  return h("span", { class: "state s-" + s }, s);
}

function fmtTime(t) {
  if (!t) return "–";
  return new Date(t * 1000).toLocaleTimeString();
}

function fmtNum(v, digits) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v) && digits === undefined) return String(v);
  return v.toFixed(digits === undefined ? 2 : digits);
}

function fmtDur(s) {
  if (s === null || s === undefined) return "–";
  return s < 60 ? s.toFixed(2) + " s" : (s / 60).toFixed(1) + " min";
}

function progressBar(counts, total, id) {
  const bar = h("div", { class: "bar", "data-bar": id });
  for (const s of STATES) {
    const n = counts[s] || 0;
    if (!n || !total) continue;
    bar.append(h("span", { style: `width:${(100 * n) / total}%;background:${COLORS[s]}`, title: `${s}: ${n}` }));
  }
  return bar;
}

function countsRow(counts, pid) {
  return h(
    "div",
    { class: "counts" },
    STATES.map((s) =>
      h("span", { class: "c" }, stateTag(s), " ", h("b", { "data-count": `${pid}:${s}` }, counts[s] || 0)),
    ),
  );
}

function setMain(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function act(path) {
  const headers = { "X-Workhive-Action": "1", "Content-Type": "application/json" };
  const token = document.getElementById("token").value.trim();
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, { method: "POST", headers, body: "{}" });
  const body = await r.json().catch(() => ({}));
  return { ok: r.ok, status: r.status, body };
}

// -- routing and the live feed ---------------------------------------------------

function parseRoute() {
  const parts = (location.hash.replace(/^#\/?/, "") || "").split("/").map(decodeURIComponent);
  if (parts[0] === "projects" && parts[1] && parts[2] === "tasks" && parts[3])
    return { page: "task", pid: parts[1], tid: parts.slice(3).join("/") };
  if (parts[0] === "projects" && parts[1]) return { page: "project", pid: parts[1] };
  if (parts[0] === "agents") return { page: "agents" };
  return { page: "overview" };
}

function connect(project) {
  if (app.source && app.sourceProject === project) return;
  if (app.source) app.source.close();
  const url = "/api/v1/events" + (project ? "?project=" + encodeURIComponent(project) : "");
  const src = new EventSource(url);
  app.source = src;
  app.sourceProject = project;
  const conn = document.getElementById("conn");
  src.onopen = () => {
    conn.dataset.state = "live";
    conn.textContent = "live";
    clearTimeout(app.failoverTimer);
    app.failoverTimer = null;
  };
  src.onerror = () => {
    conn.dataset.state = "reconnecting";
    conn.textContent = "reconnecting…";
    if (!app.failoverTimer) app.failoverTimer = setTimeout(tryPeers, FAILOVER_AFTER_MS);
  };
  src.addEventListener("status", (e) => onStatus(JSON.parse(e.data)));
  src.addEventListener("project", (e) => onProjectEvent(JSON.parse(e.data)));
  src.addEventListener("resync", () => refetch(true));
}

// This replica stopped answering: move to another replica's dashboard (the
// same page: the route is in the hash), the first that answers.
async function tryPeers() {
  app.failoverTimer = null;
  if (app.source && app.source.readyState === EventSource.OPEN) return;
  const peers = (app.status && app.status.peers) || [];
  for (const peer of peers) {
    try {
      await fetch(peer + "api/v1/status", { mode: "no-cors", cache: "no-store" });
      location.replace(peer + location.hash);
      return;
    } catch (err) {
      // that one is down too: try the next
    }
  }
  app.failoverTimer = setTimeout(tryPeers, FAILOVER_AFTER_MS);
}

function onStatus(st) {
  app.status = st;
  if (st.point && (!app.series.length || app.series[app.series.length - 1].t < st.point.t)) {
    app.series.push(st.point);
    if (app.series.length > 600) app.series.shift();
  }
  document.getElementById("served").textContent =
    `served by ${st.served_by.id} (${st.served_by.source}) · rev ${st.revision}`;
  const r = app.route;
  if (r.page === "overview") renderOverview();
  else if (r.page === "agents" || r.page === "task") refetch(false);
}

function onProjectEvent(ev) {
  const p = app.project;
  if (!p || ev.project !== p.id) return;
  if (ev.reload || ev.since > p.revision) {
    refetch(true);
    return;
  }
  if (ev.revision <= p.revision) return;
  for (const row of ev.tasks) {
    const i = app.rowIndex.get(row.id);
    if (i === undefined) {
      refetch(true);
      return;
    }
    p.tasks[i] = row;
  }
  p.counts = ev.counts;
  p.revision = ev.revision;
  const total = p.tasks.length;
  const done = ev.counts.succeeded + ev.counts.failed + ev.counts.cancelled;
  p.finished = total > 0 && done === total;
  p.progress = total ? done / total : 0;
  scheduleDraw();
}

// Re-read what the page shows, at most once per REFETCH_GAP_MS.
function refetch(force) {
  const now = Date.now();
  if (app.fetching) {
    app.pending = app.pending || force;
    return;
  }
  if (!force && now - app.lastFetch < REFETCH_GAP_MS) return;
  app.lastFetch = now;
  app.fetching = true;
  load(false).finally(() => {
    app.fetching = false;
    if (app.pending) {
      app.pending = false;
      setTimeout(() => refetch(true), REFETCH_GAP_MS);
    }
  });
}

async function load(first) {
  const r = app.route;
  try {
    if (r.page === "overview") {
      const st = await getJSON("/api/v1/status");
      app.series = st.series || [];
      app.status = st;
      renderOverview();
    } else if (r.page === "project") {
      const p = await getJSON("/api/v1/projects/" + encodeURIComponent(r.pid));
      const t0 = performance.now();
      setProject(p);
      if (first) renderProject();
      else scheduleDraw();
      window.__lastRenderMs = performance.now() - t0;
    } else if (r.page === "task") {
      const t = await getJSON(
        `/api/v1/projects/${encodeURIComponent(r.pid)}/tasks/${encodeURIComponent(r.tid)}`,
      );
      renderTask(t);
    } else if (r.page === "agents") {
      const a = await getJSON("/api/v1/agents");
      renderAgents(a.agents);
    }
  } catch (err) {
    if (first) setMain(h("div", { class: "card" }, h("h1", {}, "Not available"), h("p", { class: "muted" }, String(err.message || err))));
  }
}

function navigate() {
  app.route = parseRoute();
  for (const a of document.querySelectorAll("header nav a"))
    a.classList.toggle("active", a.dataset.nav === app.route.page);
  app.project = null;
  connect(app.route.page === "project" ? app.route.pid : "");
  app.lastFetch = Date.now();
  load(true);
}

// -- overview --------------------------------------------------------------------

const METRICS = [
  ["throughput", "tasks finished / s", 2],
  ["running", "tasks running", 0],
  ["utilization", "agent utilization", 2],
  ["steals", "steals (total)", 0],
  ["load_imbalance", "load imbalance (s)", 2],
  ["redistribution_latency", "redistribution latency (s)", 3],
  ["contention", "lock contention rate", 3],
  ["critical_path_progress", "critical-path progress", 2],
];

function sparkline(canvas, values) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 220;
  const hgt = canvas.clientHeight || 44;
  canvas.width = w * dpr;
  canvas.height = hgt * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, hgt);
  if (values.length < 2) return;
  let max = Math.max(...values);
  let min = Math.min(0, ...values);
  if (max === min) max = min + 1;
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * (w - 2) + 1;
    const y = hgt - 2 - ((v - min) / (max - min)) * (hgt - 4);
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  });
  g.strokeStyle = COLORS.running;
  g.lineWidth = 1.5;
  g.stroke();
  g.lineTo(w - 1, hgt);
  g.lineTo(1, hgt);
  g.closePath();
  g.fillStyle = "rgba(47,111,224,0.10)";
  g.fill();
}

function renderOverview() {
  const st = app.status;
  if (!st) return;
  const leader = st.leader;
  const projects = h(
    "div",
    { class: "card" },
    h("h2", {}, `Projects (${st.projects.length})`),
    st.projects.length === 0
      ? h("p", { class: "muted" }, "No project submitted yet.")
      : h(
          "table",
          { id: "projects" },
          h("tr", {}, h("th", {}, "project"), h("th", {}, "progress"), h("th", {}, "tasks per state"), h("th", {}, "submitted")),
          st.projects.map((p) =>
            h(
              "tr",
              { class: "click", "data-project": p.id, onclick: () => (location.hash = "#/projects/" + encodeURIComponent(p.id)) },
              h("td", {}, h("a", { href: "#/projects/" + encodeURIComponent(p.id) }, p.id), p.finished ? h("div", { class: "muted" }, "finished") : null),
              h("td", {}, progressBar(p.counts, p.total, p.id), h("div", { class: "muted" }, `${Math.round(p.progress * 100)} % of ${p.total}`)),
              h("td", {}, countsRow(p.counts, p.id)),
              h("td", { class: "muted" }, fmtTime(p.submitted_at)),
            ),
          ),
        ),
  );
  const cluster = h(
    "div",
    { class: "card" },
    h("h2", {}, "Cluster"),
    h(
      "dl",
      { class: "kv" },
      h("dt", {}, "leader"),
      h("dd", { id: "leader" }, leader ? `${leader.id} (${leader.address})` : "none"),
      h("dt", {}, "term"),
      h("dd", { id: "term" }, leader ? leader.term : "–"),
      h("dt", {}, "leader changes"),
      h("dd", { id: "leader-changes" }, st.leader_changes),
      h("dt", {}, "replicas"),
      h("dd", {}, st.replicas.map((r) => h("span", { class: "tag" }, r.id))),
      h("dt", {}, "other dashboards"),
      h("dd", { id: "peers" }, (st.peers || []).length ? st.peers.map((u) => h("a", { href: u + location.hash, class: "tag" }, u)) : "–"),
      h("dt", {}, "agents"),
      h("dd", { id: "agents-count" }, `${st.agents.registered} registered` + (st.agents.connected === null ? "" : `, ${st.agents.connected} with a session here`)),
      h("dt", {}, "slots"),
      h("dd", {}, `${st.agents.running} running / ${st.agents.slots} slots, ${st.agents.queued} queued`),
    ),
  );
  const history = h(
    "div",
    { class: "card" },
    h("h2", {}, "Leader history (seen by this replica)"),
    h(
      "table",
      { id: "leader-history" },
      h("tr", {}, h("th", {}, "since"), h("th", {}, "leader"), h("th", {}, "term")),
      st.leader_history.slice(-8).reverse().map((l) => h("tr", {}, h("td", {}, fmtTime(l.at)), h("td", {}, l.id), h("td", {}, l.term))),
    ),
  );
  const charts = h("div", { class: "charts" });
  const last = app.series[app.series.length - 1] || {};
  for (const [key, label, digits] of METRICS) {
    const c = h("canvas", { "data-metric": key });
    charts.append(h("div", { class: "chart" }, h("div", { class: "label" }, label, h("b", {}, fmtNum(last[key], digits))), c));
  }
  const metrics = h(
    "div",
    { class: "card" },
    h("h2", {}, "Metrics ", h("span", { class: "muted" }, st.metrics_source === "leader" ? "(from the leader's scheduler)" : "(from this replica's mirror; scheduler figures come from the leader)")),
    charts,
  );
  setMain(h("h1", {}, "Overview"), projects, h("div", { class: "grid" }, cluster, history), metrics);
  for (const [key] of METRICS) {
    const c = charts.querySelector(`canvas[data-metric="${key}"]`);
    sparkline(c, app.series.map((p) => p[key] || 0));
  }
}

// -- project page -------------------------------------------------------------------

function setProject(p) {
  app.project = p;
  app.rowIndex = new Map(p.tasks.map((t, i) => [t.id, i]));
  app.critical = new Set(p.critical_path);
  app.geometry = null;
}

let drawQueued = false;
function scheduleDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(() => {
    drawQueued = false;
    if (app.route.page !== "project" || !app.project) return;
    updateProjectHeader();
    drawDag();
    drawGantt();
    renderTable();
  });
}

function renderProject() {
  const p = app.project;
  const cancelBtn = h("button", { class: "danger", id: "cancel" }, "Cancel project");
  const msg = h("span", { class: "msg muted", id: "action-msg" });
  cancelBtn.addEventListener("click", async () => {
    if (!cancelBtn.classList.contains("armed")) {
      cancelBtn.classList.add("armed");
      cancelBtn.textContent = "Click again to cancel";
      setTimeout(() => {
        cancelBtn.classList.remove("armed");
        cancelBtn.textContent = "Cancel project";
      }, 4000);
      return;
    }
    cancelBtn.classList.remove("armed");
    cancelBtn.textContent = "Cancel project";
    const r = await act(`/api/v1/projects/${encodeURIComponent(p.id)}/cancel`);
    msg.textContent = r.ok ? "cancel requested" : `refused (${r.status}): ${r.body.error || ""}`;
  });
  const legend = h(
    "div",
    { class: "legend" },
    STATES.map((s) => h("span", {}, h("i", { style: "background:" + COLORS[s] }), s)),
    h("span", {}, h("i", { style: "background:" + CRITICAL }), "critical path"),
  );
  const dag = h("canvas", { id: "dag" });
  const search = h("input", { type: "search", id: "task-search", placeholder: "search tasks (id, agent, kind)", value: app.filter.text });
  const select = h("select", { id: "task-state" }, h("option", { value: "" }, "all states"), STATES.map((s) => h("option", { value: s }, s)));
  select.value = app.filter.state;
  search.addEventListener("input", () => {
    app.filter.text = search.value;
    renderTable();
  });
  select.addEventListener("change", () => {
    app.filter.state = select.value;
    renderTable();
  });
  setMain(
    h("h1", {}, "Project ", h("span", { id: "project-id" }, p.id)),
    h(
      "div",
      { class: "card" },
      h("div", { class: "toolbar" }, h("div", { id: "project-bar", style: "flex:1" }), cancelBtn, msg),
      h("div", { id: "project-counts" }),
      h("div", { class: "muted", id: "project-facts" }),
    ),
    h(
      "div",
      { class: "card" },
      h("div", { class: "toolbar" }, h("h2", { style: "margin:0" }, "DAG"), legend, h("span", { class: "spacer" }),
        h("span", { class: "muted" }, "drag to pan, wheel to zoom, click a collapsed layer to expand it, a task to open it"),
        h("button", { id: "dag-fit", onclick: () => { app.view = { x: 20, y: 20, k: fitScale() }; drawDag(); } }, "fit")),
      h("div", { class: "dag-wrap" }, dag),
    ),
    h("div", { class: "card" }, h("h2", {}, "Timeline per agent ", h("span", { class: "muted" }, "(▼ = a steal onto that agent)")), h("canvas", { id: "gantt" })),
    h(
      "div",
      { class: "card" },
      h("div", { class: "toolbar" }, h("h2", { style: "margin:0" }, "Tasks"), select, search, h("span", { class: "muted", id: "table-info" })),
      h("div", { class: "table-scroll" }, h("table", { id: "tasks" })),
    ),
  );
  setupDagInput(dag);
  const g = geometry();
  const kw = Math.min(1.5, (dag.clientWidth - 40) / Math.max(1, g.width));
  dag.style.height = Math.round(Math.max(220, Math.min(560, g.height * kw + 60))) + "px";
  app.view = { x: 20, y: 20, k: fitScale() };
  updateProjectHeader();
  drawDag();
  drawGantt();
  renderTable();
}

function updateProjectHeader() {
  const p = app.project;
  const bar = document.getElementById("project-bar");
  if (!bar) return;
  bar.replaceChildren(progressBar(p.counts, p.tasks.length, p.id));
  document.getElementById("project-counts").replaceChildren(countsRow(p.counts, p.id));
  document.getElementById("project-facts").textContent =
    `${p.tasks.length} tasks in ${p.layers} layers · ${Math.round(p.progress * 100)} % done` +
    (p.finished ? " · finished" : "") +
    ` · critical path ${p.critical_path.length} tasks, ${fmtDur(p.critical_seconds)} estimated · ${p.steals.length} steals seen · rev ${p.revision}`;
}

// Layout in world coordinates: a column per layer; a collapsed layer is one block.
const COL_W = 150;
const ROW_H = 16;
const NODE_W = 110;
const NODE_H = 11;
function geometry() {
  if (app.geometry) return app.geometry;
  const p = app.project;
  const layers = [];
  p.tasks.forEach((t, i) => {
    (layers[t.layer] = layers[t.layer] || []).push(i);
  });
  const pos = new Array(p.tasks.length);
  const blocks = [];
  let height = 0;
  layers.forEach((idx, L) => {
    if (!idx) return;
    const collapsed = idx.length > COLLAPSE_OVER && !app.expanded.has(L);
    if (collapsed) {
      const hb = Math.min(600, 40 + idx.length * 0.5);
      const b = { layer: L, x: L * COL_W, y: 0, w: NODE_W, h: hb, idx };
      blocks[L] = b;
      for (const i of idx) pos[i] = { x: b.x, y: b.y + hb / 2, block: b };
      height = Math.max(height, hb);
    } else {
      idx.forEach((i, r) => (pos[i] = { x: L * COL_W, y: r * ROW_H, block: null }));
      height = Math.max(height, idx.length * ROW_H);
    }
  });
  app.geometry = { pos, blocks, layers, width: layers.length * COL_W, height };
  return app.geometry;
}

function fitScale() {
  const c = document.getElementById("dag");
  const g = geometry();
  const w = c ? c.clientWidth : 1000;
  const hh = c ? c.clientHeight : 460;
  return Math.max(0.05, Math.min(1.5, (w - 40) / Math.max(1, g.width), (hh - 40) / Math.max(1, g.height)));
}

function drawDag() {
  const c = document.getElementById("dag");
  if (!c || !app.project) return;
  const t0 = performance.now();
  const p = app.project;
  const g = geometry();
  const dpr = window.devicePixelRatio || 1;
  const W = c.clientWidth;
  const H = c.clientHeight;
  if (c.width !== W * dpr || c.height !== H * dpr) {
    c.width = W * dpr;
    c.height = H * dpr;
  }
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  const v = app.view;
  ctx.setTransform(dpr * v.k, 0, 0, dpr * v.k, dpr * v.x, dpr * v.y);
  const anchorOut = (q) => (q.block ? [q.block.x + NODE_W, q.block.y + q.block.h / 2] : [q.x + NODE_W, q.y + NODE_H / 2]);
  const anchorIn = (q) => (q.block ? [q.block.x, q.block.y + q.block.h / 2] : [q.x, q.y + NODE_H / 2]);
  // edges (collapsed blocks share one edge per source/target pair)
  ctx.lineWidth = 1 / Math.max(v.k, 0.3);
  ctx.strokeStyle = "rgba(90,100,120,0.22)";
  ctx.beginPath();
  const seen = new Set();
  let edges = 0;
  const critEdges = [];
  p.tasks.forEach((t, i) => {
    const to = g.pos[i];
    for (const d of t.deps) {
      const j = app.rowIndex.get(d);
      if (j === undefined) continue;
      const from = g.pos[j];
      if (app.critical.has(t.id) && app.critical.has(d)) critEdges.push([from, to]);
      const key = (from.block ? "b" + from.block.layer : "t" + j) + ">" + (to.block ? "b" + to.block.layer : "t" + i);
      if (seen.has(key)) continue;
      seen.add(key);
      if (++edges > 30000) continue;
      const [x1, y1] = anchorOut(from);
      const [x2, y2] = anchorIn(to);
      ctx.moveTo(x1, y1);
      ctx.bezierCurveTo(x1 + 25, y1, x2 - 25, y2, x2, y2);
    }
  });
  ctx.stroke();
  ctx.strokeStyle = CRITICAL;
  ctx.lineWidth = 2.5 / Math.max(v.k, 0.5);
  ctx.beginPath();
  for (const [from, to] of critEdges) {
    const [x1, y1] = anchorOut(from);
    const [x2, y2] = anchorIn(to);
    ctx.moveTo(x1, y1);
    ctx.bezierCurveTo(x1 + 25, y1, x2 - 25, y2, x2, y2);
  }
  ctx.stroke();
  // collapsed layers: stacked state proportions
  for (const b of g.blocks) {
    if (!b) continue;
    const counts = {};
    let crit = false;
    for (const i of b.idx) {
      const t = p.tasks[i];
      counts[t.state] = (counts[t.state] || 0) + 1;
      crit = crit || app.critical.has(t.id);
    }
    let y = b.y;
    for (const s of STATES) {
      const n = counts[s] || 0;
      if (!n) continue;
      const hh = (b.h * n) / b.idx.length;
      ctx.fillStyle = COLORS[s];
      ctx.fillRect(b.x, y, NODE_W, hh);
      y += hh;
    }
    ctx.lineWidth = crit ? 2.5 : 1;
    ctx.strokeStyle = crit ? CRITICAL : "#5b6577";
    ctx.strokeRect(b.x, b.y, NODE_W, b.h);
    ctx.fillStyle = "#1d2330";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(`layer ${b.layer}: ${b.idx.length} tasks`, b.x, b.y - 4);
  }
  // task nodes
  const showText = v.k >= 0.6;
  ctx.font = "9px system-ui, sans-serif";
  p.tasks.forEach((t, i) => {
    const q = g.pos[i];
    if (q.block) return;
    ctx.fillStyle = COLORS[t.state] || "#999";
    ctx.fillRect(q.x, q.y, NODE_W, NODE_H);
    if (app.critical.has(t.id)) {
      ctx.lineWidth = 2;
      ctx.strokeStyle = CRITICAL;
      ctx.strokeRect(q.x, q.y, NODE_W, NODE_H);
    }
    if (showText) {
      ctx.fillStyle = t.state === "ready" || t.state === "assigned" || t.state === "pending" ? "#1d2330" : "#fff";
      ctx.fillText(t.id.length > 20 ? t.id.slice(0, 19) + "…" : t.id, q.x + 3, q.y + 8.5);
    }
  });
  window.__dagDrawMs = performance.now() - t0;
  c.dataset.drawn = String(p.tasks.length);
  c.dataset.collapsed = String(g.blocks.filter(Boolean).length);
  c.dataset.revision = String(p.revision);
}

function setupDagInput(c) {
  let drag = null;
  c.addEventListener("mousedown", (e) => {
    drag = { x: e.clientX, y: e.clientY, vx: app.view.x, vy: app.view.y, moved: false };
    c.style.cursor = "grabbing";
  });
  window.addEventListener("mousemove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    app.view.x = drag.vx + dx;
    app.view.y = drag.vy + dy;
    drawDag();
  });
  window.addEventListener("mouseup", (e) => {
    if (!drag) return;
    const click = !drag.moved;
    drag = null;
    c.style.cursor = "grab";
    if (click && e.target === c) dagClick(e);
  });
  c.addEventListener(
    "wheel",
    (e) => {
      e.preventDefault();
      const r = c.getBoundingClientRect();
      const mx = e.clientX - r.left;
      const my = e.clientY - r.top;
      const f = Math.exp(-e.deltaY * 0.0015);
      const k = Math.max(0.03, Math.min(4, app.view.k * f));
      app.view.x = mx - ((mx - app.view.x) * k) / app.view.k;
      app.view.y = my - ((my - app.view.y) * k) / app.view.k;
      app.view.k = k;
      drawDag();
    },
    { passive: false },
  );
}

function dagClick(e) {
  const c = document.getElementById("dag");
  const r = c.getBoundingClientRect();
  const wx = (e.clientX - r.left - app.view.x) / app.view.k;
  const wy = (e.clientY - r.top - app.view.y) / app.view.k;
  const g = geometry();
  const L = Math.floor(wx / COL_W);
  if (wx - L * COL_W > NODE_W) return;
  const b = g.blocks[L];
  if (b && wy >= b.y && wy <= b.y + b.h) {
    app.expanded.add(L);
    app.geometry = null;
    drawDag();
    return;
  }
  const idx = g.layers[L] || [];
  if (app.expanded.has(L) && idx.length > COLLAPSE_OVER && wy < -2) {
    app.expanded.delete(L);
    app.geometry = null;
    drawDag();
    return;
  }
  for (const i of idx) {
    const q = g.pos[i];
    if (!q.block && wy >= q.y && wy <= q.y + NODE_H) {
      location.hash = `#/projects/${encodeURIComponent(app.project.id)}/tasks/${encodeURIComponent(app.project.tasks[i].id)}`;
      return;
    }
  }
}

function drawGantt() {
  const c = document.getElementById("gantt");
  if (!c || !app.project) return;
  const p = app.project;
  const agents = [...new Set(p.tasks.filter((t) => t.agent && t.start).map((t) => t.agent))].sort();
  const rowH = 18;
  const left = 110;
  const W = c.clientWidth || 1000;
  const H = Math.max(60, agents.length * rowH + 30);
  const dpr = window.devicePixelRatio || 1;
  c.style.height = H + "px";
  c.width = W * dpr;
  c.height = H * dpr;
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, W, H);
  g.font = "11px system-ui, sans-serif";
  if (!agents.length) {
    g.fillStyle = "#6b7280";
    g.fillText("No task has started yet.", 10, 30);
    return;
  }
  const now = Date.now() / 1000;
  let t0 = Infinity;
  let t1 = -Infinity;
  for (const t of p.tasks) {
    if (!t.start) continue;
    t0 = Math.min(t0, t.start);
    t1 = Math.max(t1, t.end || now);
  }
  const span = Math.max(1e-3, t1 - t0);
  const X = (t) => left + ((t - t0) / span) * (W - left - 10);
  const row = new Map(agents.map((a, i) => [a, i]));
  agents.forEach((a, i) => {
    g.fillStyle = i % 2 ? "#f7f8fa" : "#fff";
    g.fillRect(0, i * rowH, W, rowH);
    g.fillStyle = "#374151";
    g.fillText(a.length > 16 ? a.slice(0, 15) + "…" : a, 4, i * rowH + 13);
  });
  for (const t of p.tasks) {
    if (!t.start || !row.has(t.agent)) continue;
    const y = row.get(t.agent) * rowH + 3;
    const x1 = X(t.start);
    const x2 = Math.max(x1 + 1, X(t.end || now));
    g.fillStyle = COLORS[t.state] || "#999";
    g.fillRect(x1, y, x2 - x1, rowH - 6);
    if (app.critical.has(t.id)) {
      g.strokeStyle = CRITICAL;
      g.lineWidth = 1.5;
      g.strokeRect(x1, y, x2 - x1, rowH - 6);
    }
  }
  g.fillStyle = "#d93b3b";
  for (const s of p.steals) {
    if (!row.has(s.to) || s.at < t0) continue;
    const x = X(Math.min(s.at, t1));
    const y = row.get(s.to) * rowH + 1;
    g.beginPath();
    g.moveTo(x - 4, y);
    g.lineTo(x + 4, y);
    g.lineTo(x, y + 6);
    g.closePath();
    g.fill();
  }
  const axisY = agents.length * rowH + 14;
  g.fillStyle = "#6b7280";
  for (let i = 0; i <= 5; i++) {
    const tt = t0 + (span * i) / 5;
    g.fillText(`+${(tt - t0).toFixed(1)}s`, X(tt) - (i === 5 ? 30 : 0), axisY);
  }
}

function renderTable() {
  const table = document.getElementById("tasks");
  if (!table || !app.project) return;
  const p = app.project;
  const text = app.filter.text.trim().toLowerCase();
  const rows = p.tasks.filter(
    (t) =>
      (!app.filter.state || t.state === app.filter.state) &&
      (!text || t.id.toLowerCase().includes(text) || (t.agent || "").toLowerCase().includes(text) || (t.kind || "").toLowerCase().includes(text)),
  );
  document.getElementById("table-info").textContent =
    rows.length > TABLE_ROWS ? `showing ${TABLE_ROWS} of ${rows.length} matching` : `${rows.length} matching`;
  const head = h("tr", {}, ["task", "state", "agent", "attempt", "layer", "duration", "priority", "kind", "branch"].map((c) => h("th", {}, c)));
  const now = Date.now() / 1000;
  table.replaceChildren(
    head,
    ...rows.slice(0, TABLE_ROWS).map((t) =>
      h(
        "tr",
        { class: "click", "data-task": t.id, onclick: () => (location.hash = `#/projects/${encodeURIComponent(p.id)}/tasks/${encodeURIComponent(t.id)}`) },
        h("td", {}, t.id, app.critical.has(t.id) ? h("span", { class: "tag", title: "on the critical path" }, "critical") : null),
        h("td", {}, stateTag(t.state)),
        h("td", {}, t.agent || "–"),
        h("td", { class: "num" }, t.attempt),
        h("td", { class: "num" }, t.layer),
        h("td", { class: "num" }, t.start ? fmtDur((t.end || now) - t.start) : "–"),
        h("td", { class: "num" }, t.priority),
        h("td", {}, t.kind || ""),
        h("td", {}, t.branch || ""),
      ),
    ),
  );
}

// -- task page ----------------------------------------------------------------------

function renderTask(t) {
  const pHref = "#/projects/" + encodeURIComponent(t.project);
  const kv = (pairs) => h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const link = (id) => h("a", { href: `${pHref}/tasks/${encodeURIComponent(id)}`, class: "tag" }, id);
  const claim = t.claim
    ? kv([
        ["agent", t.claim.agent],
        ["attempt", t.claim.attempt],
        ["started", t.claim.started ? "yes" + (t.claim.started_at ? " (seen " + fmtTime(t.claim.started_at) + ")" : "") : "no (queued)"],
        ["progress", t.claim.progress == null ? "–" : Math.round(100 * t.claim.progress) + "%" + (t.claim.progress_note ? " — " + t.claim.progress_note : "")],
        ["fence", t.claim.fence],
        ["lease", t.claim.lease_id || "–"],
      ])
    : h("p", { class: "muted" }, "no claim");
  const result = t.result
    ? h(
        "div",
        {},
        kv([
          ["outcome", stateTag(t.result.state)],
          ["agent", t.result.agent],
          ["attempt", t.result.attempt],
          ["duration", fmtDur(t.result.duration)],
          ["finished", fmtTime(t.result.finished_at)],
          ["reason", t.result.reason || "–"],
        ]),
        h("h2", { style: "margin-top:10px" }, "Output tail"),
        h("pre", { id: "output-tail" }, t.result.output_tail || "(no output)"),
      )
    : h("p", { class: "muted" }, "no result yet");
  const history = h(
    "table",
    { id: "task-history" },
    h("tr", {}, h("th", {}, "seen"), h("th", {}, "event"), h("th", {}, "details")),
    t.history.map((e) =>
      h(
        "tr",
        {},
        h("td", {}, fmtTime(e.at)),
        h("td", {}, e.event),
        h("td", {}, Object.entries(e).filter(([k]) => k !== "at" && k !== "event").map(([k, v]) => `${k}=${v}`).join(" ")),
      ),
    ),
  );
  setMain(
    h("h1", {}, h("a", { href: pHref }, t.project), " / ", h("span", { id: "task-id" }, t.id), " ", stateTag(t.state)),
    h(
      "div",
      { class: "grid" },
      h(
        "div",
        { class: "card" },
        h("h2", {}, "Task"),
        kv([
          ["state", stateTag(t.state)],
          ["attempt", `${t.attempt} of ${t.spec.max_attempts}`],
          ["priority", t.spec.priority],
          ["estimate", t.spec.estimate === null ? "learned" : fmtDur(t.spec.estimate)],
          ["kind", t.spec.kind || "–"],
          ["branch", t.spec.branch || "–"],
          ["requires", t.spec.requires.length ? t.spec.requires.map((r) => h("span", { class: "tag" }, r)) : "–"],
          ["depends on", t.spec.depends_on.length ? t.spec.depends_on.map(link) : "–"],
          ["needed by", t.spec.children.length ? t.spec.children.slice(0, 50).map(link) : "–"],
          ["payload", t.spec.payload === null ? "–" : h("code", {}, t.spec.payload)],
        ]),
      ),
      h("div", { class: "card" }, h("h2", {}, "Claim"), claim),
    ),
    h("div", { class: "card" }, h("h2", {}, "Result"), result),
    h("div", { class: "card" }, h("h2", {}, "Attempts and claims seen by this replica"), history),
  );
}

// -- agents page ---------------------------------------------------------------------

function renderAgents(agents) {
  const list = (items) =>
    items.length ? h("div", {}, items.slice(0, 8).map((k) => h("span", { class: "tag" }, k)), items.length > 8 ? ` +${items.length - 8}` : "") : "–";
  setMain(
    h("h1", {}, `Agents (${agents.length})`),
    h(
      "div",
      { class: "card" },
      h(
        "table",
        { id: "agents" },
        h("tr", {}, ["agent", "capabilities", "slots", "busy", "running", "queued", "predicted load", "speed", "session here", "last keepalive", "lease"].map((c) => h("th", {}, c))),
        agents.map((a) =>
          h(
            "tr",
            { "data-agent": a.id },
            h("td", {}, a.id),
            h("td", {}, a.capabilities.length ? a.capabilities.map((c) => h("span", { class: "tag" }, c)) : "–"),
            h("td", { class: "num" }, `${a.slots} (+${a.prefetch} queued)`),
            h("td", {}, h("div", { class: "bar", style: "min-width:80px" }, h("span", { style: `width:${Math.min(100, a.busy * 100)}%;background:${COLORS.running}` }))),
            h("td", {}, list(a.running)),
            h("td", {}, list(a.queued)),
            h("td", { class: "num" }, a.load_seconds === null ? "–" : fmtDur(a.load_seconds)),
            h("td", { class: "num", title: "times as long as the fleet's typical agent, learned from completions" }, a.speed_factor == null ? "–" : `×${a.speed_factor.toFixed(2)}`),
            h("td", {}, a.connected === null ? "(leader only)" : a.connected ? "yes" : "no"),
            h("td", { class: "num" }, a.last_keepalive_age === null ? "–" : fmtDur(a.last_keepalive_age) + " ago"),
            h("td", { class: "num" }, a.lease_id || "–"),
          ),
        ),
      ),
    ),
  );
}

// -- start ------------------------------------------------------------------------------

const tokenInput = document.getElementById("token");
tokenInput.value = sessionStorage.getItem("workhive-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("workhive-token", tokenInput.value));
window.addEventListener("hashchange", navigate);
window.addEventListener("resize", () => {
  if (app.route && app.route.page === "project") scheduleDraw();
  else if (app.route && app.route.page === "overview") renderOverview();
});
navigate();
