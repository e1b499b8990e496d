// The shippy web UI: one module, no dependencies. It calls the JSON API
// under /api/v1 with the token kept in sessionStorage, and writes every
// value with textContent (never as HTML).

const $ = (selector) => document.querySelector(selector);
const TOKEN = "shippy.token";
const PAGE_SIZE = 10;

const state = {
  token: sessionStorage.getItem(TOKEN),
  pageTokens: [""], // the token of each consignment page seen, newest first
  nextPage: "",
  vesselNames: new Map(),
  nextVessels: "",
  // The consignment being shipped and its idempotency key: kept while its
  // create may have gone through unanswered, so shipping it again cannot
  // book it twice; a new consignment (or an answered one) gets a new key.
  shipping: null,
  // The ops dashboard's refresh loop: whether it runs, its number (a new
  // loop ends the old one) and its pending timer.
  opsRunning: false,
  opsLoop: 0,
  opsTimer: null,
};

// How often the ops dashboard asks for new figures.
const OPS_REFRESH_MS = 2000;

// What to tell a person for each status the API can answer.
const ADVICE = {
  400: "Please check the form",
  401: "Please log in",
  403: "Not allowed",
  404: "Not found",
  409: "Already exists",
  413: "Too much data",
  422: "Cannot do that now",
  429: "Limit reached",
  500: "Something went wrong on our side",
  503: "The service is unavailable; please retry shortly",
  504: "The service took too long; please retry",
};

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body, extraHeaders = {}) {
  const headers = { accept: "application/json", ...extraHeaders };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "NETWORK", "cannot reach the server; check your connection");
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload && payload.error ? payload.error : {};
    throw new ApiError(
      response.status,
      error.code || String(response.status),
      error.message || response.statusText,
      response.headers.get("retry-after"),
    );
  }
  return payload;
}

function show(element, visible) {
  element.hidden = !visible;
}

function say(text) {
  const notice = $("#notice");
  notice.textContent = text;
  show(notice, Boolean(text));
  if (text) show($("#message"), false);
}

function fail(error) {
  const message = $("#message");
  if (!(error instanceof ApiError)) {
    message.textContent = `Unexpected error: ${error}`;
  } else {
    const advice = ADVICE[error.status] || "Error";
    let text = `${advice}: ${error.message}`;
    if (error.status === 429 && error.retryAfter) {
      text += ` (try again in ${error.retryAfter} s)`;
    }
    message.textContent = text;
  }
  show(message, true);
  show($("#notice"), false);
  message.focus();
  if (error instanceof ApiError && error.status === 401 && state.token) {
    signOut(false);
  }
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

function isAdmin() {
  const roles = claims(state.token || "").roles;
  return Array.isArray(roles) && roles.includes("admin");
}

function form(event) {
  event.preventDefault();
  return Object.fromEntries(new FormData(event.target).entries());
}

function integer(text, what) {
  const value = Number(text);
  if (!Number.isInteger(value)) {
    throw new ApiError(400, "INVALID_ARGUMENT", `${what} must be a whole number`);
  }
  return value;
}

// A fresh idempotency key: 128 random bits as hex (crypto.getRandomValues
// works on plain http too, unlike crypto.randomUUID).
function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

// Whether a failed create may still have been placed (no answer, or the
// service was unavailable): then a retry must send the same key.
function mayHaveGoneThrough(error) {
  return error instanceof ApiError && [0, 502, 503, 504].includes(error.status);
}

// Ships `consignment`: one idempotency key per consignment the user ships,
// the same on the automatic retry and when the user sends it again after a
// failure that may have gone through.
async function ship(consignment) {
  const body = JSON.stringify(consignment);
  if (!state.shipping || state.shipping.body !== body) {
    state.shipping = { body, key: newKey() };
  }
  const headers = { "idempotency-key": state.shipping.key };
  for (let attempt = 1; ; attempt += 1) {
    try {
      const answer = await api("POST", "/consignments", consignment, headers);
      state.shipping = null;
      return answer;
    } catch (error) {
      if (!mayHaveGoneThrough(error)) {
        state.shipping = null;
        throw error;
      }
      if (attempt === 3) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    }
  }
}

async function busy(event, work) {
  const buttons = event.target.querySelectorAll("button");
  buttons.forEach((button) => (button.disabled = true));
  try {
    await work();
  } catch (error) {
    fail(error);
  } finally {
    buttons.forEach((button) => (button.disabled = false));
  }
}

// ---- signing in and out ---------------------------------------------------

async function signIn(email, password) {
  const { token } = await api("POST", "/login", { email, password });
  state.token = token;
  sessionStorage.setItem(TOKEN, token);
  await enter();
}

async function enter() {
  const { user } = await api("GET", "/me");
  say("");
  show($("#message"), false);
  $("#whoami").textContent = `${user.name} <${user.email}>`;
  show($("#session"), true);
  show($("#signed-out"), false);
  show($("#fleet"), isAdmin());
  show($("#ops-link"), isAdmin());
  showView(false);
  state.pageTokens = [""];
  state.vesselNames.clear();
  state.nextVessels = "";
  $("#vessels tbody").replaceChildren();
  await loadVessels();
  await loadConsignments("");
  if (!opsWanted()) $("#ship-form input[name=description]").focus();
}

function signOut(announce = true) {
  state.shipping = null;
  state.token = null;
  sessionStorage.removeItem(TOKEN);
  stopOps();
  show($("#session"), false);
  show($("#signed-in"), false);
  show($("#ops"), false);
  show($("#signed-out"), true);
  $("#consignments tbody").replaceChildren();
  if (announce) say("You are logged out.");
  $("#login-form input[name=email]").focus();
}

// ---- consignments -----------------------------------------------------------

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.append(td);
}

