/* global document, window, fetch, sessionStorage, location, history, setTimeout, URLSearchParams, AbortSignal */
// The dashboard's script: polls the gateway's JSON and renders it. Every value from the
// server is set as text (never as HTML), so nothing a function or workflow returns can run
// in the page. A token, when the gateway needs one, comes from the URL's fragment
// (#token=..., never sent to the server or kept in its logs) or the form, and lives in this
// tab's session storage.

const OVERVIEW_MS = 2000;
const WORKFLOWS_MS = 3000;
const REQUEST_TIMEOUT_MS = 10000;
const VALUE_CHARS_MAX = 300;
const TOKEN_KEY = "boki-dashboard-token";

const $ = (id) => document.getElementById(id);
let timer = null;
let ticking = false;
let tickAgain = false;
let workflowsDueAt = 0;
let lastOverview = null;
let workflowsAvailable = false;
let selected = null;
let needToken = false;

function tokenFromFragment() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m === null) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function getJson(path, headers = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const res = await fetch(path, {
    headers: {
      accept: "application/json",
      ...headers,
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!res.ok) {
    const e =
      body && body.error ? body.error : { code: `HTTP_${res.status}`, message: text.slice(0, 200) };
    throw new HttpError(res.status, e.code, e.message);
  }
  return body;
}

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    if (c instanceof window.Node) {
      const td = document.createElement("td");
      td.appendChild(c);
      tr.appendChild(td);
    } else if (c && typeof c === "object") {
      tr.appendChild(el("td", c.text, c.className));
    } else {
      tr.appendChild(el("td", c));
    }
  }
  return tr;
}

function fill(tbody, rows, emptyText, columns) {
  tbody.replaceChildren(...rows);
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = el("td", emptyText, "muted");
    td.colSpan = columns;
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
}

const num = (v, digits = 0) =>
  v === null || v === undefined || Number.isNaN(v)
    ? "–"
    : v === Infinity
      ? "> 60000"
      : Number(v).toLocaleString("en-US", {
          maximumFractionDigits: digits,
          minimumFractionDigits: 0,
        });

function preview(v) {
  if (v === undefined) return "";
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > VALUE_CHARS_MAX ? `${s.slice(0, VALUE_CHARS_MAX)}…` : s;
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "status error" : "status muted";
}

function askForToken(message) {
  needToken = true;
  $("token-form").hidden = false;
  setStatus(message, true);
}

function renderCluster(cluster) {
  if (cluster === null) {
    $("term").textContent = "";
    fill($("nodes"), [], "no cluster view on this gateway", 5);
    fill($("logs"), [], "", 5);
    return;
  }
  if (cluster.error) {
    fill($("nodes"), [], `the cluster view failed: ${cluster.error}`, 5);
    return;
  }
  $("term").textContent = cluster.term === null ? "term ?" : `term ${cluster.term}`;
  fill(
    $("nodes"),
    cluster.nodes.map((n) =>
      row([
        n.id,
        n.role,
        n.address ?? "",
        {
          text: n.detail ? `${n.health} (${n.detail})` : n.health,
          className: `health-${n.health}`,
        },
        n.term ?? "",
      ]),
    ),
    "no nodes",
    5,
  );
  fill(
    $("logs"),
    cluster.logs.map((l) =>
      row([
        l.log,
        l.primary ?? "",
        { text: num(l.position), className: "num" },
        { text: num(l.positionPerSec, 1), className: "num" },
        { text: num(l.appendsPerSec, 1), className: "num" },
      ]),
    ),
    "no physical logs",
    5,
  );
  const notes = [...cluster.notes];
  if (cluster.appendsPerSec !== null && cluster.appendsPerSec !== undefined)
    notes.push(`Appends, all logs: ${num(cluster.appendsPerSec, 1)}/s.`);
  $("cluster-notes").replaceChildren(...notes.map((n) => el("li", n)));
}

