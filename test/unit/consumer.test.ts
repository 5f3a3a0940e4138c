/**
 * The supervised consumer's decisions without a broker (src/client/consumer.ts, delivery.ts): its
 * subscription (driven as the client drives it: CONNECTED, CONNECTION_LOST), the concurrency limit,
 * ack on success, the failure policy on a throw, timeoutMs, deliveries of a dead channel, and
 * cancel()'s drain. The channels and the client are fakes; time is vitest's fake clock.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Channel } from "../../src/amqp/channel.js";
import { Consumer } from "../../src/client/consumer.js";
import type {
  ConsumedMessage,
  ConsumeOptions,
  ConsumerHost,
  MessageHandler,
} from "../../src/client/consumer-types.js";
import { RETRIES_HEADER, RETRY_DELAY_HEADER, RETRY_EXCHANGE } from "../../src/client/retry.js";
import type { TopologySpec } from "../../src/client/topology.js";
import {
  type ChannelClosedByBroker,
  ClientClosedError,
  ConnectionClosedError,
  NotConnectedError,
  QueueNotFoundError,
  TimeoutError,
} from "../../src/errors.js";
import { brokerClose, FakeChannel, flush as microtasks, track } from "./fakes/fake-channel.js";

/**
 * What settled promises chain, then the end of the turn (the fake clock's immediates): a
 * consumer's acks leave when its turn ends (ack-batch.ts), its nacks and rejects at once.
 */
async function flush(): Promise<void> {
  await microtasks();
  await vi.advanceTimersByTimeAsync(0);
  await microtasks();
}

/** The members of the client a consumer calls; each channel it opens is a FakeChannel. */
class FakeConsumerHost implements ConsumerHost {
  readonly channels: FakeChannel[] = [];
  /** The next openChannel() calls fail with these, in order. */
  readonly openErrors: Error[] = [];
  /** The basic.consume of the next channels fails with these, in order. */
  readonly consumeErrors: ChannelClosedByBroker[] = [];
  readonly prepared: { key: string; lost: boolean }[] = [];
  /** The next prepareQueue() calls (a passive queue.declare) fail with these, in order. */
  readonly prepareErrors: ChannelClosedByBroker[] = [];
  readonly declared: TopologySpec[] = [];
  readonly reports: Error[] = [];
  consumerRandom = (): number => 0.5; // the machine's backoff: 50 ms, then 100 ms…

  /** The channel opened last. */
  get ch(): FakeChannel {
    return this.channels.at(-1)!;
  }

  openChannel(): Promise<Channel> {
    const err = this.openErrors.shift();
    if (err !== undefined) return Promise.reject(err);
    const ch = new FakeChannel({ confirm: false });
    const refusal = this.consumeErrors.shift();
    if (refusal !== undefined) ch.consumeError = refusal;
    this.channels.push(ch);
    return Promise.resolve(ch.channel);
  }

  prepareQueue(ch: Channel, key: string, lost: boolean): Promise<string> {
    this.prepared.push({ key, lost });
    const err = this.prepareErrors.shift();
    if (err === undefined) return Promise.resolve(key);
    FakeChannel.of(ch)!.die(err); // the broker closes the channel on a failed passive declare
    return Promise.reject(err);
  }

  declare = (_ch: Channel, spec: TopologySpec): Promise<unknown> => {
    this.declared.push(spec);
    return Promise.resolve();
  };

  report = (error: Error): void => {
    this.reports.push(error);
  };
}

/** A handler whose runs the test ends one by one: finish(i) / fail(i, err) settle the i-th run. */
class Gate {
  readonly messages: ConsumedMessage[] = [];
  private readonly ends: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  readonly handler: MessageHandler = (m) =>
    new Promise<void>((resolve, reject) => {
      this.messages.push(m);
      this.ends.push({ resolve, reject });
    });

  /** The delivery tags handed to the handler, in order. */
  get started(): number[] {
    return this.messages.map((m) => m.fields.deliveryTag);
  }

  finish(i: number): void {
    this.ends[i]!.resolve();
  }

  fail(i: number, e: unknown): void {
    this.ends[i]!.reject(e);
  }
}

async function run(ms: number): Promise<void> {
  await flush();
  await vi.advanceTimersByTimeAsync(ms);
  await flush();
}