function vesselLabel(id) {
  const name = state.vesselNames.get(id);
  return name ? `${name} (${id})` : id;
}

async function loadConsignments(pageToken) {
  const query = new URLSearchParams({ page_size: PAGE_SIZE, page_token: pageToken });
  const page = await api("GET", `/consignments?${query}`);
  const rows = page.consignments.map((c) => {
    const row = document.createElement("tr");
    cell(row, c.created_at ? new Date(c.created_at).toLocaleString() : "");
    cell(row, c.description);
    cell(row, `${c.weight} kg`);
    cell(row, c.containers.map((k) => k.origin || k.customer_id || k.id || "container").join(", ") || "none");
    cell(row, vesselLabel(c.vessel_id));
    const actions = document.createElement("td");
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "cancel";
    cancel.textContent = "Cancel";
    cancel.setAttribute("aria-label", `Cancel "${c.description}"`);
    cancel.addEventListener("click", () => cancelConsignment(c, cancel));
    actions.append(cancel);
    row.append(actions);
    return row;
  });
  $("#consignments tbody").replaceChildren(...rows);
  show($("#no-consignments"), rows.length === 0);
  state.nextPage = page.next_page_token;
  $("#next-page").disabled = !page.next_page_token;
  $("#first-page").disabled = pageToken === "";
}

async function cancelConsignment(consignment, button) {
  button.disabled = true;
  try {
    await api("DELETE", `/consignments/${encodeURIComponent(consignment.id)}`);
    state.pageTokens = [""];
    await loadConsignments("");
    say(`Cancelled "${consignment.description}": its room goes back to ${vesselLabel(consignment.vessel_id)}.`);
  } catch (error) {
    button.disabled = false;
    fail(error);
  }
}

async function loadVessels() {
  const query = new URLSearchParams({ page_size: 50, page_token: state.nextVessels });
  const page = await api("GET", `/vessels?${query}`);
  for (const v of page.vessels) {
    state.vesselNames.set(v.id, v.name);
    const row = document.createElement("tr");
    cell(row, v.id);
    cell(row, v.name);
    cell(row, String(v.capacity));
    cell(row, `${v.max_weight} kg`);
    cell(row, v.available ? "yes" : "no");
    cell(row, `${v.remaining_capacity} containers, ${v.remaining_weight} kg`);
    $("#vessels tbody").append(row);
  }
  state.nextVessels = page.next_page_token;
  $("#more-vessels").disabled = !page.next_page_token;
}

