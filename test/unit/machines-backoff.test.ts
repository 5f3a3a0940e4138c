/**
 * The pure helpers behind the machines' named `backoff` delay and restart intensity:
 * full-jitter exponential backoff and the Erlang-style "at most N restarts within T".
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type BackoffOptions,
  backoffDelay,
  DEFAULT_BACKOFF,
  DEFAULT_INTENSITY,
  type IntensityOptions,
  intensityExceeded,
  recordRestart,
} from "../../machines/backoff.js";

/** The largest double below 1: the top of what Math.random() can return. */
const ALMOST_ONE = 1 - 2 ** -53;

const backoffArb: fc.Arbitrary<BackoffOptions> = fc.record({
  initial: fc.integer({ min: 1, max: 10_000 }),
  max: fc.integer({ min: 1, max: 1_000_000 }),
  multiplier: fc.double({ min: 1, max: 4, noNaN: true }),
});
const randomArb = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
const attemptArb = fc.oneof(fc.nat({ max: 40 }), fc.nat());

describe("backoffDelay (full jitter)", () => {
  it("stays in [0, min(max, initial·multiplier^n)) and is a whole number of ms", () => {
    fc.assert(
      fc.property(attemptArb, backoffArb, randomArb, (n, o, r) => {
        const d = backoffDelay(n, o, () => r);
        const ceiling = Math.min(o.max, o.initial * o.multiplier ** n);
        expect(Number.isInteger(d)).toBe(true);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThan(ceiling);
      }),
      { numRuns: 2000 },
    );
  });

  it("random() = 0 gives no delay, at any attempt", () => {
    fc.assert(
      fc.property(attemptArb, backoffArb, (n, o) => {
        expect(backoffDelay(n, o, () => 0)).toBe(0);
      }),
    );
  });

  it("random() → 1 reaches the ceiling (the last whole ms below it)", () => {
    const o = { initial: 100, max: 10_000, multiplier: 2 };
    const ceilings = [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
    for (const [n, ceiling] of ceilings.entries()) {
      expect(backoffDelay(n, o, () => ALMOST_ONE)).toBe(ceiling - 1);
    }
    // The exponent stops growing at 64 (an overflow guard), which only matters for
    // multipliers so close to 1 that 64 attempts have not reached `max`.
    fc.assert(
      fc.property(fc.nat({ max: 64 }), backoffArb, (n, o) => {
        const ceiling = Math.min(o.max, o.initial * o.multiplier ** n);
        expect(backoffDelay(n, o, () => ALMOST_ONE)).toBeGreaterThanOrEqual(Math.ceil(ceiling) - 1);
      }),
    );
  });

  it("the defaults start at `initial` and stop growing at `max`", () => {
    const { initial, max } = DEFAULT_BACKOFF;
    expect(backoffDelay(0, DEFAULT_BACKOFF, () => ALMOST_ONE)).toBe(Math.min(initial, max) - 1);
    expect(backoffDelay(1000, DEFAULT_BACKOFF, () => ALMOST_ONE)).toBe(max - 1);
  });

  it("the ceiling grows with the attempt: a fixed random() never gives a shorter delay later", () => {
    fc.assert(
      fc.property(fc.nat({ max: 100 }), backoffArb, randomArb, (n, o, r) => {
        expect(backoffDelay(n + 1, o, () => r)).toBeGreaterThanOrEqual(backoffDelay(n, o, () => r));
      }),
    );
  });

  it("calls random() once per delay and never overflows, however many attempts", () => {
    let calls = 0;
    const random = () => {
      calls++;
      return 0.5;
    };
    for (const n of [3, 64, 65, 1_000, Number.MAX_SAFE_INTEGER]) {
      const d = backoffDelay(n, { initial: 100, max: 30_000, multiplier: 10 }, random);
      expect(d).toBe(15_000);
    }
    expect(backoffDelay(0, { initial: 100, max: 30_000, multiplier: 10 }, random)).toBe(50);
    expect(calls).toBe(6);
  });
});

describe("restart intensity", () => {
  const o: IntensityOptions = { maxRestarts: 3, withinMs: 1000 };

  it("recordRestart keeps the restarts inside the window and appends now", () => {
    expect(recordRestart([], 5000, o)).toEqual([5000]);
    // 4000 is exactly withinMs old: outside the window (now - t < withinMs keeps).
    expect(recordRestart([3000, 4000, 4001, 4999], 5000, o)).toEqual([4001, 4999, 5000]);
    expect(recordRestart([1, 2, 3], 1_000_000, o)).toEqual([1_000_000]);
  });

  it("recordRestart drops exactly the entries outside the window (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat({ max: 100_000 }), { maxLength: 30 }),
        fc.nat({ max: 200_000 }),
        fc.integer({ min: 1, max: 50_000 }),
        (times, now, withinMs) => {
          const opts = { maxRestarts: 5, withinMs };
          const sorted = times.filter((t) => t <= now).sort((a, b) => a - b);
          const kept = recordRestart(sorted, now, opts);
          expect(kept.at(-1)).toBe(now);
          expect(kept.slice(0, -1)).toEqual(sorted.filter((t) => now - t < withinMs));
        },
      ),
    );
  });

  it("intensityExceeded turns true exactly at maxRestarts restarts inside the window", () => {
    expect(intensityExceeded([], 0, o)).toBe(false);
    expect(intensityExceeded([100, 200], 500, o)).toBe(false);
    expect(intensityExceeded([100, 200, 300], 500, o)).toBe(true);
    // One of the three has left the window: one more restart is allowed.
    expect(intensityExceeded([100, 200, 300], 1100, o)).toBe(false);
    expect(intensityExceeded([100, 200, 300], 1099, o)).toBe(true);
    expect(intensityExceeded([100, 200, 300, 400], 1200, o)).toBe(false);
    expect(intensityExceeded([300, 400, 500, 600], 1200, o)).toBe(true);
    expect(intensityExceeded(new Array(9).fill(0), 0, DEFAULT_INTENSITY)).toBe(false);
    expect(intensityExceeded(new Array(10).fill(0), 0, DEFAULT_INTENSITY)).toBe(true);
  });

  it("a supervisor that records a restart only while not exceeded never exceeds maxRestarts per window", () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat({ max: 2000 }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 5000 }),
        (gaps, maxRestarts, withinMs) => {
          const opts = { maxRestarts, withinMs };
          let now = 0;
          let restarts: number[] = [];
          const accepted: number[] = [];
          for (const gap of gaps) {
            now += gap;
            if (intensityExceeded(restarts, now, opts)) continue; // gave up on this one
            restarts = recordRestart(restarts, now, opts);
            accepted.push(now);
          }
          for (const t of accepted) {
            const inWindow = accepted.filter((u) => u <= t && t - u < withinMs).length;
            expect(inWindow).toBeLessThanOrEqual(maxRestarts);
          }
          expect(restarts.length).toBeLessThanOrEqual(maxRestarts);
        },
      ),
    );
  });
});
