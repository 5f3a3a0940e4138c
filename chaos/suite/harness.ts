/**
 * Chaos harness: a warren client talks to RabbitMQ through a fault proxy (the in-process
 * Toxiproxy-compatible server of chaos/toxiproxy, or a real Toxiproxy when TOXIPROXY_URL is set),
 * publishes a steady stream of confirmed, persistent messages into a durable queue and consumes
 * them, while a scenario injects a fault and heals it. A ledger then says what happened to every
 * message id: confirmed, consumed, lost, duplicated, rejected, and how long recovery took.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Registry } from "prom-client";
import { type Proxy as ToxiProxy, Toxiproxy } from "toxiproxy-node-client";
import {
  type Client,
  type ClientOptions,
  Connection,
  type Consumer,
  connect,
  type Publisher,
  SocketError,
} from "../../src/index.js";
import { sleep, within } from "../../test/support/async.js";
import { waitFor } from "../../test/support/wait.js";
import { startToxiproxy } from "../toxiproxy/server.js";

// Scenarios and their callers wait with the shared helper (re-exported for existing imports).
export { waitFor };

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Where results are written (under .tmp/, which git ignores). */
export const RESULTS_FILE = join(ROOT, ".tmp", "chaos-results.json");

export interface ChaosEnv {
  toxiproxy: Toxiproxy;
  /** The Toxiproxy HTTP API base URL. */
  apiUrl: string;
  proxy: ToxiProxy;
  /** The proxy's listen address, ip:port. */
  listen: string;
  /** The broker behind the proxy, ip:port. */
  upstream: string;
  /** amqp:// URL that goes through the proxy. */
  proxyUrl: string;
  /** amqp:// URL of the broker itself (for setup and clean-up, bypassing faults). */
  directUrl: string;
  close(): Promise<void>;
}

let proxyCounter = 0;

/**
 * Starts the fault proxy (unless TOXIPROXY_URL names a running Toxiproxy) with one proxy in front of
 * `directUrl`'s broker, listening on a free port of 127.0.0.1.
 */
