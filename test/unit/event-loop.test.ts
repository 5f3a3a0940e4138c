/**
 * The event-loop monitor and the stall behind a lost connection, on a simulated clock: the loop
 * either runs (the monitor's timer fires on time) or is blocked (time passes, nothing fires).
 */
import { describe, expect, it } from "vitest";
import {
  type DelayHistogram,
  EventLoopMonitor,
  type LoopMonitorEnv,
  TICK_MS,
  watchEventLoop,
} from "../../src/amqp/event-loop.js";
import {
  brokerDroppedAfterStall,
  LOOKBACK_INTERVALS,
  stallBehind,
  timedOutAfterStall,
} from "../../src/amqp/loop-stall.js";

/** A histogram whose values the test sets (ms, stored as perf_hooks does: ns, resolution included). */
class FakeHistogram implements DelayHistogram {
  count = 0;
  mean = 0;
  max = 0;
  resets = 0;
  disabled = false;
  private p = new Map<number, number>();
  /** The loop was late by `ms` (max and every percentile at least that). */
  late(ms: number): void {
    const ns = (ms + 10) * 1e6;
    this.count++;
    this.max = Math.max(this.max, ns);
    this.mean = ns;
    this.p.set(50, ns).set(99, ns);
  }
  percentile(p: number): number {
    return this.p.get(p) ?? 0;
  }
  reset(): void {
    this.resets++;
    this.count = 0;
    this.max = 0;
    this.mean = 0;
    this.p.clear();
  }
  disable(): void {
    this.disabled = true;
  }
}

function simulatedLoop() {
  let t = 5_000_000;
  let fire: (() => void) | undefined;
  let due = 0;
  const histograms: FakeHistogram[] = [];
  const env: LoopMonitorEnv = {
    now: () => t,
    every(ms, fn) {
      expect(ms).toBe(TICK_MS);
      fire = fn;
      due = t + ms;
      return () => {
        fire = undefined;
      };
    },
    histogram() {
      const h = new FakeHistogram();
      histograms.push(h);
      return h;
    },
  };
  return {
    env,
    histograms,
    now: () => t,
    /** The loop runs for `ms`: the timer fires when due (setInterval re-arms from when it ran). */
    run(ms: number) {
      const end = t + ms;
      while (fire !== undefined && due <= end) {
        t = Math.max(t, due);
        fire();
        due = t + TICK_MS;
      }
      t = end;
    },
    /** The loop is blocked for `ms`: nothing fires; the late tick fires when it next runs. */
    block(ms: number) {
      t += ms;
    },
    get ticking() {
      return fire !== undefined;
    },
  };
}