function addContainer(focus = true) {
  const row = $("#container-row").content.firstElementChild.cloneNode(true);
  row.querySelector(".remove").addEventListener("click", () => {
    const next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    (next ? next.querySelector("input") : $("#add-container")).focus();
  });
  $("#containers").append(row);
  if (focus) row.querySelector("input").focus();
}

// ---- the ops dashboard (admins) ---------------------------------------------

function opsWanted() {
  return location.hash === "#ops" && Boolean(state.token) && isAdmin();
}

// Shows the shipping page or the ops dashboard, as the address says (#ops);
// `focus` moves the focus to the page's heading (after a link was followed).
function showView(focus) {
  if (!state.token) return;
  const ops = opsWanted();
  show($("#signed-in"), !ops);
  show($("#ops"), ops);
  for (const [link, current] of [[$("#shipping-link"), !ops], [$("#ops-link"), ops]]) {
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (ops) {
    startOps();
    if (focus) $("#ops-title").focus();
  } else {
    stopOps();
    if (focus) $("#ship-form input[name=description]").focus();
  }
}

function startOps() {
  if (state.opsRunning) return;
  state.opsRunning = true;
  state.opsLoop += 1;
  refreshOps(state.opsLoop);
}

function stopOps() {
  clearTimeout(state.opsTimer);
  state.opsTimer = null;
  state.opsRunning = false;
  state.opsLoop += 1; // an answer still on its way is dropped
}

// One refresh, then the next one OPS_REFRESH_MS after it is answered (so a
// slow answer never piles requests up), for as long as loop `loop` runs.
async function refreshOps(loop) {
  state.opsTimer = null;
  try {
    const report = await api("GET", "/ops");
    if (loop !== state.opsLoop) return;
    renderOps(report);
  } catch (error) {
    if (loop !== state.opsLoop) return;
    if (error instanceof ApiError && error.status === 401) {
      fail(error);
      return;
    }
    const advice = (error instanceof ApiError && ADVICE[error.status]) || "Error";
    $("#ops-updated").textContent =
      `Not refreshed at ${new Date().toLocaleTimeString()}: ${advice}: ${error.message}; retrying every ${OPS_REFRESH_MS / 1000} s`;
  }
  if (loop === state.opsLoop) {
    state.opsTimer = setTimeout(() => refreshOps(loop), OPS_REFRESH_MS);
  }
}

function badge(text, tone) {
  const span = document.createElement("span");
  span.className = `state state-${tone}`;
  span.textContent = text;
  return span;
}

const CIRCUIT_TONE = { closed: "ok", "half-open": "warn", open: "bad" };

function percent(ratio) {
  return `${(ratio * 100).toFixed(ratio > 0 && ratio < 0.1 ? 1 : 0)} %`;
}

function milliseconds(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms >= 1000) return `${(ms / 1000).toFixed(1)} s`;
  return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}

function numberCell(row, text) {
  const td = document.createElement("td");
  td.className = "number";
  td.textContent = text;
  row.append(td);
}

