/**
 * Network faults between a warren client and RabbitMQ, injected by a Toxiproxy-compatible proxy.
 * Every scenario publishes a steady confirmed stream through the fault and asserts, first, that the
 * fault really happened (each has its own proof: round trips at least the injected latency, the
 * proxy's byte rate or TCP segments as the kernel counted them, no confirm while the link is
 * stalled, the connection lost with the error that fault must cause), so that a toxic that does
 * nothing fails its scenario; then that nothing the broker confirmed is lost and that the client
 * ends running and consuming.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectionClosedByBroker, HeartbeatTimeoutError, SocketError } from "../src/index.js";
import { sleep } from "../test/support/async.js";
import { closeConnectionsNamed } from "../test/support/broker.js";
import { until } from "../test/support/wait.js";
import {
  type ChaosEnv,
  errnoOf,
  printResults,
  resetProxy,
  runScenario,
  type Scenario,
  type ScenarioResult,
  type StateRecord,
  startChaos,
} from "./suite/harness.js";
import {
  type Forwarded,
  forwardedSince,
  halfClosedClientSockets,
  type ProxySockets,
  proxySockets,
  ssAvailable,
} from "./suite/sockets.js";

let env: ChaosEnv;

beforeAll(async () => {
  env = await startChaos();
});

afterAll(async () => {
  printResults("chaos: proxy faults");
  await env?.close();
});

const OPEN = new Set(["restoring", "running", "blocked"]);
const DOWN = new Set(["recovering", "degraded"]);

function expectHealthy(r: ScenarioResult): void {
  expect(r.lostIds, `confirmed but never consumed: ${JSON.stringify(r.lostIds)}`).toEqual([]);
  expect(r.lost).toBe(0);
  expect(r.confirmed).toBeGreaterThan(0);
  expect(r.finalClientState).toBe("running");
  expect(r.finalConsumerState).toBe("consuming");
  expect(r.notes["pendingAtEnd"]).toBe(0);
}

/** Transitions between the fault and the heal. */
function duringFault(r: ScenarioResult): StateRecord[] {
  return (r.changes ?? []).filter((c) => c.at >= r.faultAt! && c.at <= r.healAt!);
}

/** Losses of an open connection while the fault held. */
function losses(r: ScenarioResult): StateRecord[] {
  return duringFault(r).filter((c) => OPEN.has(c.from) && DOWN.has(c.to));
}

/** Attempts that failed (never opened) while the fault held. */
function failedAttempts(r: ScenarioResult): StateRecord[] {
  return duringFault(r).filter((c) => !OPEN.has(c.from) && DOWN.has(c.to));
}

function describeChanges(changes: readonly StateRecord[]): string {
  return JSON.stringify(changes.map((c) => `${c.from}→${c.to}${c.error ? ` (${c.error})` : ""}`));
}

/** Proxy socket counters taken once the fault is in place and just before the heal. */
interface Window {
  before: ProxySockets;
  after: ProxySockets;
  /** Date.now() just before the first read and just after the last. */
  from: number;
  to: number;
}

function windowOf(r: ScenarioResult): Window {
  return r.notes["sockets"] as Window;
}

/** Reads the proxy's sockets now (into notes.sockets.before); the heal reads them again (after). */
async function socketsAtFault(notes: Record<string, unknown>): Promise<void> {
  const from = Date.now();
  notes["sockets"] = { before: await proxySockets(env), from };
}

/** The heal of a scenario that measures the proxy's sockets: read them, then remove every toxic. */
async function healMeasuring({ notes }: { notes: Record<string, unknown> }): Promise<void> {
  const w = notes["sockets"] as Partial<Window>;
  w.after = await proxySockets(env);
  w.to = Date.now();
  await resetProxy(env);
}

function forwarded(w: Window): { downstream: Forwarded; upstream: Forwarded } {
  return forwardedSince(w.before, w.after);
}

interface Case {
  scenario: Scenario;
  /** Asserts that the fault happened (fails when the toxic does nothing). */
  happened: (r: ScenarioResult) => void;
  /** Why the scenario cannot run here (it.skipIf). */
  skip?: string | undefined;
}

