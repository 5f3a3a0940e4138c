/**
 * The event loop's delay for /healthz, measured by node:perf_hooks monitorEventLoopDelay: how late
 * a timer that should fire every `RESOLUTION_MS` fires. Kept per window of `WINDOW_MS`: /healthz
 * shows the last whole window (the current one until the first has passed).
 */
import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks";
import type { Health } from "./types.js";

const RESOLUTION_MS = 10;
const WINDOW_MS = 10_000;

type Delay = Health["eventLoopDelayMs"];

export class LoopDelay {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private last: Delay | undefined;
  private windowStart = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.histogram.enable();
    this.timer = setInterval(() => {
      this.last = this.read();
      this.histogram.reset();
      this.windowStart = Date.now();
    }, WINDOW_MS);
    this.timer.unref();
  }

  /** The last whole window, or the current one. */
  report(): Delay {
    return this.last ?? this.read();
  }

  stop(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }

  private read(): Delay {
    const h = this.histogram;
    // The histogram holds whole intervals (resolution included), in ns; 0 samples gives NaN/huge values.
    const ms = (ns: number) =>
      h.count === 0 || !Number.isFinite(ns)
        ? 0
        : Math.max(0, Math.round((ns / 1e6 - RESOLUTION_MS) * 100) / 100);
    return {
      mean: ms(h.mean),
      p50: ms(h.percentile(50)),
      p99: ms(h.percentile(99)),
      max: ms(h.max),
      windowMs: Date.now() - this.windowStart,
    };
  }
}
