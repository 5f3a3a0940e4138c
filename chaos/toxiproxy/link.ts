/**
 * The data path of one proxied connection.
 *
 * A connection has two links: upstream (client socket → server socket) and downstream (server
 * socket → client socket). A link is a pipeline:
 *
 *   source socket → chan → [noop stage] → chan → [toxic stage] → chan → ... → chan → sink → dest socket
 *
 * Every read from the source is one chunk. Channels are small bounded queues (1024 chunks in front
 * of a latency stage, as in the reference server; a few elsewhere); when the first one is full the
 * source socket is paused, so a stalled stage pushes back all the way to the sending peer through
 * TCP flow control. The sink waits for 'drain' when the destination's buffer is full.
 *
 * Toxics change on live links: adding one interrupts the last stage and appends a stage behind it;
 * removing one interrupts it and the stage in front of it, and joins the channel around it (data
 * already past it stays ahead of data not yet through it); updating one restarts its stage. An
 * interrupted stage passes on the data it holds, so nothing is lost or reordered.
 *
 * End of stream travels through the pipeline as an item; when it reaches the sink the destination
 * socket is closed completely (as the reference server does, half-open TCP is not kept).
 */
import type { Socket } from "node:net";
import {
  type Chunk,
  type Direction,
  EOF,
  INTERRUPTED,
  type Item,
  runStage,
  type StageIO,
  type StageResult,
  TIMEOUT,
  type ToxicLinkState,
  type ToxicType,
} from "./toxics.js";

/** A toxic as the proxy holds it; stages read its attributes and toxicity when they (re)start. */
export interface ToxicSpec {
  name: string;
  type: ToxicType;
  direction: Direction;
  toxicity: number;
  attributes: Record<string, number>;
}

const LATENCY_CAPACITY = 1024;
const DEFAULT_CAPACITY = 4;
const MAX_TIMER_MS = 2 ** 31 - 1;

function capacityFor(type: ToxicType | null): number {
  return type === "latency" ? LATENCY_CAPACITY : DEFAULT_CAPACITY;
}

/** A bounded FIFO between two stages. `push` never blocks: callers check `full` first. */
class Chan {
  private readonly queue: Item[] = [];
  private readonly waiters = new Set<() => void>();

  constructor(readonly capacity: number) {}

  get full(): boolean {
    return this.queue.length >= this.capacity;
  }

  push(item: Item): void {
    this.queue.push(item);
    this.wake();
  }

  shift(): Item | undefined {
    const item = this.queue.shift();
    if (item !== undefined) this.wake();
    return item;
  }

  /** Moves every item of `other` behind this channel's items. */
  absorb(other: Chan): void {
    if (other.queue.length === 0) return;
    this.queue.push(...other.queue.splice(0));
    this.wake();
    other.wake();
  }

  /** Calls `fn` once at the next push or shift; returns a cancel function. */
  onChange(fn: () => void): () => void {
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }

  wake(): void {
    if (this.waiters.size === 0) return;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }
}

/** A one-shot signal with cancellable subscriptions. */
class Interrupt {
  fired = false;
  private readonly listeners = new Set<() => void>();

  fire(): void {
    if (this.fired) return;
    this.fired = true;
    const listeners = [...this.listeners];
    this.listeners.clear();
    for (const l of listeners) l();
  }

  on(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

type WaitResult = "changed" | "timeout" | "interrupted";

/** Waits for a change of `chan` (when given), `ms` to pass (when finite), or the interrupt. */
function wait(chan: Chan | null, ms: number, interrupt: Interrupt): Promise<WaitResult> {
  if (interrupt.fired) return Promise.resolve("interrupted");
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let offChan: (() => void) | undefined;
    const offInterrupt = interrupt.on(() => finish("interrupted"));
    function finish(result: WaitResult): void {
      if (timer !== undefined) clearTimeout(timer);
      offChan?.();
      offInterrupt();
      resolve(result);
    }
    if (chan) offChan = chan.onChange(() => finish("changed"));
    if (Number.isFinite(ms))
      timer = setTimeout(() => finish("timeout"), Math.min(MAX_TIMER_MS, Math.max(0, ms)));
  });
}

/** One stage of a link: the hidden noop at the head, or one toxic. */
class Slot {
  interrupt: Interrupt | null = null;
  running: Promise<StageResult> | null = null;
  /** The stage has passed end of stream on (or is resetting the connection): never restarted. */
  done = false;
  /** Whether the toxic applied (toxicity draw) in the current or last run. */
  applied = false;
  readonly state: ToxicLinkState = { bytes: 0 };

