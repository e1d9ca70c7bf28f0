// The Meridian console page: polls /api/overview and /api/series twice a second and
// redraws. No framework, no build step: this file is compiled into the binary as is.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2f6fde", "#d0342c", "#1f9d55", "#9b51e0", "#d98a00", "#00a3a3"];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// Numbers with units, readable at a glance.
const fmt = {
  num(v, digits = 1) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(digits) + "M";
    if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(digits) + "k";
    return v.toFixed(v >= 100 || Number.isInteger(v) ? 0 : digits);
  },
  pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(v < 0.1 && v > 0 ? 2 : 1) + "%"; },
  ms(v) { return v === null || v === undefined ? "–" : (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " ms"; },
  bytes(v) {
    if (v === null || v === undefined) return "–";
    const u = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (Math.abs(v) >= 1000 && i < u.length - 1) { v /= 1000; i++; }
    return v.toFixed(v >= 100 || i === 0 ? 0 : 1) + " " + u[i];
  },
  money(v) { return "$" + (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(4)); },
  time(unix) { return new Date(unix * 1000).toLocaleTimeString([], { hour12: false }); },
};

// A line chart on a canvas: time axis at the bottom, value axis with units on the left.
function drawChart(canvas, lines, until, secs, unitFmt, fixedMax) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (w === 0 || h === 0) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 70, right = 8, top = 18, bottom = 20;
  const pw = w - left - right, ph = h - top - bottom;
  let max = fixedMax || 0;
  if (!fixedMax) {
    for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v;
    max = niceCeil(max || 1);
  }
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = "#e2e5ea";
  g.fillStyle = "#6b7383";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + pw, y); g.stroke();
    g.fillText(unitFmt((max * i) / 4), left - 6, y);
  }
  g.textAlign = "center";
  g.textBaseline = "top";
  const step = secs <= 300 ? 60 : secs <= 900 ? 180 : 600;
  for (let t = until - (until % step); t > until - secs; t -= step) {
    const x = left + pw * (1 - (until - t) / secs);
    g.beginPath(); g.moveTo(x, top); g.lineTo(x, top + ph); g.stroke();
    g.fillText(fmt.time(t).slice(0, 5), x, top + ph + 4);
  }
  lines.forEach((l, k) => {
    g.strokeStyle = l.color || COLORS[k % COLORS.length];
    g.lineWidth = 1.6;
    g.beginPath();
    let pen = false;
    const n = l.values.length;
    l.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const x = left + (pw * (i + (secs - n) + 1)) / secs;
      const y = top + ph - (ph * Math.min(v, max)) / max;
      if (pen) g.lineTo(x, y); else g.moveTo(x, y);
      pen = true;
    });
    g.stroke();
  });
  // Legend along the top.
  g.textAlign = "left";
  g.textBaseline = "top";
  let x = left;
  lines.forEach((l, k) => {
    g.fillStyle = l.color || COLORS[k % COLORS.length];
    g.fillRect(x, 4, 10, 8);
    g.fillStyle = "#1d2330";
    g.fillText(l.label, x + 14, 2);
    x += g.measureText(l.label).width + 30;
  });
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const CHARTS = [
  { id: "chart-rps", unit: (v) => fmt.num(v, 0) + "/s", lines: [["global.edge_rps", "edges"], ["global.region_rps", "regions"]] },
  { id: "chart-errors", unit: fmt.pct, lines: [["global.error_rate", "5xx share"]] },
  { id: "chart-hits", unit: fmt.pct, max: 1, lines: [["global.hit_rate", "hit rate"]] },
  { id: "chart-latency", unit: (v) => fmt.num(v, 1) + " ms", lines: [["global.edge_p50_ms", "edge p50"], ["global.edge_p95_ms", "edge p95"], ["global.region_p50_ms", "region p50"], ["global.region_p95_ms", "region p95"]] },
  { id: "chart-bytes", unit: (v) => fmt.bytes(v) + "/s", lines: [["global.bytes_out_rate", "to viewers"], ["global.bytes_origin_rate", "from origins"]] },
  { id: "chart-dns", unit: (v) => fmt.num(v, 0) + "/s", lines: [["global.dns_qps", "queries"]] },
];

let last = null;
let lastSeries = null;