let host: FakeConsumerHost;
let consumers: Consumer[];
/** What each consumer emitted as "error". */
let errors: unknown[];
let states: string[];

function consumer(options: Partial<ConsumeOptions>, handler: MessageHandler, connected = true): Consumer {
  const c = new Consumer(host, { queue: "q", ...options }, handler, connected);
  c.on("error", (e) => errors.push(e));
  c.on("state", ({ to }) => states.push(to));
  consumers.push(c);
  return c;
}

/** A consumer that reached `consuming` on its first channel. */
async function consuming(options: Partial<ConsumeOptions>, handler: MessageHandler): Promise<Consumer> {
  const c = consumer(options, handler);
  await run(0);
  expect(c.state).toBe("consuming");
  return c;
}

beforeEach(() => {
  vi.useFakeTimers();
  host = new FakeConsumerHost();
  consumers = [];
  errors = [];
  states = [];
});

afterEach(async () => {
  const cancelled = Promise.all(consumers.map((c) => c.cancel({ drainTimeout: 0 })));
  await run(60_000); // a drain begun by the test waits its own drainTimeout
  await cancelled;
  vi.useRealTimers();
});

describe("subscribing", () => {
  it("waits for CONNECTED, then opens a channel, sets qos to max(prefetch, concurrency) and consumes", async () => {
    const c = consumer({ prefetch: 10, concurrency: 20 }, () => undefined, false);
    const ready = track(c.ready());
    await run(1000);
    expect(c.state).toBe("waiting");
    expect(host.channels).toEqual([]);
    c.send({ type: "CONNECTED" });
    await run(0);
    expect(c.state).toBe("consuming");
    expect(host.ch.calls).toEqual(["qos 20", "consume q"]);
    expect(host.prepared).toEqual([{ key: "q", lost: false }]);
    expect(c.tag).toBe([...host.ch.consumers.keys()][0]);
    expect(ready.status).toBe("resolved");
    expect(states).toEqual(["subscribing", "consuming"]);
  });

  it("CONNECTION_LOST: back to waiting; CONNECTED: subscribes again on a new channel", async () => {
    const c = await consuming({}, () => undefined);
    const ch1 = host.ch;
    ch1.die(new ConnectionClosedError("socket closed"));
    c.send({ type: "CONNECTION_LOST" });
    await run(1000);
    expect(c.state).toBe("waiting");
    expect(host.channels).toHaveLength(1);
    c.send({ type: "CONNECTED" });
    await run(0);
    expect(c.state).toBe("consuming");
    expect(host.channels).toHaveLength(2);
  });

  it.each(["basic.consume", "queue.declare"] as const)(
    "a 404 on %s is a QueueNotFoundError: reported, ready() rejects, retried with lost=true until it exists",
    async (method) => {
      const notFound = brokerClose(404, "NOT_FOUND - no queue 'q' in vhost '/'", method);
      if (method === "basic.consume") host.consumeErrors.push(notFound);
      else host.prepareErrors.push(notFound);
      const c = consumer({}, () => undefined);
      const ready = track(c.ready());
      await run(0);
      expect(c.state).toBe("resubscribing");
      expect(ready.error).toBeInstanceOf(QueueNotFoundError);
      const e = ready.error as QueueNotFoundError;
      expect(e.queue).toBe("q");
      expect(e.cause).toBe(notFound);
      expect(host.reports).toHaveLength(1);
      expect(host.reports[0]).toBeInstanceOf(QueueNotFoundError);
      expect(c.stats.subscribeErrors).toBe(1);
      expect(c.stats.lastSubscribeError).toBe("QUEUE_NOT_FOUND");
      const late = track(c.ready()); // asked while the last attempt found no queue: at once
      await flush();
      expect(late.error).toBeInstanceOf(QueueNotFoundError);

      await run(50); // the consumer's backoff
      expect(c.state).toBe("consuming");
      expect(host.channels).toHaveLength(2); // the 404 closed the first one
      expect(host.prepared).toEqual([
        { key: "q", lost: false },
        { key: "q", lost: true },
      ]);
      expect(c.stats.lastSubscribeError).toBeUndefined();
    },
  );

  it("a 404 in reply to another method is no QueueNotFoundError: retried, the queue not re-declared", async () => {
    const c = consumer({}, () => undefined);
    host.prepareErrors.push(brokerClose(404, "NOT_FOUND - something", "basic.qos"));
    await run(0);
    expect(c.state).toBe("resubscribing");
    expect(c.stats.lastSubscribeError).toBe("CHANNEL_CLOSED_BY_BROKER");
    expect(host.prepared).toEqual([{ key: "q", lost: false }]);
    await run(50);
    expect(c.state).toBe("consuming");
    expect(host.prepared.at(-1)).toEqual({ key: "q", lost: false });
  });

  it("a refusal (403 on basic.consume) is permanent: failed, reported, never retried", async () => {
    const refused = brokerClose(403, "ACCESS_REFUSED - access to queue 'q' refused", "basic.consume");
    host.consumeErrors.push(refused);
    const c = consumer({}, () => undefined);
    const ready = track(c.ready());
    await run(60_000);
    expect(c.state).toBe("failed");
    expect(ready.error).toBe(refused);
    expect(host.reports).toEqual([refused]);
    expect(host.channels).toHaveLength(1);
    c.send({ type: "CONNECTED" });
    await run(60_000);
    expect(c.state).toBe("failed");
  });

  it("a channel that cannot be opened is retried after the backoff, unreported", async () => {
    host.openErrors.push(new NotConnectedError("no connection"));
    const c = consumer({}, () => undefined);
    await run(0);
    expect(c.state).toBe("resubscribing");
    expect(c.stats.lastSubscribeError).toBe("NOT_CONNECTED");
    await run(49);
    expect(host.channels).toHaveLength(0);
    await run(1);
    expect(c.state).toBe("consuming");
    expect(host.reports).toEqual([]);
  });

  it("a server cancel (queue deleted) subscribes again, re-declaring the queue (lost=true)", async () => {
    const c = await consuming({}, () => undefined);
    host.ch.serverCancel();
    await run(0);
    expect(c.state).toBe("resubscribing");
    await run(50);
    expect(c.state).toBe("consuming");
    expect(host.channels).toHaveLength(1); // the channel is still open: reused
    expect(host.ch.calls).toEqual(["qos 50", "consume q", "consume q"]);
    expect(host.prepared.at(-1)).toEqual({ key: "q", lost: true });
  });

  it("cancelled before consuming: ready() rejects with ClientClosedError", async () => {
    const c = consumer({}, () => undefined, false);
    const ready = track(c.ready());
    await c.cancel();
    await flush();
    expect(c.state).toBe("cancelled");
    expect(ready.error).toBeInstanceOf(ClientClosedError);
    expect(host.channels).toEqual([]);
  });
});

