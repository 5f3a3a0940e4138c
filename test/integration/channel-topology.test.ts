/**
 * Topology against a real broker: exchanges of every built-in type, queues, bindings
 * (queue and exchange-to-exchange), purge and delete counts, the conditional deletes,
 * the no-wait forms, and the channel exceptions the broker raises for them.
 *
 * Routing is checked with mandatory publishes on a confirm channel: a publish that
 * resolves was routed to at least one queue, one that rejects with UnroutableError
 * was not. That answer is definite, so no test waits for a message that may not come.
 */
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Channel,
  ChannelClosedByBroker,
  ChannelClosedError,
  Connection,
  ConnectionClosedByBroker,
  ConnectionClosedError,
  type FieldTable,
  UnroutableError,
} from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { rejection } from "../support/async.js";
import { AMQP_URL, uniqueName } from "../support/broker.js";

/** admin.pub is in confirm mode: used to probe routing. */
const admin = useAdmin();
/** Channel for declarations that are expected to succeed. */
let ch: Channel;
const exchanges: string[] = [];

beforeAll(async () => {
  ch = await admin.conn.openChannel();
});

afterEach(async () => {
  if (exchanges.length === 0) return;
  const c = await admin.conn.openChannel();
  // Deleting what is already gone is not an error on RabbitMQ 3.x.
  for (const exchange of exchanges.splice(0)) await c.exchangeDelete({ exchange });
  await c.close();
});

function exchangeName(kind: string): string {
  const name = uniqueName(`warren.test.topology.${kind}`);
  exchanges.push(name);
  return name;
}

/** A queue name for queues that cannot be exclusive (deleted after the test if still there). */
const queueName = (kind: string): string => admin.queueName(`warren.test.topology.${kind}`);

/** True when the broker routed the message to at least one queue, false when it returned it. */
async function routed(exchange: string, routingKey: string, headers?: FieldTable): Promise<boolean> {
  try {
    await admin.pub.publish(exchange, routingKey, "probe", headers ? { headers } : undefined, {
      mandatory: true,
    });
    return true;
  } catch (e) {
    if (e instanceof UnroutableError) return false;
    throw e;
  }
}

/** Ready messages in a queue, by passive declare. */
async function depth(queue: string): Promise<number> {
  return (await ch.queueDeclare({ queue, passive: true })).messageCount;
}

/** Runs `fn` on a fresh channel and returns the ChannelClosedByBroker it provokes. */
async function brokerError(fn: (c: Channel) => Promise<unknown>): Promise<ChannelClosedByBroker> {
  const c = await admin.conn.openChannel();
  const closed = new Promise<unknown>((resolve) => c.once("close", resolve));
  const err = await rejection(fn(c));
  expect(err).toBeInstanceOf(ChannelClosedByBroker);
  expect(await closed).toBe(err);
  expect(c.isOpen).toBe(false);
  expect(c.closeReason).toBe(err);
  return err as ChannelClosedByBroker;
}

