/**
 * Prometheus metrics against the real broker: the names and labels of dashboards/metrics.md,
 * exact values where they are deterministic (publishes, confirms, nacks, returns, a killed
 * connection, deliveries, the outbox, the label cap), no credentials in the output, the
 * /metrics endpoint, and two clients on one registry.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Client,
  type ClientOptions,
  type ConsumedMessage,
  connect,
  PublishNackedError,
  RpcTimeoutError,
  serveMetrics,
  UnroutableError,
} from "../../src/index.js";
import {
  AMQP_URL,
  addUser,
  amqpUrlWith,
  canUseRabbitmqctl,
  closeConnectionsNamed,
  deleteUser,
  uniqueName,
  withMemoryAlarm,
} from "../support/broker.js";
import { type ExtraNode, extraNodesSupported, findFreePorts, startExtraNode } from "../support/extra-node.js";
import { waitFor } from "../support/wait.js";

// ─── helpers ────────────────────────────────────────────────────────────────

const clients: Client[] = [];
const dirs: string[] = [];

function client(registry: Registry, options: ClientOptions = {}): Client {
  const c = connect({
    url: AMQP_URL,
    connectionName: uniqueName("metrics"),
    reconnect: { initial: 10, max: 100 },
    ...options,
    metrics: { registry, ...(typeof options.metrics === "object" ? options.metrics : {}) },
  });
  clients.push(c);
  return c;
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
});

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
async function until(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
  expected: number,
  opts: { count?: boolean } = {},
): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last: number | undefined;
  for (;;) {
    last = await value(registry, name, labels, opts);
    if (last === expected) return;
    if (Date.now() > deadline)
      throw new Error(`${name}${JSON.stringify(labels)} is ${last}, not ${expected}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function nameOf(c: Client): string {
  return (c as unknown as { opts: ClientOptions }).opts.connectionName ?? "default";
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

    // Connection-level series.
    expect(await value(registry, "warren_connection_state", { connection: conn, state: "running" })).toBe(1);
    expect(await value(registry, "warren_connection_state", { connection: conn, state: "connecting" })).toBe(
      0,
    );
    expect(await value(registry, "warren_connection_up", { connection: conn })).toBe(1);
    expect(await value(registry, "warren_blocked", { connection: conn })).toBe(0);
    expect(await value(registry, "warren_reconnects_total", { connection: conn })).toBe(0);
    expect(await value(registry, "warren_host_cooldowns_total", { connection: conn })).toBe(0);
    // One confirm channel: confirm.select once; its channel.open and the admin channel's.
    expect(
      await value(registry, "warren_rpc_calls_total", { connection: conn, method: "confirm.select" }),
    ).toBe(1);
    expect(
      await value(registry, "warren_rpc_calls_total", { connection: conn, method: "queue.declare" }),
    ).toBe(1);
    expect(
      await value(
        registry,
        "warren_rpc_duration_seconds",
        { connection: conn, method: "queue.declare" },
        { count: true },
      ),
    ).toBe(1);
    expect(
      await value(registry, "warren_rpc_timeouts_total", { connection: conn, method: "queue.declare" }),
    ).toBe(0);
    expect(await value(registry, "warren_heartbeat_misses_total", { connection: conn })).toBe(0);
    expect(await value(registry, "warren_bytes_sent_total", { connection: conn })).toBeGreaterThan(N * 20);
    expect(await value(registry, "warren_bytes_received_total", { connection: conn })).toBeGreaterThan(100);
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
    const err = await pub
      .publish({ exchange: "", routingKey: queue, body: "rejected" })
      .catch((e: unknown) => e);
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
    const err = await c
      .publish(exchange, "nobody-listens", "lost", {}, { mandatory: true })
      .catch((e: unknown) => e);
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
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let holding = false;
    const consumer = c.consume({ queue, prefetch: 10 }, async (m: ConsumedMessage) => {
      const body = m.body.toString();
      if (body === "bad") throw new Error("handler failure (expected by the test)");
      if (body === "hold") {
        holding = true;
        await held;
      }
    });
    consumer.on("error", () => undefined);
    await waitFor(() => consumer.state === "consuming", "the consumer to subscribe");
    const q = { connection: conn, queue };

    await c.publish("", queue, "hold");
    await waitFor(() => holding, "the held handler to start");
    expect(await value(registry, "warren_handlers_in_flight", q)).toBe(1);
    release();

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
    if (!ctlUsable) ctx.skip();
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    await c.ready();
    const queue = uniqueName("metrics-recover");
    await c.declare({ queues: [{ name: queue, durable: false, autoDelete: false }] });
    const consumer = c.consume({ queue }, () => undefined);
    await waitFor(() => consumer.state === "consuming", "the consumer to subscribe");
    let lost = false;
    c.on("state", ({ to }) => {
      if (to === "recovering") lost = true;
    });

    expect(await closeConnectionsNamed(conn)).toBe(1);
    await waitFor(() => lost && c.state === "running" && consumer.state === "consuming", "the recovery");

    expect(await value(registry, "warren_reconnects_total", { connection: conn })).toBe(1);
    expect(
      await value(registry, "warren_recovery_duration_seconds", { connection: conn }, { count: true }),
    ).toBe(1);
    expect(await value(registry, "warren_connection_state", { connection: conn, state: "running" })).toBe(1);
    expect(await value(registry, "warren_connection_state", { connection: conn, state: "recovering" })).toBe(
      0,
    );
    expect(await value(registry, "warren_connection_up", { connection: conn })).toBe(1);
    expect(await value(registry, "warren_consumer_restarts_total", { connection: conn, queue })).toBe(1);
    expect(
      await value(registry, "warren_supervisor_escalations_total", { connection: conn, level: "connection" }),
    ).toBe(0);
    // The host whose connection died rested (the only one: it was tried again all the same).
    expect(await value(registry, "warren_host_cooldowns_total", { connection: conn })).toBe(1);
    await c.deleteQueue(queue);
  });

  it("counts a supervised channel reopened after a channel error", async () => {
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    await c.ready();
    const queue = uniqueName("metrics-406");
    await c.declare({ queues: [{ name: queue, exclusive: true, arguments: { "x-max-length": 1 } }] });
    // The same queue with other arguments: 406 PRECONDITION_FAILED closes the admin channel.
    await expect(
      c.declare({ queues: [{ name: queue, exclusive: true, arguments: { "x-max-length": 2 } }] }),
    ).rejects.toThrow(/PRECONDITION_FAILED/);
    await until(registry, "warren_channel_restarts_total", { connection: conn }, 1);
    expect(
      await value(registry, "warren_supervisor_escalations_total", { connection: conn, level: "channel" }),
    ).toBe(0);
    expect(await value(registry, "warren_channel_renewals_total", { connection: conn })).toBe(0);
  });

  it("shows the state closed after close(), and failed (no escalation: a permanent error) for bad credentials", async () => {
    const registry = new Registry();
    const c = client(registry);
    const conn = nameOf(c);
    await c.ready();
    await c.close();
    expect(await value(registry, "warren_connection_state", { connection: conn, state: "closed" })).toBe(1);
    expect(await value(registry, "warren_connection_state", { connection: conn, state: "running" })).toBe(0);
    expect(await value(registry, "warren_connection_up", { connection: conn })).toBe(0);

    const bad = client(registry, { url: amqpUrlWith({ user: "guest", password: uniqueName("wrong") }) });
    await expect(bad.ready()).rejects.toThrow();
    expect(
      await value(registry, "warren_connection_state", { connection: nameOf(bad), state: "failed" }),
    ).toBe(1);
    expect(
      await value(registry, "warren_supervisor_escalations_total", {
        connection: nameOf(bad),
        level: "connection",
      }),
    ).toBe(0);
    expect(await value(registry, "warren_connection_degraded", { connection: nameOf(bad) })).toBe(0);
  });
});

// ─── the session layer ──────────────────────────────────────────────────────

describe("session metrics", () => {
  it("counts a connection declared dead by missed heartbeats", async () => {
    const proxy = await stallingProxy();
    try {
      const registry = new Registry();
      const c = client(registry, { url: proxy.url, heartbeat: 1 });
      const conn = nameOf(c);
      await c.ready();
      let lost = false;
      c.on("state", ({ to }) => {
        if (to === "recovering") lost = true;
      });
      proxy.stall(); // the connection goes silent; new ones go through
      await until(registry, "warren_heartbeat_misses_total", { connection: conn }, 1);
      await waitFor(() => lost && c.state === "running", "the recovery");
      expect(await value(registry, "warren_reconnects_total", { connection: conn })).toBe(1);
      expect(await value(registry, "warren_heartbeat_misses_total", { connection: conn })).toBe(1);
    } finally {
      await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
      await proxy.close();
    }
  });

  it("counts an RPC that got no reply in time", async () => {
    const proxy = await stallingProxy();
    try {
      const registry = new Registry();
      const c = client(registry, { url: proxy.url, heartbeat: 0, rpcTimeout: 300, closeTimeout: 200 });
      const conn = nameOf(c);
      await c.ready();
      await c.declare({ queues: [{ name: uniqueName("metrics-rpc"), exclusive: true }] });
      proxy.stall();
      const err = await c
        .declare({ queues: [{ name: uniqueName("metrics-rpc"), exclusive: true }] })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RpcTimeoutError);
      const method = { connection: conn, method: "queue.declare" };
      expect(await value(registry, "warren_rpc_calls_total", method)).toBe(2);
      expect(await value(registry, "warren_rpc_timeouts_total", method)).toBe(1);
      expect(await value(registry, "warren_rpc_duration_seconds", method, { count: true })).toBe(1);
    } finally {
      await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
      await proxy.close();
    }
  });
});

describe.skipIf(!extraNodesSupported())("blocked metrics (private node)", () => {
  let node: ExtraNode;

  beforeAll(async () => {
    const [amqpPort, distPort] = await findFreePorts(2);
    node = await startExtraNode({ name: "warren-metrics", amqpPort: amqpPort!, distPort: distPort! });
  }, 120_000);

  afterAll(async () => {
    await node?.stop();
  }, 60_000);

  it("gauges the blocked state and counts the time blocked", async () => {
    const registry = new Registry();
    const c = client(registry, { url: node.url });
    const conn = nameOf(c);
    await c.ready();
    const queue = uniqueName("metrics-blocked");
    await c.declare({ queues: [{ name: queue, exclusive: true }] });
    let during: Promise<void> | undefined;
    let whileBlocked = 0;
    await withMemoryAlarm(
      async () => {
        // RabbitMQ blocks a connection when it publishes during an alarm.
        during = c.publish("", queue, "during the alarm");
        await waitFor(() => c.state === "blocked", "the client blocked", 20_000);
        expect(await value(registry, "warren_blocked", { connection: conn })).toBe(1);
        expect(await value(registry, "warren_connection_state", { connection: conn, state: "blocked" })).toBe(
          1,
        );
        expect(await value(registry, "warren_connection_up", { connection: conn })).toBe(1);
        // Blocked time is counted while it lasts, not only when it ends.
        whileBlocked = (await value(registry, "warren_blocked_seconds_total", { connection: conn }))!;
        expect(whileBlocked).toBeGreaterThan(0);
      },
      { ctl: node.ctl },
    );
    await during;
    await waitFor(() => c.state === "running", "the client unblocked");
    expect(await value(registry, "warren_blocked", { connection: conn })).toBe(0);
    expect(await value(registry, "warren_connection_state", { connection: conn, state: "blocked" })).toBe(0);
    expect(await value(registry, "warren_blocked_seconds_total", { connection: conn })).toBeGreaterThan(
      whileBlocked,
    );
  }, 60_000);
});

// ─── output and exposition ──────────────────────────────────────────────────

describe("exposition", () => {
  it("never shows the password (nor the URL) in the text output", async (ctx) => {
    if (!ctlUsable) ctx.skip();
    const user = uniqueName("metrics-user");
    const password = uniqueName("secret-pw");
    await addUser(user, password);
    try {
      const registry = new Registry();
      const url = amqpUrlWith({ user, password });
      const c = client(registry, { url });
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
      await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
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
      expect(body).toContain(`warren_connection_state{connection="${nameOf(c)}",state="running"} 1`);
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
    expect(await value(registry, "warren_connection_up", { connection: nameOf(a) })).toBe(1);
    expect(await value(registry, "warren_connection_up", { connection: nameOf(b) })).toBe(1);
    // One registry, one metric object per name.
    const text = await registry.metrics();
    expect(text.match(/# TYPE warren_published_total counter/g)).toHaveLength(1);
    await b.close();
    await a.deleteQueue(queue);
    expect(await value(registry, "warren_connection_up", { connection: nameOf(a) })).toBe(1);
    expect(await value(registry, "warren_connection_state", { connection: nameOf(b), state: "closed" })).toBe(
      1,
    );
  });

  it("registers nothing without metrics, and uses prom-client's default registry with metrics: true", async () => {
    const { register } = await import("prom-client");
    const off = connect({ url: AMQP_URL, connectionName: uniqueName("metrics-off") });
    clients.push(off);
    await off.ready();
    await off.publish("", "", "unrouted");
    expect(register.getMetricsAsArray().filter((m) => m.name.startsWith("warren_"))).toEqual([]);
    const c = connect({ url: AMQP_URL, connectionName: uniqueName("metrics-default"), metrics: true });
    clients.push(c);
    await c.ready();
    expect(await register.getSingleMetricAsString("warren_connection_up")).toContain(
      `warren_connection_up{connection="${nameOf(c)}"} 1`,
    );
  });
});
