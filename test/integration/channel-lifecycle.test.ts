/**
 * Channel lifecycle against a real broker: many channels on one connection and the
 * reuse of their ids, channel.flow from the client, closes that cross, and what a
 * channel does when its connection goes away.
 */
import { describe, expect, it } from "vitest";
import {
  type Channel,
  ChannelClosedByBroker,
  ChannelClosedError,
  ChannelLimitError,
  Connection,
  ConnectionClosedByBroker,
  ConnectionClosedError,
} from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { errorOf, rejection } from "../support/async.js";
import { AMQP_URL, uniqueName } from "../support/broker.js";
import { Deliveries } from "../support/deliveries.js";

const admin = useAdmin();

describe("many channels", () => {
  it("opens 200 channels on one connection, uses each, closes them, and reuses their ids", async () => {
    const c = await Connection.open({ url: AMQP_URL, channelMax: 200 });
    try {
      expect(c.channelMax).toBe(200);
      const chans = await Promise.all(Array.from({ length: 200 }, () => c.openChannel()));
      const ids = chans.map((ch) => ch.id).sort((a, b) => a - b);
      expect(ids).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      expect(c.openChannels).toBe(200);
      expect(chans.every((ch) => ch.isOpen)).toBe(true);
      // All ids are taken.
      await expect(c.openChannel()).rejects.toBeInstanceOf(ChannelLimitError);

      // Use each: every channel publishes its id with a confirm to one queue.
      const { queue } = await chans[0]!.queueDeclare({ exclusive: true });
      await Promise.all(
        chans.map(async (ch) => {
          await ch.confirmSelect();
          await ch.publish("", queue, String(ch.id));
        }),
      );
      const d = new Deliveries();
      await chans[199]!.basicConsume({ queue, noAck: true }, d.onMessage);
      const got = await d.until(200);
      expect(got.map((m) => Number(m.body.toString())).sort((a, b) => a - b)).toEqual(ids);

      await Promise.all(chans.map((ch) => ch.close()));
      expect(c.openChannels).toBe(0);
      expect(chans.every((ch) => ch.state === "closed" && ch.closeReason === undefined)).toBe(true);

      // The same 200 ids serve again.
      const again = await Promise.all(Array.from({ length: 200 }, () => c.openChannel()));
      expect(again.map((ch) => ch.id).sort((a, b) => a - b)).toEqual(ids);
      await Promise.all(again.map((ch) => ch.basicQos({ prefetchCount: 1 })));
      await Promise.all(again.map((ch) => ch.close()));
      expect(c.openChannels).toBe(0);
      expect(c.isOpen).toBe(true);
    } finally {
      await c.close();
    }
  });

  it("an id freed by a broker-closed channel is used again", async () => {
    const c = await Connection.open({ url: AMQP_URL, channelMax: 2 });
    try {
      const a = await c.openChannel();
      const b = await c.openChannel();
      await expect(c.openChannel()).rejects.toBeInstanceOf(ChannelLimitError);
      const missing = uniqueName("warren.test.lifecycle.missing");
      const err = await rejection(a.queueDeclare({ queue: missing, passive: true }));
      expect(err).toBeInstanceOf(ChannelClosedByBroker);
      expect((err as ChannelClosedByBroker).replyCode).toBe(404);
      expect((err as ChannelClosedByBroker).replyText).toContain(missing);
      expect(a.isOpen).toBe(false);
      const a2 = await c.openChannel();
      expect(a2.id).toBe(a.id);
      await a2.queueDeclare({ exclusive: true });
      await b.close();
      const b2 = await c.openChannel();
      expect(b2.id).toBe(b.id);
      await b2.close();
      await a2.close();
    } finally {
      await c.close();
    }
  });
});