describe("queues", () => {
  it("declares a server-named queue and reports its counts", async () => {
    const q = await ch.queueDeclare({ exclusive: true });
    expect(q.queue).toMatch(/^amq\.gen-/);
    expect(q).toMatchObject({ messageCount: 0, consumerCount: 0 });
    await admin.pub.publish("", q.queue, "one");
    await admin.pub.publish("", q.queue, "two");
    const tag = await ch.basicConsume({ queue: q.queue, noAck: false }, () => {});
    const again = await ch.queueDeclare({ queue: q.queue, passive: true });
    // Both messages went to the consumer (unacked), so none is ready.
    expect(again).toEqual({ queue: q.queue, messageCount: 0, consumerCount: 1 });
    await ch.basicCancel(tag);
    // basic.cancel does not requeue: the two stay unacked on `ch` until it closes.
  });

  it("passive declare of a missing queue closes the channel with 404 queue.declare; the connection lives on", async () => {
    const missing = uniqueName("warren.test.topology.missing");
    let pendingAfter: Promise<unknown> | undefined;
    const err = await brokerError((c) => {
      const p = c.queueDeclare({ queue: missing, passive: true });
      // Pipelined behind the failing one: rejects with the same error.
      pendingAfter = c.queueDeclare({ exclusive: true });
      return p;
    });
    expect(err.replyCode).toBe(404);
    expect(err.replyText).toContain("NOT_FOUND");
    expect(err.replyText).toContain(missing);
    expect(err.methodName).toBe("queue.declare");
    expect(err.classId).toBe(50);
    expect(err.methodId).toBe(10);
    expect(err.code).toBe("CHANNEL_CLOSED_BY_BROKER");
    expect(err.recoverable).toBe(true);
    await expect(pendingAfter).rejects.toBe(err);

    expect(admin.conn.isOpen).toBe(true);
    const c2 = await admin.conn.openChannel();
    const q = await c2.queueDeclare({ exclusive: true });
    expect(q.queue).toMatch(/^amq\.gen-/);
    await c2.close();
  });

  it("a closed channel refuses further calls with ChannelClosedError whose cause is the broker's error", async () => {
    let closedChannel: Channel | undefined;
    const err = await brokerError((c) => {
      closedChannel = c;
      return c.queueDeclare({ queue: uniqueName("warren.test.topology.missing"), passive: true });
    });
    const c = closedChannel!;
    const next = await rejection(c.queueDeclare({ exclusive: true }));
    expect(next).toBeInstanceOf(ChannelClosedError);
    expect((next as ChannelClosedError).cause).toBe(err);
    expect(() => c.basicPublish("", "x", "y")).toThrow(ChannelClosedError);
    expect(() => c.basicAck(1)).toThrow(ChannelClosedError);
    await c.close(); // idempotent on a closed channel
  });

  it("redeclaring with different arguments is refused with 406", async () => {
    const queue = queueName("ttl");
    await ch.queueDeclare({ queue, autoDelete: true, arguments: { "x-message-ttl": 60_000 } });
    // The same declaration again is fine.
    await ch.queueDeclare({ queue, autoDelete: true, arguments: { "x-message-ttl": 60_000 } });
    const err = await brokerError((c) =>
      c.queueDeclare({ queue, autoDelete: true, arguments: { "x-message-ttl": 30_000 } }),
    );
    expect(err.replyCode).toBe(406);
    expect(err.replyText).toContain("PRECONDITION_FAILED");
    expect(err.replyText).toContain("x-message-ttl");
    expect(err.methodName).toBe("queue.declare");
    // Flags count too: durable vs not.
    const err2 = await brokerError((c) => c.queueDeclare({ queue, durable: true, autoDelete: true }));
    expect(err2.replyCode).toBe(406);
    expect(await ch.queueDelete({ queue })).toBe(0);
  });

  it("queue.purge returns how many messages it removed", async () => {
    const { queue } = await ch.queueDeclare({ exclusive: true });
    await Promise.all([1, 2, 3].map((i) => admin.pub.publish("", queue, `m${i}`)));
    expect(await ch.queuePurge({ queue })).toBe(3);
    expect(await ch.queuePurge({ queue })).toBe(0);
    expect(await ch.basicGet({ queue })).toBeNull();
  });

  it("queue.delete returns how many messages the queue held", async () => {
    const { queue } = await ch.queueDeclare({ exclusive: true });
    await Promise.all([1, 2, 3, 4, 5].map((i) => admin.pub.publish("", queue, `m${i}`)));
    expect(await ch.queueDelete({ queue })).toBe(5);
    const err = await brokerError((c) => c.queueDeclare({ queue, passive: true }));
    expect(err.replyCode).toBe(404);
  });

  it("queue.delete ifEmpty on a non-empty queue and ifUnused on a consumed queue fail with 406", async () => {
    const { queue } = await ch.queueDeclare({ exclusive: true });
    await admin.pub.publish("", queue, "keep me");
    const e1 = await brokerError((c) => c.queueDelete({ queue, ifEmpty: true }));
    expect(e1.replyCode).toBe(406);
    expect(e1.replyText).toContain("not empty");
    expect(e1.methodName).toBe("queue.delete");
    expect(await depth(queue)).toBe(1);

    const consumer = await admin.conn.openChannel();
    await consumer.basicConsume({ queue, noAck: false }, () => {});
    const e2 = await brokerError((c) => c.queueDelete({ queue, ifUnused: true }));
    expect(e2.replyCode).toBe(406);
    expect(e2.replyText).toContain("in use");
    await consumer.close(); // requeues the delivery
    expect(await depth(queue)).toBe(1);
    // With the consumer gone, ifUnused succeeds (ifEmpty not set).
    expect(await ch.queueDelete({ queue, ifUnused: true })).toBe(1);
  });

  it("an exclusive queue cannot be used from another connection (405 RESOURCE_LOCKED)", async () => {
    const { queue } = await ch.queueDeclare({ exclusive: true });
    const other = await Connection.open(AMQP_URL);
    try {
      const c = await other.openChannel();
      const err = await rejection(c.basicGet({ queue }));
      expect(err).toBeInstanceOf(ChannelClosedByBroker);
      expect((err as ChannelClosedByBroker).replyCode).toBe(405);
      expect((err as ChannelClosedByBroker).methodName).toBe("basic.get");
    } finally {
      await other.close();
    }
  });
});

