import { type Actor, createActor, fromPromise } from "xstate";
import { type ConsumerEvent, consumerMachine } from "../../machines/consumer.js";
import { leafName } from "../../machines/state-value.js";
import type { Channel } from "../amqp/channel.js";
import type { Message } from "../amqp/channel-types.js";
import { TypedEmitter } from "../amqp/events.js";
import {
  ChannelClosedByBroker,
  ClientClosedError,
  MethodTimeoutError,
  QueueNotFoundError,
  TimeoutError,
} from "../errors.js";
import type { ConsumeStats } from "../observability/observers.js";
import type { DeliveryOutcome, Tracing } from "../observability/tracing.js";

import { AckBatch } from "./ack-batch.js";
import { FailureHandling } from "./consumer-failures.js";
import { resolveConsumeOptions } from "./consumer-options.js";
import { ConsumerCounts } from "./consumer-stats.js";
import { withConsumerTimeout } from "./consumer-timeout.js";
import type {
  ConsumedMessage,
  ConsumerEvents,
  ConsumerHost,
  ConsumerOptions,
  ConsumerState,
  ConsumerStats,
  FailurePolicy,
  MessageHandler,
} from "./consumer-types.js";
import { Delivery, type Settle } from "./delivery.js";
import { Deque } from "./deque.js";
import { asyncDispose } from "./dispose.js";
import { retryTopology } from "./retry.js";
import { StreamPosition } from "./stream-position.js";
import { Waiters } from "./waiters.js";

const TERMINAL = new Set(["cancelled"]);

/**
 * A supervised consumer (`client.consume()`): its own channel and machine (waiting → subscribing →
 * consuming → draining → cancelled), resubscribed with backoff after a server cancel, a channel
 * error or a reconnection. Handlers run at most `concurrency` at once; their outcome acks the
 * delivery or applies the failure policy. docs/consumers.md.
 */
export class Consumer extends TypedEmitter<ConsumerEvents> implements AsyncDisposable {
  /** The queue it consumes, as given (the first name of a server-named queue). */
  readonly queue: string;
  /** Counts since the start (plain numbers, updated as deliveries are settled). */
  readonly stats: ConsumerStats;
  private readonly counts = new ConsumerCounts();
  private readonly actor: Actor<typeof consumerMachine>;
  private channel: Channel | undefined;
  /** The acks of this turn on `channel` (ack-batch.ts); a new one with each channel. */
  private acks: AckBatch | undefined;
  private consumerTag: string | undefined;
  /** Handlers running on the current channel (holding a concurrency slot). */
  private runningN = 0;
  /** Counts channels: handlers still running for a dead channel hold no slot on the next one. */
  private epoch = 0;
  /** Deliveries waiting for a slot, in arrival order. */
  private readonly waiting = new Deque<Delivery>();
  private idleWaiters: (() => void)[] = [];
  private readonly settleWaiters = new Waiters();
  private stateName: ConsumerState = "waiting";
  /** ready() callers waiting for the first outcome. */
  private readonly readyWaiters = new Waiters();
  /** Set by a server-sent cancel: the queue may have been deleted. */
  private queueLost = false;
  /** Cancel or close under way: new deliveries are released, not handled. */
  private draining = false;
  private drainWait: number;
  /** Deliveries handled (acked or nacked) since the start. */
  handled = 0;
  private readonly metrics: ConsumeStats | undefined;
  private readonly tracing: Tracing | undefined;
  /** The queue's current name (a server-named queue is renamed by recoveries), for spans. */
  private source: string;
  private readonly policy: FailurePolicy;
  private readonly maxAttempts: number;
  /** basic.qos prefetch: deliveries unacknowledged at most (at least the concurrency). */
  readonly prefetch: number;
  /** Handlers run at once at most (Infinity for a manual consumer: `client.messages()`). */
  readonly concurrency: number;
  private readonly delays: number[];
  private readonly deadLetterQueue: string | undefined;
  /** The first part of the retry topology's names (`retry.prefix`, default "warren"). */
  readonly retryPrefix: string;
  private readonly manual: boolean;
  /** Running deliveries whose handler asked for `signal`: aborted when a drain gives up on them. */
  private readonly signalled = new Set<Delivery>();
  private readonly failures: FailureHandling;
  /** Stream consumers: where to resume (stream-position.ts). */
  private readonly stream: StreamPosition | undefined;
  /** Deliveries handed to a manual (iterator) consumer's sink. */
  private sink: ((d: Delivery) => void) | undefined;

