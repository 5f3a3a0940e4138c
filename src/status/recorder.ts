/**
 * What the status server remembers of a client: its last transitions (a ring buffer), its last
 * recovery, and — while someone listens — the rates of its counters, computed on a timer so that
 * a burst of messages gives one `rates` event per interval, never one per message.
 *
 * It listens to the client only between its construction (inside serveStatus) and close(): a
 * client that is not served records nothing.
 */
import type { StateChange } from "../client/client-options.js";
import type { ConsumerStats } from "../client/consumer-types.js";
import { ConfigError } from "../errors.js";
import { RateMeter, type Sample } from "./rates.js";
import { Ring } from "./ring.js";
import type { ErrorInfo, Rates, Recovery, Transition } from "./types.js";

/** What the recorder needs of a client (the Client, or a fake in tests). */
export interface RecordedClient {
  on(event: "state", fn: (change: StateChange) => void): unknown;
  off(event: "state", fn: (change: StateChange) => void): unknown;
  readonly consumers: readonly { readonly stats: ConsumerStats }[];
  readonly publishers: readonly {
    readonly totals: { published: number; confirmed: number; nacked: number };
    readonly counters: { nackRetries: number };
  }[];
  readonly rpcClients: readonly { readonly calls: number }[];
  readonly rpcServers: readonly { readonly served: number }[];
}

/** Time spent in the conditions an operator asks about, in ms (see ClientStatus.timeIn). */
export interface TimeIn {
  blockedMs: number;
  recoveringMs: number;
  degradedMs: number;
}

export type StatusEvent = { type: "state"; transition: Transition } | { type: "rates"; rates: Rates };

export interface RecorderOptions {
  /** Transitions kept (default 300). */
  history?: number;
  /** How often rates are computed while someone listens, in ms (default 500, at least 250). */
  ratesIntervalMs?: number;
  /** The clock (default Date.now). */
  now?: () => number;
}

export const DEFAULT_HISTORY = 300;
export const DEFAULT_RATES_INTERVAL_MS = 500;
/** Rates at most 4 times a second. */
export const MIN_RATES_INTERVAL_MS = 250;

const OPEN = new Set(["restoring", "running", "blocked"]);

export class StatusRecorder {
  /** When recording started (ms since the epoch). */
  readonly since: number;
  readonly ratesIntervalMs: number;
  private readonly ring: Ring<Transition>;
  private readonly now: () => number;
  private recovery: Recovery | null = null;
  /** When the current state was entered (the last transition seen). */
  private stateAt: number | undefined;
  /**
   * Finished spells, and when the current ones began. A spell lasts while any of the client's
   * connections is in it (blocked, degraded, or lost and not yet running again): concurrent
   * spells of two connections count once.
   */
  private readonly spent: TimeIn = { blockedMs: 0, recoveringMs: 0, degradedMs: 0 };
  private blockedAt: number | undefined;
  private degradedAt: number | undefined;
  private recoveringAt: number | undefined;
  /** The connections (by role) blocked, and degraded, now. */
  private readonly blockedRoles = new Set<string>();
  private readonly degradedRoles = new Set<string>();
  /** By connection role: set from the loss of its open connection until it runs again. */
  private readonly lost = new Map<string, { at: number; reason: ErrorInfo | null }>();
  private readonly listeners = new Set<(event: StatusEvent) => void>();
  private timer: NodeJS.Timeout | undefined;
  private meter: RateMeter | undefined;
  private closed = false;

  constructor(
    private readonly client: RecordedClient,
    options: RecorderOptions = {},
  ) {
    const interval = options.ratesIntervalMs ?? DEFAULT_RATES_INTERVAL_MS;
    if (!(interval >= MIN_RATES_INTERVAL_MS))
      throw new ConfigError(`ratesIntervalMs must be at least ${MIN_RATES_INTERVAL_MS} (got ${interval})`);
    this.ratesIntervalMs = interval;
    this.ring = new Ring(options.history ?? DEFAULT_HISTORY);
    this.now = options.now ?? Date.now;
    this.since = this.now();
    client.on("state", this.onState);
  }

  /** The transitions kept, oldest first. */
  get transitions(): Transition[] {
    return this.ring.toArray();
  }

  /** The last recovery since recording started, or null. */
  get lastRecovery(): Recovery | null {
    return this.recovery;
  }

  /** When the current state was entered, or undefined before the first transition seen. */
  get stateSince(): number | undefined {
    return this.stateAt;
  }

