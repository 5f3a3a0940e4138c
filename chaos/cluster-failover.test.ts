/**
 * Fail-over of a quorum queue's leader on a private three-node cluster (chaos/cluster): a warren
 * client connected with all three URLs publishes with confirms and consumes steadily while the node
 * holding the queue's leader is SIGKILLed. Checked: every confirmed message is consumed (lost = 0),
 * no publish is rejected (RabbitMQ nacks publishes on a channel that reached the queue during
 * the leader election, and keeps nacking on it until it is reopened: the publisher retries nacks
 * and renews such a channel), and both publishing and consuming go on through the surviving
 * nodes. Duplicates, nack retries and channel renewals are counted and printed. A second
 * publisher, on a channel opened 2 s after the kill, shows a fresh channel works as well.
 *
 *   npx vitest run -c chaos/cluster/vitest.config.ts
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, connect, type Publisher } from "../src/index.js";
import { extraNodesSupported } from "../test/support/extra-node.js";
import { type Cluster, startCluster } from "./cluster/cluster.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Lane {
  prefix: string;
  publisher: Publisher;
  sent: number;
  confirmed: number;
  confirmedIds: Set<string>;
  rejected: Map<string, number>;
  rejectedAt: number[];
  pending: Set<Promise<void>>;
  rejectedAfter(t: number): number;
  /** Stops publishing and waits (at most 30 s) for what is outstanding. */
  stop(): Promise<void>;
}

/** About 500 messages a second with ids "<prefix><n>", at most 100 outstanding. */
function publishSteadily(
  publisher: Publisher,
  prefix: string,
  queue: string,
  sentAt: Map<string, number>,
  confirmedAt: Map<string, number>,
): Lane {
  let running = true;
  const lane: Lane = {
    prefix,
    publisher,
    sent: 0,
    confirmed: 0,
    confirmedIds: new Set(),
    rejected: new Map(),
    rejectedAt: [],
    pending: new Set(),
    rejectedAfter: (t) => lane.rejectedAt.filter((r) => r > t).length,
    async stop() {
      running = false;
      await loop;
      const until = performance.now() + 30_000;
      while (lane.pending.size > 0 && performance.now() < until) await sleep(100);
    },
  };
  const loop = (async () => {
    while (running) {
      for (let k = 0; k < 5 && lane.pending.size < 100; k += 1) {
        const id = `${prefix}${lane.sent++}`;
        sentAt.set(id, performance.now());
        const p: Promise<void> = publisher
          .publish({
            exchange: "",
            routingKey: queue,
            body: `m${id}`,
            properties: { messageId: id, persistent: true },
          })
          .then(
            () => {
              confirmedAt.set(id, performance.now());
              lane.confirmed += 1;
              lane.confirmedIds.add(id);
            },
            (error: Error) => {
              lane.rejected.set(error.name, (lane.rejected.get(error.name) ?? 0) + 1);
              lane.rejectedAt.push(performance.now());
            },
          )
          .finally(() => lane.pending.delete(p));
        lane.pending.add(p);
      }
      await sleep(10);
    }
  })();
  return lane;
}

