/**
 * Faults on the broker side: forced connection closes, a queue deleted under its consumer, wrong
 * credentials, a storm of the caller's own channel errors, and (on a private extra node) the broker
 * application stopped and started, and a memory alarm.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthenticationError, ChannelClosedByBroker, connect } from "../src/index.js";
import {
  clearMemoryAlarm,
  closeConnectionsNamed,
  setMemoryAlarm,
  uniqueName,
} from "../test/support/broker.js";
import {
  type ExtraNode,
  extraNodesSupported,
  findFreePorts,
  startExtraNode,
} from "../test/support/extra-node.js";
import {
  type ChaosEnv,
  deleteQueue,
  printResults,
  runScenario,
  startChaos,
  waitFor,
} from "./suite/harness.js";

let env: ChaosEnv;

beforeAll(async () => {
  env = await startChaos();
});

afterAll(async () => {
  printResults("chaos: broker faults");
  await env?.close();
});

const log = (r: {
  name: string;
  published: number;
  confirmed: number;
  consumed: number;
  lost: number;
  duplicates: number;
  rejected: number;
  rejectedBy: Record<string, number>;
  reconnects: number;
  recoveryMs: number | undefined;
}) =>
  console.info(
    `[chaos] ${r.name}: published ${r.published}, confirmed ${r.confirmed}, consumed ${r.consumed}, lost ${r.lost}, dups ${r.duplicates}, rejected ${r.rejected} ${JSON.stringify(r.rejectedBy)}, reconnects ${r.reconnects}, recovery ${r.recoveryMs ?? "-"} ms`,
  );

describe("chaos: broker faults (main broker)", () => {
  it("rabbitmqctl close_connection", { timeout: 90_000 }, async () => {
    const r = await runScenario(env, {
      name: "close_connection",
      fault: async ({ connectionName, notes }) => {
        notes["closed"] = await closeConnectionsNamed(connectionName, "chaos: close_connection");
      },
      heal: async () => undefined,
    });
    log(r);
    expect(r.notes["closed"]).toBeGreaterThanOrEqual(1);
    expect(r.lostIds).toEqual([]);
    expect(r.reconnects).toBeGreaterThanOrEqual(1);
    expect(r.finalClientState).toBe("running");
    expect(r.finalConsumerState).toBe("consuming");
  });

  it("queue deleted under the consumer comes back", { timeout: 90_000 }, async () => {
    const r = await runScenario(env, {
      name: "queue deleted under consumer",
      faultMs: 500,
      settleMs: 8000,
      fault: async ({ env, queue }) => {
        await deleteQueue(env.directUrl, queue);
      },
      heal: async ({ consumer }) => {
        await waitFor(() => consumer.state === "consuming", "the consumer to resubscribe", 20_000);
      },
    });
    log(r);
    // Messages sitting in the queue when it was deleted, and those routed while it did not exist,
    // are gone by the experiment's design; everything published once it was back is consumed.
    expect(r.lostAfterHeal).toEqual([]);
    expect(r.finalClientState).toBe("running");
    expect(r.finalConsumerState).toBe("consuming");
  });

  it("wrong credentials fail fast", { timeout: 60_000 }, async () => {
    const url = new URL(env.proxyUrl);
    url.password = "definitely-wrong";
    const client = connect({
      url: url.toString(),
      connectionName: uniqueName("warren-chaos-auth"),
      heartbeat: 1,
    });
    const states: string[] = [];
    client.on("state", ({ to }) => states.push(to));
    client.on("error", () => undefined);
    const pub = client.publisher({ maxInFlight: 200 });
    const started = Date.now();
    const outcome = pub
      .publish({ exchange: "", routingKey: "nowhere", body: "x", properties: { messageId: "auth-1" } })
      .then(
        () => "resolved",
        (e: unknown) => (e instanceof Error ? e.name : String(e)),
      );
    await expect(client.ready()).rejects.toBeInstanceOf(AuthenticationError);
    const failMs = Date.now() - started;
    const settled = await Promise.race([outcome, new Promise((r) => setTimeout(() => r("pending"), 5000))]);
    console.info(
      `[chaos] wrong credentials: failed in ${failMs} ms, states ${states.join(",")}, publish ${settled}`,
    );
    expect(client.state).toBe("failed");
    expect(states.filter((s) => s === "connecting")).toHaveLength(1);
    expect(settled).not.toBe("pending");
    expect(settled).not.toBe("resolved");
    await client.close();
  });

  it("channel-error storm from the caller's own 404s does not escalate", { timeout: 90_000 }, async () => {
    const badOutcomes: string[] = [];
    let stop = false;
    let storm: Promise<void> | undefined;
    const r = await runScenario(env, {
      name: "channel-error storm (404s)",
      client: { channelRestartIntensity: { maxRestarts: 2, withinMs: 10_000 } },
      fault: async ({ publisher, notes }) => {
        const missing = uniqueName("warren-chaos-missing-x");
        storm = (async () => {
          let n = 0;
          while (!stop) {
            n += 1;
            const outcome = await publisher
              .publish({
                exchange: missing,
                routingKey: "k",
                body: "bad",
                properties: { messageId: `bad-${n}` },
              })
              .then(
                () => "resolved",
                (e: unknown) =>
                  e instanceof ChannelClosedByBroker
                    ? "ChannelClosedByBroker"
                    : e instanceof Error
                      ? e.name
                      : String(e),
              );
            badOutcomes.push(outcome);
            await new Promise((res) => setTimeout(res, 50));
          }
          notes["badPublishes"] = n;
        })();
      },
      heal: async () => {
        stop = true;
        await storm;
      },
    });
    log(r);
    console.info(
      `[chaos] storm: ${badOutcomes.length} bad publishes, outcomes ${JSON.stringify(count(badOutcomes))}`,
    );
    expect(badOutcomes.length).toBeGreaterThan(5);
    expect(new Set(badOutcomes)).toEqual(new Set(["ChannelClosedByBroker"]));
    expect(r.reconnects).toBe(0);
    expect(r.lostIds).toEqual([]);
    expect(r.rejected).toBe(0);
    expect(r.finalClientState).toBe("running");
    expect(r.finalConsumerState).toBe("consuming");
  });
});

function count(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

describe.skipIf(!extraNodesSupported())("chaos: broker faults (extra node)", () => {
  let node: ExtraNode;
  let nodeEnv: ChaosEnv;

  beforeAll(async () => {
    const [amqpPort, distPort] = await findFreePorts(2);
    node = await startExtraNode({ name: "warren-chaos", amqpPort: amqpPort!, distPort: distPort! });
    nodeEnv = await startChaos(node.url);
  }, 90_000);

  afterAll(async () => {
    await nodeEnv?.close();
    await node?.stop();
  }, 60_000);

  it("broker app stopped and started", { timeout: 120_000 }, async () => {
    const r = await runScenario(nodeEnv, {
      name: "broker stop_app/start_app",
      fault: async () => {
        await node.ctl(["stop_app"]);
      },
      heal: async () => {
        await node.ctl(["start_app"]);
      },
      afterMs: 3000,
      settleMs: 60_000,
    });
    log(r);
    expect(r.lostIds).toEqual([]);
    expect(r.reconnects).toBeGreaterThanOrEqual(1);
    expect(r.finalClientState).toBe("running");
    expect(r.finalConsumerState).toBe("consuming");
  });

  it("memory alarm: blocked, then unblocked", { timeout: 120_000 }, async () => {
    let sawBlocked = false;
    const r = await runScenario(nodeEnv, {
      name: "memory alarm",
      fault: async ({ client }) => {
        client.on("state", ({ to }) => {
          if (to === "blocked") sawBlocked = true;
        });
        await setMemoryAlarm({ ctl: (a) => node.ctl(a) });
      },
      heal: async () => {
        await clearMemoryAlarm({ ctl: (a) => node.ctl(a) });
      },
      settleMs: 60_000,
    });
    log(r);
    expect(sawBlocked).toBe(true);
    expect(r.lostIds).toEqual([]);
    expect(r.finalClientState).toBe("running");
    expect(r.finalConsumerState).toBe("consuming");
  });
});
