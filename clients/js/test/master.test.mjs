// MasterClient against the real dispatcher binary.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import WebSocket from "ws";

import { MasterClient } from "../dist/index.js";
import { Server, masterToken, sleep, until } from "./server.mjs";

const servers = [];
after(() => Promise.all(servers.map((s) => s.stop())));

async function server(vars) {
  const s = await new Server(vars).start();
  servers.push(s);
  return s;
}

function master(s, id, options = {}) {
  const calls = { getToken: 0 };
  const client = new MasterClient({
    url: s.ws,
    WebSocket,
    // The first token lives `ttl` seconds; fresh ones an hour.
    getToken: async () => {
      calls.getToken++;
      return masterToken(id, calls.getToken === 1 ? options.ttl : undefined);
    },
    minReconnectDelayMs: 100,
    maxReconnectDelayMs: 2_000,
    ...options,
  });
  client.calls = calls;
  const offers = [];
  client.on("offer", (offer) => offers.push(offer));
  client.seen = offers;
  return client;
}

async function firstOffer(client) {
  await until(() => client.seen.length > 0, 5_000, "an offer");
  return client.seen[0];
}

async function connected(client) {
  client.connect();
  await until(() => client.state === "connected", 10_000, "connected");
  await sleep(100); // subscribe_assignments is answered
}

test("reconnects with jittered delays after a SIGKILL and gets its open offers again, once", async () => {
  const s = await server();
  await s.putOrder(10);
  const clients = [3, 4, 5, 6, 8, 9, 12, 13].map((id) => master(s, id));
  for (const client of clients) await connected(client);
  const made = await s.offer(10, 3);
  const offer = await firstOffer(clients[0]);
  assert.equal(offer.id, made.id);
  assert.equal(offer.address, "Lenina 10");

  await s.kill();
  const killedAt = performance.now();
  const back = new Map();
  clients.forEach((client, i) =>
    client.on("state", (state) => {
      if (state === "connected" && !back.has(i)) back.set(i, performance.now() - killedAt);
    }),
  );
  await sleep(300);
  await s.start();
  await until(() => clients.every((c) => c.state === "connected"), 15_000, "all back");
  await sleep(500);
  // The replayed offer updated the same object and emitted nothing new.
  assert.equal(clients[0].seen.length, 1);
  assert.equal(clients[0].offers.get(made.id), offer);
  assert.ok(offer.remainingMs() > 50_000 && offer.remainingMs() <= 60_000, `${offer.remainingMs()}`);
  const times = [...back.values()];
  const spread = Math.max(...times) - Math.min(...times);
  assert.ok(spread > 50, `reconnect times ${times.map(Math.round)} are not spread`);
  clients.forEach((c) => c.close());
});

test("a token about to expire is refreshed once on the same socket", async () => {
  const s = await server({ TOKEN_EXPIRY_NOTICE_SECS: "2" });
  const client = master(s, 3, { ttl: 4 });
  const states = [];
  client.on("state", (state) => states.push(state));
  await connected(client);
  states.length = 0;
  await sleep(6_000); // past the first token's exp: the server would have closed with 1008
  assert.equal(client.calls.getToken, 2, "the first token, then one refresh");
  assert.deepEqual(states, [], "the socket stayed up");
  assert.equal(client.state, "connected");
  client.close();
});

test("a decision made while the server is down is sent after the reconnect if in time, else resolves expired unsent", async () => {
  const s = await server();
  await s.putOrder(10);
  await s.putOrder(11);
  const client = master(s, 3);
  await connected(client);
  const inTime = await s.offer(10, 3, 60);
  const late = await s.offer(11, 3, 2);
  await until(() => client.offers.size === 2, 5_000, "both offers");
  await s.kill();
  const accepted = client.offers.get(inTime.id).accept();
  const tooLate = client.offers.get(late.id).accept();
  assert.equal(await tooLate, "expired");
  await s.start();
  assert.equal(await accepted, "accepted");
  const stored = await s.call("GET", `/api/v1/assignments/${late.id}`);
  assert.equal(stored.body.status, "expired", "never sent, so never accepted");
  client.close();
});

test("a decision racing another master's: exactly one wins, the other hears taken or not_pending", async () => {
  const s = await server();
  await s.putOrder(10);
  const client = master(s, 3);
  await connected(client);
  await s.offer(10, 3);
  const rival = await s.offer(10, 4);
  const offer = await firstOffer(client);
  const [mine, theirs] = await Promise.all([
    offer.accept(),
    s.call("POST", `/api/v1/assignments/${rival.id}/accept`, undefined, masterToken(4)),
  ]);
  if (mine === "accepted") assert.equal(theirs.status, 409);
  else {
    assert.equal(theirs.status, 200);
    assert.ok(["taken", "not_pending"].includes(mine), mine);
  }
  assert.equal(await offer.accept(), mine, "one decision, one answer");
  client.close();
});

test("remainingMs follows the server's deadline whatever the wall clock says", async () => {
  const s = await server();
  await s.putOrder(10);
  const client = master(s, 3);
  await connected(client);
  const realNow = Date.now;
  const made = await s.offer(10, 3, 30);
  const offer = await firstOffer(client);
  try {
    Date.now = () => realNow() + 3_600_000; // the phone's clock an hour ahead
    for (let i = 0; i < 5; i++) {
      const truth = Date.parse(made.expiresAt) - realNow();
      assert.ok(Math.abs(offer.remainingMs() - truth) < 150, `${offer.remainingMs()} vs ${truth}`);
      await sleep(200);
    }
  } finally {
    Date.now = realNow;
  }
  client.close();
});

test("a second client of the same master replaces the first, which stays disconnected", async () => {
  const s = await server({ MAX_CONNECTIONS_PER_USER: "1" });
  const first = master(s, 3);
  const errors = [];
  first.on("error", (error) => errors.push(error));
  await connected(first);
  const second = master(s, 3);
  await connected(second);
  await until(() => first.state === "disconnected", 5_000, "first disconnected");
  await sleep(2_000);
  assert.equal(first.state, "disconnected");
  assert.equal(second.state, "connected");
  assert.deepEqual(errors.map((e) => e.code), ["replaced"]);
  second.close();
});
