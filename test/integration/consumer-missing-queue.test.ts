/**
 * A consumer whose queue does not exist, against the real broker: it is loud (the client's `error`
 * event with a QueueNotFoundError naming the queue, rate-limited; `consumer.ready()` rejects; counted
 * in `consumer.stats` and `warren_consumer_subscribe_errors_total`), it keeps retrying, and it starts
 * by itself within seconds once another connection declares the queue. A subscription the broker
 * refuses (403 no access, 406 bad argument) is permanent: `failed`, reported; 403 "in exclusive use"
 * is a lock another connection holds: reported and waited for. And the rule for
 * every lifecycle object: the first transition happens on a microtask, so a `state` listener
 * attached on the line after consume() sees it.
 */
import { Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import {
  ChannelClosedByBroker,
  type Client,
  ClientClosedError,
  type ClientOptions,
  QueueNotFoundError,
} from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { rejection } from "../support/async.js";
import { addUser, amqpUrlWith, canUseRabbitmqctl, deleteUser, uniqueName } from "../support/broker.js";
import { errorsOf, useClients } from "../support/clients.js";
import { Inbox, StateLog } from "../support/state-log.js";
import { waitFor } from "../support/wait.js";

/** The other service: declares queues and publishes on a connection of its own. */
const admin = useAdmin();
const clients = useClients("missing-queue", { reconnect: { initial: 50, max: 200 } });
const client = (options: ClientOptions = {}): Client => clients(options).client;
/** A queue name, deleted after the test (if anyone declared it). */
const q = (prefix: string) => admin.queueName(prefix);

/** The 403 test makes a user without read permission (rabbitmqctl). */
const ctlUsable = await canUseRabbitmqctl();
const users: string[] = [];
afterAll(async () => {
  for (const u of users) await deleteUser(u);
});

async function metricValue(registry: Registry, name: string, labels: Record<string, string>) {
  const data = await registry.getSingleMetric(name)?.get();
  const hit = data?.values.find((v) =>
    Object.entries(labels).every(([k, x]) => String((v.labels as Record<string, unknown>)[k]) === x),
  );
  return hit?.value;
}

describe("a consumer on a missing queue", () => {
  it("is reported within 5 s (rate-limited), rejects ready(), is counted, and starts within seconds of another connection declaring the queue", async () => {
    const registry = new Registry();
    const connection = uniqueName("missing-queue");
    const cl = client({ connectionName: connection, metrics: { registry } });
    const errors = errorsOf(cl);
    await cl.ready();
    const queue = q("no-such-queue");
    const inbox = new Inbox();
    const started = performance.now();
    const c = cl.consume({ queue }, inbox.handler);
    // Attached on the line after consume(): sees the first transition too.
    const log = new StateLog(c);

    const err = await rejection(c.ready());
    expect(err).toBeInstanceOf(QueueNotFoundError);
    const notFound = err as QueueNotFoundError;
    expect(notFound).toMatchObject({ code: "QUEUE_NOT_FOUND", queue, recoverable: true });
    expect(notFound.message).toContain(`"${queue}"`);
    expect(notFound.cause).toBeInstanceOf(ChannelClosedByBroker);
    expect((notFound.cause as ChannelClosedByBroker).replyCode).toBe(404);

    await waitFor(() => errors.length > 0, "the client's error event", 5_000);
    expect(errors[0]!.at - started).toBeLessThan(5_000);
    expect(errors[0]!.error).toBeInstanceOf(QueueNotFoundError);
    expect((errors[0]!.error as QueueNotFoundError).queue).toBe(queue);

    expect(log.changes[0]).toMatchObject({ from: "waiting", to: "subscribing", error: undefined });
    const retrying = await log.next("resubscribing", 0);
    expect(retrying.error).toBeInstanceOf(QueueNotFoundError);
    // Retried with backoff until its ceiling reached the 5 s cap (8 attempts: 100 ms × 2^7 > 5 s),
    // reported once per 5 s, not once per attempt.
    await waitFor(() => c.stats.subscribeErrors >= 8, "eight failed attempts", 30_000);
    const reports = errors.filter((e) => e.error instanceof QueueNotFoundError);
    expect(reports.length).toBeLessThan(c.stats.subscribeErrors);
    expect(reports.length).toBeLessThanOrEqual(1 + Math.floor((performance.now() - reports[0]!.at) / 5_000));
    expect(c.state === "resubscribing" || c.state === "subscribing").toBe(true);
    expect(c.stats.lastSubscribeError).toBe("QUEUE_NOT_FOUND");

    // consumer.stats and the metric count the same attempts.
    const before = c.stats.subscribeErrors;
    const counted = await metricValue(registry, "warren_consumer_subscribe_errors_total", {
      connection,
      queue,
      code: "QUEUE_NOT_FOUND",
    });
    expect(counted).toBeGreaterThanOrEqual(before);
    expect(counted).toBeLessThanOrEqual(c.stats.subscribeErrors);
    // ready() called again while the queue is still missing: rejects at once.
    await expect(c.ready()).rejects.toBeInstanceOf(QueueNotFoundError);

    // Another service declares the queue and publishes: the consumer starts by itself.
    await admin.pub.queueDeclare({ queue });
    const declared = performance.now();
    await admin.pub.publish("", queue, "hello");
    // At most one capped backoff (5 s) and an attempt; the bound is 3× that, for a loaded machine.
    const got = await inbox.got("hello", 25_000);
    expect(got.at - declared).toBeLessThan(15_000);
    // The delivery may come in the read that carries basic.consume-ok: ready() is the subscription.
    await c.ready();
    expect(c.state).toBe("consuming");
    expect(c.stats).toMatchObject({ delivered: 1, lastSubscribeError: undefined });
    expect(log.states.at(-1)).toBe("consuming");
    const consuming = log.changes.at(-1)!;
    expect(consuming.error).toBeUndefined();
  });

  it("a consumer created before the client is connected: reported too, and ready() rejects", async () => {
    const cl = client();
    const errors = errorsOf(cl);
    const queue = q("no-such-queue");
    const c = cl.consume({ queue }, () => undefined);
    const log = new StateLog(c);
    const err = await rejection(c.ready());
    expect(err).toBeInstanceOf(QueueNotFoundError);
    expect(err).toMatchObject({ queue, code: "QUEUE_NOT_FOUND" });
    await waitFor(() => errors.length > 0, "the client's error event");
    expect(errors[0]!.error).toBeInstanceOf(QueueNotFoundError);
    expect((errors[0]!.error as QueueNotFoundError).queue).toBe(queue);
    expect(log.changes[0]).toMatchObject({ from: "waiting", to: "subscribing" });
  });
});

describe("an exclusive consumer held by another connection is waited for (a standby)", () => {
  it("403 in exclusive use: reported, retried, and it takes over once the holder lets go", async () => {
    const queue = q("exclusive");
    await admin.pub.queueDeclare({ queue });
    const holder = await admin.conn.openChannel();
    await holder.basicConsume({ queue, exclusive: true }, () => undefined);

    const cl = client();
    const errors = errorsOf(cl);
    await cl.ready();
    const inbox = new Inbox();
    const c = cl.consume({ queue }, inbox.handler);
    const log = new StateLog(c);
    const ready = c.ready();
    await waitFor(() => errors.length > 0, "the client's error event");
    expect(errors[0]!.error).toBeInstanceOf(ChannelClosedByBroker);
    expect(errors[0]!.error).toMatchObject({ replyCode: 403, methodName: "basic.consume" });
    expect(errors[0]!.error.message).toMatch(/exclusive use/);
    await waitFor(() => log.count("resubscribing") >= 2, "two refused attempts", 10_000);
    expect(c.state).not.toBe("failed");
    await holder.close();
    await ready;
    expect(c.state).toBe("consuming");
    await admin.pub.publish("", queue, "taken over");
    await inbox.got("taken over");
  });
});

describe("a subscription the broker refuses is permanent", () => {
  it.skipIf(!ctlUsable)(
    "403 ACCESS_REFUSED (the user may not read the queue): failed, reported, ready() rejects",
    async () => {
      const queue = q("no-read");
      await admin.pub.queueDeclare({ queue });
      const user = uniqueName("warren-noread");
      users.push(user);
      // configure and write, but no read: basic.consume is refused.
      await addUser(user, "pw", { permissions: [".*", ".*", "^$"] });
      const cl = client({ url: amqpUrlWith({ user, password: "pw" }) });
      const errors = errorsOf(cl);
      await cl.ready();
      const c = cl.consume({ queue }, () => undefined);
      const log = new StateLog(c);
      const err = await rejection(c.ready());
      expect(err).toBeInstanceOf(ChannelClosedByBroker);
      expect(err).toMatchObject({ replyCode: 403, methodName: "basic.consume" });
      expect(c.state).toBe("failed");
      expect(log.states).toEqual(["subscribing", "failed"]);
      expect(log.changes.at(-1)!.error).toBe(err);
      await waitFor(() => errors.length > 0, "the client's error event");
      expect(errors[0]!.error).toBe(err);
      expect(c.stats).toMatchObject({ subscribeErrors: 1, lastSubscribeError: "CHANNEL_CLOSED_BY_BROKER" });
      await c.cancel();
      expect(c.state).toBe("cancelled");
    },
  );

  it("406 PRECONDITION_FAILED (a consumer argument of the wrong type): failed, reported, ready() rejects", async () => {
    const queue = q("bad-argument");
    await admin.pub.queueDeclare({ queue });
    const cl = client();
    const errors = errorsOf(cl);
    const c = cl.consume({ queue, arguments: { "x-priority": "high" } }, () => undefined);
    const err = await rejection(c.ready());
    expect(err).toBeInstanceOf(ChannelClosedByBroker);
    expect(err).toMatchObject({ replyCode: 406, methodName: "basic.consume" });
    expect((err as Error).message).toMatch(/x-priority/);
    expect(c.state).toBe("failed");
    await waitFor(() => errors.length > 0, "the client's error event");
    expect(errors[0]!.error).toBe(err);
  });
});

describe("ready() and the first transition", () => {
  it("resolves at consume-ok; a listener attached after consume() sees waiting → subscribing → consuming; the iterator works", async () => {
    const queue = q("present");
    await admin.pub.queueDeclare({ queue });
    const cl = client();
    await cl.ready();
    const c = cl.consume({ queue }, () => undefined);
    const log = new StateLog(c);
    expect(c.state).toBe("waiting");
    await c.ready();
    expect(log.changes.map(({ from, to }) => `${from}→${to}`)).toEqual([
      "waiting→subscribing",
      "subscribing→consuming",
    ]);
    expect(c.stats).toMatchObject({ subscribeErrors: 0, lastSubscribeError: undefined });
    await c.cancel();

    const stream = cl.messages({ queue });
    const streamLog = new StateLog(stream.consumer);
    await stream.consumer.ready();
    expect(streamLog.states).toEqual(["subscribing", "consuming"]);
    await admin.pub.publish("", queue, "via the iterator");
    for await (const m of stream) {
      expect(m.body.toString()).toBe("via the iterator");
      m.ack();
      break;
    }
    expect(stream.consumer.state).toBe("cancelled");
  });

  it("rejects when the consumer is cancelled before consuming; nobody calling ready() leaves no unhandled rejection", async () => {
    const queue = q("never-consumed");
    const cl = client();
    const c = cl.consume({ queue }, () => undefined);
    const ready = c.ready();
    await c.cancel();
    const err = await rejection(ready);
    expect(err).toBeInstanceOf(ClientClosedError);
    expect((err as Error).message).toContain(queue);
    // A consumer nobody asks: it fails to subscribe, then is cancelled; vitest fails the file on an
    // unhandled rejection.
    const quiet = cl.consume({ queue }, () => undefined);
    await waitFor(() => quiet.stats.subscribeErrors > 0, "a failed attempt", 15_000);
    await quiet.cancel();
  });
});