describe("handling deliveries", () => {
  it("acks when the handler succeeds (async or not)", async () => {
    const gate = new Gate();
    let sync = 0;
    const c = await consuming({}, (m) => (m.fields.deliveryTag === 1 ? gate.handler(m) : sync++));
    host.ch.deliver(1);
    host.ch.deliver(2);
    await flush();
    expect(host.ch.settlements).toEqual([{ op: "ack", tag: 2 }]);
    expect(c.stats.inFlight).toBe(1);
    gate.finish(0);
    await flush();
    expect(host.ch.settlements).toEqual([
      { op: "ack", tag: 2 },
      { op: "ack", tag: 1 },
    ]);
    expect(c.stats).toMatchObject({ delivered: 2, acked: 2, failed: 0, inFlight: 0 });
    expect(sync).toBe(1);
  });

  it("runs at most `concurrency` handlers; the others wait and start in arrival order", async () => {
    const gate = new Gate();
    const c = await consuming({ concurrency: 2 }, gate.handler);
    for (const tag of [1, 2, 3, 4, 5]) host.ch.deliver(tag);
    await flush();
    expect(gate.started).toEqual([1, 2]);
    expect(c.running).toBe(2);
    gate.finish(1); // tag 2
    await flush();
    expect(gate.started).toEqual([1, 2, 3]);
    gate.finish(0);
    gate.finish(2);
    await flush();
    expect(gate.started).toEqual([1, 2, 3, 4, 5]);
    // 2 alone (1 still running), then 1 and 3 in one turn: one ack covering both.
    expect(host.ch.settlements).toEqual([
      { op: "ack", tag: 2 },
      { op: "ack", tag: 3, multiple: true },
    ]);
    expect(c.stats.inFlight).toBe(2);
  });

  it("a handler that settles its message itself is not settled again", async () => {
    const c = await consuming({}, (m) => {
      m.nack({ requeue: false });
      throw new Error("after settling");
    });
    host.ch.deliver(1);
    await flush();
    expect(host.ch.settlements).toEqual([{ op: "reject", tag: 1, requeue: false }]);
    expect(c.stats).toMatchObject({ failed: 1, deadLettered: 1, inFlight: 0 });
  });
});