  constructor(
    readonly link: Link,
    readonly toxic: ToxicSpec | null,
    public input: Chan,
    public output: Chan,
  ) {}

  start(): void {
    if (this.done || this.running || this.link.dead) return;
    const interrupt = new Interrupt();
    this.interrupt = interrupt;
    const toxic = this.toxic;
    this.applied = toxic !== null && Math.random() < toxic.toxicity;
    const type: ToxicType = toxic && this.applied ? toxic.type : "noop";
    const attrs = toxic ? { ...toxic.attributes } : {};
    this.running = runStage(type, attrs, this.io(interrupt)).then(
      (result) => {
        if (result === "done") this.done = true;
        this.running = null;
        return result;
      },
      (err: unknown) => {
        this.done = true;
        this.running = null;
        this.link.conn.fail(err);
        return "done" as const;
      },
    );
  }

  /** Interrupts the stage and waits until it has passed on what it held. */
  async stop(): Promise<void> {
    const running = this.running;
    if (!running) return;
    this.interrupt?.fire();
    await running;
  }

  private io(interrupt: Interrupt): StageIO {
    const slot = this;
    return {
      state: this.state,
      async recv(timeoutMs?: number) {
        const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + timeoutMs;
        for (;;) {
          if (interrupt.fired) return INTERRUPTED;
          const item = slot.input.shift();
          if (item !== undefined) return item;
          const r = await wait(slot.input, deadline - performance.now(), interrupt);
          if (r === "timeout") return TIMEOUT;
        }
      },
      async send(item: Item) {
        for (;;) {
          if (interrupt.fired) {
            slot.output.push(item);
            return false;
          }
          if (!slot.output.full) {
            slot.output.push(item);
            return true;
          }
          await wait(slot.output, Number.POSITIVE_INFINITY, interrupt);
        }
      },
      async sleep(ms: number) {
        if (interrupt.fired) return false;
        if (ms <= 0) return true;
        return (await wait(null, ms, interrupt)) === "timeout";
      },
      resetConnectionAfter(ms: number) {
        slot.link.conn.resetAfter(ms);
      },
    };
  }
}

/** One direction of a connection. */
export class Link {
  readonly slots: Slot[];
  private readonly head: Chan;
  private readonly tail: Chan;
  private readonly sinkInterrupt = new Interrupt();
  dead = false;
  /** The sink has seen end of stream (and closed the destination). */
  finished = false;
  private sourceEnded = false;
  private pausedForSpace = false;

  constructor(
    readonly conn: Connection,
    readonly direction: Direction,
    readonly source: Socket,
    readonly dest: Socket,
    toxics: readonly ToxicSpec[],
  ) {
    this.head = new Chan(DEFAULT_CAPACITY);
    this.tail = new Chan(DEFAULT_CAPACITY);
    this.slots = [new Slot(this, null, this.head, this.tail)];
    for (const toxic of toxics) this.append(toxic);
  }

  /** Appends a stage for `toxic` behind the last one (the last stage must be stopped). */
  private append(toxic: ToxicSpec): Slot {
    const last = this.slots[this.slots.length - 1]!;
    const chan = new Chan(capacityFor(toxic.type));
    last.output = chan;
    const slot = new Slot(this, toxic, chan, this.tail);
    this.slots.push(slot);
    return slot;
  }

  start(): void {
    for (const slot of this.slots) slot.start();
    void this.runSink();
    const source = this.source;
    source.on("data", (data: Buffer) => this.onData(data));
    source.on("end", () => this.endSource());
    source.on("close", () => this.endSource());
    source.resume();
  }

  private onData(data: Buffer): void {
    if (this.sourceEnded || this.dead) return;
    const chunk: Chunk = { data, ts: performance.now() };
    this.head.push(chunk);
    if (this.head.full && !this.pausedForSpace) {
      this.pausedForSpace = true;
      this.source.pause();
      const resumeWhenRoom = (): void => {
        if (this.dead) return;
        if (this.head.full) {
          this.head.onChange(resumeWhenRoom);
          return;
        }
        this.pausedForSpace = false;
        if (!this.source.destroyed) this.source.resume();
      };
      this.head.onChange(resumeWhenRoom);
    }
  }

  private endSource(): void {
    if (this.sourceEnded) return;
    this.sourceEnded = true;
    this.head.push(EOF);
  }

  private async runSink(): Promise<void> {
    const dest = this.dest;
    const interrupt = this.sinkInterrupt;
    for (;;) {
      if (interrupt.fired) return;
      const item = this.tail.shift();
      if (item === undefined) {
        await wait(this.tail, Number.POSITIVE_INFINITY, interrupt);
        continue;
      }
      if (item === EOF) {
        this.finished = true;
        this.conn.closeSocket(dest);
        return;
      }
      if (dest.destroyed || dest.writableEnded) continue;
      if (!dest.write(item.data)) await drained(dest, interrupt);
    }
  }

