/**
 * The status server's parts without a broker (src/status/): the ring buffer of transitions, the
 * rate meter, the recorder (transitions, last recovery, coalesced rates, listeners detached on
 * close) on vitest's fake clock, readiness, and the event-stream hub's bound on slow readers, with
 * a fake response and then with real sockets.
 */
import { createServer, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TypedEmitter } from "../../src/amqp/events.js";
import type { StateChange } from "../../src/client/client-options.js";
import type { ConsumerStats } from "../../src/client/consumer-types.js";
import { ConfigError, ConnectionClosedByBroker, SocketError } from "../../src/errors.js";
import { RateMeter } from "../../src/status/rates.js";
import { readiness } from "../../src/status/readiness.js";
import { type StatusEvent, StatusRecorder } from "../../src/status/recorder.js";
import { Ring } from "../../src/status/ring.js";
import { type SseClient, SseHub, sseChunk } from "../../src/status/sse.js";
import type { Rates } from "../../src/status/types.js";
import { waitFor } from "../support/wait.js";

// ─── fakes ──────────────────────────────────────────────────────────────────

function stats(over: Partial<ConsumerStats> = {}): ConsumerStats {
  return {
    delivered: 0,
    acked: 0,
    failed: 0,
    requeued: 0,
    retried: 0,
    deadLettered: 0,
    inFlight: 0,
    subscribeErrors: 0,
    lastSubscribeError: undefined,
    ...over,
  };
}

type Totals = { published: number; confirmed: number; nacked: number };

/** A client as the recorder sees it: state events, consumers' stats, publishers' totals. */
class FakeClient extends TypedEmitter<{ state: (change: StateChange) => void }> {
  consumers: { stats: ConsumerStats }[] = [];
  publishers: { totals: Totals; counters: { nackRetries: number } }[] = [];
  rpcClients: { calls: number }[] = [];
  rpcServers: { served: number }[] = [];
  change(from: StateChange["from"], to: StateChange["to"], error?: Error, degraded = false): void {
    this.emit("state", {
      from,
      to,
      error,
      host: "127.0.0.1:5672",
      degraded,
      role: "shared",
      connection: undefined,
    });
  }
}

/** A response whose buffered bytes the test sets. */
class FakeResponse implements SseClient {
  writableLength = 0;
  destroyed = false;
  readonly chunks: string[] = [];
  write(chunk: string): boolean {
    this.chunks.push(chunk);
    return true;
  }
  destroy(): void {
    this.destroyed = true;
  }
}

// ─── ring buffer ────────────────────────────────────────────────────────────

describe("Ring", () => {
  it("keeps the last `capacity` items, oldest first, and counts what it pushed out", () => {
    const ring = new Ring<number>(3);
    expect(ring.toArray()).toEqual([]);
    ring.push(1);
    ring.push(2);
    expect(ring.toArray()).toEqual([1, 2]);
    for (let i = 3; i <= 10; i++) ring.push(i);
    expect(ring.toArray()).toEqual([8, 9, 10]);
    expect(ring.size).toBe(3);
    expect(ring.dropped).toBe(7);
  });

  it("refuses a capacity below 1 or not whole", () => {
    expect(() => new Ring(0)).toThrow(ConfigError);
    expect(() => new Ring(2.5)).toThrow(ConfigError);
  });
});

// ─── rate meter ─────────────────────────────────────────────────────────────

describe("RateMeter", () => {
  it("gives per-second rates of the counters' growth between samples", () => {
    const a = {};
    const b = {};
    const meter = new RateMeter(1000, [
      [a, { published: 10, confirmed: 5 }],
      [b, { delivered: 100 }],
    ]);
    const r = meter.sample(1500, [
      [a, { published: 60, confirmed: 30, nacked: 1 }],
      [b, { delivered: 400, acked: 300 }],
    ]);
    expect(r).toEqual({
      published: 100,
      confirmed: 50,
      nacked: 2,
      retried: 0,
      delivered: 600,
      acked: 600,
      rejected: 0,
      deadLettered: 0,
      rpcCalls: 0,
      rpcServed: 0,
      intervalMs: 500,
    });
  });

  it("starts a source that appeared since from 0, and never goes negative when one goes away", () => {
    const old = {};
    const meter = new RateMeter(0, [[old, { delivered: 1000 }]]);
    const fresh = {};
    // `old` was cancelled (gone from the list); `fresh` was made and counted 20 meanwhile.
    expect(meter.sample(1000, [[fresh, { delivered: 20 }]]).delivered).toBe(20);
    expect(meter.sample(2000, [[fresh, { delivered: 20 }]]).delivered).toBe(0);
  });

  it("gives zeros for an empty interval", () => {
    const s = {};
    const meter = new RateMeter(5, [[s, { acked: 1 }]]);
    expect(meter.sample(5, [[s, { acked: 9 }]])).toMatchObject({ acked: 0, intervalMs: 0 });
  });
});