describe("the failure policy on a throw", () => {
  const boom = new Error("boom");

  it("requeue (default): rejected with requeue (counted by every quorum queue), then rejected on the last attempt (maxAttempts 2)", async () => {
    const c = await consuming({}, () => {
      throw boom;
    });
    host.ch.deliver(1);
    host.ch.deliver(2, { redelivered: true }); // its 2nd attempt
    await flush();
    expect(host.ch.settlements).toEqual([
      { op: "reject", tag: 1, requeue: true },
      { op: "reject", tag: 2, requeue: false },
    ]);
    expect(errors).toEqual([boom, boom]);
    expect(c.stats).toMatchObject({ failed: 2, requeued: 1, deadLettered: 1, acked: 0 });
  });

  it("requeue past what a classic queue counts: a copy with warren-retries to the queue, then ack; a quorum queue's count is requeued", async () => {
    const c = await consuming({ maxAttempts: 4 }, () => {
      throw boom;
    });
    const ch = host.ch;
    expect(ch.calls).toEqual(["qos 50", "confirm.select", "consume q"]); // confirms, no retry topology
    expect(host.declared).toHaveLength(0);
    // A quorum queue counts it: requeued (basic.reject) at attempt 3 of 4.
    ch.deliver(1, { redelivered: true, properties: { headers: { "x-delivery-count": 2 } } });
    // A classic queue's redelivery (attempt 2) cannot be counted further: a copy.
    ch.deliver(2, { redelivered: true, properties: { messageId: "m2", headers: { h: "v" } } });
    await flush();
    expect(ch.settlements).toEqual([{ op: "reject", tag: 1, requeue: true }]);
    expect(ch.sent).toHaveLength(1);
    const copy = ch.sent[0]!;
    expect(copy).toMatchObject({ exchange: "", routingKey: "q", mandatory: true });
    expect(copy.properties.messageId).toBe("m2");
    expect(copy.properties.headers).toMatchObject({ h: "v", [RETRIES_HEADER]: 2 });
    ch.confirm();
    await flush();
    expect(ch.settlements.at(-1)).toEqual({ op: "ack", tag: 2 });
    // The copy comes back as attempt 3; then 4 (its redelivery) is the last: rejected.
    ch.deliver(3, { properties: copy.properties });
    ch.deliver(4, { redelivered: true, properties: copy.properties });
    await flush();
    expect(ch.settlements.slice(-2)).toEqual([
      { op: "reject", tag: 3, requeue: true },
      { op: "reject", tag: 4, requeue: false },
    ]);
    expect(c.stats).toMatchObject({ failed: 4, requeued: 2, retried: 1, deadLettered: 1 });
  });

  it("a rejected promise is a failure too", async () => {
    await consuming({}, () => Promise.reject(boom));
    host.ch.deliver(1);
    await flush();
    expect(host.ch.settlements).toEqual([{ op: "reject", tag: 1, requeue: true }]);
    expect(errors).toEqual([boom]);
  });

  it("reject: nacked without requeue at once", async () => {
    await consuming({ onFailure: "reject" }, () => {
      throw boom;
    });
    host.ch.deliver(1);
    await flush();
    expect(host.ch.settlements).toEqual([{ op: "reject", tag: 1, requeue: false }]);
  });

  it("retry: declares the retry topology on a confirm channel; a failure publishes a copy to the retry exchange, then acks", async () => {
    const c = await consuming({ retry: { delays: [500, 2000] } }, () => {
      throw boom;
    });
    const ch = host.ch;
    expect(ch.calls).toEqual(["qos 50", "confirm.select", "consume q"]);
    expect(host.declared).toHaveLength(1);
    expect(host.declared[0]!.exchanges?.[0]?.name).toBe(RETRY_EXCHANGE);
    ch.deliver(7, { properties: { messageId: "m7", headers: { [RETRIES_HEADER]: 1 } } });
    await flush();
    expect(ch.sent).toHaveLength(1);
    const copy = ch.sent[0]!;
    expect(copy).toMatchObject({ exchange: RETRY_EXCHANGE, routingKey: "q", mandatory: true });
    expect(copy.properties.messageId).toBe("m7");
    expect(copy.properties.headers?.[RETRY_DELAY_HEADER]).toBe("2000"); // the 2nd retry's delay
    expect(copy.properties.headers?.[RETRIES_HEADER]).toBe(2);
    expect(ch.settlements).toEqual([]); // not before the copy is confirmed
    ch.confirm();
    await flush();
    expect(ch.settlements).toEqual([{ op: "ack", tag: 7 }]);
    expect(c.stats).toMatchObject({ retried: 1, acked: 0, inFlight: 0 });
  });

  it("retry: a copy the broker nacks leaves the original requeued", async () => {
    const c = await consuming({ retry: { delays: 500 } }, () => {
      throw boom;
    });
    host.ch.deliver(1);
    await flush();
    host.ch.nack();
    await flush();
    expect(host.ch.settlements).toEqual([{ op: "nack", tag: 1, requeue: true }]);
    expect(errors).toHaveLength(2); // the handler's, then the copy's
    expect(c.stats.retried).toBe(0);
  });

  it("retry: the last attempt is rejected (dead-lettered by the queue's DLX), no copy", async () => {
    await consuming({ retry: { delays: 500 }, maxAttempts: 2 }, () => {
      throw boom;
    });
    host.ch.deliver(1, { properties: { headers: { [RETRIES_HEADER]: 1 } } });
    await flush();
    expect(host.ch.sent).toEqual([]);
    expect(host.ch.settlements).toEqual([{ op: "reject", tag: 1, requeue: false }]);
  });
});

