/**
 * The reliable Publisher (client.publisher()) against a real broker: the bounded in-flight
 * window and `multiple` confirms, nacks, returns, a channel exception in the middle of a
 * stream, message-ids, a connection killed mid-stream (re-published, or rejected with
 * `republish: false`), publishTimeout and close. (Publishing while the broker blocks the connection:
 * broker-alarms.test.ts, on a private node.)
 */
import { mkdtemp, rm } from "node:fs/promises";
import { type AddressInfo, connect as connectTcp, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { PublishConfirms } from "../../src/amqp/publish-confirms.js";
import {
  ChannelClosedByBroker,
  ChannelClosedError,
  type Client,
  ClientClosedError,
  ConfigError,
  ConnectionClosedError,
  type Message,
  type Publisher,
  PublishNackedError,
  TimeoutError,
  UnroutableError,
} from "../../src/index.js";
import { useAdmin } from "../support/admin.js";
import { deferred, errorOf, within } from "../support/async.js";
import { AMQP_URL, closeConnectionsNamed, rabbitmqctl, uniqueName } from "../support/broker.js";
import { useClients } from "../support/clients.js";
import { findFreePorts } from "../support/extra-node.js";
import { drainQueue, messageIds } from "../support/queue.js";
import { StateLog } from "../support/state-log.js";
import { until, waitFor } from "../support/wait.js";

// ─── helpers ────────────────────────────────────────────────────────────────

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type OnConfirm = (tag: number, multiple: boolean, nack: boolean) => void;

const tempDirs: string[] = [];
const proxies: Proxy[] = [];

// Registered before useClients: after-hooks run in reverse, so the clients close first.
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

afterAll(async () => {
  for (const d of tempDirs) await rm(d, { recursive: true, force: true });
});

const client = useClients("warren-publisher");
const admin = useAdmin();

/** A fresh queue on the main broker (deleted after the test). */
async function queue(args?: Record<string, number | string>): Promise<string> {
  const name = admin.queueName("warren.test.publisher");
  await admin.pub.queueDeclare({ queue: name, ...(args ? { arguments: args } : {}) });
  return name;
}

async function depth(q: string): Promise<number> {
  return (await admin.pub.queueDeclare({ queue: q, passive: true })).messageCount;
}

/** Consumes everything the queue holds now, in order. */
function drain(q: string): Promise<Message[]> {
  return drainQueue(admin.conn, q);
}

const ids = messageIds;

function proxyUrl(proxy: Proxy): string {
  const url = new URL(AMQP_URL);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  return url.toString();
}

async function outboxPath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "warren-publisher-"));
  tempDirs.push(dir);
  return join(dir, "outbox.db");
}

// ─── confirms and the in-flight window ──────────────────────────────────────

describe("confirms", () => {
  it("5000 publishes with maxInFlight 500 all resolve, in order; pending never exceeds 500; acks use multiple", async () => {
    const q = await queue();
    const { client: c } = client();
    await c.ready();
    const pub = c.publisher({ maxInFlight: 500 });
    await pub.publish({ exchange: "", routingKey: q, body: "warm-up" }); // the channel is open

    // The broker's acks as the channel receives them (delivery tag, multiple, nack).
    const spy = vi.spyOn(PublishConfirms.prototype as unknown as { settle: OnConfirm }, "settle");
    let maxPending = 0;
    const sample = () => {
      if (pub.pending > maxPending) maxPending = pub.pending;
    };
    const sampler = setInterval(sample, 0);
    const order: number[] = [];
    const ps: Promise<void>[] = [];
    const t0 = performance.now();
    let calls: Parameters<OnConfirm>[] = [];
    try {
      for (let i = 0; i < 5000; i++) {
        ps.push(
          pub.publish({ exchange: "", routingKey: q, body: `m${i}` }).then(() => {
            sample();
            order.push(i);
          }),
        );
        sample();
      }
      await within(Promise.all(ps), 25_000, "5000 publishes");
      calls = [...spy.mock.calls];
    } finally {
      clearInterval(sampler);
      spy.mockRestore();
    }
    const ms = performance.now() - t0;
    const multiples = calls.filter(([, multiple]) => multiple).length;
    console.info(
      `confirms: 5000 in ${ms.toFixed(0)} ms (${Math.round(5000 / (ms / 1000))}/s); max pending ${maxPending}; ` +
        `${calls.length} acks, ${multiples} with multiple`,
    );
    expect(maxPending).toBeLessThanOrEqual(500);
    expect(maxPending).toBeGreaterThan(0);
    expect(pub.pending).toBe(0);
    expect(order).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    expect(calls.every(([, , nack]) => nack === false)).toBe(true);
    expect(multiples).toBeGreaterThan(0);
    expect(calls.length).toBeLessThan(5000);
    expect(await depth(q)).toBe(5001);
    const got = await drain(q);
    expect(got.map((m) => m.body.toString())).toEqual([
      "warm-up",
      ...Array.from({ length: 5000 }, (_, i) => `m${i}`),
    ]);
  });
});

