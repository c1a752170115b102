// The /admin page in a real Chromium: it renders, a master connecting and an offer being accepted
// appear without a reload, and a master token is refused. Prints one JSON line of timings.
// Usage: node dashboard.mjs <base URL> <admin token> <master token> <service token> <screenshot.png>
import { launch } from "./launch.mjs";

const [base, adminToken, masterToken, serviceToken, screenshot] = process.argv.slice(2);
const { browser, fail } = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  await page.goto(`${base}/admin`);

  // A master token: a clear message, and no data.
  await page.getByLabel("Admin token").fill(masterToken);
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByRole("status").getByText("not an admin").waitFor({ timeout: 5000 });
  if (await page.locator("#live").isVisible()) await fail("data shown to a master token");
  if (await page.evaluate(() => sessionStorage.length) !== 0) await fail("a refused token was kept");

  // The admin token: the page renders live figures.
  await page.getByLabel("Admin token").fill(adminToken);
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByRole("status").getByText("Live").waitFor({ timeout: 5000 });
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById("total-connected").textContent), null, { timeout: 5000 });

  // A master's app connects and subscribes (in another tab, over a real WebSocket).
  const phone = await browser.newPage();
  await phone.goto(`${base}/health`);
  let started = Date.now();
  await phone.evaluate((token) => {
    const ws = new WebSocket(`ws://${location.host}/ws?token=${token}`);
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.type === "auth_success") ws.send(JSON.stringify({ type: "subscribe_assignments" }));
      if (m.type === "new_assignment") {
        ws.send(JSON.stringify({ type: "accept_assignment", assignmentId: m.assignment.id }));
      }
    };
    window.phone = ws;
  }, masterToken);
  await page.locator('#subscriptions tbody tr[data-master-id="3"]').waitFor({ timeout: 3000 });
  const masterSeenMs = Date.now() - started;
  await page.locator("#by-role-master").getByText("1", { exact: true }).waitFor({ timeout: 3000 });

  // The assignment service offers an order; the master's app accepts it.
  const call = async (method, path, body) => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${serviceToken}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!r.ok) await fail(`${method} ${path}: ${r.status} ${await r.text()}`);
  };
  await call("PUT", "/api/v1/orders/10", { clientUserId: 7, address: "Lenina 10", deviceType: "washer", problem: "leaks" });
  started = Date.now();
  await call("POST", "/api/v1/assignments", { orderId: 10, masterId: 3, ttlSeconds: 60 });
  await page.locator('#feed li[data-event="accepted"]').waitFor({ timeout: 3000 });
  const acceptSeenMs = Date.now() - started;
  const line = await page.locator('#feed li[data-event="accepted"]').first().textContent();
  if (!/decided in/.test(line)) await fail(`no time to decide: ${line}`);

  // Sorting and filtering work from the keyboard.
  await page.getByRole("button", { name: "Node" }).focus();
  await page.keyboard.press("Enter");
  await page.getByLabel("Filter").fill("no such master");
  if (await page.locator("#subscriptions tbody tr").count() !== 0) await fail("the filter kept rows");
  await page.getByLabel("Filter").fill("");
  await page.waitForTimeout(1200);
  await page.screenshot({ path: screenshot, fullPage: true });

  // Readable at phone width: nothing wider than the screen but the table, which scrolls.
  await page.setViewportSize({ width: 375, height: 800 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) await fail(`the page is ${overflow}px wider than a phone`);

  console.log(JSON.stringify({ ok: true, masterSeenMs, acceptSeenMs }));
} catch (e) {
  await fail(String(e));
}
await browser.close();
