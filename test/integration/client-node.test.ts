/**
 * The supervised client against a private RabbitMQ node, for what would disturb the
 * main broker: the broker application stopped and started under the client, and a
 * memory alarm (connection.blocked) while it publishes. One node for the whole file.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Client,
  type ClientOptions,
  Connection,
  ConnectionClosedByBroker,
  connect,
} from "../../src/index.js";
import { uniqueName, withMemoryAlarm } from "../support/broker.js";
import { type ExtraNode, extraNodesSupported, findFreePorts, startExtraNode } from "../support/extra-node.js";
import { Inbox, StateLog } from "../support/state-log.js";
import { waitFor } from "../support/wait.js";

// ─── tests ──────────────────────────────────────────────────────────────────

describe.skipIf(!extraNodesSupported())(
  "the supervised client on a private node",
  { timeout: 60_000 },
  () => {
    let node: ExtraNode;
    const clients: Client[] = [];

    function client(options: ClientOptions = {}): { client: Client; name: string; log: StateLog } {
      const name = uniqueName("warren-client-node");
      const c = connect({ url: node.url, ...options, connectionName: name });
      clients.push(c);
      return { client: c, name, log: new StateLog(c) };
    }

    beforeAll(async () => {
      const [amqpPort, distPort] = await findFreePorts(2);
      node = await startExtraNode({ name: "warren-client", amqpPort: amqpPort!, distPort: distPort! });
      console.info(`${node.nodeName} started in ${node.startMs} ms (AMQP ${node.amqpPort})`);
    }, 120_000);

    afterEach(async () => {
      await Promise.all(clients.splice(0).map((c) => c.close()));
    });

    afterAll(async () => {
      await node?.stop();
    }, 60_000);

    it("survives the broker application stopping and starting: bounded retries, then recovery", async () => {
      const { client: c, log } = client();
      await c.ready();
      const ex = uniqueName("node-ex");
      const q = uniqueName("node-q");
      await c.declare({
        exchanges: [{ name: ex, type: "direct" }],
        queues: [{ name: q }],
        bindings: [{ exchange: ex, queue: q, routingKey: "k" }],
      });
      const inbox = new Inbox();
      const consumer = c.consume({ queue: q }, inbox.handler);
      const clog = new StateLog(consumer);
      await clog.next("consuming", 0);
      await c.publish(ex, "k", "before");
      await inbox.got("before");

      const mark = log.changes.length;
      const cmark = clog.changes.length;
      const stopStarted = performance.now();
      await node.ctl(["stop_app"]);
      const lost = await log.next("recovering", mark);
      expect(lost.error).toBeInstanceOf(ConnectionClosedByBroker);
      expect((lost.error as ConnectionClosedByBroker).replyCode).toBe(320);
      // While it is down the client keeps trying, each attempt refused, further and further apart.
      await waitFor(() => log.count("connecting", mark) >= 6, "six connection attempts", 20_000);
      expect(c.state === "recovering" || c.state === "connecting").toBe(true);
      const startAppAt = performance.now();
      await node.ctl(["start_app"]);
      const startedAt = performance.now();
      const consuming = await clog.next("consuming", cmark, 30_000);
      const running = await log.next("running", mark);

      const attempts = log.count("connecting", mark);
      const outage = running.at - stopStarted;
      console.info(
        `stop_app/start_app: ${attempts} connection attempts in ${(outage / 1000).toFixed(1)} s of outage ` +
          `(start_app took ${((startedAt - startAppAt) / 1000).toFixed(1)} s); ` +
          `recovery from start_app completion to consuming ${(consuming.at - startedAt).toFixed(0)} ms`,
      );
      expect(attempts).toBeGreaterThanOrEqual(6);
      // Backoff bounds the retries: far fewer than one per 100 ms.
      expect(attempts).toBeLessThan(60);
      expect(attempts / (outage / 1000)).toBeLessThan(6);
      // No attempt came too early: the last failed ones waited.
      expect(log.statesSince(mark).at(-1)).toBe("running");
      expect(log.count("failed")).toBe(0);

      // The non-durable queue and exchange went with the application; the client declared them again.
      await c.publish(ex, "k", "after");
      await inbox.got("after");
      expect(inbox.bodies()).toEqual(["before", "after"]);
      expect(consumer.state).toBe("consuming");
      await c.deleteQueue(q);
      await c.deleteExchange(ex);
    });

    it("a memory alarm blocks the client, and the publish made while blocked is confirmed once it clears", async () => {
      const { client: c, log } = client();
      await c.ready();
      const q = uniqueName("node-alarm-q");
      await c.declare({ queues: [{ name: q }] });
      await c.publish("", q, "before"); // the publishing channel is open
      const mark = log.changes.length;
      let confirmed = false;
      let during: Promise<void> | undefined;
      await withMemoryAlarm(
        async () => {
          // RabbitMQ blocks a connection when it publishes during an alarm.
          during = c.publish("", q, "during the alarm").then(() => {
            confirmed = true;
          });
          const blocked = await log.next("blocked", mark);
          expect(blocked.from).toBe("running");
          expect(c.state).toBe("blocked");
          expect(confirmed).toBe(false);
        },
        { ctl: node.ctl },
      );
      await log.next("running", mark);
      await during;
      expect(confirmed).toBe(true);
      expect(log.statesSince(mark)).toEqual(["blocked", "running"]);

      const conn = await Connection.open(node.url);
      try {
        const ch = await conn.openChannel();
        const got: string[] = [];
        for (
          let m = await ch.basicGet({ queue: q, noAck: true });
          m;
          m = await ch.basicGet({ queue: q, noAck: true })
        )
          got.push(m.body.toString());
        expect(got).toEqual(["before", "during the alarm"]);
      } finally {
        await conn.close();
      }
      await c.deleteQueue(q);
    });
  },
);