describe("EventLoopMonitor", () => {
  it("sees no delay while the loop runs on time", () => {
    const loop = simulatedLoop();
    const m = new EventLoopMonitor(loop.env);
    loop.run(5_000);
    expect(m.peakSince(loop.now() - 5_000)).toBe(0);
    m.stop();
    expect(loop.ticking).toBe(false);
  });

  it("measures a stall still going on (asked before its own timer ran again), then keeps it", () => {
    const loop = simulatedLoop();
    const m = new EventLoopMonitor(loop.env);
    loop.run(1_000);
    loop.block(3_500);
    // A socket's close handled before any timer: the gap since the last tick, less one tick.
    expect(m.peakSince(loop.now() - 4_000)).toBe(3_500 - TICK_MS);
    loop.run(50); // the late tick fires and records it
    expect(m.peakSince(loop.now() - 4_000)).toBe(3_500 - TICK_MS);
    loop.run(2_000);
    expect(m.peakSince(loop.now() - 4_000)).toBe(3_500 - TICK_MS);
    // Only what happened after `since` (to the second) counts.
    loop.run(5_000);
    expect(m.peakSince(loop.now() - 4_000)).toBe(0);
    expect(m.peakSince(loop.now() - 10_000)).toBe(3_500 - TICK_MS);
    m.stop();
  });

  it("keeps the largest delay of each second, for ten minutes", () => {
    const loop = simulatedLoop();
    const m = new EventLoopMonitor(loop.env);
    const start = loop.now();
    loop.run(1_000);
    loop.block(400);
    loop.run(200);
    loop.block(1_200);
    loop.run(200);
    expect(m.peakSince(start)).toBe(1_200 - TICK_MS);
    loop.run(596_000); // the stall ended 597 s ago
    expect(m.peakSince(start)).toBe(1_200 - TICK_MS);
    loop.run(5_000);
    expect(m.peakSince(start)).toBe(0); // older than the history
    m.stop();
  });

  it("with the distribution on, takes delays shorter than a tick from the histogram, and reports whole 10 s windows", () => {
    const loop = simulatedLoop();
    const m = new EventLoopMonitor(loop.env);
    expect(m.delay()).toEqual({ mean: 0, p50: 0, p99: 0, max: 0, windowMs: 0 });
    m.setDistribution(true);
    const h = loop.histograms[0]!;
    const start = loop.now();
    loop.run(1_000);
    h.late(40); // between two ticks: the JS timer did not see it
    loop.run(200);
    expect(m.peakSince(start)).toBe(40);
    expect(m.delay()).toMatchObject({ max: 40, p99: 40, windowMs: 1_200 });
    loop.run(9_000);
    expect(h.resets).toBe(1);
    // The last whole window, until the next one ends.
    expect(m.delay()).toMatchObject({ max: 40, windowMs: 10_000 });
    h.late(5);
    loop.run(5_000);
    expect(m.delay()).toMatchObject({ max: 40 });
    loop.run(5_000);
    expect(m.delay()).toMatchObject({ max: 5 });
    m.setDistribution(false);
    expect(h.disabled).toBe(true);
    m.stop();
  });
});

describe("stallBehind", () => {
  it("is a stall of at least one heartbeat interval that ended at most LOOKBACK_INTERVALS ago", () => {
    const loop = simulatedLoop();
    const m = new EventLoopMonitor(loop.env);
    loop.run(2_000);
    expect(stallBehind(m, 1)).toBeUndefined();
    loop.block(3_500);
    expect(stallBehind(m, 1)).toBe(3_400);
    expect(stallBehind(m, 5)).toBeUndefined(); // shorter than the interval: no heartbeat missed
    expect(stallBehind(m, 0)).toBeUndefined(); // heartbeats off
    loop.run(2_500); // the client's own timeout comes about two intervals after the stall
    expect(stallBehind(m, 1)).toBe(3_400);
    loop.run(LOOKBACK_INTERVALS * 1_000);
    expect(stallBehind(m, 1)).toBeUndefined();
    m.stop();
  });

  it("says what happened and what to do", () => {
    expect(brokerDroppedAfterStall(4_200, 1)).toMatch(
      /^the event loop was blocked for 4\.2 s; the broker closed the connection after missed heartbeats \(heartbeat 1 s\)\. Keep CPU-bound work off the event loop/,
    );
    // Less than the broker's two intervals: a likely cause, not a certain one.
    expect(brokerDroppedAfterStall(15_000, 10)).toMatch(
      /blocked for 15\.0 s; the broker most likely closed the connection/,
    );
    expect(timedOutAfterStall(3_450)).toMatch(
      /^the event loop was blocked for 3\.5 s, so heartbeats were neither sent nor read in time/,
    );
  });
});

describe("watchEventLoop", () => {
  it("runs one monitor while leases are held, the distribution while one asks for it", () => {
    const loop = simulatedLoop();
    const a = watchEventLoop({}, loop.env);
    const b = watchEventLoop({ distribution: true }, loop.env);
    const c = watchEventLoop({ distribution: true }, loop.env);
    expect(b.monitor).toBe(a.monitor);
    expect(loop.histograms).toHaveLength(1);
    b.release();
    b.release(); // idempotent
    expect(loop.histograms[0]!.disabled).toBe(false);
    c.release();
    expect(loop.histograms[0]!.disabled).toBe(true);
    expect(loop.ticking).toBe(true);
    a.release();
    expect(loop.ticking).toBe(false);
    const d = watchEventLoop({}, loop.env);
    expect(d.monitor).not.toBe(a.monitor);
    d.release();
  });
});
