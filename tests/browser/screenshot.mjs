// Takes a screenshot of a running console, for a developer to look at the page.
// Usage: node tests/browser/screenshot.mjs [URL] [OUT.png] [WIDTH]
//   defaults: http://127.10.0.3:9900/ console.png 1440
import { launch } from "./chromium.mjs";

const url = process.argv[2] || "http://127.10.0.3:9900/";
const out = process.argv[3] || "console.png";
const width = Number(process.argv[4] || 1440);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  await page.goto(url, { waitUntil: "load" });
  // Let a few polls land so that charts have lines.
  await page.waitForFunction(() => Number(document.body.dataset.ticks || 0) > 0, null, { timeout: 15000 });
  await page.waitForTimeout(3000);
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out} (${width} px wide) of ${url}`);
} finally {
  await browser.close();
}
