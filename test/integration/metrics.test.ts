/**
 * Prometheus metrics against the real broker: the names and labels of dashboards/metrics.md,
 * exact values where they are deterministic (publishes, confirms, nacks, returns, a killed
 * connection, deliveries, the outbox, the label cap), no credentials in the output, the
 * /metrics endpoint, and two clients on one registry. The blocked gauges (a memory and a disk alarm)
 * are in broker-alarms.test.ts, on a private node.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  ChannelClosedByBroker,
  type Client,
  type ClientOptions,
  type ConsumedMessage,
  MethodTimeoutError,
  PublishNackedError,
  serveMetrics,
  UnroutableError,
} from "../../src/index.js";
import { deferred, rejection } from "../support/async.js";
import {
  AMQP_URL,
  addUser,
  amqpUrlWith,
  canUseRabbitmqctl,
  closeConnectionsNamed,
  deleteUser,
  uniqueName,
} from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { StateLog } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

// ─── helpers ────────────────────────────────────────────────────────────────

const open = useClients("metrics");
const names = new WeakMap<Client, string>();
const dirs: string[] = [];

/** A client with its metrics in `registry` (closed after the test). */
function client(registry: Registry, options: ClientOptions = {}): Client {
  const { client: c, name } = open({
    reconnect: { initial: 10, max: 100 },
    ...options,
    metrics: { registry, ...(typeof options.metrics === "object" ? options.metrics : {}) },
  });
  names.set(c, name);
  return c;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The value of one series (a histogram's `_count` with `count: true`); undefined when absent. */
async function value(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
  opts: { count?: boolean } = {},
): Promise<number | undefined> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`${name} is not registered`);
  const data = await metric.get();
  const wanted = opts.count ? `${name}_count` : undefined;
  const hit = data.values.find(
    (v) =>
      (wanted === undefined || (v as { metricName?: string }).metricName === wanted) &&
      Object.entries(labels).every(([k, x]) => String((v.labels as Record<string, unknown>)[k]) === x) &&
      Object.keys(v.labels).filter((k) => k !== "le").length === Object.keys(labels).length,
  );
  return hit?.value;
}

/** Polls until the series has the value (the timeout is only a safety net). */
function reaches(registry: Registry, name: string, labels: Record<string, string>, expected: number) {
  return until(
    async () => (await value(registry, name, labels)) === expected,
    `${name}${JSON.stringify(labels)} = ${expected}`,
  );
}

/** The connection name (the `connection` label) of a client made here. */
function nameOf(c: Client): string {
  const name = names.get(c);
  if (name === undefined) throw new Error("not a client made by client()");
  return name;
}

/**
 * A TCP proxy to the broker whose current connections can be stalled: both directions stop being
 * read (nothing is lost, nothing arrives) and a close from the broker is not passed on.
 */
