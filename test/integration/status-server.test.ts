/**
 * serveStatus() against the real broker: /status.json read against the client's own values;
 * /readyz while a consumer's queue is missing, while the client cannot connect, and once it runs;
 * /events telling a killed connection's transitions in order and the rates of a burst coalesced;
 * readers that stop reading or vanish; the token; no credentials in any body; read-only; nothing
 * recorded when not served.
 */
import { type ClientRequest, type IncomingMessage, request } from "node:http";
import { Script } from "node:vm";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import {
  type Client,
  type ClientOptions,
  type Health,
  type Rates,
  type Readiness,
  type StatusServer,
  type StatusServerOptions,
  type StatusSnapshot,
  serveStatus,
  type Transition,
} from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import {
  addUser,
  amqpUrlWith,
  canUseRabbitmqctl,
  closeConnectionsNamed,
  deleteUser,
  uniqueName,
} from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { closedPort } from "../support/ports.js";
import { StateLog } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

const usable = await canUseRabbitmqctl();
const NEEDS_CTL = "(needs rabbitmqctl: kills the connection by name)";

const admin = useAdmin();
const clients = useClients("warren-status", { reconnect: { initial: 50, max: 200 } });
const servers: StatusServer[] = [];
const readers: EventReader[] = [];
afterEach(async () => {
  for (const r of readers.splice(0)) r.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(client: Client, options: StatusServerOptions = {}): Promise<StatusServer> {
  const s = await serveStatus(client, { port: 0, ...options });
  servers.push(s);
  return s;
}

async function getJson<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T }> {
  const res = await fetch(url, init);
  return { status: res.status, body: (await res.json()) as T };
}

/** One Server-Sent Event as received. */
interface Received {
  event: string;
  data: unknown;
  at: number;
}

/** A reader of /events over node:http: parses the stream, keeps the raw text, can stop reading. */
class EventReader {
  readonly events: Received[] = [];
  text = "";
  status = 0;
  private readonly req: ClientRequest;
  private res: IncomingMessage | undefined;
  private buffer = "";

  private constructor(url: string, headers: Record<string, string>, opened: (r: EventReader) => void) {
    this.req = request(url, { headers }, (res) => {
      this.res = res;
      this.status = res.statusCode ?? 0;
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => this.take(chunk));
      opened(this);
    });
    this.req.on("error", () => undefined);
    this.req.end();
  }

  /** Connects and resolves once the response's headers arrived (the server has added it). */
  static open(url: string, headers: Record<string, string> = {}): Promise<EventReader> {
    return new Promise((resolve) => {
      const r = new EventReader(url, headers, resolve);
      readers.push(r);
    });
  }

  of<T>(event: string): T[] {
    return this.events.filter((e) => e.event === event).map((e) => e.data as T);
  }

  /** Stops reading: the socket's buffers fill up. */
  pause(): void {
    this.res?.pause();
    this.res?.socket.pause();
  }

  close(): void {
    this.req.destroy();
  }

  /** Calls `fn` once the stream's connection closed. */
  onEnd(fn: () => void): void {
    this.req.on("close", fn);
  }

  private take(chunk: string): void {
    this.text += chunk;
    this.buffer += chunk;
    for (let end = this.buffer.indexOf("\n\n"); end >= 0; end = this.buffer.indexOf("\n\n")) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let event = "message";
      let data: string | undefined;
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data = line.slice(6);
      }
      if (data !== undefined) this.events.push({ event, data: JSON.parse(data), at: performance.now() });
    }
  }
}

function running(options: ClientOptions = {}): { client: Client; name: string } {
  return clients(options);
}

// ─── /status.json ───────────────────────────────────────────────────────────

