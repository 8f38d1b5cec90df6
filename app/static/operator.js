// The operator's page: reads /operator/events (server-sent events over fetch, so the token
// can go in a header, never in a URL) and draws the round. No library, no build step.
"use strict";

const TOKEN_KEY = "lottery.operator.token"; // sessionStorage: gone when the tab closes
const RATE_WINDOW_S = 300; // the chart's span
const RATE_SMOOTH_S = 3; // each point is the mean rate over this many seconds
const number = new Intl.NumberFormat("en-US");
const $ = (id) => document.getElementById(id);

let latest = null; // the last snapshot received
let browseFrom = null; // null: the snapshot's table; else the agencies above this id (a round's pages)
const PAGE_ROWS = 100; // the server's TABLE_ROWS
let samples = []; // {t, bets}, one a second: what the rate chart is computed from

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

function showLogin(message) {
  $("round").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

// Times say their zone (the browser's): the server's are UTC, a person reads local time.
const CLOCK = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" };
const DAY = { year: "numeric", month: "2-digit", day: "2-digit" };

function clockTime(iso) {
  return iso ? new Date(iso).toLocaleTimeString("en-GB", CLOCK) : "—";
}

function dateTime(iso) {
  return iso ? new Date(iso).toLocaleString("en-GB", { ...DAY, ...CLOCK }) : "—";
}

function winningNumber(round) {
  return round.winning_number === null ? "random, drawn at the draw" : String(round.winning_number);
}

function cell(row, index, text, className) {
  const td = row.cells[index];
  if (td.textContent !== text) td.textContent = text;
  td.className = className || "";
}

// The snapshot's table: every agency of a small round, or (table "pending") the first of those
// not done yet: a row that left it (its agency is done) goes.
function renderAgencies(agencies) {
  const body = $("agencies").tBodies[0];
  const shown = new Set(agencies.map((a) => String(a.agency)));
  for (const row of [...body.rows]) if (!shown.has(row.dataset.agency)) row.remove();
  for (const a of agencies) {
    let row = body.querySelector(`tr[data-agency="${a.agency}"]`);
    if (!row) {
      row = body.insertRow();
      row.dataset.agency = String(a.agency);
      for (let i = 0; i < 6; i++) row.insertCell();
      row.cells[0].textContent = `Agency ${a.agency}`;
    }
    cell(row, 1, number.format(a.bets));
    cell(row, 2, number.format(a.chunks));
    cell(row, 3, clockTime(a.last_activity));
    cell(row, 4, a.done ? "done" : "not yet", a.done ? "done" : "");
    cell(row, 5, a.winners === null ? "—" : number.format(a.winners));
    row.dataset.done = String(a.done);
  }
  [...body.rows]
    .sort((x, y) => Number(x.dataset.agency) - Number(y.dataset.agency))
    .forEach((row) => body.append(row));
}

function renderSlowest(state) {
  const list = $("slowest");
  list.replaceChildren();
  for (const a of state.slowest || []) {
    const item = document.createElement("li");
    item.dataset.agency = String(a.agency);
    item.textContent =
      `Agency ${a.agency}: ` +
      (a.last_activity === null ? "nothing stored yet" : `last chunk at ${clockTime(a.last_activity)}`) +
      `, ${number.format(a.bets)} bets`;
    list.append(item);
  }
  $("slowest-none").hidden = (state.slowest || []).length > 0;
  if (browseFrom !== null) return; // the note says which page is shown
  const pending = state.pending === undefined ? state.expected - state.done : state.pending;
  $("table-note").textContent =
    state.table === "pending"
      ? `The ${number.format(state.agencies.length)} lowest-numbered of the ${number.format(pending)} agencies not done yet.`
      : "";
}

// One page of every agency, from the worker's last read of the round (/operator/agencies).
async function showPage() {
  const from = browseFrom;
  const response = await fetch(`/operator/agencies?after=${from}&limit=${PAGE_ROWS}`, { headers: headers() });
  if (!response.ok || from !== browseFrom) return; // a later click asked for another page
  const page = await response.json();
  renderAgencies(page.agencies);
  const last = from + page.agencies.length;
  $("table-note").textContent =
    `Agencies ${number.format(from + 1)} to ${number.format(last)} of ${number.format(page.expected)}.`;
}

function browse(from) {
  const lastStart = Math.max(0, latest.expected - PAGE_ROWS);
  browseFrom = from === null ? null : Math.min(Math.max(0, from), lastStart);
  if (browseFrom === null) render(latest);
  else showPage();
}

function renderPast(rounds) {
  const box = $("past");
  box.replaceChildren();
  if (!rounds.length) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No past rounds yet: the first round is the current one.";
    box.append(p);
    return;
  }
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const title of ["Round", "Bets", "Winning number", "Winners", "Opened", "Drawn"]) {
    const th = document.createElement("th");
    th.textContent = title;
    head.append(th);
  }
  const body = table.createTBody();
  for (const r of rounds) {
    const row = body.insertRow();
    for (const text of [
      String(r.round),
      number.format(r.bets),
      winningNumber(r),
      number.format(r.winners),
      dateTime(r.opened_at),
      dateTime(r.drawn_at),
    ]) {
      row.insertCell().textContent = text;
    }
  }
  box.append(table);
}