// ─── nacks and returns ──────────────────────────────────────────────────────

describe("nacks and returns", () => {
  it("a full queue (reject-publish) nacks: PublishNackedError after the retries; with an outbox the message is dead-lettered, retried, dropped", async () => {
    const q = await queue({ "x-max-length": 1, "x-overflow": "reject-publish" });
    const { client: c } = client();
    await c.ready();
    const nackRetry = { attempts: 3, initialDelayMs: 20, maxDelayMs: 40 };
    const pub = c.publisher({ nackRetry });
    await pub.publish({ exchange: "", routingKey: q, body: "first" });
    const err = await errorOf(pub.publish({ exchange: "", routingKey: q, body: "second" }));
    expect(err).toBeInstanceOf(PublishNackedError);
    expect((err as PublishNackedError).attempts).toBe(3);
    expect(pub.counters.nackRetries).toBe(2);
    expect(pub.pending).toBe(0);
    expect(() => pub.deadLetters).toThrow(ConfigError); // no outbox, no dead letters
    // Without retries the first nack rejects.
    const once = c.publisher({ nackRetry: false });
    const err1 = await errorOf(once.publish({ exchange: "", routingKey: q, body: "second" }));
    expect((err1 as PublishNackedError).attempts).toBe(1);
    expect(once.counters.nackRetries).toBe(0);

    const ob = c.publisher({ outbox: { path: await outboxPath() }, nackRetry });
    await ob.publish({ exchange: "", routingKey: q, body: "third", properties: { messageId: "nacked-1" } });
    await waitFor(() => ob.deadLetters.list().length === 1, "the nacked message in the dead letters");
    expect(ob.stored).toBe(0);
    expect(ob.counters.nackRetries).toBe(2);
    const [dead] = ob.deadLetters.list();
    expect(dead!.reason).toMatch(/PublishNackedError.*nacked 3 times/);
    expect(dead!.properties.messageId).toBe("nacked-1");
    expect(dead!.body.toString()).toBe("third");
    expect(dead!.routingKey).toBe(q);
    expect(dead!.failedAt).toBeInstanceOf(Date);

    // Make room, then retry: it is sent again and accepted.
    expect(await admin.pub.queuePurge({ queue: q })).toBe(1);
    ob.deadLetters.retry(dead!.id);
    expect(ob.deadLetters.list()).toEqual([]);
    await waitFor(() => ob.stored === 0 && ob.deadLetters.list().length === 0, "the retried message sent");
    const got = await drain(q);
    expect(ids(got)).toEqual(["nacked-1"]);
    expect(got[0]!.body.toString()).toBe("third");

    // Full again: a nacked message, dropped.
    await pub.publish({ exchange: "", routingKey: q, body: "fill" });
    await ob.publish({ exchange: "", routingKey: q, body: "fourth", properties: { messageId: "nacked-2" } });
    await waitFor(() => ob.deadLetters.list().length === 1, "the second nacked message");
    const [dead2] = ob.deadLetters.list();
    expect(dead2!.properties.messageId).toBe("nacked-2");
    ob.deadLetters.drop(dead2!.id);
    expect(ob.deadLetters.list()).toEqual([]);
    expect(ob.stored).toBe(0);
    expect(ids(await drain(q)).length).toBe(1);
  });

  it("a nacked publish is sent again after a backoff and resolves once the queue has room (also through the outbox)", async () => {
    const q = await queue({ "x-max-length": 1, "x-overflow": "reject-publish" });
    const { client: c } = client();
    await c.ready();
    const nackRetry = { attempts: 20, withinMs: 20_000, initialDelayMs: 50, maxDelayMs: 200 };
    const pub = c.publisher({ nackRetry });
    await pub.publish({ exchange: "", routingKey: q, body: "fill", properties: { messageId: "fill" } });
    const later = pub.publish({
      exchange: "",
      routingKey: q,
      body: "later",
      properties: { messageId: "later" },
    });
    await waitFor(() => pub.counters.nackRetries >= 1, "the first nack");
    expect(ids(await drain(q))).toEqual(["fill"]);
    await later;
    expect(ids(await drain(q))).toEqual(["later"]);

    const ob = c.publisher({ outbox: { path: await outboxPath() }, nackRetry });
    await pub.publish({ exchange: "", routingKey: q, body: "fill", properties: { messageId: "fill-2" } });
    await ob.publish({ exchange: "", routingKey: q, body: "stored", properties: { messageId: "stored" } });
    await waitFor(() => ob.counters.nackRetries >= 1, "the relay's first nack");
    expect(ids(await drain(q))).toEqual(["fill-2"]);
    await ob.whenIdle(10_000);
    expect(ob.stored).toBe(0);
    expect(ob.deadLetters.list()).toEqual([]);
    expect(ids(await drain(q))).toEqual(["stored"]);
  });

  it("mandatory to an exchange with no bindings: UnroutableError; with an outbox a dead letter", async () => {
    const ex = uniqueName("warren.test.publisher.unbound");
    await admin.pub.exchangeDeclare({ exchange: ex, type: "direct" });
    onTestFinished(() => admin.pub.exchangeDelete({ exchange: ex }));
    const { client: c } = client();
    await c.ready();
    const pub = c.publisher();
    const err = await errorOf(
      pub.publish({ exchange: ex, routingKey: "nowhere", body: "x", mandatory: true }),
    );
    expect(err).toBeInstanceOf(UnroutableError);
    expect((err as UnroutableError).replyCode).toBe(312);
    expect((err as UnroutableError).exchange).toBe(ex);
    // Without mandatory the broker drops it and confirms.
    await pub.publish({ exchange: ex, routingKey: "nowhere", body: "x" });

    const ob = c.publisher({ outbox: { path: await outboxPath() } });
    await ob.publish({
      exchange: ex,
      routingKey: "nowhere",
      body: "y",
      mandatory: true,
      properties: { messageId: "unroutable-1" },
    });
    await waitFor(() => ob.deadLetters.list().length === 1, "the unroutable message in the dead letters");
    const [dead] = ob.deadLetters.list();
    expect(dead!.reason).toMatch(/UnroutableError/);
    expect(dead!.mandatory).toBe(true);
    expect(dead!.properties.messageId).toBe("unroutable-1");
    expect(ob.stored).toBe(0);
  });

  it("a publish to a missing exchange rejects with ChannelClosedByBroker 404; the others are re-published on the reopened channel", async () => {
    const q = await queue();
    const missing = uniqueName("warren.test.publisher.missing");
    const { client: c } = client();
    await c.ready();
    const pub = c.publisher({ maxInFlight: 1000 });
    await pub.publish({ exchange: "", routingKey: q, body: "warm-up", properties: { messageId: "w" } });
    const good: Promise<void>[] = [];
    for (let i = 0; i < 300; i++)
      good.push(
        pub.publish({ exchange: "", routingKey: q, body: `a${i}`, properties: { messageId: `a${i}` } }),
      );
    const bad = errorOf(pub.publish({ exchange: missing, routingKey: q, body: "lost" }));
    for (let i = 0; i < 300; i++)
      good.push(
        pub.publish({ exchange: "", routingKey: q, body: `b${i}`, properties: { messageId: `b${i}` } }),
      );
    const err = await within(bad, 10_000, "the publish to a missing exchange");
    expect(err).toBeInstanceOf(ChannelClosedByBroker);
    expect((err as ChannelClosedByBroker).replyCode).toBe(404);
    expect((err as ChannelClosedByBroker).replyText).toContain(missing);
    await within(Promise.all(good), 15_000, "the publishes to the good queue");
    // The publisher's channel works again.
    await pub.publish({ exchange: "", routingKey: q, body: "after", properties: { messageId: "after" } });
    expect(c.state).toBe("running");

    const got = ids(await drain(q));
    const distinct = new Set(got);
    console.info(
      `missing exchange: ${got.length} delivered, ${distinct.size} distinct, ${got.length - distinct.size} duplicates`,
    );
    expect(distinct.size).toBe(602);
    for (let i = 0; i < 300; i++) {
      expect(distinct.has(`a${i}`)).toBe(true);
      expect(distinct.has(`b${i}`)).toBe(true);
    }
    // First deliveries keep the publishing order.
    const firsts = got.filter((id, i) => got.indexOf(id) === i);
    expect(firsts.filter((id) => id.startsWith("b"))).toEqual(Array.from({ length: 300 }, (_, i) => `b${i}`));
  });
});

