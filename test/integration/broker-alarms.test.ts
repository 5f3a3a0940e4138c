/**
 * Resource alarms (connection.blocked / connection.unblocked) on one private RabbitMQ node started
 * for the whole file, so that the main broker never blocks: a memory alarm
 * (set_vm_memory_high_watermark 0) and a free-disk-space alarm (set_disk_free_limit above the free
 * space), each raised and cleared with rabbitmqctl on that node. Every test clears its alarm in a
 * finally (withMemoryAlarm / withDiskAlarm, which wait until the node reports it cleared).
 *
 * RabbitMQ blocks a connection once it publishes during an alarm, so each test publishes to get
 * blocked. Covered: the low-level connection's events, the supervised client's `blocked` state,
 * publishes made while blocked (they resolve only after the alarm cleared; a short publishTimeout
 * gives up), the blocked metrics, and a steady publish/consume stream through an alarm.
 */
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { steadyPublishing } from "../../chaos/suite/harness.js";
import { type Client, Connection, type Consumer, TimeoutError } from "../../src/index.js";
import { errorOf, rejection, sleep, within } from "../support/async.js";
import { uniqueName, withMemoryAlarm } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import {
  type ExtraNode,
  extraNodesSupported,
  findFreePorts,
  nodeAlarms,
  startExtraNode,
  withDiskAlarm,
} from "../support/extra-node.js";
import { drainQueue } from "../support/queue.js";
import { type Change, StateLog } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

/** The value of the series of `name` with exactly `labels`; undefined when there is none. */
async function metric(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number | undefined> {
  const m = registry.getSingleMetric(name);
  if (!m) throw new Error(`${name} is not registered`);
  const hit = (await m.get()).values.find(
    (v) =>
      Object.keys(v.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, x]) => String((v.labels as Record<string, unknown>)[k]) === x),
  );
  return hit?.value;
}