async function stallingProxy(): Promise<{ url: string; stall(): void; close(): Promise<void> }> {
  const target = new URL(AMQP_URL);
  const pairs: { client: Socket; upstream: Socket; stalled: boolean }[] = [];
  const server = createServer((client) => {
    const upstream = createConnection(Number(target.port || 5672), target.hostname);
    const pair = { client, upstream, stalled: false };
    pairs.push(pair);
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d) => client.write(d));
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => {
      if (!pair.stalled) client.destroy();
    });
    client.on("error", () => undefined);
    upstream.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const url = new URL(AMQP_URL);
  url.host = `127.0.0.1:${port}`;
  return {
    url: url.toString(),
    stall: () => {
      for (const p of pairs) {
        p.stalled = true;
        p.client.pause();
        p.upstream.pause();
      }
    },
    close: async () => {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let ctlUsable = false;
beforeAll(async () => {
  ctlUsable = await canUseRabbitmqctl();
});

// ─── publishing ─────────────────────────────────────────────────────────────

describe("publishing metrics", () => {
  it("counts published and confirmed messages, the in-flight gauge and the confirm latency", async () => {
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    await c.ready();
    const queue = uniqueName("metrics-q");
    await c.declare({ queues: [{ name: queue, exclusive: true }] });
    const pub = c.publisher();
    const N = 25;
    const all = Array.from({ length: N }, (_, i) =>
      pub.publish({ exchange: "", routingKey: queue, body: `m${i}` }),
    );
    // Synchronously after publish(): every one is accepted and none confirmed yet.
    expect(await value(registry, "warren_publish_in_flight", { connection: conn })).toBe(N);
    await Promise.all(all);

    const ex = { connection: conn, exchange: "(default)" };
    expect(await value(registry, "warren_published_total", ex)).toBe(N);
    expect(await value(registry, "warren_confirmed_total", ex)).toBe(N);
    expect(await value(registry, "warren_publish_confirm_duration_seconds", ex, { count: true })).toBe(N);
    expect(await value(registry, "warren_publish_in_flight", { connection: conn })).toBe(0);
    expect(await value(registry, "warren_nacked_total", ex)).toBe(0);
    expect(await value(registry, "warren_republished_total", ex)).toBe(0);

    // Connection-level series, one per connection: the publisher's (`role` publish) and the one
    // ready() opened and declare() used (`role` consume).
    const P = { connection: conn, role: "publish" };
    const K = { connection: conn, role: "consume" };
    expect(await value(registry, "warren_connection_state", { ...K, state: "running" })).toBe(1);
    expect(await value(registry, "warren_connection_state", { ...P, state: "running" })).toBe(1);
    expect(await value(registry, "warren_connection_state", { ...P, state: "connecting" })).toBe(0);
    expect(await value(registry, "warren_connection_up", P)).toBe(1);
    expect(await value(registry, "warren_blocked", P)).toBe(0);
    expect(await value(registry, "warren_reconnects_total", P)).toBe(0);
    expect(await value(registry, "warren_host_cooldowns_total", P)).toBe(0);
    // One confirm channel: confirm.select once, on the publish connection; the declare on the consume one.
    expect(await value(registry, "warren_method_calls_total", { ...P, method: "confirm.select" })).toBe(1);
    expect(await value(registry, "warren_method_calls_total", { ...K, method: "queue.declare" })).toBe(1);
    expect(await value(registry, "warren_method_calls_total", { ...P, method: "queue.declare" })).toBe(
      undefined,
    );
    expect(
      await value(
        registry,
        "warren_method_duration_seconds",
        { ...K, method: "queue.declare" },
        { count: true },
      ),
    ).toBe(1);
    expect(await value(registry, "warren_method_timeouts_total", { ...K, method: "queue.declare" })).toBe(0);
    expect(await value(registry, "warren_heartbeat_misses_total", P)).toBe(0);
    expect(await value(registry, "warren_bytes_sent_total", P)).toBeGreaterThan(N * 20);
    expect(await value(registry, "warren_bytes_received_total", K)).toBeGreaterThan(100);
    // `warren_retried_total` is registered (a later issue feeds it).
    expect(registry.getSingleMetric("warren_retried_total")).toBeDefined();
  });

  it("counts nacks, nack retries and the publish that failed as nacked", async () => {
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    await c.ready();
    const queue = uniqueName("metrics-full");
    await c.declare({
      queues: [
        { name: queue, exclusive: true, arguments: { "x-max-length": 1, "x-overflow": "reject-publish" } },
      ],
    });
    const pub = c.publisher({
      nackRetry: { attempts: 2, withinMs: 10_000, initialDelayMs: 10, maxDelayMs: 10 },
      renewAfterNacks: 0,
    });
    await pub.publish({ exchange: "", routingKey: queue, body: "fits" });
    const err = await rejection(pub.publish({ exchange: "", routingKey: queue, body: "rejected" }));
    expect(err).toBeInstanceOf(PublishNackedError);

    const ex = { connection: conn, exchange: "(default)" };
    expect(await value(registry, "warren_published_total", ex)).toBe(2);
    expect(await value(registry, "warren_confirmed_total", ex)).toBe(1);
    expect(await value(registry, "warren_nacked_total", ex)).toBe(2);
    expect(await value(registry, "warren_nack_retries_total", ex)).toBe(1);
    expect(await value(registry, "warren_publish_failed_total", { ...ex, reason: "nacked" })).toBe(1);
    expect(await value(registry, "warren_publish_in_flight", { connection: conn })).toBe(0);
  });

  it("counts a mandatory publish returned as unroutable", async () => {
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    await c.ready();
    const exchange = uniqueName("metrics-x");
    await c.declare({ exchanges: [{ name: exchange, type: "direct", autoDelete: true }] });
    const err = await rejection(c.publish(exchange, "nobody-listens", "lost", {}, { mandatory: true }));
    expect(err).toBeInstanceOf(UnroutableError);
    const ex = { connection: conn, exchange };
    expect(await value(registry, "warren_returned_total", ex)).toBe(1);
    expect(await value(registry, "warren_publish_failed_total", { ...ex, reason: "unroutable" })).toBe(1);
    expect(await value(registry, "warren_confirmed_total", ex)).toBe(0);
    await c.deleteExchange(exchange);
  });

  it("labels at most maxLabelValues exchanges, the rest as _other", async () => {
    const registry = new Registry();
    const c = client(registry, { metrics: { registry, maxLabelValues: 2 } });
    const conn = nameOf(c);
    await c.ready();
    const names = [uniqueName("cap-a"), uniqueName("cap-b"), uniqueName("cap-c")];
    await c.declare({
      exchanges: names.map((name) => ({ name, type: "fanout" as const, autoDelete: true })),
    });
    for (const x of names) await c.publish(x, "", "x");
    await c.publish(names[2]!, "", "again");
    expect(await value(registry, "warren_published_total", { connection: conn, exchange: names[0]! })).toBe(
      1,
    );
    expect(await value(registry, "warren_published_total", { connection: conn, exchange: names[1]! })).toBe(
      1,
    );
    expect(await value(registry, "warren_published_total", { connection: conn, exchange: "_other" })).toBe(2);
    expect(await value(registry, "warren_confirmed_total", { connection: conn, exchange: "_other" })).toBe(2);
    expect(await value(registry, "warren_published_total", { connection: conn, exchange: names[2]! })).toBe(
      undefined,
    );
    expect(await registry.metrics()).not.toContain(names[2]!);
    for (const x of names) await c.deleteExchange(x);
  });

  it("gauges the outbox depth and its dead letters", async () => {
    const dir = mkdtempSync(join(tmpdir(), "warren-metrics-"));
    dirs.push(dir);
    // A client that cannot connect: stored rows stay in the outbox.
    const registry = new Registry();
    const offline = client(registry, { url: "amqp://guest:guest@127.0.0.1:1/", closeTimeout: 100 });
    const stuck = offline.publisher({ outbox: { path: join(dir, "stuck.db") } });
    await Promise.all(
      [1, 2, 3].map((i) => stuck.publish({ exchange: "", routingKey: "nowhere", body: `${i}` })),
    );
    expect(await value(registry, "warren_outbox_depth", { connection: nameOf(offline) })).toBe(3);
    expect(
      await value(registry, "warren_published_total", { connection: nameOf(offline), exchange: "(default)" }),
    ).toBe(3);

    // A connected one: a routable row is confirmed (depth 0), an unroutable one dead-lettered.
    const online = client(registry);
    const conn = nameOf(online);
    await online.ready();
    const queue = uniqueName("metrics-outbox");
    await online.declare({ queues: [{ name: queue, exclusive: true }] });
    const pub = online.publisher({ outbox: { path: join(dir, "online.db") } });
    await pub.publish({ exchange: "", routingKey: queue, body: "ok" });
    await pub.publish({
      exchange: "",
      routingKey: uniqueName("no-such-queue"),
      body: "lost",
      mandatory: true,
    });
    await waitFor(
      () => pub.stored === 0 && pub.deadLetters.list().length === 1,
      "the relay to settle both rows",
    );
    expect(await value(registry, "warren_outbox_depth", { connection: conn })).toBe(0);
    expect(await value(registry, "warren_outbox_dead_letters", { connection: conn })).toBe(1);
    const ex = { connection: conn, exchange: "(default)" };
    expect(await value(registry, "warren_confirmed_total", ex)).toBe(1);
    expect(await value(registry, "warren_returned_total", ex)).toBe(1);
  });
});

// ─── consuming ──────────────────────────────────────────────────────────────

describe("consuming metrics", () => {
  it("counts deliveries, acks, nacks, rejects, handler durations and running handlers", async () => {
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    await c.ready();
    const queue = uniqueName("metrics-consume");
    await c.declare({ queues: [{ name: queue, exclusive: true }] });
    const held = deferred();
    let holding = false;
    const consumer = c.consume({ queue, prefetch: 10 }, async (m: ConsumedMessage) => {
      const body = m.body.toString();
      if (body === "bad") throw new Error("handler failure (expected by the test)");
      if (body === "hold") {
        holding = true;
        await held.promise;
      }
    });
    consumer.on("error", () => undefined);
    await waitFor(() => consumer.state === "consuming", "the consumer to subscribe");
    const q = { connection: conn, queue };

    await c.publish("", queue, "hold");
    await waitFor(() => holding, "the held handler to start");
    expect(await value(registry, "warren_handlers_in_flight", q)).toBe(1);
    held.resolve();

    for (const body of ["a", "b", "bad"]) await c.publish("", queue, body);
    // "bad": nacked with requeue, redelivered, rejected. 5 deliveries in all.
    await waitFor(() => consumer.handled === 5, "five deliveries handled");
    expect(await value(registry, "warren_delivered_total", q)).toBe(5);
    expect(await value(registry, "warren_acked_total", q)).toBe(3);
    expect(await value(registry, "warren_consumer_nacked_total", q)).toBe(1);
    expect(await value(registry, "warren_rejected_total", q)).toBe(1);
    expect(await value(registry, "warren_handler_duration_seconds", q, { count: true })).toBe(5);
    expect(await value(registry, "warren_handlers_in_flight", q)).toBe(0);
    expect(await value(registry, "warren_consumer_restarts_total", q)).toBe(0);
  });
});

// ─── supervision ────────────────────────────────────────────────────────────

describe("supervision metrics", () => {
  it("counts a recovery after a killed connection, and the consumer's restart", async (ctx) => {
    if (!ctlUsable) ctx.skip("rabbitmqctl cannot reach the main broker");
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    const K = { connection: conn, role: "consume" };
    await c.ready();
    const queue = uniqueName("metrics-recover");
    await c.declare({ queues: [{ name: queue, durable: false, autoDelete: false }] });
    const consumer = c.consume({ queue }, () => undefined);
    await waitFor(() => consumer.state === "consuming", "the consumer to subscribe");
    const log = new StateLog(c);

    expect(await closeConnectionsNamed(`${conn}:consume`)).toBe(1);
    const lost = await log.next("recovering", 0);
    await log.next("running", log.changes.indexOf(lost));
    await waitFor(() => consumer.state === "consuming", "the consumer to resubscribe");

    expect(await value(registry, "warren_reconnects_total", K)).toBe(1);
    expect(await value(registry, "warren_recovery_duration_seconds", K, { count: true })).toBe(1);
    expect(await value(registry, "warren_connection_state", { ...K, state: "running" })).toBe(1);
    expect(await value(registry, "warren_connection_state", { ...K, state: "recovering" })).toBe(0);
    expect(await value(registry, "warren_connection_up", K)).toBe(1);
    expect(await value(registry, "warren_consumer_restarts_total", { connection: conn, queue })).toBe(1);
    expect(await value(registry, "warren_supervisor_escalations_total", { ...K, level: "connection" })).toBe(
      0,
    );
    // The host whose connection died rested (the only one: it was tried again all the same).
    expect(await value(registry, "warren_host_cooldowns_total", K)).toBe(1);
    await c.deleteQueue(queue);
  });

  it("counts a supervised channel reopened after a channel error", async () => {
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    // declare() uses the consume connection.
    const K = { connection: conn, role: "consume" };
    await c.ready();
    const queue = uniqueName("metrics-406");
    await c.declare({ queues: [{ name: queue, exclusive: true, arguments: { "x-max-length": 1 } }] });
    // The same queue with other arguments: 406 PRECONDITION_FAILED closes the admin channel.
    const err = await rejection(
      c.declare({ queues: [{ name: queue, exclusive: true, arguments: { "x-max-length": 2 } }] }),
    );
    expect(err).toBeInstanceOf(ChannelClosedByBroker);
    expect((err as ChannelClosedByBroker).replyCode).toBe(406);
    expect((err as ChannelClosedByBroker).replyText).toMatch(/PRECONDITION_FAILED/);
    await reaches(registry, "warren_channel_restarts_total", K, 1);
    expect(await value(registry, "warren_supervisor_escalations_total", { ...K, level: "channel" })).toBe(0);
    expect(await value(registry, "warren_channel_renewals_total", K)).toBe(0);
  });

  it("shows the state closed after close(), and failed (no escalation: a permanent error) for bad credentials", async () => {
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    const K = { connection: conn, role: "consume" };
    await c.ready();
    await c.close();
    expect(await value(registry, "warren_connection_state", { ...K, state: "closed" })).toBe(1);
    expect(await value(registry, "warren_connection_state", { ...K, state: "running" })).toBe(0);
    expect(await value(registry, "warren_connection_up", K)).toBe(0);

    const bad = client(registry, { url: amqpUrlWith({ user: "guest", password: uniqueName("wrong") }) });
    expect(await rejection(bad.ready())).toBeInstanceOf(AuthenticationError);
    expect(
      await value(registry, "warren_connection_state", {
        connection: nameOf(bad),
        role: "consume",
        state: "failed",
      }),
    ).toBe(1);
    expect(
      await value(registry, "warren_supervisor_escalations_total", {
        connection: nameOf(bad),
        role: "consume",
        level: "connection",
      }),
    ).toBe(0);
    expect(
      await value(registry, "warren_connection_degraded", { connection: nameOf(bad), role: "consume" }),
    ).toBe(0);
  });
});

// ─── the session layer ──────────────────────────────────────────────────────

describe("session metrics", () => {
  it("counts a connection declared dead by missed heartbeats", async () => {
    const proxy = await stallingProxy();
    const registry = new Registry();
    const c = client(registry, { url: proxy.url, heartbeat: 1 });
    try {
      const conn = nameOf(c);
      const K = { connection: conn, role: "consume" };
      await c.ready();
      const log = new StateLog(c);
      proxy.stall(); // the connection goes silent; new ones go through
      await reaches(registry, "warren_heartbeat_misses_total", K, 1);
      const lost = await log.next("recovering", 0);
      await log.next("running", log.changes.indexOf(lost));
      expect(await value(registry, "warren_reconnects_total", K)).toBe(1);
      expect(await value(registry, "warren_heartbeat_misses_total", K)).toBe(1);
    } finally {
      // Before the proxy goes (its stalled pair would otherwise hold the close up).
      await c.close().catch(() => undefined);
      await proxy.close();
    }
  });

  it("counts an RPC that got no reply in time", async () => {
    const proxy = await stallingProxy();
    const registry = new Registry();
    const c = client(registry, { url: proxy.url, heartbeat: 0, methodTimeout: 300, closeTimeout: 200 });
    try {
      const conn = nameOf(c);
      const K = { connection: conn, role: "consume" };
      await c.ready();
      await c.declare({ queues: [{ name: uniqueName("metrics-rpc"), exclusive: true }] });
      proxy.stall();
      const err = await rejection(
        c.declare({ queues: [{ name: uniqueName("metrics-rpc"), exclusive: true }] }),
      );
      expect(err).toBeInstanceOf(MethodTimeoutError);
      const method = { ...K, method: "queue.declare" };
      expect(await value(registry, "warren_method_calls_total", method)).toBe(2);
      expect(await value(registry, "warren_method_timeouts_total", method)).toBe(1);
      expect(await value(registry, "warren_method_duration_seconds", method, { count: true })).toBe(1);
    } finally {
      await c.close().catch(() => undefined);
      await proxy.close();
    }
  });
});

// ─── output and exposition ──────────────────────────────────────────────────

describe("exposition", () => {
  it("never shows the password (nor the URL) in the text output", async (ctx) => {
    if (!ctlUsable) ctx.skip("rabbitmqctl cannot reach the main broker");
    const user = uniqueName("metrics-user");
    const password = uniqueName("secret-pw");
    await addUser(user, password);
    const registry = new Registry();
    const c = client(registry, { url: amqpUrlWith({ user, password }) });
    try {
      await c.ready();
      const queue = uniqueName("metrics-pw");
      await c.declare({ queues: [{ name: queue, exclusive: true }] });
      await c.publish("", queue, "x");
      const text = await registry.metrics();
      expect(text).toContain(`connection="${nameOf(c)}"`);
      expect(text).not.toContain(password);
      expect(text).not.toContain(encodeURIComponent(password));
      expect(text).not.toContain(user);
      expect(text).not.toContain("amqp://");
    } finally {
      await c.close().catch(() => undefined); // before its user goes
      await deleteUser(user);
    }
  });

  it("serves /metrics over HTTP in the text format", async () => {
    const registry = new Registry();
    const c = client(registry);
    await c.ready();
    const server = await serveMetrics({ port: 0, host: "127.0.0.1", registry });
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const res = await fetch(server.url);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe(registry.contentType);
      expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
      const body = await res.text();
      expect(body).toContain("# TYPE warren_connection_state gauge");
      expect(body).toContain(
        `warren_connection_state{connection="${nameOf(c)}",role="consume",state="running"} 1`,
      );
      expect(body).toContain("# TYPE warren_published_total counter");
      const missing = await fetch(server.url.replace("/metrics", "/other"));
      expect(missing.status).toBe(404);
      await missing.text();
    } finally {
      await server.close();
    }
  });

  it("lets two clients share one registry, told apart by the connection label", async () => {
    const registry = new Registry();
    const a = client(registry);
    const b = client(registry);
    await Promise.all([a.ready(), b.ready()]);
    const queue = uniqueName("metrics-two");
    await a.declare({ queues: [{ name: queue, exclusive: false, autoDelete: true }] });
    await a.publish("", queue, "from a");
    await b.publish("", queue, "from b");
    await b.publish("", queue, "from b");
    const ex = { exchange: "(default)" };
    expect(await value(registry, "warren_published_total", { connection: nameOf(a), ...ex })).toBe(1);
    expect(await value(registry, "warren_published_total", { connection: nameOf(b), ...ex })).toBe(2);
    const P = { role: "publish" };
    expect(await value(registry, "warren_connection_up", { connection: nameOf(a), ...P })).toBe(1);
    expect(await value(registry, "warren_connection_up", { connection: nameOf(b), ...P })).toBe(1);
    // One registry, one metric object per name.
    const text = await registry.metrics();
    expect(text.match(/# TYPE warren_published_total counter/g)).toHaveLength(1);
    await b.close();
    await a.deleteQueue(queue);
    expect(await value(registry, "warren_connection_up", { connection: nameOf(a), ...P })).toBe(1);
    expect(
      await value(registry, "warren_connection_state", { connection: nameOf(b), ...P, state: "closed" }),
    ).toBe(1);
  });

  it("registers nothing without metrics, and uses prom-client's default registry with metrics: true", async () => {
    const { register } = await import("prom-client");
    const { client: off } = open();
    await off.ready();
    await off.publish("", "", "unrouted");
    expect(register.getMetricsAsArray().filter((m) => m.name.startsWith("warren_"))).toEqual([]);
    const { client: c, name } = open({ metrics: true });
    await c.ready();
    expect(await register.getSingleMetricAsString("warren_connection_up")).toContain(
      `warren_connection_up{connection="${name}",role="consume"} 1`,
    );
  });
});
