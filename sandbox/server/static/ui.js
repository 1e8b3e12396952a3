// The /ui page: reads the JSON API and draws it. Everything shown comes from
// sessions and containers, so it is only ever set as text (never as HTML).
"use strict";

const OVERVIEW_EVERY_MS = 3000;
const LIVE_EVERY_MS = 1000;
const $ = (id) => document.getElementById(id);

// Each route() starts a new view; a refresh of an older one stops at its next turn.
let viewNumber = 0;
let timer = null;
let liveUrl = null;
let steps = [];
let current = -1;

class LoginNeeded extends Error {}

// -- talking to the server ------------------------------------------------------

async function call(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    showLogin();
    throw new LoginNeeded("log in first");
  }
  return response;
}

async function read(path) {
  const response = await call(path);
  const body = await response.json();
  if (body.code !== 0) throw new Error(body.message);
  return body.data;
}

async function failureOf(response) {
  try {
    return (await response.json()).message;
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

// -- drawing ----------------------------------------------------------------------

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "className") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function fillTable(id, rows, emptyText) {
  const body = $(id).querySelector("tbody");
  const columns = $(id).querySelectorAll("thead th").length;
  body.replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { className: "empty", colspan: columns }, emptyText))])
  );
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleString();
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function link(href, text) {
  return el("a", { href }, text);
}

// -- views ------------------------------------------------------------------------

function show(id) {
  for (const section of ["login", "overview", "live", "trajectory"]) {
    $(section).hidden = section !== id;
  }
}

function showLogin() {
  stopViews();
  show("login");
  $("logout").hidden = true;
  $("login-key").focus();
}

function stopViews() {
  viewNumber += 1;
  clearTimeout(timer);
  $("updated").textContent = "";
}

async function overview(number) {
  if (number !== viewNumber) return;
  show("overview");
  try {
    const [sessions, warmup, trajectories] = await Promise.all([
      read("/ui/sessions"),
      read("/warmup/status"),
      read("/trajectories?limit=200").catch((error) => ({ trajectories: [], error })),
    ]);
    $("tenant").textContent = `tenant: ${sessions.tenant}`;
    $("logout").hidden = !sessions.keys;
    drawSessions(sessions.sessions);
    drawPools(warmup.resources);
    drawTrajectories(trajectories.trajectories);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (error instanceof LoginNeeded) return;
    $("updated").textContent = `could not refresh: ${error.message}`;
  }
  if (number === viewNumber) timer = setTimeout(() => overview(number), OVERVIEW_EVERY_MS);
}

function drawSessions(sessions) {
  const rows = sessions.map((s) =>
    el(
      "tr",
      { "data-session": s.session_id },
      el("td", {}, el("code", {}, s.session_id)),
      el("td", {}, s.worker_id),
      el("td", {}, s.resource_type),
      el("td", {}, s.status),
      el("td", {}, duration(s.age_s)),
      el("td", {}, duration(s.expires_in_s)),
      el("td", {}, s.origin),
      el("td", {}, s.calls),
      el("td", {}, s.live_view ? link(`#/live/${encodeURIComponent(s.session_id)}`, "live view") : "")
    )
  );
  fillTable("sessions", rows, "no live session");
}

function configText(config) {
  return Object.entries(config || {})
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ");
}

function drawPools(resources) {
  const rows = [];
  for (const [name, entry] of Object.entries(resources)) {
    const pools = entry.pools || [];
    if (!pools.length) {
      rows.push(el("tr", {}, el("td", {}, name), el("td", {}, entry.state), el("td", { colspan: 8 }, "no pool")));
    }
    for (const pool of pools) {
      rows.push(
        el(
          "tr",
          {},
          el("td", {}, name),
          el("td", {}, entry.state),
          el("td", { className: "config" }, el("code", {}, configText(pool.config))),
          el("td", {}, pool.target),
          el("td", {}, pool.ready),
          el("td", {}, pool.starting),
          el("td", {}, pool.hits),
          el("td", {}, pool.misses),
          el("td", {}, pool.failures),
          el("td", {}, pool.last_error || "")
        )
      );
    }
  }
  fillTable("pools", rows, "no resource type");
}

function drawTrajectories(trajectories) {
  const rows = trajectories.map((t) =>
    el(
      "tr",
      { "data-trajectory": t.session_id },
      el("td", {}, link(`#/trajectory/${encodeURIComponent(t.session_id)}`, t.session_id)),
      el("td", {}, t.worker_id),
      el("td", {}, t.resource_type),
      el("td", {}, t.steps),
      el("td", {}, clock(t.started_at)),
      el("td", {}, clock(t.updated_at)),
      el("td", {}, bytes(t.bytes))
    )
  );
  fillTable("trajectories", rows, "no recorded trajectory");
}

// -- live view: refreshed screenshots -------------------------------------------

