/**
 * The publisher's decisions without a broker (src/client/publisher.ts, outbox-relay.ts): the confirm
 * window, nack retries and channel renewal, what is published again after a channel dies, the
 * publishTimeout sweep, close(), publishing without confirms, and the outbox relay. The channel and
 * the client are fakes (test/unit/fakes); time is vitest's fake clock.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { NackRetry } from "../../src/client/nack-retry.js";
import { OutboxRelay } from "../../src/client/outbox-relay.js";
import { type OutgoingMessage, Publisher, type PublisherOptions } from "../../src/client/publisher.js";
import {
  ChannelClosedByBroker,
  ChannelClosedError,
  ClientClosedError,
  ConnectionClosedError,
  PublishNackedError,
  TimeoutError,
  UnroutableError,
} from "../../src/errors.js";
import type { Outbox, StoredMessage } from "../../src/outbox/outbox.js";
import { brokerClose, FakeChannel, flush, type Tracked, track } from "./fakes/fake-channel.js";
import { FakePublisherHost } from "./fakes/fake-publisher-host.js";

const msg = (n: number | string, exchange = "ex"): OutgoingMessage => ({
  exchange,
  routingKey: "rk",
  body: `m${n}`,
});

/** The bodies sent on a channel, in order. */
const bodies = (ch: FakeChannel): string[] => ch.sent.map((s) => String(s.body));

const statuses = (ps: Tracked<void>[]): string[] => ps.map((p) => p.status);

/** Moves the fake clock, then lets the promise callbacks it released run. */
async function run(ms: number): Promise<void> {
  await flush();
  await vi.advanceTimersByTimeAsync(ms);
  await flush();
}

let host: FakePublisherHost;
let publishers: Publisher[];

function publisher(options: PublisherOptions = {}, h: FakePublisherHost = host): Publisher {
  const p = new Publisher(h, options);
  publishers.push(p);
  return p;
}

beforeEach(() => {
  vi.useFakeTimers();
  host = new FakePublisherHost();
  publishers = [];
});