function renderFunctions(fns, statsAvailable) {
  const showLibrary = $("show-library").checked;
  const shown = fns.filter((f) => showLibrary || !f.library);
  fill(
    $("function-rows"),
    shown.map((f) => {
      const tr = row([
        f.name,
        f.scheduleEveryMs ? `${f.kind}, every ${num(f.scheduleEveryMs)} ms` : f.kind,
        { text: f.book, className: "num" },
        { text: num(f.total), className: "num" },
        { text: num(f.errors), className: f.errors > 0 ? "num error" : "num" },
        { text: num(f.ratePerSec, 2), className: "num" },
        { text: num(f.lastMinute), className: "num" },
        { text: num(f.meanMs, 2), className: "num" },
        { text: num(f.p50Ms, 1), className: "num" },
        { text: num(f.p99Ms, 1), className: "num" },
        { text: f.lastError ?? "", className: "error" },
      ]);
      tr.dataset.function = f.name;
      return tr;
    }),
    statsAvailable ? "no functions loaded" : "no figures on this gateway",
    11,
  );
}

function libraryTable(t) {
  const wrap = el("div");
  wrap.dataset.table = t.title;
  wrap.appendChild(el("h3", t.title));
  const table = el("table");
  const head = document.createElement("tr");
  for (const c of t.columns) head.appendChild(el("th", c));
  const thead = el("thead");
  thead.appendChild(head);
  const tbody = el("tbody");
  fill(
    tbody,
    t.rows.map((r, i) => {
      const tr = row(
        r.map((v) =>
          v === null
            ? { text: "–", className: "muted" }
            : typeof v === "number"
              ? { text: num(v), className: "num" }
              : v,
        ),
      );
      if (t.rowKeys && t.rowKeys[i] !== undefined) tr.dataset.key = t.rowKeys[i];
      return tr;
    }),
    "none",
    t.columns.length,
  );
  table.append(thead, tbody);
  wrap.appendChild(table);
  if (t.omitted) wrap.appendChild(el("p", `${num(t.omitted)} more not shown.`, "muted"));
  return wrap;
}

function renderLibraries(libs) {
  const sections = libs.map((lib) => {
    const s = el("section");
    s.dataset.library = lib.name;
    s.appendChild(el("h2", lib.name));
    if (!lib.available) {
      s.appendChild(el("p", lib.note ?? "No listing yet.", "muted placeholder"));
      return s;
    }
    if (lib.error) s.appendChild(el("p", `listing failed: ${lib.error}`, "error"));
    for (const t of lib.tables ?? []) s.appendChild(libraryTable(t));
    const notes = [...(lib.notes ?? []), ...(lib.note ? [lib.note] : [])];
    if (notes.length > 0) {
      const ul = el("ul", null, "notes");
      ul.replaceChildren(...notes.map((n) => el("li", n)));
      s.appendChild(ul);
    }
    return s;
  });
  $("libraries").replaceChildren(...sections);
}

async function refreshOverview() {
  try {
    const o = await getJson("/ui/api/overview");
    needToken = false;
    $("token-form").hidden = true;
    $("gateway").textContent =
      `${o.gateway.url}${o.gateway.tls ? " (TLS)" : ""}${o.gateway.auth ? ", tokens required" : ""}, up ${num(o.gateway.uptimeSec)} s`;
    lastOverview = o;
    renderCluster(o.cluster);
    renderFunctions(o.functions, o.gateway.statsAvailable);
    renderLibraries(o.libraries);
    workflowsAvailable = o.workflows.available;
    $("updated").textContent = `Last update ${new Date(o.generatedAt).toLocaleTimeString()}.`;
    setStatus("live", false);
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) askForToken("a token is needed");
    else setStatus(`cannot reach the gateway: ${err.message}`, true);
  }
}

function bookHeader() {
  const v = $("wf-book").value.trim();
  return /^[0-9]{1,10}$/.test(v) ? { "x-boki-book": v } : {};
}

