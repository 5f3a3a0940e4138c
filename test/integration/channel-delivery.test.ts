/**
 * Getting and consuming against a real broker: basic.get counts, ack / nack / reject
 * (single and multiple, with and without requeue), basic.recover, prefetch limits,
 * consumer tags, cancel (ours and the broker's), several consumers on one channel.
 *
 * "Nothing more arrives" is never asserted by waiting: the broker's own counts
 * (passive queue.declare) say how many messages are still ready.
 */
import { describe, expect, it } from "vitest";
import { ConfigError, type Message } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { deferred, within } from "../support/async.js";
import { Deliveries } from "../support/deliveries.js";
import { waitFor } from "../support/wait.js";

/**
 * admin.pub is in confirm mode (`await admin.pub.publish(...)` means the message is in its queue);
 * it also does the passive declares (the broker's view of a queue).
 */
const admin = useAdmin();

async function fill(queue: string, n: number, prefix = "m"): Promise<string[]> {
  const bodies = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  await Promise.all(bodies.map((b) => admin.pub.publish("", queue, b)));
  return bodies;
}

async function counts(queue: string): Promise<{ ready: number; consumers: number }> {
  const d = await admin.pub.queueDeclare({ queue, passive: true });
  return { ready: d.messageCount, consumers: d.consumerCount };
}

describe("basic.get", () => {
  it("returns null on an empty queue and messageCount (messages left) otherwise", async () => {
    const queue = await admin.freshQueue();
    const ch = await admin.conn.openChannel();
    expect(await ch.basicGet({ queue })).toBeNull();
    await fill(queue, 3);
    const m1 = await ch.basicGet({ queue, noAck: true });
    expect(m1).toMatchObject({
      deliveryTag: 1,
      redelivered: false,
      exchange: "",
      routingKey: queue,
      messageCount: 2,
    });
    expect(m1?.body.toString()).toBe("m0");
    expect(m1?.consumerTag).toBeUndefined();
    const m2 = await ch.basicGet({ queue, noAck: true });
    expect(m2).toMatchObject({ deliveryTag: 2, messageCount: 1 });
    expect(m2?.body.toString()).toBe("m1");
    const m3 = await ch.basicGet({ queue, noAck: true });
    expect(m3).toMatchObject({ deliveryTag: 3, messageCount: 0 });
    expect(await ch.basicGet({ queue, noAck: true })).toBeNull();
    await ch.close();
  });

  it("pipelined gets resolve in order, the empty ones with null", async () => {
    const queue = await admin.freshQueue();
    await fill(queue, 2);
    const ch = await admin.conn.openChannel();
    const results = await Promise.all([1, 2, 3, 4].map(() => ch.basicGet({ queue, noAck: true })));
    expect(results.map((m) => m?.body.toString() ?? null)).toEqual(["m0", "m1", null, null]);
    await ch.close();
  });
});