describe("exchanges and bindings", () => {
  it("direct: routes by exact key; unbind stops it", async () => {
    const ex = exchangeName("direct");
    await ch.exchangeDeclare({ exchange: ex, type: "direct" });
    const { queue } = await ch.queueDeclare({ exclusive: true });
    await ch.queueBind({ queue, exchange: ex, routingKey: "red" });
    expect(await routed(ex, "red")).toBe(true);
    expect(await routed(ex, "blue")).toBe(false);
    expect(await routed(ex, "Red")).toBe(false);
    const m = await ch.basicGet({ queue, noAck: true });
    expect(m).toMatchObject({ exchange: ex, routingKey: "red", messageCount: 0, redelivered: false });
    expect(m?.body.toString()).toBe("probe");

    await ch.queueUnbind({ queue, exchange: ex, routingKey: "red" });
    expect(await routed(ex, "red")).toBe(false);
    // Unbinding what is not bound is not an error on RabbitMQ.
    await ch.queueUnbind({ queue, exchange: ex, routingKey: "red" });
    expect(await ch.basicGet({ queue })).toBeNull();
  });

  it("fanout: every bound queue gets a copy whatever the key", async () => {
    const ex = exchangeName("fanout");
    await ch.exchangeDeclare({ exchange: ex, type: "fanout" });
    const q1 = (await ch.queueDeclare({ exclusive: true })).queue;
    const q2 = (await ch.queueDeclare({ exclusive: true })).queue;
    await ch.queueBind({ queue: q1, exchange: ex });
    await ch.queueBind({ queue: q2, exchange: ex, routingKey: "ignored" });
    expect(await routed(ex, "anything")).toBe(true);
    expect(await routed(ex, "")).toBe(true);
    expect(await depth(q1)).toBe(2);
    expect(await depth(q2)).toBe(2);
    await ch.queueUnbind({ queue: q1, exchange: ex });
    expect(await routed(ex, "x")).toBe(true);
    expect(await depth(q1)).toBe(2);
    expect(await depth(q2)).toBe(3);
  });

  it("topic: * matches one word, # zero or more", async () => {
    const ex = exchangeName("topic");
    await ch.exchangeDeclare({ exchange: ex, type: "topic" });
    const star = (await ch.queueDeclare({ exclusive: true })).queue;
    const hash = (await ch.queueDeclare({ exclusive: true })).queue;
    await ch.queueBind({ queue: star, exchange: ex, routingKey: "stock.*.nyse" });
    await ch.queueBind({ queue: hash, exchange: ex, routingKey: "log.#" });
    const cases: [string, boolean, boolean][] = [
      ["stock.ibm.nyse", true, false],
      ["stock.nyse", false, false],
      ["stock.ibm.x.nyse", false, false],
      ["log", false, true],
      ["log.a", false, true],
      ["log.a.b.c", false, true],
      ["logs.a", false, false],
    ];
    for (const [key, toStar, toHash] of cases) {
      const before = [await depth(star), await depth(hash)];
      expect(await routed(ex, key), key).toBe(toStar || toHash);
      expect(await depth(star), key).toBe(before[0]! + (toStar ? 1 : 0));
      expect(await depth(hash), key).toBe(before[1]! + (toHash ? 1 : 0));
    }
  });

  it("headers: x-match all and any", async () => {
    const ex = exchangeName("headers");
    await ch.exchangeDeclare({ exchange: ex, type: "headers" });
    const all = (await ch.queueDeclare({ exclusive: true })).queue;
    const any = (await ch.queueDeclare({ exclusive: true })).queue;
    await ch.queueBind({
      queue: all,
      exchange: ex,
      arguments: { "x-match": "all", format: "pdf", kind: "report" },
    });
    await ch.queueBind({
      queue: any,
      exchange: ex,
      arguments: { "x-match": "any", format: "pdf", kind: "report" },
    });
    expect(await routed(ex, "", { format: "pdf", kind: "report", extra: 1 })).toBe(true);
    expect([await depth(all), await depth(any)]).toEqual([1, 1]);
    expect(await routed(ex, "", { format: "pdf" })).toBe(true);
    expect([await depth(all), await depth(any)]).toEqual([1, 2]);
    expect(await routed(ex, "", { format: "zip", kind: "log" })).toBe(false);
    expect(await routed(ex, "")).toBe(false);
    // The routing key plays no part.
    expect(await routed(ex, "format", { kind: "report" })).toBe(true);
    expect([await depth(all), await depth(any)]).toEqual([1, 3]);
    await ch.queueUnbind({
      queue: any,
      exchange: ex,
      arguments: { "x-match": "any", format: "pdf", kind: "report" },
    });
    expect(await routed(ex, "", { format: "pdf" })).toBe(false);
  });

  it("exchange-to-exchange: e1 → e2 → queue, and not after exchange.unbind", async () => {
    const e1 = exchangeName("e2e-src");
    const e2 = exchangeName("e2e-dst");
    await ch.exchangeDeclare({ exchange: e1, type: "direct" });
    await ch.exchangeDeclare({ exchange: e2, type: "fanout" });
    const { queue } = await ch.queueDeclare({ exclusive: true });
    await ch.queueBind({ queue, exchange: e2 });
    await ch.exchangeBind({ destination: e2, source: e1, routingKey: "via" });

    await admin.pub.publish(e1, "via", "hop hop", { messageId: "e2e-1" }, { mandatory: true });
    const m = await ch.basicGet({ queue, noAck: true });
    // The message keeps the exchange and key it was published with.
    expect(m).toMatchObject({ exchange: e1, routingKey: "via", messageCount: 0 });
    expect(m?.body.toString()).toBe("hop hop");
    expect(m?.properties.messageId).toBe("e2e-1");
    expect(await routed(e1, "other")).toBe(false);

    await ch.exchangeUnbind({ destination: e2, source: e1, routingKey: "via" });
    expect(await routed(e1, "via")).toBe(false);
    expect(await routed(e2, "direct to e2")).toBe(true);
    expect(await depth(queue)).toBe(1);
  });

  it("redeclaring an exchange with another type fails with 406 exchange.declare; passive on a missing one with 404", async () => {
    const ex = exchangeName("retype");
    await ch.exchangeDeclare({ exchange: ex, type: "direct" });
    await ch.exchangeDeclare({ exchange: ex, type: "direct", passive: true });
    const e1 = await brokerError((c) => c.exchangeDeclare({ exchange: ex, type: "topic" }));
    expect(e1.replyCode).toBe(406);
    expect(e1.methodName).toBe("exchange.declare");
    expect(e1.replyText).toContain("inequivalent arg 'type'");

    const e2 = await brokerError((c) =>
      c.exchangeDeclare({ exchange: uniqueName("warren.test.topology.none"), passive: true }),
    );
    expect(e2.replyCode).toBe(404);
    expect(e2.methodName).toBe("exchange.declare");
  });

  it("exchange.delete removes it; ifUnused on a bound exchange fails with 406", async () => {
    const ex = exchangeName("delete");
    await ch.exchangeDeclare({ exchange: ex, type: "fanout" });
    const { queue } = await ch.queueDeclare({ exclusive: true });
    await ch.queueBind({ queue, exchange: ex });
    const e = await brokerError((c) => c.exchangeDelete({ exchange: ex, ifUnused: true }));
    expect(e.replyCode).toBe(406);
    expect(e.methodName).toBe("exchange.delete");
    await ch.exchangeDeclare({ exchange: ex, type: "fanout", passive: true });

    await ch.exchangeDelete({ exchange: ex });
    const gone = await brokerError((c) => c.exchangeDeclare({ exchange: ex, passive: true }));
    expect(gone.replyCode).toBe(404);
    // The queue survived; its binding went with the exchange.
    expect(await depth(queue)).toBe(0);
  });

  it("publishing to an internal exchange is refused with 403; it still routes from another exchange", async () => {
    const front = exchangeName("front");
    const internal = exchangeName("internal");
    await ch.exchangeDeclare({ exchange: front, type: "fanout" });
    await ch.exchangeDeclare({ exchange: internal, type: "fanout", internal: true });
    await ch.exchangeBind({ destination: internal, source: front });
    const { queue } = await ch.queueDeclare({ exclusive: true });
    await ch.queueBind({ queue, exchange: internal });
    expect(await routed(front, "k")).toBe(true);
    expect(await depth(queue)).toBe(1);

    const err = await brokerError(async (c) => {
      c.basicPublish(internal, "k", "nope");
      await c.basicQos({ prefetchCount: 1 }); // any round trip: the close comes first
    });
    expect(err.replyCode).toBe(403);
    expect(err.methodName).toBe("basic.publish");
  });

  it("declaring an exchange of an unknown type is a connection error (503 COMMAND_INVALID)", async () => {
    // RabbitMQ treats an unknown exchange type as a hard error: the whole connection closes.
    const own = await Connection.open(AMQP_URL);
    const closed = new Promise<unknown>((resolve) => own.once("close", resolve));
    const c = await own.openChannel();
    const err = await rejection(c.exchangeDeclare({ exchange: exchangeName("weird"), type: "no-such-type" }));
    expect(err).toBeInstanceOf(ConnectionClosedError);
    const connErr = (await closed) as ConnectionClosedByBroker;
    expect(connErr).toBeInstanceOf(ConnectionClosedByBroker);
    expect((err as ConnectionClosedError).cause).toBe(connErr);
    expect(connErr.replyCode).toBe(503);
    expect(connErr.replyText).toContain("COMMAND_INVALID");
    expect(connErr.methodName).toBe("exchange.declare");
    expect(own.isOpen).toBe(false);
    expect(admin.conn.isOpen).toBe(true);
  });
});

