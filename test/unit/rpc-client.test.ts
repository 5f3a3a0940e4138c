/**
 * The RPC client's decisions without a broker (src/client/rpc-client.ts, rpc-protocol.ts):
 * correlation of replies, call timeouts, the maxInFlight queue, a channel dying mid-call (lost, or
 * sent again with retry), a refused publish, unroutable requests, error replies, close(). The
 * channels are FakeChannels attached as the client's supervised channel attaches them.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Message } from "../../src/amqp/channel-types.js";
import { RpcClient, type RpcClientHost, type RpcClientOptions } from "../../src/client/rpc-client.js";
import { DIRECT_REPLY_TO, RPC_ERROR_HEADER } from "../../src/client/rpc-protocol.js";
import {
  ChannelClosedByBroker,
  ClientClosedError,
  ConfigError,
  ConnectionClosedError,
  RpcCallTimeoutError,
  RpcConnectionLostError,
  RpcRemoteError,
  UnroutableError,
} from "../../src/errors.js";
import type { RpcCallOutcome, RpcClientStats } from "../../src/observability/observers.js";
import { brokerClose, FakeChannel, flush, type Tracked, track } from "./fakes/fake-channel.js";

class FakeRpcHost implements RpcClientHost {
  closed = false;
  channelCloses = 0;
  readonly outcomes: RpcCallOutcome[] = [];
  dropped = 0;
  retried = 0;
  readonly stats: RpcClientStats = {
    settled: (outcome) => {
      this.outcomes.push(outcome);
    },
    droppedReply: () => {
      this.dropped++;
    },
    retried: () => {
      this.retried++;
    },
  };

  closeChannel(): void {
    this.channelCloses++;
  }
}

let host: FakeRpcHost;
let clients: RpcClient[];

function rpcClient(options: RpcClientOptions = {}): RpcClient {
  const c = new RpcClient(host, options);
  clients.push(c);
  return c;
}

/** A new channel, attached as the supervised channel does: the reply consumer, then what waits is sent. */
async function attach(c: RpcClient): Promise<FakeChannel> {
  const ch = new FakeChannel({ confirm: false });
  await c.attach(ch.channel);
  await flush();
  return ch;
}

/** The reply to the `i`-th request sent on `ch`. */
function reply(
  ch: FakeChannel,
  i: number,
  body = `reply${i}`,
  headers?: Message["properties"]["headers"],
): void {
  const correlationId = ch.sent[i]!.properties.correlationId!;
  ch.deliver(i + 1, {
    body: Buffer.from(body),
    properties: { correlationId, ...(headers ? { headers } : {}) },
  });
}

const ids = (ch: FakeChannel): (string | undefined)[] => ch.sent.map((s) => s.properties.correlationId);
const bodies = (ch: FakeChannel): string[] => ch.sent.map((s) => String(s.body));

async function run(ms: number): Promise<void> {
  await flush();
  await vi.advanceTimersByTimeAsync(ms);
  await flush();
}

beforeEach(() => {
  vi.useFakeTimers();
  host = new FakeRpcHost();
  clients = [];
});

afterEach(async () => {
  const closing = Promise.all(clients.map((c) => c.close(0)));
  await run(0);
  await closing;
  vi.useRealTimers();
});

describe("requests", () => {
  it("wait for the channel, then go out with direct reply-to, a fresh correlationId, mandatory, expiring when the call times out", async () => {
    const c = rpcClient();
    const r = track(
      c.call({
        routingKey: "prices",
        body: "EURUSD",
        timeoutMs: 5000,
        properties: { correlationId: "mine", persistent: true },
      }),
    );
    expect(c.queued).toBe(1);
    expect(c.ready).toBe(false);
    await run(1000);
    const ch = await attach(c);
    expect(ch.calls).toEqual([`consume ${DIRECT_REPLY_TO}`]);
    expect(c.ready).toBe(true);
    expect(ch.sent).toHaveLength(1);
    const s = ch.sent[0]!;
    expect(s).toMatchObject({ exchange: "", routingKey: "prices", mandatory: true });
    expect(s.properties.replyTo).toBe(DIRECT_REPLY_TO);
    expect(s.properties.correlationId).not.toBe("mine");
    expect(s.properties.deliveryMode).toBe(2);
    expect(s.properties.expiration).toBe("4000");
    expect(c.inFlight).toBe(1);
    expect(c.queued).toBe(0);
    reply(ch, 0, "1.08");
    await flush();
    expect(r.status).toBe("resolved");
    expect(String(r.value!.body)).toBe("1.08");
    expect(host.outcomes).toEqual(["ok"]);
  });

  it("keep an expiration the caller gave", async () => {
    const c = rpcClient();
    const ch = await attach(c);
    track(c.call({ routingKey: "q", body: "x", properties: { expiration: "60000" } }));
    expect(ch.sent[0]!.properties.expiration).toBe("60000");
  });

  it("refuse bad options with ConfigError", async () => {
    expect(() => rpcClient({ maxInFlight: 0 })).toThrow(ConfigError);
    expect(() => rpcClient({ timeoutMs: 0 })).toThrow(ConfigError);
    const c = rpcClient();
    const badTimeout = track(c.call({ routingKey: "q", body: "x", timeoutMs: -1 }));
    const badRetry = track(c.call({ routingKey: "q", body: "x", retry: { attempts: 0 } }));
    await flush();
    expect(badTimeout.error).toBeInstanceOf(ConfigError);
    expect(badRetry.error).toBeInstanceOf(ConfigError);
  });
});