afterEach(async () => {
  // Stops the sweep timers; close(0) still waits one (fake) timer turn for what is pending.
  const closing = Promise.all(publishers.map((p) => p.close(0)));
  await vi.advanceTimersByTimeAsync(0);
  await closing;
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe("the confirm window (maxInFlight)", () => {
  it("sends up to maxInFlight, backlogs the rest, and releases them in order as confirms come", async () => {
    const ch = host.open();
    const p = publisher({ maxInFlight: 2 });
    const ps = [1, 2, 3, 4, 5].map((n) => track(p.publish(msg(n))));
    expect(bodies(ch)).toEqual(["m1", "m2"]);
    expect(p.pending).toBe(2);
    expect(p.gauges().unsettled).toBe(5);

    ch.confirm();
    await flush();
    expect(statuses(ps)).toEqual(["resolved", "pending", "pending", "pending", "pending"]);
    expect(bodies(ch)).toEqual(["m1", "m2", "m3"]);
    expect(p.pending).toBe(2);
    expect(p.gauges().unsettled).toBe(4);

    ch.confirm(2);
    await flush();
    expect(bodies(ch)).toEqual(["m1", "m2", "m3", "m4", "m5"]);
    expect(p.gauges().unsettled).toBe(2);
    ch.confirm(2);
    await flush();
    expect(statuses(ps)).toEqual(["resolved", "resolved", "resolved", "resolved", "resolved"]);
    expect(p.pending).toBe(0);
    expect(p.gauges().unsettled).toBe(0);
  });

  it("a publish while the window is full waits in the backlog and goes out when a confirm frees a slot", async () => {
    const ch = host.open();
    const p = publisher({ maxInFlight: 1 });
    track(p.publish(msg(1)));
    track(p.publish(msg(2))); // backlog
    ch.confirm(); // m2 moves up and is sent
    track(p.publish(msg(3))); // the window is full again: backlog
    await flush();
    expect(bodies(ch)).toEqual(["m1", "m2"]);
    ch.confirm();
    await flush();
    expect(bodies(ch)).toEqual(["m1", "m2", "m3"]);
  });

  it("queues messages while there is no channel, and sends them in order once it opens", async () => {
    const p = publisher();
    const ps = [1, 2, 3].map((n) => track(p.publish(msg(n))));
    expect(p.pending).toBe(3);
    await flush();
    const ch = host.open();
    await flush();
    expect(bodies(ch)).toEqual(["m1", "m2", "m3"]);
    ch.confirm(3);
    await flush();
    expect(statuses(ps)).toEqual(["resolved", "resolved", "resolved"]);
  });

  it("messageIds: gives every message a message-id (kept when given); persistent maps to deliveryMode", () => {
    const ch = host.open();
    const p = publisher({ messageIds: true });
    track(p.publish({ ...msg(1), properties: { persistent: true } }));
    track(p.publish({ ...msg(2), properties: { messageId: "mine", persistent: false } }));
    expect(ch.sent[0]!.properties.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(ch.sent[0]!.properties.deliveryMode).toBe(2);
    expect(ch.sent[0]!.properties).not.toHaveProperty("persistent");
    expect(ch.sent[1]!.properties.messageId).toBe("mine");
    expect(ch.sent[1]!.properties.deliveryMode).toBe(1);
    // No properties at all: a message-id, nothing else, a new one per message.
    track(p.publish(msg(3)));
    track(p.publish(msg(4)));
    expect(Object.keys(ch.sent[2]!.properties)).toEqual(["messageId"]);
    expect(ch.sent[2]!.properties.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(ch.sent[3]!.properties.messageId).not.toBe(ch.sent[2]!.properties.messageId);
  });

  it("without messageIds sends the properties given and nothing more", () => {
    const ch = host.open();
    const p = publisher();
    const mine = { persistent: true, contentType: "text/plain" };
    track(p.publish(msg(1)));
    track(p.publish({ ...msg(2), properties: mine }));
    expect(ch.sent[0]!.properties).toEqual({});
    expect(ch.sent[1]!.properties).toEqual({ contentType: "text/plain", deliveryMode: 2 });
    expect(mine).toEqual({ persistent: true, contentType: "text/plain" }); // the caller's object untouched
  });

  it("rejects at once when the client is closed", async () => {
    host.closed = true;
    const p = publisher();
    const r = track(p.publish(msg(1)));
    await flush();
    expect(r.error).toBeInstanceOf(ClientClosedError);
  });
});

describe("nack retry", () => {
  it("sends a nacked message again after its jittered backoff, doubling per attempt, and resolves on the ack", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0.5); // equal jitter: 3/4 of the base
    const ch = host.open();
    const p = publisher({ messageIds: true });
    const r = track(p.publish(msg(1)));
    ch.nack();
    await run(149); // base 200 → 150 ms
    expect(bodies(ch)).toEqual(["m1"]);
    expect(p.pending).toBe(1);
    await run(1);
    expect(bodies(ch)).toEqual(["m1", "m1"]);
    ch.nack();
    await run(299); // base 400 → 300 ms
    expect(ch.sent).toHaveLength(2);
    await run(1);
    expect(ch.sent).toHaveLength(3);
    expect(ch.sent[2]!.properties.messageId).toBe(ch.sent[0]!.properties.messageId);
    ch.confirm();
    await flush();
    expect(r.status).toBe("resolved");
    expect(p.counters.nackRetries).toBe(2);
  });

  it("keeps the original order: a message nacked after another is never sent before it", async () => {
    // m1's backoff is the longest (random 1), m2's the shortest (random 0).
    vi.spyOn(Math, "random").mockReturnValueOnce(1).mockReturnValueOnce(0);
    const ch = host.open();
    const p = publisher({ nackRetry: { initialDelayMs: 200 } });
    track(p.publish(msg(1)));
    track(p.publish(msg(2)));
    track(p.publish(msg(3)));
    ch.nack(2); // m1 due at 200, m2 at 100 on its own
    await run(199);
    expect(bodies(ch)).toEqual(["m1", "m2", "m3"]);
    await run(1);
    expect(bodies(ch)).toEqual(["m1", "m2", "m3", "m1", "m2"]);
  });

  it("sends nacked messages again before those queued after them", async () => {
    vi.spyOn(Math, "random").mockReturnValue(0);
    const ch = host.open();
    const p = publisher({ maxInFlight: 2, nackRetry: { initialDelayMs: 100 } });
    track(p.publish(msg(1)));
    track(p.publish(msg(2)));
    track(p.publish(msg(3))); // backlog
    ch.nack(); // m1 waits 50 ms; its slot stays taken
    await flush();
    expect(bodies(ch)).toEqual(["m1", "m2"]);
    ch.confirm(); // m2: m3 is sent
    await flush();
    expect(bodies(ch)).toEqual(["m1", "m2", "m3"]);
    await run(50);
    expect(bodies(ch)).toEqual(["m1", "m2", "m3", "m1"]);
  });

  it("gives up after `attempts` sends: PublishNackedError carrying the attempts", async () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    const ch = host.open();
    const p = publisher({ nackRetry: { attempts: 3, initialDelayMs: 10, maxDelayMs: 10 } });
    const r = track(p.publish(msg(1)));
    ch.nack();
    await run(10);
    ch.nack();
    await run(10);
    expect(ch.sent).toHaveLength(3);
    ch.nack();
    await run(1000);
    expect(ch.sent).toHaveLength(3);
    expect(r.error).toBeInstanceOf(PublishNackedError);
    const e = r.error as PublishNackedError;
    expect(e.attempts).toBe(3);
    expect(e.message).toMatch(/nacked the publish 3 times within 20 ms/);
    expect(e.cause).toBeInstanceOf(PublishNackedError);
    expect(p.pending).toBe(0);
  });

  it("gives up once withinMs has passed since the first nack, whatever attempts are left", async () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    const ch = host.open();
    const p = publisher({
      nackRetry: { attempts: 100, withinMs: 250, initialDelayMs: 100, maxDelayMs: 100 },
    });
    const r = track(p.publish(msg(1)));
    for (let i = 0; i < 3; i++) {
      ch.nack(); // at 0, 100, 200: sent again 100 ms later
      await run(100);
    }
    expect(ch.sent).toHaveLength(4);
    ch.nack(); // at 300: past withinMs
    await run(1000);
    expect(ch.sent).toHaveLength(4);
    expect(r.error).toBeInstanceOf(PublishNackedError);
    expect((r.error as PublishNackedError).attempts).toBe(4);
  });

  it("nackRetry: false: the first nack is final", async () => {
    const ch = host.open();
    const p = publisher({ nackRetry: false });
    const r = track(p.publish(msg(1)));
    ch.nack();
    await run(10_000);
    expect(ch.sent).toHaveLength(1);
    expect(r.error).toBeInstanceOf(PublishNackedError);
    expect((r.error as PublishNackedError).attempts).toBe(1);
    expect(p.counters.nackRetries).toBe(0);
  });

  it("refuses nackRetry options that allow no send", () => {
    expect(() => publisher({ nackRetry: { attempts: 0 } })).toThrow(/attempts must be at least 1/);
  });
});