// ─── recorder ───────────────────────────────────────────────────────────────

describe("StatusRecorder", () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: new Date("2026-01-01T00:00:00.000Z") });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("records transitions, oldest first, bounded by `history`, with the error's name, code and message", () => {
    const client = new FakeClient();
    const rec = new StatusRecorder(client, { history: 4 });
    client.change("idle", "connecting");
    client.change("connecting", "recovering", new SocketError("connect ECONNREFUSED 127.0.0.1:1"));
    for (let i = 0; i < 5; i++) {
      client.change("recovering", "connecting");
      client.change("connecting", "recovering", new SocketError("connect ECONNREFUSED 127.0.0.1:1"));
    }
    const t = rec.transitions;
    expect(t).toHaveLength(4);
    expect(t.map((x) => x.to)).toEqual(["connecting", "recovering", "connecting", "recovering"]);
    expect(t[1]).toEqual({
      time: "2026-01-01T00:00:00.000Z",
      from: "connecting",
      to: "recovering",
      host: "127.0.0.1:5672",
      degraded: false,
      error: { name: "SocketError", code: "SOCKET_ERROR", message: "connect ECONNREFUSED 127.0.0.1:1" },
      role: "shared",
    });
    expect(t[0]).not.toHaveProperty("error");
    rec.close();
  });

  it("notes the last recovery: when, how long the client was down, and why", () => {
    const client = new FakeClient();
    const rec = new StatusRecorder(client);
    client.change("idle", "connecting");
    client.change("connecting", "handshaking");
    client.change("handshaking", "restoring");
    client.change("restoring", "running");
    expect(rec.lastRecovery).toBeNull(); // the first open is no recovery
    vi.advanceTimersByTime(1000);
    const killed = new ConnectionClosedByBroker({
      replyCode: 320,
      replyText: "CONNECTION_FORCED - closed by test",
      classId: 0,
      methodId: 0,
    });
    client.change("running", "recovering", killed);
    vi.advanceTimersByTime(100);
    client.change("recovering", "connecting");
    client.change("connecting", "recovering", new SocketError("connect ECONNREFUSED"));
    vi.advanceTimersByTime(150);
    client.change("recovering", "connecting");
    client.change("connecting", "handshaking");
    client.change("handshaking", "restoring");
    client.change("restoring", "running");
    expect(rec.lastRecovery).toEqual({
      time: "2026-01-01T00:00:01.250Z",
      downMs: 250,
      reason: { name: killed.name, code: killed.code, message: killed.message },
    });
    rec.close();
  });

  it("computes rates on a timer while someone listens: one event per interval, however many messages", () => {
    const client = new FakeClient();
    const consumer = { stats: stats({ delivered: 5 }) };
    const publisher = { totals: { published: 7, confirmed: 7, nacked: 0 }, counters: { nackRetries: 0 } };
    const rpcClient = { calls: 3 };
    const rpcServer = { served: 1 };
    client.consumers = [consumer];
    client.publishers = [publisher];
    client.rpcClients = [rpcClient];
    client.rpcServers = [rpcServer];
    const rec = new StatusRecorder(client, { ratesIntervalMs: 500 });
    const events: StatusEvent[] = [];
    const stop = rec.subscribe((e) => events.push(e));
    // A burst: thousands of messages within one interval.
    for (let i = 1; i <= 5000; i++) {
      publisher.totals = { published: 7 + i, confirmed: 7 + i, nacked: i % 1000 === 0 ? 1 : 0 };
      publisher.counters = { nackRetries: Math.floor(i / 1000) };
      consumer.stats = stats({
        delivered: 5 + i,
        acked: i,
        requeued: i % 2,
        deadLettered: Math.floor(i / 500),
        retried: 3,
      });
      rpcClient.calls = 3 + Math.floor(i / 50);
      rpcServer.served = 1 + Math.floor(i / 100);
    }
    vi.advanceTimersByTime(499);
    expect(events).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(events).toHaveLength(1);
    const first = events[0] as { type: "rates"; rates: Rates };
    expect(first.type).toBe("rates");
    expect(first.rates).toEqual({
      published: 10_000,
      confirmed: 10_000,
      nacked: 2,
      retried: 16, // 5 publishes sent again + 3 deliveries retried, in 0.5 s
      delivered: 10_000,
      acked: 10_000,
      rejected: 0,
      deadLettered: 20,
      rpcCalls: 200,
      rpcServed: 100,
      intervalMs: 500,
      time: "2026-01-01T00:00:00.500Z",
    });
    vi.advanceTimersByTime(2000);
    expect(events).toHaveLength(5);
    expect((events[4] as { rates: Rates }).rates.published).toBe(0);
    stop();
    vi.advanceTimersByTime(5000);
    expect(events).toHaveLength(5); // no listener, no timer
    expect(vi.getTimerCount()).toBe(0);
    rec.close();
  });

  it("adds up the time blocked, recovering and degraded, the current spell included", () => {
    const client = new FakeClient();
    const rec = new StatusRecorder(client);
    expect(rec.stateSince).toBeUndefined();
    expect(rec.timeIn()).toEqual({ blockedMs: 0, recoveringMs: 0, degradedMs: 0 });
    client.change("restoring", "running");
    vi.advanceTimersByTime(1000);
    client.change("running", "blocked");
    vi.advanceTimersByTime(300);
    expect(rec.timeIn()).toEqual({ blockedMs: 300, recoveringMs: 0, degradedMs: 0 });
    client.change("blocked", "running");
    vi.advanceTimersByTime(1000);
    const lost = new SocketError("read ECONNRESET");
    client.change("running", "recovering", lost);
    vi.advanceTimersByTime(200);
    client.change("recovering", "connecting", undefined, true);
    vi.advanceTimersByTime(50);
    expect(rec.timeIn()).toEqual({ blockedMs: 300, recoveringMs: 250, degradedMs: 50 });
    client.change("connecting", "handshaking", undefined, true);
    client.change("handshaking", "restoring", undefined, true);
    vi.advanceTimersByTime(50);
    client.change("restoring", "running");
    expect(rec.stateSince).toBe(Date.now());
    vi.advanceTimersByTime(5000);
    expect(rec.timeIn()).toEqual({ blockedMs: 300, recoveringMs: 300, degradedMs: 100 });
    rec.close();
  });

  it("tells listeners each transition as it happens, in order", () => {
    const client = new FakeClient();
    const rec = new StatusRecorder(client);
    const seen: string[] = [];
    const stop = rec.subscribe((e) => {
      if (e.type === "state") seen.push(`${e.transition.from}→${e.transition.to}`);
    });
    client.change("running", "recovering", new SocketError("read ECONNRESET"));
    client.change("recovering", "connecting");
    stop();
    client.change("connecting", "handshaking");
    expect(seen).toEqual(["running→recovering", "recovering→connecting"]);
    rec.close();
  });

  it("listens to the client only until close(), and refuses a rates interval under 250 ms", () => {
    const client = new FakeClient();
    expect(client.listenerCount("state")).toBe(0);
    const rec = new StatusRecorder(client);
    rec.subscribe(() => undefined);
    expect(client.listenerCount("state")).toBe(1);
    expect(vi.getTimerCount()).toBe(1);
    rec.close();
    rec.close();
    expect(client.listenerCount("state")).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(rec.listenerCount).toBe(0);
    client.change("idle", "connecting");
    expect(rec.transitions).toEqual([]);
    expect(() => new StatusRecorder(client, { ratesIntervalMs: 100 })).toThrow(ConfigError);
    expect(client.listenerCount("state")).toBe(0);
  });
});

