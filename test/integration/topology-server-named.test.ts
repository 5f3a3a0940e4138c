/**
 * A server-named queue across two recoveries, against the real broker: declared through the
 * client with an empty name (exclusive, so it dies with the connection), bound and consumed by
 * the name the broker first gave it. Each killed connection (rabbitmqctl close_connection) makes
 * the broker name it anew: the old queue is gone, the binding and the consumer follow the new
 * name, `client.queueName(firstName)` and the topology snapshot report it, and `queueRenamed`
 * says from what to what.
 */
import { expect, it } from "vitest";
import { ChannelClosedByBroker } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { errorOf } from "../support/async.js";
import { canUseRabbitmqctl, closeConnectionsNamed, uniqueName } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { Inbox, StateLog } from "../support/state-log.js";

/** Killing the client's connection takes rabbitmqctl (close_connection) on the broker's node. */
const canKill = await canUseRabbitmqctl();

// Registered first, so its afterAll runs after the clients are closed.
const admin = useAdmin();
const client = useClients("warren-server-named");

/** What a passive queue.declare from another connection says about `queue` (undefined: it exists, not exclusive). */
async function probe(queue: string): Promise<unknown> {
  const ch = await admin.conn.openChannel();
  const error = await errorOf(ch.queueDeclare({ queue, passive: true }));
  if (ch.isOpen) await ch.close();
  return error;
}

function replyCodeOf(error: unknown): number | undefined {
  return error instanceof ChannelClosedByBroker ? error.replyCode : undefined;
}

it.skipIf(!canKill)(
  "a server-named queue is named anew by each of two recoveries; its binding and consumer follow (needs rabbitmqctl)",
  { timeout: 60_000 },
  async () => {
    const { client: c, name } = client();
    const log = new StateLog(c);
    const renamed: { queue: string; from: string; to: string }[] = [];
    c.on("queueRenamed", (r) => renamed.push(r));
    await c.ready();

    const exchange = uniqueName("server-named-ex");
    // Auto-delete: it goes with the exclusive queue's binding when the connection dies (and is
    // declared again by the recovery, before the queue and the binding).
    const declared = await c.declare({
      exchanges: [{ name: exchange, type: "direct", autoDelete: true }],
      queues: [{ exclusive: true }],
    });
    const key = declared.queues[0] as string;
    await c.declare({ bindings: [{ exchange, queue: key, routingKey: "k" }] });
    const inbox = new Inbox();
    const consumer = c.consume({ queue: key }, inbox.handler);
    const clog = new StateLog(consumer);
    await consumer.ready();
    // Mandatory: an unroutable message (no binding) would reject with UnroutableError.
    await admin.pub.publish(exchange, "k", "before", {}, { mandatory: true });
    await inbox.got("before");

    const names = [key];
    const closedCounts: number[] = [];
    const recoveries: { round: number; states: string[]; ms: number }[] = [];
    /** After each recovery: what the broker says of the name before it and of the current one. */
    const probes: { old: unknown; current: unknown }[] = [];
    for (const round of [1, 2]) {
      const mark = log.changes.length;
      const cmark = clog.changes.length;
      closedCounts.push(await closeConnectionsNamed(`${name}:consume`, `server-named recovery ${round}`));
      const recovering = await log.next("recovering", mark);
      const running = await log.next("running", log.changes.indexOf(recovering) + 1, 20_000);
      await clog.next("consuming", cmark, 20_000);
      recoveries.push({ round, states: log.statesSince(mark), ms: running.at - recovering.at });
      names.push(c.queueName(key));
      probes.push({
        old: await probe(names[round - 1] as string),
        current: await probe(names[round] as string),
      });
      await admin.pub.publish(exchange, "k", `after-${round}`, {}, { mandatory: true });
      await inbox.got(`after-${round}`);
    }
    for (const r of recoveries)
      console.info(`recovery ${r.round}: ${r.states.join(" → ")} in ${r.ms.toFixed(1)} ms`);

    expect(closedCounts.every((n) => n > 0)).toBe(true);
    for (const r of recoveries)
      expect(r.states).toEqual(["recovering", "connecting", "handshaking", "restoring", "running"]);
    // Three names, each the broker's own.
    expect(new Set(names).size).toBe(3);
    for (const n of names) expect(n).toMatch(/^amq\.gen-/);
    // The app was told of each rename, from the name before to the name after.
    expect(renamed).toEqual([
      { queue: key, from: names[0], to: names[1] },
      { queue: key, from: names[1], to: names[2] },
    ]);
    // The current name, through the client and its recorded topology; the consumer keeps its key.
    expect(c.queueName(key)).toBe(names[2]);
    expect(c.topology.snapshot().queues).toEqual([{ key, name: names[2] }]);
    expect(consumer.queue).toBe(key);
    // The binding followed (every message went through the exchange to the consumer), once each.
    expect(inbox.bodies()).toEqual(["before", "after-1", "after-2"]);
    expect(inbox.messages.map((m) => m.redelivered)).toEqual([false, false, false]);
    // After each recovery the old queue is gone (404) and the new one exists, exclusive to the client (405).
    expect(probes.map((p) => [replyCodeOf(p.old), replyCodeOf(p.current)])).toEqual([
      [404, 405],
      [404, 405],
    ]);
    for (const p of probes) expect(p.old).toBeInstanceOf(ChannelClosedByBroker);

    // deleteQueue() by the first name deletes the queue under its current name.
    await consumer.cancel();
    await c.deleteQueue(key);
    expect(replyCodeOf(await probe(names[2] as string))).toBe(404);
    expect(c.topology.snapshot().queues).toEqual([]);
  },
);
