/**
 * RabbitMQ 4.x's answers, played by the fake server (only 3.10 runs here): 4.3's refusal of a
 * transient non-exclusive queue (connection.close 541), `x-consumer-timeout` on basic.consume for a
 * 4.3 broker and not for an older one, and 4.3's counting of a quorum queue's redeliveries (only
 * basic.reject increments x-delivery-count). docs/rabbitmq-4.md.
 */
import { afterEach, describe, expect, it } from "vitest";
import { type ClientState, DeprecatedFeatureError } from "../../src/index.js";
import type { MethodArgs } from "../../src/protocol/generated/spec.js";
import { DEFAULT_ANSWERS, type FakePeer, FakeServer, type Frame } from "../fake/server.js";
import { errorOf } from "../support/async.js";
import { useClients } from "../support/clients.js";
import { waitFor } from "../support/wait.js";

const REFUSAL =
  "INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated.\nBy default, this feature is not permitted anymore.";

const servers: FakeServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
// Registered after the servers' hook, so it runs before it: clients close before their server.
// The fake broker plays one connection: the client keeps one.
const newClient = useClients("rmq4", { reconnect: { initial: 20, max: 50 }, connections: "single" });

/** A fake broker of `version`; `script` adds answers after the defaults. */
async function broker(version: string, script: (peer: FakePeer) => void = () => {}) {
  const fake = await FakeServer.start(async (peer) => {
    peer.answerDefaults();
    script(peer);
    await peer.handshake({ heartbeat: 0, serverProperties: { version } });
  });
  servers.push(fake);
  const { client } = newClient({ url: `amqp://guest:guest@127.0.0.1:${fake.port}` });
  return { fake, client };
}

const methodsNamed = (peer: FakePeer, name: string): Frame[] =>
  peer.frames.filter((f) => f.method?.name === name);

describe("RabbitMQ 4.3 refuses a transient non-exclusive queue", () => {
  /** 4.3's queue.declare: a queue neither durable nor exclusive closes the connection (541). */
  const refuseTransient = (peer: FakePeer) =>
    peer.answer("queue.declare", (m, channel, p) => {
      const a = m.args as MethodArgs["queue.declare"];
      if (a.durable || a.exclusive) return DEFAULT_ANSWERS["queue.declare"]!(m, channel, p);
      p.send(0, {
        name: "connection.close",
        args: { replyCode: 541, replyText: REFUSAL, classId: 50, methodId: 10 },
      });
      return undefined;
    });

  it("declare()'s defaults pass: a named queue durable, a server-named one exclusive", async () => {
    const { fake, client } = await broker("4.3.0", refuseTransient);
    const r = await client.declare({ queues: [{ name: "jobs" }, {}, { name: "mine", exclusive: true }] });
    expect(r.queues).toEqual(["jobs", "amq.gen-fake", "mine"]);
    const peer = await fake.peer();
    const sent = methodsNamed(peer, "queue.declare").map(
      (f) => f.method!.args as MethodArgs["queue.declare"],
    );
    expect(sent.map(({ queue, durable, exclusive }) => ({ queue, durable, exclusive }))).toEqual([
      { queue: "jobs", durable: true, exclusive: false },
      { queue: "", durable: false, exclusive: true },
      { queue: "mine", durable: false, exclusive: true },
    ]);
    expect(client.state).toBe("running");
    expect(fake.peers).toHaveLength(1);
  });

  it("a queue asked for as transient and non-exclusive: a permanent DeprecatedFeatureError saying what to do, no reconnection loop", async () => {
    const { fake, client } = await broker("4.3.0", refuseTransient);
    await client.ready();
    const states: ClientState[] = [];
    client.on("state", ({ to }) => states.push(to));
    const err = await errorOf(client.declare({ queues: [{ name: "scratch", durable: false }] }));
    expect(err).toBeInstanceOf(DeprecatedFeatureError);
    const e = err as DeprecatedFeatureError;
    expect(e.feature).toBe("transient_nonexcl_queues");
    expect(e.recoverable).toBe(false);
    expect(e.message).toMatch(/queue\.declare/);
    expect(e.message).toMatch(/declare it durable .*or exclusive/);
    await waitFor(() => client.state === "failed", "the client failed", 5000);
    expect(states).not.toContain("recovering");
    expect(fake.peers).toHaveLength(1); // never connected again to be refused again
    expect(await errorOf(client.ready())).toBeInstanceOf(DeprecatedFeatureError);
  });

  it("rpcServer({ declare: true }) declares a durable queue", async () => {
    const { fake, client } = await broker("4.3.0", refuseTransient);
    const server = client.rpcServer({ queue: "prices", declare: true }, () => "ok");
    await server.ready();
    const peer = await fake.peer();
    const declared = methodsNamed(peer, "queue.declare").map(
      (f) => f.method!.args as MethodArgs["queue.declare"],
    );
    expect(declared[0]).toMatchObject({ queue: "prices", durable: true, exclusive: false });
    await server.cancel();
  });
});

