/**
 * Consumer policies against the real broker: ack on success, retry with delay through warren's
 * retry topology then dead-lettering (attempts from headers), the concurrency limit, ordering
 * with concurrency 1, handler timeouts, drain on close, a quorum queue's delivery limit, stream
 * offsets, the async iterator, and a connection killed while the retry policy is busy.
 */
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { Registry } from "prom-client";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { type ClientOptions, TimeoutError } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { deferred, sleep } from "../support/async.js";
import { canUseRabbitmqctl, closeConnectionsNamed, uniqueName } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { drainQueue } from "../support/queue.js";
import { StateLog } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

/** Two tests kill the connection with rabbitmqctl close_connection. */
const ctlUsable = await canUseRabbitmqctl();

const admin = useAdmin();
const clients = useClients("policies", { reconnect: { initial: 50, max: 200 } });

// Registered after useAdmin(): after-hooks run in reverse order, so the admin connection is still open.
afterAll(async () => {
  // The retry topology these tests made warren declare (shared by design, durable): gone again.
  const ch = await admin.conn.openChannel();
  for (const ms of [200, 250, 300, 500])
    await ch.queueDelete({ queue: `warren.retry.${ms}ms` }).catch(() => undefined);
  if (ch.isOpen) await ch.exchangeDelete({ exchange: "warren.retry" }).catch(() => undefined);
  if (ch.isOpen) await ch.close();
});

function client(name = uniqueName("policies"), extra: ClientOptions = {}) {
  return clients({ ...extra, connectionName: name }).client;
}

/** A queue name, deleted after the test. */
const q = (prefix: string) => admin.queueName(prefix);

/** Queues warren names after a test's queue (its own dead-letter queue), deleted after the test. */
const derivedQueues: string[] = [];
afterEach(async () => {
  if (derivedQueues.length === 0) return;
  const ch = await admin.conn.openChannel();
  for (const queue of derivedQueues.splice(0)) await ch.queueDelete({ queue }).catch(() => undefined);
  if (ch.isOpen) await ch.close();
});

async function publish(queue: string, bodies: string[], headers?: Record<string, number | string>) {
  await Promise.all(
    bodies.map((b) => admin.pub.publish("", queue, b, { messageId: b, ...(headers ? { headers } : {}) })),
  );
}

async function messageCount(queue: string): Promise<number> {
  const ch = await admin.conn.openChannel();
  try {
    return (await ch.queueDeclare({ queue, passive: true })).messageCount;
  } finally {
    if (ch.isOpen) await ch.close();
  }
}

/** The topology of `queue`, whose rejected messages go to `dead`. */
function deadLettered(queue: string, dead: string) {
  return {
    queues: [
      { name: dead },
      { name: queue, arguments: { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead } },
    ],
  };
}

/** Records 406 (unknown delivery tag) and other channel errors seen by a consumer. */
function channelErrors(c: { on(event: "state", fn: (c: { error: Error | undefined }) => void): unknown }) {
  const errors: string[] = [];
  c.on("state", ({ error }) => {
    if (error) errors.push(error.message);
  });
  return errors;
}

