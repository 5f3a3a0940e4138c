/**
 * A consumer's acks against the real broker: those of one turn leave as one basic.ack with
 * `multiple` where the tags allow (src/client/ack-batch.ts), never covering a message whose
 * handler still runs, and all of them before the consumer's cancel and channel close. A wrong
 * `multiple` would lose a message (acked unhandled) or close the channel with 406 (a tag acked
 * twice), which would show as redeliveries and a queue not empty after the cancel.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { Channel } from "../../src/amqp/channel.js";
import type { ConsumedMessage } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { deferred, within } from "../support/async.js";
import { errorsOf, useClients } from "../support/clients.js";

const admin = useAdmin();
const client = useClients("warren-acks");

afterEach(() => {
  vi.restoreAllMocks();
});

/** A queue of the test's own holding `n` messages whose bodies are their index. */
async function queueOf(n: number): Promise<string> {
  const queue = admin.queueName("acks");
  await admin.pub.queueDeclare({ queue });
  for (let i = 0; i < n; i += 500) {
    const batch: Promise<void>[] = [];
    for (let j = i; j < Math.min(n, i + 500); j++) batch.push(admin.pub.publish("", queue, String(j)));
    await Promise.all(batch);
  }
  return queue;
}

async function depth(queue: string): Promise<number> {
  return (await admin.pub.queueDeclare({ queue, passive: true })).messageCount;
}

/** The basic.ack frames sent by this process from now on: [tag, multiple]. */
function ackFrames(): { tag: number; multiple: boolean }[] {
  const frames: { tag: number; multiple: boolean }[] = [];
  const real = Channel.prototype.basicAck;
  vi.spyOn(Channel.prototype, "basicAck").mockImplementation(function (this: Channel, tag, o = {}) {
    frames.push({ tag, multiple: o.multiple === true });
    real.call(this, tag, o);
  });
  return frames;
}

describe("consumer acks", () => {
  it("acks of one turn go out as one frame: far fewer frames than messages, every message acked once", async () => {
    const n = 3000;
    const queue = await queueOf(n);
    const frames = ackFrames();
    const { client: c } = client();
    const seen = new Set<string>();
    let redelivered = 0;
    const all = deferred();
    const consumer = c.consume({ queue, prefetch: 500 }, async (m: ConsumedMessage) => {
      if (m.fields.redelivered) redelivered++;
      seen.add(m.body.toString());
      if (seen.size === n) all.resolve();
    });
    const errors = errorsOf(consumer as unknown as Parameters<typeof errorsOf>[0]);
    await within(all.promise, 30_000, `${n} messages handled`);
    await consumer.cancel();
    expect(redelivered).toBe(0);
    expect(seen.size).toBe(n);
    // Nothing was given back by the cancel and close: every ack reached the broker before them.
    expect(await depth(queue)).toBe(0);
    expect(errors).toEqual([]);
    expect(frames.some((f) => f.multiple)).toBe(true);
    expect(frames.length).toBeLessThan(n / 4);
  });

  it("handlers finishing out of order: nothing still running is covered, nothing is lost or acked twice", async () => {
    const n = 2000;
    const queue = await queueOf(n);
    const frames = ackFrames();
    const { client: c } = client();
    const handled = new Map<string, number>();
    let redelivered = 0;
    const all = deferred();
    // 20 at once, each held 0–4 ms by its index: they finish in a different order than they came.
    const consumer = c.consume({ queue, prefetch: 100, concurrency: 20 }, async (m: ConsumedMessage) => {
      if (m.fields.redelivered) redelivered++;
      const body = m.body.toString();
      await new Promise((r) => setTimeout(r, (Number(body) * 7) % 5));
      handled.set(body, (handled.get(body) ?? 0) + 1);
      if (handled.size === n) all.resolve();
    });
    const states: string[] = [];
    consumer.on("state", ({ to }) => states.push(to));
    await within(all.promise, 60_000, `${n} messages handled`);
    await consumer.cancel();
    expect(redelivered).toBe(0);
    expect([...handled.values()].every((k) => k === 1)).toBe(true);
    expect(await depth(queue)).toBe(0);
    // Subscribed once, never again (a 406 would have closed the channel and made it subscribe anew).
    expect(states).toEqual(["subscribing", "consuming", "draining", "cancelled"]);
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.length).toBeLessThan(n);
  });
});
