/**
 * dashboards/: the Grafana dashboard and the Prometheus alert rules, checked three ways.
 *
 * 1. promtool: `promtool check rules` and `promtool test rules` (the unit tests of every alert)
 *    pass. scripts/prometheus.sh provides prometheus and promtool (installing Debian's package as
 *    root when they are missing); the tests are skipped, saying why, only when it cannot.
 * 2. Static: the dashboard parses, every query (and every alert expression) uses only the metric
 *    names and labels of the contract (dashboards/metrics.md), every metric of the contract is
 *    used by a panel or an alert.
 * 3. End to end: the demo (`examples/demo.ts --metrics-port`) runs against the real broker, a
 *    real Prometheus scrapes it every second with the alert rules loaded, the demo's connection
 *    is closed once from the broker side so that it recovers, and then every dashboard query must
 *    return data (except the named allow-list of events a healthy demo never has), the
 *    `connection` variable must list the demo, every alert rule must evaluate without error and
 *    none may fire.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AMQP_URL, canUseRabbitmqctl, rabbitmqctl } from "../support/broker.js";
import { findFreePorts } from "../support/extra-node.js";
import { CONTRACT, type ContractMetric, readContract } from "../support/metrics-contract.js";
import { until, waitFor } from "../support/wait.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const DASHBOARDS = join(ROOT, "dashboards");
const DASHBOARD = join(DASHBOARDS, "warren-grafana.json");
const ALERTS = join(DASHBOARDS, "warren-alerts.yml");
const ALERT_TESTS = join(DASHBOARDS, "warren-alerts.test.yml");
const DEMO_CONNECTION = "warren-demo";
/** The service scraped end to end: the demo, or another script with the same options. */
const DEMO = process.env["WARREN_DASHBOARDS_DEMO"] ?? "examples/demo.ts";
const DS_VAR = "$" + "{datasource}";

// ─── the contract and the queries ───────────────────────────────────────────

interface Target {
  panel: string;
  refId: string;
  expr: string;
  instant: boolean;
}

interface Panel {
  title?: string;
  type?: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; refId?: string; instant?: boolean; datasource?: { uid?: string } }[];
  panels?: Panel[];
}

interface Dashboard {
  schemaVersion: number;
  panels: Panel[];
  templating: {
    list: {
      name: string;
      type: string;
      query?: unknown;
      definition?: string;
      datasource?: { uid?: string };
    }[];
  };
}

function readDashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

function dashboardTargets(dash: Dashboard): Target[] {
  return allPanels(dash.panels).flatMap((p) =>
    (p.targets ?? []).map((t) => ({
      panel: p.title ?? "?",
      refId: t.refId ?? "?",
      expr: t.expr ?? "",
      instant: t.instant === true,
    })),
  );
}

interface AlertRule {
  alert: string;
  expr: string;
}

/** The alert rules' names and expressions (a small reader for the layout of warren-alerts.yml). */
function readAlertRules(): AlertRule[] {
  const lines = readFileSync(ALERTS, "utf8").split("\n");
  const rules: AlertRule[] = [];
  for (let i = 0; i < lines.length; i++) {
    const name = /^\s*- alert:\s*(\S+)/.exec(lines[i]!);
    if (name) rules.push({ alert: name[1]!, expr: "" });
    const expr = /^(\s*)expr:\s*(.*)$/.exec(lines[i]!);
    if (!expr || rules.length === 0) continue;
    const rule = rules[rules.length - 1]!;
    if (expr[2] !== "|" && expr[2] !== ">-" && expr[2] !== "|-") {
      rule.expr = expr[2]!;
      continue;
    }
    const indent = expr[1]!.length;
    const body: string[] = [];
    while (i + 1 < lines.length) {
      const next = lines[i + 1]!;
      if (next.trim() !== "" && next.length - next.trimStart().length <= indent) break;
      body.push(next.trim());
      i++;
    }
    rule.expr = body.join("\n").trim();
  }
  return rules;
}