describe("channel renewal after a nack streak", () => {
  const longBackoff: PublisherOptions = { nackRetry: { initialDelayMs: 60_000, maxDelayMs: 60_000 } };

  it("renews the channel after renewAfterNacks nacks in a row", async () => {
    const ch = host.open();
    const p = publisher({ ...longBackoff, renewAfterNacks: 3 });
    for (const n of [1, 2, 3]) track(p.publish(msg(n)));
    ch.nack(2);
    expect(host.renewed).toEqual([]);
    ch.nack();
    expect(host.renewed).toEqual([ch]);
    expect(p.counters.channelRenewals).toBe(1);
  });

  it("an ack between nacks ends the streak", async () => {
    const ch = host.open();
    const p = publisher({ ...longBackoff, renewAfterNacks: 3 });
    for (const n of [1, 2, 3, 4, 5, 6]) track(p.publish(msg(n)));
    ch.nack(2);
    ch.confirm();
    ch.nack(2);
    expect(host.renewed).toEqual([]);
    ch.nack();
    expect(host.renewed).toEqual([ch]);
  });

  it("renewAfterNacks: 0 never renews", () => {
    const ch = host.open();
    const p = publisher({ ...longBackoff, renewAfterNacks: 0 });
    for (let n = 0; n < 10; n++) track(p.publish(msg(n)));
    ch.nack(10);
    expect(host.renewed).toEqual([]);
  });

  it("renewals back off: a streak continuing within 100 ms of the last renewal waits", async () => {
    const ch = host.open(); // the fake host leaves it open: the streak goes on on the same channel
    const p = publisher({ ...longBackoff, renewAfterNacks: 2 });
    for (let n = 0; n < 8; n++) track(p.publish(msg(n)));
    ch.nack(2);
    expect(host.renewed).toHaveLength(1);
    await run(99);
    ch.nack(2);
    expect(host.renewed).toHaveLength(1);
    await run(1);
    ch.nack();
    expect(host.renewed).toHaveLength(2);
    expect(p.counters.channelRenewals).toBe(2);
  });

  it("what was unconfirmed on a renewed channel goes out on the new one, nacked ones after their backoff", async () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    const ch1 = host.open();
    const p = publisher({ renewAfterNacks: 2, nackRetry: { initialDelayMs: 100, maxDelayMs: 100 } });
    const ps = [1, 2, 3].map((n) => track(p.publish(msg(n))));
    ch1.nack(2);
    expect(host.renewed).toEqual([ch1]);
    await ch1.close(); // what the client does on renew(): m3 was unconfirmed
    const ch2 = host.open();
    await flush();
    expect(bodies(ch2)).toEqual(["m3"]);
    await run(100);
    expect(bodies(ch2)).toEqual(["m3", "m1", "m2"]);
    ch2.confirm(3);
    await flush();
    expect(statuses(ps)).toEqual(["resolved", "resolved", "resolved"]);
  });
});