describe("channel.flow from the client", () => {
  it("flow(true) answers true; flow(false) is refused by RabbitMQ with 540 NOT_IMPLEMENTED", async () => {
    const c = await Connection.open(AMQP_URL);
    const closed = new Promise<unknown>((resolve) => c.once("close", resolve));
    const ch = await c.openChannel();
    expect(await ch.flow(true)).toBe(true);
    // RabbitMQ does not implement flow(false) from a client, and 540 is a connection error:
    // the whole connection closes, and the channel's call rejects with ConnectionClosedError.
    const err = (await rejection(ch.flow(false))) as ConnectionClosedError;
    expect(err).toBeInstanceOf(ConnectionClosedError);
    const cause = err.cause as ConnectionClosedByBroker;
    expect(cause).toBeInstanceOf(ConnectionClosedByBroker);
    expect(cause.replyCode).toBe(540);
    expect(cause.replyText).toContain("NOT_IMPLEMENTED");
    expect(cause.methodName).toBe("channel.flow");
    expect(cause.recoverable).toBe(false);
    expect(await closed).toBe(cause);
    expect(c.isOpen).toBe(false);
    expect(ch.state).toBe("closed");
    expect(ch.closeReason).toBe(err);
  });
});

describe("closing", () => {
  it("close() is orderly and idempotent; a closed channel refuses work with ChannelClosedError", async () => {
    const ch = await admin.conn.openChannel();
    const closeEvents: unknown[] = [];
    ch.on("close", (e) => closeEvents.push(e));
    const p1 = ch.close();
    const p2 = ch.close();
    await Promise.all([p1, p2]);
    expect(ch.state).toBe("closed");
    expect(closeEvents).toEqual([undefined]);
    await expect(ch.queueDeclare({ exclusive: true })).rejects.toBeInstanceOf(ChannelClosedError);
    await expect(ch.basicGet({ queue: "x" })).rejects.toBeInstanceOf(ChannelClosedError);
    expect(() => ch.basicPublish("", "x", "y")).toThrow(ChannelClosedError);
  });

  it("our channel.close crossing the broker's channel.close leaves the connection healthy", async () => {
    // The publish to a missing exchange makes the broker close the channel while our close is
    // on its way; the broker then also answers our close with close-ok, which must be absorbed.
    const c = await Connection.open(AMQP_URL);
    try {
      const connClosed: unknown[] = [];
      c.on("close", (e) => connClosed.push(e));
      for (let i = 0; i < 5; i++) {
        const ch = await c.openChannel();
        const events: unknown[] = [];
        ch.on("close", (e) => events.push(e));
        ch.basicPublish(uniqueName("warren.test.lifecycle.missing"), "k", "x");
        await ch.close();
        expect(ch.state).toBe("closed");
        expect(events).toHaveLength(1);
        expect(events[0]).toBeInstanceOf(ChannelClosedByBroker);
        expect((events[0] as ChannelClosedByBroker).replyCode).toBe(404);
      }
      // A round trip on a new channel proves the connection survived the stray close-oks.
      const ch = await c.openChannel();
      await ch.queueDeclare({ exclusive: true });
      await ch.close();
      expect(c.isOpen).toBe(true);
      expect(connClosed).toEqual([]);
    } finally {
      await c.close();
    }
  });

  it("closing the connection closes its channels and rejects their pending calls", async () => {
    const c = await Connection.open(AMQP_URL);
    const chans: Channel[] = await Promise.all([c.openChannel(), c.openChannel(), c.openChannel()]);
    const events = chans.map((ch) => new Promise<unknown>((resolve) => ch.once("close", resolve)));
    await chans[0]!.confirmSelect();
    const { queue } = await chans[1]!.queueDeclare({ exclusive: true });
    const pendingGet = chans[1]!.basicGet({ queue });
    const closing = c.close();
    // The get was sent before connection.close, so the broker may still answer it (null: empty).
    const getErr = await errorOf(pendingGet);
    if (getErr !== undefined) expect(getErr).toBeInstanceOf(ConnectionClosedError);
    await closing;
    for (const e of await Promise.all(events)) expect(e).toBeInstanceOf(ConnectionClosedError);
    expect(chans.every((ch) => ch.state === "closed")).toBe(true);
    expect(c.openChannels).toBe(0);
    await expect(c.openChannel()).rejects.toBeInstanceOf(ConnectionClosedError);
    await expect(chans[2]!.queueDeclare({ exclusive: true })).rejects.toBeInstanceOf(ChannelClosedError);
  });
});