const PROMQL_FUNCTIONS = new Set(
  (
    "sum min max avg count stddev stdvar topk bottomk quantile count_values group " +
    "rate irate increase delta idelta deriv predict_linear resets changes " +
    "histogram_quantile abs ceil floor round clamp clamp_min clamp_max " +
    "min_over_time max_over_time avg_over_time sum_over_time count_over_time last_over_time " +
    "absent absent_over_time label_replace label_join vector scalar time timestamp sort sort_desc"
  ).split(" "),
);
const PROMQL_KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"]);
const EXTRA_LABELS = new Set(["le", "job", "instance"]);

interface ExprRefs {
  metrics: Set<string>; // contract names (histogram series mapped to the histogram)
  unknown: string[]; // identifiers that are neither contract metrics, functions nor keywords
  labels: Set<string>;
}

/** The metric and label names a PromQL expression refers to (enough PromQL for these files). */
function exprRefs(expr: string, contract: Map<string, ContractMetric>): ExprRefs {
  const refs: ExprRefs = { metrics: new Set(), unknown: [], labels: new Set() };
  let e = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  // Label matchers: {name=~"", other=""}
  e = e.replace(/\{([^}]*)\}/g, (_, inner: string) => {
    for (const m of inner.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) refs.labels.add(m[1]!);
    return " ";
  });
  // Grouping clauses: by (a, b), on (a), ignoring (...), group_left (...)
  e = e.replace(
    /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g,
    (_, _kw, inner: string) => {
      for (const l of inner.split(",")) if (l.trim()) refs.labels.add(l.trim());
      return " ";
    },
  );
  e = e.replace(/\[[^\]]*\]/g, " "); // range selectors
  e = e.replace(/\b\d+(\.\d+)?(e[+-]?\d+)?\b/gi, " "); // numbers
  for (const m of e.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const id = m[1]!;
    if (m[2]) {
      if (!PROMQL_FUNCTIONS.has(id)) refs.unknown.push(`${id}(`);
      continue;
    }
    if (PROMQL_KEYWORDS.has(id.toLowerCase())) continue;
    const direct = contract.get(id);
    if (direct && direct.type !== "histogram") {
      refs.metrics.add(id);
      continue;
    }
    const h = /^(.*)_(bucket|sum|count)$/.exec(id);
    const base = h ? contract.get(h[1]!) : undefined;
    if (base?.type === "histogram") {
      refs.metrics.add(base.name);
      continue;
    }
    refs.unknown.push(id);
  }
  return refs;
}

// ─── Prometheus and promtool ────────────────────────────────────────────────

interface Tools {
  prometheus: string;
  promtool: string;
}

