/**
 * The supervised client against the main broker: recovery after a killed connection
 * (topology, server-named queues, consumers, exchange-to-exchange bindings, timing),
 * host rotation, non-recoverable login errors, queues deleted under consumers, channel
 * exceptions, ack/nack policy, stale delivery tags, close() and the restart intensity.
 *
 * Connections are killed with `rabbitmqctl close_connection`, found by a unique
 * connection name, so nothing else on the broker is touched.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  type Channel,
  ChannelClosedByBroker,
  type Client,
  ClientClosedError,
  type ClientOptions,
  ConnectionClosedByBroker,
  connect,
  QueueNotFoundError,
  RestartIntensityError,
  redactUrl,
  SocketError,
  UnroutableError,
  VhostNotAllowedError,
} from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { deferred, rejection } from "../support/async.js";
import {
  AMQP_URL,
  amqpUrlWith,
  canUseRabbitmqctl,
  closeConnectionsNamed,
  rabbitmqctl,
  uniqueName,
} from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { closedPort } from "../support/ports.js";
import { Inbox, StateLog } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

// ─── helpers ────────────────────────────────────────────────────────────────

/** messages and messages_unacknowledged of a queue, from rabbitmqctl. */
async function queueCounts(queue: string): Promise<{ ready: number; unacked: number } | undefined> {
  const out = await rabbitmqctl([
    "list_queues",
    "-q",
    "--no-table-headers",
    "name",
    "messages_ready",
    "messages_unacknowledged",
  ]);
  for (const line of out.split("\n")) {
    const [name, ready, unacked] = line.split("\t");
    if (name === queue) return { ready: Number(ready), unacked: Number(unacked) };
  }
  return undefined;
}

function waitForCounts(queue: string, ready: number, unacked: number): Promise<void> {
  return until(async () => {
    const counts = await queueCounts(queue);
    return counts?.ready === ready && counts.unacked === unacked;
  }, `queue ${queue} to hold ${ready} ready and ${unacked} unacknowledged`);
}

// ─── fixtures ───────────────────────────────────────────────────────────────

/** Killing connections and reading queue counts need rabbitmqctl; the other tests run without it. */
const usable = await canUseRabbitmqctl();