const noSs = ssAvailable() ? undefined : "needs ss (iproute2) to read the proxy's TCP counters";

// latency + jitter: each chunk waits latency ± jitter in its direction, so a publish cannot be
// confirmed sooner than the least of both: (150 − 100) ms down + (50 − 50) ms up.
const LEAST_ROUND_TRIP_MS = 150 - 100 + (50 - 50);
// bandwidth: 8 KB/s both ways. The proxy sends at most rate × time, plus one 100 ms piece; KB is
// taken as 1024 bytes (the reference server's unit is at most that), plus 1 KB for rounding.
const BANDWIDTH_KBPS = 8;
const bandwidthBound = (ms: number) => Math.ceil(BANDWIDTH_KBPS * 1.024 * (ms + 100)) + 1024;
// slicer: 1-byte slices, each its own write. Upstream the broker reads them as they come and the
// kernel keeps most apart: the proxy's segments to the broker carried 2–5 bytes on average over
// runs, against 100–300 unsliced (a publish's three frames leave in one write). Asserted: they
// average fewer bytes than the smallest frame this stream sends upstream (the consumer's basic.ack,
// 21 bytes), so frames were cut apart. Downstream the kernel merges the slices again as much as it
// likes: the in-process proxy writes a burst of them on the event loop its client reads on, the
// client's receive window closes and the queued slices leave together (3 to 150 bytes a segment
// over runs, about 250 unsliced), so that direction is reported, not asserted.
const SLICED_MAX_UPSTREAM_SEGMENT_BYTES = 20;