describe.skipIf(!extraNodesSupported())(
  "broker alarms on a private node (needs root and Debian's rabbitmq-server)",
  // Hang guards, not limits: each alarm is raised and cleared with rabbitmqctl (1–3 s a call,
  // ten times that on a loaded two-core machine).
  { timeout: 240_000 },
  () => {
    let node: ExtraNode;
    const client = useClients("warren-alarm");

    beforeAll(async () => {
      const [amqpPort, distPort] = await findFreePorts(2);
      node = await startExtraNode({ name: "warren-alarms", amqpPort: amqpPort!, distPort: distPort! });
      console.info(`${node.nodeName} started in ${node.startMs} ms (AMQP ${node.amqpPort})`);
    }, 300_000);

    afterAll(async () => {
      await node?.stop();
    }, 120_000);

    const onNode = (options: Parameters<typeof client>[0] = {}) => client({ url: node.url, ...options });

    const nodeStatus = async () =>
      JSON.parse(await node.ctl(["status", "--formatter", "json"])) as Record<string, unknown>;

    /** Everything in `queue` on the node, in order; the queue is deleted afterwards. */
    async function takeAll(queue: string): Promise<string[]> {
      const conn = await Connection.open(node.url);
      try {
        const bodies = (await drainQueue(conn, queue)).map((m) => m.body.toString());
        const ch = await conn.openChannel();
        await ch.queueDelete({ queue });
        await ch.close();
        return bodies;
      } finally {
        await conn.close();
      }
    }

    /** Publishes through `publish` and records, when it resolves, the client's state and log length. */
    function settleRecorder(c: Client, log: StateLog) {
      const settled: { body: string; state: string; logIndex: number }[] = [];
      const track = (body: string, publish: (body: string) => Promise<void>) =>
        publish(body).then(() => {
          settled.push({ body, state: c.state, logIndex: log.changes.length });
        });
      return { settled, track };
    }

    // ─── memory alarm ───────────────────────────────────────────────────────

    it("connection.blocked: a memory alarm blocks the connection and clearing it unblocks", async () => {
      const conn = await Connection.open(node.url);
      try {
        const events: string[] = [];
        conn.on("blocked", (reason) => events.push(`blocked:${reason}`));
        conn.on("unblocked", () => events.push("unblocked"));
        const ch = await conn.openChannel();
        await ch.confirmSelect();
        const { queue } = await ch.queueDeclare({ exclusive: true });
        let confirmedWhileBlocked: Promise<void> | undefined;
        await withMemoryAlarm(
          async () => {
            // RabbitMQ blocks a connection when it publishes during an alarm.
            confirmedWhileBlocked = ch.publish("", queue, "during the alarm").then(() => {
              events.push("confirmed");
            });
            await waitFor(() => events.length > 0, "connection.blocked", 60_000);
            expect(conn.isBlocked).toBe(true);
            expect(conn.blockedReason).toMatch(/memory/i);
          },
          { ctl: node.ctl },
        );
        await waitFor(() => events.includes("unblocked"), "connection.unblocked", 60_000);
        expect(conn.isBlocked).toBe(false);
        expect(conn.blockedReason).toBeUndefined();
        // The publish held back by the alarm goes through once it clears: nothing lost.
        await within(confirmedWhileBlocked!, 20_000, "the confirm after the alarm");
        expect(events).toEqual(["blocked:low on memory", "unblocked", "confirmed"]);
        expect((await ch.basicGet({ queue, noAck: true }))?.body.toString()).toBe("during the alarm");
      } finally {
        await conn.close();
      }
    });

    it("the alarm helper restores the watermark even when its callback throws", async () => {
      const boom = new Error("inside");
      const err = await rejection(
        withMemoryAlarm(
          () => {
            throw boom;
          },
          { ctl: node.ctl },
        ),
      );
      expect(err).toBe(boom);
      const status = await nodeStatus();
      expect(status["alarms"]).toEqual([]);
      expect(status["vm_memory_high_watermark_setting"]).toEqual({ relative: 0.4 });
    });

    it("a memory alarm blocks the client, and the publish made while blocked is confirmed once it clears", async () => {
      const { client: c } = onNode();
      const log = new StateLog(c);
      await c.ready();
      const q = uniqueName("alarm-client-q");
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
          const blocked = await log.next("blocked", mark, 60_000);
          expect(blocked.from).toBe("running");
          expect(c.state).toBe("blocked");
          expect(confirmed).toBe(false);
        },
        { ctl: node.ctl },
      );
      await log.next("running", mark, 60_000);
      await within(during!, 20_000, "the publish made during the alarm");
      expect(confirmed).toBe(true);
      expect(log.statesSince(mark)).toEqual(["blocked", "running"]);
      expect(await takeAll(q)).toEqual(["before", "during the alarm"]);
    });

    it("a publish made while blocked resolves only after the alarm cleared; a short publishTimeout gives up", async () => {
      const { client: c } = onNode();
      const log = new StateLog(c);
      await c.ready();
      const q = uniqueName("alarm-publisher-q");
      await c.declare({ queues: [{ name: q }] });
      const pub = c.publisher();
      await pub.publish({ exchange: "", routingKey: q, body: "before" });
      const impatient = c.publisher({ publishTimeout: 500 });
      await impatient.publish({ exchange: "", routingKey: q, body: "before (impatient)" });

      const { settled, track } = settleRecorder(c, log);
      const send = (body: string) => pub.publish({ exchange: "", routingKey: q, body });
      const mark = log.changes.length;
      let during: Promise<void> | undefined;
      let whileBlocked: Promise<void> | undefined;
      await withMemoryAlarm(
        async () => {
          // RabbitMQ blocks a connection when it publishes during an alarm.
          during = track("during", send);
          await log.next("blocked", mark, 60_000);
          whileBlocked = track("while blocked", send);
          expect(pub.pending).toBe(2);
          // A publisher with a short publishTimeout gives up while blocked.
          const t0 = performance.now();
          const err = await errorOf(impatient.publish({ exchange: "", routingKey: q, body: "timed out" }));
          expect(err).toBeInstanceOf(TimeoutError);
          expect((err as TimeoutError).message).toMatch(/blocked/);
          expect(performance.now() - t0).toBeLessThan(2000);
          expect(c.state).toBe("blocked");
          expect(settled).toEqual([]);
        },
        { ctl: node.ctl },
      );
      await within(Promise.all([during, whileBlocked]), 20_000, "the publishes after the alarm");
      const blockedAt = log.changes.findIndex((l, i) => i >= mark && l.to === "blocked");
      const unblockedAt = log.changes.findIndex((l, i) => i > blockedAt && l.to === "running");
      expect(blockedAt).toBeGreaterThanOrEqual(mark);
      expect(unblockedAt).toBeGreaterThan(blockedAt);
      // Both resolved after the client became running again.
      for (const s of settled) expect(s.logIndex).toBeGreaterThan(unblockedAt);
      expect(settled.map((s) => s.body).sort()).toEqual(["during", "while blocked"]);
      expect(await takeAll(q)).toEqual(["before", "before (impatient)", "during", "while blocked"]);
    });

    it("separate connections: the alarm blocks the publish connection only; a consumer keeps draining and acking what was queued; publishers resume after; nothing lost", async () => {
      const { client: c, name } = onNode();
      const log = new StateLog(c);
      await c.ready();
      const q = uniqueName("alarm-split-q");
      await c.declare({ queues: [{ name: q }] });
      const pub = c.publisher();
      const N = 200;
      const queued = Array.from({ length: N }, (_, i) => `queued-${i}`);
      await Promise.all(queued.map((body) => pub.publish({ exchange: "", routingKey: q, body })));
      const mark = log.changes.length;
      const received: string[] = [];
      let consumer: Consumer | undefined;
      const late = Array.from({ length: 10 }, (_, i) => `during-${i}`);
      let confirmed = 0;
      const during: Promise<void>[] = [];
      const send = (body: string) =>
        during.push(pub.publish({ exchange: "", routingKey: q, body }).then(() => void confirmed++));
      await withMemoryAlarm(
        async () => {
          // RabbitMQ blocks a connection when it publishes during an alarm.
          send(late[0]!);
          const blocked = await log.next("blocked", mark, 60_000);
          expect(blocked).toMatchObject({ role: "publish", connection: `${name}:publish`, from: "running" });
          expect(c.state).toBe("blocked");
          const byRole = Object.fromEntries(c.connections.map((x) => [x.role, x.state]));
          expect(byRole).toEqual({ consume: "running", publish: "blocked" });
          // A consumer made now, on the consume connection: with prefetch 10, all 200 arrive only if
          // its acks reach the broker, which a blocked connection would not read.
          consumer = c.consume({ queue: q, prefetch: 10 }, (m) => {
            received.push(m.body.toString());
          });
          await waitFor(() => consumer!.stats.acked === N, `${N} queued messages consumed and acked`, 60_000);
          for (const body of late.slice(1)) send(body);
          expect(confirmed).toBe(0); // publishers wait while their connection is blocked
          expect(c.connections.find((x) => x.role === "publish")?.state).toBe("blocked");
        },
        { ctl: node.ctl },
      );
      // Cleared: publishers resume, and the consumer gets what they held.
      await within(Promise.all(during), 30_000, "the publishes made during the alarm");
      expect(confirmed).toBe(late.length);
      await waitFor(() => received.length === N + late.length, "every message consumed", 30_000);
      expect([...received].sort()).toEqual([...queued, ...late].sort());
      expect(consumer!.stats.acked).toBe(N + late.length);
      // Only the publish connection was ever blocked; the consume one never left running.
      const since = log.changes.slice(mark) as (Change & { role?: string })[];
      expect(since.map((x) => `${x.role}:${x.to}`)).toEqual(["publish:blocked", "publish:running"]);
      await consumer!.cancel();
      await c.deleteQueue(q);
    });

    it("gauges the blocked state and counts the time blocked (memory alarm)", async () => {
      const registry = new Registry();
      const { client: c, name: conn } = onNode({ metrics: { registry } });
      const log = new StateLog(c);
      await c.ready();
      const queue = uniqueName("alarm-metrics-q");
      await c.declare({ queues: [{ name: queue, exclusive: true }] });
      const mark = log.changes.length;
      let during: Promise<void> | undefined;
      let whileBlocked = 0;
      await withMemoryAlarm(
        async () => {
          // RabbitMQ blocks a connection when it publishes during an alarm.
          during = c.publish("", queue, "during the alarm");
          await log.next("blocked", mark, 60_000);
          expect(await metric(registry, "warren_blocked", { connection: conn, role: "publish" })).toBe(1);
          expect(
            await metric(registry, "warren_connection_state", {
              connection: conn,
              role: "publish",
              state: "blocked",
            }),
          ).toBe(1);
          expect(await metric(registry, "warren_connection_up", { connection: conn, role: "publish" })).toBe(
            1,
          );
          // Only the publishing connection is blocked: the consume one (ready(), declare()) is not.
          expect(await metric(registry, "warren_blocked", { connection: conn, role: "consume" })).toBe(0);
          expect(
            await metric(registry, "warren_connection_state", {
              connection: conn,
              role: "consume",
              state: "running",
            }),
          ).toBe(1);
          // Blocked time is counted while it lasts, not only when it ends.
          whileBlocked =
            (await metric(registry, "warren_blocked_seconds_total", { connection: conn, role: "publish" })) ??
            0;
          expect(whileBlocked).toBeGreaterThan(0);
        },
        { ctl: node.ctl },
      );
      await within(during!, 20_000, "the publish made during the alarm");
      await log.next("running", mark, 60_000);
      expect(await metric(registry, "warren_blocked", { connection: conn, role: "publish" })).toBe(0);
      expect(
        await metric(registry, "warren_connection_state", {
          connection: conn,
          role: "publish",
          state: "blocked",
        }),
      ).toBe(0);
      expect(
        await metric(registry, "warren_connection_state", {
          connection: conn,
          role: "publish",
          state: "running",
        }),
      ).toBe(1);
      expect(
        await metric(registry, "warren_blocked_seconds_total", { connection: conn, role: "publish" }),
      ).toBeGreaterThan(whileBlocked);
    });

    it("a steady publish/consume stream through a memory alarm: blocked, then running; nothing lost", async () => {
      // As the chaos suite's scenarios: 200 confirmed, persistent messages a second into a durable
      // queue with a consumer, 1 s before the alarm, 2 s of alarm, 1.5 s after. Heartbeats of 1 s:
      // a blocked connection must not be taken for a dead one.
      const { client: c } = onNode({ heartbeat: 1 });
      const log = new StateLog(c);
      await c.ready();
      const queue = uniqueName("alarm-stream-q");
      await c.declare({ queues: [{ name: queue, durable: true }] });
      const consumed = new Set<string>();
      let deliveries = 0;
      const consumer = c.consume({ queue, prefetch: 100 }, (m) => {
        const id = m.properties.messageId;
        if (id === undefined) return;
        deliveries += 1;
        consumed.add(id);
      });
      const clog = new StateLog(consumer);
      await clog.next("consuming", 0);
      const stream = steadyPublishing(c.publisher({ maxInFlight: 200 }), queue, uniqueName("s"), 200);
      let consumedAtClear = 0;
      try {
        await sleep(1000); // the stream flows before the alarm
        await withMemoryAlarm(
          async () => {
            await log.next("blocked", 0, 60_000);
            await sleep(2000); // the alarm holds for a while
          },
          { ctl: node.ctl },
        );
        consumedAtClear = consumed.size;
        await log.next(
          "running",
          log.changes.findIndex((x) => x.to === "blocked"),
          20_000,
        );
        await sleep(1500); // the stream goes on after the alarm
      } finally {
        stream.stop();
      }
      await until(async () => stream.pending.size === 0, "every publish settled", 90_000);
      await waitFor(
        () => [...stream.confirmed].every((id) => consumed.has(id)),
        "every confirmed message consumed",
        30_000,
      );
      console.info(
        `memory alarm under a steady stream: published ${stream.published}, confirmed ${stream.confirmed.size}, ` +
          `consumed ${consumed.size} (${deliveries - consumed.size} duplicates), states ${log.states.join(",")}`,
      );
      expect(log.count("blocked")).toBe(1);
      expect(log.states).not.toContain("recovering");
      expect(stream.rejected).toBe(0);
      expect(stream.confirmed.size).toBe(stream.published);
      expect([...stream.confirmed].filter((id) => !consumed.has(id))).toEqual([]);
      expect(consumed.size).toBeGreaterThan(consumedAtClear); // the stream flowed again after the alarm
      expect(c.state).toBe("running");
      expect(consumer.state).toBe("consuming");
      await c.deleteQueue(queue);
    });

    // ─── disk alarm ─────────────────────────────────────────────────────────

    it("a disk alarm blocks the client (reason: low on disk); a publish made while blocked resolves only after it cleared; the metrics show it", async () => {
      const registry = new Registry();
      const { client: c, name } = onNode({ metrics: { registry } });
      const log = new StateLog(c);
      await c.ready();
      const q = uniqueName("alarm-disk-q");
      await c.declare({ queues: [{ name: q }] });
      const pub = c.publisher();
      await pub.publish({ exchange: "", routingKey: q, body: "before" });
      // The publishers' connection is the one blocked; the consume one (declare) hears nothing.
      const conn = c.connections.find((x) => x.role === "publish")!.connection!;
      const reasons: string[] = [];
      conn.on("blocked", (reason) => reasons.push(`blocked:${reason}`));
      conn.on("unblocked", () => reasons.push("unblocked"));
      const consumeReasons: string[] = [];
      c.connection!.on("blocked", (reason) => consumeReasons.push(reason));

      const { settled, track } = settleRecorder(c, log);
      const send = (body: string) => pub.publish({ exchange: "", routingKey: q, body });
      const labels = { connection: name, role: "publish" };
      const mark = log.changes.length;
      let during: Promise<void> | undefined;
      let whileBlocked: Promise<void> | undefined;
      let secondsWhileBlocked = 0;
      await withDiskAlarm(
        async () => {
          // RabbitMQ blocks a connection when it publishes during an alarm.
          during = track("during", send);
          const blocked = await log.next("blocked", mark, 60_000);
          expect(blocked.from).toBe("running");
          expect(reasons).toEqual(["blocked:low on disk"]);
          expect(conn.blockedReason).toMatch(/disk/);
          expect(consumeReasons).toEqual([]);
          whileBlocked = track("while blocked", send);
          expect(await metric(registry, "warren_blocked", labels)).toBe(1);
          expect(await metric(registry, "warren_connection_state", { ...labels, state: "blocked" })).toBe(1);
          expect(await metric(registry, "warren_connection_state", { ...labels, state: "running" })).toBe(0);
          expect(await metric(registry, "warren_connection_up", labels)).toBe(1);
          await sleep(500); // a window in which nothing may settle
          expect(settled).toEqual([]);
          expect(pub.pending).toBe(2);
          expect(c.state).toBe("blocked");
          secondsWhileBlocked = (await metric(registry, "warren_blocked_seconds_total", labels)) ?? 0;
          expect(secondsWhileBlocked).toBeGreaterThanOrEqual(0.4);
        },
        { ctl: node.ctl },
      );
      const running = await log.next("running", mark, 60_000);
      const runningAt = log.changes.indexOf(running);
      await within(Promise.all([during, whileBlocked]), 20_000, "the publishes after the disk alarm");
      // Both resolved after the client became running again.
      expect(settled.map((s) => s.body).sort()).toEqual(["during", "while blocked"]);
      for (const s of settled) expect(s.logIndex).toBeGreaterThan(runningAt);
      expect(log.statesSince(mark)).toEqual(["blocked", "running"]);
      expect(reasons).toEqual(["blocked:low on disk", "unblocked"]);
      expect(conn.isBlocked).toBe(false);
      expect(c.connections.find((x) => x.role === "publish")?.connection).toBe(conn); // blocked is not a lost connection
      expect(await metric(registry, "warren_blocked", labels)).toBe(0);
      expect(await metric(registry, "warren_connection_state", { ...labels, state: "blocked" })).toBe(0);
      expect(await metric(registry, "warren_connection_state", { ...labels, state: "running" })).toBe(1);
      expect(await metric(registry, "warren_blocked_seconds_total", labels)).toBeGreaterThan(
        secondsWhileBlocked,
      );
      expect(await metric(registry, "warren_reconnects_total", labels)).toBe(0);
      expect(await takeAll(q)).toEqual(["before", "during", "while blocked"]);
    });

    it("the disk alarm helper restores the limit even when its callback throws", async () => {
      const before = (await nodeStatus())["disk_free_limit"];
      expect(before).toBeGreaterThan(0);
      const boom = new Error("inside");
      const err = await rejection(
        withDiskAlarm(
          async () => {
            expect(await nodeAlarms(node.ctl)).toEqual(["disk"]);
            throw boom;
          },
          { ctl: node.ctl },
        ),
      );
      expect(err).toBe(boom);
      const after = await nodeStatus();
      expect(after["alarms"]).toEqual([]);
      expect(after["disk_free_limit"]).toBe(before);
    });
  },
);