describe("publishing again after a channel dies", () => {
  it.each([
    ["the connection closed", () => new ConnectionClosedError("socket closed")],
    ["the channel closed", () => new ChannelClosedError("channel closed")],
    [
      "a broker close caused by another method",
      () => brokerClose(406, "PRECONDITION_FAILED", "queue.declare"),
    ],
  ])("%s: sent again on the next channel, in original order, with the same message-ids", async (_, error) => {
    const ch1 = host.open();
    const p = publisher({ messageIds: true });
    const ps = [1, 2, 3].map((n) => track(p.publish(msg(n))));
    ch1.confirm();
    ch1.die(error());
    await flush();
    expect(statuses(ps)).toEqual(["resolved", "pending", "pending"]);
    expect(p.pending).toBe(2);
    const ch2 = host.open();
    await flush();
    expect(bodies(ch2)).toEqual(["m2", "m3"]);
    expect(ch2.sent.map((s) => s.properties.messageId)).toEqual(
      ch1.sent.slice(1).map((s) => s.properties.messageId),
    );
    ch2.confirm(2);
    await flush();
    expect(statuses(ps)).toEqual(["resolved", "resolved", "resolved"]);
  });

  it("sends what is published again before what was queued meanwhile", async () => {
    const ch1 = host.open();
    const p = publisher();
    track(p.publish(msg(1)));
    track(p.publish(msg(2)));
    ch1.die(new ConnectionClosedError("socket closed"));
    track(p.publish(msg(3)));
    await flush();
    const ch2 = host.open();
    await flush();
    expect(bodies(ch2)).toEqual(["m1", "m2", "m3"]);
  });

  it("republish: false rejects what was unconfirmed with the channel's error", async () => {
    const ch1 = host.open();
    const p = publisher({ republish: false });
    const r = track(p.publish(msg(1)));
    ch1.die(new ConnectionClosedError("socket closed"));
    await flush();
    expect(r.error).toBeInstanceOf(ChannelClosedError);
    expect((r.error as ChannelClosedError).cause).toBeInstanceOf(ConnectionClosedError);
    const ch2 = host.open();
    await flush();
    expect(ch2.sent).toEqual([]);
    expect(p.pending).toBe(0);
  });

  it("a broker close refusing a publish to an exchange rejects messages to it and sends the others again", async () => {
    const ch1 = host.open();
    const p = publisher();
    const toMissing = track(p.publish(msg(1, "missing")));
    const toOther = track(p.publish(msg(2, "other")));
    const refusal = brokerClose(404, "NOT_FOUND - no exchange 'missing' in vhost '/'", "basic.publish");
    ch1.die(refusal);
    await flush();
    expect(toMissing.error).toBeInstanceOf(ChannelClosedByBroker);
    expect(toMissing.error).toBe(refusal);
    expect(toOther.status).toBe("pending");
    const ch2 = host.open();
    await flush();
    expect(ch2.sent.map((s) => s.exchange)).toEqual(["other"]);
  });

  it("an unroutable mandatory message is rejected with UnroutableError, not sent again", async () => {
    const ch = host.open();
    const p = publisher();
    const r = track(p.publish({ ...msg(1), mandatory: true }));
    expect(ch.sent[0]!.mandatory).toBe(true);
    ch.returnNext();
    await run(10_000);
    expect(r.error).toBeInstanceOf(UnroutableError);
    expect(ch.sent).toHaveLength(1);
  });

  it("a channel handed over already closed is waited out: the message goes on the next one", async () => {
    const closed = new FakeChannel();
    closed.state = "closed";
    vi.spyOn(host, "channel").mockResolvedValueOnce(closed.channel);
    const p = publisher();
    const r = track(p.publish(msg(1)));
    await flush();
    const ch2 = host.open();
    await run(49); // looked at again 50 ms later
    expect(closed.sent).toEqual([]);
    expect(ch2.sent).toEqual([]);
    await run(1);
    expect(bodies(ch2)).toEqual(["m1"]);
    ch2.confirm();
    await flush();
    expect(r.status).toBe("resolved");
  });
});