function kpi(label, value, testid) {
  return el("div", { class: "kpi", "data-kpi": testid }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
}

function renderKpis(o) {
  const g = o.global;
  $("kpis").replaceChildren(
    kpi("Edge requests", fmt.num(g.edge_rps) + "/s", "edge_rps"),
    kpi("Region requests", fmt.num(g.region_rps) + "/s", "region_rps"),
    kpi("5xx error rate", fmt.pct(g.error_rate), "error_rate"),
    kpi("4xx / 5xx", fmt.num(g.err4xx_rps) + " / " + fmt.num(g.err5xx_rps) + " per s", "errors"),
    kpi("Cache hit rate", fmt.pct(g.hit_rate), "hit_rate"),
    kpi("Edge p50 / p95", fmt.ms(g.edge_p50_ms) + " / " + fmt.ms(g.edge_p95_ms), "edge_latency"),
    kpi("Bytes to viewers", fmt.bytes(g.bytes_out_rate) + "/s", "bytes_out"),
    kpi("Bytes from origins", fmt.bytes(g.bytes_origin_rate) + "/s", "bytes_origin"),
    kpi("DNS queries", fmt.num(g.dns_qps) + "/s", "dns_qps"),
  );
}

function renderRegions(o) {
  $("regions").replaceChildren(...o.regions.map((r) => {
    const azs = el("div", { class: "azs" }, ...r.azs.map((a) => el("span", {
      class: "az " + (a.healthy === a.total ? "" : a.healthy === 0 ? "unhealthy" : "degraded"),
      "data-az": a.name,
      title: `${a.healthy} of ${a.total} instances healthy`,
    }, `${a.name} ${a.healthy}/${a.total}`)));
    return el("article", { class: "card", "data-region": r.name, "data-status": r.status },
      el("h3", {}, el("span", { class: "dot " + r.status }), r.name, r.primary ? el("span", { class: "muted small" }, "primary") : null,
        el("span", { class: "badge " + r.status, "data-testid": "region-status" }, r.status)),
      azs,
      el("dl", {},
        el("dt", {}, "Load balancer"), el("dd", {}, `${r.lb} ${r.lb_up ? "up" : "DOWN"}`),
        el("dt", {}, "Instances"), el("dd", {}, `${r.healthy} of ${r.total} healthy`),
        ...(r.desired == null ? [] : [el("dt", {}, "Autoscaling"), el("dd", { "data-testid": "scaling" }, `${r.running} running, ${r.desired} desired`)]),
        el("dt", {}, "Requests"), el("dd", {}, fmt.num(r.rps) + "/s"),
        el("dt", {}, "Latency p50 / p95"), el("dd", {}, fmt.ms(r.p50_ms) + " / " + fmt.ms(r.p95_ms)),
        el("dt", {}, "Errors 4xx / 5xx"), el("dd", {}, fmt.num(r.err4xx_rps) + " / " + fmt.num(r.err5xx_rps) + " per s"),
        el("dt", {}, "In DNS answers"), el("dd", {}, r.in_dns === null ? "–" : r.in_dns ? "yes" : "no (failed over)"),
        ...(r.cache ? cacheRows(r.cache) : []),
        ...(r.db ? dbRows(r.db) : []),
      ),
      ...(r.versions && r.versions.length ? [versionsTable(r.versions)] : []));
  }));
}

// A canary or blue/green rollout in the region: the old (blue) and new (green) version
// side by side, from the balancer's per-target-group series.
function versionsTable(vs) {
  return el("table", { class: "versions", "data-testid": "rollout-versions" },
    el("thead", {}, el("tr", {}, el("th", {}, "Version"), el("th", { class: "num" }, "Requests"),
      el("th", { class: "num" }, "5xx rate"), el("th", { class: "num" }, "p95"))),
    el("tbody", {}, ...vs.map((v) => el("tr", { "data-side": v.side },
      el("td", {}, `${v.side}${v.version ? " (" + v.version + ")" : ""}`),
      el("td", { class: "num" }, fmt.num(v.rps) + "/s"),
      el("td", { class: "num" }, fmt.pct(v.error_rate)),
      el("td", { class: "num" }, fmt.ms(v.p95_ms))))));
}

// The region's Redis: which node is primary, its memory against maxmemory, its hit rate,
// and each replica's link.
function cacheRows(c) {
  const p = c.nodes.find((n) => n.name === c.primary);
  const replicas = c.nodes.filter((n) => n.name !== c.primary).map((n) =>
    `${n.name} ${!n.up ? "DOWN" : n.link_up ? "in sync" + (n.lag_bytes ? `, ${fmt.bytes(n.lag_bytes)} behind` : "") : "link down"}`);
  return [
    el("dt", {}, "Cache primary"), el("dd", { "data-testid": "cache-primary" }, p ? p.name : "none"),
    el("dt", {}, "Cache memory / hit rate"), el("dd", {}, p ? `${fmt.bytes(p.used_memory)} of ${fmt.bytes(p.maxmemory)}, ${fmt.pct(p.hit_rate)} hits` : "–"),
    el("dt", {}, "Cache replicas"), el("dd", {}, replicas.length ? replicas.join("; ") : "none"),
  ];
}

// The region's PostgreSQL nodes: each one's role now, its lag behind the primary, its
// commits per second and its client connections.
const dbRoleNames = { primary: "primary", sync_standby: "synchronous standby", replica: "replica" };
function dbRows(d) {
  return d.nodes.flatMap((n) => {
    const role = n.up && n.role ? dbRoleNames[n.role] || n.role : "DOWN";
    const lag = n.role && n.role !== "primary" ? `, ${fmt.bytes(n.lag_bytes)} / ${fmt.num(n.lag_seconds, 1)} s behind` : "";
    const load = n.up ? `${fmt.num(n.commits_per_second)} commits/s, ${fmt.num(n.connections, 0)} connections` : "–";
    return [
      el("dt", {}, "Database " + n.name),
      el("dd", { "data-db-node": n.name, "data-db-role": n.up && n.role ? n.role : "down" }, `${role}${lag}; ${load}`),
    ];
  });
}

function renderPops(o) {
  const regions = o.regions.map((r) => r.name);
  const head = el("tr", {}, el("th", {}, "PoP"), el("th", {}, "Status"), el("th", { class: "num" }, "Requests"),
    el("th", { class: "num" }, "Hit rate"), el("th", { class: "num" }, "p95"), el("th", { class: "num" }, "To viewers"),
    el("th", { class: "num" }, "From origins"), ...regions.map((r) => el("th", { class: "num" }, "RTT " + r)), el("th", {}, "Misses go to"));
  const row = (p) => el("tr", { "data-pop": p.name, "data-status": p.status },
    el("td", {}, p.name),
    el("td", {}, el("span", { class: "dot " + p.status }), p.up ? p.status : "unreachable"),
    el("td", { class: "num" }, fmt.num(p.rps) + "/s"),
    el("td", { class: "num" }, fmt.pct(p.hit_rate)),
    el("td", { class: "num" }, fmt.ms(p.p95_ms)),
    el("td", { class: "num" }, fmt.bytes(p.bytes_out_rate) + "/s"),
    el("td", { class: "num" }, fmt.bytes(p.bytes_origin_rate) + "/s"),
    ...regions.map((r) => {
      const origin = p.origins.find((x) => x.origin === "lb:" + r);
      if (!origin) return el("td", { class: "num" }, "–");
      const cls = "num " + (!origin.healthy ? "down-origin" : p.preferred === r ? "preferred" : "");
      return el("td", { class: cls }, fmt.ms(origin.rtt_ms));
    }),
    el("td", {}, p.preferred || "none healthy"));
  const rows = o.pops.map(row);
  // Regional edge caches: the tier between the PoPs and the regions, hit rate first.
  const recs = o.regional_caches || [];
  if (recs.length) {
    rows.push(el("tr", { class: "muted" }, el("th", { colspan: String(8 + regions.length) }, "Regional edge caches")));
    rows.push(...recs.map(row));
  }
  $("pops").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
}

// Edge functions, only when the distribution has any: how often each runs, how often it
// fails and mostly why, and how close its p99 comes to the CPU budget.
function renderFunctions(o) {
  const fns = o.functions || [];
  $("functions-panel").hidden = fns.length === 0;
  if (!fns.length) return;
  const rows = fns.map((f) => {
    const top = f.errors_by_kind.find((k) => k.kind === f.top_error_kind);
    const util = f.p99_utilization;
    return el("tr", { "data-function": f.name },
      el("td", {}, f.name),
      el("td", { class: "muted" }, f.event_types.join(", ") || "–"),
      el("td", { class: "num" }, fmt.num(f.invocations_rps) + "/s"),
      el("td", { class: "num" + (f.errors_rps ? " bad" : "") }, fmt.num(f.errors_rps) + "/s"),
      el("td", { title: f.errors_by_kind.map((k) => `${k.kind} ${fmt.num(k.per_second)}/s`).join(", ") || null },
        top ? `${top.kind} (${fmt.num(top.per_second)}/s)` : "–"),
      el("td", { class: "num" + (util !== null && util >= 90 ? " bad" : "") }, util === null ? "–" : fmt.num(util, 1) + "%"));
  });
  $("functions").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "Function"), el("th", {}, "Event types"), el("th", { class: "num" }, "Invocations"),
      el("th", { class: "num" }, "Errors"), el("th", {}, "Top error kind"), el("th", { class: "num" }, "p99 compute utilization"))),
    el("tbody", {}, ...rows));
}