describe("/status.json", () => {
  it("shows the client, its consumers, publishers and RPC as the client itself reports them", async () => {
    const { client, name } = running();
    await client.ready();
    const queue = admin.queueName("status-snap");
    await client.declare({ queues: [{ name: queue }] });
    let handled = 0;
    const consumer = client.consume({ queue, prefetch: 20, concurrency: 4 }, () => {
      handled++;
    });
    await consumer.ready();
    const pub = client.publisher();
    await Promise.all(
      Array.from({ length: 25 }, (_, i) => pub.publish({ exchange: "", routingKey: queue, body: `m${i}` })),
    );
    await waitFor(() => handled === 25 && consumer.stats.acked === 25, "25 messages acked");
    const rpcQueue = admin.queueName("status-rpc");
    const rpcServer = client.rpcServer({ queue: rpcQueue, declare: true }, (req) => req.body.toString());
    await rpcServer.ready();
    const rpc = client.rpcClient();
    await rpc.call({ routingKey: rpcQueue, body: "ping" });
    const status = await serve(client);

    const { status: code, body } = await getJson<StatusSnapshot>(`${status.url}/status.json`);
    expect(code).toBe(200);
    expect(body.client).toEqual({
      state: client.state,
      degraded: client.degraded,
      host: "127.0.0.1:5672",
      addresses: client.addresses,
      hostAttempts: client.hostAttempts().map((h) => ({ ...h, lastError: h.lastError ?? null })),
      blocked: null,
      lastRecovery: null,
      restartBudget: client.restartBudget,
      // Served after the client was running: no transition seen yet, no time in any condition.
      stateSince: null,
      timeIn: { blockedMs: 0, recoveringMs: 0, degradedMs: 0 },
      // Consumers on one connection, publishers (and RPC) on the other, each with its own state.
      connections: ["consume", "publish"].map((role) => ({
        role,
        name: `${name}:${role}`,
        state: "running",
        degraded: false,
        host: "127.0.0.1:5672",
        blocked: null,
      })),
    });
    expect(body.client.state).toBe("running");
    expect(body.client.restartBudget).toEqual({ restarts: 0, maxRestarts: 10, withinMs: 30_000, left: 10 });
    // The RPC server's consumer is one of the client's consumers too.
    expect(body.consumers).toHaveLength(client.consumers.length);
    expect(body.consumers).toHaveLength(2);
    const mine = body.consumers.find((c) => c.queue === queue);
    expect(mine).toEqual({
      queue,
      queueName: queue,
      state: "consuming",
      channel: consumer.channelId,
      prefetch: 20,
      concurrency: 4,
      running: 0,
      stats: { ...consumer.stats, lastSubscribeError: null },
    });
    expect(mine?.stats.delivered).toBe(25);
    expect(body.publishers).toHaveLength(1);
    expect(body.publishers).toEqual(
      client.publishers.map((p) => ({
        channel: p.channelId,
        pending: p.pending,
        stored: p.stored,
        deadLetters: 0,
        counters: p.counters,
        totals: p.totals,
      })),
    );
    expect(pub.totals).toEqual({ published: 25, confirmed: 25, nacked: 0 });
    expect(body.rpc).toEqual({
      clients: [{ channel: rpc.channelId, ready: true, inFlight: 0, queued: 0 }],
      servers: [
        {
          queue: rpcQueue,
          state: "consuming",
          channel: rpcServer.consumer?.channelId,
          inFlight: 0,
          served: 1,
        },
      ],
    });
    // The tree's middle level: each consumer on a channel of its own, every one open (a number).
    const consumerChannels = [mine?.channel, body.rpc.servers[0]?.channel];
    expect(consumerChannels.every((ch) => typeof ch === "number" && ch >= 1)).toBe(true);
    expect(new Set(consumerChannels).size).toBe(2);
    expect(typeof body.publishers[0]?.channel).toBe("number");
    expect(body.transitions).toEqual([]); // nothing happened since it started recording
    expect(body.events).toEqual({ clients: 0, dropped: 0 });
    expect(Date.parse(body.since)).toBeLessThanOrEqual(Date.parse(body.time));
  });
});

// ─── probes ─────────────────────────────────────────────────────────────────

