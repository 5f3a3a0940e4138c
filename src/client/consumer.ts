/**
 * A supervised consumer. Its lifecycle is the consumer machine; its channel belongs
 * to it (opened on subscribe, with its own prefetch), so a channel exception, a
 * server-sent basic.cancel or a lost connection touches no other consumer.
 *
 * Handlers ack on success and nack on throw (requeued the first time, rejected —
 * dead-lettered if the queue has a dead-letter exchange — when it was already a
 * redelivery). A delivery from a channel that has since died is never acked with its
 * stale tag: the broker redelivers it.
 */
import type { Span } from "@opentelemetry/api";
import { type Actor, createActor, fromPromise } from "xstate";
import { type ConsumerEvent, consumerMachine } from "../../machines/consumer.js";
import type { Channel, Message } from "../amqp/channel.js";
import { TypedEmitter } from "../amqp/events.js";
import {
  ChannelClosedByBroker,
  ConnectionClosedError,
  RpcTimeoutError,
  type WarrenError,
} from "../errors.js";
import { deliveryOutcome, type Tracing } from "../observability/tracing.js";
import type { BasicProperties } from "../protocol/generated/spec.js";
import type { FieldTable } from "../protocol/table.js";

export interface ConsumeOptions {
  /** Queue name, or the name a server-named queue declared through the client was first given. */
  queue: string;
  /** Unacknowledged deliveries at a time (basic.qos prefetch-count). Default 50. */
  prefetch?: number;
  /** Automatic acknowledgement: the broker forgets a message once sent. Default false. */
  noAck?: boolean;
  exclusive?: boolean;
  /** basic.consume arguments, e.g. { "x-priority": 10 }. */
  arguments?: FieldTable;
  /** Consumer tag prefix; the broker names the consumer when absent. */
  tag?: string;
  /** How long cancel() waits for running handlers (ms, default 10000). */
  drainTimeout?: number;
}

/** What a handler receives. */
export interface ConsumedMessage {
  body: Buffer;
  properties: BasicProperties;
  fields: {
    deliveryTag: number;
    redelivered: boolean;
    exchange: string;
    routingKey: string;
    consumerTag: string;
  };
}

export type MessageHandler = (message: ConsumedMessage) => unknown | Promise<unknown>;

export interface ConsumerEvents {
  state: (change: { from: string; to: string; error: WarrenError | Error | undefined }) => void;
  /** A handler threw or rejected (the message was nacked). */
  error: (error: unknown, message: ConsumedMessage) => void;
}

/**
 * Instrumentation of one queue's deliveries (warren's metrics): called synchronously on the hot
 * path, so cheap and never throwing.
 */
export interface ConsumeStats {
  delivered(): void;
  /** The handler settled after `seconds`. */
  handled(seconds: number): void;
  acked(): void;
  /** Nacked with requeue (a first failure). */
  nacked(): void;
  /** Nacked without requeue: dead-lettered by the queue, or dropped. */
  rejected(): void;
}

/** What the consumer needs from its client. */
export interface ConsumerHost {
  openChannel(): Promise<Channel>;
  /**
   * Re-declares the queue and its bindings if the client declared it (`lost`: the broker
   * cancelled us, the queue may be gone); resolves with its current name.
   */
  prepareQueue(ch: Channel, key: string, lost: boolean): Promise<string>;
  consumerRandom: () => number;
  /** The client's tracing, when it is on. */
  tracing?: Tracing | undefined;
  /** Instrumentation for the consumer's queue, if metrics are on. */
  consumeStats?: (queue: string) => ConsumeStats;
}

const TERMINAL = new Set(["cancelled"]);

export class Consumer extends TypedEmitter<ConsumerEvents> {
  readonly queue: string;
  private readonly actor: Actor<typeof consumerMachine>;
  private channel: Channel | undefined;
  private consumerTag: string | undefined;
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private settleWaiters: (() => void)[] = [];
  private stateName = "waiting";
  /** Set by a server-sent cancel: the queue may have been deleted. */
  private queueLost = false;
  /** Deliveries handled (acked or nacked) since the start. */
  handled = 0;
  private readonly stats: ConsumeStats | undefined;
  private readonly tracing: Tracing | undefined;
  /** The queue's current name (a server-named queue is renamed by recoveries), for spans. */
  private source: string;

  constructor(
    private readonly host: ConsumerHost,
    private readonly options: ConsumeOptions,
    private readonly handler: MessageHandler,
    connected: boolean,
  ) {
    super();
    this.queue = options.queue;
    this.source = options.queue;
    this.tracing = host.tracing;
    this.stats = host.consumeStats?.(options.queue);
    const machine = consumerMachine.provide({
      actors: {
        subscribe: fromPromise(() => this.subscribe()),
        drain: fromPromise(() => this.drain()),
      },
    });
    this.actor = createActor(machine, { input: { connected, random: host.consumerRandom } });
    this.actor.subscribe((snap) => {
      const to = typeof snap.value === "string" ? snap.value : Object.keys(snap.value)[0]!;
      if (to === this.stateName) return;
      const from = this.stateName;
      this.stateName = to;
      if (to !== "subscribing" && to !== "waiting") this.releaseSettled();
      this.emit("state", { from, to, error: snap.context.error });
    });
    this.actor.start();
  }

  /** The machine's state: waiting, subscribing, consuming, resubscribing, draining, failed, cancelled. */
  get state(): string {
    return this.stateName;
  }

  /** The broker's name for this consumer while consuming. */
  get tag(): string | undefined {
    return this.consumerTag;
  }