  /** @internal made by client.consume() and client.messages(); throws ConfigError for a bad option */
  constructor(
    private readonly host: ConsumerHost,
    private readonly options: ConsumerOptions,
    private readonly handler: MessageHandler,
    connected: boolean,
  ) {
    super();
    this.queue = options.queue;
    this.source = options.queue;
    this.tracing = host.tracing;
    this.metrics = host.consumeStats?.(options.queue);
    this.stats = this.counts;
    const r = resolveConsumeOptions(options);
    this.manual = r.manual;
    this.policy = r.policy;
    this.maxAttempts = r.maxAttempts;
    this.prefetch = r.prefetch;
    this.concurrency = r.concurrency;
    this.delays = r.delays;
    this.deadLetterQueue = r.deadLetterQueue;
    this.retryPrefix = r.retryPrefix;
    this.drainWait = r.drainTimeout;
    if (options.streamOffset !== undefined) this.stream = new StreamPosition(options.streamOffset);
    this.failures = new FailureHandling(
      {
        queue: this.queue,
        source: () => this.source,
        currentChannel: () => this.channel,
        isLive: (d) => this.isLive(d),
        settle: (d, op, outcome) => this.settle(d, op, outcome),
        abandon: (d) => this.abandon(d),
        emitError: (e, d) => this.emit("error", e, d),
      },
      {
        policy: r.policy,
        maxAttempts: r.maxAttempts,
        noAck: options.noAck === true,
        delays: r.delays,
        deadLetterQueue: r.deadLetterQueue,
        retryPrefix: r.retryPrefix,
      },
    );
    const machine = consumerMachine.provide({
      actors: {
        subscribe: fromPromise(async ({ signal }) => {
          try {
            await this.subscribe();
          } catch (e) {
            throw this.subscribeFailed(e, signal.aborted);
          }
        }),
        drain: fromPromise(() => this.drain()),
      },
      actions: {
        report: (_, { error }) => {
          if (error !== undefined) host.report?.(error);
        },
      },
    });
    this.actor = createActor(machine, { input: { connected, random: host.consumerRandom } });
    this.actor.subscribe((snap) => {
      const to = leafName(snap.value) as ConsumerState;
      if (to === this.stateName) return;
      const from = this.stateName;
      this.stateName = to;
      if (to !== "subscribing" && to !== "waiting") this.releaseSettled();
      const error = snap.context.error;
      this.emit("state", { from, to, error });
      this.settleReady(to, error);
    });
    // On the next microtask, as the client's first attempt: `consumer.on("state")` on the line
    // after consume() sees the first transition.
    queueMicrotask(() => this.actor.start());
  }

  /**
   * The machine's state: waiting, subscribing, consuming, resubscribing, draining, failed, cancelled.
   * The first transition happens on a microtask after consume(), so a `state` listener attached on
   * the next line sees it.
   */
  get state(): ConsumerState {
    return this.stateName;
  }

  /**
   * Resolves once the consumer is consuming (its basic.consume-ok). Rejects with the error at its
   * first missing queue (QueueNotFoundError: it keeps retrying and starts once the queue exists)
   * or permanent failure (`failed`: a refused subscription), or when it is cancelled before
   * consuming. Called while the last attempt found no queue, it rejects at once.
   */
  ready(): Promise<void> {
    const s = this.stateName;
    if (s === "consuming") return Promise.resolve();
    const error = this.actor.getSnapshot().context.error;
    if (s === "failed" || (s === "resubscribing" && error instanceof QueueNotFoundError)) {
      return Promise.reject(error ?? this.cancelledError());
    }
    if (s === "draining" || s === "cancelled") return Promise.reject(this.cancelledError());
    return this.readyWaiters.wait();
  }

  private settleReady(to: string, error: Error | undefined): void {
    if (this.readyWaiters.size === 0) return;
    let outcome: Error | null;
    if (to === "consuming") outcome = null;
    else if (to === "failed") outcome = error ?? this.cancelledError();
    else if (to === "resubscribing" && error instanceof QueueNotFoundError) outcome = error;
    else if (to === "draining" || to === "cancelled") outcome = this.cancelledError();
    else return;
    if (outcome === null) this.readyWaiters.resolveAll();
    else this.readyWaiters.rejectAll(outcome);
  }

  private cancelledError(): Error {
    return new ClientClosedError(
      `the consumer of queue "${this.queue}" was cancelled (consumer.cancel() or client.close()) before it started consuming`,
    );
  }

  /** The broker's name for this consumer while consuming. */
  get tag(): string | undefined {
    return this.consumerTag;
  }

  /** The number of the channel it consumes on, while open; null otherwise. */
  get channelId(): number | null {
    return this.channel?.isOpen ? this.channel.id : null;
  }