describe("a missing exchange with an outbox", () => {
  it("the row for the missing exchange is dead-lettered (404); the other rows are delivered", async () => {
    const q = await queue();
    const missing = uniqueName("warren.test.publisher.missing");
    const { client: c } = client();
    await c.ready();
    const ob = c.publisher({ outbox: { path: await outboxPath() } });
    const ps: Promise<void>[] = [];
    for (let i = 0; i < 300; i++)
      ps.push(ob.publish({ exchange: "", routingKey: q, body: `a${i}`, properties: { messageId: `a${i}` } }));
    ps.push(
      ob.publish({ exchange: missing, routingKey: q, body: "lost", properties: { messageId: "lost" } }),
    );
    for (let i = 0; i < 300; i++)
      ps.push(ob.publish({ exchange: "", routingKey: q, body: `b${i}`, properties: { messageId: `b${i}` } }));
    await Promise.all(ps);
    await waitFor(() => ob.stored === 0, "the outbox emptied", 15_000);
    const dead = ob.deadLetters.list();
    expect(dead.map((d) => d.properties.messageId)).toEqual(["lost"]);
    expect(dead[0]!.exchange).toBe(missing);
    expect(dead[0]!.reason).toMatch(/ChannelClosedByBroker.*404/);
    const got = ids(await drain(q));
    const distinct = new Set(got);
    console.info(
      `outbox, missing exchange: ${got.length} delivered, ${distinct.size} distinct, ${got.length - distinct.size} duplicates`,
    );
    expect(distinct.size).toBe(600);
    expect(distinct.has("lost")).toBe(false);
    expect(c.state).toBe("running");
  });
});

