/**
 * How late the event loop runs, measured once per process and shared by whoever needs it: the
 * connections (to say, when they lose the broker, that the loop had stalled), the metrics
 * (`warren_event_loop_lag_seconds`) and the status server (/healthz).
 *
 * Two probes, both cheap and unref'd:
 * - a JS timer every TICK_MS notes how late it fires. It alone knows *when* a stall happened, and
 *   a stall still going on (the time since its last tick): after a long block, the socket's close
 *   may be handled before any timer runs again, and that close is when the question is asked;
 * - node:perf_hooks monitorEventLoopDelay (a native timer every RESOLUTION_MS, no JS), on only
 *   while the metrics or the status server use the monitor: the distribution for /healthz, and
 *   delays shorter than a tick, which the JS timer may fall between.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";

/** How often the JS probe runs: a stall is measured to within this. */
export const TICK_MS = 100;
/** The native histogram's resolution. */
const RESOLUTION_MS = 10;
/** /healthz reports whole windows of this length. */
const WINDOW_MS = 10_000;
/** Seconds of per-second peaks kept (peakSince looks no further back). */
const HISTORY_S = 600;

/** The event loop's delay over one window, in ms (/healthz `eventLoopDelayMs`). */
export interface LoopDelayStats {
  mean: number;
  p50: number;
  p99: number;
  max: number;
  windowMs: number;
}

/** The part of perf_hooks' IntervalHistogram used here (values in ns). */
export interface DelayHistogram {
  readonly count: number;
  readonly mean: number;
  readonly max: number;
  percentile(p: number): number;
  reset(): void;
  disable(): void;
}

/** What the monitor takes from its surroundings; unit tests hand a fake clock and histogram. */
export interface LoopMonitorEnv {
  /** A monotonic clock in ms. */
  now(): number;
  /** Runs `fn` every `ms` without keeping the process alive; returns what stops it. */
  every(ms: number, fn: () => void): () => void;
  /** An enabled histogram of the loop's delay. */
  histogram(): DelayHistogram;
}

const nodeEnv: LoopMonitorEnv = {
  now: () => performance.now(),
  every(ms, fn) {
    const timer = setInterval(fn, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
  histogram() {
    const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    h.enable();
    return h;
  },
};

export class EventLoopMonitor {
  private lastTick: number;
  private readonly stopTicking: () => void;
  /** The largest delay seen in each second (ms), and which second each slot holds. */
  private readonly peaks = new Float64Array(HISTORY_S);
  private readonly seconds = new Float64Array(HISTORY_S).fill(-1);
  private histogram: DelayHistogram | undefined;
  private histogramMax = 0;
  private windowStart = 0;
  private lastWindow: LoopDelayStats | undefined;

  constructor(private readonly env: LoopMonitorEnv = nodeEnv) {
    this.lastTick = env.now();
    this.stopTicking = env.every(TICK_MS, () => this.tick());
  }

  /** The monitor's clock (ms): the unit of `peakSince`. */
  now(): number {
    return this.env.now();
  }

  /**
   * The largest delay (ms) of the event loop after `since` (the monitor's clock), counting a stall
   * that may still be going on from the caller's point of view (it runs first after the block).
   * Kept per whole second: a stall in the second holding `since` counts; at most HISTORY_S back.
   */
  peakSince(since: number): number {
    const now = this.env.now();
    let peak = Math.max(0, now - this.lastTick - TICK_MS);
    const last = Math.floor(now / 1000);
    for (let s = Math.max(Math.floor(since / 1000), last - HISTORY_S + 1); s <= last; s++) {
      const i = s % HISTORY_S;
      if (this.seconds[i] === s) peak = Math.max(peak, this.peaks[i]!);
    }
    return peak;
  }

  /** Turns the native histogram on or off (the distribution of `delay()`). */
  setDistribution(on: boolean): void {
    if (on && this.histogram === undefined) {
      this.histogram = this.env.histogram();
      this.histogramMax = 0;
      this.windowStart = this.env.now();
      this.lastWindow = undefined;
    } else if (!on && this.histogram !== undefined) {
      this.histogram.disable();
      this.histogram = undefined;
    }
  }

  /** The last whole window's delay (the current one until a window has passed); zeros when off. */
  delay(): LoopDelayStats {
    return this.lastWindow ?? this.read();
  }

  stop(): void {
    this.stopTicking();
    this.setDistribution(false);
  }

  private tick(): void {
    const now = this.env.now();
    let late = now - this.lastTick - TICK_MS;
    this.lastTick = now;
    const h = this.histogram;
    if (h !== undefined) {
      // The native maximum only grows within a window: a new one happened since the last tick.
      const max = this.ms(h.max);
      if (max > this.histogramMax) {
        late = Math.max(late, max);
        this.histogramMax = max;
      }
      if (now - this.windowStart >= WINDOW_MS) {
        this.lastWindow = this.read();
        h.reset();
        this.histogramMax = 0;
        this.windowStart = now;
      }
    }
    this.record(now, late);
  }

  private record(at: number, ms: number): void {
    if (!(ms > 0)) return;
    const s = Math.floor(at / 1000);
    const i = s % HISTORY_S;
    if (this.seconds[i] !== s) {
      this.seconds[i] = s;
      this.peaks[i] = 0;
    }
    if (ms > this.peaks[i]!) this.peaks[i] = ms;
  }

  /** A histogram value (ns, a whole interval: the resolution included) as a delay in ms. */
  private ms(ns: number): number {
    const h = this.histogram;
    if (h === undefined || h.count === 0 || !Number.isFinite(ns)) return 0;
    return Math.max(0, Math.round((ns / 1e6 - RESOLUTION_MS) * 100) / 100);
  }

  private read(): LoopDelayStats {
    const h = this.histogram;
    const windowMs = h === undefined ? 0 : Math.round(this.env.now() - this.windowStart);
    if (h === undefined) return { mean: 0, p50: 0, p99: 0, max: 0, windowMs };
    return {
      mean: this.ms(h.mean),
      p50: this.ms(h.percentile(50)),
      p99: this.ms(h.percentile(99)),
      max: this.ms(h.max),
      windowMs,
    };
  }
}

// ─── the one monitor of the process ─────────────────────────────────────────

/** A use of the shared monitor: `release()` it when done (idempotent). */
export interface EventLoopLease {
  readonly monitor: EventLoopMonitor;
  release(): void;
}

let shared: EventLoopMonitor | undefined;
let users = 0;
let distributionUsers = 0;

/**
 * Starts (or joins) the process's event-loop monitor; it stops when the last lease is released.
 * `distribution`: also run the native histogram (metrics, /healthz) while this lease is held.
 */
export function watchEventLoop(
  options: { distribution?: boolean } = {},
  env?: LoopMonitorEnv,
): EventLoopLease {
  const monitor = (shared ??= new EventLoopMonitor(env));
  users++;
  const distribution = options.distribution === true;
  if (distribution && distributionUsers++ === 0) monitor.setDistribution(true);
  let held = true;
  return {
    monitor,
    release() {
      if (!held) return;
      held = false;
      if (distribution && --distributionUsers === 0) monitor.setDistribution(false);
      if (--users === 0) {
        monitor.stop();
        shared = undefined;
      }
    },
  };
}
