/**
 * The nack policy shared by the publisher and the outbox relay (src/client/nack-retry.ts): the
 * equal-jitter backoff, the attempts / withinMs bound, and channel renewal after a nack streak
 * with its own backoff. Time is passed in (`now`), the random source injected.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Channel } from "../../src/amqp/channel.js";
import {
  DEFAULT_NACK_RETRY,
  type NackCount,
  NackRetry,
  type NackRetryOptions,
  nackRetryDelay,
} from "../../src/client/nack-retry.js";
import { FakeChannel } from "./fakes/fake-channel.js";

const policy = (o: NackRetryOptions = {}): Required<NackRetryOptions> => ({ ...DEFAULT_NACK_RETRY, ...o });

const count = (): NackCount => ({ nacks: 0, firstNackAt: 0 });

describe("nackRetryDelay", () => {
  it("is half fixed, half random: base/2 with random 0, the base with random 1", () => {
    const o = policy({ initialDelayMs: 200, maxDelayMs: 2000 });
    expect(nackRetryDelay(1, o, () => 0)).toBe(100);
    expect(nackRetryDelay(1, o, () => 1)).toBe(200);
    expect(nackRetryDelay(1, o, () => 0.5)).toBe(150);
  });

  it("doubles per retry up to maxDelayMs", () => {
    const o = policy({ initialDelayMs: 200, maxDelayMs: 2000 });
    expect([1, 2, 3, 4, 5, 6, 10].map((n) => nackRetryDelay(n, o, () => 1))).toEqual([
      200, 400, 800, 1600, 2000, 2000, 2000,
    ]);
  });

  it("property: within [base/2, base] where base = min(max, initial·2^(retry-1))", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (retry, initialDelayMs, maxDelayMs, r) => {
          const o = policy({ initialDelayMs, maxDelayMs });
          const base = Math.min(maxDelayMs, initialDelayMs * 2 ** (retry - 1));
          const d = nackRetryDelay(retry, o, () => r);
          return d >= base / 2 && d <= base;
        },
      ),
    );
  });

  it("the defaults' retries span 4.5 to 9 s, riding out a quorum queue's leader election", () => {
    const o = DEFAULT_NACK_RETRY;
    const total = (r: number) => {
      let sum = 0;
      for (let n = 1; n < o.attempts; n++) sum += nackRetryDelay(n, o, () => r);
      return sum;
    };
    expect(total(0)).toBe(4500);
    expect(total(1)).toBe(9000);
  });
});

describe("NackRetry: the retry bound", () => {
  it("gives a backoff until the attempts-th nack, then undefined (the message fails)", () => {
    const nr = new NackRetry(
      policy({ attempts: 3 }),
      0,
      () => undefined,
      () => 0,
    );
    const c = count();
    expect(nr.nacked(undefined, c, 1000)).toBe(100);
    expect(nr.nacked(undefined, c, 1100)).toBe(200);
    expect(nr.nacked(undefined, c, 1300)).toBeUndefined();
    expect(c).toEqual({ nacks: 3, firstNackAt: 1000 });
    expect(nr.retries).toBe(2);
  });

  it("gives up once withinMs passed since the first nack, however many attempts are left", () => {
    const nr = new NackRetry(
      policy({ attempts: 100, withinMs: 1000 }),
      0,
      () => undefined,
      () => 0,
    );
    const c = count();
    expect(nr.nacked(undefined, c, 5000)).toBeDefined();
    expect(nr.nacked(undefined, c, 5999)).toBeDefined();
    expect(nr.nacked(undefined, c, 6000)).toBeUndefined();
    expect(c.firstNackAt).toBe(5000);
  });

  it("without a policy the first nack is final", () => {
    const nr = new NackRetry(undefined, 0, () => undefined);
    const c = count();
    expect(nr.nacked(undefined, c, 0)).toBeUndefined();
    expect(c.nacks).toBe(1);
    expect(nr.retries).toBe(0);
  });

  it("counts each message on its own", () => {
    const nr = new NackRetry(
      policy({ attempts: 2 }),
      0,
      () => undefined,
      () => 0,
    );
    const a = count();
    const b = count();
    expect(nr.nacked(undefined, a, 0)).toBeDefined();
    expect(nr.nacked(undefined, b, 0)).toBeDefined();
    expect(nr.nacked(undefined, a, 0)).toBeUndefined();
    expect(b.nacks).toBe(1);
  });
});

describe("NackRetry: channel renewal after a nack streak", () => {
  function setup(renewAfter = 3) {
    const renewed: Channel[] = [];
    const nr = new NackRetry(
      policy(),
      renewAfter,
      (ch) => renewed.push(ch),
      () => 0,
    );
    return { nr, renewed };
  }
  const open = (): Channel => new FakeChannel().channel;

  it("renews after renewAfter nacks in a row on one channel, then starts a new streak", () => {
    const { nr, renewed } = setup(3);
    const ch = open();
    nr.nacked(ch, count(), 0);
    nr.nacked(ch, count(), 0);
    expect(renewed).toEqual([]);
    nr.nacked(ch, count(), 0);
    expect(renewed).toEqual([ch]);
    expect(nr.renewals).toBe(1);
    nr.nacked(ch, count(), 10_000);
    nr.nacked(ch, count(), 10_000);
    expect(renewed).toHaveLength(1);
  });

  it("counts nacks of any message, retried or not: a message out of retries still counts", () => {
    const renewed: Channel[] = [];
    const nr = new NackRetry(undefined, 2, (ch) => renewed.push(ch));
    const ch = open();
    nr.nacked(ch, count(), 0);
    nr.nacked(ch, count(), 0);
    expect(renewed).toEqual([ch]);
  });

  it("an ack on the streak's channel ends it; an ack on another channel does not", () => {
    const { nr, renewed } = setup(3);
    const ch = open();
    nr.nacked(ch, count(), 0);
    nr.nacked(ch, count(), 0);
    nr.acked(ch);
    nr.nacked(ch, count(), 0);
    nr.nacked(ch, count(), 0);
    expect(renewed).toEqual([]);
    nr.acked(open());
    nr.nacked(ch, count(), 0);
    expect(renewed).toEqual([ch]);
  });

  it("a nack on another channel starts the streak over", () => {
    const { nr, renewed } = setup(2);
    const a = open();
    const b = open();
    nr.nacked(a, count(), 0);
    nr.nacked(b, count(), 0);
    nr.nacked(a, count(), 0);
    expect(renewed).toEqual([]);
    nr.nacked(a, count(), 0);
    expect(renewed).toEqual([a]);
  });

  it("never renews with renewAfter 0, nor a channel that is not open", () => {
    const never = setup(0);
    const ch = open();
    for (let i = 0; i < 10; i++) never.nr.nacked(ch, count(), 0);
    expect(never.renewed).toEqual([]);

    const { nr, renewed } = setup(1);
    const closed = new FakeChannel();
    closed.state = "closed";
    nr.nacked(closed.channel, count(), 0);
    expect(renewed).toEqual([]);
  });

  it("renewals back off: 100 ms doubling to 2 s between them while no ack comes", () => {
    const { nr, renewed } = setup(1);
    const ch = open();
    const times: number[] = [];
    for (let now = 0; now <= 10_000; now += 10) {
      const before = renewed.length;
      nr.nacked(ch, count(), now);
      if (renewed.length > before) times.push(now);
    }
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps.slice(0, 7)).toEqual([100, 200, 400, 800, 1600, 2000, 2000]);
  });

  it("an ack resets the renewal backoff to 100 ms", () => {
    const { nr, renewed } = setup(1);
    const ch = open();
    nr.nacked(ch, count(), 0); // renewal, next one no sooner than 100
    nr.nacked(ch, count(), 100); // renewal, next no sooner than 300
    nr.nacked(ch, count(), 300); // renewal, next no sooner than 700
    expect(renewed).toHaveLength(3);
    nr.acked(ch);
    nr.nacked(ch, count(), 700); // renewal: the backoff starts over
    nr.nacked(ch, count(), 799);
    expect(renewed).toHaveLength(4);
    nr.nacked(ch, count(), 800);
    expect(renewed).toHaveLength(5);
  });

  it("an ack on the fresh channel after a renewal resets the renewal backoff too", () => {
    const { nr, renewed } = setup(1);
    const ch1 = open();
    const ch2 = open();
    nr.nacked(ch1, count(), 0); // renewal of ch1: next no sooner than 100
    nr.nacked(ch1, count(), 100); // renewal: next no sooner than 300
    expect(renewed).toEqual([ch1, ch1]);
    nr.acked(ch2); // the fresh channel works
    nr.nacked(ch2, count(), 60_000); // a new incident: renewal, next no sooner than 60 100
    nr.nacked(ch2, count(), 60_100); // 100 ms later: allowed again, the backoff started over
    expect(renewed).toEqual([ch1, ch1, ch2, ch2]);
  });

  it("a nack with no channel counts toward no streak", () => {
    const { nr, renewed } = setup(1);
    nr.nacked(undefined, count(), 0);
    expect(renewed).toEqual([]);
    expect(nr.renewals).toBe(0);
  });
});
