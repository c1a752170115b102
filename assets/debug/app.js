// Try a connection as an app would: every frame with its time, and a close explained from the
// server's own table of close codes (/debug/close-codes.json).
"use strict";

const $ = (id) => document.getElementById(id);
let socket = null;
let causes = [];

fetch("/debug/close-codes.json").then((r) => r.json()).then((list) => (causes = list));
$("url").value = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws`;

function log(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.dataset.kind = kind;
  const time = new Date().toISOString().slice(11, 23);
  li.textContent = `${time} ${kind === "in" ? "←" : kind === "out" ? "→" : "·"} ${text}`;
  const list = $("frames");
  list.prepend(li);
  while (list.children.length > 500) list.lastChild.remove();
}

function explain(code, reason) {
  return causes.find((c) => c.code === code && c.reason === reason)
    || causes.find((c) => c.code === code && c.reason == null);
}

function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return log("note", "not connected");
  const text = JSON.stringify(message);
  socket.send(text);
  log("out", text);
}

$("open").addEventListener("submit", (e) => {
  e.preventDefault();
  if (socket) {
    // The old socket's close is not this connection's: it must not be reported.
    socket.onclose = null;
    socket.close();
  }
  const token = $("token").value.trim();
  $("close").hidden = true;
  let ws;
  try {
    ws = new WebSocket($("url").value.trim());
  } catch (err) {
    return log("note", `cannot open: ${err.message}`);
  }
  socket = ws;
  const opened = Date.now();
  $("status").textContent = "Connecting…";
  ws.onopen = () => {
    $("status").textContent = `Open after ${Date.now() - opened} ms`;
    log("note", "open");
  };
  ws.onmessage = (m) => {
    log("in", m.data);
    const message = JSON.parse(m.data);
    if (message.type === "connected" && token) send({ type: "auth", token });
  };
  ws.onerror = () => log("note", "error (the browser gives no detail; see the close code)");
  ws.onclose = (c) => {
    const cause = explain(c.code, c.reason);
    $("status").textContent = `Closed ${c.code}${c.reason ? ` "${c.reason}"` : ""}`;
    log("note", `closed ${c.code} ${c.reason}`);
    $("close-code").textContent = `${c.code}${c.reason ? ` — ${c.reason}` : ""}`;
    $("close-meaning").textContent = cause ? cause.meaning : "A code this server does not send.";
    $("close-fix").textContent = cause ? `Fix: ${cause.fix}` : "";
    $("close").hidden = false;
    if (socket === ws) socket = null;
  };
});

$("disconnect").addEventListener("click", () => socket && socket.close(1000, "closed from the debug page"));
for (const button of document.querySelectorAll("[data-send]")) {
  button.addEventListener("click", () => {
    const type = button.dataset.send;
    const id = Number($("assignment").value);
    if (type.endsWith("_assignment") && type !== "subscribe_assignments") {
      if (!id) return log("note", "type an assignment id first");
      send({ type, assignmentId: id });
    } else {
      send({ type });
    }
  });
}