describe("ack, nack, reject", () => {
  it("nack with requeue puts the message back and it comes again with redelivered=true", async () => {
    const queue = await admin.freshQueue();
    await fill(queue, 1);
    const ch = await admin.conn.openChannel();
    const m = (await ch.basicGet({ queue }))!;
    expect(m.redelivered).toBe(false);
    expect(await counts(queue)).toEqual({ ready: 0, consumers: 0 });
    ch.basicNack(m.deliveryTag, { requeue: true });
    const again = (await ch.basicGet({ queue }))!;
    expect(again.body.toString()).toBe("m0");
    expect(again.redelivered).toBe(true);
    expect(again.deliveryTag).toBe(m.deliveryTag + 1);
    ch.basicAck(again.deliveryTag);
    expect(await ch.basicGet({ queue })).toBeNull();
    await ch.close();
    expect((await counts(queue)).ready).toBe(0);
  });

  it("reject without requeue drops the message; reject with requeue keeps it", async () => {
    const queue = await admin.freshQueue();
    await fill(queue, 2);
    const ch = await admin.conn.openChannel();
    const a = (await ch.basicGet({ queue }))!;
    ch.basicReject(a.deliveryTag, { requeue: false });
    const b = (await ch.basicGet({ queue }))!;
    expect(b.body.toString()).toBe("m1");
    ch.basicReject(b.deliveryTag); // requeue defaults to true
    const b2 = (await ch.basicGet({ queue }))!;
    expect(b2.body.toString()).toBe("m1");
    expect(b2.redelivered).toBe(true);
    ch.basicAck(b2.deliveryTag);
    expect(await ch.basicGet({ queue })).toBeNull();
    await ch.close();
    // Closing the channel would have requeued anything unacked: nothing was.
    expect((await counts(queue)).ready).toBe(0);
  });

  it("ack and nack with multiple settle every earlier delivery", async () => {
    const queue = await admin.freshQueue();
    await fill(queue, 6);
    const ch = await admin.conn.openChannel();
    const ms: Message[] = [];
    for (let i = 0; i < 6; i++) ms.push((await ch.basicGet({ queue }))!);
    expect(ms.map((m) => m.deliveryTag)).toEqual([1, 2, 3, 4, 5, 6]);
    ch.basicAck(2, { multiple: true }); // m0, m1 gone
    ch.basicNack(4, { multiple: true, requeue: false }); // m2, m3 gone
    ch.basicNack(5, { requeue: true }); // m4 back
    const back = (await ch.basicGet({ queue }))!;
    expect(back.body.toString()).toBe("m4");
    expect(back.redelivered).toBe(true);
    await ch.close(); // m5 (tag 6) and m4 (tag 7) unacked: requeued
    expect((await counts(queue)).ready).toBe(2);
    const rest = [
      (await admin.pub.basicGet({ queue, noAck: true }))!,
      (await admin.pub.basicGet({ queue, noAck: true }))!,
    ];
    expect(rest.map((m) => m.body.toString()).sort()).toEqual(["m4", "m5"]);
  });

  it("basic.recover redelivers every unacked delivery", async () => {
    const queue = await admin.freshQueue();
    const ch = await admin.conn.openChannel();
    const c = new Deliveries();
    await ch.basicConsume({ queue }, c.onMessage);
    await fill(queue, 3);
    await c.until(3);
    expect(c.got.every((m) => !m.redelivered)).toBe(true);
    ch.basicAck(c.got[1]!.deliveryTag); // m1 is done; m0 and m2 are not
    await ch.basicRecover({ requeue: true });
    const all = await c.until(5);
    const again = all.slice(3);
    expect(again.map((m) => m.body.toString()).sort()).toEqual(["m0", "m2"]);
    expect(again.every((m) => m.redelivered)).toBe(true);
    for (const m of again) ch.basicAck(m.deliveryTag);
    await ch.close();
    expect((await counts(queue)).ready).toBe(0);
  });
});

