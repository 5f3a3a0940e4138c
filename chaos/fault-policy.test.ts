/**
 * The fault policy through the fault proxy, with the library's default supervision: a transient
 * fault never ends the client, whatever its length or shape. Each scenario runs the harness's steady
 * confirmed stream and consumer on a client with no supervision options at all (restart intensity
 * 10 in 30 s, escalation up to 30 s, publishTimeout 60 s, connectWaitTimeout 30 s) and its own
 * metrics registry, and asserts that the fault really happened, that the client ends `running` and
 * its consumer `consuming`, that nothing confirmed is lost, that every publish settled (confirmed, or
 * rejected by a timeout with a typed error, never by a dead client), and what the metrics say.
 *
 * - limit_data (upstream, 20 000 bytes) held 5 s and 60 s: every connection is cut again soon after
 *   it opens, the restart intensity is exceeded, the client is degraded and its backoff escalates.
 * - reset_peer with timeout 300 for 15 s: every (re)connection is reset 300 ms after it opens.
 * - the proxy disabled for 90 s, beyond publishTimeout.
 * - on a private node: the broker application stopped for 30 s.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_ESCALATION, DEFAULT_INTENSITY } from "../machines/backoff.js";
import type { DegradedChange } from "../src/client/client.js";
import {
  type ExtraNode,
  extraNodesSupported,
  findFreePorts,
  startExtraNode,
  tcpAnswers,
} from "../test/support/extra-node.js";
import { waitFor } from "../test/support/wait.js";
import {
  type ChaosEnv,
  errnoOf,
  printResults,
  runScenario,
  type Scenario,
  type ScenarioResult,
  type StateRecord,
  startChaos,
} from "./suite/harness.js";

/** The publisher's default publishTimeout and the client's default connectWaitTimeout (ms). */
const PUBLISH_TIMEOUT = 60_000;
const CONNECT_WAIT_TIMEOUT = 30_000;
/** Rejections a timeout may give; anything else (ClientClosedError above all) fails a scenario. */
const TIMEOUT_REJECTIONS: Record<string, number> = {
  TimeoutError: PUBLISH_TIMEOUT,
  NotConnectedError: CONNECT_WAIT_TIMEOUT,
};
const OPEN = new Set(["restoring", "running", "blocked"]);
/** How late a timer or a socket event may be seen on a loaded 2-core machine (upper bounds only). */
const TIMER_LATENESS_MS = 5000;
const DOWN = new Set(["recovering", "degraded"]);

let env: ChaosEnv;

beforeAll(async () => {
  env = await startChaos();
});

afterAll(async () => {
  printResults("chaos: fault policy (default supervision)");
  await env?.close();
});

/** Every rejected publish: its error's name and how long it had waited. */
interface Rejections {
  list: { name: string; ageMs: number }[];
  onRejected: (error: unknown, id: string, ageMs: number) => void;
}

function rejections(): Rejections {
  const list: { name: string; ageMs: number }[] = [];
  return {
    list,
    onRejected: (error, _id, ageMs) => list.push({ name: error instanceof Error ? error.name : "?", ageMs }),
  };
}

/** A scenario on a client with the library's default supervision and its own metrics registry. */
function withDefaults(scenario: Scenario, rejected: Rejections): Scenario {
  return { supervision: "defaults", metrics: true, onRejected: rejected.onRejected, ...scenario };
}

/** Transitions between the fault and the heal (plus `slackMs` after it). */
function duringFault(r: ScenarioResult, slackMs = 0): StateRecord[] {
  return (r.changes ?? []).filter((c) => c.at >= r.faultAt! && c.at <= r.healAt! + slackMs);
}

/** Each wait in `state`: how long until the next transition out of it. */
function waitsIn(changes: readonly StateRecord[], state: string): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < changes.length; i++)
    if (changes[i]!.to === state) out.push(changes[i + 1]!.at - changes[i]!.at);
  return out;
}

function summary(r: ScenarioResult, rejected: Rejections): string {
  const m = r.metrics;
  const ages = (name: string) => {
    const xs = rejected.list.filter((x) => x.name === name).map((x) => x.ageMs);
    return xs.length > 0 ? ` ${name} waited ${Math.min(...xs)}–${Math.max(...xs)} ms` : "";
  };
  return (
    `[chaos] ${r.name}: published ${r.published}, confirmed ${r.confirmed}, consumed ${r.consumed}, lost ${r.lost}, dups ${r.duplicates}, ` +
    `rejected ${r.rejected} ${JSON.stringify(r.rejectedBy)}${ages("TimeoutError")}${ages("NotConnectedError")} (${r.notes["rejectedButConsumed"]} of them consumed all the same), ` +
    `down ${r.reconnects} times, back to running ${r.runningAfterHealMs ?? "-"} ms after the heal, recovery ${r.recoveryMs ?? "-"} ms; ` +
    `metrics: reconnects ${m?.reconnects}, degraded ${m?.degradedSeconds.toFixed(1)} s, escalations ${m?.escalations}, state ${m?.state}`
  );
}