function renderOps(report) {
  const upstreams = report.upstreams.map((u) => {
    const row = document.createElement("tr");
    row.dataset.upstream = u.name;
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = u.name;
    const health = document.createElement("td");
    health.className = "health";
    health.dataset.state = u.healthy ? "healthy" : "unhealthy";
    health.append(badge(u.healthy ? "✓ healthy" : "✗ unhealthy", u.healthy ? "ok" : "bad"));
    if (!u.healthy) health.append(` (${u.health})`);
    const circuit = document.createElement("td");
    circuit.className = "circuit";
    circuit.dataset.state = u.circuit;
    circuit.append(badge(u.circuit, CIRCUIT_TONE[u.circuit] || "warn"));
    row.append(name, health, circuit);
    return row;
  });
  $("#ops-upstreams tbody").replaceChildren(...upstreams);

  const routes = report.routes.map((r) => {
    const row = document.createElement("tr");
    row.dataset.route = `${r.method} ${r.route}`;
    if (r.server_error_ratio > 0) row.className = "failing";
    cell(row, r.method);
    cell(row, r.route);
    numberCell(row, String(r.requests));
    numberCell(row, `${r.requests_per_second.toFixed(2)} req/s`);
    numberCell(row, percent(r.error_ratio));
    numberCell(row, percent(r.server_error_ratio));
    numberCell(row, milliseconds(r.p99_ms));
    return row;
  });
  $("#ops-routes tbody").replaceChildren(...routes);
  $("#ops-routes-caption").textContent = `Routes (the last ${report.window_seconds} s)`;

  const troubled = report.upstreams.filter((u) => !u.healthy || u.circuit !== "closed");
  const summary = troubled.length === 0
    ? "All upstream services healthy, every circuit closed."
    : "Attention: " + troubled
      .map((u) => `${u.name} ${u.healthy ? "healthy" : "unhealthy"}, circuit ${u.circuit}`)
      .join("; ") + ".";
  const line = $("#ops-summary");
  // Rewritten only when it changes, so screen readers announce changes only.
  if (line.textContent !== summary) line.textContent = summary;
  line.classList.toggle("attention", troubled.length > 0);
  $("#ops-updated").textContent =
    `Updated ${new Date().toLocaleTimeString()}; refreshes every ${OPS_REFRESH_MS / 1000} s.`;
}

// ---- wiring -------------------------------------------------------------------

$("#login-form").addEventListener("submit", (event) => {
  const { email, password } = form(event);
  busy(event, () => signIn(email, password));
});

$("#signup-form").addEventListener("submit", (event) => {
  const fields = form(event);
  busy(event, async () => {
    await api("POST", "/users", fields);
    event.target.reset();
    await signIn(fields.email, fields.password);
    say(`Welcome, ${fields.name}!`);
  });
});

$("#logout").addEventListener("click", () => signOut());

window.addEventListener("hashchange", () => {
  say("");
  show($("#message"), false);
  showView(true);
});

$("#add-container").addEventListener("click", () => addContainer());

$("#ship-form").addEventListener("submit", (event) => {
  const fields = form(event);
  busy(event, async () => {
    const containers = [...document.querySelectorAll("#containers li")].map((li) => ({
      customer_id: li.querySelector("[name=customer_id]").value,
      origin: li.querySelector("[name=origin]").value,
    }));
    const { consignment } = await ship({
      description: fields.description,
      weight: integer(fields.weight, "Weight"),
      containers,
    });
    event.target.reset();
    $("#containers").replaceChildren();
    addContainer(false);
    state.pageTokens = [""];
    await loadConsignments("");
    say(`Shipped "${consignment.description}" on ${vesselLabel(consignment.vessel_id)}.`);
  });
});

$("#next-page").addEventListener("click", () => {
  state.pageTokens.push(state.nextPage);
  loadConsignments(state.nextPage).catch(fail);
});

$("#first-page").addEventListener("click", () => {
  state.pageTokens = [""];
  loadConsignments("").catch(fail);
});

$("#more-vessels").addEventListener("click", () => loadVessels().catch(fail));

$("#vessel-form").addEventListener("submit", (event) => {
  const fields = form(event);
  busy(event, async () => {
    const { vessel } = await api("POST", "/vessels", {
      name: fields.name,
      capacity: integer(fields.capacity, "Capacity"),
      max_weight: integer(fields.max_weight, "Max weight"),
    });
    event.target.reset();
    say(`Added vessel ${vessel.name} (${vessel.id}).`);
    state.nextVessels = "";
    $("#vessels tbody").replaceChildren();
    await loadVessels();
  });
});

$("#message").tabIndex = -1;
addContainer(false);
if (state.token) {
  enter().catch(fail);
} else {
  $("#login-form input[name=email]").focus();
}