function live(sessionId, number) {
  show("live");
  $("live-title").textContent = sessionId;
  $("live-status").textContent = "loading the screen...";
  const refresh = async () => {
    if (number !== viewNumber) return;
    let wait = LIVE_EVERY_MS;
    try {
      const response = await call(`/ui/screen/${encodeURIComponent(sessionId)}`);
      if (!response.ok) throw new Error(await failureOf(response));
      const blob = await response.blob();
      if (number !== viewNumber) return;
      const url = URL.createObjectURL(blob);
      $("live-screen").src = url;
      if (liveUrl) URL.revokeObjectURL(liveUrl);
      liveUrl = url;
      $("live-status").textContent = `screen at ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      if (error instanceof LoginNeeded) return;
      $("live-status").textContent = `no screen: ${error.message}`;
      wait = 3 * LIVE_EVERY_MS;
    }
    if (number === viewNumber) timer = setTimeout(refresh, wait);
  };
  refresh();
}

// -- trajectories: a step list, walked with the keyboard ------------------------

async function trajectory(sessionId, number) {
  show("trajectory");
  $("trajectory-title").textContent = sessionId;
  $("trajectory-status").textContent = "loading...";
  $("steps").replaceChildren();
  $("step").replaceChildren();
  steps = [];
  current = -1;
  try {
    const response = await call(`/trajectories/${encodeURIComponent(sessionId)}`);
    if (!response.ok) throw new Error(await failureOf(response));
    const text = await response.text();
    if (number !== viewNumber) return;
    steps = text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
  } catch (error) {
    if (error instanceof LoginNeeded) return;
    $("trajectory-status").textContent = `could not load: ${error.message}`;
    return;
  }
  $("trajectory-status").textContent = `${steps.length} steps`;
  $("steps").replaceChildren(
    ...steps.map((step, index) => {
      const item = el("li", { "data-seq": step.seq }, `${step.seq}. ${step.tool}`, step.code ? ` (${step.code})` : "");
      if (step.code) item.classList.add("failed");
      item.addEventListener("click", () => select(index));
      return item;
    })
  );
  if (steps.length) select(0);
}

// Image references ({"$image": sha256, "format": ...}) become numbered <img>s.
function withoutImages(value, images) {
  if (Array.isArray(value)) return value.map((item) => withoutImages(item, images));
  if (value && typeof value === "object") {
    if (typeof value.$image === "string") {
      images.push(value.$image);
      return `<image ${images.length}: ${value.format || "?"} ${value.$image.slice(0, 12)}...>`;
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withoutImages(v, images)]));
  }
  return value;
}

function select(index) {
  if (index < 0 || index >= steps.length) return;
  current = index;
  const items = $("steps").children;
  for (let i = 0; i < items.length; i++) items[i].classList.toggle("current", i === index);
  items[index].scrollIntoView({ block: "nearest" });
  const step = steps[index];
  const images = [];
  const result = withoutImages(step.data, images);
  $("step").replaceChildren(
    el(
      "dl",
      {},
      el("dt", {}, "Step"), el("dd", {}, `${step.seq} of ${steps.length}`),
      el("dt", {}, "Tool"), el("dd", {}, el("code", {}, step.tool)),
      el("dt", {}, "Asked as"), el("dd", {}, el("code", {}, step.action)),
      el("dt", {}, "At"), el("dd", {}, clock(step.time)),
      el("dt", {}, "Took"), el("dd", {}, `${step.execution_time_ms} ms`),
      el("dt", {}, "Code"), el("dd", {}, `${step.code} ${step.message}`)
    ),
    el("h3", {}, "Params"),
    el("pre", { id: "step-params" }, JSON.stringify(step.params, null, 2)),
    el("h3", {}, "Result"),
    el("pre", { id: "step-result" }, JSON.stringify(result, null, 2)),
    ...images.map((sha, n) =>
      el("img", { src: `/trajectories/images/${sha}`, alt: `image ${n + 1} of step ${step.seq}`, "data-sha256": sha })
    )
  );
}

document.addEventListener("keydown", (event) => {
  if ($("trajectory").hidden || event.target.closest("input, textarea")) return;
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.key === "j" || event.key === "ArrowDown") select(current + 1);
  else if (event.key === "k" || event.key === "ArrowUp") select(current - 1);
  else return;
  event.preventDefault();
});

// -- login and routing ---------------------------------------------------------

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  const response = await fetch("/ui/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key: $("login-key").value }),
  });
  if (!response.ok) {
    $("login-error").textContent = await failureOf(response);
    return;
  }
  $("login-key").value = "";
  route();
});

$("logout").addEventListener("click", async () => {
  await fetch("/ui/logout", { method: "POST", credentials: "same-origin" });
  $("tenant").textContent = "";
  showLogin();
});

function route() {
  stopViews();
  const [, view, id] = location.hash.match(/^#\/(live|trajectory)\/(.+)$/) || [];
  if (view === "live") live(decodeURIComponent(id), viewNumber);
  else if (view === "trajectory") trajectory(decodeURIComponent(id), viewNumber);
  else overview(viewNumber);
}

window.addEventListener("hashchange", route);
route();
