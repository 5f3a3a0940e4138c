/**
 * What publishing does when the broker nacks: the same policy for messages in memory and for
 * outbox rows. A nacked message is sent again after a jittered backoff, up to `attempts` sends
 * within `withinMs` of its first nack (the defaults ride out a quorum queue's leader election).
 * A streak of nacks on one channel with no ack between them renews that channel: RabbitMQ keeps
 * nacking on a channel that reached a quorum queue while it had no leader, until it is reopened.
 * Renewals back off too (100 ms doubling to 2 s) until a channel gets an ack.
 */
import type { Channel } from "../amqp/channel.js";

/** `client.publisher({ nackRetry })`: how nacked publishes are sent again. */
export interface NackRetryOptions {
  /** Sends in all, the first included (default 8). */
  attempts?: number;
  /** No retry later than this after the first nack, in ms (default 10000). */
  withinMs?: number;
  /** Backoff before the first retry, in ms (default 200); doubles per attempt, half of it random. */
  initialDelayMs?: number;
  /** Backoff cap, in ms (default 2000). */
  maxDelayMs?: number;
}

/** The nack retry policy when none is given. */
export const DEFAULT_NACK_RETRY: Required<NackRetryOptions> = {
  attempts: 8,
  withinMs: 10_000,
  initialDelayMs: 200,
  maxDelayMs: 2000,
};

/** Equal-jitter backoff before retry number `retry` (1-based): half fixed, half random. */
export function nackRetryDelay(retry: number, o: Required<NackRetryOptions>, random = Math.random): number {
  const base = Math.min(o.maxDelayMs, o.initialDelayMs * 2 ** Math.max(0, retry - 1));
  return base / 2 + random() * (base / 2);
}

/** One message's nacks so far, and when the first came. */
export interface NackCount {
  nacks: number;
  firstNackAt: number;
}

/** The most renewals are spaced (ms), and the least. */
const RENEW_GAP_MAX = 2000;
const RENEW_GAP_MIN = 100;

export class NackRetry {
  /** Messages sent again after a nack, and channels renewed, since the start. */
  retries = 0;
  renewals = 0;
  private streakChannel: Channel | undefined;
  private streak = 0;
  private renewGap = 0;
  private renewNotBefore = 0;

  /**
   * @param policy the retry bound and backoff; undefined: a nack is final
   * @param renewAfter nacks in a row on one channel that renew it (0: never)
   * @param renew closes that channel and opens a fresh one
   */
  constructor(
    private readonly policy: Required<NackRetryOptions> | undefined,
    private readonly renewAfter: number,
    private readonly renew: (ch: Channel) => void,
    private readonly random: () => number = Math.random,
  ) {}

  /**
   * One more nack of the message counted in `count`, sent on `ch`: the backoff (ms) before it is
   * sent again, or undefined when its retries are used up (it fails, or is dead-lettered).
   */
  nacked(ch: Channel | undefined, count: NackCount, now: number): number | undefined {
    if (ch !== undefined) this.streakOn(ch, now);
    count.nacks += 1;
    if (count.nacks === 1) count.firstNackAt = now;
    const p = this.policy;
    if (p === undefined || count.nacks >= p.attempts || now - count.firstNackAt >= p.withinMs)
      return undefined;
    this.retries += 1;
    return nackRetryDelay(count.nacks, p, this.random);
  }

  /** An ack on `ch`: its nack streak (and the renewal backoff) ends. */
  acked(ch: Channel): void {
    if (ch === this.streakChannel) this.streak = 0;
    // Any channel that gets an ack is healthy, the fresh one after a renewal included: renewals
    // start over at the shortest gap (the streak's channel is the old, closed one by then).
    this.renewGap = 0;
  }

  /** One more nack on `ch`: past renewAfter in a row (no ack between), renew the channel. */
  private streakOn(ch: Channel, now: number): void {
    if (ch !== this.streakChannel) {
      this.streakChannel = ch;
      this.streak = 0;
    }
    this.streak += 1;
    if (this.renewAfter <= 0 || this.streak < this.renewAfter || !ch.isOpen) return;
    if (now < this.renewNotBefore) return;
    this.streak = 0;
    this.renewGap = Math.min(RENEW_GAP_MAX, Math.max(RENEW_GAP_MIN, this.renewGap * 2));
    this.renewNotBefore = now + this.renewGap;
    this.renewals += 1;
    this.renew(ch);
  }
}