describe("correlation", () => {
  it("matches each reply to its call by correlationId, in whatever order replies come", async () => {
    const c = rpcClient();
    const ch = await attach(c);
    const a = track(c.call({ routingKey: "q", body: "a" }));
    const b = track(c.call({ routingKey: "q", body: "b" }));
    expect(new Set(ids(ch)).size).toBe(2);
    reply(ch, 1, "for b");
    await flush();
    expect(a.status).toBe("pending");
    expect(String(b.value!.body)).toBe("for b");
    reply(ch, 0, "for a");
    await flush();
    expect(String(a.value!.body)).toBe("for a");
    expect(c.inFlight).toBe(0);
  });

  it("drops and counts a reply that matches no call", async () => {
    const c = rpcClient();
    const ch = await attach(c);
    const dropped: Message[] = [];
    c.on("droppedReply", (m) => dropped.push(m));
    const a = track(c.call({ routingKey: "q", body: "a" }));
    ch.deliver(1, { properties: { correlationId: "not-ours" } });
    ch.deliver(2, { properties: {} });
    await flush();
    expect(dropped.map((m) => m.properties.correlationId)).toEqual(["not-ours", undefined]);
    expect(host.dropped).toBe(2);
    expect(a.status).toBe("pending");
    expect(c.inFlight).toBe(1);
  });
});

describe("call timeouts", () => {
  it("a call sent with no reply: RpcCallTimeoutError; the reply coming later is dropped", async () => {
    const c = rpcClient();
    const ch = await attach(c);
    const r = track(c.call({ routingKey: "prices", body: "x", timeoutMs: 1000 }));
    await run(999);
    expect(r.status).toBe("pending");
    await run(1);
    expect(r.error).toBeInstanceOf(RpcCallTimeoutError);
    const m = (r.error as RpcCallTimeoutError).message;
    expect(m).toMatch(/no reply to the call to queue "prices" within 1000 ms/);
    expect(m).not.toMatch(/never sent/);
    expect(c.inFlight).toBe(0);
    reply(ch, 0);
    await flush();
    expect(host.dropped).toBe(1);
    expect(host.outcomes).toEqual(["timeout"]);
  });

  it("a call never sent for want of a connection says so", async () => {
    const c = rpcClient({ timeoutMs: 500 });
    const r = track(c.call({ exchange: "ex", routingKey: "k", body: "x" }));
    await run(500);
    expect(r.error).toBeInstanceOf(RpcCallTimeoutError);
    expect((r.error as Error).message).toMatch(
      /call to exchange "ex" \("k"\) within 500 ms \(never sent: waiting for the connection\)/,
    );
    const ch = await attach(c);
    expect(ch.sent).toEqual([]);
  });

  it("a call never sent for want of a slot says so", async () => {
    const c = rpcClient({ maxInFlight: 1 });
    const ch = await attach(c);
    track(c.call({ routingKey: "q", body: "a", timeoutMs: 10_000 }));
    const b = track(c.call({ routingKey: "q", body: "b", timeoutMs: 500 }));
    await run(500);
    expect((b.error as Error).message).toMatch(/never sent: waiting for a slot, maxInFlight reached/);
    reply(ch, 0);
    await flush();
    expect(bodies(ch)).toEqual(["a"]);
  });
});