/** What every scenario must show: it survived, lost nothing, settled everything, and says so in its metrics. */
function expectSurvived(r: ScenarioResult, rejected: Rejections): void {
  expect(r.lostIds, `confirmed but never consumed: ${JSON.stringify(r.lostIds)}`).toEqual([]);
  expect(r.lost).toBe(0);
  expect(r.confirmed).toBeGreaterThan(0);
  expect(r.finalClientState).toBe("running");
  expect(r.finalConsumerState).toBe("consuming");
  expect(r.states.filter((s) => s.endsWith("→failed"))).toEqual([]);
  // Every publish settled: confirmed, or rejected by a timeout after waiting that long.
  expect(r.notes["pendingAtEnd"]).toBe(0);
  expect(r.confirmed + r.rejected).toBe(r.published);
  expect(r.rejectedBy["ClientClosedError"]).toBeUndefined();
  for (const name of Object.keys(r.rejectedBy)) expect(Object.keys(TIMEOUT_REJECTIONS)).toContain(name);
  for (const x of rejected.list) expect(x.ageMs).toBeGreaterThanOrEqual(TIMEOUT_REJECTIONS[x.name]! - 50);
  // Messages flowed again after the heal.
  expect(r.recoveryMs).toBeGreaterThanOrEqual(0);
  // The client's own metrics show the restarts.
  expect(r.metrics?.state).toBe("running");
  expect(r.metrics!.reconnects).toBeGreaterThan(0);
  // One reconnect per return to running after a loss.
  const backToRunning = r.states.filter((s) => s.endsWith("→running")).length - 1;
  expect(r.metrics!.reconnects).toBe(backToRunning);
}

/**
 * A flapping link: limit_data lets 20 000 bytes upstream through each connection, then cuts it.
 * At 1000 messages a second (about 200 bytes each on the wire) a connection uses that up in about
 * 0.1 s, so every connection is cut again soon after it opens, several times a second (at the
 * harness's 200/s it would take 0.5 s, and 5 s of it would not exceed the restart intensity).
 */
function flapping(name: string, faultMs: number, extra: Partial<Scenario> = {}): Scenario {
  return {
    name,
    faultMs,
    rate: 1000,
    // After the heal the escalated backoff may still hold the client for up to maxBackoff.
    recoverWithinMs: DEFAULT_ESCALATION.maxBackoff + 15_000,
    settleMs: 60_000,
    fault: async ({ env }) => {
      await env.proxy.addToxic({
        name: "flap",
        type: "limit_data",
        stream: "upstream",
        toxicity: 1,
        attributes: { bytes: 20_000 },
      });
    },
    ...extra,
  };
}

/** The flapping scenario's own checks: the link really flapped, and the client degraded and escalated. */
function expectFlapped(r: ScenarioResult): { losses: number; degradedWaits: number[] } {
  const during = duringFault(r);
  // Losses of an open connection while the toxic was on: more than the restart intensity allows.
  const losses = during.filter((c) => OPEN.has(c.from) && DOWN.has(c.to)).length;
  expect(losses).toBeGreaterThan(DEFAULT_INTENSITY.maxRestarts);
  // Every connection that opened during the fault was cut again (all but the first loss are of
  // connections opened during the fault; at most the last one opened was still up at the heal).
  const opened = during.filter((c) => c.to === "restoring").length;
  expect(opened - (losses - 1)).toBeLessThanOrEqual(1);
  // Degraded, not failed: the escalated backoff is at least 1 s and at most maxBackoff (measured
  // on the client's clock: a wait ends when its timer fires, which a loaded machine may delay by a
  // few seconds, never advance; an uncapped sixth level would be 32–64 s).
  expect(r.states.filter((s) => s.endsWith("→degraded")).length).toBeGreaterThan(0);
  const degradedWaits = waitsIn(r.changes ?? [], "degraded");
  expect(degradedWaits.length).toBeGreaterThan(0);
  for (const w of degradedWaits) {
    expect(w).toBeGreaterThanOrEqual(1000 - 5);
    expect(w).toBeLessThanOrEqual(DEFAULT_ESCALATION.maxBackoff + TIMER_LATENESS_MS);
  }
  // Degraded time and escalations are in the metrics.
  expect(r.metrics!.degradedSeconds).toBeGreaterThan(0);
  expect(r.metrics!.escalations).toBeGreaterThanOrEqual(1);
  return { losses, degradedWaits };
}