// ─── readiness ──────────────────────────────────────────────────────────────

describe("readiness", () => {
  const consuming = { queue: "q", state: "consuming" as const, lastSubscribeError: null };

  it("is ready when the client runs, is not degraded and every consumer consumes", () => {
    expect(readiness({ state: "running", degraded: false, blocked: null, consumers: [consuming] })).toEqual({
      ready: true,
      state: "running",
      reasons: [],
    });
  });

  it("gives a reason for each trouble", () => {
    const r = readiness({
      state: "recovering",
      degraded: true,
      blocked: null,
      consumers: [
        consuming,
        { queue: "orders", state: "resubscribing", lastSubscribeError: "QUEUE_NOT_FOUND" },
        { queue: "audit", state: "waiting", lastSubscribeError: null },
      ],
    });
    expect(r.ready).toBe(false);
    expect(r.reasons).toEqual([
      "the client is recovering",
      "the client is degraded: recoveries exceeded the restart intensity",
      "the consumer of orders is resubscribing (last error: QUEUE_NOT_FOUND)",
      "the consumer of audit is waiting",
    ]);
    const blocked = readiness({ state: "blocked", degraded: false, blocked: "low on memory", consumers: [] });
    expect(blocked.reasons).toEqual(["the broker blocks the connection: low on memory"]);
  });
});