describe("publishTimeout", () => {
  it("rejects a message not sent within it with TimeoutError naming the state (not connected)", async () => {
    const p = publisher({ publishTimeout: 500 });
    const r = track(p.publish(msg(1)));
    await run(499);
    expect(r.status).toBe("pending");
    await run(501);
    expect(r.error).toBeInstanceOf(TimeoutError);
    expect((r.error as TimeoutError).message).toMatch(
      /not sent within 500 ms \(the client was not connected\)/,
    );
    expect(p.pending).toBe(0);
  });

  it("while the broker blocks the connection: nothing is sent, the timeout names the block", async () => {
    const ch = host.open();
    host.blocked = true;
    const p = publisher({ publishTimeout: 500 });
    const late = track(p.publish(msg(1)));
    await run(600);
    const resumed = track(p.publish(msg(2)));
    await run(400);
    expect(ch.sent).toEqual([]);
    expect(late.error).toBeInstanceOf(TimeoutError);
    expect((late.error as TimeoutError).message).toMatch(/blocked by the broker/);
    expect(resumed.status).toBe("pending");
    host.blocked = false;
    host.setState("running");
    expect(bodies(ch)).toEqual(["m2"]);
  });

  it("a message waiting for room in the window times out too; those sent stay", async () => {
    const ch = host.open();
    const p = publisher({ maxInFlight: 1, publishTimeout: 500 });
    const sent = track(p.publish(msg(1)));
    const waiting = track(p.publish(msg(2)));
    await run(1000);
    expect(waiting.error).toBeInstanceOf(TimeoutError);
    expect((waiting.error as TimeoutError).message).toMatch(
      /no room among 1 in-flight messages within 500 ms/,
    );
    expect(sent.status).toBe("pending");
    ch.confirm();
    await flush();
    expect(sent.status).toBe("resolved");
    expect(bodies(ch)).toEqual(["m1"]);
  });

  it("a message sent (awaiting its confirm) never times out", async () => {
    const ch = host.open();
    const p = publisher({ publishTimeout: 500 });
    const r = track(p.publish(msg(1)));
    await run(5000);
    expect(r.status).toBe("pending");
    ch.confirm();
    await flush();
    expect(r.status).toBe("resolved");
  });
});