describe("consumers", () => {
  it("basic.qos prefetchCount 5 keeps exactly 5 deliveries outstanding until acked", async () => {
    const queue = await admin.freshQueue();
    await fill(queue, 12);
    const ch = await admin.conn.openChannel();
    await ch.basicQos({ prefetchCount: 5 });
    const c = new Deliveries();
    await ch.basicConsume({ queue }, c.onMessage);

    await c.until(5);
    // The broker holds the rest back: 7 still ready, and nothing beyond 5 arrived meanwhile.
    expect((await counts(queue)).ready).toBe(7);
    expect(c.got.length).toBe(5);

    ch.basicAck(c.got[0]!.deliveryTag); // one slot frees up: exactly one more comes
    await c.until(6);
    expect((await counts(queue)).ready).toBe(6);
    expect(c.got.length).toBe(6);

    ch.basicAck(c.got[5]!.deliveryTag, { multiple: true }); // all six acked: five more
    await c.until(11);
    expect((await counts(queue)).ready).toBe(1);
    expect(c.got.length).toBe(11);

    ch.basicAck(c.got[10]!.deliveryTag, { multiple: true });
    await c.until(12);
    expect((await counts(queue)).ready).toBe(0);
    expect(c.got.map((m) => m.body.toString())).toEqual(Array.from({ length: 12 }, (_, i) => `m${i}`));
    ch.basicAck(c.got[11]!.deliveryTag);
    await ch.close();
    expect((await counts(queue)).ready).toBe(0);
  });

  it("a consumer without a tag gets a server-named one; with a tag it keeps ours; tags must be unique", async () => {
    const q1 = await admin.freshQueue();
    const q2 = await admin.freshQueue();
    const ch = await admin.conn.openChannel();
    const a = new Deliveries();
    const b = new Deliveries();
    const serverTag = await ch.basicConsume({ queue: q1, noAck: true }, a.onMessage);
    expect(serverTag).toMatch(/^amq\.ctag-/);
    const ownTag = await ch.basicConsume(
      { queue: q2, noAck: true, consumerTag: "warren-own-tag" },
      b.onMessage,
    );
    expect(ownTag).toBe("warren-own-tag");
    await expect(
      ch.basicConsume({ queue: q2, consumerTag: "warren-own-tag" }, () => {}),
    ).rejects.toBeInstanceOf(ConfigError);
    await admin.pub.publish("", q1, "to a");
    await admin.pub.publish("", q2, "to b");
    const [ma] = await a.until(1);
    const [mb] = await b.until(1);
    expect(ma).toMatchObject({ consumerTag: serverTag, routingKey: q1, exchange: "" });
    expect(ma!.body.toString()).toBe("to a");
    expect(mb).toMatchObject({ consumerTag: "warren-own-tag", routingKey: q2 });
    expect(mb!.body.toString()).toBe("to b");
    expect(ch.isOpen).toBe(true);
    await ch.close();
  });

  it("server-named consumers started together each get their own tag", async () => {
    const queues = await Promise.all([admin.freshQueue(), admin.freshQueue(), admin.freshQueue()]);
    const ch = await admin.conn.openChannel();
    const cs = queues.map(() => new Deliveries());
    const tags = await Promise.all(
      queues.map((queue, i) => ch.basicConsume({ queue, noAck: true }, cs[i]!.onMessage)),
    );
    expect(new Set(tags).size).toBe(3);
    await Promise.all(queues.map((q) => admin.pub.publish("", q, `for ${q}`)));
    for (let i = 0; i < 3; i++) {
      const [m] = await cs[i]!.until(1);
      expect(m!.consumerTag).toBe(tags[i]);
      expect(m!.body.toString()).toBe(`for ${queues[i]}`);
    }
    await ch.close();
  });

  it("basic.cancel stops deliveries", async () => {
    const queue = await admin.freshQueue();
    const ch = await admin.conn.openChannel();
    const c = new Deliveries();
    const tag = await ch.basicConsume({ queue, noAck: true }, c.onMessage);
    await admin.pub.publish("", queue, "before");
    await c.until(1);
    expect((await counts(queue)).consumers).toBe(1);
    await ch.basicCancel(tag);
    expect((await counts(queue)).consumers).toBe(0);
    await admin.pub.publish("", queue, "after");
    const m = await ch.basicGet({ queue, noAck: true });
    expect(m?.body.toString()).toBe("after");
    expect(c.got.map((x) => x.body.toString())).toEqual(["before"]);
    // The tag is free again.
    expect(await ch.basicConsume({ queue, noAck: true, consumerTag: tag }, () => {})).toBe(tag);
    await ch.close();
  });

  it("two consumers on one channel: each gets its own queue's messages; on one queue they share", async () => {
    const q1 = await admin.freshQueue();
    const q2 = await admin.freshQueue();
    const ch = await admin.conn.openChannel();
    const a = new Deliveries();
    const b = new Deliveries();
    const c = new Deliveries();
    const both = new Deliveries();
    const ta = await ch.basicConsume({ queue: q1, noAck: true }, a.onMessage);
    const tb = await ch.basicConsume({ queue: q2, noAck: true }, (m) => {
      b.onMessage(m);
      both.onMessage(m);
    });
    const tc = await ch.basicConsume({ queue: q2, noAck: true }, (m) => {
      c.onMessage(m);
      both.onMessage(m);
    });
    expect(new Set([ta, tb, tc]).size).toBe(3);
    expect((await counts(q2)).consumers).toBe(2);
    await fill(q1, 4, "one-");
    await fill(q2, 10, "two-");
    await a.until(4);
    const all = await both.until(10);
    expect(a.got.every((m) => m.routingKey === q1 && m.consumerTag === ta)).toBe(true);
    expect(a.got.map((m) => m.body.toString())).toEqual(["one-0", "one-1", "one-2", "one-3"]);
    expect(b.got.every((m) => m.routingKey === q2 && m.consumerTag === tb)).toBe(true);
    expect(c.got.every((m) => m.routingKey === q2 && m.consumerTag === tc)).toBe(true);
    // RabbitMQ round-robins between the two consumers of q2.
    expect(b.got.length).toBeGreaterThan(0);
    expect(c.got.length).toBeGreaterThan(0);
    expect(all.map((m) => m.body.toString()).sort()).toEqual(
      Array.from({ length: 10 }, (_, i) => `two-${i}`).sort(),
    );
    await ch.close();
  });

  it("a consumer whose queue is deleted elsewhere gets onCancel and the channel's cancel event; the channel stays open", async () => {
    const queue = await admin.freshQueue();
    const ch = await admin.conn.openChannel();
    const cancelled = deferred<string>();
    ch.once("cancel", cancelled.resolve);
    const onCancel = deferred<string>();
    const tag = await ch.basicConsume(
      { queue, noAck: true },
      { onMessage: () => {}, onCancel: onCancel.resolve },
    );
    const other = await admin.conn.openChannel();
    await other.queueDelete({ queue });
    expect(await within(onCancel.promise, 10_000, "onCancel")).toBe(tag);
    expect(await within(cancelled.promise, 10_000, "the cancel event")).toBe(tag);
    expect(ch.isOpen).toBe(true);
    // The channel still works.
    const q2 = (await ch.queueDeclare({ exclusive: true })).queue;
    const c = new Deliveries();
    await ch.basicConsume({ queue: q2, noAck: true, consumerTag: tag }, c.onMessage);
    await admin.pub.publish("", q2, "still here");
    expect((await c.until(1))[0]!.body.toString()).toBe("still here");
    await other.close();
    await ch.close();
  });

  it("an onMessage that throws or rejects is reported through handlerError; deliveries go on", async () => {
    const queue = await admin.freshQueue();
    const ch = await admin.conn.openChannel();
    const errors: [unknown, Message][] = [];
    ch.on("handlerError", (e, m) => errors.push([e, m]));
    const c = new Deliveries();
    await ch.basicConsume({ queue, noAck: true }, (m) => {
      c.onMessage(m);
      const body = m.body.toString();
      if (body === "throw") throw new Error("sync boom");
      if (body === "reject") return Promise.reject(new Error("async boom"));
      return undefined;
    });
    await admin.pub.publish("", queue, "throw");
    await admin.pub.publish("", queue, "reject");
    await admin.pub.publish("", queue, "fine");
    await c.until(3);
    await waitFor(() => errors.length === 2, "two handler errors");
    expect(errors.map(([e, m]) => [(e as Error).message, m.body.toString()])).toEqual([
      ["sync boom", "throw"],
      ["async boom", "reject"],
    ]);
    expect(ch.isOpen).toBe(true);
    await ch.close();
  });

  it("closing a channel with unacked deliveries requeues them for other consumers", async () => {
    const queue = await admin.freshQueue();
    await fill(queue, 3);
    const ch1 = await admin.conn.openChannel();
    await ch1.basicQos({ prefetchCount: 10 });
    const c1 = new Deliveries();
    await ch1.basicConsume({ queue }, c1.onMessage);
    await c1.until(3);
    await ch1.close();
    expect(ch1.state).toBe("closed");
    const ch2 = await admin.conn.openChannel();
    const c2 = new Deliveries();
    await ch2.basicConsume({ queue, noAck: true }, c2.onMessage);
    const got = await c2.until(3);
    expect(got.map((m) => m.body.toString())).toEqual(["m0", "m1", "m2"]);
    expect(got.every((m) => m.redelivered)).toBe(true);
    await ch2.close();
  });
});