// ─── event-stream hub ───────────────────────────────────────────────────────

describe("SseHub", () => {
  it("writes each event to every client within the bound and drops the ones past it", () => {
    const sizes: number[] = [];
    const hub = new SseHub(1000, (n) => sizes.push(n));
    const fast = new FakeResponse();
    const slow = new FakeResponse();
    hub.add(fast);
    hub.add(slow);
    hub.send("rates", { acked: 1 });
    expect(fast.chunks).toEqual(['event: rates\ndata: {"acked":1}\n\n']);
    expect(slow.chunks).toHaveLength(1);
    slow.writableLength = 1001;
    hub.send("state", { to: "running" });
    expect(slow.destroyed).toBe(true);
    expect(slow.chunks).toHaveLength(1); // nothing more buffered for it
    expect(fast.chunks).toHaveLength(2);
    expect(hub.dropped).toBe(1);
    expect(hub.size).toBe(1);
    expect(sizes).toEqual([1, 2, 1]);
    hub.close();
    expect(fast.destroyed).toBe(true);
    expect(sizes).toEqual([1, 2, 1, 0]);
  });

  it("formats an event as one data line even when a value holds newlines", () => {
    expect(sseChunk("state", { message: "a\nb" })).toBe('event: state\ndata: {"message":"a\\nb"}\n\n');
  });

  it("over real sockets: a reader that stopped is dropped once its buffer passes the bound, others go on", async () => {
    const bound = 64 * 1024;
    const hub = new SseHub(bound);
    const joined: ServerResponse[] = [];
    const server = createServer((_req, res) => {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      res.write(": hello\n\n");
      const remove = hub.add(res);
      res.on("close", remove);
      joined.push(res);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    try {
      // The slow reader reads the headers, then nothing: the kernel's buffers fill, then Node's.
      const slow = request({ port, host: "127.0.0.1", path: "/" }, (res) => {
        res.pause();
        res.socket.pause();
      });
      slow.on("error", () => undefined);
      slow.end();
      await waitFor(() => joined.length === 1, "the slow reader to join");
      // The fast reader reads everything.
      let fastBytes = 0;
      const fast = request({ port, host: "127.0.0.1", path: "/" }, (res) => {
        res.on("data", (chunk: Buffer) => {
          fastBytes += chunk.length;
        });
      });
      fast.on("error", () => undefined);
      fast.end();
      await waitFor(() => joined.length === 2, "the fast reader to join");
      const [slowRes, fastRes] = joined as [ServerResponse, ServerResponse];
      const payload = { pad: "x".repeat(4000) };
      let maxBuffered = 0;
      let sent = 0;
      // Far more than the kernel holds (a few MiB on loopback): the slow reader must fall behind.
      // Paced by the fast reader, which keeps up.
      while (hub.dropped === 0 && sent < 20_000) {
        hub.send("rates", payload);
        sent++;
        maxBuffered = Math.max(maxBuffered, slowRes.writableLength);
        if (fastRes.writableLength > bound / 4)
          await waitFor(() => fastRes.writableLength === 0, "the fast reader to keep up");
      }
      expect(hub.dropped).toBe(1);
      expect(hub.size).toBe(1);
      // What it held never passed the bound by more than one event.
      expect(maxBuffered).toBeLessThanOrEqual(bound + sseChunk("rates", payload).length);
      // Its socket is closed on the server's side (it never reads, so it will not notice soon).
      expect(slowRes.destroyed).toBe(true);
      expect(slowRes.socket?.destroyed ?? true).toBe(true);
      hub.send("rates", { after: true });
      const expected = sent * sseChunk("rates", payload).length;
      await waitFor(() => fastBytes >= expected, "the fast reader to get every event");
      slow.destroy();
      fast.destroy();
    } finally {
      hub.close();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    }
  });
});