  /** Handlers running now. */
  get running(): number {
    return this.inFlight;
  }

  /** @internal the connection is up (topology restored) or gone */
  send(event: ConsumerEvent): void {
    this.actor.send(event);
  }

  /** @internal resolves once the current subscribe attempt has settled (or at once if none is running) */
  settled(): Promise<void> {
    if (this.stateName !== "subscribing" && this.stateName !== "waiting") return Promise.resolve();
    return new Promise((r) => this.settleWaiters.push(r));
  }

  private releaseSettled(): void {
    const w = this.settleWaiters;
    this.settleWaiters = [];
    for (const r of w) r();
  }

  /** Stops consuming: basic.cancel, waits (bounded) for running handlers, closes the channel. */
  async cancel(): Promise<void> {
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

  // ─── actors ─────────────────────────────────────────────────────────────

  private async subscribe(): Promise<void> {
    let ch = this.channel;
    if (!ch?.isOpen) {
      ch = await this.host.openChannel();
      this.channel = ch;
      const mine = ch;
      ch.on("close", (err) => {
        if (this.channel !== mine) return;
        this.channel = undefined;
        this.consumerTag = undefined;
        // A connection-level close reaches the consumer as CONNECTION_LOST from the client.
        if (err instanceof ChannelClosedByBroker || err instanceof RpcTimeoutError) {
          this.actor.send({ type: "CHANNEL_CLOSED", error: err });
        }
      });
      await ch.basicQos({ prefetchCount: this.options.prefetch ?? 50 });
    }
    const queue = await this.host.prepareQueue(ch, this.options.queue, this.queueLost);
    this.source = queue;
    this.queueLost = false;
    const o = this.options;
    const consumeOpts = {
      queue,
      ...(o.noAck !== undefined ? { noAck: o.noAck } : {}),
      ...(o.exclusive !== undefined ? { exclusive: o.exclusive } : {}),
      ...(o.arguments !== undefined ? { arguments: o.arguments } : {}),
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
  }

  private async drain(): Promise<void> {
    const ch = this.channel;
    const tag = this.consumerTag;
    if (ch?.isOpen && tag !== undefined) {
      try {
        await ch.basicCancel(tag);
      } catch {
        // channel gone meanwhile: nothing more will be delivered
      }
    }
    this.consumerTag = undefined;
    await this.whenIdle(this.options.drainTimeout ?? 10_000);
    this.channel = undefined;
    if (ch?.isOpen) await ch.close().catch(() => undefined);
  }

  private whenIdle(timeout: number): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeout);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  // ─── deliveries ─────────────────────────────────────────────────────────

  private deliver(ch: Channel, m: Message): void {
    const msg: ConsumedMessage = {
      body: m.body,
      properties: m.properties,
      fields: {
        deliveryTag: m.deliveryTag,
        redelivered: m.redelivered,
        exchange: m.exchange,
        routingKey: m.routingKey,
        consumerTag: m.consumerTag ?? "",
      },
    };
    this.inFlight++;
    let started = 0;
    if (this.stats !== undefined) {
      this.stats.delivered();
      started = performance.now();
    }
    // Tracing on: a consumer span in the producer's trace; the handler runs in its context.
    const traced = this.tracing?.startProcess(this.source, msg);
    const span = traced?.span;
    let result: unknown;
    try {
      result =
        traced === undefined ? this.handler(msg) : this.tracing!.run(traced.context, this.handler, msg);
    } catch (e) {
      this.finish(ch, msg, e, true, started, span);
      return;
    }
    if (
      result !== null &&
      typeof result === "object" &&
      typeof (result as Promise<unknown>).then === "function"
    ) {
      (result as Promise<unknown>).then(
        () => this.finish(ch, msg, undefined, false, started, span),
        (e: unknown) => this.finish(ch, msg, e, true, started, span),
      );
    } else this.finish(ch, msg, undefined, false, started, span);
  }

  /** `started`: performance.now() when the handler started (0 without metrics). */
  private finish(
    ch: Channel,
    msg: ConsumedMessage,
    error: unknown,
    failed: boolean,
    started: number,
    span?: Span,
  ): void {
    this.inFlight--;
    this.handled++;
    this.stats?.handled((performance.now() - started) / 1000);
    // Only on the channel it came from, and only while that channel lives: a stale tag would
    // close the new channel (406 unknown delivery tag); the broker redelivers instead.
    if (!this.options.noAck && ch === this.channel && ch.isOpen) {
      try {
        if (failed) ch.basicNack(msg.fields.deliveryTag, { requeue: !msg.fields.redelivered });
        else ch.basicAck(msg.fields.deliveryTag);
        if (this.stats !== undefined) {
          if (!failed) this.stats.acked();
          else if (msg.fields.redelivered) this.stats.rejected();
          else this.stats.nacked();
        }
      } catch {
        // closed between the check and the send: the broker redelivers
      }
    }
    if (span !== undefined) {
      const settled = !this.options.noAck && ch === this.channel && ch.isOpen;
      this.tracing?.processed(span, deliveryOutcome(this.options.noAck, settled, failed, msg), failed, error);
    }
    if (failed && !this.emit("error", error, msg)) {
      process.emitWarning(
        `warren: a handler for queue "${this.queue}" failed and no "error" listener is set on the consumer: ${(error as Error)?.message ?? String(error)}`,
      );
    }
    if (this.inFlight === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const r of w) r();
    }
  }
}

export { ConnectionClosedError };
