/**
 * Publishing without confirms against the real broker: publish() resolves once the connection's
 * write buffer is under its high-water mark, so the bytes buffered in the process stay bounded
 * (warren_write_buffer_bytes) and the event loop keeps turning. A stalled socket (a proxy that
 * stops reading) makes publishes wait; 1 000 000 publishes run with bounded memory while
 * heartbeats and a consumer on the same connection are served.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { ClientOptions } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { uniqueName } from "../support/broker.js";
import { type BrokerProxy, startBrokerProxy } from "../support/broker-proxy.js";
import { type TestClient, useClients } from "../support/clients.js";
import { drainQueue, messageIds } from "../support/queue.js";
import { StateLog } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

const admin = useAdmin();
const proxies: BrokerProxy[] = [];

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

// Registered after the proxies' hook, so it runs before it: clients close before their proxy.
// One connection: the point is a consumer and heartbeats served on the connection that publishes.
const newClient = useClients("warren-backpressure", { connections: "single" });

/** A queue of the test's own (deleted after it). */
async function queue(): Promise<string> {
  const name = admin.queueName("warren.test.backpressure");
  await admin.pub.queueDeclare({ queue: name });
  return name;
}

/** A client whose metrics go to `registry`. */
function client(registry: Registry, options: ClientOptions = {}): TestClient {
  return newClient({ ...options, metrics: { registry } });
}

/** The value of a connection-labelled gauge (collected as a scrape would). */
async function gauge(registry: Registry, metric: string, connection: string): Promise<number> {
  const m = registry.getSingleMetric(metric);
  if (!m) throw new Error(`${metric} is not registered`);
  const hit = (await m.get()).values.find((v) => v.labels["connection"] === connection);
  return hit?.value ?? Number.NaN;
}

const MiB = 1024 * 1024;

