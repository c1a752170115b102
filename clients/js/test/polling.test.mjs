// The polling fallback, with a proxy in front of the real server that can refuse upgrades.
import assert from "node:assert/strict";
import { createServer, request as httpRequest } from "node:http";
import { connect } from "node:net";
import { after, test } from "node:test";
import WebSocket from "ws";

import { MasterClient } from "../dist/index.js";
import { Server, freePort, masterToken, sleep, until } from "./server.mjs";

const cleanup = [];
after(() => Promise.all(cleanup.map((f) => f())));

/** Passes HTTP through to `target`; upgrades too, unless `blocked`, when they get 503. */
async function proxy(target) {
  const port = await freePort();
  const state = { blocked: true, refused: 0, polls: 0 };
  const server = createServer((req, res) => {
    if (req.url.includes("/masters/me/assignments")) state.polls++;
    const upstream = httpRequest(
      { host: "127.0.0.1", port: target, path: req.url, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    req.pipe(upstream);
  });
  server.on("upgrade", (req, socket, head) => {
    if (state.blocked) {
      state.refused++;
      socket.end("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    const upstream = connect(target, "127.0.0.1", () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      upstream.write(lines.join("\r\n") + "\r\n\r\n");
      upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    upstream.on("error", () => socket.destroy());
    socket.on("error", () => upstream.destroy());
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  cleanup.push(() => new Promise((resolve) => server.close(resolve) || server.closeAllConnections?.()));
  return { port, state };
}

test("polls after 3 failed connection attempts and stops when the socket is back", async () => {
  const s = await new Server().start();
  cleanup.push(() => s.stop());
  const { port, state } = await proxy(s.port);
  await s.putOrder(10);
  const made = await s.offer(10, 3, 60);
  const client = new MasterClient({
    url: `ws://127.0.0.1:${port}/ws`,
    WebSocket,
    getToken: async () => masterToken(3),
    minReconnectDelayMs: 100,
    maxReconnectDelayMs: 300,
    pollUrl: `http://127.0.0.1:${port}/api/v1/masters/me/assignments`,
    pollIntervalMs: 200,
  });
  const seen = [];
  client.on("offer", (offer) => seen.push(offer));
  client.connect();
  await until(() => seen.length === 1, 10_000, "the offer, polled");
  assert.ok(state.refused >= 3, `${state.refused} refused upgrades`);
  assert.equal(client.state, "connecting");
  assert.equal(seen[0].id, made.id);
  assert.ok(Math.abs(seen[0].remainingMs() - (Date.parse(made.expiresAt) - Date.now())) < 300);

  state.blocked = false;
  await until(() => client.state === "connected", 10_000, "the socket back");
  await sleep(300);
  const polls = state.polls;
  await sleep(1_000);
  assert.equal(state.polls, polls, "polling stopped");
  assert.equal(seen.length, 1, "the replayed offer is the same object");
  client.close();
});