describe("maxInFlight", () => {
  it("sends at most maxInFlight calls; the others wait, in order, for a reply to free a slot", async () => {
    const c = rpcClient({ maxInFlight: 2 });
    const ch = await attach(c);
    const rs = ["a", "b", "c", "d"].map((body) => track(c.call({ routingKey: "q", body })));
    expect(bodies(ch)).toEqual(["a", "b"]);
    expect(c.inFlight).toBe(2);
    expect(c.queued).toBe(2);
    reply(ch, 1);
    await flush();
    expect(bodies(ch)).toEqual(["a", "b", "c"]);
    reply(ch, 0);
    await flush();
    expect(bodies(ch)).toEqual(["a", "b", "c", "d"]);
    expect(rs.map((r) => r.status)).toEqual(["resolved", "resolved", "pending", "pending"]);
  });

  it("a call that timed out frees its slot for the next", async () => {
    const c = rpcClient({ maxInFlight: 1 });
    const ch = await attach(c);
    track(c.call({ routingKey: "q", body: "a", timeoutMs: 100 }));
    track(c.call({ routingKey: "q", body: "b", timeoutMs: 10_000 }));
    await run(100);
    expect(bodies(ch)).toEqual(["a", "b"]);
  });
});

describe("a channel closing mid-call", () => {
  it.each([
    ["connection", new ConnectionClosedError("socket closed")],
    ["channel", brokerClose(406, "PRECONDITION_FAILED - unknown delivery tag 1", "basic.ack")],
  ] as const)(
    "without retry: RpcConnectionLostError (recoverable) naming the %s; not sent again",
    async (what, cause) => {
      const c = rpcClient();
      const ch1 = await attach(c);
      const r = track(c.call({ routingKey: "q", body: "a" }));
      ch1.die(cause);
      await flush();
      expect(r.error).toBeInstanceOf(RpcConnectionLostError);
      const e = r.error as RpcConnectionLostError;
      expect(e.recoverable).toBe(true);
      expect(e.message).toMatch(new RegExp(`^the ${what} carrying the call closed before its reply came`));
      expect(e.cause).toBe(cause);
      expect(c.ready).toBe(false);
      const ch2 = await attach(c);
      expect(ch2.sent).toEqual([]);
      expect(host.outcomes).toEqual(["connection_lost"]);
    },
  );

  it("with retry: sent again on the next channel, before the calls that waited, in original order", async () => {
    const c = rpcClient();
    const ch1 = await attach(c);
    const a = track(c.call({ routingKey: "q", body: "a", retry: true }));
    const b = track(c.call({ routingKey: "q", body: "b" }));
    const d = track(c.call({ routingKey: "q", body: "c", retry: true }));
    ch1.die(new ConnectionClosedError("socket closed"));
    const e = track(c.call({ routingKey: "q", body: "e" }));
    await flush();
    expect(b.error).toBeInstanceOf(RpcConnectionLostError);
    expect(c.queued).toBe(3);
    expect(host.retried).toBe(2);

    const ch2 = await attach(c);
    expect(bodies(ch2)).toEqual(["a", "c", "e"]);
    expect(ids(ch2).slice(0, 2)).toEqual([ids(ch1)[0], ids(ch1)[2]]);
    reply(ch2, 0);
    reply(ch2, 1);
    reply(ch2, 2);
    await flush();
    expect([a.status, d.status, e.status]).toEqual(["resolved", "resolved", "resolved"]);
  });

  it("with retry: fails once its sends are used up", async () => {
    const c = rpcClient();
    const ch1 = await attach(c);
    const r = track(c.call({ routingKey: "q", body: "a", retry: { attempts: 2 } }));
    ch1.die(new ConnectionClosedError("first"));
    const ch2 = await attach(c);
    expect(ch2.sent).toHaveLength(1);
    ch2.die(new ConnectionClosedError("second"));
    await flush();
    expect(r.error).toBeInstanceOf(RpcConnectionLostError);
    const ch3 = await attach(c);
    expect(ch3.sent).toEqual([]);
  });

  it("a publish the broker refused (no such exchange) fails with that close, even with retry; other calls are sent again", async () => {
    const c = rpcClient();
    const ch1 = await attach(c);
    const refused = track(c.call({ exchange: "nope", routingKey: "q", body: "a", retry: true }));
    const other = track(c.call({ exchange: "", routingKey: "q", body: "b", retry: true }));
    const close = brokerClose(404, "NOT_FOUND - no exchange 'nope' in vhost '/'", "basic.publish");
    ch1.die(close);
    await flush();
    expect(refused.error).toBeInstanceOf(ChannelClosedByBroker);
    expect(refused.error).toBe(close);
    expect(other.status).toBe("pending");
    const ch2 = await attach(c);
    expect(bodies(ch2)).toEqual(["b"]);
    expect(host.outcomes).toEqual(["refused"]);
  });

  it("a channel found closing when sending is waited out: the call goes on the next one, after those it carried", async () => {
    const c = rpcClient();
    const ch1 = await attach(c);
    const a = track(c.call({ routingKey: "q", body: "a", retry: true }));
    ch1.state = "closing"; // its close event not yet come
    const b = track(c.call({ routingKey: "q", body: "b" }));
    await flush();
    expect(b.status).toBe("pending");
    expect(c.queued).toBe(1);
    ch1.die(new ConnectionClosedError("socket closed"));
    await flush();
    expect(a.status).toBe("pending");
    const ch2 = await attach(c);
    expect(bodies(ch2)).toEqual(["a", "b"]);
  });
});

