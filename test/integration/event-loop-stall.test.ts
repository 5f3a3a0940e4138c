/**
 * A handler that hogs the CPU starves the heartbeats: the loop is blocked here (Atomics.wait holds
 * the thread as a CPU-bound handler would: no timer, no I/O) past two heartbeat intervals, and the
 * error that follows must say so, with the measured stall, and warren_event_loop_lag_seconds show it.
 *
 * Both shapes the client meets: the real broker (RabbitMQ) closes the socket after missed heartbeats
 * (SocketError once the loop runs again), and, with that close lost on the way (a fake broker that
 * stays silent without closing), the client's own heartbeat timeout two intervals later.
 */
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { Connection, type ConnectionError, HeartbeatTimeoutError, SocketError } from "../../src/index.js";
import { FakeServer } from "../fake/server.js";
import { within } from "../support/async.js";
import { useClients } from "../support/clients.js";
import { useFakeServers } from "../support/fakes.js";
import { StateLog } from "../support/state-log.js";
import { until } from "../support/wait.js";

/** Blocks the event loop for `ms`, as synchronous CPU-bound work would. */
function blockLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

async function lag(registry: Registry, connection: string): Promise<number | undefined> {
  const data = await registry.getSingleMetric("warren_event_loop_lag_seconds")?.get();
  return data?.values.find((v) => v.labels["connection"] === connection)?.value;
}

describe("a blocked event loop", () => {
  const open = useClients("loop-stall", { reconnect: { initial: 10, max: 100 } });

  it("the broker drops the connection after missed heartbeats: the error names the stall, the lag gauge shows it", async () => {
    const registry = new Registry();
    const { client, name } = open({ heartbeat: 1, metrics: { registry } });
    await client.ready();
    const log = new StateLog(client);
    expect(await lag(registry, name)).toBeLessThan(1); // the first scrape: nothing blocked yet

    blockLoop(3_500); // past two intervals: RabbitMQ closes the socket ("missed heartbeats from client")

    const lost = await log.next("recovering", 0);
    const err = lost.error as ConnectionError;
    expect(err).toBeInstanceOf(SocketError);
    expect(err.message).toMatch(
      /closed by the peer without connection\.close: the event loop was blocked for [34]\.\d s; the broker closed the connection after missed heartbeats \(heartbeat 1 s\)\. Keep CPU-bound work off the event loop/,
    );
    // Measured to within the monitor's 100 ms tick (and a loaded machine's lateness).
    expect(err.eventLoopStallMs).toBeGreaterThanOrEqual(3_350);
    expect(err.eventLoopStallMs).toBeLessThan(5_000);
    await log.next("running", log.changes.indexOf(lost));

    const seen = await lag(registry, name);
    expect(seen).toBeGreaterThanOrEqual(3.35);
    expect(seen).toBeLessThan(5);
    // Since the previous scrape only: it drops once the stall is behind it.
    await until(async () => ((await lag(registry, name)) ?? 1) < 0.5, "the lag gauge to drop");
  });
});

describe("a blocked event loop and a broker that goes silent without closing", () => {
  const { fakes, conns } = useFakeServers();

  /** A connection to a fake broker sending heartbeats every 300 ms until `silence()`. */
  async function beating(): Promise<{ conn: Connection; silence: () => void; closed: Promise<unknown> }> {
    const fake = await FakeServer.start((peer) => peer.handshake({ heartbeat: 1 }).then(() => {}));
    fakes.push(fake);
    const conn = await Connection.open({ host: "127.0.0.1", port: fake.port, connectionTimeout: 2000 });
    conns.push(conn);
    const peer = await fake.peer();
    const beat = setInterval(() => peer.sendHeartbeat(), 300);
    const closed = new Promise((resolve) => conn.once("close", resolve));
    return { conn, silence: () => clearInterval(beat), closed };
  }

  it("the client's own heartbeat timeout after the stall says the loop was blocked", async () => {
    const { conn, silence, closed } = await beating();
    expect(conn.heartbeat).toBe(1);
    blockLoop(2_500);
    silence(); // the broker dropped us; its close never arrives
    const err = (await within(closed, 15_000, "heartbeat timeout")) as ConnectionError;
    expect(err).toBeInstanceOf(HeartbeatTimeoutError);
    expect(err.message).toMatch(
      /for 2 s \(two heartbeat intervals\): the event loop was blocked for [23]\.\d s, so heartbeats were neither sent nor read in time/,
    );
    expect(err.eventLoopStallMs).toBeGreaterThanOrEqual(2_350);
    expect(err.eventLoopStallMs).toBeLessThan(4_000);
  });

  it("a short block (under one interval) is not blamed: the timeout blames the broker or the network", async () => {
    const { silence, closed } = await beating();
    blockLoop(300);
    silence();
    const err = (await within(closed, 15_000, "heartbeat timeout")) as ConnectionError;
    expect(err).toBeInstanceOf(HeartbeatTimeoutError);
    expect(err.message).toMatch(/two heartbeat intervals\): the broker or the network is gone$/);
    expect(err.eventLoopStallMs).toBeUndefined();
  });
});
