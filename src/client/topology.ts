/**
 * The topology a client declared, recorded so it can be declared again after every
 * recovery: exchanges, then queues, then bindings (queue and exchange-to-exchange).
 * A server-named queue keeps the name it was first given as its key; when the broker
 * names it anew after a recovery, bindings and consumers that use the key follow.
 */
import type { Channel } from "../amqp/channel.js";
import type { FieldTable } from "../protocol/table.js";

/** An exchange for `client.declare()` (exchange.declare). Booleans default to false. */
export interface ExchangeSpec {
  /** The exchange's name. */
  name: string;
  /** direct (default), fanout, topic, headers, or a plugin type. */
  type?: string;
  /** Survives a broker restart. */
  durable?: boolean;
  /** Deleted once its last binding (as a source) is removed. */
  autoDelete?: boolean;
  /** Takes publishes only from other exchanges. */
  internal?: boolean;
  /** Exchange arguments, e.g. { "alternate-exchange": "unrouted" }. */
  arguments?: FieldTable;
}

/**
 * A queue for `client.declare()` (queue.declare). A named queue is durable, a server-named one
 * exclusive, unless said otherwise: never the transient non-exclusive kind that RabbitMQ 4.3 refuses
 * by default (docs/rabbitmq-4.md). `autoDelete` defaults to false.
 */
export interface QueueSpec {
  /** Empty or absent: the broker names it (and names it again after each recovery). */
  name?: string;
  /**
   * Survives a broker restart. Default: true unless the queue is exclusive. `durable: false` on a
   * queue that is not exclusive is a transient non-exclusive queue, deprecated by RabbitMQ and refused
   * by 4.3 unless every node permits it (`deprecated_features.permit.transient_nonexcl_queues`).
   */
  durable?: boolean;
  /**
   * Used only by this connection and deleted when it closes (declared anew after a recovery).
   * Default: true for a server-named queue, false for a named one.
   */
  exclusive?: boolean;
  /** Deleted once its last consumer is cancelled. */
  autoDelete?: boolean;
  /** e.g. { "x-queue-type": "quorum" } */
  arguments?: FieldTable;
}

/** A binding for `client.declare()` and `client.unbind()`: a queue or an exchange bound to an exchange. */
export interface BindingSpec {
  /** The source exchange. */
  exchange: string;
  /** Bind this queue (its name, or the name a server-named queue was first given)… */
  queue?: string;
  /** …or this exchange (an exchange-to-exchange binding). */
  destination?: string;
  /** The binding key. Default "". */
  routingKey?: string;
  /** Binding arguments (a headers exchange matches on them, e.g. { "x-match": "all", … }). */
  arguments?: FieldTable;
}

/** What `client.declare()` declares, in this order: exchanges, queues, bindings. */
export interface TopologySpec {
  /** Exchanges to declare first. */
  exchanges?: ExchangeSpec[];
  /** Queues to declare next. */
  queues?: QueueSpec[];
  /** Bindings to make last (their exchanges and queues must exist by then). */
  bindings?: BindingSpec[];
}

/** What `client.declare()` resolves with. */
export interface DeclareResult {
  /** The name of each queue of the spec, in order (server-named ones as the broker named them). */
  queues: string[];
}

interface QueueRecord {
  spec: QueueSpec;
  /** The name the broker uses now. */
  current: string;
  serverNamed: boolean;
}

const bindingKey = (b: BindingSpec) =>
  JSON.stringify([b.exchange, b.queue ?? null, b.destination ?? null, b.routingKey ?? "", b.arguments ?? {}]);

/** The recorded topology of a client (`client.topology`); the client changes it, applications read it. */
export class Topology {
  private readonly exchanges = new Map<string, ExchangeSpec>();
  /** By key: the queue's own name, or the first name the broker gave a server-named queue. */
  private readonly queues = new Map<string, QueueRecord>();
  private readonly bindings = new Map<string, BindingSpec>();

  /** Exchanges, queues and bindings recorded, in all. */
  get size(): number {
    return this.exchanges.size + this.queues.size + this.bindings.size;
  }

  /** The name the broker uses now for a queue key (a queue not declared here: unchanged). */
  queueName(key: string): string {
    return this.queues.get(key)?.current ?? key;
  }

  /** The recorded spec of a queue, if the client declared it. */
  queueSpec(key: string): QueueSpec | undefined {
    return this.queues.get(key)?.spec;
  }

  /** True when the client declared this queue (by its key). */
  hasQueue(key: string): boolean {
    return this.queues.has(key);
  }

  /** Declares a spec on the channel and records it. Resolves with the queue names. */
  async declare(ch: Channel, spec: TopologySpec): Promise<DeclareResult> {
    for (const e of spec.exchanges ?? []) await declareExchange(ch, e);
    for (const e of spec.exchanges ?? []) this.exchanges.set(e.name, e);
    const names: string[] = [];
    for (const q of spec.queues ?? []) {
      const existing = q.name ? this.queues.get(q.name) : undefined;
      const name = await declareQueue(ch, q, existing?.current ?? q.name ?? "");
      const serverNamed = !q.name;
      const key = serverNamed ? name : (q.name as string);
      this.queues.set(key, { spec: q, current: name, serverNamed });
      names.push(name);
    }
    for (const b of spec.bindings ?? []) {
      await this.bind(ch, b);
      this.bindings.set(bindingKey(b), b);
    }
    return { queues: names };
  }

