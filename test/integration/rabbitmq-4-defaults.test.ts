/**
 * warren's defaults for RabbitMQ 4.x, shown on the broker that runs here (3.10): declare() makes a
 * named queue durable and a server-named one exclusive (never the transient non-exclusive kind 4.3
 * refuses), rpcServer({ declare: true }) a durable queue, and the "requeue" policy ends at
 * maxAttempts on a classic queue (which cannot count redeliveries) and on a quorum queue (which
 * counts them in x-delivery-count). docs/rabbitmq-4.md; 4.x's own answers: rabbitmq-4-fake.test.ts.
 */
import { describe, expect, it } from "vitest";
import { ChannelClosedByBroker } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { errorOf } from "../support/async.js";
import { useClients } from "../support/clients.js";
import { waitFor } from "../support/wait.js";

const admin = useAdmin();
const clients = useClients("rmq4-defaults");

/** Declares `queue` on a channel of the admin connection with these flags: the broker's verdict. */
async function redeclare(queue: string, flags: { durable?: boolean; passive?: boolean }): Promise<unknown> {
  const ch = await admin.conn.openChannel();
  const err = await errorOf(ch.queueDeclare({ queue, ...flags }));
  if (ch.isOpen) await ch.close();
  return err;
}

describe("declare() defaults", () => {
  it("a named queue is durable: re-declaring it transient is refused (406), durable is not", async () => {
    const { client } = clients();
    const name = admin.queueName("rmq4-durable");
    await client.declare({ queues: [{ name }] });
    const refused = await redeclare(name, { durable: false });
    expect(refused).toBeInstanceOf(ChannelClosedByBroker);
    expect((refused as ChannelClosedByBroker).replyCode).toBe(406);
    expect((refused as ChannelClosedByBroker).replyText).toMatch(/durable/);
    expect(await redeclare(name, { durable: true })).toBeUndefined();
  });

  it("durable: false is still possible (3.10 permits a transient non-exclusive queue)", async () => {
    const { client } = clients();
    const name = admin.queueName("rmq4-transient");
    await client.declare({ queues: [{ name, durable: false }] });
    expect(await redeclare(name, { durable: false })).toBeUndefined();
  });

  it("a server-named queue is exclusive: another connection is locked out (405)", async () => {
    const { client } = clients();
    const [name] = (await client.declare({ queues: [{}] })).queues;
    expect(name).toMatch(/^amq\.gen-/);
    const locked = await redeclare(name!, { passive: true });
    expect(locked).toBeInstanceOf(ChannelClosedByBroker);
    expect((locked as ChannelClosedByBroker).replyCode).toBe(405);
  });

  it("rpcServer({ declare: true }) declares a durable queue", async () => {
    const { client } = clients();
    const queue = admin.queueName("rmq4-rpc");
    const server = client.rpcServer({ queue, declare: true }, () => "ok");
    await server.ready();
    expect(((await redeclare(queue, { durable: false })) as ChannelClosedByBroker).replyCode).toBe(406);
    await server.cancel();
  });
});

describe('"requeue" ends at maxAttempts on both counting schemes', () => {
  it.each([
    ["a classic queue (redelivered flag only: copies carry the count)", {}],
    ["a quorum queue (x-delivery-count)", { "x-queue-type": "quorum" }],
  ])("%s", async (_, args) => {
    const { client } = clients();
    const queue = admin.queueName("rmq4-requeue");
    const dead = admin.queueName("rmq4-requeue-dead");
    await client.declare({
      queues: [
        { name: dead },
        {
          name: queue,
          arguments: { ...args, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead },
        },
      ],
    });
    const attempts: number[] = [];
    const consumer = client.consume({ queue, maxAttempts: 4 }, (m) => {
      attempts.push(m.attempt);
      throw new Error("fails every time");
    });
    consumer.on("error", () => undefined);
    await consumer.ready();
    admin.pub.basicPublish("", queue, "poison", { messageId: "p1" });
    const deadOnes: string[] = [];
    const ch = await admin.conn.openChannel();
    await ch.basicConsume({ queue: dead, noAck: true }, (m) => {
      deadOnes.push(String(m.properties.messageId));
    });
    await waitFor(() => deadOnes.length === 1, "the message dead-lettered", 10_000);
    expect(attempts).toEqual([1, 2, 3, 4]);
    expect(deadOnes).toEqual(["p1"]);
    expect(consumer.stats).toMatchObject({ failed: 4, deadLettered: 1, inFlight: 0 });
    await ch.close();
  });
});
