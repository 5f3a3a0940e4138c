import type { Span } from "@opentelemetry/api";
import type { Channel } from "../amqp/channel.js";
import {
  ChannelClosedByBroker,
  ChannelClosedError,
  ClientClosedError,
  ConfigError,
  ConnectionClosedError,
  ConnectionError,
  PublishNackedError,
  TimeoutError,
  UnroutableError,
} from "../errors.js";
import { refusedPublishTo } from "../faults.js";
import type { PublisherObserver } from "../observability/observers.js";
import type { Tracing } from "../observability/tracing.js";

import { type DeadLetter, Outbox } from "../outbox/outbox.js";
import type { BasicProperties } from "../protocol/generated/spec.js";
import { Deque } from "./deque.js";
import { asyncDispose } from "./dispose.js";
import { DEFAULT_NACK_RETRY, NackRetry } from "./nack-retry.js";
import { OutboxRelay } from "./outbox-relay.js";
import { Entry, normaliseProperties } from "./publish-entry.js";
import type { OutgoingMessage, PublisherHost, PublisherOptions } from "./publisher-types.js";

/**
 * Reliable publishing on a supervised confirm channel of its own (`client.publisher()`); see the
 * module comment and docs/publishing.md. Every publish() promise settles.
 */
export class Publisher implements AsyncDisposable {
  private readonly maxInFlight: number;
  private readonly republish: boolean;
  private readonly messageIds: boolean;
  private readonly timeout: number;
  private readonly confirm: boolean;
  /** Accepted, not yet sent (retries first). */
  private queue: Entry[] = [];
  private retry: Entry[] = [];
  /** Sent, awaiting a confirm. */
  private inFlight = 0;
  /** Accepted past maxInFlight, oldest first: moved to the queue as room frees (publishTimeout applies). */
  private backlog = new Deque<Entry>();
  /** Waiting for a channel, or for the socket to drain. */
  private pumping = false;
  /** drainQueue() is running. */
  private draining = false;
  /** Written without confirms past the write buffer's high-water mark: settled once it drained. */
  private unflushed: Entry[] = [];
  private closedFlag = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly outbox: Outbox | undefined;
  private readonly relay: OutboxRelay | undefined;
  private idleWaiters: (() => void)[] = [];
  private readonly nackRetry: NackRetry;
  /** Nacked, waiting for their backoff to pass. */
  private delayed: Entry[] = [];
  private delayTimer: NodeJS.Timeout | undefined;
  private readonly observer: PublisherObserver | undefined;
  private readonly tracing: Tracing | undefined;
  /** Accepted, confirmed and nacked (each nack) since the start; the outbox relay counts its own rows. */
  private readonly tally = { published: 0, confirmed: 0, nacked: 0 };