describe("chaos: transient faults never end a client with default supervision", () => {
  it("limit_data upstream 20 000 bytes held 5 s: degraded, back to running, and healthy again after resetAfterMs", {
    timeout: 180_000,
  }, async () => {
    const rejected = rejections();
    const degradedEvents: (DegradedChange & { at: number })[] = [];
    const r = await runScenario(
      env,
      withDefaults(
        flapping("limit_data 20 KB up, 5 s (defaults)", 5000, {
          fault: async ({ env, client }) => {
            client.on("degraded", (e) => degradedEvents.push({ ...e, at: Date.now() }));
            await env.proxy.addToxic({
              name: "flap",
              type: "limit_data",
              stream: "upstream",
              toxicity: 1,
              attributes: { bytes: 20_000 },
            });
          },
          // The degraded condition ends once the connection stayed up for resetAfterMs.
          finish: async ({ client, notes }) => {
            const upSince = Date.now();
            await waitFor(
              () => !client.degraded,
              "the degraded condition to reset",
              DEFAULT_ESCALATION.resetAfterMs + 10_000,
            );
            notes["waitedForResetMs"] = Date.now() - upSince;
          },
        }),
        rejected,
      ),
    );
    console.info(summary(r, rejected));
    const { losses, degradedWaits } = expectFlapped(r);
    console.info(
      `[chaos] ${r.name}: ${losses} connections cut, degraded waits ${degradedWaits.join(", ")} ms, degraded events ${JSON.stringify(degradedEvents.map(({ degraded, level }) => ({ degraded, level })))}`,
    );
    expectSurvived(r, rejected);
    // The degraded event fired, and its reset once the connection had stayed up long enough.
    expect(degradedEvents[0]).toMatchObject({ degraded: true, level: 1 });
    expect(degradedEvents.at(-1)).toMatchObject({ degraded: false, level: 0 });
    // resetAfterMs counts from the last time the connection opened (entered restoring).
    const lastOpenedAt = Math.max(...(r.changes ?? []).filter((c) => c.to === "restoring").map((c) => c.at));
    expect(degradedEvents.at(-1)!.at - lastOpenedAt).toBeGreaterThanOrEqual(
      DEFAULT_ESCALATION.resetAfterMs - 50,
    );
    expect(r.metrics!.degraded).toBe(0);
  });

  it("limit_data upstream 20 000 bytes held 60 s: the backoff escalates to its ceiling; back to running after the heal", {
    timeout: 240_000,
  }, async () => {
    const rejected = rejections();
    const r = await runScenario(
      env,
      withDefaults(flapping("limit_data 20 KB up, 60 s (defaults)", 60_000), rejected),
    );
    console.info(summary(r, rejected));
    const { losses, degradedWaits } = expectFlapped(r);
    console.info(
      `[chaos] ${r.name}: ${losses} connections cut, degraded waits ${degradedWaits.join(", ")} ms`,
    );
    // Level after level: the longest wait reached at least the fourth level (8–16 s).
    expect(Math.max(...degradedWaits)).toBeGreaterThanOrEqual(8000);
    expect(r.metrics!.escalations).toBeGreaterThanOrEqual(4);
    expectSurvived(r, rejected);
  });

  it("reset_peer 300 ms after every (re)connection for 15 s", { timeout: 120_000 }, async () => {
    const rejected = rejections();
    const r = await runScenario(
      env,
      withDefaults(
        {
          name: "reset_peer 300 ms, 15 s (defaults)",
          faultMs: 15_000,
          recoverWithinMs: 15_000,
          fault: async ({ env }) => {
            await env.proxy.addToxic({
              name: "reset",
              type: "reset_peer",
              stream: "upstream",
              toxicity: 1,
              attributes: { timeout: 300 },
            });
          },
        },
        rejected,
      ),
    );
    console.info(summary(r, rejected));
    const during = duringFault(r);
    // The open connection was reset 300 ms after its next bytes upstream.
    const firstLoss = during.find((c) => OPEN.has(c.from) && DOWN.has(c.to));
    expect(errnoOf(firstLoss?.reason)).toBe("ECONNRESET");
    expect(firstLoss!.at - r.faultAt!).toBeGreaterThanOrEqual(300 - 5);
    // Every attempt whose socket opened during the fault was reset about 300 ms later, before its
    // handshake could finish (the proxy drops the first bytes and resets the connection).
    const attempts: number[] = [];
    for (let i = 0; i + 1 < during.length; i++) {
      const c = during[i]!;
      if (c.to !== "handshaking" || c.at > r.healAt! - 500) continue;
      const next = during[i + 1]!;
      expect(DOWN.has(next.to), `${c.to} then ${next.to}`).toBe(true);
      expect(errnoOf(next.reason), next.error).toBe("ECONNRESET");
      attempts.push(next.at - c.at);
    }
    console.info(`[chaos] ${r.name}: ${attempts.length} connections reset, after ${attempts.join(", ")} ms`);
    expect(attempts.length).toBeGreaterThanOrEqual(5);
    // Reset by the toxic (300 ms), not given up by the client: the only other end of an attempt
    // that never hears back is connectionTimeout (30 s).
    for (const ms of attempts) {
      expect(ms).toBeGreaterThanOrEqual(300 - 5);
      expect(ms).toBeLessThan(300 + TIMER_LATENESS_MS);
    }
    expect(during.filter((c) => c.to === "restoring" && c.at < r.healAt! - 500)).toEqual([]);
    expectSurvived(r, rejected);
  });

  it("the proxy disabled for 90 s (beyond publishTimeout): rejections come from the timeout, never from a dead client", {
    timeout: 240_000,
  }, async () => {
    const rejected = rejections();
    const r = await runScenario(
      env,
      withDefaults(
        {
          name: "proxy disabled 90 s (defaults)",
          faultMs: 90_000,
          recoverWithinMs: 15_000,
          settleMs: 60_000,
          fault: async ({ env, notes }) => {
            await env.proxy.update({ enabled: false, listen: env.listen, upstream: env.upstream });
            const port = Number(env.listen.slice(env.listen.lastIndexOf(":") + 1));
            notes["proxyAnswered"] = await tcpAnswers(port);
          },
          heal: async ({ env }) => {
            await env.proxy.update({ enabled: true, listen: env.listen, upstream: env.upstream });
          },
        },
        rejected,
      ),
    );
    console.info(summary(r, rejected));
    // The proxy really refused connections: the client's attempts failed with ECONNREFUSED all along.
    expect(r.notes["proxyAnswered"]).toBe(false);
    const refused = duringFault(r).filter((c) => DOWN.has(c.to) && errnoOf(c.reason) === "ECONNREFUSED");
    console.info(`[chaos] ${r.name}: ${refused.length} attempts refused`);
    expect(refused.length).toBeGreaterThanOrEqual(10);
    expect(refused.at(-1)!.at).toBeGreaterThan(r.healAt! - 5000);
    // Longer than publishTimeout: what waited that long was rejected by the timeout, typed.
    expect(r.rejected).toBeGreaterThan(0);
    expect(r.rejectedBy["TimeoutError"]).toBeGreaterThan(0);
    expectSurvived(r, rejected);
  });
});