async function showDetail(id) {
  selected = id;
  try {
    const s = await getJson(`/workflows/${encodeURIComponent(id)}`, bookHeader());
    if (selected !== id) return;
    $("wf-detail").hidden = false;
    $("wf-detail-id").textContent = s.workflowId;
    const st = $("wf-detail-status");
    st.textContent = s.status;
    st.className = `badge st-${s.status}`;
    $("wf-detail-outcome").textContent =
      s.output !== undefined
        ? `output: ${preview(s.output)}`
        : s.error !== undefined
          ? `error: ${s.error.name}: ${s.error.message}`
          : `input: ${preview(s.input)}`;
    fill(
      $("wf-steps"),
      s.steps.map((p) =>
        row([
          { text: p.position, className: "num" },
          p.kind,
          p.name ?? "",
          p.ok === undefined ? "" : p.ok ? "yes" : "no",
          {
            text: p.error ? `${p.error.name}: ${p.error.message}` : preview(p.value),
            className: p.error ? "value error" : "value",
          },
          new Date(p.at).toLocaleTimeString(),
        ]),
      ),
      "no steps",
      6,
    );
  } catch (err) {
    if (selected === id) $("wf-detail-outcome").textContent = `cannot read ${id}: ${err.message}`;
  }
}

async function refreshWorkflows() {
  try {
    if (needToken) return;
    if (!workflowsAvailable) {
      $("wf-note").textContent =
        "No workflows are loaded on this gateway (export one made with defineWorkflow).";
      fill($("wf-rows"), [], "none", 5);
      return;
    }
    const q = new URLSearchParams({ limit: "50" });
    const status = $("wf-status").value;
    if (status) q.set("status", status);
    const r = await getJson(`/workflows?${q.toString()}`, bookHeader());
    $("wf-note").textContent = r.truncated
      ? "Showing what a bounded scan found; older instances are left out."
      : "";
    fill(
      $("wf-rows"),
      r.workflows.map((w) => {
        const tr = row([
          w.workflowId,
          w.workflow,
          {
            text: w.cancelRequested ? `${w.status} (cancel asked)` : w.status,
            className: `st-${w.status}`,
          },
          new Date(w.startedAt).toLocaleString(),
          w.finishedAt
            ? new Date(w.finishedAt).toLocaleString()
            : w.sleepingUntil
              ? `sleeping until ${new Date(w.sleepingUntil).toLocaleTimeString()}`
              : "",
        ]);
        tr.className = w.workflowId === selected ? "clickable selected" : "clickable";
        tr.dataset.workflow = w.workflowId;
        tr.addEventListener("click", () => {
          for (const r of $("wf-rows").children) r.classList.remove("selected");
          tr.classList.add("selected");
          void showDetail(w.workflowId);
        });
        return tr;
      }),
      "no instances in this book",
      5,
    );
    if (selected !== null) await showDetail(selected);
  } catch (err) {
    if (err instanceof HttpError && err.status === 401) askForToken("a token is needed");
    else $("wf-note").textContent = `cannot list workflows: ${err.message}`;
  }
}

// One polling loop: the overview every OVERVIEW_MS, the workflows every WORKFLOWS_MS; a
// change in the page pokes it to run at once (never a second loop).
async function tick() {
  if (ticking) {
    tickAgain = true;
    return;
  }
  ticking = true;
  if (timer !== null) window.clearTimeout(timer);
  try {
    await refreshOverview();
    if (Date.now() >= workflowsDueAt) {
      workflowsDueAt = Date.now() + WORKFLOWS_MS;
      await refreshWorkflows();
    }
  } finally {
    ticking = false;
    timer = setTimeout(() => void tick(), tickAgain ? 0 : OVERVIEW_MS);
    tickAgain = false;
  }
}

function poke(workflowsToo) {
  if (workflowsToo) workflowsDueAt = 0;
  void tick();
}

tokenFromFragment();
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const v = $("token-input").value.trim();
  if (v) sessionStorage.setItem(TOKEN_KEY, v);
  $("token-input").value = "";
  needToken = false;
  poke(true);
});
$("show-library").addEventListener("change", () => {
  if (lastOverview !== null)
    renderFunctions(lastOverview.functions, lastOverview.gateway.statsAvailable);
});
$("wf-status").addEventListener("change", () => poke(true));
$("wf-book").addEventListener("change", () => {
  selected = null;
  $("wf-detail").hidden = true;
  poke(true);
});
poke(true);