export async function startChaos(
  directUrl = process.env["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/",
): Promise<ChaosEnv> {
  const external = process.env["TOXIPROXY_URL"];
  const server = external ? undefined : await startToxiproxy({ host: "127.0.0.1", port: 0 });
  const apiUrl = (external ?? server!.url).replace(/\/$/, "");
  const toxiproxy = new Toxiproxy(apiUrl);
  const u = new URL(directUrl);
  const upstream = `${u.hostname}:${u.port || "5672"}`;
  proxyCounter += 1;
  const proxy = await toxiproxy.createProxy({
    name: `warren-chaos-${process.pid}-${proxyCounter}`,
    listen: "127.0.0.1:0",
    upstream,
  });
  const listen = proxy.listen;
  const p = new URL(directUrl);
  const [host, port] = splitHostPort(listen);
  p.hostname = host;
  p.port = port;
  return {
    toxiproxy,
    apiUrl,
    proxy,
    listen,
    upstream,
    proxyUrl: p.toString(),
    directUrl,
    async close() {
      await proxy.remove().catch(() => undefined);
      await server?.close();
    },
  };
}

function splitHostPort(address: string): [string, string] {
  const i = address.lastIndexOf(":");
  return [address.slice(0, i).replace(/^\[|\]$/g, ""), address.slice(i + 1)];
}

/** Removes every toxic of the proxy and makes sure it is enabled (a scenario's default heal, and clean-up). */
export async function resetProxy(env: ChaosEnv): Promise<void> {
  const base = `${env.apiUrl}/proxies/${encodeURIComponent(env.proxy.name)}`;
  const toxics = (await (await fetch(`${base}/toxics`)).json()) as { name: string }[];
  for (const t of toxics) {
    await fetch(`${base}/toxics/${encodeURIComponent(t.name)}`, { method: "DELETE" });
  }
  await env.proxy.update({ enabled: true, listen: env.listen, upstream: env.upstream });
}

export interface Ledger {
  published: number;
  confirmed: number;
  consumed: number;
  duplicates: number;
  lost: number;
  rejected: number;
  rejectedBy: Record<string, number>;
  /** Heal → first message consumed after the heal (or the consumer back in `consuming`, whichever first). */
  recoveryMs: number | undefined;
  /** Times the client went through `recovering` (connection lost and re-established). */
  reconnects: number;
}

/** The errno code (ECONNRESET, ECONNREFUSED...) under a SocketError; undefined for any other error. */
export function errnoOf(error: Error | undefined): string | undefined {
  if (!(error instanceof SocketError)) return undefined;
  return (error.cause as NodeJS.ErrnoException | undefined)?.code;
}

/** One client state transition, as the harness saw it. */
export interface StateRecord {
  from: string;
  to: string;
  /** Date.now() when it happened. */
  at: number;
  /** "Name: message" of the error that caused it, if any. */
  error?: string;
  /** The error itself (kept out of the results file), for typed assertions. */
  reason?: Error;
}

/** Publish → confirm round trips of the messages published while the fault was in place. */
export interface UnderFault {
  /** Messages handed to publish() between the fault being in place and the heal. */
  published: number;
  /** Of those, how many were confirmed before the heal began (their bytes crossed the fault both ways). */
  confirmedBeforeHeal: number;
  /** Their round trips (ms), publish() → confirm; undefined when none was confirmed before the heal. */
  roundTripMs: { min: number; median: number; max: number } | undefined;
}

/** What the client's own metrics say at the end of a scenario (see Scenario.metrics). */
export interface ClientFigures {
  /** warren_reconnects_total */
  reconnects: number;
  /** warren_connection_degraded_seconds_total */
  degradedSeconds: number;
  /** warren_supervisor_escalations_total{level="connection"} */
  escalations: number;
  /** warren_connection_degraded (1 while degraded) */
  degraded: number;
  /** The state warren_connection_state{state} marks with 1. */
  state: string | undefined;
}

export interface ScenarioResult extends Ledger {
  name: string;
  durationMs: number;
  finalClientState: string;
  finalConsumerState: string;
  /** Every client state transition, in order ("from→to"). */
  states: string[];
  /** The same transitions with their time and error (not written by older callers of record()). */
  changes?: StateRecord[];
  /** Date.now() when the fault was injected and when it was healed. */
  faultAt?: number;
  healAt?: number;
  /** Date.now() once scenario.fault() had resolved (the fault in place). */
  faultInPlaceAt?: number;
  /** What became of the messages published while the fault was in place. */
  underFault?: UnderFault;
  /**
   * Heal → the client's last transition into `running` (it stayed up from then on); 0 when it was
   * already running at the heal and stayed up.
   */
  runningAfterHealMs?: number | undefined;
  /** The client's metrics at the end, for scenarios run with `metrics: true`. */
  metrics?: ClientFigures;
  /** Ids confirmed but never consumed (at most 20). */
  lostIds: string[];
  /** Lost ids published at or after the heal (at most 20). */
  lostAfterHeal: string[];
  /** Anything a scenario wants to report. */
  notes: Record<string, unknown>;
}

export interface ScenarioContext {
  env: ChaosEnv;
  client: Client;
  publisher: Publisher;
  consumer: Consumer;
  queue: string;
  connectionName: string;
  /** Free-form notes, copied into the result. */
  notes: Record<string, unknown>;
  /** The client's metrics registry, for scenarios run with `metrics: true`. */
  registry: Registry | undefined;
}

export interface Scenario {
  name: string;
  fault: (ctx: ScenarioContext) => Promise<void>;
  /** Default: remove every toxic and enable the proxy. */
  heal?: (ctx: ScenarioContext) => Promise<void>;
  /** How long the fault stays before heal (ms, default 2000). */
  faultMs?: number;
  /** Steady publishing before the fault and after the heal (ms, default 1000 and 1500). */
  warmupMs?: number;
  afterMs?: number;
  /** Messages per second (default 200). */
  rate?: number;
  /** Extra client options (heartbeat, intensities...). */
  client?: Partial<ClientOptions>;
  /**
   * "harness" (default): heartbeat 1 s, connection timeout 5 s, reconnect backoff 100 ms–1 s and a
   * restart intensity of 1000 in 60 s, so short faults recover quickly. "defaults": the library's
   * own defaults for all of these (restart intensity 10 in 30 s, escalation, publishTimeout...).
   */
  supervision?: "harness" | "defaults";
  /** Give the client a prom-client Registry of its own and put its figures in the result. */
  metrics?: boolean;
  /**
   * After the heal, wait at most this long (ms) for the client to be `running` again before the
   * steady stream's last `afterMs` (default: no wait).
   */
  recoverWithinMs?: number;
  /** How long to wait for confirms and consumption at the end (ms, default 45000). */
  settleMs?: number;
  /** Sees every rejected publish: its error, message id and how long it had waited (ms). */
  onRejected?: (error: unknown, id: string, ageMs: number) => void;
  /** Runs once everything settled, before the result is taken and the client closed. */
  finish?: (ctx: ScenarioContext) => Promise<void>;
}

/** The library's default closeTimeout (ms): ClientOptions.closeTimeout. */
const DEFAULT_CLOSE_TIMEOUT = 10_000;

/**
 * How long the harness lets client.close() take before it fails the scenario: close() waits at most
 * closeTimeout for running handlers, again for outstanding confirms and again for the broker's
 * close-ok, so three times closeTimeout, plus 5 s for a loaded machine. (By then every publish has
 * settled and the fault is healed, so a healthy close takes milliseconds.)
 */
export function closeBoundMs(closeTimeout = DEFAULT_CLOSE_TIMEOUT): number {
  return 3 * closeTimeout + 5000;
}

/**
 * Runs one scenario against `env` and returns its ledger; the queue is deleted and the client closed.
 * Fails (rejects) when client.close() does not settle within closeBoundMs(): a close that hangs is a
 * bug, not something to wait out.
 */
export async function runScenario(env: ChaosEnv, scenario: Scenario): Promise<ScenarioResult> {
  const started = Date.now();
  const rate = scenario.rate ?? 200;
  const tag = `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const queue = `warren-chaos-${scenario.name.replace(/[^a-z0-9]+/gi, "-")}-${tag}`;
  const connectionName = `warren-chaos-${tag}`;
  const registry = scenario.metrics ? new Registry() : undefined;
  const client = connect({
    url: env.proxyUrl,
    connectionName,
    // The scenarios kill, break and measure "the client's connection" by this name: one connection.
    connections: "single",
    ...(scenario.supervision === "defaults"
      ? {}
      : {
          heartbeat: 1,
          connectionTimeout: 5000,
          reconnect: { initial: 100, max: 1000 },
          restartIntensity: { maxRestarts: 1000, withinMs: 60_000 },
        }),
    ...(registry ? { metrics: { registry } } : {}),
    ...scenario.client,
  });
  let outcome: { result: ScenarioResult } | { error: unknown };
  try {
    outcome = {
      result: await drive(env, scenario, { client, started, rate, tag, queue, connectionName, registry }),
    };
  } catch (error) {
    outcome = { error };
  }
  // A close that hangs (or rejects) fails the scenario, naming the client and the bound; the proxy
  // is reset and the queue deleted all the same.
  const closeMs = closeBoundMs(scenario.client?.closeTimeout);
  const who = `chaos "${scenario.name}": client ${connectionName} (state ${client.state} when closed, closeTimeout ${scenario.client?.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT} ms)`;
  const closeFailure = await within(
    client.close().catch((error: unknown) => {
      throw new Error(`${who}: close() rejected`, { cause: error });
    }),
    closeMs,
    `${who}: close()`,
  ).then(
    () => undefined,
    (error: unknown) => error,
  );
  await resetProxy(env).catch(() => undefined);
  await deleteQueue(env.directUrl, queue);
  if ("error" in outcome) {
    if (closeFailure)
      throw new AggregateError([outcome.error, closeFailure], `chaos "${scenario.name}" failed`);
    throw outcome.error;
  }
  if (closeFailure) throw closeFailure;
  return outcome.result;
}
interface Run {
  client: Client;
  started: number;
  rate: number;
  tag: string;
  queue: string;
  connectionName: string;
  registry: Registry | undefined;
}

/** Warm-up, fault, heal, settle, and the ledger (runScenario closes the client and cleans up). */
async function drive(env: ChaosEnv, scenario: Scenario, run: Run): Promise<ScenarioResult> {
  const { client, started, rate, tag, queue, connectionName, registry } = run;
  const states: string[] = [];
  const changes: StateRecord[] = [];
  let reconnects = 0;
  let runningAt: number | undefined;
  client.on("state", ({ from, to, error }) => {
    const at = Date.now();
    states.push(`${from}→${to}`);
    changes.push({
      from,
      to,
      at,
      ...(error ? { error: `${error.name}: ${error.message}`, reason: error } : {}),
    });
    if (to === "recovering" || to === "degraded") reconnects += 1;
    if (to === "running") runningAt = at;
  });
  client.on("error", () => undefined);

  const consumed = new Set<string>();
  let consumedTotal = 0;
  let faultAt: number | undefined;
  let faultInPlaceAt: number | undefined;
  let healAt: number | undefined;
  let firstAfterHeal: number | undefined;
  let consumingAfterHeal: number | undefined;
  const notes: Record<string, unknown> = {};

  await client.ready();
  await client.declare({ queues: [{ name: queue, durable: true }] });
  const publisher = client.publisher({ maxInFlight: 200 });
  const consumer = client.consume({ queue, prefetch: 100 }, (m) => {
    const id = m.properties.messageId;
    if (id === undefined) return;
    consumedTotal += 1;
    consumed.add(id);
    if (healAt !== undefined && firstAfterHeal === undefined) firstAfterHeal = Date.now();
  });
  consumer.on("state", ({ to }) => {
    if (to === "consuming" && healAt !== undefined && consumingAfterHeal === undefined)
      consumingAfterHeal = Date.now();
  });
  const ctx: ScenarioContext = { env, client, publisher, consumer, queue, connectionName, notes, registry };

  const rejectedIds = new Set<string>();
  const stream = steadyPublishing(publisher, queue, tag, rate, {
    onRejected: (e, id, ageMs) => {
      rejectedIds.add(id);
      scenario.onRejected?.(e, id, ageMs);
    },
  });
  const { confirmed, confirmedAt, publishedAt, pending } = stream;

  try {
    // The passing of time is the point here: steady traffic before, during and after the fault.
    await sleep(scenario.warmupMs ?? 1000);
    faultAt = Date.now();
    await scenario.fault(ctx);
    faultInPlaceAt = Date.now();
    await sleep(scenario.faultMs ?? 2000);
    healAt = Date.now();
    if (scenario.heal) await scenario.heal(ctx);
    else await resetProxy(env);
    if (scenario.recoverWithinMs !== undefined)
      await waitFor(() => client.state === "running", "the client to be running", scenario.recoverWithinMs);
    await sleep(scenario.afterMs ?? 1500);
  } finally {
    stream.stop();
  }

  // Every publish settles (confirmed or rejected), then everything confirmed is consumed.
  const deadline = Date.now() + (scenario.settleMs ?? 45_000);
  while (pending.size > 0 && Date.now() < deadline) {
    await Promise.race([Promise.allSettled([...pending]), sleep(250)]);
  }
  notes["pendingAtEnd"] = pending.size;
  while (Date.now() < deadline) {
    let missing = 0;
    for (const id of confirmed) if (!consumed.has(id)) missing += 1;
    if (missing === 0) break;
    await sleep(100);
  }

  if (scenario.finish) await scenario.finish(ctx);
  // A rejected publish may still have reached the queue (sent, then its confirm lost with the
  // connection): counted, not an error.
  notes["rejectedButConsumed"] = [...rejectedIds].filter((id) => consumed.has(id)).length;

  const lostIds: string[] = [];
  for (const id of confirmed) if (!consumed.has(id)) lostIds.push(id);
  const lostAfterHeal = lostIds.filter((id) => (publishedAt.get(id) ?? 0) >= (healAt ?? 0));
  const candidates = [firstAfterHeal, consumingAfterHeal].filter((x): x is number => x !== undefined);
  const recoveredAt = candidates.length > 0 ? Math.min(...candidates) : undefined;
  const result: ScenarioResult = {
    name: scenario.name,
    published: stream.published,
    confirmed: confirmed.size,
    consumed: consumed.size,
    duplicates: consumedTotal - consumed.size,
    lost: lostIds.length,
    rejected: stream.rejected,
    rejectedBy: stream.rejectedBy,
    recoveryMs: recoveredAt !== undefined && healAt !== undefined ? recoveredAt - healAt : undefined,
    reconnects,
    durationMs: 0,
    finalClientState: client.state,
    finalConsumerState: consumer.state,
    states,
    changes,
    faultAt,
    healAt,
    faultInPlaceAt,
    ...(faultInPlaceAt !== undefined && healAt !== undefined
      ? { underFault: underFault(publishedAt, confirmedAt, faultInPlaceAt, healAt) }
      : {}),
    runningAfterHealMs:
      healAt !== undefined && runningAt !== undefined && client.state === "running"
        ? Math.max(0, runningAt - healAt)
        : undefined,
    lostIds: lostIds.slice(0, 20),
    lostAfterHeal: lostAfterHeal.slice(0, 20),
    notes,
    ...(registry ? { metrics: await clientFigures(registry, connectionName) } : {}),
  };
  result.durationMs = Date.now() - started;
  record(result);
  return result;
}

/** Round trips of the messages published in [from, to), counting those confirmed before `to`. */
export function underFault(
  publishedAt: ReadonlyMap<string, number>,
  confirmedAt: ReadonlyMap<string, number>,
  from: number,
  to: number,
): UnderFault {
  let published = 0;
  const trips: number[] = [];
  for (const [id, at] of publishedAt) {
    if (at < from || at >= to) continue;
    published += 1;
    const confirmed = confirmedAt.get(id);
    if (confirmed !== undefined && confirmed < to) trips.push(confirmed - at);
  }
  trips.sort((a, b) => a - b);
  return {
    published,
    confirmedBeforeHeal: trips.length,
    roundTripMs:
      trips.length === 0
        ? undefined
        : { min: trips[0]!, median: trips[Math.floor(trips.length / 2)]!, max: trips[trips.length - 1]! },
  };
}

/** A steady stream of confirmed, persistent messages with ids "<prefix>-<n>", and what became of them. */
export interface SteadyPublishing {
  /** Messages handed to publish() so far. */
  readonly published: number;
  readonly publishedAt: Map<string, number>;
  readonly confirmed: Set<string>;
  /** Date.now() when each confirmed message's publish promise resolved. */
  readonly confirmedAt: Map<string, number>;
  readonly rejected: number;
  /** Rejections by error name. */
  readonly rejectedBy: Record<string, number>;
  /** Publishes not settled yet. */
  readonly pending: Set<Promise<void>>;
  stop(): void;
}

/**
 * Publishes to `queue` through `publisher`, every 10 ms as many messages as `rate` (per second)
 * asks for, until stop() (or while `paused()` says so). `onRejected` sees every rejection, with the
 * message's id and how long it had waited (ms).
 */
export function steadyPublishing(
  publisher: Publisher,
  queue: string,
  prefix: string,
  rate: number,
  opts: { paused?: () => boolean; onRejected?: (e: unknown, id: string, ageMs: number) => void } = {},
): SteadyPublishing {
  const t0 = Date.now();
  const state = {
    published: 0,
    publishedAt: new Map<string, number>(),
    confirmed: new Set<string>(),
    confirmedAt: new Map<string, number>(),
    rejected: 0,
    rejectedBy: {} as Record<string, number>,
    pending: new Set<Promise<void>>(),
    stop: () => clearInterval(pump),
  };
  const pump = setInterval(() => {
    if (opts.paused?.()) return;
    const due = Math.floor(((Date.now() - t0) * rate) / 1000);
    while (state.published < due) {
      state.published += 1;
      const id = `${prefix}-${state.published}`;
      const at = Date.now();
      state.publishedAt.set(id, at);
      const p = publisher
        .publish({
          exchange: "",
          routingKey: queue,
          body: `chaos ${id}`,
          properties: { messageId: id, persistent: true },
        })
        .then(
          () => {
            state.confirmed.add(id);
            state.confirmedAt.set(id, Date.now());
          },
          (e: unknown) => {
            state.rejected += 1;
            const name = e instanceof Error ? e.name : typeof e;
            state.rejectedBy[name] = (state.rejectedBy[name] ?? 0) + 1;
            opts.onRejected?.(e, id, Date.now() - at);
          },
        )
        .finally(() => state.pending.delete(p));
      state.pending.add(p);
    }
  }, 10);
  return state;
}

/** Deletes a queue directly on the broker (not through the proxy); a missing queue is fine. */
export async function deleteQueue(url: string, queue: string): Promise<void> {
  const conn = await Connection.open({ url, connectionTimeout: 10_000 });
  try {
    const ch = await conn.openChannel();
    await ch.queueDelete({ queue });
  } catch {
    // already gone
  } finally {
    await conn.close({ timeout: 5000 }).catch(() => undefined);
  }
}

/** The value of one series of `name` whose labels include `labels` (0 when absent). */
export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const data = await metric.get();
  const hit = data.values.find((v) =>
    Object.entries(labels).every(([k, x]) => String((v.labels as Record<string, unknown>)[k]) === x),
  );
  return hit?.value ?? 0;
}

/** The supervision figures of the client named `connection` in `registry`. */
export async function clientFigures(registry: Registry, connection: string): Promise<ClientFigures> {
  const states = await registry.getSingleMetric("warren_connection_state")?.get();
  const current = states?.values.find(
    (v) => (v.labels as Record<string, unknown>)["connection"] === connection && v.value === 1,
  );
  return {
    reconnects: await metricValue(registry, "warren_reconnects_total", { connection }),
    degradedSeconds: await metricValue(registry, "warren_connection_degraded_seconds_total", { connection }),
    escalations: await metricValue(registry, "warren_supervisor_escalations_total", {
      connection,
      level: "connection",
    }),
    degraded: await metricValue(registry, "warren_connection_degraded", { connection }),
    state: current === undefined ? undefined : String((current.labels as Record<string, unknown>)["state"]),
  };
}

// ─── results ───────────────────────────────────────────────────────────────

const results: ScenarioResult[] = [];

/** Adds a result to this process's table and to RESULTS_FILE (merged by scenario name). */
export function record(result: ScenarioResult): void {
  results.push(result);
  mkdirSync(dirname(RESULTS_FILE), { recursive: true });
  let all: Record<string, ScenarioResult> = {};
  try {
    all = JSON.parse(readFileSync(RESULTS_FILE, "utf8")) as Record<string, ScenarioResult>;
  } catch {
    // first result
  }
  all[result.name] = result;
  // State changes keep their error objects for typed assertions; the file gets their text only.
  const text = JSON.stringify(all, (key, value: unknown) => (key === "reason" ? undefined : value), 2);
  writeFileSync(RESULTS_FILE, `${text}\n`);
}

/** Prints this process's results as a table (console.info). */
export function printResults(title = "chaos results"): void {
  if (results.length === 0) return;
  const rows = results.map((r) => ({
    scenario: r.name,
    published: r.published,
    confirmed: r.confirmed,
    consumed: r.consumed,
    lost: r.lost,
    dups: r.duplicates,
    rejected: r.rejected,
    reconnects: r.reconnects,
    "recovery ms": r.recoveryMs ?? "-",
    "back ms": r.runningAfterHealMs ?? "-",
    "degraded s": r.metrics ? r.metrics.degradedSeconds.toFixed(1) : "-",
    "duration ms": r.durationMs,
  }));
  const cols = Object.keys(rows[0]!) as (keyof (typeof rows)[number])[];
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells: string[]) => cells.map((x, i) => x.padEnd(width[i]!)).join(" | ");
  const text = [
    line(cols),
    width.map((w) => "-".repeat(w)).join("-|-"),
    ...rows.map((r) => line(cols.map((c) => String(r[c])))),
  ];
  console.info(`\n${title}\n${text.join("\n")}`);
}