  /** Handlers running now. */
  get running(): number {
    return this.runningN;
  }

  /** @internal the connection is up (topology restored) or gone */
  send(event: ConsumerEvent): void {
    this.actor.send(event);
  }

  /** @internal a manual consumer's deliveries go to `sink` */
  setSink(sink: (d: ConsumedMessage) => void): void {
    this.sink = sink as (d: Delivery) => void;
  }

  /** @internal whether `d` can still be settled (its channel is the live one) */
  isLive(d: ConsumedMessage): boolean {
    const ch = (d as Delivery).channel;
    return !(d as Delivery).settled && ch === this.channel && ch.isOpen;
  }

  /** @internal resolves once the current subscribe attempt has settled (or at once if none is running) */
  settled(): Promise<void> {
    if (this.stateName !== "subscribing" && this.stateName !== "waiting") return Promise.resolve();
    return this.settleWaiters.wait();
  }

  private releaseSettled(): void {
    this.settleWaiters.resolveAll();
  }

  /**
   * Stops consuming: basic.cancel, releases deliveries not started (requeued), waits (bounded by
   * the consumer's `drainTimeout`, or `options.drainTimeout`, in ms) for running handlers and their
   * acks, closes the channel. A handler still running then has its `signal` aborted; the broker
   * redelivers its message. Never rejects; idempotent.
   */
  async cancel(options: { drainTimeout?: number } = {}): Promise<void> {
    if (options.drainTimeout !== undefined) this.drainWait = options.drainTimeout;
    if (TERMINAL.has(this.stateName)) return;
    const done = new Promise<void>((resolve) => {
      const sub = this.actor.subscribe((s) => {
        if (s.status === "done") {
          sub.unsubscribe();
          resolve();
        }
      });
    });
    this.actor.send({ type: "CANCEL" });
    await done;
  }

  /** Cancels the consumer (cancel(), draining its running handlers) at the end of an `await using` block. */
  [asyncDispose](): Promise<void> {
    return this.cancel();
  }

  // ─── actors ─────────────────────────────────────────────────────────────

  /** Failures are retried through the retry topology. */
  private get needsRetryTopology(): boolean {
    return this.policy === "retry" && !this.options.noAck;
  }

  /** Copies are published (confirmed) before an ack: retries, and requeues past what a classic queue can count. */
  private get needsConfirms(): boolean {
    return (
      this.needsRetryTopology || (this.policy === "requeue" && this.maxAttempts > 2 && !this.options.noAck)
    );
  }

  /**
   * A subscription attempt failed: a 404 on basic.consume (or on a passive queue.declare) becomes a
   * QueueNotFoundError naming the queue; the attempt is counted unless the machine had abandoned
   * it (cancelled, connection lost). Returns the error for the machine to classify (faults.ts).
   */
  private subscribeFailed(e: unknown, abandoned: boolean): unknown {
    let error = e;
    if (
      e instanceof ChannelClosedByBroker &&
      e.replyCode === 404 &&
      (e.methodName === "basic.consume" || e.methodName === "queue.declare")
    ) {
      error = new QueueNotFoundError(this.source, { cause: e });
      // A queue this client declared is declared again (with its bindings) by the next attempt.
      this.queueLost = true;
    }
    if (!abandoned) {
      const code = codeOf(error);
      this.counts.subscribeErrors++;
      this.counts.lastSubscribeError = code;
      this.metrics?.subscribeFailed?.(code);
    }
    return error;
  }