// The security view (AWS WAF's and CloudFront's): each rule's allowed, blocked and counted
// requests with a row per PoP under it, the keys rate limits refuse most, authentication
// failures by reason, and idempotent requests. Hidden while nothing is protected.
function renderSecurity(s) {
  const shown = !!(s && s.configured);
  $("security-panel").hidden = !shown;
  if (!shown) return;
  const rate = (v) => (v === null || v === undefined ? "–" : fmt.num(v) + "/s");
  const limit = (r) => (r.limit === null ? "–" : `${r.limit} / ${fmt.num(r.window_seconds)} s`);
  const rows = s.rules.flatMap((r) => [
    el("tr", { "data-rule": r.name, class: r.blocking ? "bad" : null },
      el("td", {}, r.name, r.blocking ? " (blocking)" : ""),
      el("td", { class: "muted" }, r.kind), el("td", { class: "muted" }, r.action || "–"), el("td", { class: "num" }, limit(r)),
      el("td", { class: "num" }, fmt.num(r.allowed)), el("td", { class: "num" }, fmt.num(r.blocked)),
      el("td", { class: "num" }, fmt.num(r.counted)), el("td", { class: "num" }, rate(r.blocked_rps)),
      el("td", { class: "num" }, rate(r.recent_blocked_rps))),
    ...r.pops.map((p) => el("tr", { "data-rule-pop": `${r.name}@${p.pop}`, class: "muted" },
      el("td", {}, "\u00a0\u00a0" + p.pop, p.blocking ? " (blocking)" : ""), el("td", {}), el("td", {}), el("td", {}),
      el("td", { class: "num" }, fmt.num(p.allowed)), el("td", { class: "num" }, fmt.num(p.blocked)),
      el("td", { class: "num" }, fmt.num(p.counted)), el("td", { class: "num" }, rate(p.blocked_rps)), el("td", {}))),
  ]);
  $("security-rules").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "Rule / PoP"), el("th", {}, "Kind"), el("th", {}, "Action"), el("th", { class: "num" }, "Limit"),
      el("th", { class: "num" }, "Allowed"), el("th", { class: "num" }, "Blocked"), el("th", { class: "num" }, "Counted"),
      el("th", { class: "num" }, "Blocked/s"), el("th", { class: "num" }, "Recent"))),
    el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", { class: "muted", colSpan: 9 }, "no rule has matched yet"))])));
  const keys = s.top_keys.map((k) => el("tr", { "data-key": k.key },
    el("td", {}, k.key), el("td", { class: "muted" }, k.rule), el("td", { class: "num" }, fmt.num(k.count)),
    el("td", { class: "num" + (k.refused ? " bad" : "") }, fmt.num(k.refused)), el("td", { class: "muted" }, k.pops.join(", "))));
  $("security-keys").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "Key"), el("th", {}, "Rule"), el("th", { class: "num" }, "Requests"),
      el("th", { class: "num" }, "Refused"), el("th", {}, "PoPs"))),
    el("tbody", {}, ...(keys.length ? keys : [el("tr", {}, el("td", { class: "muted", colSpan: 5 }, "no key is near a limit"))])));
  const auth = s.auth_failures.map((a) => el("tr", { "data-auth": `${a.method}/${a.name}/${a.reason}` },
    el("td", {}, a.reason), el("td", { class: "muted" }, `${a.method} ${a.name}`), el("td", { class: "num" }, fmt.num(a.total)),
    el("td", { class: "num" }, rate(a.per_second)),
    el("td", { class: "muted" }, Object.entries(a.pops).map(([p, n]) => `${p} ${fmt.num(n)}`).join(", "))));
  $("security-auth").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "Reason"), el("th", {}, "Authorizer"), el("th", { class: "num" }, "Failures"),
      el("th", { class: "num" }, "Per second"), el("th", {}, "PoPs"))),
    el("tbody", {}, ...(auth.length ? auth : [el("tr", {}, el("td", { class: "muted", colSpan: 5 }, "no authentication failure"))])));
  const unread = s.pops.filter((p) => p.report_error).map((p) => `${p.pop}: ${p.report_error}`);
  $("security-idempotency").textContent = [
    s.idempotency.length ? "Idempotent requests: " + s.idempotency.map((i) => `${i.result} ${fmt.num(i.total)}`).join(" · ") : "",
    unread.length ? "Reports not read: " + unread.join("; ") : "",
  ].filter(Boolean).join(" — ");
}