describe("consumer policies", () => {
  it("acks when the handler resolves", async () => {
    const cl = client();
    const queue = q("ack");
    await cl.declare({ queues: [{ name: queue }] });
    const got: { body: string; attempt: number }[] = [];
    const c = cl.consume({ queue, prefetch: 10 }, async (m) => {
      got.push({ body: m.body.toString(), attempt: m.attempt });
    });
    await c.ready();
    await publish(queue, ["a", "b", "c", "d", "e"]);
    await waitFor(() => c.stats.acked === 5, "5 acks");
    expect(got).toEqual(["a", "b", "c", "d", "e"].map((body) => ({ body, attempt: 1 })));
    expect(c.stats).toMatchObject({ delivered: 5, acked: 5, failed: 0, inFlight: 0 });
    await c.cancel();
    expect(await messageCount(queue)).toBe(0);
  });

  it("retries after the delay, counting attempts from headers, then dead-letters", async () => {
    const cl = client();
    const queue = q("retry");
    const dead = q("retry-dlq");
    await cl.declare(deadLettered(queue, dead));
    const seen: { attempt: number; at: number }[] = [];
    const c = cl.consume({ queue, retry: { delays: [300, 500] }, maxAttempts: 4 }, (m) => {
      seen.push({ attempt: m.attempt, at: performance.now() });
      throw new Error("always fails");
    });
    c.on("error", () => undefined);
    await c.ready();
    await publish(queue, ["job"]);
    await until(async () => (await messageCount(dead)) === 1, "the dead letter");
    expect(seen.map((s) => s.attempt)).toEqual([1, 2, 3, 4]);
    const gaps = seen.slice(1).map((s, i) => s.at - seen[i]!.at);
    // delays[0], then delays[1], the last one repeating
    expect(gaps[0]).toBeGreaterThanOrEqual(300);
    expect(gaps[1]).toBeGreaterThanOrEqual(500);
    expect(gaps[2]).toBeGreaterThanOrEqual(500);
    console.log(`retry gaps (ms, delays 300/500/500): ${gaps.map((g) => g.toFixed(0)).join(", ")}`);
    expect(c.stats).toMatchObject({
      delivered: 4,
      failed: 4,
      retried: 3,
      deadLettered: 1,
      acked: 0,
      inFlight: 0,
    });
    const [letter] = await drainQueue(admin.conn, dead);
    expect(letter!.body.toString()).toBe("job");
    const deaths = letter!.properties.headers?.["x-death"] as { reason: string; queue: string }[];
    expect(deaths.some((d) => d.reason === "rejected" && d.queue === queue)).toBe(true);
    // The retry topology is recorded: restored after recoveries.
    const recorded = cl.topology.snapshot();
    expect(recorded.exchanges).toContain("warren.retry");
    expect(recorded.queues.map((x) => x.key)).toEqual(
      expect.arrayContaining(["warren.retry.300ms", "warren.retry.500ms"]),
    );
  });

  it("moves to warren's own dead-letter queue with deadLetter: 'queue'", async () => {
    const cl = client();
    const queue = q("dlq");
    derivedQueues.push(`warren.dead.${queue}`);
    await cl.declare({ queues: [{ name: queue }] });
    const attempts: number[] = [];
    const c = cl.consume({ queue, retry: { delays: 200, deadLetter: "queue" }, maxAttempts: 2 }, (m) => {
      attempts.push(m.attempt);
      throw new Error("nope");
    });
    c.on("error", () => undefined);
    await c.ready();
    await publish(queue, ["x"]);
    await until(async () => (await messageCount(`warren.dead.${queue}`)) === 1, "the dead letter");
    expect(attempts).toEqual([1, 2]);
    const [letter] = await drainQueue(admin.conn, `warren.dead.${queue}`);
    expect(String(letter!.properties.headers?.["warren-death-reason"])).toMatch(
      /failed 2 attempts: Error: nope/,
    );
    expect(letter!.properties.headers?.["warren-original-routing-key"]).toBe(queue);
    expect(c.stats).toMatchObject({ retried: 1, deadLettered: 1 });
  });

  it("counts retries and dead letters in consumer.stats, the metrics and the spans", async () => {
    const registry = new Registry();
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const name = uniqueName("policies-obs");
    const cl = client(name, { metrics: { registry }, tracing: { tracer: provider.getTracer("test") } });
    const queue = q("obs");
    const dead = q("obs-dlq");
    await cl.declare(deadLettered(queue, dead));
    const c = cl.consume({ queue, retry: { delays: 200 }, maxAttempts: 2 }, () => {
      throw new Error("fails");
    });
    c.on("error", () => undefined);
    await c.ready();
    await publish(queue, ["o"]);
    await until(async () => (await messageCount(dead)) === 1, "the dead letter");
    expect(c.stats).toMatchObject({ delivered: 2, failed: 2, retried: 1, deadLettered: 1, acked: 0 });
    const value = async (metric: string) => {
      const m = await registry.getSingleMetric(metric)!.get();
      return m.values.find((v) => v.labels["queue"] === queue && v.labels["connection"] === name)?.value;
    };
    expect(await value("warren_delivered_total")).toBe(2);
    expect(await value("warren_retried_total")).toBe(1);
    expect(await value("warren_rejected_total")).toBe(1);
    expect(await value("warren_acked_total")).toBe(0);
    const outcomes = exporter
      .getFinishedSpans()
      .filter((s) => s.name === `process ${queue}`)
      .map((s) => s.attributes["warren.delivery.outcome"]);
    expect(outcomes).toEqual(["retry", "dead_letter"]);
  });

  it("runs at most `concurrency` handlers at once, and more than one", async () => {
    const cl = client();
    const queue = q("concurrency");
    await cl.declare({ queues: [{ name: queue }] });
    let running = 0;
    let max = 0;
    const c = cl.consume({ queue, prefetch: 20, concurrency: 4 }, async () => {
      running++;
      max = Math.max(max, running);
      await sleep(30); // time is the point: a handler busy long enough for the others to overlap it
      running--;
    });
    await c.ready();
    await publish(
      queue,
      Array.from({ length: 40 }, (_, i) => `m${i}`),
    );
    await waitFor(() => c.stats.acked === 40, "40 acks");
    console.log(`max parallel handlers with concurrency 4: ${max}`);
    expect(max).toBe(4);
  });

  it("keeps the order with concurrency 1", async () => {
    const cl = client();
    const queue = q("order");
    await cl.declare({ queues: [{ name: queue }] });
    const got: number[] = [];
    let running = 0;
    let max = 0;
    const c = cl.consume({ queue, prefetch: 30, concurrency: 1 }, async (m) => {
      running++;
      max = Math.max(max, running);
      await sleep(Math.random() * 5); // time is the point: handlers of uneven length
      got.push(Number(m.body.toString()));
      running--;
    });
    await c.ready();
    const sent = Array.from({ length: 60 }, (_, i) => i);
    await publish(queue, sent.map(String));
    await waitFor(() => got.length === 60, "60 messages");
    expect(got).toEqual(sent);
    expect(max).toBe(1);
  });

  it("times a hanging handler out: the policy applies, the late result is ignored", async () => {
    const cl = client();
    const queue = q("timeout");
    await cl.declare({ queues: [{ name: queue }] });
    const errors: unknown[] = [];
    const release = deferred();
    let startedAt = 0;
    let abortedAt = 0;
    let lateDone = false;
    const c = cl.consume({ queue, timeoutMs: 200 }, async (m) => {
      if (m.attempt === 1 && m.body.toString() === "slow") {
        startedAt = performance.now();
        m.signal.addEventListener("abort", () => {
          abortedAt = performance.now();
        });
        await release.promise; // stuck past the timeout until the test lets it "succeed"
        lateDone = true;
      }
    });
    const chErrors = channelErrors(c);
    c.on("error", (e) => errors.push(e));
    await c.ready();
    await publish(queue, ["slow"]);
    // Requeued by the default policy at the timeout, redelivered (attempt 2) and acked, while the
    // first attempt's handler is still stuck.
    await waitFor(() => c.stats.acked === 1, "the ack of the second attempt");
    expect(lateDone).toBe(false);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TimeoutError);
    expect(abortedAt).toBeGreaterThan(0);
    expect(abortedAt - startedAt).toBeGreaterThanOrEqual(195); // not before its timeoutMs
    release.resolve();
    await waitFor(() => lateDone, "the stuck handler to return");
    // Its late success acked nothing: a second ack of that tag would close the channel with 406.
    // A message after it proves the channel and the consumer carry on.
    await publish(queue, ["after"]);
    await waitFor(() => c.stats.acked === 2, "the ack of the next message");
    expect(c.stats).toMatchObject({ delivered: 3, failed: 1, requeued: 1, acked: 2, inFlight: 0 });
    expect(c.state).toBe("consuming");
    expect(chErrors).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(await messageCount(queue)).toBe(0);
  });

  it("drains on close: handled + left in the queue = published", async () => {
    const cl = client();
    const queue = q("drain");
    await cl.declare({ queues: [{ name: queue, durable: false }] });
    let finished = 0;
    const c = cl.consume({ queue, prefetch: 10, concurrency: 3 }, async () => {
      await sleep(40); // time is the point: handlers still running when close() comes
      finished++;
    });
    await c.ready();
    await publish(
      queue,
      Array.from({ length: 60 }, (_, i) => `d${i}`),
    );
    await waitFor(() => finished >= 10, "10 handled");
    await cl.close();
    const left = await messageCount(queue);
    console.log(`drain: ${finished} handled + ${left} left = ${finished + left}`);
    expect(c.stats.acked).toBe(finished);
    expect(c.stats.inFlight).toBe(0);
    expect(finished + left).toBe(60);
  });

  it("a quorum queue's x-delivery-limit dead-letters after the limit", async () => {
    const cl = client();
    const queue = q("quorum");
    const dead = q("quorum-dlq");
    await cl.declare({
      queues: [
        { name: dead },
        {
          name: queue,
          durable: true,
          arguments: {
            "x-queue-type": "quorum",
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead,
          },
        },
      ],
    });
    const attempts: number[] = [];
    const c = cl.consume({ queue, onFailure: "requeue", maxAttempts: Infinity }, (m) => {
      attempts.push(m.attempt);
      throw new Error("poison");
    });
    c.on("error", () => undefined);
    await c.ready();
    await publish(queue, ["poison"]);
    await until(async () => (await messageCount(dead)) === 1, "the dead letter");
    // Delivered once, then redelivered up to the limit (x-delivery-count 1, 2).
    expect(attempts).toEqual([1, 2, 3]);
    expect(c.stats).toMatchObject({ requeued: 3, failed: 3 });
  });

  it("reads a stream from an offset: first, a number, next", async () => {
    const cl = client();
    const stream = q("stream");
    await cl.declare({ queues: [{ name: stream, durable: true, arguments: { "x-queue-type": "stream" } }] });
    await publish(
      stream,
      Array.from({ length: 10 }, (_, i) => `s${i}`),
    );
    const read = async (
      streamOffset: "first" | "next" | number | Date,
      expected: number,
      during?: () => Promise<void>,
    ) => {
      const got: { body: string; offset: unknown }[] = [];
      const c = cl.consume({ queue: stream, prefetch: 5, streamOffset }, (m) => {
        got.push({ body: m.body.toString(), offset: m.properties.headers?.["x-stream-offset"] });
      });
      await c.ready();
      if (during) await during();
      await waitFor(() => got.length >= expected, `${expected} stream messages from ${streamOffset}`);
      await c.cancel();
      return got;
    };
    const first = await read("first", 10);
    expect(first.map((g) => g.body)).toEqual(Array.from({ length: 10 }, (_, i) => `s${i}`));
    const fromOffset = first[4]!.offset as number;
    const numbered = await read(fromOffset, 6);
    expect(numbered.map((g) => g.body)).toEqual(["s4", "s5", "s6", "s7", "s8", "s9"]);
    const next = await read("next", 2, () => publish(stream, ["n0", "n1"]));
    expect(next.map((g) => g.body)).toEqual(["n0", "n1"]);
    const since = await read(new Date(Date.now() - 3_600_000), 12);
    expect(since).toHaveLength(12);
  });

  // Kills the connection with rabbitmqctl close_connection.
  it.skipIf(!ctlUsable)(
    "a stream consumer resumes after a lost connection where it stopped, not from its first offset",
    async () => {
      const name = uniqueName("policies-stream-kill");
      const cl = client(name);
      const stream = q("stream-kill");
      await cl.declare({
        queues: [{ name: stream, durable: true, arguments: { "x-queue-type": "stream" } }],
      });
      await publish(
        stream,
        Array.from({ length: 40 }, (_, i) => `s${i}`),
      );
      const connectionLost = deferred();
      let isLost = false;
      cl.on("state", ({ to }) => {
        if (to === "recovering" && !isLost) {
          isLost = true;
          connectionLost.resolve();
        }
      });
      const seen: string[] = [];
      const handled = new Set<string>();
      const c = cl.consume(
        { queue: stream, prefetch: 5, concurrency: 1, streamOffset: "first" },
        async (m) => {
          const body = m.body.toString();
          seen.push(body);
          if (handled.size >= 10 && !isLost) await connectionLost.promise; // held across the kill: never acked
          handled.add(body);
        },
      );
      const log = new StateLog(c);
      await c.ready();
      await waitFor(() => handled.size >= 10, "10 handled");
      const mark = log.changes.length;
      expect(await closeConnectionsNamed(`${name}:consume`, "killed by test")).toBe(1);
      await log.next("consuming", mark, 20_000); // subscribed again after the kill
      await waitFor(() => handled.size === 40, "all 40 handled", 20_000);
      // Resumed at the first unacked offset: at most the prefetch window is seen twice, never all from "first".
      const again = seen.length - 40;
      console.log(`stream resume: ${seen.length} deliveries for 40 messages (${again} redelivered)`);
      expect(again).toBeGreaterThanOrEqual(1);
      expect(again).toBeLessThanOrEqual(5);
      expect(seen.filter((b) => b === "s0")).toHaveLength(1);
    },
  );

  it("the async iterator: ack, nack (requeue), reject, break", async () => {
    const cl = client();
    const queue = q("iter");
    const dead = q("iter-dlq");
    await cl.declare(deadLettered(queue, dead));
    await publish(queue, ["ack-1", "nack-2", "reject-3", "ack-4", "ack-5", "rest-6", "rest-7", "rest-8"]);
    const stream = cl.messages({ queue, prefetch: 3 });
    const seen: string[] = [];
    let requeuedOnce = false;
    for await (const msg of stream) {
      const body = msg.body.toString();
      seen.push(`${body}${msg.fields.redelivered ? "*" : ""}`);
      expect(stream.buffered).toBeLessThanOrEqual(3);
      if (body.startsWith("nack") && !requeuedOnce) {
        requeuedOnce = true;
        msg.nack({ requeue: true });
      } else if (body.startsWith("reject")) msg.reject();
      else msg.ack();
      if (body === "ack-5") break;
    }
    expect(seen).toContain("nack-2*"); // requeued and seen again
    expect(stream.consumer.state).toBe("cancelled");
    const s = stream.consumer.stats;
    expect(s.deadLettered).toBe(1);
    expect(s.requeued).toBeGreaterThanOrEqual(1);
    await until(async () => (await messageCount(dead)) === 1, "the rejected one");
    // acked (ack-1, nack-2 the second time, ack-4, ack-5) + dead-lettered + left = published
    expect(s.acked).toBe(4);
    expect(s.acked + 1 + (await messageCount(queue))).toBe(8);
    // Settling after the consumer ended is a no-op (never a stale tag).
    expect(s.inFlight).toBe(0);
  });

  // Kills the connection with rabbitmqctl close_connection.
  it.skipIf(!ctlUsable)("a connection killed while retrying: nothing lost, no stale acks", async () => {
    const name = uniqueName("policies-kill");
    const cl = client(name);
    const queue = q("kill");
    await cl.declare({ queues: [{ name: queue, durable: true }] });
    const done = new Set<string>();
    // Once 15 are done, handlers hold their deliveries until the connection is lost: their
    // results then arrive for a dead channel (stale tags, which must not be acked).
    const connectionLost = deferred();
    let isLost = false;
    cl.on("state", ({ to }) => {
      if (to === "recovering") {
        isLost = true;
        connectionLost.resolve();
      }
    });
    let held = 0;
    const c = cl.consume(
      { queue, prefetch: 8, concurrency: 4, retry: { delays: [250] }, maxAttempts: 10 },
      async (m) => {
        const id = m.properties.messageId!;
        await sleep(5); // time is the point: handlers that take a while, so some are mid-way at the kill
        if (done.size >= 15 && !isLost) {
          held++;
          await connectionLost.promise;
        }
        if (Number(id.slice(1)) % 3 === 0 && m.attempt === 1) throw new Error("first attempt fails");
        done.add(id);
      },
    );
    c.on("error", () => undefined);
    const errors = channelErrors(c);
    const log = new StateLog(c);
    await c.ready();
    const ids = Array.from({ length: 60 }, (_, i) => `k${i}`);
    await publish(queue, ids);
    await waitFor(() => done.size >= 15 && c.stats.retried >= 2, "some handled and some retried");
    const mark = log.changes.length;
    const doneBefore = done.size;
    expect(await closeConnectionsNamed(`${name}:consume`, "killed by test")).toBe(1);
    // Resubscribed: a transition to consuming after the kill, not a state it may never have left.
    await log.next("consuming", mark, 20_000);
    await waitFor(() => done.size === 60, "every message handled", 20_000);
    expect(doneBefore).toBeLessThan(60); // messages were handled after the kill
    await until(
      async () => (await messageCount(queue)) === 0 && (await messageCount("warren.retry.250ms")) === 0,
      "the queue and the delay queue to empty",
    );
    expect([...done].sort()).toEqual([...ids].sort());
    expect(errors.filter((e) => /406|unknown delivery tag/i.test(e))).toEqual([]);
    expect(c.state).toBe("consuming");
    expect(held).toBeGreaterThan(0);
    console.log(
      `killed mid-stream: ${c.stats.delivered} deliveries, ${c.stats.retried} retried, ${held} handlers held across the kill, all 60 handled`,
    );
  });
});
