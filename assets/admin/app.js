// The operations page: one WebSocket, authenticated with an admin token kept in sessionStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "dispatcher.adminToken";
const WINDOW_MS = 15 * 60 * 1000;
const FEED_LENGTH = 100;

let socket = null;
let retry = null;
let stats = null;
let history = [];
let sort = { key: "masterId", ascending: true };

function say(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind || "";
}

function connect(token) {
  clearTimeout(retry);
  if (socket) socket.onclose = null, socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  say("Connecting…");
  socket.onmessage = (e) => receive(JSON.parse(e.data), token);
  socket.onclose = () => {
    if (sessionStorage.getItem(TOKEN_KEY) === token) {
      say("Disconnected; reconnecting…", "error");
      retry = setTimeout(() => connect(token), 2000);
    }
  };
}

function receive(message, token) {
  switch (message.type) {
    case "connected":
      socket.send(JSON.stringify({ type: "auth", token }));
      break;
    case "auth_error":
      refuse(`The token was refused: ${message.message}`);
      break;
    case "auth_success":
      if (message.role !== "admin") {
        refuse(`This token belongs to a ${message.role}, not an admin: no data is shown.`);
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      socket.send(JSON.stringify({ type: "subscribe_stats" }));
      socket.send(JSON.stringify({ type: "subscribe_events" }));
      say("Live", "live");
      $("live").hidden = false;
      break;
    case "stats":
      stats = message;
      record(message);
      render();
      break;
    case "assignment_event":
    case "dispatch_event":
      feed(message);
      break;
  }
}

function refuse(text) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (socket) socket.onclose = null, socket.close();
  socket = null;
  stats = null;
  history = [];
  $("live").hidden = true;
  $("feed").replaceChildren();
  $("subscriptions").tBodies[0].replaceChildren();
  say(text, "error");
}

function record(s) {
  const now = Date.now();
  history.push({ t: now, connections: s.totalConnected, offersTotal: s.offers.createdTotal });
  while (history.length && history[0].t < now - WINDOW_MS) history.shift();
}

function render() {
  const s = stats;
  $("total-connected").textContent = s.totalConnected;
  for (const role of ["master", "client", "service", "admin", "unauthenticated"]) {
    $(`by-role-${role}`).textContent = s.connectionsByRole[role] ?? 0;
  }
  $("total-subscribed").textContent = s.totalSubscribed;
  $("active-subscriptions").textContent = s.activeSubscriptions;
  $("on-shift-subscriptions").textContent = s.onShiftSubscriptions;
  $("offers-created").textContent = s.offers.created;
  $("offers-accepted").textContent = s.offers.accepted;
  const p50 = s.offers.timeToAcceptMs.p50;
  $("accept-p50").textContent = p50 == null ? "–" : seconds(p50);
  renderTable();
  drawChart();
}

function renderTable() {
  if (!stats) return;
  const filter = $("filter").value.trim().toLowerCase();
  const rows = stats.subscriptions
    .filter((r) => !filter || [r.userId, r.masterId, r.node].some((v) => String(v).toLowerCase().includes(filter)))
    .sort((a, b) => {
      const x = a[sort.key] ?? "", y = b[sort.key] ?? "";
      const order = x < y ? -1 : x > y ? 1 : 0;
      return sort.ascending ? order : -order;
    });
  const body = $("subscriptions").tBodies[0];
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.masterId = r.masterId;
    for (const cell of [r.userId, r.masterId, yes(r.subscribed), yes(r.onShift), r.lastPing ? time(r.lastPing) : "–", yes(r.isActive), r.node]) {
      const td = document.createElement("td");
      td.textContent = cell;
      tr.append(td);
    }
    return tr;
  }));
  for (const th of document.querySelectorAll("#subscriptions th")) {
    const key = th.querySelector("button").dataset.key;
    if (key === sort.key) th.setAttribute("aria-sort", sort.ascending ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

function feed(e) {
  const li = document.createElement("li");
  li.dataset.event = e.event;
  const subject = e.type === "dispatch_event" ? `dispatch ${e.dispatchId}` : `offer ${e.assignmentId}`;
  const who = e.masterId ? ` · master ${e.masterId}` : "";
  const decidedIn = e.offeredAt ? ` · decided in ${seconds(Date.parse(e.at) - Date.parse(e.offeredAt))}` : "";
  const event = document.createElement("span");
  event.className = "event";
  event.textContent = e.event;
  li.append(`${time(e.at)} `, event, ` ${subject} · order ${e.orderId}${who}${decidedIn}`);
  const list = $("feed");
  list.prepend(li);
  while (list.children.length > FEED_LENGTH) list.lastChild.remove();
}

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const now = Date.now(), pad = 28;
  const x = (t) => pad + ((t - (now - WINDOW_MS)) / WINDOW_MS) * (width - 2 * pad);
  const rates = history.slice(1).map((p, i) => ({
    t: p.t,
    v: Math.max(0, (p.offersTotal - history[i].offersTotal) / ((p.t - history[i].t) / 1000)),
  }));
  const series = [
    { points: history.map((p) => ({ t: p.t, v: p.connections })), color: "#0b63c5", side: "left" },
    { points: rates, color: "#d97706", side: "right" },
  ];
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = "#d6dbe0";
  g.beginPath(); g.moveTo(pad, height - pad); g.lineTo(width - pad, height - pad); g.stroke();
  g.fillStyle = "#5b6570";
  g.fillText("−15 min", pad, height - 8);
  g.fillText("now", width - pad - 18, height - 8);
  for (const s of series) {
    const top = Math.max(1, ...s.points.map((p) => p.v));
    const y = (v) => height - pad - (v / top) * (height - 2 * pad);
    g.fillStyle = s.color;
    g.fillText(String(Math.round(top * 10) / 10), s.side === "left" ? 2 : width - pad + 2, pad);
    g.strokeStyle = s.color;
    g.lineWidth = 2;
    g.beginPath();
    s.points.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
    g.stroke();
  }
}

const yes = (b) => (b ? "yes" : "no");
const time = (iso) => new Date(iso).toLocaleTimeString();
const seconds = (ms) => (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("token").value.trim();
  if (!token) return say("Paste a token first.", "error");
  $("token").value = "";
  connect(token);
});
$("forget").addEventListener("click", () => refuse("Token forgotten."));
$("filter").addEventListener("input", renderTable);
for (const button of document.querySelectorAll("#subscriptions th button")) {
  button.addEventListener("click", () => {
    const key = button.dataset.key;
    sort = { key, ascending: sort.key === key ? !sort.ascending : true };
    renderTable();
  });
}
setInterval(() => socket && socket.readyState === 1 && socket.send(JSON.stringify({ type: "ping" })), 30000);
window.addEventListener("resize", () => stats && drawChart());
const kept = sessionStorage.getItem(TOKEN_KEY);
if (kept) connect(kept);