describe("close()", () => {
  it("waits (bounded) for what is pending, then rejects what is left with ClientClosedError", async () => {
    const p = publisher();
    const ps = [1, 2].map((n) => track(p.publish(msg(n))));
    const closed = track(p.close(300));
    await run(299);
    expect(closed.status).toBe("pending");
    expect(statuses(ps)).toEqual(["pending", "pending"]);
    await run(1);
    expect(closed.status).toBe("resolved");
    for (const r of ps) expect(r.error).toBeInstanceOf(ClientClosedError);
    const after = track(p.publish(msg(3)));
    await flush();
    expect(after.error).toBeInstanceOf(ClientClosedError);
  });

  it("returns as soon as the last confirm comes", async () => {
    const ch = host.open();
    const p = publisher();
    const r = track(p.publish(msg(1)));
    const closed = track(p.close(10_000));
    await flush();
    expect(closed.status).toBe("pending");
    ch.confirm();
    await flush();
    expect(r.status).toBe("resolved");
    expect(closed.status).toBe("resolved");
  });

  it("rejects messages in their nack backoff and in the backlog; names the client's failure as cause", async () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    const ch = host.open();
    const p = publisher({ maxInFlight: 1 });
    const nacked = track(p.publish(msg(1)));
    const backlog = track(p.publish(msg(2)));
    ch.nack();
    const cause = new ConnectionClosedError("gone");
    const closed = p.close(0, cause);
    await run(0);
    await closed;
    await run(10_000);
    expect(nacked.error).toBeInstanceOf(ClientClosedError);
    expect(backlog.error).toBeInstanceOf(ClientClosedError);
    expect((nacked.error as ClientClosedError).cause).toBe(cause);
    expect((nacked.error as ClientClosedError).message).toMatch(/ConnectionClosedError/);
    expect(ch.sent).toHaveLength(1); // the nacked one was not sent again
  });

  it("what was unconfirmed when the channel dies after close() is rejected, not published again", async () => {
    const ch1 = host.open();
    const p = publisher();
    const r = track(p.publish(msg(1)));
    const closed = p.close(0);
    await run(0);
    await closed;
    ch1.die(new ConnectionClosedError("socket closed"));
    await flush();
    expect(r.error).toBeInstanceOf(ChannelClosedError);
    const ch2 = host.open();
    await flush();
    expect(ch2.sent).toEqual([]);
  });
});

describe("without confirms (confirm: false)", () => {
  beforeEach(() => {
    host = new FakePublisherHost(false);
  });

  it("resolves once written while the write buffer has room", async () => {
    const ch = host.open();
    const p = publisher({ confirm: false });
    const r = track(p.publish(msg(1)));
    expect(bodies(ch)).toEqual(["m1"]);
    await flush();
    expect(r.status).toBe("resolved");
    expect(p.pending).toBe(0);
  });

  it("past the high-water mark: resolves once the socket drained, and sends nothing more until then", async () => {
    const ch = host.open();
    ch.highWater = 2; // the 2nd publish fills the buffer
    const p = publisher({ confirm: false });
    const ps = [1, 2, 3].map((n) => track(p.publish(msg(n))));
    await flush();
    expect(bodies(ch)).toEqual(["m1", "m2"]);
    expect(statuses(ps)).toEqual(["resolved", "pending", "pending"]);
    ch.drain();
    await flush();
    expect(bodies(ch)).toEqual(["m1", "m2", "m3"]);
    expect(statuses(ps)).toEqual(["resolved", "resolved", "resolved"]);
  });

  it("a message written past the mark whose channel closes before the drain is sent again on the next one", async () => {
    const ch1 = host.open();
    ch1.highWater = 1;
    const p = publisher({ confirm: false });
    const r = track(p.publish(msg(1)));
    ch1.die(new ConnectionClosedError("socket closed"));
    await flush();
    expect(r.status).toBe("pending");
    const ch2 = host.open();
    await flush();
    expect(bodies(ch2)).toEqual(["m1"]);
    expect(r.status).toBe("resolved");
  });
});

// ─── the outbox relay ───────────────────────────────────────────────────────

/** The members of Outbox the relay calls, over a plain map. */
/**
 * One relay pass: a pass is run on setImmediate, which the fake clock runs 1 ms later when it is
 * asked for during a timer or a pass.
 */
const pass = (): Promise<void> => run(5);

class FakeOutbox {
  readonly rows = new Map<number, StoredMessage>();
  readonly confirmedIds: number[] = [];
  readonly dead: { id: number; reason: string }[] = [];

  constructor(n: number, exchange = "ex") {
    for (let id = 1; id <= n; id++)
      this.rows.set(id, {
        id,
        exchange,
        routingKey: "rk",
        mandatory: false,
        properties: { messageId: `id-${id}` },
        body: Buffer.from(`row${id}`),
      });
  }

  get outbox(): Outbox {
    return this as unknown as Outbox;
  }

  pending(afterId: number, limit: number): StoredMessage[] {
    return [...this.rows.values()]
      .filter((r) => r.id > afterId)
      .sort((a, b) => a.id - b.id)
      .slice(0, limit);
  }

  confirmed(id: number): void {
    this.rows.delete(id);
    this.confirmedIds.push(id);
  }