describe("no-wait forms", () => {
  it("declare, bind, purge and delete without waiting; a later synchronous call sees their effect", async () => {
    const c = await admin.conn.openChannel();
    const ex = exchangeName("nowait");
    const queue = queueName("nowait");
    await c.exchangeDeclare({ exchange: ex, type: "direct", noWait: true });
    const r = await c.queueDeclare({ queue, autoDelete: false, noWait: true });
    expect(r).toEqual({ queue, messageCount: 0, consumerCount: 0 });
    await c.queueBind({ queue, exchange: ex, routingKey: "k", noWait: true });
    // Methods on a channel are handled in order, so this round trip comes after all of the above.
    await c.exchangeDeclare({ exchange: ex, type: "direct", passive: true });
    expect((await c.queueDeclare({ queue, passive: true })).messageCount).toBe(0);
    expect(await routed(ex, "k")).toBe(true);
    expect(await routed(ex, "k")).toBe(true);
    expect(await depth(queue)).toBe(2);

    expect(await c.queuePurge({ queue, noWait: true })).toBe(0); // no count without a reply
    expect((await c.queueDeclare({ queue, passive: true })).messageCount).toBe(0);

    const e2 = exchangeName("nowait-dst");
    await c.exchangeDeclare({ exchange: e2, type: "fanout", noWait: true });
    await c.exchangeBind({ destination: e2, source: ex, routingKey: "hop", noWait: true });
    const { queue: q2 } = await c.queueDeclare({ exclusive: true });
    await c.queueBind({ queue: q2, exchange: e2 });
    expect(await routed(ex, "hop")).toBe(true);
    await c.exchangeUnbind({ destination: e2, source: ex, routingKey: "hop", noWait: true });
    await c.basicQos({ prefetchCount: 0 });
    expect(await routed(ex, "hop")).toBe(false);

    expect(await c.queueDelete({ queue, noWait: true })).toBe(0);
    await c.exchangeDelete({ exchange: e2, noWait: true });
    await c.exchangeDelete({ exchange: ex, noWait: true });
    await c.basicQos({ prefetchCount: 0 });
    const gone = await brokerError((x) => x.queueDeclare({ queue, passive: true }));
    expect(gone.replyCode).toBe(404);
    const goneEx = await brokerError((x) => x.exchangeDeclare({ exchange: ex, passive: true }));
    expect(goneEx.replyCode).toBe(404);
    expect(c.isOpen).toBe(true);
    await c.close();
  });

  it("a failing no-wait method closes the channel; the next synchronous call rejects with its error", async () => {
    const c = await admin.conn.openChannel();
    const closed = new Promise<unknown>((resolve) => c.once("close", resolve));
    await c.queueBind({
      queue: uniqueName("warren.test.topology.missing"),
      exchange: "amq.direct",
      routingKey: "x",
      noWait: true,
    });
    const err = await rejection(c.basicQos({ prefetchCount: 1 }));
    expect(err).toBeInstanceOf(ChannelClosedByBroker);
    expect((err as ChannelClosedByBroker).replyCode).toBe(404);
    expect((err as ChannelClosedByBroker).methodName).toBe("queue.bind");
    expect(await closed).toBe(err);
  });
});