  async addToxic(toxic: ToxicSpec): Promise<void> {
    if (this.dead || this.slots.some((s) => s.toxic?.name === toxic.name)) return;
    const last = this.slots[this.slots.length - 1]!;
    await last.stop();
    if (this.dead) return;
    const slot = this.append(toxic);
    last.start();
    slot.start();
  }

  async removeToxic(name: string): Promise<void> {
    if (this.dead) return;
    const index = this.slots.findIndex((s) => s.toxic?.name === name);
    if (index < 1) return;
    const prev = this.slots[index - 1]!;
    const slot = this.slots[index]!;
    await Promise.all([prev.stop(), slot.stop()]);
    if (this.dead) return;
    // Removing a timeout toxic that applied closes the pipeline (the reference server does too).
    if (slot.toxic?.type === "timeout" && slot.applied && !slot.done) slot.output.push(EOF);
    slot.output.absorb(slot.input);
    prev.output = slot.output;
    this.slots.splice(index, 1);
    prev.start();
  }

  async updateToxic(name: string): Promise<void> {
    if (this.dead) return;
    const slot = this.slots.find((s) => s.toxic?.name === name);
    if (!slot) return;
    await slot.stop();
    slot.start();
  }

  /** Stops everything at once; queued data is dropped. */
  kill(): void {
    if (this.dead) return;
    this.dead = true;
    this.sinkInterrupt.fire();
    for (const slot of this.slots) slot.interrupt?.fire();
  }
}

function drained(socket: Socket, interrupt: Interrupt): Promise<void> {
  if (socket.destroyed || interrupt.fired) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off("drain", done);
      socket.off("close", done);
      off();
      resolve();
    };
    const off = interrupt.on(done);
    socket.on("drain", done);
    socket.on("close", done);
  });
}

/** Callbacks from a connection to the proxy that owns it. */
export interface ConnectionOwner {
  toxics(direction: Direction): readonly ToxicSpec[];
  forget(conn: Connection): void;
}

/** A client connection and its upstream connection. */
export class Connection {
  server: Socket | null = null;
  upstream: Link | null = null;
  downstream: Link | null = null;
  closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();
  private openSockets = 0;

  /**
   * @param rst close both sockets with a TCP reset (SO_LINGER 0), as the reference server does for
   *   connections accepted while the proxy has a reset_peer toxic.
   */
  constructor(
    readonly owner: ConnectionOwner,
    readonly client: Socket,
    public rst: boolean,
  ) {
    this.track(client);
  }

  private track(socket: Socket): void {
    this.openSockets++;
    socket.on("error", () => {});
    socket.once("close", () => {
      this.openSockets--;
      if (this.openSockets === 0 && this.server) this.teardown();
    });
  }

  /** The upstream connection is up: start both links with the proxy's current toxics. */
  begin(server: Socket): void {
    if (this.closed) {
      server.destroy();
      return;
    }
    this.server = server;
    this.track(server);
    this.client.setNoDelay(true);
    server.setNoDelay(true);
    this.upstream = new Link(this, "upstream", this.client, server, this.owner.toxics("upstream"));
    this.downstream = new Link(this, "downstream", server, this.client, this.owner.toxics("downstream"));
    this.upstream.start();
    this.downstream.start();
  }

  link(direction: Direction): Link | null {
    return direction === "upstream" ? this.upstream : this.downstream;
  }

  /** Closes one socket completely once its pending writes are flushed (or resets it). */
  closeSocket(socket: Socket): void {
    if (socket.destroyed) return;
    if (this.rst) socket.resetAndDestroy();
    else socket.destroySoon();
  }

  resetAfter(ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.reset();
    }, ms);
    this.timers.add(timer);
  }

  /** Closes both sockets with a TCP reset. */
  reset(): void {
    this.rst = true;
    this.client.resetAndDestroy();
    this.server?.resetAndDestroy();
    this.teardown();
  }

  /** Closes both sockets now (proxy disabled, deleted or restarted). */
  destroy(): void {
    for (const socket of [this.client, this.server]) {
      if (!socket || socket.destroyed) continue;
      if (this.rst) socket.resetAndDestroy();
      else socket.destroy();
    }
    this.teardown();
  }

  fail(err: unknown): void {
    process.emitWarning(`toxiproxy: connection failed: ${String(err)}`);
    this.destroy();
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.upstream?.kill();
    this.downstream?.kill();
    this.owner.forget(this);
  }
}