describe("timeoutMs", () => {
  it("aborts the handler's signal with TimeoutError, applies the policy, frees its slot, ignores the late result", async () => {
    const gate = new Gate();
    const signals: AbortSignal[] = [];
    const c = await consuming({ timeoutMs: 1000, concurrency: 1 }, (m) => {
      signals.push(m.signal);
      return gate.handler(m);
    });
    host.ch.deliver(1);
    host.ch.deliver(2);
    await run(999);
    expect(signals[0]!.aborted).toBe(false);
    expect(gate.started).toEqual([1]);
    await run(1);
    expect(signals[0]!.aborted).toBe(true);
    expect(signals[0]!.reason).toBeInstanceOf(TimeoutError);
    expect(errors[0]).toBeInstanceOf(TimeoutError);
    expect(host.ch.settlements).toEqual([{ op: "reject", tag: 1, requeue: true }]);
    expect(gate.started).toEqual([1, 2]);
    gate.finish(0); // too late
    await flush();
    expect(host.ch.settlements).toEqual([{ op: "reject", tag: 1, requeue: true }]);
    expect(c.stats).toMatchObject({ failed: 1, acked: 0 });
    expect(c.handled).toBe(1);
  });

  it("a handler done in time is acked and its timer cleared", async () => {
    const gate = new Gate();
    await consuming({ timeoutMs: 1000 }, gate.handler);
    host.ch.deliver(1);
    await run(500);
    gate.finish(0);
    await run(5000);
    expect(host.ch.settlements).toEqual([{ op: "ack", tag: 1 }]);
    expect(errors).toEqual([]);
  });
});