  /** Time blocked, recovering and degraded since recording started, current spells included. */
  timeIn(): TimeIn {
    const now = this.now();
    const since = (at: number | undefined) => (at === undefined ? 0 : now - at);
    return {
      blockedMs: this.spent.blockedMs + since(this.blockedAt),
      recoveringMs: this.spent.recoveringMs + since(this.recoveringAt),
      degradedMs: this.spent.degradedMs + since(this.degradedAt),
    };
  }

  /** How many listen (the rates timer runs while there is one). */
  get listenerCount(): number {
    return this.listeners.size;
  }

  /**
   * Calls `fn` with every transition as it happens and with the rates once per interval, until
   * the returned function is called (or close()).
   */
  subscribe(fn: (event: StatusEvent) => void): () => void {
    if (this.closed) return () => undefined;
    this.listeners.add(fn);
    if (this.timer === undefined) {
      this.meter = new RateMeter(this.now(), this.samples());
      this.timer = setInterval(() => this.tick(), this.ratesIntervalMs);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(fn);
      if (this.listeners.size === 0) this.stopTimer();
    };
  }

  /** Stops listening to the client and to the clock; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.off("state", this.onState);
    this.listeners.clear();
    this.stopTimer();
  }

  private readonly onState = (change: StateChange): void => {
    const at = this.now();
    const transition: Transition = {
      time: new Date(at).toISOString(),
      from: change.from,
      to: change.to,
      host: change.host,
      degraded: change.degraded,
      ...(change.error !== undefined ? { error: errorInfo(change.error) } : {}),
      ...(change.role !== undefined ? { role: change.role } : {}),
    };
    this.ring.push(transition);
    this.stateAt = at;
    const role = change.role ?? "shared";
    this.blockedAt = this.spell(
      this.blockedRoles,
      role,
      change.to === "blocked",
      at,
      this.blockedAt,
      "blockedMs",
    );
    this.degradedAt = this.spell(
      this.degradedRoles,
      role,
      change.degraded,
      at,
      this.degradedAt,
      "degradedMs",
    );
    const lost = this.lost.get(role);
    if (OPEN.has(change.from) && !OPEN.has(change.to) && change.to !== "closing" && change.to !== "closed") {
      if (lost === undefined) this.lost.set(role, { at, reason: transition.error ?? null });
    }
    if (change.to === "running" && lost !== undefined) {
      this.recovery = { time: transition.time, downMs: at - lost.at, reason: lost.reason };
      this.lost.delete(role);
    }
    if (change.to === "closed" || change.to === "failed") this.lost.delete(role);
    if (this.lost.size > 0) this.recoveringAt ??= at;
    else if (this.recoveringAt !== undefined) {
      this.spent.recoveringMs += at - this.recoveringAt;
      this.recoveringAt = undefined;
    }
    this.emit({ type: "state", transition });
  };

  /** `role` enters or leaves a spell; returns when the spell (of any role) began, or undefined. */
  private spell(
    roles: Set<string>,
    role: string,
    inIt: boolean,
    at: number,
    began: number | undefined,
    total: "blockedMs" | "degradedMs",
  ): number | undefined {
    if (inIt) roles.add(role);
    else roles.delete(role);
    if (roles.size > 0) return began ?? at;
    if (began !== undefined) this.spent[total] += at - began;
    return undefined;
  }

  private tick(): void {
    const meter = this.meter;
    if (meter === undefined) return;
    const at = this.now();
    const rates: Rates = { ...meter.sample(at, this.samples()), time: new Date(at).toISOString() };
    this.emit({ type: "rates", rates });
  }

  private *samples(): Iterable<Sample> {
    for (const c of this.client.consumers) {
      const s = c.stats;
      yield [
        c,
        {
          delivered: s.delivered,
          acked: s.acked,
          rejected: s.requeued,
          deadLettered: s.deadLettered,
          retried: s.retried,
        },
      ];
    }
    for (const p of this.client.publishers) yield [p, { ...p.totals, retried: p.counters.nackRetries }];
    for (const r of this.client.rpcClients) yield [r, { rpcCalls: r.calls }];
    for (const r of this.client.rpcServers) yield [r, { rpcServed: r.served }];
  }

  private emit(event: StatusEvent): void {
    for (const fn of [...this.listeners]) fn(event);
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.meter = undefined;
  }
}

/** An error as the status server shows it: name, code (when it has one), message. */
export function errorInfo(error: Error): ErrorInfo {
  const code = (error as { code?: unknown }).code;
  return { name: error.name, ...(typeof code === "string" ? { code } : {}), message: error.message };
}
