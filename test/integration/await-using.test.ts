/**
 * `await using` against the real broker: at the end of its block each object is closed or
 * cancelled (Symbol.asyncDispose), the inner ones first, while the client lives on; the client at
 * the end of its own block.
 */
import { describe, expect, it } from "vitest";
import { type Client, ClientClosedError, connect } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { rejection } from "../support/async.js";
import { AMQP_URL, uniqueName } from "../support/broker.js";
import { waitFor } from "../support/wait.js";

const admin = useAdmin();

/** Consumers the broker counts on `queue`. */
async function consumersOn(queue: string): Promise<number> {
  return (await admin.pub.queueDeclare({ queue, passive: true })).consumerCount;
}

describe("await using", () => {
  it("disposes the publisher, consumer, RPC server and client and the message stream at the end of the block", async () => {
    const queue = admin.queueName("using");
    const streamed = admin.queueName("using-stream");
    const rpcQueue = admin.queueName("using-rpc");
    let outer: Client | undefined;
    {
      await using client = connect({ url: AMQP_URL, connectionName: uniqueName("using") });
      outer = client;
      await client.declare({ queues: [{ name: queue }, { name: streamed }, { name: rpcQueue }] });
      const handled: string[] = [];
      const inner = await (async () => {
        await using publisher = client.publisher();
        await using consumer = client.consume({ queue }, (m) => {
          handled.push(m.body.toString());
        });
        await using server = client.rpcServer({ queue: rpcQueue }, (m) => `pong ${m.body}`);
        await using rpc = client.rpcClient();
        await using stream = client.messages({ queue: streamed });
        await Promise.all([consumer.ready(), server.ready()]);

        await publisher.publish({ exchange: "", routingKey: queue, body: "one" });
        await waitFor(() => handled.length === 1, "the consumer's delivery");
        await publisher.publish({ exchange: "", routingKey: streamed, body: "two" });
        const reply = await rpc.call({ routingKey: rpcQueue, body: "ping", timeoutMs: 10_000 });
        expect(reply.body.toString()).toBe("pong ping");
        const next = await stream.next();
        expect(next.done ? undefined : next.value.body.toString()).toBe("two");
        if (!next.done) next.value.ack();
        expect(await consumersOn(streamed)).toBe(1);
        return { publisher, consumer, rpc, stream };
      })();

      // The inner block's objects are gone; the client is not.
      expect(client.state).toBe("running");
      expect(handled).toEqual(["one"]);
      expect(inner.consumer.state).toBe("cancelled");
      expect(await consumersOn(queue)).toBe(0);
      expect(await consumersOn(rpcQueue)).toBe(0);
      expect(await consumersOn(streamed)).toBe(0);
      expect(await inner.stream.next()).toEqual({ value: undefined, done: true });
      const refused = await rejection(
        inner.publisher.publish({ exchange: "", routingKey: queue, body: "late" }),
      );
      expect(refused).toBeInstanceOf(ClientClosedError);
      expect((refused as Error).message).toMatch(/publisher is closed/);
      const uncalled = await rejection(inner.rpc.call({ routingKey: rpcQueue, body: "late" }));
      expect(uncalled).toBeInstanceOf(ClientClosedError);
      expect((uncalled as Error).message).toMatch(/RPC client is closed/);
    }
    expect(outer?.state).toBe("closed");
  });

  it("disposes at the end of a block left by an exception too", async () => {
    const queue = admin.queueName("using-throw");
    let client: Client | undefined;
    const thrown = await rejection(
      (async () => {
        await using c = connect({ url: AMQP_URL, connectionName: uniqueName("using-throw") });
        client = c;
        await c.declare({ queues: [{ name: queue }] });
        await using consumer = c.consume({ queue }, () => undefined);
        await consumer.ready();
        throw new Error("the block failed");
      })(),
    );
    expect((thrown as Error).message).toBe("the block failed");
    expect(client?.state).toBe("closed");
    expect(await consumersOn(queue)).toBe(0);
  });
});