function renderRouting(o) {
  const rows = o.routing.map((r) => el("tr", { "data-location": r.location },
    el("td", {}, r.location), el("td", { class: "muted" }, r.source),
    el("td", {}, r.api_region || "–"), el("td", {}, r.cdn_pop || "–")));
  $("routing").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "Client location"), el("th", {}, "Sends from"), el("th", {}, "api. goes to"), el("th", {}, "cdn. goes to"))),
    el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: 4, class: "muted" }, "asking the DNS…"))])));
}

function renderDns(o) {
  const rows = o.dns.map((d) => el("tr", { "data-dns": d.name, "data-status": d.up ? "healthy" : "unhealthy" },
    el("td", {}, el("span", { class: "dot " + (d.up ? "healthy" : "down") }), d.name),
    el("td", { class: "num" }, fmt.num(d.qps) + "/s"),
    el("td", { class: "num" }, `${d.targets_healthy} of ${d.targets_total} targets healthy`)));
  $("dns").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "Server"), el("th", { class: "num" }, "Queries"), el("th", { class: "num" }, "Answer targets"))),
    el("tbody", {}, ...rows));
}

function renderAlarms(o) {
  const firing = o.alarms.filter((a) => a.state === "alarm");
  const pending = o.alarms.filter((a) => a.state === "pending");
  const count = $("alarm-count");
  count.textContent = firing.length ? `${firing.length} alarm${firing.length > 1 ? "s" : ""}` : pending.length ? `${pending.length} pending` : "no alarms";
  count.className = "badge " + (firing.length ? "alarm" : pending.length ? "pending" : "ok");
  const shown = [...firing, ...pending];
  const items = shown.map((a) => el("div", { class: "alarm", "data-alarm": a.rule, "data-subject": a.subject, "data-alarm-state": a.state },
    el("span", { class: "badge " + a.state }, a.state.toUpperCase()),
    el("span", {}, `${a.rule} · ${a.subject}`),
    el("span", { class: "detail" }, `${a.detail} · since ${fmt.time(a.since)}`)));
  const rules = el("p", { class: "muted small" }, "Rules: " + o.alarm_rules.map((r) => `${r.name} (${r.description})`).join("; "));
  $("alarms").replaceChildren(...(items.length ? items : [el("div", { class: "alarm", "data-alarm-state": "ok" }, el("span", { class: "badge ok" }, "OK"), "every alarm is OK")]), rules);
}

