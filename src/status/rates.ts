/**
 * Rates per second from counters that only grow (a consumer's stats, a publisher's totals),
 * between two samples. Pure: the caller gives the time and the sources.
 *
 * Each source is followed on its own: one seen for the first time starts from 0 (it was made since
 * the last sample) unless it was there when the meter started, and one that went away (a cancelled
 * consumer) simply stops counting, so a rate is never negative.
 */
import { RATE_NAMES, type RateName } from "./types.js";

/** What one source has counted so far (a name it does not count is left out). */
export type Counts = Partial<Record<RateName, number>>;

/** A source and its counts now. */
export type Sample = readonly [source: object, counts: Counts];

export class RateMeter {
  private last = new WeakMap<object, Counts>();
  private at: number;

  /** Starts at `now` from the sources' current counts. */
  constructor(now: number, sources: Iterable<Sample>) {
    this.at = now;
    for (const [source, counts] of sources) this.last.set(source, { ...counts });
  }

  /** The rates per second since the previous sample (or the start), rounded to 0.01. */
  sample(now: number, sources: Iterable<Sample>): Record<RateName, number> & { intervalMs: number } {
    const sums = zero();
    for (const [source, counts] of sources) {
      const before = this.last.get(source);
      for (const name of RATE_NAMES) {
        const delta = (counts[name] ?? 0) - (before?.[name] ?? 0);
        if (delta > 0) sums[name] += delta;
      }
      this.last.set(source, { ...counts });
    }
    const intervalMs = now - this.at;
    this.at = now;
    const out = { ...zero(), intervalMs };
    if (intervalMs > 0)
      for (const name of RATE_NAMES) out[name] = Math.round((sums[name] * 100_000) / intervalMs) / 100;
    return out;
  }
}

function zero(): Record<RateName, number> {
  return Object.fromEntries(RATE_NAMES.map((name) => [name, 0])) as Record<RateName, number>;
}
