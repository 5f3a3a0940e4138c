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
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Channel,
  type Client,
  type ClientOptions,
  Connection,
  type Consumer,
  connect,
  TimeoutError,
} from "../../src/index.js";
import { AMQP_URL, canUseRabbitmqctl, closeConnectionsNamed, uniqueName } from "../support/broker.js";
import { drainQueue } from "../support/queue.js";
import { waitFor } from "../support/wait.js";

/** Two tests kill the connection with rabbitmqctl close_connection. */
const ctlUsable = await canUseRabbitmqctl();

let admin: Connection;
let pub: Channel;
const clients: Client[] = [];
const queues: string[] = [];

beforeAll(async () => {
  admin = await Connection.open(AMQP_URL);
  pub = await admin.openChannel();
  await pub.confirmSelect();
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  const ch = await admin.openChannel();
  for (const q of queues.splice(0)) await ch.queueDelete({ queue: q }).catch(() => undefined);
  if (ch.isOpen) await ch.close();
});

afterAll(async () => {
  // The retry topology these tests made warren declare (shared by design, durable): gone again.
  const ch = await admin.openChannel();
  for (const ms of [200, 250, 300, 500])
    await ch.queueDelete({ queue: `warren.retry.${ms}ms` }).catch(() => undefined);
  if (ch.isOpen) await ch.exchangeDelete({ exchange: "warren.retry" }).catch(() => undefined);
  if (ch.isOpen) await ch.close();
  await admin.close();
});

function client(name = uniqueName("policies"), extra: Partial<ClientOptions> = {}): Client {
  const c = connect({ url: AMQP_URL, connectionName: name, reconnect: { initial: 50, max: 200 }, ...extra });
  clients.push(c);
  return c;
}

/** A queue name, deleted after the test. */
function q(prefix: string): string {
  const name = uniqueName(prefix);
  queues.push(name);
  return name;
}

async function publish(queue: string, bodies: string[], headers?: Record<string, number | string>) {
  await Promise.all(
    bodies.map((b) => pub.publish("", queue, b, { messageId: b, ...(headers ? { headers } : {}) })),
  );
}

async function messageCount(queue: string): Promise<number> {
  const ch = await admin.openChannel();
  try {
    return (await ch.queueDeclare({ queue, passive: true })).messageCount;
  } finally {
    if (ch.isOpen) await ch.close();
  }
}

/** Polls an async condition (the broker's queue depths). */
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function consuming(c: Consumer): Promise<void> {
  return waitFor(() => c.state === "consuming", "the consumer to subscribe");
}