function exec(
  file: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(file, args, { cwd: ROOT, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      done({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

let tools: Tools | undefined;
let noToolsReason = "";

/** Runs scripts/prometheus.sh (which installs Debian's prometheus when missing and possible). */
async function ensureTools(): Promise<void> {
  const started = Date.now();
  const r = await exec("bash", [join(ROOT, "scripts/prometheus.sh")], 280_000);
  if (r.code !== 0) {
    noToolsReason = `scripts/prometheus.sh could not provide prometheus and promtool (exit ${r.code}):\n${r.stderr.trim()}`;
    return;
  }
  const paths = Object.fromEntries(
    r.stdout
      .trim()
      .split("\n")
      .map((l) => l.split("=", 2) as [string, string]),
  );
  if (!paths["prometheus"] || !paths["promtool"]) {
    noToolsReason = `scripts/prometheus.sh printed no tool paths: ${JSON.stringify(r.stdout)}`;
    return;
  }
  tools = { prometheus: paths["prometheus"], promtool: paths["promtool"] };
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (r.stderr.includes("installed in")) console.log(`[dashboards] prometheus installed (${secs}s)`);
}

/** Skips the running test, saying why, when the tools are not there. */
function requireTools(ctx: { skip: (note?: string) => void }): Tools {
  if (!tools) {
    console.warn(`[dashboards] skipped: ${noToolsReason}`);
    ctx.skip(noToolsReason);
  }
  return tools!;
}

beforeAll(ensureTools, 300_000);

// ─── 1. promtool ────────────────────────────────────────────────────────────

describe("promtool", () => {
  it("check rules: the alert rules are valid", async (ctx) => {
    const { promtool } = requireTools(ctx);
    const r = await exec(promtool, ["check", "rules", ALERTS], 30_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/SUCCESS: \d+ rules found/);
  });

  it("test rules: every alert fires when it should and not otherwise", async (ctx) => {
    const { promtool } = requireTools(ctx);
    const r = await exec(promtool, ["test", "rules", ALERT_TESTS], 30_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toContain("SUCCESS");
  });
});

// ─── 2. static checks ───────────────────────────────────────────────────────

describe("dashboard and rules against the metrics contract", () => {
  const contract = readContract();
  const dash = readDashboard();
  const targets = dashboardTargets(dash);
  const rules = readAlertRules();
  const contractLabels = new Set([...contract.values()].flatMap((m) => m.labels));

  it("the contract lists the metrics", () => {
    expect(contract.size).toBeGreaterThanOrEqual(30);
    expect(contract.get("warren_connection_up")?.type).toBe("gauge");
    expect(contract.get("warren_publish_confirm_duration_seconds")?.type).toBe("histogram");
  });

  it("the dashboard is a Grafana dashboard with the datasource and connection variables", () => {
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(36);
    const vars = new Map(dash.templating.list.map((v) => [v.name, v]));
    expect(vars.get("datasource")).toMatchObject({ type: "datasource", query: "prometheus" });
    const conn = vars.get("connection");
    expect(conn).toMatchObject({
      type: "query",
      definition: "label_values(warren_connection_up, connection)",
    });
    expect(conn?.datasource?.uid).toBe(DS_VAR);
    expect(targets.length).toBeGreaterThanOrEqual(20);
    for (const p of allPanels(dash.panels).filter((p) => p.type !== "row")) {
      expect(p.datasource?.uid, `panel ${p.title}`).toBe(DS_VAR);
      expect(p.targets?.length ?? 0, `panel ${p.title} has queries`).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource?.uid, `panel ${p.title}`).toBe(DS_VAR);
    }
    const titles = dash.panels.map((p) => p.title);
    expect(new Set(titles).size, "panel titles are unique").toBe(titles.length);
  });

  it("every dashboard query uses only contract metrics and labels, filtered by $connection", () => {
    for (const t of targets) {
      const what = `${t.panel} / ${t.refId}: ${t.expr}`;
      const refs = exprRefs(t.expr, contract);
      expect(refs.unknown, what).toEqual([]);
      expect(refs.metrics.size, what).toBeGreaterThan(0);
      for (const l of refs.labels)
        expect(contractLabels.has(l) || EXTRA_LABELS.has(l), `${what}: label ${l}`).toBe(true);
      // Every selector of a warren metric is narrowed to the chosen connections.
      const selectors = t.expr.match(/\bwarren_[a-z0-9_]+(\{[^}]*\})?/g) ?? [];
      for (const s of selectors) expect(s, what).toContain('connection=~"$connection"');
    }
  });

  it("every alert expression uses only contract metrics and labels", () => {
    expect(rules.length).toBeGreaterThanOrEqual(10);
    for (const r of rules) {
      const refs = exprRefs(r.expr, contract);
      expect(refs.unknown, `${r.alert}: ${r.expr}`).toEqual([]);
      expect(refs.metrics.size, r.alert).toBeGreaterThan(0);
      for (const l of refs.labels)
        expect(contractLabels.has(l) || EXTRA_LABELS.has(l), `${r.alert}: ${l}`).toBe(true);
    }
  });

  it("every metric of the contract is used by a panel or an alert", () => {
    const used = new Set<string>();
    for (const e of [...targets.map((t) => t.expr), ...rules.map((r) => r.expr)])
      for (const m of exprRefs(e, contract).metrics) used.add(m);
    expect([...contract.keys()].filter((m) => !used.has(m))).toEqual([]);
  });

  it("every alert has a firing test and a not-firing test", () => {
    const tests = readFileSync(ALERT_TESTS, "utf8");
    for (const r of rules) {
      const firing = new RegExp(`alertname: ${r.alert}\\n\\s*exp_alerts:\\n\\s*- exp_labels:`);
      const quiet = new RegExp(`alertname: ${r.alert}\\n\\s*exp_alerts: \\[\\]`);
      expect(tests, `${r.alert} fires in a test`).toMatch(firing);
      expect(tests, `${r.alert} stays quiet in a test`).toMatch(quiet);
    }
  });
});

// ─── 3. end to end: the demo scraped by a real Prometheus ───────────────────

/**
 * Metrics a query on which may come back empty (or only NaN) from the demo: none. A healthy demo
 * never nacks, returns or fails a publish, has no channel error (no restart, renewal or
 * escalation), no method call timeout, no missed heartbeat, no consumer nack, reject or retry, no outbox
 * and no broker alarm; but warren starts every series at 0 (each connection's counters and gauges
 * when the client starts, an exchange's or queue's, every failure reason included, when it is
 * first used: docs/observability.md), so those panels show 0, and the dashboard must show the first
 * such event (rate() and increase() see no increase on a series that appears at 1). Put a metric
 * here only if a calm demo legitimately has no series for it, and say why.
 */
// The demo makes no request/reply calls and serves none: the RPC series appear with the first
// rpcClient() / rpcServer() (the families are exposed, with their types, from the start).
const CALM_DEMO_ALLOW_EMPTY = new Set<string>([
  "warren_rpc_client_calls_total",
  "warren_rpc_client_duration_seconds",
  "warren_rpc_client_replies_dropped_total",
  "warren_rpc_client_retries_total",
  "warren_rpc_server_requests_total",
  "warren_rpc_server_duration_seconds",
  // The demo connects with a URL's fixed credentials, not a provider: nothing to refresh.
  "warren_credential_refreshes_total",
]);

/**
 * Metrics that move only when the connection recovers (and methods are called again: the topology is
 * declared before the first scrape, so only the recovery gives method call latencies). The test closes
 * the demo's connection from the broker with rabbitmqctl; when it cannot (AMQP_URL elsewhere, no
 * rabbitmqctl), these join the allow-list.
 */
const FORCED_RECOVERIES = 1;
const RECOVERY_ONLY = new Set([
  "warren_reconnects_total",
  "warren_recovery_duration_seconds",
  "warren_consumer_restarts_total",
  "warren_method_duration_seconds",
]);

interface PromResponse<T> {
  status: "success" | "error";
  data: T;
  error?: string;
  errorType?: string;
}

type Sample = [number, string];
interface Series {
  metric: Record<string, string>;
  value?: Sample;
  values?: Sample[];
}

class Proc {
  output = "";
  exited: { code: number | null; signal: string | null } | undefined;
  private readonly child: ChildProcess;

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    env: NodeJS.ProcessEnv = process.env,
  ) {
    // Its own process group, so that npx's and tsx's children go with it.
    this.child = spawn(cmd, args, { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const keep = (b: Buffer) => {
      this.output += b.toString();
      if (this.output.length > 200_000) this.output = this.output.slice(-100_000);
    };
    this.child.stdout?.on("data", keep);
    this.child.stderr?.on("data", keep);
    this.child.on("exit", (code, signal) => {
      this.exited = { code, signal };
    });
    this.child.on("error", (err) => {
      this.output += `\n[spawn error] ${err.message}`;
      this.exited ??= { code: null, signal: null };
    });
    live.add(this);
  }

  tail(chars = 3000): string {
    return this.output.slice(-chars);
  }

  /** The process group (the child's pid: it was spawned detached). */
  get pgid(): number | undefined {
    return this.child.pid;
  }

  private signalGroup(sig: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  }

  async stop(): Promise<void> {
    live.delete(this);
    this.signalGroup("SIGTERM");
    await waitFor(() => this.exited !== undefined, `${this.name} to exit`, 5_000).catch(() => undefined);
    // Whatever is left of the group (npx's children) goes too.
    this.signalGroup("SIGKILL");
  }

  killNow(): void {
    this.signalGroup("SIGKILL");
  }
}

const live = new Set<Proc>();
process.once("exit", () => {
  for (const p of live) p.killNow();
});

async function getJson<T>(url: string): Promise<PromResponse<T>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as PromResponse<T>;
  return body;
}

/** Grafana's substitutions for a query run against the demo. */
function substitute(expr: string, rangeSecs: number): string {
  return expr
    .replaceAll("$connection", DEMO_CONNECTION)
    .replaceAll("$__rate_interval", "5s")
    .replaceAll("$__interval", "1s")
    .replaceAll("$__range", `${rangeSecs}s`);
}

function finiteValues(series: Series[]): number {
  let n = 0;
  for (const s of series)
    for (const [, v] of s.values ?? (s.value ? [s.value] : [])) if (Number.isFinite(Number(v))) n++;
  return n;
}

/** Local TCP ports of the sockets held by the processes of a process group (Linux /proc). */
function groupLocalPorts(pgid: number): Set<number> {
  const inodes = new Set<string>();
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // After "(comm) ": state, ppid, pgrp, ...
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]) !== pgid) continue;
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      }
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9 && inodes.has(cols[9]!)) ports.add(Number.parseInt(cols[1]!.split(":")[1]!, 16));
    }
  }
  return ports;
}

