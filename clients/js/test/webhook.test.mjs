// verifyWebhook against the server's real deliveries.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, test } from "node:test";

import { verifyWebhook } from "../dist/index.js";
import { Server, freePort, until } from "./server.mjs";

const WEBHOOK_SECRET = "webhook-secret-for-the-client-tests-0123456789";
const cleanup = [];
after(() => Promise.all(cleanup.map((f) => f())));

test("verifyWebhook takes the server's deliveries and refuses a tampered body, another secret and a stale time", async () => {
  const deliveries = [];
  const port = await freePort();
  const receiver = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      deliveries.push({ body: Buffer.concat(chunks), signature: request.headers["x-dispatcher-signature"] });
      response.writeHead(200).end();
    });
  }).listen(port, "127.0.0.1");
  cleanup.push(() => new Promise((resolve) => receiver.close(resolve)));
  const s = await new Server({ WEBHOOK_URL: `http://127.0.0.1:${port}/hooks`, WEBHOOK_SECRET }).start();
  cleanup.push(() => s.stop());
  await s.putOrder(10);
  const offer = await s.offer(10, 3);
  await s.call("POST", `/api/v1/assignments/${offer.id}/cancel`);
  await until(() => deliveries.length >= 2, 10_000, "two webhooks"); // undelivered, then cancelled

  for (const { body, signature } of deliveries) {
    assert.ok(verifyWebhook(body, signature, WEBHOOK_SECRET), signature);
    assert.ok(verifyWebhook(body.toString("utf8"), signature, WEBHOOK_SECRET));
    const tampered = body.toString("utf8").replace(`"orderId":10`, `"orderId":11`);
    assert.notEqual(tampered, body.toString("utf8"));
    assert.equal(verifyWebhook(tampered, signature, WEBHOOK_SECRET), false);
    assert.equal(verifyWebhook(body, signature, "another-secret-another-secret-0123456789"), false);
    const realNow = Date.now;
    try {
      Date.now = () => realNow() + 10 * 60_000; // checked ten minutes later: a replay
      assert.equal(verifyWebhook(body, signature, WEBHOOK_SECRET), false);
      assert.ok(verifyWebhook(body, signature, WEBHOOK_SECRET, 3600));
    } finally {
      Date.now = realNow;
    }
  }
  assert.deepEqual(
    deliveries.map((d) => JSON.parse(d.body).event),
    ["undelivered", "cancelled"],
  );
});
