/**
 * Network faults between a warren client and RabbitMQ, injected by a Toxiproxy-compatible proxy.
 * Every scenario publishes a steady confirmed stream through the fault and asserts that nothing
 * the broker confirmed is lost and that the client ends running and consuming.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeConnectionsNamed } from "../test/support/broker.js";
import {
  type ChaosEnv,
  printResults,
  runScenario,
  type Scenario,
  type ScenarioResult,
} from "./suite/harness.js";

let env: ChaosEnv;

beforeAll(async () => {
  const { startChaos } = await import("./suite/harness.js");
  env = await startChaos();
});

afterAll(async () => {
  printResults("chaos: proxy faults");
  await env?.close();
});

function expectHealthy(r: ScenarioResult): void {
  expect(r.lostIds, `confirmed but never consumed: ${JSON.stringify(r.lostIds)}`).toEqual([]);
  expect(r.lost).toBe(0);
  expect(r.confirmed).toBeGreaterThan(0);
  expect(r.finalClientState).toBe("running");
  expect(r.finalConsumerState).toBe("consuming");
  expect(r.notes["pendingAtEnd"]).toBe(0);
}

const scenarios: Scenario[] = [
  {
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
  {
    name: "bandwidth throttle",
    fault: async ({ env }) => {
      for (const stream of ["upstream", "downstream"] as const)
        await env.proxy.addToxic({
          name: `bw-${stream}`,
          type: "bandwidth",
          stream,
          toxicity: 1,
          attributes: { rate: 8 },
        });
    },
  },
  {
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
  {
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
  {
    name: "slicer 1-byte segments",
    fault: async ({ env }) => {
      for (const stream of ["upstream", "downstream"] as const)
        await env.proxy.addToxic({
          name: `slice-${stream}`,
          type: "slicer",
          stream,
          toxicity: 1,
          attributes: { average_size: 1, size_variation: 0, delay: 0 },
        });
    },
  },
  {
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
  {
    name: "timeout black hole",
    faultMs: 4000,
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
  {
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
  {
    name: "proxy disabled then enabled",
    fault: async ({ env }) => {
      await env.proxy.update({ enabled: false, listen: env.listen, upstream: env.upstream });
    },
    heal: async ({ env }) => {
      await env.proxy.update({ enabled: true, listen: env.listen, upstream: env.upstream });
    },
  },
  {
    name: "slow_close after a forced close",
    fault: async ({ env, connectionName }) => {
      await env.proxy.addToxic({
        name: "slow-close",
        type: "slow_close",
        stream: "downstream",
        toxicity: 1,
        attributes: { delay: 2000 },
      });
      await closeConnectionsNamed(connectionName, "chaos: slow_close");
    },
  },
];

describe("chaos: proxy faults", () => {
  for (const scenario of scenarios) {
    it(scenario.name, { timeout: 90_000 }, async () => {
      const r = await runScenario(env, scenario);
      console.info(
        `[chaos] ${r.name}: published ${r.published}, confirmed ${r.confirmed}, consumed ${r.consumed}, lost ${r.lost}, dups ${r.duplicates}, rejected ${r.rejected} ${JSON.stringify(r.rejectedBy)}, reconnects ${r.reconnects}, recovery ${r.recoveryMs ?? "-"} ms`,
      );
      expectHealthy(r);
    });
  }
});