describe("publishing without confirms", () => {
  it("waits while the socket does not drain: the write buffer stays at its high-water mark, then everything is sent", async () => {
    const q = await queue();
    const proxy = await startBrokerProxy();
    proxies.push(proxy);
    const registry = new Registry();
    const hwm = 256 * 1024;
    const { client: c, name } = client(registry, { url: proxy.url, writeHighWaterMark: hwm });
    await c.ready();
    const maxInFlight = 1000;
    const pub = c.publisher({ confirm: false, maxInFlight });
    const body = Buffer.alloc(128, 0x61);
    const publishWindow = (from: number) =>
      Promise.all(
        Array.from({ length: 1000 }, (_, j) =>
          pub.publish({ exchange: "", routingKey: q, body, properties: { messageId: String(from + j) } }),
        ),
      );
    expect(await publishWindow(0)).toHaveLength(1000);

    proxy.stall();
    // Windows of 1000, each awaited, until one is caught waiting for room in the socket (without
    // backpressure every window resolves at once and the buffer grows: the loop never ends that way).
    // Between the poll that sees a publish waiting and the reads below only promises run, no I/O:
    // what they read is the state the poll saw.
    let sent = 1000;
    let maxBuffered = 0;
    let buffered = 0;
    let waiting: Promise<unknown> | undefined;
    for (let w = 0; w < 200 && waiting === undefined; w++) {
      const window = publishWindow(sent);
      sent += 1000;
      let settled = false;
      const done = window.then(() => {
        settled = true;
      });
      await Promise.race([
        done,
        waitFor(() => settled || pub.pending > 0, "a publish waiting, or the window sent", 30_000),
      ]);
      buffered = await gauge(registry, "warren_write_buffer_bytes", name);
      maxBuffered = Math.max(maxBuffered, buffered);
      if (!settled && buffered >= hwm) waiting = window;
      else await window;
    }
    expect(waiting, "a window of publishes waits while the socket is stalled").toBeInstanceOf(Promise);
    console.log(
      `stalled socket: ${sent} publishes, ${pub.pending} waiting, write buffer ${buffered} B (high-water mark ${hwm} B, max seen ${maxBuffered} B)`,
    );
    expect(pub.pending).toBeGreaterThan(0);
    expect(pub.pending).toBeLessThanOrEqual(maxInFlight);
    // At most one message (and a heartbeat) past the mark.
    expect(maxBuffered).toBeLessThan(hwm + 16 * 1024);

    proxy.resume();
    await waiting;
    await waitFor(() => pub.pending === 0, "every publish sent", 30_000);
    // Every message reaches the queue, in order.
    const depth = async () => (await admin.pub.queueDeclare({ queue: q, passive: true })).messageCount;
    await until(async () => (await depth()) >= sent, `${sent} messages in the queue`, 30_000);
    expect(await depth()).toBe(sent);
    const got = await drainQueue(admin.conn, q);
    expect(messageIds(got)).toEqual(Array.from({ length: sent }, (_, i) => String(i)));
  });

  it("1 000 000 publishes: bounded memory and write buffer; heartbeats and a consumer on the same connection are served", async () => {
    const q = await queue();
    const nowhere = uniqueName("warren.test.unrouted"); // no such queue: the broker drops these
    const registry = new Registry();
    const heartbeat = 1;
    const { client: c, name } = client(registry, { heartbeat });
    const states = new StateLog(c);
    await c.ready();
    const mark = states.changes.length;
    let delivered = 0;
    const consumer = c.consume({ queue: q, prefetch: 100 }, async () => {
      delivered += 1;
    });
    await consumer.ready();
    const pub = c.publisher({ confirm: false, maxInFlight: 1000 });
    const body = Buffer.alloc(128, 0x61);
    // Every 100th message goes to the consumer's queue, the others nowhere.
    const publishWindow = (from: number) =>
      Promise.all(
        Array.from({ length: 1000 }, (_, j) =>
          pub.publish({ exchange: "", routingKey: (from + j) % 100 === 0 ? q : nowhere, body }),
        ),
      );
    for (let i = 0; i < 20_000; i += 1000) await publishWindow(i); // warm-up: arenas, JIT
    await waitFor(() => delivered === 200, "warm-up deliveries", 10_000);
    delivered = 0;
    const hwm = 4 * MiB; // the default writeHighWaterMark
    const N = 1_000_000;
    const baseRss = process.memoryUsage.rss();
    let peakRss = baseRss;
    let maxBuffered = 0;
    let ticks = 0;
    let maxGap = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks += 1;
    }, 20);
    let deliveredMidway = 0;
    const started = performance.now();
    try {
      for (let i = 0; i < N; i += 1000) {
        await publishWindow(i);
        if (i % 10_000 === 0) {
          peakRss = Math.max(peakRss, process.memoryUsage.rss());
          maxBuffered = Math.max(maxBuffered, await gauge(registry, "warren_write_buffer_bytes", name));
        }
        if (i === N / 2) deliveredMidway = delivered;
      }
    } finally {
      clearInterval(ticker);
    }
    const seconds = (performance.now() - started) / 1000;
    await waitFor(() => delivered === N / 100, "every delivery", 30_000);
    console.log(
      `1 000 000 unconfirmed publishes (128 B) in ${seconds.toFixed(1)} s (${Math.round(N / seconds / 1000)}k msg/s): ` +
        `RSS ${(baseRss / MiB).toFixed(0)} MiB before, peak ${(peakRss / MiB).toFixed(0)} MiB (+${((peakRss - baseRss) / MiB).toFixed(0)} MiB); ` +
        `write buffer at most ${(maxBuffered / 1024).toFixed(0)} KiB; a 20 ms timer ran ${ticks} times, longest gap ${maxGap.toFixed(0)} ms; ` +
        `${deliveredMidway} of ${N / 100} deliveries by mid-stream`,
    );
    expect(peakRss - baseRss).toBeLessThan(128 * MiB);
    expect(maxBuffered).toBeLessThan(hwm + 64 * 1024);
    // The event loop turned throughout: timers ran, the heartbeat never missed, the connection stayed up.
    // (Time is the point here. Without backpressure the timer never ran during the loop. It
    // nominally runs 50 times a second, but how often it can run depends on how much CPU the
    // process gets: on a heavily loaded 2-core machine it ran under 2 times a second. So the
    // bounds are at least once a second on average, and no gap reaching two heartbeats.)
    expect(ticks).toBeGreaterThan(seconds);
    expect(maxGap).toBeLessThan(2 * heartbeat * 1000);
    expect(await gauge(registry, "warren_heartbeat_misses_total", name)).toBe(0);
    expect(states.statesSince(mark)).toEqual([]);
    // The consumer on the same connection was served while publishing went on.
    expect(deliveredMidway).toBeGreaterThan(0);
  }, 90_000);
});