function renderEvents(o) {
  $("events").replaceChildren(...(o.events.length ? o.events.map((e) => el("li", { class: e.severity, "data-kind": e.kind },
    el("time", {}, fmt.time(e.at)),
    el("div", {}, el("div", {}, e.message), el("div", { class: "cause" }, `${e.kind} · ${e.cause}`)))) : [el("li", {}, el("span", {}), el("span", { class: "muted" }, "nothing has happened yet"))]));
}

function renderAudit(events) {
  const rows = events.map((e) => el("tr", { "data-audit": e.action, "data-result": String(e.result) },
    el("td", {}, e.time.replace("T", " ").replace("Z", "")), el("td", {}, e.node), el("td", {}, e.actor),
    el("td", { class: "muted" }, e.source), el("td", {}, e.action), el("td", {}, e.target),
    el("td", { class: "num" }, el("span", { class: "badge " + (e.result < 400 ? "ok" : "alarm") }, String(e.result)))));
  $("audit").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "Time (UTC)"), el("th", {}, "Node"), el("th", {}, "Actor"), el("th", {}, "Source"),
      el("th", {}, "Action"), el("th", {}, "Target"), el("th", { class: "num" }, "Result"))),
    el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", { class: "muted" }, "no admin actions recorded"))])));
}

// The audit files change only on admin actions: every few seconds is enough.
async function pollAudit() {
  try {
    renderAudit(await fetch("/api/audit", { cache: "no-store" }).then((r) => r.json()));
  } catch (e) {
    // The overview poll shows the console as stale.
  }
}