describe.skipIf(!extraNodesSupported())("quorum queue leader fail-over (three local nodes)", () => {
  let cluster: Cluster | undefined;
  let client: Client | undefined;

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3, name: "warren-failover" });
    console.log(`cluster started in ${cluster.startMs} ms: ${cluster.urls.join(" ")}`);
  }, 150_000);

  afterAll(async () => {
    await client?.close().catch(() => {});
    await cluster?.stop();
  }, 60_000);

  it("loses no confirmed message and keeps publishing and consuming after the leader's node dies", async () => {
    const c = cluster!;
    const queue = `warren-failover-${process.pid}`;
    const cl = connect({ urls: c.urls, connectionName: "warren-cluster-failover", heartbeat: 5 });
    client = cl;
    const states: string[] = [];
    cl.on("state", ({ from, to, error }) =>
      states.push(`${Math.round(performance.now())} ${from}->${to}${error ? ` (${error.name})` : ""}`),
    );
    await cl.ready();
    await cl.declare({ queues: [{ name: queue, durable: true, arguments: { "x-queue-type": "quorum" } }] });

    const consumed = new Map<string, number>();
    const consumedAt = new Map<string, number>();
    const consumer = cl.consume({ queue, prefetch: 50 }, (msg) => {
      const id = msg.properties.messageId ?? "?";
      consumed.set(id, (consumed.get(id) ?? 0) + 1);
      if (!consumedAt.has(id)) consumedAt.set(id, performance.now());
    });

    const confirmedAt = new Map<string, number>();
    const sentAt = new Map<string, number>();
    const lanes: Lane[] = [];
    // The publisher of the whole run, and a second one (its own channel) opened 2 s after the kill.
    const first = publishSteadily(cl.publisher({ maxInFlight: 100 }), "a", queue, sentAt, confirmedAt);
    lanes.push(first);

    await sleep(3000);
    const victim = await c.leaderOf(queue);
    const confirmedBefore = confirmedAt.size;
    const killAt = performance.now();
    await c.kill(victim);
    console.log(`killed node ${victim + 1} (${c.nodeNames[victim]}), leader of ${queue}`);
    let second: Lane | undefined;
    const secondTimer = setTimeout(() => {
      second = publishSteadily(cl.publisher({ maxInFlight: 100 }), "b", queue, sentAt, confirmedAt);
      lanes.push(second);
    }, 2000);

    // Keep going until something is confirmed and consumed after the kill (at least 5 s, at most 40 s).
    const after = (m: Map<string, number>) => [...m.values()].filter((t) => t > killAt).sort((a, b) => a - b);
    const until = killAt + 40_000;
    while (performance.now() < until) {
      if (performance.now() > killAt + 5000 && after(confirmedAt).length > 0 && after(consumedAt).length > 0)
        break;
      await sleep(100);
    }
    clearTimeout(secondTimer);
    await Promise.all(lanes.map((lane) => lane.stop()));
    const newLeader = await c.leaderOf(queue).catch((e: Error) => `? (${e.message.split("\n")[0]})`);

    // Let the consumer catch up with every confirmed message.
    const drainUntil = performance.now() + 20_000;
    const missing = () => [...confirmedAt.keys()].filter((id) => !consumed.has(id));
    while (missing().length > 0 && performance.now() < drainUntil) await sleep(100);

    const lost = missing();
    const duplicates = [...consumed.values()].reduce((n, k) => n + (k - 1), 0);
    const confirmedAfter = after(confirmedAt);
    const consumedAfter = after(consumedAt);
    // Timings for messages sent after the kill (earlier ones may still be confirmed by the dying node).
    const sentAfter = (m: Map<string, number>) =>
      [...m.entries()]
        .filter(([id]) => (sentAt.get(id) ?? 0) > killAt)
        .map(([, t]) => t)
        .sort((a, b) => a - b);
    const firstConfirm = sentAfter(confirmedAt)[0];
    const firstConsume = sentAfter(consumedAt)[0];
    const perPublisher = Object.fromEntries(
      lanes.map((lane) => [
        lane.prefix === "a" ? "a (whole run)" : "b (opened 2 s after the kill)",
        {
          sent: lane.sent,
          confirmed: lane.confirmed,
          confirmedAfterKill: [...lane.confirmedIds].filter((id) => (confirmedAt.get(id) ?? 0) > killAt)
            .length,
          rejected: Object.fromEntries(lane.rejected),
          rejectedAfterKill: lane.rejectedAfter(killAt),
          stillPending: lane.pending.size,
          ...lane.publisher.counters,
        },
      ]),
    );
    const ledger = {
      sent: lanes.reduce((n, lane) => n + lane.sent, 0),
      confirmed: confirmedAt.size,
      confirmedBeforeKill: confirmedBefore,
      confirmedAfterKill: confirmedAfter.length,
      perPublisher,
      consumedDistinct: consumed.size,
      consumedAfterKill: consumedAfter.length,
      duplicates,
      lost: lost.length,
      lostSample: lost.slice(0, 10),
      killedNode: victim + 1,
      newLeaderNode: typeof newLeader === "number" ? newLeader + 1 : newLeader,
      firstConfirmOfMessageSentAfterKillMs:
        firstConfirm === undefined ? null : Math.round(firstConfirm - killAt),
      firstConsumeOfMessageSentAfterKillMs:
        firstConsume === undefined ? null : Math.round(firstConsume - killAt),
    };
    console.log(`ledger ${JSON.stringify(ledger, null, 2)}`);
    console.log(
      `client states (ms; kill at ${Math.round(killAt)}):\n${states.filter((s) => Number(s.split(" ")[0]) >= killAt - 1000).join("\n")}`,
    );

    await consumer.cancel().catch(() => {});
    for (const lane of lanes) await lane.publisher.close().catch(() => {});

    expect(lost).toEqual([]);
    expect(ledger.confirmedAfterKill).toBeGreaterThan(0);
    expect(ledger.consumedAfterKill).toBeGreaterThan(0);
    // The publisher whose channel saw the election recovers by itself, and nothing is rejected.
    expect(perPublisher["a (whole run)"]?.confirmedAfterKill).toBeGreaterThan(0);
    for (const lane of lanes) expect(Object.fromEntries(lane.rejected)).toEqual({});
  }, 120_000);
});