const cases: Case[] = [
  {
    scenario: {
      name: "latency+jitter",
      fault: async ({ env }) => {
        await env.proxy.addToxic({
          name: "lat-down",
          type: "latency",
          stream: "downstream",
          toxicity: 1,
          attributes: { latency: 150, jitter: 100 },
        });
        await env.proxy.addToxic({
          name: "lat-up",
          type: "latency",
          stream: "upstream",
          toxicity: 1,
          attributes: { latency: 50, jitter: 50 },
        });
      },
    },
    happened: (r) => {
      // Every publish made under the fault and confirmed before the heal took at least the least
      // latency both toxics add (the clock is read in whole ms: 1 ms of rounding).
      const u = r.underFault!;
      expect(u.confirmedBeforeHeal).toBeGreaterThan(0);
      expect(u.roundTripMs!.min).toBeGreaterThanOrEqual(LEAST_ROUND_TRIP_MS - 1);
    },
  },
  {
    skip: noSs,
    scenario: {
      name: "bandwidth throttle",
      fault: async ({ env, notes }) => {
        for (const stream of ["upstream", "downstream"] as const)
          await env.proxy.addToxic({
            name: `bw-${stream}`,
            type: "bandwidth",
            stream,
            toxicity: 1,
            attributes: { rate: BANDWIDTH_KBPS },
          });
        await socketsAtFault(notes);
      },
      heal: healMeasuring,
    },
    happened: (r) => {
      // The proxy sent no more than 8 KB/s either way (unthrottled, this stream moves 20–40 KB/s
      // each way), and it did send: the link was slow, not cut.
      const w = windowOf(r);
      const { downstream, upstream } = forwarded(w);
      console.info(
        `[chaos] ${r.name}: proxy forwarded ${JSON.stringify({ downstream, upstream })} in ${w.to - w.from} ms`,
      );
      // Timed from before the toxics were added: a toxic behind its schedule (late timers) catches
      // up, but never beyond rate × time since it began.
      const bound = bandwidthBound(w.to - r.faultAt!);
      for (const f of [downstream, upstream]) {
        expect(f.out.bytes).toBeGreaterThan(0);
        expect(f.out.bytes).toBeLessThanOrEqual(bound);
      }
    },
  },
  {
    scenario: {
      name: "upstream stall (rate 0)",
      fault: async ({ env }) => {
        await env.proxy.addToxic({
          name: "stall-up",
          type: "bandwidth",
          stream: "upstream",
          toxicity: 1,
          attributes: { rate: 0 },
        });
      },
    },
    happened: (r) => {
      // Nothing published under the stall reached the broker before the heal: none was confirmed.
      expect(r.underFault!.published).toBeGreaterThan(0);
      expect(r.underFault!.confirmedBeforeHeal).toBe(0);
    },
  },
  {
    scenario: {
      name: "downstream stall (rate 0)",
      fault: async ({ env }) => {
        await env.proxy.addToxic({
          name: "stall-down",
          type: "bandwidth",
          stream: "downstream",
          toxicity: 1,
          attributes: { rate: 0 },
        });
      },
    },
    happened: (r) => {
      // No confirm came back under the stall.
      expect(r.underFault!.published).toBeGreaterThan(0);
      expect(r.underFault!.confirmedBeforeHeal).toBe(0);
    },
  },
  {
    skip: noSs,
    scenario: {
      name: "slicer 1-byte segments",
      fault: async ({ env, notes }) => {
        for (const stream of ["upstream", "downstream"] as const)
          await env.proxy.addToxic({
            name: `slice-${stream}`,
            type: "slicer",
            stream,
            toxicity: 1,
            attributes: { average_size: 1, size_variation: 0, delay: 0 },
          });
        await socketsAtFault(notes);
      },
      heal: healMeasuring,
    },
    happened: (r) => {
      const { downstream, upstream } = forwarded(windowOf(r));
      const perSegment = (f: Forwarded) => ({
        in: Math.round(f.in.bytes / f.in.segments),
        out: Math.round((10 * f.out.bytes) / f.out.segments) / 10,
      });
      r.notes["bytesPerSegment"] = { upstream: perSegment(upstream), downstream: perSegment(downstream) };
      console.info(`[chaos] ${r.name}: bytes per segment ${JSON.stringify(r.notes["bytesPerSegment"])}`);
      expect(upstream.out.bytes).toBeGreaterThan(1000);
      expect(upstream.out.bytes / upstream.out.segments).toBeLessThanOrEqual(
        SLICED_MAX_UPSTREAM_SEGMENT_BYTES,
      );
    },
  },
  {
    scenario: {
      name: "reset_peer mid-publish",
      fault: async ({ env }) => {
        await env.proxy.addToxic({
          name: "reset",
          type: "reset_peer",
          stream: "upstream",
          toxicity: 1,
          attributes: { timeout: 200 },
        });
      },
    },
    happened: (r) => {
      // The open connection was reset (ECONNRESET), and so was at least one attempt after it.
      const lost = losses(r);
      expect(
        lost.map((c) => errnoOf(c.reason)),
        describeChanges(duringFault(r)),
      ).toEqual(["ECONNRESET"]);
      const resets = duringFault(r).filter((c) => DOWN.has(c.to) && errnoOf(c.reason) === "ECONNRESET");
      expect(resets.length).toBeGreaterThanOrEqual(2);
      expect(r.reconnects).toBeGreaterThanOrEqual(resets.length);
    },
  },
  {
    scenario: {
      name: "timeout black hole",
      // Heartbeats find it 2–2.5 s after the last byte (four silent ticks of 0.5 s); 5 s leaves a
      // loaded machine's late timers room before the heal.
      faultMs: 5000,
      fault: async ({ env }) => {
        await env.proxy.addToxic({
          name: "hole",
          type: "timeout",
          stream: "downstream",
          toxicity: 1,
          attributes: { timeout: 0 },
        });
      },
    },
    happened: (r) => {
      // Nothing came back, so the heartbeats (1 s) found the dead link: the open connection was
      // given up with HeartbeatTimeoutError after two silent intervals.
      const lost = losses(r);
      expect(lost.length, describeChanges(duringFault(r))).toBe(1);
      expect(lost[0]!.reason).toBeInstanceOf(HeartbeatTimeoutError);
    },
  },
  {
    scenario: {
      name: "limit_data mid-frame",
      fault: async ({ env }) => {
        await env.proxy.addToxic({
          name: "limit",
          type: "limit_data",
          stream: "downstream",
          toxicity: 1,
          attributes: { bytes: 1237 },
        });
      },
    },
    happened: (r) => {
      // The proxy closed the connection after 1237 bytes: the client saw the socket closed without
      // connection.close.
      const lost = losses(r);
      expect(lost.length, describeChanges(duringFault(r))).toBeGreaterThanOrEqual(1);
      for (const c of lost) expect(c.reason).toBeInstanceOf(SocketError);
      expect(r.reconnects).toBeGreaterThanOrEqual(lost.length);
    },
  },
  {
    scenario: {
      name: "proxy disabled then enabled",
      fault: async ({ env }) => {
        await env.proxy.update({ enabled: false, listen: env.listen, upstream: env.upstream });
      },
      heal: async ({ env }) => {
        await env.proxy.update({ enabled: true, listen: env.listen, upstream: env.upstream });
      },
    },
    happened: (r) => {
      // Disabling dropped the open connection, and the attempts while disabled were refused.
      const lost = losses(r);
      expect(lost.length, describeChanges(duringFault(r))).toBe(1);
      expect(lost[0]!.reason).toBeInstanceOf(SocketError);
      const refused = failedAttempts(r).filter((c) => errnoOf(c.reason) === "ECONNREFUSED");
      expect(refused.length).toBeGreaterThanOrEqual(1);
    },
  },
  {
    skip: noSs,
    scenario: {
      name: "slow_close after a forced close",
      fault: async ({ env, connectionName, notes }) => {
        await env.proxy.addToxic({
          name: "slow-close",
          type: "slow_close",
          stream: "downstream",
          toxicity: 1,
          // Longer than the fault: the heal ends it.
          attributes: { delay: 10_000 },
        });
        notes["forcedCloses"] = await closeConnectionsNamed(connectionName, "chaos: slow_close");
        // The client answers close-ok and closes its socket at once; the broker then closes its
        // side, and the toxic holds that close back from the client. Without it the proxy's side
        // would close within a round trip to the broker; with it, it stays half-closed for the
        // delay (or until the heal): seen now and still a second later.
        const halfClosed = await until(
          async () => (await halfClosedClientSockets(env)) > 0,
          "the proxy to hold the closed connection half-open",
          5000,
        ).then(
          () => true,
          () => false,
        );
        await sleep(1000);
        notes["halfClosed"] = halfClosed ? await halfClosedClientSockets(env) : 0;
      },
    },
    happened: (r) => {
      // The broker force-closed exactly our connection, the client saw that close (320), and the
      // proxy held the closed connection's client side open (CLOSE-WAIT) instead of closing it.
      expect(r.notes["forcedCloses"]).toBe(1);
      const lost = losses(r);
      expect(lost.length, describeChanges(duringFault(r))).toBe(1);
      const reason = lost[0]!.reason;
      expect(reason).toBeInstanceOf(ConnectionClosedByBroker);
      expect((reason as ConnectionClosedByBroker).replyCode).toBe(320);
      expect(r.notes["halfClosed"]).toBeGreaterThanOrEqual(1);
    },
  },
];

describe("chaos: proxy faults", () => {
  for (const { scenario, happened, skip } of cases) {
    it.skipIf(skip !== undefined)(
      `${scenario.name}${skip ? ` (skipped: ${skip})` : ""}`,
      { timeout: 90_000 },
      async () => {
        const r = await runScenario(env, scenario);
        console.info(
          `[chaos] ${r.name}: published ${r.published}, confirmed ${r.confirmed}, consumed ${r.consumed}, lost ${r.lost}, dups ${r.duplicates}, rejected ${r.rejected} ${JSON.stringify(r.rejectedBy)}, reconnects ${r.reconnects}, recovery ${r.recoveryMs ?? "-"} ms; under the fault ${JSON.stringify(r.underFault)}; during it ${describeChanges(duringFault(r))}`,
        );
        happened(r);
        expectHealthy(r);
      },
    );
  }
});