describe("/readyz and /healthz", () => {
  it("/readyz is 503 while a consumer's queue is missing and 200 once it consumes", async () => {
    const { client } = running();
    const status = await serve(client);
    await client.ready();
    const queue = admin.queueName("status-missing");
    const consumer = client.consume({ queue }, () => undefined);
    await waitFor(() => consumer.stats.subscribeErrors >= 1, "a failed subscription");
    const missing = await getJson<Readiness>(`${status.url}/readyz`);
    expect(missing.status).toBe(503);
    expect(missing.body.ready).toBe(false);
    expect(missing.body.state).toBe("running");
    expect(missing.body.reasons).toHaveLength(1);
    expect(missing.body.reasons[0]).toMatch(
      new RegExp(
        `^the consumer of ${queue} is (subscribing|resubscribing) \\(last error: QUEUE_NOT_FOUND\\)$`,
      ),
    );
    await admin.pub.queueDeclare({ queue });
    await waitFor(() => consumer.state === "consuming", "the consumer to start", 15_000);
    const ready = await getJson<Readiness>(`${status.url}/readyz`);
    expect(ready).toEqual({ status: 200, body: { ready: true, state: "running", reasons: [] } });
  });

  it("/readyz is 503 while the client cannot connect; /healthz stays 200 with the event loop's delay", async () => {
    const port = await closedPort();
    const { client } = running({ url: `amqp://guest:guest@127.0.0.1:${port}/` });
    const status = await serve(client);
    await waitFor(() => client.hostAttempts()[0]?.lastError !== undefined, "a failed attempt");
    const r = await getJson<Readiness>(`${status.url}/readyz`);
    expect(r.status).toBe(503);
    expect(r.body.ready).toBe(false);
    expect(["connecting", "recovering"]).toContain(r.body.state);
    expect(r.body.reasons).toEqual([`the client is ${r.body.state}`]);
    const h = await getJson<Health>(`${status.url}/healthz`);
    expect(h.status).toBe(200);
    expect(h.body.status).toBe("ok");
    expect(h.body.uptimeSeconds).toBeGreaterThanOrEqual(0);
    const d = h.body.eventLoopDelayMs;
    for (const v of [d.mean, d.p50, d.p99, d.max, d.windowMs]) expect(v).toBeGreaterThanOrEqual(0);
    expect(d.p50).toBeLessThanOrEqual(d.max);
    // The snapshot tells why: each host tried and its last error.
    const snap = await getJson<StatusSnapshot>(`${status.url}/status.json`);
    expect(snap.body.client.host).toBeNull();
    expect(snap.body.client.hostAttempts[0]?.host).toBe(`127.0.0.1:${port}`);
    expect(snap.body.client.hostAttempts[0]?.lastError).toMatch(/ECONNREFUSED/);
    expect(snap.body.transitions.some((t) => t.to === "recovering" && t.error?.name === "SocketError")).toBe(
      true,
    );
  });
});

// ─── /events ────────────────────────────────────────────────────────────────