  private async subscribe(): Promise<void> {
    let ch = this.channel;
    if (!ch?.isOpen) {
      ch = await this.host.openChannel();
      this.channel = ch;
      this.acks = this.options.noAck ? undefined : new AckBatch(ch);
      const mine = ch;
      ch.on("close", (err) => {
        if (this.channel !== mine) return;
        this.channel = undefined;
        this.consumerTag = undefined;
        // Handlers still running for it finish unheard (their tags are stale): free their slots.
        this.epoch++;
        this.runningN = 0;
        this.dropStale();
        // A connection-level close reaches the consumer as CONNECTION_LOST from the client.
        if (err instanceof ChannelClosedByBroker || err instanceof MethodTimeoutError) {
          this.actor.send({ type: "CHANNEL_CLOSED", error: err });
        }
      });
      await ch.basicQos({ prefetchCount: this.prefetch });
      if (this.needsConfirms) await ch.confirmSelect();
    }
    if (this.needsRetryTopology && this.host.declare !== undefined) {
      await this.host.declare(ch, retryTopology(this.delays, this.deadLetterQueue, this.retryPrefix));
    }
    const queue = await this.host.prepareQueue(ch, this.options.queue, this.queueLost);
    this.source = queue;
    this.queueLost = false;
    const o = this.options;
    let args = withConsumerTimeout(o.arguments, o, this.host.brokerVersion?.());
    const offset = this.stream?.resume();
    if (offset !== undefined) args = { ...args, "x-stream-offset": offset };
    const consumeOpts = {
      queue,
      ...(o.noAck !== undefined ? { noAck: o.noAck } : {}),
      ...(o.exclusive !== undefined ? { exclusive: o.exclusive } : {}),
      ...(args !== undefined ? { arguments: args } : {}),
      ...(o.tag !== undefined
        ? { consumerTag: `${o.tag}-${Math.floor(this.host.consumerRandom() * 1e9)}` }
        : {}),
    };
    const subscribed = ch;
    this.consumerTag = await ch.basicConsume(consumeOpts, {
      onMessage: (m) => this.deliver(subscribed, m),
      onCancel: () => {
        if (this.channel === subscribed) {
          this.consumerTag = undefined;
          this.queueLost = true;
          this.actor.send({ type: "SERVER_CANCEL" });
        }
      },
    });
    this.counts.lastSubscribeError = undefined;
  }

  private async drain(): Promise<void> {
    this.draining = true;
    const ch = this.channel;
    const tag = this.consumerTag;
    if (ch?.isOpen && tag !== undefined) {
      try {
        this.acks?.flush();
        await ch.basicCancel(tag);
      } catch {
        // channel gone meanwhile: nothing more will be delivered
      }
    }
    this.consumerTag = undefined;
    // Not started: back to the queue at once, for other consumers.
    for (const d of this.waiting.drain()) this.settle(d, "release", "nack");
    await this.whenIdle(this.drainWait);
    this.channel = undefined;
    if (this.signalled.size > 0) {
      const err = new TimeoutError(
        `consumer of queue "${this.queue}" closed: the handler did not finish within drainTimeout (${this.drainWait} ms); the broker redelivers its message`,
      );
      for (const d of this.signalled) d.abort(err);
      this.signalled.clear();
    }
    for (const d of this.waiting.drain()) this.abandon(d);
    if (ch?.isOpen) {
      this.acks?.flush(); // the acks of the handlers that just finished, before the channel goes
      await ch.close().catch(() => undefined);
    }
  }