function render(state) {
  latest = state;
  $("login").hidden = true;
  $("round").hidden = false;
  $("round-id").textContent = String(state.round);
  const roundState = $("round-state");
  roundState.textContent = state.state === "drawn" ? "drawn" : "open, taking bets";
  roundState.className = state.state;
  $("winning-number").textContent = winningNumber(state);
  $("total-bets").textContent = number.format(state.bets);
  $("done-count").textContent = String(state.done);
  $("expected").textContent = String(state.expected);
  const progress = $("progress");
  progress.setAttribute("aria-valuemax", String(state.expected));
  progress.setAttribute("aria-valuenow", String(state.done));
  $("progress-fill").style.width = `${(100 * state.done) / state.expected}%`;
  const draw = $("draw");
  draw.hidden = state.state !== "drawn";
  if (state.state === "drawn") {
    draw.textContent =
      `Drawn at ${dateTime(state.drawn_at)}: winning number ${state.winning_number}, ` +
      `${number.format(state.winners)} winner${state.winners === 1 ? "" : "s"} in total`;
  }
  $("find").hidden = state.table !== "pending"; // search and pages: a round too large for one table
  if (state.table !== "pending") browseFrom = null;
  if (browseFrom === null) renderAgencies(state.agencies);
  else showPage();
  renderSlowest(state);
  LotteryProof.render(state); // the transparency panel (transparency.js)
  renderPast(state.past_rounds || []);
  sample();
}

// -- the ingest rate chart ------------------------------------------------------------------

// The server keeps the round's totals where they changed ("ingest": [[unix time, bets], ...],
// app/routes/operator_history.py), so a reloaded page draws what happened before it opened.
// Here they become one sample a second: the total then was the last one before.
function sample() {
  if (!latest) return;
  const now = Date.now() / 1000;
  const points = latest.ingest && latest.ingest.length ? latest.ingest : [[now, latest.bets]];
  const from = Math.max(points[0][0], now - RATE_WINDOW_S - RATE_SMOOTH_S);
  samples = [];
  let k = 0;
  for (let t = from; t <= now; t += 1) {
    while (k + 1 < points.length && points[k + 1][0] <= t) k++;
    samples.push({ t, bets: points[k][1] });
  }
  samples.push({ t: now, bets: latest.bets });
  drawRate(now);
}

function rates() {
  const points = [];
  let j = 0;
  for (let i = 0; i < samples.length; i++) {
    while (samples[j].t < samples[i].t - RATE_SMOOTH_S) j++;
    const dt = samples[i].t - samples[j].t;
    if (dt > 0.2) points.push({ t: samples[i].t, rate: (samples[i].bets - samples[j].bets) / dt });
  }
  return points;
}

function drawRate(now) {
  // The window grows with the time the page has been open: from 1 minute up to 5.
  const span = Math.min(RATE_WINDOW_S, Math.max(60, now - samples[0].t));
  const points = rates().filter((p) => p.t >= now - span);
  const peak = Math.max(10, ...points.map((p) => p.rate));
  const x = (t) => ((600 * (t - (now - span))) / span).toFixed(1);
  const y = (rate) => (118 - (108 * rate) / peak).toFixed(1);
  const ns = "http://www.w3.org/2000/svg";
  const coords = points.map((p) => `${x(p.t)},${y(p.rate)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", coords.join(" "));
  const area = document.createElementNS(ns, "polygon");
  if (points.length) area.setAttribute("points", `${x(points[0].t)},118 ${coords.join(" ")} ${x(now)},118`);
  $("rate").replaceChildren(area, line);
  $("rate-peak").textContent = `${number.format(Math.round(peak))} bets/s`;
  $("rate-from").textContent = `${Math.round(span / 60)} min ago`;
  const current = points.length ? points[points.length - 1].rate : 0;
  $("rate-now").textContent = `now ${number.format(Math.round(current))} bets/s`;
}

// -- the connection -------------------------------------------------------------------------

function status(text) {
  $("connection").textContent = text ? `· ${text}` : "";
}

async function follow() {
  // One stream at a time; when it ends (the server closes it every few seconds), reconnect,
  // at most once a second: a stream cut at once (a proxy's) must not become a request loop.
  for (;;) {
    const started = Date.now();
    try {
      const response = await fetch("/operator/events", { headers: headers(), cache: "no-store" });
      if (response.status === 401) {
        const hadToken = token() !== null;
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(hadToken ? "That token is not valid." : "");
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      status("");
      await readEvents(response.body);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + 1000 - Date.now())));
    } catch (error) {
      status(`reconnecting (${error.message})`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) render(JSON.parse(data));
    }
  }
}

function start() {
  const initial = JSON.parse($("initial").textContent);
  if (initial) render(initial);
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = ""; // kept in session storage only, not in the form
    $("login-error").textContent = "";
    follow();
  });
  $("find").addEventListener("submit", (event) => {
    event.preventDefault();
    const agency = Number($("find-agency").value);
    if (Number.isInteger(agency) && agency >= 1) browse(agency - 1); // the agency first, or on the last page
  });
  $("page-prev").addEventListener("click", () => browse((browseFrom ?? 0) - PAGE_ROWS));
  $("page-next").addEventListener("click", () => browse(browseFrom === null ? 0 : browseFrom + PAGE_ROWS));
  $("page-pending").addEventListener("click", () => browse(null));
  setInterval(sample, 1000); // the chart moves on even while nothing changes
  // A page of agencies comes from whichever worker answers, whose read of the round may be older
  // than the event's: read again each second while a page is shown.
  setInterval(() => browseFrom !== null && latest && showPage(), 1000);
  if (document.body.dataset.auth === "required" && !token()) {
    showLogin("");
    return;
  }
  follow();
}

document.addEventListener("DOMContentLoaded", start);
