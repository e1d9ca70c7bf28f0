// Browser checks of the console on a running default deployment (scripts/browser-test
// starts it). Exits non-zero with a reason on the first failed check.
//
//   node tests/browser/console.test.mjs URL STATE_DIR
import { launch } from "./chromium.mjs";
import { readFileSync } from "node:fs";

const url = process.argv[2] || "http://127.10.0.3:9900/";
const stateDir = process.argv[3] || ".meridian";
const REGION = "eu-west-1";

let lastOverview = "";

function fail(why) {
  console.error(`FAIL: ${why}`);
  if (lastOverview) console.error(`the console's overview then: ${lastOverview}`);
  process.exitCode = 1;
  throw new Error(why);
}

function signalRegionInstances(signal) {
  // The region's application instances; the balancer stays up, as when an ECS service's
  // tasks all hang, so the region must turn unhealthy from its targets' health.
  const endpoints = JSON.parse(readFileSync(`${stateDir}/endpoints.json`, "utf8"));
  const pids = endpoints.nodes
    .filter((n) => n.role === "service" && n.region === REGION && n.pid)
    .map((n) => n.pid);
  if (!pids.length) fail(`endpoints.json lists no running instance of ${REGION}`);
  for (const pid of pids) process.kill(pid, signal);
}

const browser = await launch();
const errors = [];
let frozen = false;
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 800 } });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  // Keep the newest overview the page fetched, to show what it saw when a check fails.
  page.on("response", async (r) => {
    if (!r.url().includes("/api/overview")) return;
    try {
      const o = await r.json();
      lastOverview = JSON.stringify({
        regions: o.regions.map((x) => [x.name, x.status, `${x.healthy}/${x.total}`, x.lb_up]),
        pops: o.pops.map((x) => [x.name, x.status]),
        down: o.nodes.filter((n) => !n.up).map((n) => [n.name, n.error]),
        events: o.events.slice(0, 8).map((e) => e.message),
      });
    } catch {}
  });
  await page.goto(url, { waitUntil: "load" });

  // Every region, PoP and DNS node of the deployment, healthy, with numbers that move.
  const endpoints = JSON.parse(readFileSync(`${stateDir}/endpoints.json`, "utf8"));
  const regions = [...new Set(endpoints.nodes.filter((n) => n.role === "lb").map((n) => n.region))];
  const pops = endpoints.nodes.filter((n) => n.role === "edge").map((n) => n.name.replace(/^edge-/, ""));
  const dns = endpoints.nodes.filter((n) => n.role === "dns").map((n) => n.name);
  for (const r of regions) {
    await page.waitForSelector(`[data-region="${r}"][data-status="healthy"]`, { timeout: 20000 })
      .catch(() => fail(`region ${r} is not shown healthy`));
  }
  for (const p of pops) {
    await page.waitForSelector(`tr[data-pop="${p}"][data-status="healthy"]`, { timeout: 20000 })
      .catch(() => fail(`PoP ${p} is not shown healthy`));
  }
  for (const d of dns) {
    await page.waitForSelector(`tr[data-dns="${d}"][data-status="healthy"]`, { timeout: 20000 })
      .catch(() => fail(`DNS node ${d} is not shown healthy`));
  }
  const down = await page.$$eval('[data-node][data-up="false"]', (xs) => xs.map((x) => x.dataset.node));
  if (down.length) fail(`nodes shown down on a healthy deployment: ${down.join(", ")}`);
  const ticks = async () => Number(await page.evaluate(() => document.body.dataset.ticks || 0));
  const t1 = await ticks();
  await page.waitForFunction((t) => Number(document.body.dataset.ticks || 0) >= t + 2, t1, { timeout: 10000 })
    .catch(() => fail("the page's numbers do not update"));
  // The balancers carry the PoPs' health checks, so region request rates are live numbers.
  const rps = await page.textContent(`[data-region="${regions[0]}"] dl`);
  if (!/Requests\s*[0-9.]+k?\/s/.test(rps)) fail(`no live request rate for ${regions[0]}: ${rps}`);
  console.log(`ok: ${regions.length} regions, ${pops.length} PoPs and ${dns.length} DNS nodes shown healthy, live`);

  // Freeze the region's instances: unhealthy on the page and an alarm within 5 s.
  signalRegionInstances("SIGSTOP");
  frozen = true;
  const t0 = Date.now();
  await page.waitForSelector(`[data-region="${REGION}"][data-status="unhealthy"]`, { timeout: 5000 })
    .catch(() => fail(`${REGION} not shown unhealthy within 5 s`));
  const unhealthyAfter = (Date.now() - t0) / 1000;
  await page.waitForSelector(`[data-alarm="region-unhealthy"][data-subject="${REGION}"][data-alarm-state="alarm"]`, { timeout: Math.max(1, 5000 - (Date.now() - t0)) })
    .catch(() => fail(`no region-unhealthy alarm for ${REGION} within 5 s`));
  const alarmAfter = (Date.now() - t0) / 1000;
  console.log(`ok: ${REGION} unhealthy after ${unhealthyAfter.toFixed(1)} s, alarm after ${alarmAfter.toFixed(1)} s`);
  await page.waitForSelector(`#events li[data-kind="alarm"]`, { timeout: 3000 })
    .catch(() => fail("the alarm is not on the events timeline"));

  // Thaw: healthy again and the alarm clears.
  signalRegionInstances("SIGCONT");
  frozen = false;
  const t2 = Date.now();
  await page.waitForSelector(`[data-region="${REGION}"][data-status="healthy"]`, { timeout: 20000 })
    .catch(() => fail(`${REGION} not healthy again within 20 s of recovery`));
  await page.waitForFunction((r) => !document.querySelector(`[data-alarm="region-unhealthy"][data-subject="${r}"][data-alarm-state="alarm"]`), REGION, { timeout: 5000 })
    .catch(() => fail("the alarm did not clear"));
  console.log(`ok: ${REGION} healthy and alarm cleared ${((Date.now() - t2) / 1000).toFixed(1)} s after recovery`);

  // A narrow laptop screen still lays out without horizontal scrolling of the page.
  await page.setViewportSize({ width: 1024, height: 700 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) fail(`the page is ${overflow}px wider than a 1024px screen`);

  if (errors.length) fail(`console errors on the page: ${errors.join(" | ")}`);
  console.log("ok: no console errors");
} catch (e) {
  if (!process.exitCode) {
    console.error(`FAIL: ${e.message}`);
    process.exitCode = 1;
  }
} finally {
  if (frozen) {
    try { signalRegionInstances("SIGCONT"); } catch {}
  }
  await browser.close();
}
