/**
 * Publisher confirms, mandatory returns and transactions against a real broker.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type Channel,
  ChannelClosedByBroker,
  ChannelClosedError,
  PublishNackedError,
  type ReturnedMessage,
  UnroutableError,
} from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { errorOf, rejection } from "../support/async.js";
import { uniqueName } from "../support/broker.js";

/** admin.pub is in confirm mode: `await admin.pub.publish(...)` means the message is in its queue. */
const admin = useAdmin();
const exchanges: string[] = [];

afterEach(async () => {
  if (exchanges.length === 0) return;
  const c = await admin.conn.openChannel();
  for (const exchange of exchanges.splice(0)) await c.exchangeDelete({ exchange });
  await c.close();
});

async function ready(queue: string): Promise<number> {
  return (await admin.pub.queueDeclare({ queue, passive: true })).messageCount;
}

async function confirmChannel(): Promise<Channel> {
  const ch = await admin.conn.openChannel();
  await ch.confirmSelect();
  expect(ch.confirmMode).toBe(true);
  return ch;
}

async function declareExchange(type: string): Promise<string> {
  const exchange = uniqueName(`warren.test.confirms.${type}`);
  exchanges.push(exchange);
  await admin.pub.exchangeDeclare({ exchange, type });
  return exchange;
}

type OnConfirm = (tag: number, multiple: boolean, nack: boolean) => void;

describe("publisher confirms", () => {
  it("1000 pipelined publishes all resolve; the broker acks with multiple at least once", async () => {
    const queue = await admin.freshQueue();
    const ch = await confirmChannel();
    // Observe the acks the channel receives (delivery tag, multiple, nack).
    const spy = vi.spyOn((ch as unknown as { confirms: { settle: OnConfirm } }).confirms, "settle");
    expect(ch.nextPublishSeqNo).toBe(1);
    const ps: Promise<void>[] = [];
    for (let i = 0; i < 1000; i++) ps.push(ch.publish("", queue, `m${i}`));
    expect(ch.unconfirmedCount).toBe(1000);
    expect(ch.nextPublishSeqNo).toBe(1001);
    await Promise.all(ps);
    expect(ch.unconfirmedCount).toBe(0);

    const calls = spy.mock.calls;
    expect(calls.every(([, , nack]) => nack === false)).toBe(true);
    expect(calls.some(([, multiple]) => multiple)).toBe(true);
    expect(calls.length).toBeLessThan(1000);
    expect(Math.max(...calls.map(([tag]) => tag))).toBe(1000);
    expect(await ready(queue)).toBe(1000);
    // In order, and all of them.
    const first = await admin.pub.basicGet({ queue, noAck: true });
    expect(first?.body.toString()).toBe("m0");
    expect(await admin.pub.queuePurge({ queue })).toBe(999);
    spy.mockRestore();
    await ch.close();
  });

  it("basicPublish in confirm mode takes sequence numbers too; publish() after it still resolves", async () => {
    const queue = await admin.freshQueue();
    const ch = await confirmChannel();
    for (let i = 0; i < 5; i++) expect(ch.basicPublish("", queue, `fire-and-forget ${i}`)).toBe(true);
    expect(ch.nextPublishSeqNo).toBe(6);
    expect(ch.unconfirmedCount).toBe(0);
    await ch.publish("", queue, "tracked");
    expect(ch.unconfirmedCount).toBe(0);
    expect(await ready(queue)).toBe(6);
    await ch.close();
  });

  it("a nack (queue full, overflow reject-publish) rejects with PublishNackedError", async () => {
    const queue = await admin.freshQueue({ "x-max-length": 2, "x-overflow": "reject-publish" });
    const ch = await confirmChannel();
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => ch.publish("", queue, `m${i}`)));
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "rejected"]);
    for (const r of results.slice(2)) {
      const e = (r as PromiseRejectedResult).reason as PublishNackedError;
      expect(e).toBeInstanceOf(PublishNackedError);
      expect(e.code).toBe("PUBLISH_NACKED");
      expect(e.recoverable).toBe(true);
    }
    expect(ch.unconfirmedCount).toBe(0);
    expect(ch.isOpen).toBe(true);
    expect(await ready(queue)).toBe(2);
    await ch.close();
  });

  it("publishing to a missing exchange: the publish and the ones pending behind it reject with 404; the connection lives on", async () => {
    const queue = await admin.freshQueue();
    const ch = await confirmChannel();
    const closed = new Promise<unknown>((resolve) => ch.once("close", resolve));
    const missing = uniqueName("warren.test.confirms.missing");
    const before = ch.publish("", queue, "before");
    const bad = ch.publish(missing, "k", "lost");
    const after = [ch.publish("", queue, "after 1"), ch.publish("", queue, "after 2")];
    const err = (await rejection(bad)) as ChannelClosedByBroker;
    expect(err).toBeInstanceOf(ChannelClosedByBroker);
    expect(err.replyCode).toBe(404);
    expect(err.methodName).toBe("basic.publish");
    expect(err.replyText).toContain(missing);
    for (const p of after) expect(await rejection(p)).toBe(err);
    // "before" may or may not have been confirmed before the channel closed.
    const b = await errorOf(before);
    if (b !== undefined) expect(b).toBe(err);
    expect(await closed).toBe(err);
    expect(ch.isOpen).toBe(false);
    expect(ch.closeReason).toBe(err);
    expect(ch.unconfirmedCount).toBe(0);
    const later = await rejection(ch.publish("", queue, "too late"));
    expect(later).toBeInstanceOf(ChannelClosedError);
    expect((later as ChannelClosedError).cause).toBe(err);

    expect(admin.conn.isOpen).toBe(true);
    const ch2 = await confirmChannel();
    await ch2.publish("", queue, "fine");
    await ch2.close();
  });

  it("closing a channel with publishes unconfirmed rejects them with ChannelClosedError", async () => {
    const queue = await admin.freshQueue();
    const ch = await confirmChannel();
    const ps = Array.from({ length: 50 }, (_, i) => ch.publish("", queue, `m${i}`));
    const closing = ch.close();
    const outcomes = await Promise.all(ps.map(errorOf));
    await closing;
    // Whatever was not confirmed before close-ok rejects; nothing is left hanging.
    for (const o of outcomes) if (o !== undefined) expect(o).toBeInstanceOf(ChannelClosedError);
    expect(ch.unconfirmedCount).toBe(0);
  });
});