describe.skipIf(!extraNodesSupported())("chaos: the broker application stopped (private node)", () => {
  let node: ExtraNode;
  let nodeEnv: ChaosEnv;

  beforeAll(async () => {
    const [amqpPort, distPort] = await findFreePorts(2);
    node = await startExtraNode({ name: "warren-policy", amqpPort: amqpPort!, distPort: distPort! });
    nodeEnv = await startChaos(node.url);
  }, 90_000);

  afterAll(async () => {
    await nodeEnv?.close();
    await node?.stop();
  }, 60_000);

  it("rabbitmqctl stop_app for 30 s, then start_app", { timeout: 180_000 }, async () => {
    const rejected = rejections();
    const r = await runScenario(
      nodeEnv,
      withDefaults(
        {
          name: "broker app stopped 30 s (defaults)",
          faultMs: 30_000,
          recoverWithinMs: 30_000,
          settleMs: 60_000,
          fault: async ({ notes }) => {
            await node.ctl(["stop_app"]);
            notes["appRunning"] = (await node.ctl(["eval", "rabbit:is_running()."])).trim();
            notes["amqpPortAnswered"] = await tcpAnswers(node.amqpPort);
          },
          heal: async ({ notes }) => {
            await node.ctl(["start_app"]);
            notes["appRunningAfterStart"] = (await node.ctl(["eval", "rabbit:is_running()."])).trim();
          },
        },
        rejected,
      ),
    );
    console.info(summary(r, rejected));
    // The application was really stopped (its AMQP listener closed), and started again.
    expect(r.notes["appRunning"]).toBe("false");
    expect(r.notes["amqpPortAnswered"]).toBe(false);
    expect(r.notes["appRunningAfterStart"]).toBe("true");
    // The client saw the outage: the open connection was lost, and attempts failed while it lasted.
    const during = duringFault(r);
    expect(during.filter((c) => OPEN.has(c.from) && DOWN.has(c.to)).length).toBeGreaterThanOrEqual(1);
    const failedAttempts = during.filter((c) => !OPEN.has(c.from) && DOWN.has(c.to));
    console.info(
      `[chaos] ${r.name}: ${failedAttempts.length} attempts failed while stopped (${[...new Set(failedAttempts.map((c) => c.error?.split(":")[0]))].join(", ")})`,
    );
    expect(failedAttempts.length).toBeGreaterThanOrEqual(5);
    expectSurvived(r, rejected);
  });
});