  deadLetter(id: number, reason: string): void {
    this.rows.delete(id);
    this.dead.push({ id, reason });
  }
}

describe("OutboxRelay", () => {
  function relay(
    outbox: FakeOutbox,
    options: { maxInFlight?: number; attempts?: number; renewAfter?: number } = {},
  ): OutboxRelay {
    const nackRetry = new NackRetry(
      { attempts: options.attempts ?? 3, withinMs: 10_000, initialDelayMs: 100, maxDelayMs: 100 },
      options.renewAfter ?? 0,
      (ch) => host.renew(ch),
      () => 1,
    );
    const r: OutboxRelay = new OutboxRelay(outbox.outbox, host, nackRetry, {
      maxInFlight: options.maxInFlight ?? 10,
      timeout: 1000,
      settled: () => r.schedule(),
    });
    return r;
  }

  it("sends rows in id order, at most maxInFlight unconfirmed, deleting each on its confirm", async () => {
    const ch = host.open();
    const outbox = new FakeOutbox(3);
    const r = relay(outbox, { maxInFlight: 2 });
    r.schedule();
    await pass();
    expect(bodies(ch)).toEqual(["row1", "row2"]);
    expect(r.unsettled).toBe(2);
    ch.confirm();
    await pass();
    expect(outbox.confirmedIds).toEqual([1]);
    expect(bodies(ch)).toEqual(["row1", "row2", "row3"]);
    ch.confirm(2);
    await pass();
    expect(outbox.confirmedIds).toEqual([1, 2, 3]);
    expect(r.unsettled).toBe(0);
    r.close();
  });

  it("sends a nacked row again after its backoff, and dead-letters it once its attempts are used up", async () => {
    const ch = host.open();
    const outbox = new FakeOutbox(1);
    const r = relay(outbox, { attempts: 2 });
    r.schedule();
    await pass();
    ch.nack(); // sent again 100 ms later
    await run(90);
    expect(ch.sent).toHaveLength(1);
    expect(r.unsettled).toBe(1);
    await run(20);
    expect(ch.sent).toHaveLength(2);
    ch.nack();
    await run(1000);
    expect(ch.sent).toHaveLength(2);
    expect(outbox.dead).toHaveLength(1);
    expect(outbox.dead[0]!.reason).toMatch(/^PublishNackedError: .*\(nacked 2 times\)$/);
    expect(r.unsettled).toBe(0);
    r.close();
  });

  it("dead-letters an unroutable row at once", async () => {
    const ch = host.open();
    const outbox = new FakeOutbox(1);
    const r = relay(outbox);
    r.schedule();
    await pass();
    ch.returnNext();
    await run(1000);
    expect(outbox.dead.map((d) => d.id)).toEqual([1]);
    expect(outbox.dead[0]!.reason).toMatch(/^UnroutableError:/);
    expect(ch.sent).toHaveLength(1);
    r.close();
  });

  it("rows whose channel died are read again on the next channel; a refusal of their exchange dead-letters them", async () => {
    const ch1 = host.open();
    const outbox = new FakeOutbox(2, "other");
    outbox.rows.set(3, { ...outbox.rows.get(1)!, id: 3, exchange: "missing", body: Buffer.from("row3") });
    const r = relay(outbox);
    r.schedule();
    await pass();
    expect(bodies(ch1)).toEqual(["row1", "row2", "row3"]);
    ch1.die(brokerClose(404, "NOT_FOUND - no exchange 'missing' in vhost '/'", "basic.publish"));
    await pass();
    expect(outbox.dead.map((d) => d.id)).toEqual([3]);
    const ch2 = host.open();
    await pass();
    expect(bodies(ch2)).toEqual(["row1", "row2"]);
    ch2.confirm(2);
    await pass();
    expect(outbox.confirmedIds).toEqual([1, 2]);
    r.close();
  });

  it("after close() nothing is sent, and a late confirm leaves the row stored", async () => {
    const ch = host.open();
    const outbox = new FakeOutbox(1);
    const r = relay(outbox);
    r.schedule();
    await pass();
    r.close();
    ch.confirm();
    r.schedule();
    await run(1000);
    expect(outbox.confirmedIds).toEqual([]);
    expect(outbox.rows.size).toBe(1);
    expect(ch.sent).toHaveLength(1);
  });
});
