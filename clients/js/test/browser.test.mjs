// The browser build in Debian's Chromium (playwright-core): examples/browser.html connects, shows
// an offer with a live countdown, accepts it, and survives networkChanged().
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, normalize } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

import { Server, freePort, masterToken, sleep } from "./server.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const cleanup = [];
after(() => Promise.all(cleanup.map((f) => f())));

/** The repository's files over HTTP: module scripts do not load from file://. */
async function staticServer() {
  const port = await freePort();
  const types = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json" };
  const server = createServer((req, res) => {
    const path = normalize(join(root, new URL(req.url, "http://x").pathname));
    if (!path.startsWith(root) || !existsSync(path)) return res.writeHead(404).end();
    res.writeHead(200, { "Content-Type": types[extname(path)] ?? "application/octet-stream" });
    res.end(readFileSync(path));
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  cleanup.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${port}`;
}

test("the browser build shows an offer counting down, accepts it, and survives networkChanged", { skip: !existsSync(CHROMIUM) && !process.env.CI }, async () => {
  const s = await new Server().start();
  cleanup.push(() => s.stop());
  const site = await staticServer();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  cleanup.push(() => browser.close());
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const query = new URLSearchParams({ url: s.ws, token: masterToken(3) });
  await page.goto(`${site}/examples/browser.html?${query}`);
  await page.waitForFunction(() => document.getElementById("state").textContent === "connected");

  await s.putOrder(10);
  const offer = await s.offer(10, 3, 30);
  const left = page.locator(`#offer-${offer.id} .left`);
  await left.waitFor();
  const first = Number(await left.textContent());
  await sleep(1_200);
  const later = Number(await left.textContent());
  assert.ok(first > 27 && first <= 30, `${first}`);
  assert.ok(later < first - 0.8 && later > first - 1.6, `${first} then ${later}`);

  await page.click(`#offer-${offer.id} button`);
  await page.waitForFunction((id) => document.getElementById("log").textContent.includes(`offer ${id}: accepted`), offer.id);
  assert.equal((await s.call("GET", `/api/v1/assignments/${offer.id}`)).body.status, "accepted");

  await page.evaluate(() => window.client.networkChanged());
  await page.waitForFunction(() => document.getElementById("state").textContent === "connected");
  await s.putOrder(11);
  const second = await s.offer(11, 3, 30);
  await page.locator(`#offer-${second.id}`).waitFor();
  assert.deepEqual(errors, []);
});