/** Records 406 (unknown delivery tag) and other channel errors seen by a consumer. */
function channelErrors(c: Consumer): string[] {
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
    const got: string[] = [];
    const c = cl.consume({ queue, prefetch: 10 }, async (m) => {
      got.push(m.body.toString());
      expect(m.attempt).toBe(1);
    });
    await consuming(c);
    await publish(queue, ["a", "b", "c", "d", "e"]);
    await waitFor(() => c.stats.acked === 5, "5 acks");
    expect(got).toEqual(["a", "b", "c", "d", "e"]);
    expect(c.stats).toMatchObject({ delivered: 5, acked: 5, failed: 0, inFlight: 0 });
    await c.cancel();
    expect(await messageCount(queue)).toBe(0);
  });

  it("retries after the delay, counting attempts from headers, then dead-letters", async () => {
    const cl = client();
    const queue = q("retry");
    const dead = q("retry-dlq");
    await cl.declare({
      queues: [
        { name: dead },
        { name: queue, arguments: { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead } },
      ],
    });
    const seen: { attempt: number; at: number }[] = [];
    const c = cl.consume({ queue, retry: { delays: [300, 500] }, maxAttempts: 4 }, (m) => {
      seen.push({ attempt: m.attempt, at: performance.now() });
      throw new Error("always fails");
    });
    c.on("error", () => undefined);
    await consuming(c);
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
    const [letter] = await drainQueue(admin, dead);
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
    queues.push(`warren.dead.${queue}`);
    await cl.declare({ queues: [{ name: queue }] });
    const attempts: number[] = [];
    const c = cl.consume({ queue, retry: { delays: 200, deadLetter: "queue" }, maxAttempts: 2 }, (m) => {
      attempts.push(m.attempt);
      throw new Error("nope");
    });
    c.on("error", () => undefined);
    await consuming(c);
    await publish(queue, ["x"]);
    await until(async () => (await messageCount(`warren.dead.${queue}`)) === 1, "the dead letter");
    expect(attempts).toEqual([1, 2]);
    const [letter] = await drainQueue(admin, `warren.dead.${queue}`);
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
    await cl.declare({
      queues: [
        { name: dead },
        { name: queue, arguments: { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead } },
      ],
    });
    const c = cl.consume({ queue, retry: { delays: 200 }, maxAttempts: 2 }, () => {
      throw new Error("fails");
    });
    c.on("error", () => undefined);
    await consuming(c);
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
      await new Promise((r) => setTimeout(r, 30));
      running--;
    });
    await consuming(c);
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
      await new Promise((r) => setTimeout(r, Math.random() * 5));
      got.push(Number(m.body.toString()));
      running--;
    });
    await consuming(c);
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
    let lateDone = false;
    let aborted = false;
    const c = cl.consume({ queue, timeoutMs: 200 }, async (m) => {
      if (m.attempt === 1) {
        m.signal.addEventListener("abort", () => {
          aborted = true;
        });
        await new Promise((r) => setTimeout(r, 500)); // stuck past the timeout, then "succeeds"
        lateDone = true;
      }
    });
    const chErrors = channelErrors(c);
    c.on("error", (e) => errors.push(e));
    await consuming(c);
    const started = performance.now();
    await publish(queue, ["slow"]);
    // Requeued by the default policy at the timeout, redelivered (attempt 2) and acked.
    await waitFor(() => c.stats.acked === 1, "the ack of the second attempt");
    expect(performance.now() - started).toBeLessThan(500);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(TimeoutError);
    expect(aborted).toBe(true);
    await waitFor(() => lateDone, "the stuck handler to return");
    await new Promise((r) => setImmediate(r));
    // Its late success acked nothing (a second ack would close the channel with 406).
    expect(c.stats).toMatchObject({ delivered: 2, failed: 1, requeued: 1, acked: 1, inFlight: 0 });
    expect(c.state).toBe("consuming");
    expect(chErrors).toEqual([]);
    expect(await messageCount(queue)).toBe(0);
  });

  it("drains on close: handled + left in the queue = published", async () => {
    const cl = client();
    const queue = q("drain");
    await cl.declare({ queues: [{ name: queue, durable: false }] });
    let finished = 0;
    const c = cl.consume({ queue, prefetch: 10, concurrency: 3 }, async () => {
      await new Promise((r) => setTimeout(r, 40));
      finished++;
    });
    await consuming(c);
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
    await consuming(c);
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
      await consuming(c);
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
      let lost!: () => void;
      const connectionLost = new Promise<void>((r) => {
        lost = r;
      });
      let isLost = false;
      cl.on("state", ({ to }) => {
        if (to === "recovering" && !isLost) {
          isLost = true;
          lost();
        }
      });
      const seen: string[] = [];
      const handled = new Set<string>();
      const c = cl.consume(
        { queue: stream, prefetch: 5, concurrency: 1, streamOffset: "first" },
        async (m) => {
          const body = m.body.toString();
          seen.push(body);
          if (handled.size >= 10 && !isLost) await connectionLost; // held across the kill: never acked
          handled.add(body);
        },
      );
      await consuming(c);
      await waitFor(() => handled.size >= 10, "10 handled");
      await closeConnectionsNamed(name, "killed by test");
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
    await cl.declare({
      queues: [
        { name: dead },
        { name: queue, arguments: { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead } },
      ],
    });
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
    let lost!: () => void;
    const connectionLost = new Promise<void>((r) => {
      lost = r;
    });
    cl.on("state", ({ to }) => {
      if (to === "recovering") {
        isLost = true;
        lost();
      }
    });
    let held = 0;
    let isLost = false;
    const c = cl.consume(
      { queue, prefetch: 8, concurrency: 4, retry: { delays: [250] }, maxAttempts: 10 },
      async (m) => {
        const id = m.properties.messageId!;
        await new Promise((r) => setTimeout(r, 5));
        if (done.size >= 15 && !isLost) {
          held++;
          await connectionLost;
        }
        if (Number(id.slice(1)) % 3 === 0 && m.attempt === 1) throw new Error("first attempt fails");
        done.add(id);
      },
    );
    c.on("error", () => undefined);
    const errors = channelErrors(c);
    await consuming(c);
    const ids = Array.from({ length: 60 }, (_, i) => `k${i}`);
    await publish(queue, ids);
    await waitFor(() => done.size >= 15 && c.stats.retried >= 2, "some handled and some retried");
    await closeConnectionsNamed(name, "killed by test");
    await waitFor(() => done.size === 60, "every message handled", 20_000);
    await until(
      async () => (await messageCount(queue)) === 0 && (await messageCount("warren.retry.250ms")) === 0,
      "the queue and the delay queue to empty",
    );
    expect([...done].sort()).toEqual([...ids].sort());
    expect(errors.filter((e) => /406|unknown delivery tag/i.test(e))).toEqual([]);
    await waitFor(() => c.state === "consuming", "the consumer to resume");
    expect(held).toBeGreaterThan(0);
    console.log(
      `killed mid-stream: ${c.stats.delivered} deliveries, ${c.stats.retried} retried, ${held} handlers held across the kill, all 60 handled`,
    );
  });
});