  private whenIdle(timeout: number): Promise<void> {
    if (this.counts.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve();
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.idleWaiters.push(done);
    });
  }

  private wakeIdle(): void {
    if (this.counts.inFlight !== 0 || this.idleWaiters.length === 0) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }

  /** The channel died: deliveries waiting for a slot can never be settled; the broker redelivers them. */
  private dropStale(): void {
    const keep: Delivery[] = [];
    for (const d of this.waiting.drain()) {
      if (d.channel === this.channel && d.channel.isOpen) keep.push(d);
      else this.abandon(d);
    }
    for (const d of keep) this.waiting.push(d);
  }

  // ─── deliveries ─────────────────────────────────────────────────────────

  private deliver(ch: Channel, m: Message): void {
    const d = new Delivery(this, ch, m);
    // Before anything can settle it: a multiple ack never covers a delivery still being handled.
    if (ch === this.channel) this.acks?.delivered(m.deliveryTag);
    this.counts.delivered++;
    this.counts.inFlight++;
    this.metrics?.delivered();
    if (this.stream !== undefined) d.offset = this.stream.delivered(m.properties.headers);
    if (this.draining) {
      this.settle(d, "release", "nack");
      return;
    }
    if (this.manual) {
      if (this.tracing !== undefined) d.span = this.tracing.startProcess(this.source, d).span;
      this.sink?.(d);
      return;
    }
    if (this.runningN < this.concurrency && this.waiting.length === 0) this.run(d);
    else this.waiting.push(d);
  }

  private run(d: Delivery): void {
    this.runningN++;
    d.epoch = this.epoch;
    if (this.metrics !== undefined) d.started = performance.now();
    // Tracing on: a consumer span in the producer's trace; the handler runs in its context.
    const traced = this.tracing?.startProcess(this.source, d);
    if (traced !== undefined) d.span = traced.span;
    const timeout = this.options.timeoutMs;
    if (timeout !== undefined) {
      d.timer = setTimeout(() => {
        const err = new TimeoutError(
          `the handler for queue "${this.queue}" did not finish within ${timeout} ms (timeoutMs): its late result is ignored`,
        );
        d.abort(err);
        this.handlerDone(d, err, true);
      }, timeout);
    }
    let result: unknown;
    try {
      result = traced === undefined ? this.handler(d) : this.tracing!.run(traced.context, this.handler, d);
    } catch (e) {
      this.handlerDone(d, e, true);
      return;
    }
    if (
      result !== null &&
      typeof result === "object" &&
      typeof (result as Promise<unknown>).then === "function"
    ) {
      (result as Promise<unknown>).then(
        () => this.handlerDone(d, undefined, false),
        (e: unknown) => this.handlerDone(d, e, true),
      );
    } else this.handlerDone(d, undefined, false);
  }

  private handlerDone(d: Delivery, error: unknown, failed: boolean): void {
    if (d.finished) return; // timed out already: the late result is ignored
    d.finished = true;
    if (d.timer !== undefined) clearTimeout(d.timer);
    if (d.epoch === this.epoch) this.runningN--;
    this.handled++;
    if (this.metrics !== undefined) this.metrics.handled((performance.now() - d.started) / 1000);
    if (this.signalled.size > 0) this.signalled.delete(d);
    if (failed) this.fail(d, error);
    else if (!d.settled) this.settle(d, "ack", "ack");
    this.next();
  }

  /** Starts waiting deliveries while slots are free (stale ones are dropped). */
  private next(): void {
    while (this.runningN < this.concurrency && this.waiting.length > 0) {
      const d = this.waiting.shift()!;
      if (d.channel !== this.channel || !d.channel.isOpen) this.abandon(d);
      else this.run(d);
    }
  }

  /** A handler failed: counted, reported, and its failure policy applied. */
  private fail(d: Delivery, error: unknown): void {
    this.counts.failed++;
    this.failures.fail(d, error);
  }

  /** @internal msg.ack() / nack() / reject() */
  settleByUser(d: Delivery, op: Settle): void {
    this.settle(d, op, op === "ack" ? "ack" : op === "reject" ? "reject" : "nack");
  }

  /** @internal a running handler asked for its message's signal */
  watchSignal(d: Delivery): void {
    if (!this.manual) this.signalled.add(d);
  }

  /** @internal a manual consumer's buffered delivery, never handed out: requeued (or dropped, when stale) */
  release(d: ConsumedMessage): void {
    const x = d as Delivery;
    if (this.isLive(x)) this.settle(x, "release", "nack");
    else this.abandon(x);
  }

  /** Its channel died: nothing can be sent for it; the broker redelivers it. */
  private abandon(d: Delivery): void {
    this.settle(d, "ack", "abandoned");
  }

  /**
   * Settles a delivery once: sends `op` on its channel if that channel is still the live one
   * (a stale tag would close the new channel with 406; the broker redelivers instead), counts it,
   * ends its span with `outcome` (or "abandoned" when nothing could be sent).
   */
  private settle(d: Delivery, op: Settle, outcome: DeliveryOutcome): boolean {
    if (d.settled) return false;
    d.settled = true;
    this.counts.inFlight--;
    let sent = false;
    const ch = d.channel;
    if (outcome !== "abandoned" && !this.options.noAck && ch === this.channel && ch.isOpen) {
      try {
        const tag = d.fields.deliveryTag;
        // basic.reject for a failure (requeued or not): RabbitMQ 4.3 counts only it in x-delivery-count
        // (and so in the delivery limit); basic.nack gives back a delivery that was not processed.
        // Acks leave at the end of the turn, several in one frame where the tags allow (ack-batch.ts).
        const acks = this.acks;
        if (op === "ack" && acks !== undefined) acks.ack(tag);
        else if (op === "ack") ch.basicAck(tag);
        else if (op === "release") ch.basicNack(tag, { requeue: true });
        else ch.basicReject(tag, { requeue: op === "requeue" });
        if (op !== "ack") acks?.settled(tag);
        sent = true;
      } catch {
        // closed between the check and the send: the broker redelivers
      }
    }
    if (sent) {
      this.counts.settled(op, outcome, this.metrics);
      if (d.offset !== undefined && op === "ack") this.stream?.acked(d.offset);
    }
    if (d.span !== undefined) {
      const final: DeliveryOutcome = this.options.noAck ? "auto_ack" : sent ? outcome : "abandoned";
      this.tracing?.processed(d.span, final, d.failed, d.error);
    }
    this.wakeIdle();
    return sent;
  }
}

/** An error's `code` as a bounded label value (`UNKNOWN` when it has none). */
function codeOf(e: unknown): string {
  const code = (e as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" && /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? code : "UNKNOWN";
}
