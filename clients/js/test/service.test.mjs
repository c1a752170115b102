// ServiceClient against the real dispatcher binary: typed calls, errors with the server's code,
// offers in a batch, and the event stream.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import WebSocket from "ws";

import { ApiError, ServiceClient } from "../dist/index.js";
import { Server, masterToken, serviceToken } from "./server.mjs";

const servers = [];
after(() => Promise.all(servers.map((s) => s.stop())));

test("typed calls answer the server's shapes, refusals carry its code, and a batch answers each offer", async () => {
  const s = await new Server().start();
  servers.push(s);
  const service = new ServiceClient({ baseUrl: s.http, token: serviceToken(), WebSocket });
  const events = service.events()[Symbol.asyncIterator]();

  const order = await service.putOrder(10, { clientUserId: 7, address: "Lenina 10", deviceType: "oven", problem: "cold" });
  assert.equal(order.id, 10);
  const { assignment } = await service.offer({ orderId: 10, masterId: 3, ttlSeconds: 60 });
  assert.equal(assignment.status, "pending");
  const twice = await service.offer({ orderId: 10, masterId: 3 }).catch((error) => error);
  assert.ok(twice instanceof ApiError, String(twice));
  assert.deepEqual([twice.status, twice.code], [409, "conflict"]);

  const { results } = await service.offerMany([
    { orderId: 10, masterId: 4 },
    { orderId: 10, masterId: 3 },
    { orderId: 99, masterId: 5 },
  ]);
  assert.deepEqual(results.map((r) => r.status), [201, 409, 404]);
  assert.equal(results[0].assignment.masterId, 4);
  assert.equal(results[2].code, "not_found");

  const rejected = await s.call("POST", `/api/v1/assignments/${assignment.id}/reject`, { reason: "far" }, masterToken(3));
  assert.equal(rejected.status, 200);
  for (;;) {
    const { value } = await events.next();
    if (value.type === "assignment_event" && value.event === "rejected") {
      assert.equal(value.assignmentId, assignment.id);
      break;
    }
  }
  await events.return();
});