// ─── message properties ─────────────────────────────────────────────────────

describe("message properties", () => {
  it("confirm: false resolves once written; the messages arrive", async () => {
    const q = await queue();
    const { client: c } = client();
    await c.ready();
    const pub = c.publisher({ confirm: false, maxInFlight: 100 });
    await Promise.all(
      Array.from({ length: 1000 }, (_, i) => pub.publish({ exchange: "", routingKey: q, body: `${i}` })),
    );
    expect(pub.pending).toBe(0);
    // Written, not confirmed: they reach the queue shortly after.
    await until(async () => (await depth(q)) === 1000, "1000 messages in the queue");
    const got = (await drain(q)).map((m) => m.body.toString());
    expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => `${i}`));
  });

  it("messageIds: a message-id is generated when absent and kept when given; none without it; persistent: true is delivery mode 2", async () => {
    const q = await queue();
    const { client: c } = client();
    await c.ready();
    const pub = c.publisher({ messageIds: true });
    await pub.publish({ exchange: "", routingKey: q, body: "no id", properties: { persistent: true } });
    await pub.publish({ exchange: "", routingKey: q, body: "given", properties: { messageId: "given-1" } });
    await pub.publish({ exchange: "", routingKey: q, body: "transient", properties: { persistent: false } });
    await pub.publish({ exchange: "", routingKey: q, body: "bare" });
    await c
      .publisher()
      .publish({ exchange: "", routingKey: q, body: "default", properties: { persistent: true } });
    await c.publish("", q, "through the client");
    const got = await drain(q);
    expect(got.map((m) => m.body.toString())).toEqual([
      "no id",
      "given",
      "transient",
      "bare",
      "default",
      "through the client",
    ]);
    expect(got[0]!.properties.messageId).toMatch(UUID);
    expect(got[0]!.properties.deliveryMode).toBe(2);
    expect(got[1]!.properties.messageId).toBe("given-1");
    expect(got[1]!.properties.deliveryMode).toBeUndefined();
    expect(got[2]!.properties.deliveryMode).toBe(1);
    expect(got[2]!.properties.messageId).toMatch(UUID);
    expect(got[3]!.properties.messageId).toMatch(UUID);
    expect(new Set(got.slice(0, 4).map((m) => m.properties.messageId)).size).toBe(4);
    // Without messageIds the broker gets what was given, nothing more.
    expect(got[4]!.properties.messageId).toBeUndefined();
    expect(got[4]!.properties.deliveryMode).toBe(2);
    expect(got[5]!.properties.messageId).toBeUndefined();
  });
});