  /** @internal made by client.publisher(); throws ConfigError or OutboxError */
  constructor(
    private readonly host: PublisherHost,
    options: PublisherOptions = {},
  ) {
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 1000);
    this.republish = options.republish ?? true;
    this.messageIds = options.messageIds ?? false;
    this.timeout = options.publishTimeout ?? 60_000;
    this.confirm = options.confirm ?? true;
    const policy = options.nackRetry === false ? undefined : { ...DEFAULT_NACK_RETRY, ...options.nackRetry };
    if (policy && (!(policy.attempts >= 1) || !(policy.withinMs >= 0)))
      throw new ConfigError("nackRetry.attempts must be at least 1 and nackRetry.withinMs at least 0");
    this.nackRetry = new NackRetry(policy, options.renewAfterNacks ?? 3, (ch) => host.renew(ch));
    this.observer = host.observer;
    this.tracing = host.tracing;
    if (options.outbox) {
      const outbox = Outbox.open(options.outbox, {
        timeout: this.timeout,
        report: (error) => host.report?.(error),
        stored: () => this.relay?.schedule(),
      });
      this.outbox = outbox;
      this.relay = new OutboxRelay(outbox, host, this.nackRetry, {
        maxInFlight: this.maxInFlight,
        timeout: this.timeout,
        settled: () => this.relaySettled(),
      });
      this.relay.schedule();
    }
    host.onStateChange((state) => {
      if (state === "running") {
        this.pump();
        this.relay?.schedule();
      }
    });
    this.sweepTimer = setInterval(() => this.sweep(), Math.min(1000, this.timeout)).unref();
  }

  /** The number of the channel it publishes on, while open; null otherwise. */
  get channelId(): number | null {
    return this.host.current()?.id ?? null;
  }

  /** Messages accepted and not yet confirmed (queued, sending, awaiting a confirm or a nack retry). */
  get pending(): number {
    return this.queue.length + this.retry.length + this.inFlight + this.delayed.length;
  }

  /** Nacked publishes sent again, and channels renewed after a nack streak, since the start. */
  get counters(): { nackRetries: number; channelRenewals: number } {
    return { nackRetries: this.nackRetry.retries, channelRenewals: this.nackRetry.renewals };
  }

  /**
   * Messages accepted by publish(), confirmed by the broker and nacked by it (each nack, retried or
   * not) since the start; with an outbox, `confirmed` and `nacked` count the relay's stored rows.
   */
  get totals(): { published: number; confirmed: number; nacked: number } {
    const t = this.tally;
    const r = this.relay;
    return {
      published: t.published,
      confirmed: t.confirmed + (r?.confirmed ?? 0),
      nacked: t.nacked + (r?.nacked ?? 0),
    };
  }

  /** Messages the outbox holds (stored, not yet confirmed), when there is one. */
  get stored(): number {
    return this.outbox?.count() ?? 0;
  }

  /**
   * @internal for metrics: messages accepted and not yet settled (the backlog too), outbox rows
   * stored, and outbox dead letters.
   */
  gauges(): { unsettled: number; stored: number; deadLetters: number } {
    if (this.closedFlag) return { unsettled: 0, stored: 0, deadLetters: 0 };
    const o = this.outbox;
    return {
      unsettled: this.pending + this.backlog.length,
      stored: o?.count() ?? 0,
      deadLetters: o?.deadLetterCount() ?? 0,
    };
  }

  /**
   * Nacked or unroutable messages the outbox set aside: `list(limit = 100)` (oldest first),
   * `retry(id)` sends one again (at the end of the outbox), `drop(id)` deletes it. Throws
   * ConfigError when the publisher has no outbox; the methods throw OutboxError when the file
   * cannot be read or written.
   */
  get deadLetters(): {
    list(limit?: number): DeadLetter[];
    retry(id: number): void;
    drop(id: number): void;
  } {
    const o = this.outbox;
    if (!o) throw new ConfigError("dead letters need an outbox: client.publisher({ outbox: { path } })");
    return {
      list: (limit = 100) => o.deadLetters(limit),
      retry: (id) => {
        o.retryDeadLetter(id);
        this.relay?.schedule();
      },
      drop: (id) => o.dropDeadLetter(id),
    };
  }

  /**
   * Publishes. Without an outbox: resolves on the broker's confirm (without confirms, once written
   * with room in the write buffer), and rejects with PublishNackedError (nacked after the retries;
   * `attempts` says how often), UnroutableError (`mandatory`, and no queue bound), TimeoutError (not
   * sent within `publishTimeout`), ChannelClosedByBroker (the broker refused the publish, e.g. 404
   * no such exchange), FieldTableError (properties that cannot be encoded) or ClientClosedError.
   * With an outbox: resolves once the message is durably stored (it is then delivered at least
   * once), and rejects with OutboxError when it cannot be stored; `maxInFlight` then bounds what
   * the relay has sent and not yet had confirmed, not what waits to be stored (every publish of one
   * event-loop turn is held until its slice commits). Without an outbox, past `maxInFlight` it waits.
   */
  publish(message: OutgoingMessage): Promise<void> {
    if (this.closedFlag || this.host.closed)
      return Promise.reject(new ClientClosedError("the publisher is closed"));
    let properties: BasicProperties;
    try {
      properties = normaliseProperties(message.properties, this.messageIds);
    } catch (e) {
      return Promise.reject(e);
    }
    this.tally.published++;
    this.observer?.exchange(message.exchange).published();
    // Tracing on: the producer span (kept when recorded), its trace context in a copy of the headers
    // (kept by every re-send).
    const span = this.tracing?.startPublish(message.exchange, message.routingKey, message.body, properties);
    if (this.outbox) {
      const body = typeof message.body === "string" ? Buffer.from(message.body) : Buffer.from(message.body);
      let stored: Promise<void>;
      try {
        stored = this.outbox.append({
          exchange: message.exchange,
          routingKey: message.routingKey,
          mandatory: message.mandatory ?? false,
          properties,
          body,
        });
      } catch (e) {
        return Promise.reject(e); // properties that cannot be encoded
      }
      if (span !== undefined) this.tracing?.whenStored(span, stored);
      return stored; // the relay is told once per commit (the outbox's `stored` hook)
    }
    // One promise per message: past maxInFlight it waits in the backlog until there is room.
    return new Promise<void>((resolve, reject) => {
      const e = new Entry(
        this,
        message.exchange,
        message.routingKey,
        message.body,
        properties,
        message.mandatory ?? false,
        resolve,
        reject,
        Date.now(),
      );
      if (span !== undefined) e.span = span;
      if (this.backlog.length === 0 && this.pending < this.maxInFlight) {
        this.queue.push(e);
        this.pump();
      } else this.backlog.push(e);
    });
  }

  private releaseCapacity(): void {
    let moved = false;
    while (this.backlog.length > 0 && this.pending < this.maxInFlight) {
      this.queue.push(this.backlog.shift()!);
      moved = true;
    }
    if (moved) this.pump();
    // With an outbox, idle means the outbox is empty (afterRelay), not an empty queue.
    if (!this.outbox && this.pending === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of w) r();
    }
  }

  /** Sends queued messages while the channel is open, the broker does not block us and the socket takes more. */
  private pump(): void {
    if (this.pumping || this.draining || this.closedFlag) return;
    if (this.queue.length === 0 && this.retry.length === 0) return;
    const open = this.host.current();
    if (open !== undefined && !this.host.blocked) {
      this.drainQueue(open);
      return;
    }
    this.pumping = true;
    void this.host.channel(this.timeout).then(
      (ch) => {
        this.pumping = false;
        if (this.host.blocked) return; // resumed by the next state change
        if (!ch.isOpen) {
          setTimeout(() => this.pump(), 50).unref(); // it is being reopened
          return;
        }
        this.drainQueue(ch);
      },
      () => {
        this.pumping = false; // timed out waiting for a channel: sweep() rejects what is too old
        setTimeout(() => this.pump(), 100).unref();
      },
    );
  }

  /**
   * Sends what is queued (retries first) while the channel is open and the connection's write
   * buffer is under its high-water mark; past it, waits for the socket to drain. Entries settled
   * meanwhile (unconfirmed ones settle as they are sent) call pump(): the loop below sends what they
   * let in, so there is no recursion.
   */
  private drainQueue(ch: Channel): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (ch.isOpen && (this.retry.length > 0 || this.queue.length > 0)) {
        if (!ch.writable) {
          this.waitForRoom(ch);
          return;
        }
        this.send(ch, this.retry.length > 0 ? this.retry.shift()! : this.queue.shift()!);
      }
    } finally {
      this.draining = false;
    }
  }

  /**
   * Waits (once) for the connection's write buffer to fall under its high-water mark, then settles
   * the unconfirmed messages written past it and sends more. Rejected when the channel closed
   * first: those messages are then published again (or rejected) as unconfirmed ones would be.
   */
  private waitForRoom(ch: Channel): void {
    if (this.pumping) return;
    this.pumping = true;
    const resume = (err: Error | undefined): void => {
      this.pumping = false;
      const written = this.unflushed;
      this.unflushed = [];
      for (const e of written) {
        if (err === undefined) e.resolve();
        else e.reject(err);
      }
      this.pump();
    };
    ch.waitForDrain().then(
      () => resume(undefined),
      (err: Error) => resume(err),
    );
  }

  private send(ch: Channel, e: Entry): void {
    this.inFlight++;
    e.channel = ch;
    if (e.span !== undefined) this.tracing?.sent(e.span);
    try {
      ch.publishTo(
        e.exchange,
        e.routingKey,
        e.body,
        e.properties,
        { mandatory: e.mandatory },
        this.confirm ? e : undefined,
      );
    } catch (err) {
      e.reject(err as Error);
      return;
    }
    if (this.confirm) return;
    // Without confirms, room in the socket is the answer: settled now while the write buffer is
    // under its high-water mark, else once it drained (so maxInFlight and the buffer bound hold).
    if (ch.writable) e.resolve();
    else {
      this.unflushed.push(e);
      this.waitForRoom(ch);
    }
  }

  /** @internal a traced message settled: its producer span ends */
  spanDone(span: Span, err: Error | undefined): void {
    if (err === undefined) this.tracing?.published(span);
    else this.tracing?.publishFailed(span, err);
  }

  /** @internal the broker's answer to one message (or its channel's death) */
  settled(e: Entry, err: Error | undefined): void {
    this.inFlight--;
    const st = this.observer?.exchange(e.exchange);
    if (err === undefined) {
      if (this.confirm) {
        this.tally.confirmed++;
        st?.confirmed((Date.now() - e.since) / 1000);
      }
      if (e.channel !== undefined) this.nackRetry.acked(e.channel);
      e.done();
      this.releaseCapacity();
    } else if (err instanceof PublishNackedError && !this.closedFlag) {
      this.tally.nacked++;
      st?.nacked();
      const now = Date.now();
      const delay = this.nackRetry.nacked(e.channel, e, now);
      if (delay !== undefined) {
        // Never before the one nacked earlier: retries keep the original order.
        e.due = Math.max(now + delay, this.delayed.at(-1)?.due ?? 0);
        st?.nackRetried();
        if (e.span !== undefined) this.tracing?.nackRetry(e.span, e.nacks, e.due - now);
        this.delayed.push(e);
        this.armDelayTimer();
      } else {
        this.rejectEntry(
          e,
          e.nacks === 1
            ? err
            : new PublishNackedError(
                `the broker nacked the publish ${e.nacks} times within ${now - e.firstNackAt} ms`,
                { attempts: e.nacks, cause: err },
              ),
        );
        this.releaseCapacity();
      }
    } else if (this.shouldRepublish(err, e)) {
      st?.republished();
      if (e.span !== undefined) this.tracing?.republish(e.span, err);
      this.retry.push(e); // rejections arrive in sequence order: the original order is kept
      this.pump();
    } else {
      if (err instanceof UnroutableError) st?.returned();
      this.rejectEntry(e, err);
      this.releaseCapacity();
    }
  }

  /** Rejects the caller's promise (counted by the metrics). */
  private rejectEntry(e: Entry, err: Error): void {
    this.observer?.exchange(e.exchange).failed(err);
    e.fail(err);
  }

  // ─── nacks: retried after their backoff (NackRetry), in their original order ──

  private armDelayTimer(): void {
    const head = this.delayed[0];
    if (this.delayTimer !== undefined || head === undefined) return;
    // Dues never decrease along the list: the head is the next one.
    this.delayTimer = setTimeout(
      () => {
        this.delayTimer = undefined;
        const now = Date.now();
        let k = 0;
        while (k < this.delayed.length && this.delayed[k]!.due <= now) k++;
        for (const e of this.delayed.splice(0, k)) this.retry.push(e);
        this.armDelayTimer();
        this.pump();
      },
      Math.max(0, head.due - Date.now()),
    );
  }

  /** A closed channel or connection is no verdict on the message: publish it again. */
  private shouldRepublish(err: Error, e: Entry): boolean {
    if (!this.republish || this.closedFlag) return false;
    if (err instanceof PublishNackedError || err instanceof UnroutableError) return false;
    if (err instanceof ChannelClosedByBroker) return !refusedPublishTo(err, e.exchange);
    return (
      err instanceof ChannelClosedError ||
      err instanceof ConnectionClosedError ||
      err instanceof ConnectionError
    );
  }

  /** Rejects messages that waited longer than publishTimeout without being sent. */
  private sweep(): void {
    const limit = Date.now() - this.timeout;
    for (let e = this.backlog.peek(); e !== undefined && e.since < limit; e = this.backlog.peek()) {
      this.backlog.shift();
      this.rejectEntry(
        e,
        new TimeoutError(`no room among ${this.maxInFlight} in-flight messages within ${this.timeout} ms`),
      );
    }
    for (const list of [this.retry, this.queue]) {
      while (list.length > 0 && list[0]!.since < limit) {
        const e = list.shift()!;
        this.rejectEntry(
          e,
          new TimeoutError(`not sent within ${this.timeout} ms (the client was ${this.describeState()})`),
        );
      }
    }
    this.releaseCapacity();
  }

  private describeState(): string {
    return this.host.blocked ? "blocked by the broker" : "not connected";
  }

  // ─── outbox ─────────────────────────────────────────────────────────────

  /** An outbox row settled: relay more; idle once nothing is in flight and the outbox is empty. */
  private relaySettled(): void {
    this.relay?.schedule();
    if ((this.relay?.unsettled ?? 0) === 0) {
      // Deletes of confirmed rows are group committed a few ms later: nothing is in flight, so
      // commit them now (else `stored` and count() still have them).
      this.outbox?.flush();
      if (this.idleWaiters.length === 0 || (this.outbox?.count() ?? 0) > 0) return;
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of w) r();
    }
  }

  // ─── closing ────────────────────────────────────────────────────────────

  /** Resolves once nothing is pending (or the outbox is empty), or after `timeout` ms; never rejects. */
  whenIdle(timeout: number): Promise<void> {
    const idle = this.outbox
      ? this.outbox.count() === 0 && (this.relay?.unsettled ?? 0) === 0
      : this.pending === 0;
    if (idle) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeout);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * Stops: waits up to `timeout` ms (default 10000) for what is pending, then rejects what is left
   * with ClientClosedError (its `cause` set to `cause`, when given: why the client failed). Stored
   * outbox rows stay for the next run. Never rejects; idempotent.
   */
  async close(timeout = 10_000, cause?: Error): Promise<void> {
    if (this.closedFlag) return;
    await this.whenIdle(timeout);
    this.closedFlag = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    // Named by its type only: a login error's text names the user, and this error reaches spans.
    const err = cause
      ? new ClientClosedError(
          `the client failed (${cause.name}) before the message was sent; error.cause says why`,
          { cause },
        )
      : new ClientClosedError("the client was closed before the message was confirmed");
    if (this.delayTimer) clearTimeout(this.delayTimer);
    this.delayTimer = undefined;
    this.relay?.close();
    for (const e of [...this.delayed, ...this.retry, ...this.queue]) this.rejectEntry(e, err);
    this.delayed = [];
    this.retry = [];
    this.queue = [];
    for (const e of this.backlog.drain()) this.rejectEntry(e, err);
    this.outbox?.close();
  }

  /** Closes the publisher (close(), waiting up to 10 s for what is pending) at the end of an `await using` block. */
  [asyncDispose](): Promise<void> {
    return this.close();
  }
}

export { DEFAULT_NACK_RETRY, type NackRetryOptions, nackRetryDelay } from "./nack-retry.js";
export { normaliseProperties } from "./publish-entry.js";
export type {
  OutgoingMessage,
  PublisherHost,
  PublisherOptions,
  PublishProperties,
} from "./publisher-types.js";
