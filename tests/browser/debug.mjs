// The /debug page in a real Chromium: connect with a token, subscribe, accept an offer by
// clicking, ping; then a refused token's close explained. Prints one JSON line.
// Usage: node debug.mjs <base URL> <master token> <service token>
import { launch } from "./launch.mjs";

const [base, masterToken, serviceToken] = process.argv.slice(2);
const { browser, fail } = await launch();
const frame = (page, text) => page.locator("#frames li", { hasText: text }).first().waitFor({ timeout: 5000 });
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  await page.goto(`${base}/debug`);
  if (!(await page.getByLabel("WebSocket URL").inputValue()).endsWith("/api/v1/ws")) await fail("no default URL");
  await page.getByLabel("Token").fill(masterToken);
  await page.getByRole("button", { name: "Connect", exact: true }).click();
  await frame(page, '"auth_success"');
  await page.getByRole("button", { name: "Subscribe to offers" }).click();
  await frame(page, '"subscribed_assignments"');

  const call = async (method, path, body) => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${serviceToken}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!r.ok) await fail(`${method} ${path}: ${r.status}`);
    return r.json();
  };
  await call("PUT", "/api/v1/orders/10", { clientUserId: 7, address: "Lenina 10", deviceType: "washer", problem: "leaks" });
  const offer = await call("POST", "/api/v1/assignments", { orderId: 10, masterId: 3 });
  await frame(page, '"new_assignment"');
  await page.getByLabel("Assignment id").fill(String(offer.assignment.id));
  await page.getByRole("button", { name: "Accept", exact: true }).click();
  await frame(page, '"assignment_accepted"');
  await page.getByRole("button", { name: "Ping" }).click();
  await frame(page, '"pong"');
  const sent = await page.locator('#frames li[data-kind="out"]').count();

  // A refused token: the close is explained from the server's table.
  await page.getByLabel("Token").fill("not-a-token");
  await page.getByRole("button", { name: "Connect", exact: true }).click();
  await page.locator("#close").waitFor({ state: "visible", timeout: 5000 });
  const code = await page.locator("#close-code").textContent();
  const fix = await page.locator("#close-fix").textContent();
  if (!code.startsWith("1008")) await fail(`closed with ${code}`);
  if (!fix.includes("JWT_SECRET")) await fail(`no fix for a refused token: ${fix}`);
  console.log(JSON.stringify({ ok: true, sent, code, fix }));
} catch (e) {
  await fail(String(e));
}
await browser.close();