describe("mandatory returns", () => {
  it("an unroutable mandatory publish rejects with UnroutableError (312 NO_ROUTE) and emits return with the body", async () => {
    const ex = await declareExchange("direct");
    const ch = await confirmChannel();
    const returns: ReturnedMessage[] = [];
    ch.on("return", (r) => returns.push(r));

    // Not mandatory: dropped silently, confirmed, no return.
    await ch.publish(ex, "nowhere", "dropped");
    const body = Buffer.from("come back to me");
    const err = (await rejection(
      ch.publish(ex, "nowhere", body, { messageId: "ret-1", contentType: "text/plain" }, { mandatory: true }),
    )) as UnroutableError;
    expect(err).toBeInstanceOf(UnroutableError);
    expect(err.replyCode).toBe(312);
    expect(err.replyText).toBe("NO_ROUTE");
    expect(err.exchange).toBe(ex);
    expect(err.routingKey).toBe("nowhere");
    expect(err.code).toBe("UNROUTABLE");
    // The return came before the ack that rejected the promise, and only for the mandatory one.
    expect(returns).toHaveLength(1);
    const r = returns[0]!;
    expect(r.body.equals(body)).toBe(true);
    expect(r).toMatchObject({ replyCode: 312, replyText: "NO_ROUTE", exchange: ex, routingKey: "nowhere" });
    expect(r.properties).toEqual({ messageId: "ret-1", contentType: "text/plain" });
    expect(ch.isOpen).toBe(true);
    expect(ch.unconfirmedCount).toBe(0);
    await ch.close();
  });

  it("without confirm mode a mandatory return is only an event", async () => {
    const ex = await declareExchange("direct");
    const ch = await admin.conn.openChannel();
    const returned = new Promise<ReturnedMessage>((resolve) => ch.once("return", resolve));
    expect(ch.basicPublish(ex, "k", "plain return", { type: "t1" }, { mandatory: true })).toBe(true);
    const r = await returned;
    expect(r.body.toString()).toBe("plain return");
    expect(r.properties.type).toBe("t1");
    expect(r.replyCode).toBe(312);
    await ch.close();
  });

  it("interleaved routable and unroutable mandatory publishes: exactly the unroutable ones reject", async () => {
    const ex = await declareExchange("direct");
    const queue = await admin.freshQueue();
    await admin.pub.queueBind({ queue, exchange: ex, routingKey: "good" });
    const ch = await confirmChannel();
    const returns: string[] = [];
    ch.on("return", (r) => returns.push(r.body.toString()));
    const plan = Array.from({ length: 60 }, (_, i) => (i % 3 === 1 ? "bad" : "good"));
    const results = await Promise.allSettled(
      plan.map((key, i) => ch.publish(ex, key, `msg-${i}`, undefined, { mandatory: true })),
    );
    results.forEach((r, i) => {
      if (plan[i] === "good") expect(r.status, `msg-${i}`).toBe("fulfilled");
      else {
        expect(r.status, `msg-${i}`).toBe("rejected");
        expect((r as PromiseRejectedResult).reason).toBeInstanceOf(UnroutableError);
      }
    });
    expect(returns).toEqual(plan.flatMap((k, i) => (k === "bad" ? [`msg-${i}`] : [])));
    expect(await ready(queue)).toBe(40);
    await ch.close();
  });

  it("routing that depends on headers only: returns are matched to the right publish", async () => {
    // Same exchange, same routing key, same body size: only the headers decide. A return must
    // still reject the publish it belongs to, not an earlier routable one that is still unconfirmed.
    const ex = await declareExchange("headers");
    const queue = await admin.freshQueue();
    await admin.pub.queueBind({ queue, exchange: ex, arguments: { "x-match": "all", route: "yes" } });
    const ch = await confirmChannel();
    const routes = Array.from({ length: 20 }, (_, i) => i % 2 === 1 || i % 5 === 0);
    const results = await Promise.allSettled(
      routes.map((r, i) =>
        ch.publish(
          ex,
          "",
          `m${String(i).padStart(2, "0")}`,
          { headers: { route: r ? "yes" : "no" } },
          {
            mandatory: true,
          },
        ),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(routes.map((r) => (r ? "fulfilled" : "rejected")));
    expect(await ready(queue)).toBe(routes.filter(Boolean).length);
    await ch.close();
  });
});

describe("transactions", () => {
  it("tx.rollback discards publishes; tx.commit makes them visible", async () => {
    const queue = await admin.freshQueue();
    const ch = await admin.conn.openChannel();
    await ch.txSelect();
    expect(ch.txMode).toBe(true);
    ch.basicPublish("", queue, "rolled back 1");
    ch.basicPublish("", queue, "rolled back 2");
    await ch.txRollback();
    expect(await ready(queue)).toBe(0);

    ch.basicPublish("", queue, "committed");
    // Not visible before the commit.
    expect(await ready(queue)).toBe(0);
    await ch.txCommit();
    expect(await ready(queue)).toBe(1);
    const m = await admin.pub.basicGet({ queue, noAck: true });
    expect(m?.body.toString()).toBe("committed");
    expect(await admin.pub.basicGet({ queue })).toBeNull();
    await ch.close();
  });

  it("acks are transactional too: a rolled-back ack leaves the message unacked", async () => {
    const queue = await admin.freshQueue();
    await admin.pub.publish("", queue, "ack me");
    const ch = await admin.conn.openChannel();
    await ch.txSelect();
    const m = (await ch.basicGet({ queue }))!;
    expect(m.body.toString()).toBe("ack me");
    ch.basicAck(m.deliveryTag);
    await ch.txRollback();
    await ch.close(); // the ack never happened: the message is requeued
    expect(await ready(queue)).toBe(1);

    const ch2 = await admin.conn.openChannel();
    await ch2.txSelect();
    const m2 = (await ch2.basicGet({ queue }))!;
    expect(m2.redelivered).toBe(true);
    ch2.basicAck(m2.deliveryTag);
    await ch2.txCommit();
    await ch2.close();
    expect(await ready(queue)).toBe(0);
  });

  it("confirm.select on a transactional channel is refused with 406", async () => {
    const ch = await admin.conn.openChannel();
    await ch.txSelect();
    const err = (await rejection(ch.confirmSelect())) as ChannelClosedByBroker;
    expect(err).toBeInstanceOf(ChannelClosedByBroker);
    expect(err.replyCode).toBe(406);
    expect(err.methodName).toBe("confirm.select");
    expect(ch.isOpen).toBe(false);
  });
});
