// Debian's chromium, started as this machine allows (headless, no sandbox as root, no calls home).
import { chromium } from "playwright-core";

export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const fail = async (why) => {
    console.error(why);
    await browser.close();
    process.exit(1);
  };
  return { browser, fail };
}
