/** Heartbeats with the simulated clock: when a frame is sent, when the peer is given up. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Heartbeat } from "../../src/amqp/heartbeat.js";

function fakeHost() {
  const h = { out: 0, sent: 0, silent: 0 };
  return {
    h,
    host: {
      bytesOut: () => h.out,
      sendHeartbeat: () => {
        h.sent++;
        h.out += 8;
      },
      peerSilent: () => {
        h.silent++;
      },
    },
  };
}

describe("Heartbeat", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends a heartbeat each half interval we were silent, none while we write", () => {
    const { h, host } = fakeHost();
    const hb = new Heartbeat(10, host);
    vi.advanceTimersByTime(5_000);
    expect(h.sent).toBe(1);
    hb.received();
    h.out += 100; // our own traffic
    vi.advanceTimersByTime(5_000);
    expect(h.sent).toBe(1);
    hb.received();
    vi.advanceTimersByTime(5_000);
    expect(h.sent).toBe(2);
    hb.stop();
  });

  it("gives the peer up after two intervals without a byte from it, once, and stops", () => {
    const { h, host } = fakeHost();
    new Heartbeat(10, host);
    vi.advanceTimersByTime(19_999);
    expect(h.silent).toBe(0);
    vi.advanceTimersByTime(1);
    expect(h.silent).toBe(1);
    vi.advanceTimersByTime(60_000);
    expect(h.silent).toBe(1);
  });

  it("any data from the peer resets the count", () => {
    const { h, host } = fakeHost();
    const hb = new Heartbeat(10, host);
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(15_000);
      hb.received();
    }
    expect(h.silent).toBe(0);
    hb.stop();
  });

  it("an interval of 0 turns heartbeats off", () => {
    const { h, host } = fakeHost();
    new Heartbeat(0, host);
    vi.advanceTimersByTime(10 * 60_000);
    expect(h).toEqual({ out: 0, sent: 0, silent: 0 });
  });
});