describe("deliveries of a channel that died", () => {
  it("are never settled with their stale tag: the running one is abandoned, the waiting ones dropped", async () => {
    const gate = new Gate();
    const c = await consuming({ concurrency: 1 }, gate.handler);
    const ch1 = host.ch;
    ch1.deliver(1);
    ch1.deliver(2); // waits for the slot
    await flush();
    ch1.die(brokerClose(406, "PRECONDITION_FAILED - unknown delivery tag 9", "basic.ack"));
    await run(0);
    expect(c.state).toBe("resubscribing");
    expect(c.stats.inFlight).toBe(1); // tag 2 was dropped; tag 1's handler still runs
    await run(50);
    expect(c.state).toBe("consuming");
    const ch2 = host.ch;
    expect(ch2).not.toBe(ch1);
    ch2.deliver(1, { redelivered: true }); // the broker's redelivery: the same tag number on the new channel
    await flush();
    expect(gate.started).toEqual([1, 1]); // the dead channel's handler holds no slot
    gate.finish(0); // the dead channel's handler ends
    await flush();
    expect(ch2.settlements).toEqual([]);
    expect(ch1.settlements).toEqual([]);
    ch2.deliver(2); // its end freed no slot on the new channel: this one waits
    await flush();
    expect(gate.started).toEqual([1, 1]);
    gate.finish(1);
    await flush();
    expect(ch2.settlements).toEqual([{ op: "ack", tag: 1 }]);
    expect(gate.started).toEqual([1, 1, 2]);
    gate.finish(2);
    await flush();
    expect(c.stats).toMatchObject({ delivered: 4, acked: 2, inFlight: 0 });
  });

  it("a failed one is not retried on the new channel: abandoned, left to the broker's redelivery", async () => {
    const gate = new Gate();
    await consuming({ retry: { delays: 500 } }, gate.handler);
    const ch1 = host.ch;
    ch1.deliver(1);
    await flush();
    ch1.die(brokerClose(406, "PRECONDITION_FAILED", "basic.ack"));
    await run(100);
    gate.fail(0, new Error("boom"));
    await flush();
    expect(host.ch).not.toBe(ch1);
    expect(host.ch.sent).toEqual([]);
    expect(host.ch.settlements).toEqual([]);
  });
});

describe("cancel() and its drain", () => {
  it("cancels, requeues waiting deliveries, waits up to drainTimeout, then aborts running handlers with TimeoutError", async () => {
    const gate = new Gate();
    const signals: AbortSignal[] = [];
    const c = await consuming({ concurrency: 1 }, (m) => {
      signals.push(m.signal);
      return gate.handler(m);
    });
    const ch = host.ch;
    const tag = c.tag!;
    ch.deliver(1);
    ch.deliver(2);
    await flush();
    const cancelled = track(c.cancel({ drainTimeout: 1000 }));
    await run(0);
    expect(c.state).toBe("draining");
    expect(ch.calls).toContain(`cancel ${tag}`);
    expect(ch.settlements).toEqual([{ op: "nack", tag: 2, requeue: true }]);
    ch.deliver(3, {}, tag); // sent before the cancel-ok: released at once
    await flush();
    expect(ch.settlements.at(-1)).toEqual({ op: "nack", tag: 3, requeue: true });
    expect(gate.started).toEqual([1]);

    await run(999);
    expect(cancelled.status).toBe("pending");
    expect(signals[0]!.aborted).toBe(false);
    await run(1);
    expect(cancelled.status).toBe("resolved");
    expect(c.state).toBe("cancelled");
    expect(signals[0]!.aborted).toBe(true);
    expect(signals[0]!.reason).toBeInstanceOf(TimeoutError);
    expect((signals[0]!.reason as TimeoutError).message).toMatch(/drainTimeout \(1000 ms\)/);
    expect(ch.isOpen).toBe(false);
    gate.finish(0);
    await flush();
    expect(ch.settlements.filter((s) => s.op === "ack")).toEqual([]);
  });

  it("returns once running handlers are done, their acks sent before the channel closes", async () => {
    const gate = new Gate();
    const signals: AbortSignal[] = [];
    const c = await consuming({}, (m) => {
      signals.push(m.signal);
      return gate.handler(m);
    });
    const ch = host.ch;
    ch.deliver(1);
    await flush();
    const cancelled = track(c.cancel({ drainTimeout: 10_000 }));
    await run(100);
    expect(cancelled.status).toBe("pending");
    gate.finish(0);
    await run(0);
    expect(cancelled.status).toBe("resolved");
    expect(ch.settlements).toEqual([{ op: "ack", tag: 1 }]);
    expect(ch.calls.at(-1)).toBe("close");
    expect(signals[0]!.aborted).toBe(false);
  });
});
