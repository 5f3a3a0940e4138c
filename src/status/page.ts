/**
 * The status page: one HTML document, its stylesheet and its script, served by the status server
 * itself (nothing fetched from elsewhere, no build step). The script reads /status.json and
 * listens to /events; it writes every value as text (never as HTML: error messages come from the
 * broker). With a token, the page's own URL carries it (`/?token=…`) and the script passes it on.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>warren status</title>
<link rel="stylesheet" href="/page.css">
<script src="/page.js" defer></script>
</head>
<body>
<header>
  <h1>warren</h1>
  <span id="state" class="badge" data-testid="client-state">…</span>
  <span id="host" data-testid="client-host"></span>
  <span id="flags"></span>
  <span id="live" class="muted">connecting…</span>
</header>
<main>
  <section class="card wide">
    <h2>Supervision</h2>
    <div id="tree" data-testid="tree"></div>
    <p id="recovery" class="muted"></p>
    <p id="flow" class="muted" data-testid="flow"></p>
  </section>
  <section class="card wide">
    <h2>Rates <span class="muted">(per second, last 5 minutes)</span></h2>
    <div id="charts" class="charts"></div>
  </section>
  <section class="card wide">
    <h2>Consumers</h2>
    <table id="consumers" data-testid="consumers"><thead><tr>
      <th>queue</th><th>state</th><th>prefetch</th><th>concurrency</th><th>running</th>
      <th>delivered</th><th>acked</th><th>failed</th><th>requeued</th><th>retried</th><th>dead-lettered</th>
    </tr></thead><tbody></tbody></table>
  </section>
  <section class="card wide">
    <h2>Publishers</h2>
    <table id="publishers" data-testid="publishers"><thead><tr>
      <th>#</th><th>pending</th><th>outbox stored</th><th>dead letters</th><th>published</th><th>confirmed</th>
      <th>nacked</th><th>nack retries</th><th>renewals</th>
    </tr></thead><tbody></tbody></table>
    <h2>RPC</h2>
    <table id="rpc"><thead><tr><th>kind</th><th>queue</th><th>state</th><th>in flight</th><th>served / queued</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="card wide">
    <h2>Transitions</h2>
    <table id="timeline" data-testid="timeline"><thead><tr><th>time</th><th>from → to</th><th>host</th><th>error</th></tr></thead><tbody></tbody></table>
  </section>
</main>
</body>
</html>
`;

export const PAGE_CSS = `:root { --ok: #2e7d32; --warn: #ef6c00; --bad: #c62828; --idle: #757575; --fg: #1d2330; --muted: #6b7280; --bg: #f6f7f9; --card: #fff; --line: #d9dde3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 12px; align-items: center; padding: 12px 20px; background: #1d2330; color: #fff; flex-wrap: wrap; }
header h1 { margin: 0; font-size: 18px; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; padding: 16px 20px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; overflow-x: auto; }
.wide { grid-column: 1 / -1; }
h2 { font-size: 15px; margin: 4px 0 10px; }
.muted { color: var(--muted); font-weight: normal; }
header .muted { color: #aab2c0; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff; font-weight: 600; background: var(--idle); }
.s-running, .s-consuming, .s-open { background: var(--ok); }
.s-blocked, .s-recovering, .s-resubscribing, .s-connecting, .s-handshaking, .s-restoring, .s-subscribing, .s-waiting, .s-draining, .s-starting { background: var(--warn); }
.s-degraded, .s-failed { background: var(--bad); }
.s-closed, .s-closing, .s-cancelled, .s-idle { background: var(--idle); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; color: var(--muted); }
td.err { white-space: normal; color: var(--bad); }
.tree, .tree ul { list-style: none; margin: 0; padding-left: 22px; position: relative; }
.tree > li { padding-left: 0; }
.tree ul li { position: relative; padding: 3px 0 3px 14px; }
.tree ul li::before { content: ""; position: absolute; left: 0; top: 0; bottom: 50%; width: 12px; border-left: 2px solid var(--line); border-bottom: 2px solid var(--line); }
.node { display: inline-flex; gap: 8px; align-items: center; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 12px; }
.chart { border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
.chart .now { font-weight: 600; float: right; }
.chart canvas { width: 100%; height: 48px; display: block; }
`;

export const PAGE_JS = `"use strict";
(() => {
  const token = new URLSearchParams(location.search).get("token");
  const withToken = (path) => (token ? path + "?token=" + encodeURIComponent(token) : path);
  const RATES = ["published", "confirmed", "nacked", "retried", "delivered", "acked", "rejected", "deadLettered", "rpcCalls", "rpcServed"];
  const LABELS = { deadLettered: "dead-lettered", rpcCalls: "rpc calls", rpcServed: "rpc served", rejected: "rejected (requeued)" };
  const KEEP = 600; // points per chart: 5 minutes at the default 500 ms
  const series = Object.fromEntries(RATES.map((r) => [r, []]));
  const $ = (id) => document.getElementById(id);

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function badge(state, testid) {
    const b = el("span", state, "badge s-" + state);
    if (testid) b.dataset.testid = testid;
    return b;
  }
  function row(cells) {
    const tr = el("tr");
    for (const c of cells) {
      if (c instanceof Node) { const td = el("td"); td.append(c); tr.append(td); }
      else tr.append(el("td", c));
    }
    return tr;
  }
  function fill(id, rows) {
    const body = $(id).tBodies[0];
    body.replaceChildren(...rows);
  }
  function node(label, state, extra, testid) {
    const li = el("li");
    const span = el("span", undefined, "node");
    span.append(el("strong", label), badge(state, testid));
    if (extra) span.append(el("span", extra, "muted"));
    li.append(span);
    return li;
  }

  function render(s) {
    const c = s.client;
    const st = $("state");
    st.textContent = c.state;
    st.className = "badge s-" + c.state;
    $("host").textContent = c.host ?? c.addresses.join(", ");
    const flags = [];
    if (c.blocked) flags.push("blocked: " + c.blocked);
    if (c.degraded) flags.push("degraded (escalated backoff)");
    $("flags").textContent = flags.join(" · ");
    const b = c.restartBudget;
    const rec = c.lastRecovery;
    $("recovery").textContent =
      "restart budget " + b.left + " of " + b.maxRestarts + " in " + Math.round(b.withinMs / 1000) + " s" +
      (rec ? " · last recovery " + new Date(rec.time).toLocaleTimeString() + " after " + rec.downMs + " ms" +
        (rec.reason ? " (" + rec.reason.name + ": " + rec.reason.message + ")" : "") : " · no recovery yet");

    const secs = (ms) => (ms / 1000).toFixed(1) + " s";
    $("flow").textContent =
      (c.stateSince ? c.state + " since " + new Date(c.stateSince).toLocaleTimeString() + " · " : "") +
      "since " + new Date(s.since).toLocaleTimeString() + ": blocked " + secs(c.timeIn.blockedMs) +
      ", recovering " + secs(c.timeIn.recoveringMs) + ", degraded " + secs(c.timeIn.degradedMs);

    // One node per connection (consumers and RPC servers on the consume one, publishers and RPC
    // clients on the publish one), its channels under it, what uses each under its channel; what
    // has no channel now hangs under "no channel".
    const root = el("ul", undefined, "tree");
    const conns = c.connections.length ? c.connections : [{ role: "shared", state: c.state, host: c.host }];
    const roleOf = (kind) => (conns.some((x) => x.role === kind) ? kind : conns.some((x) => x.role === "shared") ? "shared" : conns[0].role);
    const channels = new Map();
    const add = (kind, ch, li) => {
      const role = roleOf(kind);
      if (!channels.has(role)) channels.set(role, new Map());
      const byChannel = channels.get(role);
      const key = ch ?? -1;
      if (!byChannel.has(key)) byChannel.set(key, []);
      byChannel.get(key).push(li);
    };
    const served = new Set(s.rpc.servers.map((r) => r.queue));
    for (const k of s.consumers)
      if (!served.has(k.queue)) add("consume", k.channel, node("consumer " + k.queue, k.state, k.running + " running", "tree-consumer"));
    s.publishers.forEach((p, i) => add("publish", p.channel, node("publisher #" + (i + 1), p.channel === null ? "waiting" : "running",
      p.pending + " pending" + (p.stored ? ", " + p.stored + " stored" : ""), "tree-publisher")));
    s.rpc.clients.forEach((r, i) => add("publish", r.channel, node("rpc client #" + (i + 1), r.ready ? "running" : "waiting", r.inFlight + " in flight")));
    for (const r of s.rpc.servers) add("consume", r.channel, node("rpc server " + r.queue, r.state, r.served + " served"));
    for (const x of conns) {
      const conn = node(x.role === "shared" ? "connection" : x.role + " connection", x.state, x.host ?? "", "tree-connection");
      const kids = el("ul");
      const byChannel = channels.get(x.role) ?? new Map();
      for (const [ch, items] of [...byChannel].sort((a, b) => (a[0] < 0 ? 1e9 : a[0]) - (b[0] < 0 ? 1e9 : b[0]))) {
        const chNode = ch < 0 ? node("no channel", "waiting") : node("channel " + ch, "open", undefined, "tree-channel");
        const under = el("ul");
        under.append(...items);
        chNode.append(under);
        kids.append(chNode);
      }
      conn.append(kids);
      root.append(conn);
    }
    $("tree").replaceChildren(root);

    fill("consumers", s.consumers.map((k) => row([k.queue, badge(k.state), k.prefetch, k.concurrency ?? "∞", k.running,
      k.stats.delivered, k.stats.acked, k.stats.failed, k.stats.requeued, k.stats.retried, k.stats.deadLettered])));
    fill("publishers", s.publishers.map((p, i) => row([i + 1, p.pending, p.stored, p.deadLetters, p.totals.published,
      p.totals.confirmed, p.totals.nacked, p.counters.nackRetries, p.counters.channelRenewals])));
    fill("rpc", [
      ...s.rpc.clients.map((r) => row(["client", "amq.rabbitmq.reply-to", badge(r.ready ? "running" : "waiting"), r.inFlight, r.queued])),
      ...s.rpc.servers.map((r) => row(["server", r.queue, badge(r.state), r.inFlight, r.served])),
    ]);
    fill("timeline", [...s.transitions].reverse().map(transitionRow));
  }

  function transitionRow(t) {
    const tr = row([new Date(t.time).toLocaleTimeString(), (t.role && t.role !== "shared" ? t.role + ": " : "") + t.from + " → " + t.to, t.host]);
    tr.append(el("td", t.error ? t.error.name + ": " + t.error.message : "", "err"));
    tr.dataset.to = t.to;
    return tr;
  }

  function drawCharts() {
    const box = $("charts");
    if (box.childElementCount === 0) {
      for (const r of RATES) {
        const d = el("div", undefined, "chart");
        d.append(el("span", LABELS[r] ?? r), el("span", "0", "now"), el("canvas"));
        d.dataset.rate = r;
        box.append(d);
      }
    }
    for (const d of box.children) {
      const pts = series[d.dataset.rate];
      d.querySelector(".now").textContent = pts.length ? String(Math.round(pts[pts.length - 1])) : "0";
      const cv = d.querySelector("canvas");
      const w = (cv.width = cv.clientWidth || 200);
      const h = (cv.height = 48);
      const g = cv.getContext("2d");
      const max = Math.max(1, ...pts);
      g.strokeStyle = "#1565c0";
      g.lineWidth = 1.5;
      g.beginPath();
      pts.forEach((v, i) => {
        const x = (i / Math.max(1, KEEP - 1)) * w;
        const y = h - 2 - (v / max) * (h - 4);
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    }
  }

  async function refresh() {
    try {
      const r = await fetch(withToken("/status.json"), { cache: "no-store" });
      if (r.ok) render(await r.json());
    } catch {
      $("live").textContent = "status unavailable";
    }
  }

  const events = new EventSource(withToken("/events"));
  events.onopen = () => { $("live").textContent = "live"; };
  events.onerror = () => { $("live").textContent = "reconnecting…"; };
  events.addEventListener("state", () => { void refresh(); });
  events.addEventListener("rates", (e) => {
    const rates = JSON.parse(e.data);
    for (const r of RATES) {
      const s = series[r];
      s.push(rates[r]);
      if (s.length > KEEP) s.shift();
    }
    drawCharts();
  });
  drawCharts();
  void refresh();
  setInterval(refresh, 2000);
})();
`;