describe("x-consumer-timeout on basic.consume", () => {
  async function consumeArgs(version: string, options: { timeoutMs?: number; noAck?: boolean } = {}) {
    const { fake, client } = await broker(version);
    const consumer = client.consume({ queue: "q", ...options }, () => undefined);
    await consumer.ready();
    const peer = await fake.peer();
    const consume = methodsNamed(peer, "basic.consume")[0]!.method!.args as MethodArgs["basic.consume"];
    await consumer.cancel();
    return consume.arguments ?? {};
  }

  it("4.3: timeoutMs plus a minute, so the broker never times a delivery out before warren's timeout", async () => {
    expect(await consumeArgs("4.3.0", { timeoutMs: 45 * 60_000 })).toEqual({
      "x-consumer-timeout": 46 * 60_000,
    });
  });

  it("3.10 and 4.2 (which ignore it), no timeoutMs, or noAck: not sent", async () => {
    expect(await consumeArgs("3.10.7", { timeoutMs: 5000 })).toEqual({});
    expect(await consumeArgs("4.2.6", { timeoutMs: 5000 })).toEqual({});
    expect(await consumeArgs("4.3.0")).toEqual({});
    expect(await consumeArgs("4.3.0", { timeoutMs: 5000, noAck: true })).toEqual({});
  });
});

describe("a quorum queue's redeliveries as 4.3 counts them", () => {
  it("a failed requeue is basic.reject, which 4.3 counts: the attempts end at maxAttempts, then reject without requeue", async () => {
    // 4.3's quorum queue: basic.reject with requeue increments delivery-count (x-delivery-count on
    // the redelivery); basic.nack would not, and the message would come back as the same attempt.
    let count = 0;
    let tag = 0;
    const deliver = (peer: FakePeer, channel: number) => {
      tag++;
      peer.send(channel, {
        name: "basic.deliver",
        args: {
          consumerTag: "amq.ctag-fake",
          deliveryTag: tag,
          redelivered: tag > 1,
          exchange: "",
          routingKey: "q",
        },
      });
      peer.sendHeader(channel, 1, count > 0 ? { headers: { "x-delivery-count": count } } : {});
      peer.sendBody(channel, Buffer.from("x"));
    };
    const { fake, client } = await broker("4.3.0", (peer) => {
      peer.answer("basic.consume", (m, channel, p) => {
        setImmediate(() => deliver(p, channel));
        return DEFAULT_ANSWERS["basic.consume"]!(m, channel, p);
      });
      peer.watch((f) => {
        if (f.method?.name === "basic.reject") {
          const a = f.method.args as MethodArgs["basic.reject"];
          if (a.requeue) {
            count++; // 4.3: reject counts
            setImmediate(() => deliver(peer, f.channel));
          }
        } else if (f.method?.name === "basic.nack") {
          const a = f.method.args as MethodArgs["basic.nack"];
          if (a.requeue) setImmediate(() => deliver(peer, f.channel)); // 4.3: nack does not count
        }
      });
    });
    const attempts: number[] = [];
    const consumer = client.consume({ queue: "q", maxAttempts: 3 }, (m) => {
      attempts.push(m.attempt);
      throw new Error("fails every time");
    });
    consumer.on("error", () => undefined);
    const peer = await fake.peer();
    await waitFor(() => methodsNamed(peer, "basic.reject").length === 3, "three rejects", 5000);
    expect(attempts).toEqual([1, 2, 3]);
    const rejects = methodsNamed(peer, "basic.reject").map(
      (f) => (f.method!.args as MethodArgs["basic.reject"]).requeue,
    );
    expect(rejects).toEqual([true, true, false]);
    expect(methodsNamed(peer, "basic.nack")).toHaveLength(0);
    expect(consumer.stats).toMatchObject({ failed: 3, requeued: 2, deadLettered: 1 });
  });
});