/**
 * Force-closes, from the broker, the connections named `name` that belong to the process group
 * `pgid` (matched by their client port), so that another warren demo running on this machine is
 * left alone. Resolves with the number closed.
 */
async function closeGroupConnections(pgid: number, name: string): Promise<number> {
  const ports = groupLocalPorts(pgid);
  const out = await rabbitmqctl(
    ["list_connections", "-q", "--no-table-headers", "pid", "peer_port", "client_properties"],
    { timeoutMs: 20_000 },
  );
  const needle = `{"connection_name",${JSON.stringify(name)}}`;
  let closed = 0;
  for (const line of out.split("\n")) {
    const [pid, port, props] = line.split("\t");
    if (!pid?.startsWith("<") || !props?.includes(needle) || !ports.has(Number(port))) continue;
    try {
      await rabbitmqctl(["close_connection", pid, "dashboards test: forced recovery"], { timeoutMs: 20_000 });
      closed++;
    } catch {
      // closed on its own meanwhile
    }
  }
  return closed;
}

describe("end to end: the demo scraped by a real Prometheus", () => {
  let demo: Proc | undefined;
  let prom: Proc | undefined;
  let tmp: string | undefined;

  afterAll(async () => {
    await Promise.all([demo?.stop(), prom?.stop()]);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("every dashboard query returns data, the variable lists the demo, the rules evaluate", async (ctx) => {
    const { prometheus } = requireTools(ctx);
    const contract = readContract();
    const targets = dashboardTargets(readDashboard());
    const rules = readAlertRules();
    const [metricsPort, promPort] = (await findFreePorts(2)) as [number, number];
    const api = `http://127.0.0.1:${promPort}/api/v1`;
    const t0 = Date.now();
    const log = (msg: string) =>
      console.log(`[dashboards +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

    // The demo, serving /metrics.
    const demoArgs = ["tsx", DEMO, "--duration", "60", "--rate", "200"];
    demoArgs.push("--metrics-port", String(metricsPort));
    demo = new Proc("demo", "npx", demoArgs, { ...process.env, AMQP_URL });

    // Prometheus: temp config and storage, scraping the demo every second, the rules loaded.
    tmp = await mkdtemp(join(tmpdir(), "warren-prometheus-"));
    const config = [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "  evaluation_interval: 1s",
      "rule_files:",
      `  - ${JSON.stringify(ALERTS)}`,
      "scrape_configs:",
      "  - job_name: warren-demo",
      "    static_configs:",
      `      - targets: ["127.0.0.1:${metricsPort}"]`,
      "",
    ].join("\n");
    await writeFile(join(tmp, "prometheus.yml"), config);
    prom = new Proc("prometheus", prometheus, [
      `--config.file=${join(tmp, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(tmp, "data")}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      "--storage.tsdb.retention.time=1h",
      "--log.level=warn",
    ]);

    const failWith = (what: string): never => {
      throw new Error(
        `${what}\n--- demo (exit ${JSON.stringify(demo?.exited)}):\n${demo?.tail()}\n` +
          `--- prometheus (exit ${JSON.stringify(prom?.exited)}):\n${prom?.tail()}`,
      );
    };

    /** The demo's successful scrapes so far (0 while Prometheus or the target is not up yet). */
    let last = "";
    const successfulScrapes = async (): Promise<number> => {
      if (demo?.exited) failWith("the demo exited");
      if (prom?.exited) failWith("prometheus exited");
      try {
        const t = await getJson<{ activeTargets: { health: string; lastError: string }[] }>(`${api}/targets`);
        const target = t.data.activeTargets[0];
        last = target ? `target ${target.health} ${target.lastError}` : "no target yet";
        if (target?.health !== "up") return 0;
        const q = await getJson<{ result: Series[] }>(
          `${api}/query?query=${encodeURIComponent('sum_over_time(up{job="warren-demo"}[10m])')}`,
        );
        const scrapes = Number(q.data.result[0]?.value?.[1] ?? 0);
        last = `target up, ${scrapes} successful scrapes`;
        return scrapes;
      } catch (err) {
        last = `prometheus not answering yet (${(err as Error).message})`;
        return 0;
      }
    };
    /** Waits until the demo has been scraped `n` times in all (bounded). */
    const scrapedAtLeast = (n: number, ms: number) =>
      until(async () => (await successfulScrapes()) >= n, `${n} scrapes`, ms).catch((err: Error) =>
        failWith(`the demo was not scraped ${n} times within ${ms} ms (${last}): ${err.message}`),
      );
    await scrapedAtLeast(4, 30_000);
    log("demo scraped 4 times");

    // The demo has a steady flow now: make it recover (if the broker can be driven). Once is
    // enough: warren starts the recovery histogram at 0, so the first recovery must show.
    let recovered = false;
    if (await canUseRabbitmqctl()) {
      for (let n = 1; n <= FORCED_RECOVERIES; n++) {
        const closed = await closeGroupConnections(demo.pgid!, DEMO_CONNECTION);
        if (closed === 0) {
          log("found no connection of the demo on the local broker: recovery metrics may be empty");
          break;
        }
        const back = `sum(warren_reconnects_total{connection="${DEMO_CONNECTION}"}) >= ${n} and sum(warren_connection_up{connection="${DEMO_CONNECTION}"}) == 1`;
        await until(
          async () => {
            const q = await getJson<{ result: Series[] }>(`${api}/query?query=${encodeURIComponent(back)}`);
            return q.status === "success" && q.data.result.length > 0;
          },
          `the demo to recover (${n})`,
          15_000,
        ).catch(() => failWith(`the demo's connection was closed (${n}) but it did not recover within 15 s`));
        log(`demo recovered after its connection was closed (${n})`);
        recovered = n === FORCED_RECOVERIES;
      }
    } else log("rabbitmqctl cannot reach the broker: recovery metrics may be empty");

    // A few more scrapes of the flow after the recovery, so that rates over 5 s have samples.
    await scrapedAtLeast((await successfulScrapes()) + 5, 30_000);
    log("demo scraped 5 more times");
    const end = Date.now() / 1000;
    const start = t0 / 1000;
    const rangeSecs = Math.ceil(end - start) + 1;
    const mayBeEmpty = new Set([...CALM_DEMO_ALLOW_EMPTY, ...(recovered ? [] : RECOVERY_ONLY)]);

    // The `connection` variable: label_values(warren_connection_up, connection).
    const values = await getJson<string[]>(
      `${api}/label/connection/values?match[]=warren_connection_up&start=${start}&end=${end}`,
    );
    expect(values.status).toBe("success");
    expect(values.data).toContain(DEMO_CONNECTION);

    // Every metric family of the contract is exposed by the demo, with its type.
    const meta = await getJson<{ metric: string; type: string }[]>(
      `${api}/targets/metadata?match_target=${encodeURIComponent('{job="warren-demo"}')}`,
    );
    expect(meta.status).toBe("success");
    const exposed = new Map(meta.data.map((m) => [m.metric, m.type]));
    const missing = [...contract.values()]
      .filter((m) => exposed.get(m.name) !== m.type)
      .map((m) => `${m.name} (${m.type}; exposed: ${exposed.get(m.name) ?? "no"})`);
    expect(missing, "contract metrics not exposed by the demo with their type").toEqual([]);

    // Every dashboard query, as Grafana would run it over the test's time range.
    const report: string[] = [];
    const problems: string[] = [];
    for (const t of targets) {
      const expr = substitute(t.expr, rangeSecs);
      const url = t.instant
        ? `${api}/query?query=${encodeURIComponent(expr)}&time=${end}`
        : `${api}/query_range?query=${encodeURIComponent(expr)}&start=${start}&end=${end}&step=1`;
      const res = await getJson<{ result: Series[] }>(url);
      const what = `${t.panel} / ${t.refId}`;
      if (res.status !== "success") {
        problems.push(`${what}: ${res.errorType}: ${res.error} (${expr})`);
        continue;
      }
      const finite = finiteValues(res.data.result);
      report.push(
        `${finite > 0 ? "data " : "EMPTY"} ${what}: ${res.data.result.length} series, ${finite} values`,
      );
      if (finite > 0) continue;
      const metrics = [...exprRefs(t.expr, contract).metrics];
      if (metrics.every((m) => mayBeEmpty.has(m))) continue;
      problems.push(`${what}: no data (${res.data.result.length} series, all NaN or none): ${expr}`);
    }
    console.log(`[dashboards] queries (recovery forced: ${recovered}):\n  ${report.join("\n  ")}`);

    // Every alert expression is valid PromQL against the live data.
    for (const r of rules) {
      const res = await getJson<{ result: Series[] }>(`${api}/query?query=${encodeURIComponent(r.expr)}`);
      if (res.status !== "success") problems.push(`alert ${r.alert}: ${res.errorType}: ${res.error}`);
    }
    expect(problems).toEqual([]);

    // The loaded rules evaluated without error, and a healthy demo fires none of them.
    const loaded = await getJson<{
      groups: { rules: { name: string; health: string; lastError?: string; state?: string }[] }[];
    }>(`${api}/rules?type=alert`);
    const loadedRules = loaded.data.groups.flatMap((g) => g.rules);
    expect(loadedRules.map((r) => r.name).sort()).toEqual(rules.map((r) => r.alert).sort());
    for (const r of loadedRules)
      expect(`${r.name}: ${r.health} ${r.lastError ?? ""}`.trim()).toBe(`${r.name}: ok`);
    const firing = loadedRules.filter((r) => r.state === "firing").map((r) => r.name);
    expect(firing, "alerts firing for a healthy demo").toEqual([]);

    expect(demo.exited, `the demo is still running:\n${demo.tail()}`).toBeUndefined();
    log("done");
  }, 90_000);
});

// The tools' paths are only known at run time; make sure the files exist at all.
it("the dashboard files are there", () => {
  for (const f of [CONTRACT, DASHBOARD, ALERTS, ALERT_TESTS, join(ROOT, "scripts/prometheus.sh")])
    expect(existsSync(f), f).toBe(true);
});
