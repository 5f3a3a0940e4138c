/**
 * The supervised client against a private RabbitMQ node, for what would disturb the main
 * broker: the broker application stopped and started under the client. (Memory and disk
 * alarms: broker-alarms.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectionClosedByBroker, type Readiness, serveStatus } from "../../src/index.js";
import { uniqueName } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { type ExtraNode, extraNodesSupported, findFreePorts, startExtraNode } from "../support/extra-node.js";
import { Inbox, StateLog } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

// ─── tests ──────────────────────────────────────────────────────────────────

describe.skipIf(!extraNodesSupported())(
  "the supervised client on a private node",
  { timeout: 60_000 },
  () => {
    let node: ExtraNode;
    const clients = useClients("warren-client-node");

    function client() {
      const { client: c, name } = clients({ url: node.url });
      return { client: c, name, log: new StateLog(c) };
    }

    beforeAll(async () => {
      const [amqpPort, distPort] = await findFreePorts(2);
      node = await startExtraNode({ name: "warren-client", amqpPort: amqpPort!, distPort: distPort! });
      console.info(`${node.nodeName} started in ${node.startMs} ms (AMQP ${node.amqpPort})`);
    }, 120_000);

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
      expect(["recovering", "connecting"]).toContain(c.state);
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

    it("the status server's probes: /readyz 503 while the broker application is stopped and 200 again after; /healthz 200 throughout", async () => {
      const { client: c, log } = client();
      await c.ready();
      const q = uniqueName("node-probe-q");
      await c.declare({ queues: [{ name: q }] });
      const consumer = c.consume({ queue: q }, () => undefined);
      await consumer.ready();
      const status = await serveStatus(c, { port: 0 });
      try {
        const probe = async (path: string) => {
          const res = await fetch(`${status.url}${path}`);
          return { status: res.status, body: (await res.json()) as Readiness };
        };
        expect((await probe("/readyz")).status).toBe(200);
        const mark = log.changes.length;
        await node.ctl(["stop_app"]);
        await log.next("recovering", mark);
        const down = await probe("/readyz");
        expect(down.status).toBe(503);
        expect(down.body.ready).toBe(false);
        expect(down.body.reasons.length).toBeGreaterThan(0);
        expect((await probe("/healthz")).status).toBe(200);
        await node.ctl(["start_app"]);
        await log.next("running", mark, 30_000);
        await consumer.ready();
        // Ready once the client runs and its consumer is subscribed again (polled: the probe's answer
        // follows the consumer's own resubscription).
        await until(
          async () => (await probe("/readyz")).status === 200,
          "/readyz 200 after start_app",
          30_000,
        );
        expect((await probe("/healthz")).status).toBe(200);
      } finally {
        await status.close();
        await c.deleteQueue(q).catch(() => undefined);
      }
    });
  },
);