function renderCost(o) {
  const total = o.cost.reduce((a, c) => ({ total: a.total + c.total, per_hour: a.per_hour + c.per_hour, per_month: a.per_month + c.per_month }), { total: 0, per_hour: 0, per_month: 0 });
  const rows = o.cost.map((c) => el("tr", { "data-cost": c.place },
    el("td", {}, c.place), el("td", { class: "muted" }, c.kind),
    el("td", { class: "num" }, fmt.num(c.requests, 1)), el("td", { class: "num" }, c.gb_out.toFixed(3)),
    el("td", { class: "num" }, c.instance_hours.toFixed(2)), el("td", { class: "num" }, fmt.money(c.total)),
    el("td", { class: "num" }, fmt.money(c.per_hour)), el("td", { class: "num" }, fmt.money(c.per_month))));
  rows.push(el("tr", {}, el("th", {}, "total"), el("td", {}), el("td", {}), el("td", {}), el("td", {}),
    el("th", { class: "num" }, fmt.money(total.total)), el("th", { class: "num" }, fmt.money(total.per_hour)), el("th", { class: "num" }, fmt.money(total.per_month))));
  $("cost").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "Place"), el("th", {}, ""), el("th", { class: "num" }, "Requests"), el("th", { class: "num" }, "GB out"),
      el("th", { class: "num" }, "Instance h"), el("th", { class: "num" }, "So far"), el("th", { class: "num" }, "Per hour"), el("th", { class: "num" }, "Per month"))),
    el("tbody", {}, ...rows));
}

function renderNodes(o) {
  $("nodes").replaceChildren(...o.nodes.map((n) => el("span", {
    class: "node " + (n.up ? "" : "down"), "data-node": n.name, "data-up": String(n.up),
    title: n.up ? `${n.role} at ${n.admin}` : `${n.role} at ${n.admin}: ${n.error || "not scraped yet"}`,
  }, el("span", { class: "dot " + (n.up ? "healthy" : "down") }), n.name, n.restarts ? ` (${n.restarts} restarts)` : "")));
}

function renderOverall(o) {
  const worst = o.regions.some((r) => r.status === "unhealthy") || o.pops.some((p) => p.status === "unhealthy") ? "unhealthy"
    : o.regions.some((r) => r.status === "degraded") || o.pops.some((p) => p.status === "degraded") || o.nodes.some((n) => !n.up) ? "degraded" : "healthy";
  const b = $("overall");
  b.className = "badge " + worst;
  b.textContent = worst === "healthy" ? "all healthy" : worst;
  b.dataset.status = worst;
  $("deployment").textContent = `${o.deployment} · ${o.zone}`;
  $("updated").textContent = "updated " + fmt.time(o.now);
  $("footer").textContent = `${o.nodes.length} nodes scraped every second · ${o.series_count} series (${fmt.bytes(o.series_bytes)} held) · up since ${fmt.time(o.started)}`;
}

function render(o) {
  renderOverall(o);
  renderKpis(o);
  renderRegions(o);
  renderPops(o);
  renderFunctions(o);
  renderRouting(o);
  renderDns(o);
  renderAlarms(o);
  renderEvents(o);
  renderCost(o);
  renderNodes(o);
  document.body.dataset.ticks = String(o.ticks);
}

function renderCharts() {
  if (!lastSeries) return;
  const s = lastSeries;
  for (const c of CHARTS) {
    const lines = c.lines.map(([name, label]) => ({ label, values: s.series[name] || [] }));
    drawChart($(c.id), lines, s.until, s.secs, c.unit, c.max);
  }
}

async function poll() {
  const secs = Number($("window").value) || 300;
  const names = CHARTS.flatMap((c) => c.lines.map((l) => l[0])).join(",");
  try {
    const [o, s, sec] = await Promise.all([
      fetch("/api/overview", { cache: "no-store" }).then((r) => r.json()),
      fetch(`/api/series?names=${names}&secs=${secs}`, { cache: "no-store" }).then((r) => r.json()),
      fetch("/api/security", { cache: "no-store" }).then((r) => r.json()),
    ]);
    last = o;
    lastSeries = s;
    $("stale").hidden = true;
    render(o);
    renderSecurity(sec);
    renderCharts();
  } catch (e) {
    $("stale").hidden = false;
  }
}

$("window").addEventListener("change", poll);
window.addEventListener("resize", renderCharts);
poll();
// Twice a tick, so that what the console knows is on the page within half a second.
setInterval(poll, 500);
pollAudit();
setInterval(pollAudit, 5000);