describe("/events", () => {
  it.skipIf(!usable)(
    `tells a killed connection's transitions as they happen, in order: recovering, then running ${NEEDS_CTL}`,
    async () => {
      const { client, name } = running();
      await client.ready();
      const log = new StateLog(client);
      const status = await serve(client);
      const reader = await EventReader.open(`${status.url}/events`);
      expect(reader.status).toBe(200);
      expect(await closeConnectionsNamed(`${name}:consume`, "killed by the status-server test")).toBe(1);
      await waitFor(() => reader.of<Transition>("state").some((t) => t.to === "running"), "running again");
      const seen = reader.of<Transition>("state");
      // The same transitions as the client's own listener saw, in the same order.
      expect(seen.map((t) => `${t.from}→${t.to}`)).toEqual(log.changes.map((c) => `${c.from}→${c.to}`));
      expect(seen[0]).toMatchObject({ from: "running", to: "recovering", host: "127.0.0.1:5672" });
      expect(seen[0]?.error?.name).toBe("ConnectionClosedByBroker");
      expect(seen[0]?.error?.message).toMatch(/killed by the status-server test/);
      expect(seen.at(-1)).toMatchObject({ from: "restoring", to: "running" });
      for (let i = 1; i < seen.length; i++) expect(seen[i]?.from).toBe(seen[i - 1]?.to);
      // /status.json has them too, and the recovery.
      const snap = await getJson<StatusSnapshot>(`${status.url}/status.json`);
      expect(snap.body.transitions).toEqual(seen);
      expect(snap.body.client.lastRecovery?.reason?.name).toBe("ConnectionClosedByBroker");
      expect(snap.body.client.lastRecovery?.time).toBe(seen.at(-1)?.time);
      expect(snap.body.client.lastRecovery?.downMs).toBeGreaterThanOrEqual(0);
      expect(snap.body.client.restartBudget).toMatchObject({ restarts: 1, left: 9 });
      // Running since the last transition; the time recovering is the recovery's own downtime.
      expect(snap.body.client.stateSince).toBe(seen.at(-1)?.time);
      expect(snap.body.client.timeIn.recoveringMs).toBe(snap.body.client.lastRecovery?.downMs);
      expect(snap.body.client.timeIn.blockedMs).toBe(0);
      expect(snap.body.events).toEqual({ clients: 1, dropped: 0 });
    },
  );

  it("sends the rates of a burst of thousands coalesced: at most one event per interval, adding up to the counts", async () => {
    const { client } = running();
    await client.ready();
    const queue = admin.queueName("status-rates");
    await client.declare({ queues: [{ name: queue }] });
    const consumer = client.consume({ queue, prefetch: 200, concurrency: 50 }, () => undefined);
    await consumer.ready();
    const status = await serve(client, { ratesIntervalMs: 250 });
    const reader = await EventReader.open(`${status.url}/events`);
    const started = performance.now();
    const n = 5000;
    await Promise.all(Array.from({ length: n }, (_, i) => client.publish("", queue, `m${i}`)));
    await waitFor(() => consumer.stats.acked === n, `${n} acked`, 30_000);
    /** Each rate times its interval, summed: the counts the events account for. */
    const total = (name: keyof Rates) =>
      reader.of<Rates>("rates").reduce((sum, r) => sum + ((r[name] as number) * r.intervalMs) / 1000, 0);
    await waitFor(() => total("acked") > n - 0.5, "the rates to account for every ack");
    const elapsed = performance.now() - started;
    const rates = reader.of<Rates>("rates");
    expect(rates.length).toBeGreaterThanOrEqual(1);
    // Coalesced: one event per 250 ms at most (4 a second), never one per message.
    expect(rates.length).toBeLessThanOrEqual(Math.ceil(elapsed / 250) + 1);
    for (const name of ["published", "confirmed", "delivered", "acked"] as const)
      expect(Math.abs(total(name) - n)).toBeLessThan(0.5);
    expect(total("nacked")).toBe(0);
    expect(total("rejected")).toBe(0);
    expect(total("deadLettered")).toBe(0);
    expect(total("retried")).toBe(0);
    expect(rates.every((r) => r.intervalMs >= 200 && !Number.isNaN(Date.parse(r.time)))).toBe(true);
  });

  it("counts RPC calls made and requests served in the rates", async () => {
    const { client } = running();
    await client.ready();
    const queue = admin.queueName("status-rpc-rates");
    const server = client.rpcServer({ queue, declare: true }, (req) => req.body);
    await server.ready();
    const rpc = client.rpcClient();
    const status = await serve(client, { ratesIntervalMs: 250 });
    const reader = await EventReader.open(`${status.url}/events`);
    const n = 200;
    await Promise.all(Array.from({ length: n }, (_, i) => rpc.call({ routingKey: queue, body: `c${i}` })));
    expect(rpc.calls).toBe(n);
    const total = (name: keyof Rates) =>
      reader.of<Rates>("rates").reduce((sum, r) => sum + ((r[name] as number) * r.intervalMs) / 1000, 0);
    await waitFor(
      () => total("rpcServed") > n - 0.5 && total("rpcCalls") > n - 0.5,
      "the rates to count every call",
    );
    expect(Math.abs(total("rpcCalls") - n)).toBeLessThan(0.5);
    expect(Math.abs(total("rpcServed") - n)).toBeLessThan(0.5);
  });

  it("a reader that stops reading does not hold up the others; one that vanishes is forgotten", async () => {
    const { client } = running();
    await client.ready();
    const queue = admin.queueName("status-slow");
    await client.declare({ queues: [{ name: queue }] });
    const consumer = client.consume({ queue }, () => undefined);
    await consumer.ready();
    const status = await serve(client, { ratesIntervalMs: 250 });
    const slow = await EventReader.open(`${status.url}/events`);
    slow.pause();
    const fast = await EventReader.open(`${status.url}/events`);
    const gone = await EventReader.open(`${status.url}/events`);
    const count = async () => (await getJson<StatusSnapshot>(`${status.url}/status.json`)).body.events;
    expect(await count()).toEqual({ clients: 3, dropped: 0 });
    gone.close();
    await until(async () => (await count()).clients === 2, "the vanished reader to be forgotten");
    await Promise.all(Array.from({ length: 500 }, (_, i) => client.publish("", queue, `m${i}`)));
    const before = fast.of<Rates>("rates").length;
    await waitFor(
      () => fast.of<Rates>("rates").length >= before + 3,
      "three more rates events for the fast reader",
    );
    // The server went on serving everyone else while the slow reader read nothing.
    expect((await fetch(`${status.url}/healthz`)).status).toBe(200);
    // (Dropping a reader whose buffer passes the bound needs MiBs the kernel absorbs first:
    // test/unit/status-recorder.test.ts drives that with real sockets.)
  });

  it("close() ends the streams and stops recording: the client's listeners are as before", async () => {
    const { client } = running();
    await client.ready();
    const before = client.listenerCount("state");
    const status = await serveStatus(client, { port: 0 });
    expect(client.listenerCount("state")).toBe(before + 1);
    const reader = await EventReader.open(`${status.url}/events`);
    const ended = new Promise<void>((resolve) => reader.onEnd(resolve));
    await status.close();
    await ended;
    expect(client.listenerCount("state")).toBe(before);
    await status.close(); // idempotent
    await expect(fetch(`${status.url}/healthz`)).rejects.toThrow();
  });
});