describe("replies that are not answers", () => {
  it("an unroutable request (basic.return) rejects with UnroutableError", async () => {
    const c = rpcClient();
    const ch = await attach(c);
    const r = track(c.call({ routingKey: "nobody", body: "a" }));
    ch.emitReturn({ properties: { correlationId: "not-ours" }, routingKey: "nobody" });
    await flush();
    expect(r.status).toBe("pending");
    ch.emitReturn({ properties: { correlationId: ids(ch)[0]! }, routingKey: "nobody" });
    await flush();
    expect(r.error).toBeInstanceOf(UnroutableError);
    expect((r.error as UnroutableError).routingKey).toBe("nobody");
    expect((r.error as UnroutableError).replyCode).toBe(312);
    expect(host.outcomes).toEqual(["unroutable"]);
    expect(c.inFlight).toBe(0);
  });

  it.each([
    [
      "a table",
      { name: "TypeError", message: "bad input", code: "E_BAD" },
      { remoteName: "TypeError", remoteMessage: "bad input", remoteCode: "E_BAD" },
    ],
    [
      "a table without a code",
      { name: "Error", message: "no" },
      { remoteName: "Error", remoteMessage: "no", remoteCode: undefined },
    ],
    ["a plain string", "it broke", { remoteName: "Error", remoteMessage: "it broke", remoteCode: undefined }],
  ] as const)("an error reply (%s) rejects with RpcRemoteError", async (_, header, expected) => {
    const c = rpcClient();
    const ch = await attach(c);
    const r = track(c.call({ routingKey: "q", body: "a" }));
    reply(ch, 0, "", { [RPC_ERROR_HEADER]: header });
    await flush();
    expect(r.error).toBeInstanceOf(RpcRemoteError);
    expect(r.error).toMatchObject({ ...expected, recoverable: false });
    expect(host.outcomes).toEqual(["remote_error"]);
  });
});

describe("close()", () => {
  it("waits (bounded) for outstanding calls, then rejects them with ClientClosedError and closes the channel once", async () => {
    const c = rpcClient();
    await attach(c);
    const sent = track(c.call({ routingKey: "q", body: "a" }));
    const closed = track(c.close(500));
    const refused = track(c.call({ routingKey: "q", body: "b" }));
    await run(499);
    expect(closed.status).toBe("pending");
    expect(refused.error).toBeInstanceOf(ClientClosedError);
    await run(1);
    expect(closed.status).toBe("resolved");
    expect(sent.error).toBeInstanceOf(ClientClosedError);
    expect(host.channelCloses).toBe(1);
    await c.close(0);
    expect(host.channelCloses).toBe(1);
    expect(host.outcomes).toEqual(["closed"]);
  });

  it("returns as soon as the last reply comes", async () => {
    const c = rpcClient();
    const ch = await attach(c);
    const r = track(c.call({ routingKey: "q", body: "a" }));
    const closed = track(c.close(10_000));
    await flush();
    expect(closed.status).toBe("pending");
    reply(ch, 0);
    await flush();
    expect(r.status).toBe("resolved");
    expect(closed.status).toBe("resolved");
  });

  it("calls lost with their channel while closing get ClientClosedError, not a retry", async () => {
    const c = rpcClient();
    const ch = await attach(c);
    const r: Tracked<unknown> = track(c.call({ routingKey: "q", body: "a", retry: true }));
    const closed = track(c.close(10_000));
    ch.die(new ConnectionClosedError("socket closed"));
    await flush();
    expect(r.error).toBeInstanceOf(ClientClosedError);
    expect(closed.status).toBe("resolved");
    expect(host.retried).toBe(0);
  });

  it("refuses calls once the client is closed", async () => {
    host.closed = true;
    const c = rpcClient();
    const r = track(c.call({ routingKey: "q", body: "a" }));
    await flush();
    expect(r.error).toBeInstanceOf(ClientClosedError);
  });
});