  /**
   * Declares everything again, in order. `onRename(key, from, to)` is told of server-named
   * queues that got a new name.
   */
  async restore(ch: Channel, onRename: (key: string, from: string, to: string) => void): Promise<void> {
    for (const e of this.exchanges.values()) await declareExchange(ch, e);
    for (const [key, r] of this.queues) {
      const name = await declareQueue(ch, r.spec, r.serverNamed ? "" : key);
      if (name !== r.current) {
        const from = r.current;
        r.current = name;
        onRename(key, from, name);
      }
    }
    for (const b of this.bindings.values()) await this.bind(ch, b);
  }

  /**
   * Declares again what any connection may declare, for a connection that does not own the
   * topology (a client's publish connection): the exchanges, the named queues that are not
   * exclusive, and the bindings between them. Exclusive queues belong to the connection that
   * declared them (another gets 405 RESOURCE_LOCKED) and a server-named one would be a new queue:
   * both are left to the owning connection's restore(). Idempotent; renames nothing.
   */
  async restoreShared(ch: Channel): Promise<void> {
    for (const e of this.exchanges.values()) await declareExchange(ch, e);
    const shared = new Set<string>();
    for (const [key, r] of this.queues) {
      if (r.serverNamed || r.spec.exclusive === true) continue;
      await declareQueue(ch, r.spec, key);
      shared.add(key);
    }
    for (const b of this.bindings.values())
      if (b.queue === undefined || shared.has(b.queue)) await this.bind(ch, b);
  }

  /**
   * Brings one recorded queue back (after it was deleted under a consumer): declares it
   * and its bindings again. A server-named queue is only declared anew when `lost` (its
   * old name cannot be declared: amq.* is reserved), and then gets a new name.
   * Returns the queue's current name.
   */
  async restoreQueue(
    ch: Channel,
    key: string,
    lost: boolean,
    onRename: (key: string, from: string, to: string) => void,
  ): Promise<string> {
    const r = this.queues.get(key);
    if (!r) return key;
    if (r.serverNamed && !lost) return r.current;
    const name = await declareQueue(ch, r.spec, r.serverNamed ? "" : key);
    if (name !== r.current) {
      const from = r.current;
      r.current = name;
      onRename(key, from, name);
    }
    const bindings = [...this.bindings.values()].filter((b) => b.queue === key);
    // An auto-delete exchange goes when its last binding does: declare the recorded sources again first.
    for (const b of bindings) {
      const e = this.exchanges.get(b.exchange);
      if (e) await declareExchange(ch, e);
    }
    for (const b of bindings) await this.bind(ch, b);
    return name;
  }

  private async bind(ch: Channel, b: BindingSpec): Promise<void> {
    if (b.queue !== undefined) {
      await ch.queueBind({
        queue: this.queueName(b.queue),
        exchange: b.exchange,
        routingKey: b.routingKey ?? "",
        ...(b.arguments ? { arguments: b.arguments } : {}),
      });
    } else if (b.destination !== undefined) {
      await ch.exchangeBind({
        destination: b.destination,
        source: b.exchange,
        routingKey: b.routingKey ?? "",
        ...(b.arguments ? { arguments: b.arguments } : {}),
      });
    }
  }

  /** Forgets a queue and the bindings to it. */
  forgetQueue(key: string): void {
    this.queues.delete(key);
    for (const [k, b] of this.bindings) if (b.queue === key) this.bindings.delete(k);
  }

  /** Forgets an exchange and every binding from or to it. */
  forgetExchange(name: string): void {
    this.exchanges.delete(name);
    for (const [k, b] of this.bindings)
      if (b.exchange === name || b.destination === name) this.bindings.delete(k);
  }

  /** Forgets a binding (matched on all its fields). */
  forgetBinding(b: BindingSpec): void {
    this.bindings.delete(bindingKey(b));
  }

  /** A snapshot, for inspection and tests. */
  snapshot(): { exchanges: string[]; queues: { key: string; name: string }[]; bindings: BindingSpec[] } {
    return {
      exchanges: [...this.exchanges.keys()],
      queues: [...this.queues].map(([key, r]) => ({ key, name: r.current })),
      bindings: [...this.bindings.values()],
    };
  }
}

function declareExchange(ch: Channel, e: ExchangeSpec): Promise<void> {
  return ch.exchangeDeclare({
    exchange: e.name,
    type: e.type ?? "direct",
    durable: e.durable ?? false,
    autoDelete: e.autoDelete ?? false,
    internal: e.internal ?? false,
    ...(e.arguments ? { arguments: e.arguments } : {}),
  });
}

/**
 * The durable and exclusive flags a spec declares: exclusive when server-named, durable when not
 * exclusive, unless the spec says otherwise (as amqplib's assertQueue is durable by default).
 */
export function queueFlags(q: QueueSpec): { durable: boolean; exclusive: boolean } {
  const exclusive = q.exclusive ?? !q.name;
  return { durable: q.durable ?? !exclusive, exclusive };
}

async function declareQueue(ch: Channel, q: QueueSpec, name: string): Promise<string> {
  const ok = await ch.queueDeclare({
    queue: name,
    ...queueFlags(q),
    autoDelete: q.autoDelete ?? false,
    ...(q.arguments ? { arguments: q.arguments } : {}),
  });
  return ok.queue;
}