describe("the supervised client against the broker", { timeout: 30_000 }, () => {
  const admin = useAdmin();
  // One connection's supervision, end to end: the separate consume and publish connections are
  // client-connections.test.ts's.
  const clients = useClients("warren-client", { connections: "single" });
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);

  /** A client with a unique connection name, closed after the test, and its state log. */
  function client(options: ClientOptions = {}): { client: Client; name: string; log: StateLog } {
    const { client: c, name } = clients(options);
    return { client: c, name, log: new StateLog(c) };
  }

  /** Runs fn on a fresh channel of the plain admin connection. */
  async function withAdmin<T>(fn: (ch: Channel) => Promise<T>) {
    const ch = await admin.conn.openChannel();
    try {
      return await fn(ch);
    } finally {
      if (ch.isOpen) await ch.close();
    }
  }

  /** Kills the client's connection with rabbitmqctl close_connection. */
  async function kill(name: string): Promise<void> {
    expect(await closeConnectionsNamed(name, "killed by client-recovery test")).toBe(1);
  }

  beforeAll(() => {
    process.on("unhandledRejection", onUnhandled);
  });

  afterAll(() => {
    process.off("unhandledRejection", onUnhandled);
    expect(unhandled).toEqual([]);
  });

  // ─── recovery ─────────────────────────────────────────────────────────────

  it.skipIf(!usable)(
    "recovers from a killed connection: states, topology, renamed queues, consumers, e2e bindings, timing",
    async () => {
      const { client: c, name, log } = client();
      await c.ready();
      const ea = uniqueName("rec-ea");
      const es = uniqueName("rec-es");
      const ed = uniqueName("rec-ed");
      const qa = uniqueName("rec-qa");
      const qe = uniqueName("rec-qe");
      // Everything auto-deletes: once the connection dies, nothing of it is left on the broker.
      const declared = await c.declare({
        exchanges: [
          { name: ea, type: "direct", autoDelete: true },
          { name: es, type: "direct", autoDelete: true },
          { name: ed, type: "fanout", autoDelete: true },
        ],
        queues: [{ name: qa, autoDelete: true }, { exclusive: true }, { name: qe, autoDelete: true }],
      });
      const serverNamed = declared.queues[1] as string;
      expect(serverNamed).toMatch(/^amq\.gen-/);
      await c.declare({
        bindings: [
          { exchange: ea, queue: qa, routingKey: "a" },
          { exchange: ea, queue: serverNamed, routingKey: "s" },
          { exchange: es, destination: ed, routingKey: "e" },
          { exchange: ed, queue: qe },
        ],
      });
      const inA = new Inbox();
      const inS = new Inbox();
      const inE = new Inbox();
      const consumerA = c.consume({ queue: qa, prefetch: 10 }, inA.handler);
      const consumerS = c.consume({ queue: serverNamed }, inS.handler);
      const consumerE = c.consume({ queue: qe }, inE.handler);
      const logA = new StateLog(consumerA);
      const logS = new StateLog(consumerS);
      const logE = new StateLog(consumerE);
      await Promise.all([consumerA.ready(), consumerS.ready(), consumerE.ready()]);
      await c.publish(ea, "a", "a-before");
      await c.publish(ea, "s", "s-before");
      await c.publish(es, "e", "e-before");
      await Promise.all([inA.got("a-before"), inS.got("s-before"), inE.got("e-before")]);

      const renamed: { queue: string; from: string; to: string }[] = [];
      c.on("queueRenamed", (r) => renamed.push(r));
      // As soon as the client notices, publish: the publish waits for the client and is consumed after recovery.
      let afterPublish: Promise<void> | undefined;
      c.on("state", ({ to }) => {
        if (to === "recovering" && !afterPublish) afterPublish = c.publish(ea, "a", "a-after");
      });
      const mark = log.changes.length;
      const markA = logA.changes.length;
      const markS = logS.changes.length;
      const markE = logE.changes.length;
      await kill(name);
      const recovering = await log.next("recovering", mark);
      await log.next("running", mark);
      const consuming = await logA.next("consuming", markA);
      await afterPublish;
      const firstMessage = await inA.got("a-after");

      expect(log.statesSince(mark)).toEqual([
        "recovering",
        "connecting",
        "handshaking",
        "restoring",
        "running",
      ]);
      expect(recovering.error).toBeInstanceOf(ConnectionClosedByBroker);
      expect((recovering.error as ConnectionClosedByBroker).replyCode).toBe(320);
      expect(logA.statesSince(markA)).toEqual(["waiting", "subscribing", "consuming"]);

      const toConsuming = consuming.at - recovering.at;
      const toMessage = firstMessage.at - recovering.at;
      console.info(
        `recovery (close_connection, default settings): recovering → consumer consuming ${toConsuming.toFixed(1)} ms, → first message consumed ${toMessage.toFixed(1)} ms`,
      );
      // The first reconnect waits 0–100 ms (default backoff) and a recovery takes a few round trips:
      // a few hundred ms; 3 s leaves room for a loaded machine (rabbitmqctl itself takes a core).
      expect(toConsuming).toBeLessThan(3_000);
      expect(toMessage).toBeLessThan(3_000);

      // The server-named queue came back under a new name, and the app was told.
      expect(renamed).toHaveLength(1);
      expect(renamed[0]?.queue).toBe(serverNamed);
      expect(renamed[0]?.from).toBe(serverNamed);
      const newName = renamed[0]?.to as string;
      expect(newName).not.toBe(serverNamed);
      expect(newName).toMatch(/^amq\.gen-/);
      expect(c.queueName(serverNamed)).toBe(newName);
      expect(c.topology.snapshot().queues.map((q) => q.name)).toContain(newName);

      // Everything flows again: the auto-delete queue and exchange, the renamed queue's binding,
      // the exchange-to-exchange binding.
      // Subscribed again after the kill (a transition, not a state they may never have left).
      await Promise.all([logS.next("consuming", markS), logE.next("consuming", markE)]);
      await c.publish(ea, "a", "a-after-2");
      await c.publish(ea, "s", "s-after");
      await c.publish(es, "e", "e-after");
      await Promise.all([inA.got("a-after-2"), inS.got("s-after"), inE.got("e-after")]);
      expect(inS.bodies()).toEqual(["s-before", "s-after"]);
      expect(inE.bodies()).toEqual(["e-before", "e-after"]);
      // The old exclusive queue is gone with its connection.
      const gone = await rejection(withAdmin((ch) => ch.queueDeclare({ queue: serverNamed, passive: true })));
      expect(gone).toBeInstanceOf(ChannelClosedByBroker);
      expect((gone as ChannelClosedByBroker).replyCode).toBe(404);
    },
  );

  it("rotates to the next host when the first refuses the connection", async () => {
    const port = await closedPort();
    const { client: c, log } = client({ urls: [`amqp://guest:guest@127.0.0.1:${port}/`, AMQP_URL] });
    await c.ready();
    expect(log.states).toEqual([
      "connecting",
      "recovering",
      "connecting",
      "handshaking",
      "restoring",
      "running",
    ]);
    const failed = log.changes[1];
    expect(failed?.error).toBeInstanceOf(SocketError);
    expect(failed?.error?.message).toMatch(/ECONNREFUSED|refused/i);
    expect(c.connection?.address).toMatch(/:5672\//);
  });

  it.skipIf(!usable)(
    "after its connection dies, the client reconnects to another host first (that one rests); shuffleHosts spreads",
    async () => {
      // Two names for the same broker: which one the client uses shows in connection.address.
      const other = AMQP_URL.replace("127.0.0.1", "localhost");
      expect(other).not.toBe(AMQP_URL);
      const { client: c, name, log } = client({ urls: [AMQP_URL, other] });
      await c.ready();
      expect(c.connection?.address).toMatch(/127\.0\.0\.1/);
      let mark = log.changes.length;
      await kill(name);
      await log.next("running", mark);
      expect(c.connection?.address).toMatch(/localhost/);
      mark = log.changes.length;
      await kill(name);
      await log.next("running", mark);
      expect(c.connection?.address).toMatch(/127\.0\.0\.1/);

      // shuffleHosts: over 40 clients with 4 URLs, the first one is not always the first URL.
      const urls = [1, 2, 3, 4].map((i) => `${AMQP_URL}?connection_timeout=${10_000 + i}`);
      const firsts = new Set<string>();
      for (let i = 0; i < 40; i++) {
        const s = connect({ urls, shuffleHosts: true, connectionName: `${name}-shuffle` });
        firsts.add(s.addresses[0]!);
        expect([...s.addresses].sort()).toEqual(urls.map(redactUrl).sort());
        await s.close();
      }
      expect(firsts.size).toBeGreaterThan(1);
    },
  );

  it("wrong password: AuthenticationError at once, failed, one attempt", async () => {
    const errors: Error[] = [];
    const { client: c, log } = client({ url: amqpUrlWith({ password: "not-the-password" }) });
    c.on("error", (e) => errors.push(e));
    const started = performance.now();
    const err = await rejection(c.ready());
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as Error).message).toMatch(/guest/);
    // At once: no backoff and retry (one attempt, below); the bound only tells that from a hang.
    expect(elapsed).toBeLessThan(5_000);
    expect(c.state).toBe("failed");
    expect(log.count("connecting")).toBe(1);
    expect(log.states.at(-1)).toBe("failed");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBe(err);
    // It stays failed: ready() keeps rejecting, publish() too.
    await expect(c.ready()).rejects.toBeInstanceOf(AuthenticationError);
    await expect(c.publish("", "x", "y")).rejects.toBeInstanceOf(AuthenticationError);
    expect(log.count("connecting")).toBe(1);
  });

  it("missing vhost: VhostNotAllowedError, failed, one attempt", async () => {
    const { client: c, log } = client({ url: amqpUrlWith({ vhost: uniqueName("no-such-vhost") }) });
    const started = performance.now();
    const err = await rejection(c.ready());
    expect(err).toBeInstanceOf(VhostNotAllowedError);
    expect((err as Error).message).toMatch(/no-such-vhost/);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(c.state).toBe("failed");
    expect(log.count("connecting")).toBe(1);
  });

  // ─── queues deleted under consumers ───────────────────────────────────────

  it("a queue declared through the client and deleted under its consumer is declared again, with its binding", async () => {
    const { client: c, log } = client();
    await c.ready();
    const ex = uniqueName("qdel-ex");
    const q = admin.queueName("qdel-q");
    // The exchange auto-deletes: it goes with the queue's binding (also when the queue is deleted
    // after the test), and has to come back too.
    await c.declare({
      exchanges: [{ name: ex, type: "direct", autoDelete: true }],
      queues: [{ name: q }],
      bindings: [{ exchange: ex, queue: q, routingKey: "k" }],
    });
    const inbox = new Inbox();
    const consumer = c.consume({ queue: q }, inbox.handler);
    const clog = new StateLog(consumer);
    await clog.next("consuming", 0);
    await c.publish(ex, "k", "before");
    await inbox.got("before");
    const mark = clog.changes.length;
    const clientMark = log.changes.length;

    await withAdmin((ch) => ch.queueDelete({ queue: q }));
    await clog.next("resubscribing", mark);
    await clog.next("consuming", mark);
    await c.publish(ex, "k", "after");
    await inbox.got("after");
    expect(inbox.bodies()).toEqual(["before", "after"]);
    expect(log.changes.length).toBe(clientMark); // the connection never noticed
  });

  it("a queue the client did not declare: the consumer keeps retrying until someone declares it again", async () => {
    const { client: c, log } = client();
    await c.ready();
    const q = admin.queueName("ext-q");
    await withAdmin((ch) => ch.queueDeclare({ queue: q }));
    const inbox = new Inbox();
    const consumer = c.consume({ queue: q }, inbox.handler);
    const clog = new StateLog(consumer);
    await clog.next("consuming", 0);
    const mark = clog.changes.length;
    const clientMark = log.changes.length;

    await withAdmin((ch) => ch.queueDelete({ queue: q }));
    // Several attempts, each refused with 404, with growing (jittered) delays.
    await waitFor(() => clog.count("resubscribing", mark) >= 4, "four resubscribe attempts");
    expect(clog.count("consuming", mark)).toBe(0);
    expect(["resubscribing", "subscribing"]).toContain(consumer.state);
    const refused = clog.changes.slice(mark).filter((x) => x.to === "resubscribing" && x.error);
    expect(refused.length).toBeGreaterThanOrEqual(3);
    // The fault table: a 404 on basic.consume is a missing queue, named, transient.
    expect(refused[0]?.error).toBeInstanceOf(QueueNotFoundError);
    expect(refused[0]?.error).toMatchObject({ queue: q, code: "QUEUE_NOT_FOUND", recoverable: true });
    expect(refused[0]?.error?.cause).toMatchObject({ replyCode: 404 });
    expect(c.state).toBe("running");

    await withAdmin((ch) => ch.queueDeclare({ queue: q }));
    await clog.next("consuming", mark, 15_000);
    await withAdmin((ch) => ch.publish("", q, "after"));
    await inbox.got("after");
    expect(log.changes.length).toBe(clientMark); // the connection never noticed
  });

  // ─── channel exceptions ───────────────────────────────────────────────────

  it("a channel exception on the publishing channel: rejected with 404, the next publish goes through, consumers unaffected", async () => {
    const { client: c, log } = client();
    await c.ready();
    const q = admin.queueName("chex-q");
    await c.declare({ queues: [{ name: q }] });
    const inbox = new Inbox();
    const consumer = c.consume({ queue: q }, inbox.handler);
    const clog = new StateLog(consumer);
    await clog.next("consuming", 0);
    await c.publish("", q, "one");
    await inbox.got("one");
    const mark = clog.changes.length;
    const clientMark = log.changes.length;

    const err = await rejection(c.publish(uniqueName("missing-exchange"), "x", "lost"));
    expect(err).toBeInstanceOf(ChannelClosedByBroker);
    expect((err as ChannelClosedByBroker).replyCode).toBe(404);

    await c.publish("", q, "two");
    await inbox.got("two");
    // Confirm mode is back on the reopened channel: a mandatory publish nobody can route comes back.
    const returned = await rejection(
      c.publish("", uniqueName("nobody-home"), "x", undefined, { mandatory: true }),
    );
    expect(returned).toBeInstanceOf(UnroutableError);
    await c.publish("", q, "three");
    await inbox.got("three");

    expect(inbox.bodies()).toEqual(["one", "two", "three"]);
    expect(clog.changes.length).toBe(mark);
    expect(consumer.state).toBe("consuming");
    expect(log.changes.length).toBe(clientMark);
  });

  // ─── acknowledgements ─────────────────────────────────────────────────────

  it.skipIf(!usable)(
    "a failing handler: nacked and requeued once, then rejected; a succeeding handler: acked",
    async () => {
      const { client: c } = client();
      await c.ready();
      const q = admin.queueName("ack-q");
      await c.declare({ queues: [{ name: q }] });
      const seen: { body: string; redelivered: boolean }[] = [];
      const errors: unknown[] = [];
      const consumer = c.consume({ queue: q }, async (m) => {
        const body = m.body.toString();
        seen.push({ body, redelivered: m.fields.redelivered });
        if (body === "bad") throw new Error("handler failed on purpose");
      });
      consumer.on("error", (e) => errors.push(e));
      await consumer.ready();

      await c.publish("", q, "bad");
      await waitFor(() => seen.filter((s) => s.body === "bad").length === 2, "two deliveries of bad");
      // A requeue would put it back in front of what follows: once these are in, it is gone for good.
      for (const body of ["good-1", "good-2", "good-3"]) await c.publish("", q, body);
      await waitFor(() => seen.some((s) => s.body === "good-3"), "the good messages");
      expect(seen).toEqual([
        { body: "bad", redelivered: false },
        { body: "bad", redelivered: true },
        { body: "good-1", redelivered: false },
        { body: "good-2", redelivered: false },
        { body: "good-3", redelivered: false },
      ]);
      expect(errors).toHaveLength(2);
      expect((errors[0] as Error).message).toBe("handler failed on purpose");
      await waitForCounts(q, 0, 0);
      expect(consumer.state).toBe("consuming");
    },
  );

  it.skipIf(!usable)(
    "a handler still running when the connection dies never acks with its stale tag",
    async () => {
      const { client: c, name } = client();
      await c.ready();
      const q = admin.queueName("stale-q");
      await c.declare({ queues: [{ name: q }] });
      const first = deferred();
      const second = deferred();
      const seen: { body: string; redelivered: boolean; tag: number }[] = [];
      let finished = 0;
      const consumer = c.consume({ queue: q, prefetch: 1 }, async (m) => {
        seen.push({ body: m.body.toString(), redelivered: m.fields.redelivered, tag: m.fields.deliveryTag });
        if (seen.length === 1) await first.promise;
        else if (seen.length === 2) await second.promise;
        finished++;
      });
      const clog = new StateLog(consumer);
      await clog.next("consuming", 0);
      await c.publish("", q, "slow");
      await waitFor(() => seen.length === 1, "the first delivery");

      const mark = clog.changes.length;
      await kill(name);
      await clog.next("consuming", mark);
      await waitFor(() => seen.length === 2, "the redelivery");
      expect(seen[1]).toMatchObject({ body: "slow", redelivered: true });
      // The new channel's first tag is the same number as the stale one.
      expect(seen[1]?.tag).toBe(seen[0]?.tag);

      const afterRecovery = clog.changes.length;
      first.resolve(); // the stale handler finishes now
      await waitFor(() => finished === 1, "the stale handler to finish");
      // Nothing was acked with the old tag: the redelivered copy is still unacknowledged.
      expect(await queueCounts(q)).toEqual({ ready: 0, unacked: 1 });
      second.resolve();
      await waitFor(() => finished === 2, "the second handler to finish");
      await waitForCounts(q, 0, 0);
      // The channel is alive (no 406 unknown delivery tag): more messages flow, no resubscribe.
      await c.publish("", q, "next");
      await waitFor(() => finished === 3, "the next message");
      expect(clog.changes.length).toBe(afterRecovery);
      expect(consumer.state).toBe("consuming");
      expect(c.state).toBe("running");
    },
  );

  // ─── close ────────────────────────────────────────────────────────────────

  it("close() waits for a running handler, cancels consumers, and is idempotent", async () => {
    const { client: c, log } = client();
    await c.ready();
    const q = admin.queueName("close-q");
    await c.declare({ queues: [{ name: q }] });
    const started = deferred();
    const release = deferred();
    const order: string[] = [];
    const consumer = c.consume({ queue: q }, async () => {
      started.resolve();
      await release.promise;
      order.push("handler done");
    });
    const clog = new StateLog(consumer);
    await clog.next("consuming", 0);
    await c.publish("", q, "in flight");
    await started.promise;

    const closing = c.close().then(() => order.push("closed"));
    const again = c.close().then(() => order.push("closed again"));
    await waitFor(() => consumer.state === "draining", "the consumer draining");
    expect(c.state).toBe("closing");
    expect(order).toEqual([]);
    release.resolve();
    await Promise.all([closing, again]);
    expect(order[0]).toBe("handler done");
    expect(order).toHaveLength(3);
    expect(consumer.state).toBe("cancelled");
    expect(clog.states.slice(-2)).toEqual(["draining", "cancelled"]);
    expect(c.state).toBe("closed");
    expect(log.states.slice(-2)).toEqual(["closing", "closed"]);
    await c.close(); // idempotent

    // The message in flight was acked before the channel closed.
    const ok = await withAdmin((ch) => ch.queueDeclare({ queue: q, passive: true }));
    expect(ok.messageCount).toBe(0);

    await expect(c.publish("", q, "late")).rejects.toBeInstanceOf(ClientClosedError);
    await expect(c.declare({ queues: [{ name: q }] })).rejects.toBeInstanceOf(ClientClosedError);
    expect(() => c.consume({ queue: q }, () => undefined)).toThrow(ClientClosedError);
    await expect(c.ready()).rejects.toBeInstanceOf(ClientClosedError);
  });

  it.skipIf(!usable)(
    "close() does not wait longer than closeTimeout for a handler that never finishes",
    async () => {
      const { client: c } = client({ closeTimeout: 500 });
      await c.ready();
      const q = admin.queueName("close-stuck-q");
      await c.declare({ queues: [{ name: q }] });
      const started = deferred();
      const never = deferred();
      const consumer = c.consume({ queue: q }, async () => {
        started.resolve();
        await never.promise;
      });
      await consumer.ready();
      await c.publish("", q, "stuck");
      await started.promise;
      const t0 = performance.now();
      await c.close();
      const took = performance.now() - t0;
      // It waited for the stuck handler up to closeTimeout (500 ms), then stopped waiting (5×).
      expect(took).toBeGreaterThanOrEqual(490);
      expect(took).toBeLessThan(2_500);
      expect(c.state).toBe("closed");
      expect(consumer.state).toBe("cancelled");
      never.resolve(); // finishes on a dead channel: nothing is sent
      // Not acked: the broker has it back.
      await waitForCounts(q, 1, 0);
    },
  );

  // ─── restart intensity ────────────────────────────────────────────────────

  it.skipIf(!usable)(
    "a publisher and a consumer created while the client restores its consumers start on that connection",
    async () => {
      const { client: c, name, log } = client();
      const queue = admin.queueName("warren-late-children");
      const other = admin.queueName("warren-late-children");
      await c.ready();
      await c.declare({ queues: [{ name: queue }, { name: other }] });
      const first = c.consume({ queue }, () => undefined);
      await first.ready();
      // The first consumer resubscribing means restore() already started the children it knew of.
      const got: string[] = [];
      const late = deferred<{
        state: string;
        publisher: ReturnType<Client["publisher"]>;
        consumer: typeof first;
      }>();
      first.on("state", ({ to }) => {
        if (to !== "subscribing") return;
        const consumer = c.consume({ queue: other }, (msg) => {
          got.push(msg.body.toString());
        });
        late.resolve({ state: c.state, publisher: c.publisher(), consumer });
      });
      const mark = log.changes.length;
      await kill(name);
      const { state, publisher, consumer } = await late.promise;
      expect(state).toBe("restoring");
      await log.next("running", mark);
      await publisher.publish({ exchange: "", routingKey: other, body: "late" });
      await waitFor(() => got.length > 0, "the late consumer's delivery");
      expect(got).toEqual(["late"]);
      // A delivery may come in the same read as basic.consume-ok, before the consumer's machine
      // has seen the subscription settle: ready() is the subscription, not the first message.
      await consumer.ready();
      expect(consumer.state).toBe("consuming");
    },
  );

  it.skipIf(!usable)(
    "more restarts than the restart intensity allows: degraded (escalated backoff), then healthy again; never failed",
    async () => {
      const {
        client: c,
        name,
        log,
      } = client({
        restartIntensity: { maxRestarts: 3, withinMs: 60_000 },
        escalation: { resetAfterMs: 3_000 },
      });
      const errors: Error[] = [];
      c.on("error", (e) => errors.push(e));
      const conditions: boolean[] = [];
      c.on("degraded", ({ degraded }) => conditions.push(degraded));
      await c.ready();
      for (let i = 1; i <= 3; i++) {
        const mark = log.changes.length;
        await kill(name);
        await log.next("running", mark);
      }
      expect(c.degraded).toBe(false);
      const mark = log.changes.length;
      const lostAt = performance.now();
      await kill(name);
      const degraded = await log.next("degraded", mark);
      expect(degraded.error).toBeInstanceOf(ConnectionClosedByBroker);
      expect((degraded.error as ConnectionClosedByBroker).replyCode).toBe(320);
      expect(c.degraded).toBe(true);
      const back = await log.next("running", mark, 15_000);
      // Level 1 waits 1–2 s (the upper half of the 2 s ceiling), where a plain recovery waits 0–100 ms.
      expect(back.at - lostAt).toBeGreaterThanOrEqual(1_000);
      expect(log.statesSince(mark)).not.toContain("failed");
      // Up for resetAfterMs: healthy again.
      await waitFor(() => !c.degraded, "the degraded condition to reset", 15_000);
      expect(conditions).toEqual([true, false]);
      expect(c.state).toBe("running");
      expect(errors).toEqual([]);
      await c.close();
      expect(c.state).toBe("closed");
    },
  );

  it.skipIf(!usable)(
    "giveUpAfter (opt-in): failed with RestartIntensityError once that many restarts pass without staying up",
    async () => {
      const { client: c, name, log } = client({ giveUpAfter: { attempts: 3 } });
      const errors: Error[] = [];
      c.on("error", (e) => errors.push(e));
      await c.ready();
      for (let i = 1; i <= 2; i++) {
        const mark = log.changes.length;
        await kill(name);
        await log.next("running", mark);
      }
      const mark = log.changes.length;
      await kill(name);
      const failed = await log.next("failed", mark);
      expect(log.statesSince(mark)).toEqual(["failed"]);
      expect(failed.error).toBeInstanceOf(RestartIntensityError);
      expect(failed.error?.message).toMatch(/giveUpAfter/);
      expect(c.state).toBe("failed");
      await expect(c.ready()).rejects.toBeInstanceOf(RestartIntensityError);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(RestartIntensityError);
      await c.close();
      expect(c.state).toBe("closed");
      expect(errors).toHaveLength(1);
    },
  );
});