// ─── safety ─────────────────────────────────────────────────────────────────

describe("safety", () => {
  it("with a token, the page, /status.json and /events need it (header or ?token=); /healthz, /readyz, /metrics and the page's script and stylesheet stay open", async () => {
    const registry = new Registry();
    const { client } = running({ metrics: { registry } });
    await client.ready();
    const token = uniqueName("tok");
    const status = await serve(client, { token, registry });
    for (const path of ["/", "/status.json", "/events"]) {
      const none = await fetch(`${status.url}${path}`);
      expect(none.status).toBe(401);
      expect(none.headers.get("www-authenticate")).toMatch(/^Bearer/);
      await none.text();
      const wrong = await fetch(`${status.url}${path}`, { headers: { Authorization: "Bearer nope" } });
      expect(wrong.status).toBe(401);
      await wrong.text();
      const badQuery = await fetch(`${status.url}${path}?token=${token}x`);
      expect(badQuery.status).toBe(401);
      await badQuery.text();
    }
    const byHeader = await fetch(`${status.url}/status.json`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(byHeader.status).toBe(200);
    expect(((await byHeader.json()) as StatusSnapshot).client.state).toBe("running");
    const byQuery = await fetch(`${status.url}/status.json?token=${encodeURIComponent(token)}`);
    expect(byQuery.status).toBe(200);
    await byQuery.text();
    const stream = await EventReader.open(`${status.url}/events`, { Authorization: `Bearer ${token}` });
    expect(stream.status).toBe(200);
    const streamByQuery = await EventReader.open(`${status.url}/events?token=${token}`);
    expect(streamByQuery.status).toBe(200);
    for (const path of ["/healthz", "/readyz", "/metrics", "/page.js", "/page.css"]) {
      const res = await fetch(`${status.url}${path}`);
      expect(res.status).toBe(200);
      await res.text();
    }
  });

  it("the page is this server's own: HTML, script and stylesheet served with a policy that allows nothing from elsewhere, and a script that parses", async () => {
    const { client } = running();
    await client.ready();
    const status = await serve(client);
    const files: Record<string, string> = {
      "/": "text/html; charset=utf-8",
      "/page.js": "text/javascript; charset=utf-8",
      "/page.css": "text/css; charset=utf-8",
    };
    const bodies: Record<string, string> = {};
    for (const [path, type] of Object.entries(files)) {
      const res = await fetch(`${status.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toBe(type);
      expect(res.headers.get("content-security-policy"), path).toMatch(
        /^default-src 'none'; script-src 'self'/,
      );
      bodies[path] = await res.text();
    }
    expect(bodies["/"]).toContain('<script src="/page.js" defer></script>');
    expect(bodies["/"]).toContain('<link rel="stylesheet" href="/page.css">');
    // Nothing fetched from elsewhere: no absolute URL in any of the three.
    for (const [path, body] of Object.entries(bodies))
      expect(body, path).not.toMatch(/\b(https?:)?\/\/[a-z0-9]/i);
    // The script reads /status.json and /events, and writes values as text, never as HTML.
    expect(bodies["/page.js"]).toContain('"/status.json"');
    expect(bodies["/page.js"]).toContain('"/events"');
    expect(bodies["/page.js"]).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    expect(() => new Script(bodies["/page.js"]!, { filename: "page.js" })).not.toThrow();
  });

  it("is read-only: 405 for anything but GET and HEAD; HEAD answers without a body", async () => {
    const { client } = running();
    await client.ready();
    const status = await serve(client, { registry: new Registry() });
    for (const path of ["/status.json", "/events", "/healthz", "/readyz", "/metrics", "/"]) {
      for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
        const res = await fetch(`${status.url}${path}`, { method, body: method === "DELETE" ? null : "x" });
        expect(res.status, `${method} ${path}`).toBe(405);
        expect(res.headers.get("allow")).toBe("GET, HEAD");
        await res.text();
      }
    }
    const head = await fetch(`${status.url}/status.json`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await head.text()).toBe("");
    const missing = await getJson<{ endpoints: string[] }>(`${status.url}/nothing`);
    expect(missing.status).toBe(404);
    expect(missing.body.endpoints).toEqual([
      "/",
      "/status.json",
      "/events",
      "/healthz",
      "/readyz",
      "/metrics",
    ]);
    const noRegistry = await serve(client);
    expect((await getJson(`${noRegistry.url}/metrics`)).status).toBe(404);
  });

  it.skipIf(!usable)(
    `never shows the password the client connected with, in any endpoint's body ${NEEDS_CTL}`,
    async () => {
      const user = uniqueName("status-user");
      const password = uniqueName("status-secret");
      await addUser(user, password);
      const registry = new Registry();
      const { client, name } = running({ url: amqpUrlWith({ user, password }), metrics: { registry } });
      try {
        await client.ready();
        const queue = admin.queueName("status-pw");
        await client.declare({ queues: [{ name: queue }] });
        const consumer = client.consume({ queue }, () => undefined);
        await consumer.ready();
        await client.publish("", queue, "x");
        const status = await serve(client, { registry });
        const reader = await EventReader.open(`${status.url}/events`);
        expect(await closeConnectionsNamed(`${name}:consume`, "killed by the status-server test")).toBe(1);
        await waitFor(() => reader.of<Transition>("state").some((t) => t.to === "running"), "running again");
        await waitFor(() => reader.of<Rates>("rates").length >= 1, "a rates event");
        const bodies = [reader.text];
        for (const path of [
          "/",
          "/page.js",
          "/page.css",
          "/status.json",
          "/healthz",
          "/readyz",
          "/metrics",
          "/nothing",
        ]) {
          const res = await fetch(`${status.url}${path}`);
          bodies.push(await res.text());
        }
        const all = bodies.join("\n");
        expect(all).toContain(`"addresses":["amqp://${user}:***@127.0.0.1:5672/"]`);
        expect(all).not.toContain(password);
        expect(all).not.toContain(encodeURIComponent(password));
      } finally {
        await client.close();
        await deleteUser(user);
      }
    },
  );

  it("records nothing when not served: no listener on the client before serveStatus() or after close()", async () => {
    const { client } = running();
    const before = client.listenerCount("state");
    await client.ready();
    expect(client.listenerCount("state")).toBe(before);
    const status = await serveStatus(client, { port: 0 });
    expect(client.listenerCount("state")).toBe(before + 1);
    await status.close();
    expect(client.listenerCount("state")).toBe(before);
  });
});