// ─── a connection killed mid-stream ─────────────────────────────────────────

/**
 * Kills the client's connection with closeConnectionsNamed, in two steps: it looks the connection up
 * at once, and sends close_connection when `go()` is called (each CLI call takes a second or two).
 */
function killLater(name: string): { listed: Promise<void>; go: () => void; done: Promise<number> } {
  const listed = deferred();
  const go = deferred();
  const ctl = async (args: string[]): Promise<string> => {
    if (args[0] === "close_connection") {
      listed.resolve();
      await go.promise;
    }
    return rabbitmqctl(args);
  };
  const done = closeConnectionsNamed(name, "killed mid-stream by test", { ctl }).finally(() =>
    listed.resolve(),
  );
  return { listed: listed.promise, go: () => go.resolve(), done };
}

interface Proxy {
  port: number;
  /** Client-to-broker bytes forwarded per 10 ms, per connection; 0: unlimited. */
  throttle(bytesPerTick: number): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy to the main broker whose client-to-broker direction can be throttled (a slow network),
 * so that a stream of small publishes lasts long enough for the CLI to kill its connection in the
 * middle of it. Broker-to-client bytes (confirms, connection.close) pass at once.
 */
async function startProxy(): Promise<Proxy> {
  const target = new URL(AMQP_URL);
  const host = target.hostname || "127.0.0.1";
  const port = Number(target.port || 5672);
  let limit = 0;
  const sockets = new Set<Socket>();
  const flushers = new Set<() => void>();
  const server = createServer((client) => {
    const upstream = connectTcp({ host, port });
    sockets.add(client).add(upstream);
    const queued: Buffer[] = [];
    const flush = () => {
      let budget = limit === 0 ? Number.POSITIVE_INFINITY : limit;
      while (queued.length > 0 && budget > 0 && !upstream.destroyed) {
        const chunk = queued[0]!;
        if (chunk.length <= budget) {
          queued.shift();
          upstream.write(chunk);
          budget -= chunk.length;
        } else {
          upstream.write(chunk.subarray(0, budget));
          queued[0] = chunk.subarray(budget);
          budget = 0;
        }
      }
    };
    flushers.add(flush);
    const tick = setInterval(flush, 10);
    client.on("data", (d: Buffer) => {
      queued.push(d);
      if (limit === 0) flush();
    });
    upstream.on("data", (d: Buffer) => client.write(d));
    const end = () => {
      clearInterval(tick);
      flushers.delete(flush);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    throttle(bytesPerTick) {
      limit = bytesPerTick;
      if (limit === 0) for (const f of flushers) f();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** How far the stream had got when the connection was lost. */
interface AtLoss {
  /** publish() calls made. */
  attempted: number;
  /** publish() promises resolved (confirmed; with an outbox: stored). */
  confirmed: number;
  pending: number;
  /** Outbox rows not yet confirmed. */
  stored: number;
}

/**
 * Through a proxy throttled so that a stream of `total` small publishes would take about 10 s (the
 * CLI's kill lands in it even on a busy machine), publishes k-0… to `q` while the CLI kills the
 * client's connection; the throttle is lifted once the connection is lost. Returns the promises and
 * what the stream looked like at the loss.
 */
async function killMidStream(
  pub: Publisher,
  c: Client,
  name: string,
  proxy: Proxy,
  q: string,
  total: number,
): Promise<{ promises: Promise<void>[]; atLoss: AtLoss }> {
  let confirmed = 0;
  let atLoss: AtLoss | undefined;
  const promises: Promise<void>[] = [];
  const lost = deferred();
  c.on("state", ({ to }) => {
    if (to !== "recovering" || atLoss !== undefined) return;
    atLoss = { attempted: promises.length, confirmed, pending: pub.pending, stored: pub.stored };
    proxy.throttle(0);
    lost.resolve();
  });
  // The publisher's own connection (the client's publish connection).
  const kill = killLater(`${name}:publish`);
  await kill.listed;
  // A publish is about 130 bytes on the wire: the whole stream would take about 10 s.
  proxy.throttle(Math.ceil((total * 130) / 1000));
  kill.go();
  for (let i = 0; i < total; i++) {
    const p = pub.publish({
      exchange: "",
      routingKey: q,
      body: `k-${i}`,
      properties: { messageId: `k-${i}` },
    });
    promises.push(p);
    p.then(
      () => void confirmed++,
      () => undefined,
    );
  }
  expect(await kill.done).toBe(1);
  await within(lost.promise, 10_000, "the connection lost");
  return { promises, atLoss: atLoss! };
}

describe("a connection killed mid-stream", () => {
  it("10 000 publishes (maxInFlight 1000): every promise resolves, every message arrives (duplicates allowed)", async () => {
    const q = await queue();
    const proxy = await startProxy();
    proxies.push(proxy);
    const { client: c, name } = client({ url: proxyUrl(proxy) });
    const log = new StateLog(c);
    await c.ready();
    const pub = c.publisher({ maxInFlight: 1000 });
    await pub.publish({ exchange: "", routingKey: q, body: "warm-up", properties: { messageId: "warm-up" } });

    const { promises, atLoss } = await killMidStream(pub, c, name, proxy, q, 10_000);
    let resolved = 0;
    await within(
      Promise.all(promises.map((p) => p.then(() => void resolved++))),
      40_000,
      "10 000 publishes across the kill",
    );
    expect(resolved).toBe(10_000);
    expect(pub.pending).toBe(0);
    expect(log.states).toContain("recovering");
    expect(c.state).toBe("running");
    expect(atLoss.pending).toBeGreaterThan(0); // the kill landed with messages unconfirmed
    expect(atLoss.confirmed).toBeGreaterThan(0); // after the stream had started

    const got = ids(await drain(q)).filter((id) => id !== "warm-up");
    const distinct = new Set(got);
    console.info(
      `kill mid-stream: connection lost with ${atLoss.confirmed} confirmed, ${atLoss.pending} pending ` +
        `(${atLoss.attempted} publish() calls made); ` +
        `${got.length} delivered, ${distinct.size} distinct, ${got.length - distinct.size} duplicates`,
    );
    expect(distinct.size).toBe(10_000);
    for (let i = 0; i < 10_000; i++) expect(distinct.has(`k-${i}`)).toBe(true);
  }, 60_000);

  it("republish: false: what was unconfirmed rejects with a typed error, the rest resolves; every promise settles", async () => {
    const q = await queue();
    const proxy = await startProxy();
    proxies.push(proxy);
    const { client: c, name } = client({ url: proxyUrl(proxy) });
    await c.ready();
    const pub = c.publisher({ maxInFlight: 1000, republish: false });
    await pub.publish({ exchange: "", routingKey: q, body: "warm-up", properties: { messageId: "warm-up" } });

    const { promises, atLoss } = await killMidStream(pub, c, name, proxy, q, 5000);
    const resolvedIds = new Set<string>();
    const errors: unknown[] = [];
    await within(
      Promise.all(
        promises.map((p, i) =>
          p.then(
            () => void resolvedIds.add(`k-${i}`),
            (e: unknown) => void errors.push(e),
          ),
        ),
      ),
      40_000,
      "5000 publishes across the kill",
    );
    expect(resolvedIds.size + errors.length).toBe(promises.length);
    expect(pub.pending).toBe(0);
    expect(atLoss.pending).toBeGreaterThan(0);
    expect(atLoss.confirmed).toBeGreaterThan(0);
    expect(errors.length).toBeGreaterThan(0);
    for (const e of errors)
      expect(e instanceof ChannelClosedError || e instanceof ConnectionClosedError).toBe(true);

    const got = new Set(ids(await drain(q)));
    console.info(
      `republish: false: connection lost with ${atLoss.confirmed} confirmed, ${atLoss.pending} pending; ` +
        `${resolvedIds.size} resolved, ${errors.length} rejected ` +
        `(${[...new Set(errors.map((e) => (e as Error).name))].join(", ")}); ${got.size - 1} distinct arrived`,
    );
    for (const id of resolvedIds) expect(got.has(id)).toBe(true);
  }, 60_000);
});

describe("a connection killed mid-relay (outbox)", () => {
  it("the relay sends again what was unconfirmed: the outbox empties and every message arrives", async () => {
    const q = await queue();
    const proxy = await startProxy();
    proxies.push(proxy);
    const { client: c, name } = client({ url: proxyUrl(proxy) });
    await c.ready();
    const pub = c.publisher({ maxInFlight: 1000, outbox: { path: await outboxPath() } });
    await pub.publish({ exchange: "", routingKey: q, body: "warm-up", properties: { messageId: "warm-up" } });
    await waitFor(() => pub.stored === 0, "the warm-up message sent");

    const { promises, atLoss } = await killMidStream(pub, c, name, proxy, q, 10_000);
    await within(Promise.all(promises), 10_000, "10 000 messages stored");
    expect(atLoss.stored).toBeGreaterThan(0);
    expect(atLoss.stored).toBeLessThan(10_000); // some had been delivered
    await waitFor(() => pub.stored === 0, "the outbox emptied", 30_000);
    expect(pub.deadLetters.list()).toEqual([]);

    const got = ids(await drain(q)).filter((id) => id !== "warm-up");
    const distinct = new Set(got);
    console.info(
      `outbox, kill mid-relay: connection lost with ${atLoss.stored} rows stored; ` +
        `${got.length} delivered, ${distinct.size} distinct, ${got.length - distinct.size} duplicates`,
    );
    expect(distinct.size).toBe(10_000);
    for (let i = 0; i < 10_000; i++) expect(distinct.has(`k-${i}`)).toBe(true);
  }, 60_000);
});

// ─── timeouts and closing ───────────────────────────────────────────────────

describe("publishTimeout and close", () => {
  it("with no broker reachable, publish rejects with TimeoutError after publishTimeout", async () => {
    const [port] = await findFreePorts(1);
    const { client: c } = client({
      url: `amqp://guest:guest@127.0.0.1:${port}/`,
      closeTimeout: 200,
    });
    const pub = c.publisher({ publishTimeout: 300 });
    const t0 = performance.now();
    const err = await within(
      errorOf(pub.publish({ exchange: "", routingKey: "q", body: "x" })),
      5000,
      "publish",
    );
    const ms = performance.now() - t0;
    console.info(`publishTimeout 300: rejected after ${ms.toFixed(0)} ms`);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(1500);
    expect(pub.pending).toBe(0);
  });

  it("close() rejects pending publishes with ClientClosedError; publishing after close rejects too", async () => {
    const [port] = await findFreePorts(1);
    const { client: c } = client({
      url: `amqp://guest:guest@127.0.0.1:${port}/`,
      closeTimeout: 200,
    });
    const pub = c.publisher({ publishTimeout: 30_000, maxInFlight: 2 });
    const pending = [0, 1, 2, 3].map((i) =>
      errorOf(pub.publish({ exchange: "", routingKey: "q", body: `${i}` })),
    );
    await waitFor(() => pub.pending === 2, "two queued publishes");
    await within(c.close(), 5000, "close");
    const errs = await within(Promise.all(pending), 5000, "the pending publishes");
    for (const e of errs) expect(e).toBeInstanceOf(ClientClosedError);
    expect(await errorOf(pub.publish({ exchange: "", routingKey: "q", body: "late" }))).toBeInstanceOf(
      ClientClosedError,
    );
    expect(await errorOf(c.publish("", "q", "late"))).toBeInstanceOf(ClientClosedError);
    expect(() => c.publisher()).toThrow(ClientClosedError);
  });

  it("with an outbox, whenIdle() and close() wait (bounded) until the relay delivered everything", async () => {
    const q = await queue();
    const proxy = await startProxy();
    proxies.push(proxy);
    const { client: c } = client({ url: proxyUrl(proxy), closeTimeout: 20_000 });
    await c.ready();
    const pub = c.publisher({ outbox: { path: await outboxPath() } });
    proxy.throttle(1600); // about 160 KB/s: the relay needs a few seconds
    const publish = (i: number) =>
      pub.publish({ exchange: "", routingKey: q, body: `${i}`, properties: { messageId: `i-${i}` } });
    await Promise.all(Array.from({ length: 3000 }, (_, i) => publish(i)));
    expect(pub.stored).toBeGreaterThan(0);
    const t0 = performance.now();
    await pub.whenIdle(20_000);
    const idleMs = performance.now() - t0;
    expect(pub.stored).toBe(0);
    expect(idleMs).toBeLessThan(15_000); // when it emptied, not at the timeout

    await Promise.all(Array.from({ length: 3000 }, (_, i) => publish(3000 + i)));
    expect(pub.stored).toBeGreaterThan(0);
    const t1 = performance.now();
    await c.close();
    const closeMs = performance.now() - t1;
    console.info(
      `outbox drained by whenIdle() in ${idleMs.toFixed(0)} ms, by close() in ${closeMs.toFixed(0)} ms`,
    );
    expect(pub.stored).toBe(0);
    expect(await depth(q)).toBe(6000);
  }, 60_000);

  it("close() on a connected client waits for confirms first", async () => {
    const q = await queue();
    const { client: c } = client();
    await c.ready();
    const pub = c.publisher();
    const ps = Array.from({ length: 200 }, (_, i) =>
      pub.publish({ exchange: "", routingKey: q, body: `${i}` }),
    );
    await c.close();
    await within(Promise.all(ps), 5000, "publishes made before close");
    expect(await depth(q)).toBe(200);
  });
});
