/**
 * `connectWaitTimeout`: how long the supervised client's operations on its admin channel
 * (declare, deleteQueue, deleteExchange, unbind) wait for a connection. Against a closed port
 * they reject with NotConnectedError once it ran out, not before, while the client keeps trying;
 * publishes are bounded by the publisher's publishTimeout instead (TimeoutError). A broker that
 * becomes reachable within the wait (a Toxiproxy proxy in front of RabbitMQ, disabled and then
 * enabled) lets the waiting declare succeed.
 */
import { Toxiproxy, type Proxy as TpProxy } from "toxiproxy-node-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startToxiproxy, type ToxiproxyServer } from "../../chaos/toxiproxy/server.js";
import { NotConnectedError, TimeoutError } from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { errorOf, within } from "../support/async.js";
import { AMQP_URL, amqpUrlWith, uniqueName } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { closedPort } from "../support/ports.js";
import { StateLog } from "../support/state-log.js";

/**
 * Timers are scheduled from the event loop's cached clock, which can be a few ms behind
 * performance.now() when the operation starts: the lower bounds allow that much, no more.
 */
const CLOCK_SLACK_MS = 20;
/** A loaded 2-core machine may fire a timer late by this much (the upper bounds only). */
const LATE_MS = 3000;

const BROKER = new URL(AMQP_URL);
const UPSTREAM = `${BROKER.hostname}:${BROKER.port || "5672"}`;

const client = useClients("warren-connect-wait");
const admin = useAdmin();

/** The client's URL with its host and port replaced by 127.0.0.1:`port`. */
function urlAt(port: number): string {
  const url = new URL(amqpUrlWith({}));
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return url.toString();
}

describe("connectWaitTimeout with no broker reachable", () => {
  it("declare, deleteQueue, deleteExchange and unbind reject with NotConnectedError after it, not before; the client keeps trying", async () => {
    const wait = 2000;
    const port = await closedPort();
    const { client: c } = client({ url: urlAt(port), connectWaitTimeout: wait });
    const log = new StateLog(c);

    const started = performance.now();
    const settledAt: number[] = [];
    const ops = [
      c.declare({ queues: [{ name: uniqueName("never-declared") }] }),
      c.deleteQueue(uniqueName("never-deleted")),
      c.deleteExchange(uniqueName("never-deleted")),
      c.unbind({ queue: uniqueName("q"), exchange: uniqueName("x"), routingKey: "k" }),
    ].map((p) =>
      errorOf(
        p.finally(() => {
          settledAt.push(performance.now() - started);
        }),
      ),
    );
    const errors = await within(Promise.all(ops), wait + LATE_MS + 5000, "the waiting operations");

    for (const err of errors) {
      expect(err).toBeInstanceOf(NotConnectedError);
      expect((err as NotConnectedError).code).toBe("NOT_CONNECTED");
      expect((err as NotConnectedError).recoverable).toBe(true);
      expect((err as Error).message).toContain(`within ${wait} ms`);
    }
    expect(settledAt).toHaveLength(4);
    for (const t of settledAt) {
      expect(t).toBeGreaterThanOrEqual(wait - CLOCK_SLACK_MS);
      expect(t).toBeLessThan(wait + LATE_MS);
    }
    // The wait ran out, the client did not: it tried more than once and is still trying.
    expect(log.count("recovering")).toBeGreaterThanOrEqual(1);
    expect(c.hostAttempts()[0]?.attempts).toBeGreaterThanOrEqual(2);
    expect(["connecting", "handshaking", "recovering", "degraded"]).toContain(c.state);
    expect(log.states).not.toContain("failed");
  });

  it("publish() is bounded by the publisher's publishTimeout (TimeoutError), not by connectWaitTimeout", async () => {
    const wait = 500;
    const publishTimeout = 2500;
    const port = await closedPort();
    const { client: c } = client({ url: urlAt(port), connectWaitTimeout: wait });
    const publisher = c.publisher({ publishTimeout });

    const started = performance.now();
    const err = await within(
      errorOf(publisher.publish({ exchange: "", routingKey: "nowhere", body: "waiting" })),
      publishTimeout + LATE_MS + 5000,
      "the waiting publish",
    );
    const elapsed = performance.now() - started;

    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).code).toBe("TIMEOUT");
    expect((err as Error).message).toContain(`not sent within ${publishTimeout} ms`);
    // The publisher sweeps its waiting messages once a second: up to 1 s after the bound.
    expect(elapsed).toBeGreaterThanOrEqual(publishTimeout - CLOCK_SLACK_MS);
    expect(elapsed).toBeLessThan(publishTimeout + 1000 + LATE_MS);
  });
});

describe("connectWaitTimeout while the broker becomes reachable", () => {
  let server: ToxiproxyServer;
  let toxiproxy: Toxiproxy;

  beforeAll(async () => {
    server = await startToxiproxy({ host: "127.0.0.1", port: 0 });
    toxiproxy = new Toxiproxy(server.url);
  });

  afterAll(async () => {
    await server.close();
  });

  it("a declare waiting for the connection succeeds once the proxy to RabbitMQ is enabled within the wait", async () => {
    const wait = 20_000;
    // Bound to a free port first, then disabled: the port stays ours but nothing listens there.
    const created: TpProxy = await toxiproxy.createProxy({
      name: uniqueName("connect-wait"),
      listen: "127.0.0.1:0",
      upstream: UPSTREAM,
    });
    const listen = created.listen;
    const proxy = await created.update({ enabled: false, listen, upstream: UPSTREAM });
    expect(proxy.enabled).toBe(false);
    const port = Number(listen.slice(listen.lastIndexOf(":") + 1));

    const queue = admin.queueName("warren-connect-wait");
    const { client: c } = client({ url: urlAt(port), connectWaitTimeout: wait });
    const log = new StateLog(c);

    const started = performance.now();
    let declaredAt: number | undefined;
    const declared = c.declare({ queues: [{ name: queue }] }).then((r) => {
      declaredAt = performance.now() - started;
      return r;
    });
    // At least one refused attempt: the declare is now waiting for a connection.
    await log.next("recovering", 0, 10_000);
    expect(declaredAt).toBeUndefined();
    await proxy.update({ enabled: true, listen, upstream: UPSTREAM });
    const enabledAt = performance.now() - started;

    const result = await within(declared, wait + LATE_MS, "the waiting declare");
    expect(result.queues).toEqual([queue]);
    expect(declaredAt).toBeGreaterThan(enabledAt);
    expect(declaredAt).toBeLessThan(wait);
    expect(c.state).toBe("running");
    // It is on the broker.
    const ok = await admin.pub.queueDeclare({ queue, passive: true });
    expect(ok.queue).toBe(queue);
  });
});
