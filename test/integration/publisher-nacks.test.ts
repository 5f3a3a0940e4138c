/**
 * The publisher's nack policy and channel renewal against the scripted fake server (a real
 * broker will not nack on demand): nack streaks renew the channel, a nack then an ack retries
 * without renewing, `multiple` nacks, retries exhausted, and close() during a backoff.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ClientClosedError, PublishNackedError } from "../../src/index.js";
import { type FakePeer, FakeServer, type Frame } from "../fake/server.js";
import { errorOf, rejection } from "../support/async.js";
import { useClients } from "../support/clients.js";
import { waitFor } from "../support/wait.js";

interface Publish {
  channel: number;
  seq: number;
  body: string;
  at: number;
}

type Verdict = "ack" | "nack" | "hold";

/** The broker side of publisher confirms: numbers publishes per confirm channel and answers each. */
class ConfirmingBroker {
  readonly publishes: Publish[] = [];
  readonly confirmChannels: number[] = [];
  readonly closedChannels: number[] = [];
  readonly held: Publish[] = [];
  private seq = new Map<number, number>();
  private current = new Map<number, Publish>();

  constructor(
    private readonly peer: FakePeer,
    private readonly decide: (p: Publish, broker: ConfirmingBroker) => Verdict,
  ) {
    peer.watch((f) => this.onFrame(f));
  }

  private onFrame(f: Frame): void {
    const name = f.method?.name;
    if (name === "confirm.select") {
      this.confirmChannels.push(f.channel);
      this.seq.set(f.channel, 0);
    } else if (name === "channel.close") {
      this.closedChannels.push(f.channel);
    } else if (name === "basic.publish") {
      const seq = (this.seq.get(f.channel) ?? 0) + 1;
      this.seq.set(f.channel, seq);
      this.current.set(f.channel, { channel: f.channel, seq, body: "", at: Date.now() });
    } else if (f.type === 3) {
      const p = this.current.get(f.channel);
      if (!p) return;
      this.current.delete(f.channel);
      p.body = f.payload.toString();
      this.publishes.push(p);
      const verdict = this.decide(p, this);
      if (verdict === "hold") this.held.push(p);
      else this.confirm(p.channel, p.seq, verdict === "nack", false);
    }
  }

  confirm(channel: number, tag: number, nack: boolean, multiple: boolean): void {
    this.peer.send(
      channel,
      nack
        ? { name: "basic.nack", args: { deliveryTag: tag, multiple, requeue: false } }
        : { name: "basic.ack", args: { deliveryTag: tag, multiple } },
    );
  }

  sendsOf(body: string): Publish[] {
    return this.publishes.filter((p) => p.body === body);
  }
}

describe("publisher nack policy and channel renewal (fake server)", { timeout: 20_000 }, () => {
  const servers: FakeServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  // Registered after the servers' hook, so it runs before it: clients close before their server.
  // The fake broker plays one connection: the client keeps one.
  const newClient = useClients("nacks", { connections: "single" });

  async function setup(decide: (p: Publish, b: ConfirmingBroker) => Verdict) {
    let broker: ConfirmingBroker | undefined;
    const fake = await FakeServer.start(async (peer) => {
      peer.answerDefaults();
      broker = new ConfirmingBroker(peer, decide);
      await peer.handshake({ heartbeat: 0 });
    });
    servers.push(fake);
    const { client } = newClient({ url: `amqp://guest:guest@127.0.0.1:${fake.port}` });
    await client.ready();
    return { client, broker: () => broker! };
  }

  const bodies = (n: number, prefix = "m") => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

  it("a channel the broker nacks every publish on is renewed, and its messages go through on the new one", async () => {
    let stuck: number | undefined;
    const { client, broker } = await setup((p, b) => {
      stuck ??= b.confirmChannels[0];
      return p.channel === stuck ? "nack" : "ack";
    });
    const pub = client.publisher({ renewAfterNacks: 3, nackRetry: { initialDelayMs: 10, maxDelayMs: 20 } });
    const renewed: string[] = [];
    client.on("channelRenewed", ({ reason }) => renewed.push(reason));
    const sent = bodies(10);
    await Promise.all(sent.map((body) => pub.publish({ exchange: "", routingKey: "q", body })));

    const b = broker();
    expect(pub.counters.channelRenewals).toBe(1);
    expect(renewed).toEqual(["nacks"]);
    expect(b.closedChannels).toContain(stuck);
    expect(b.confirmChannels.length).toBe(2); // confirm mode set up again on the new channel
    const fresh = b.confirmChannels[1];
    for (const body of sent) {
      const sends = b.sendsOf(body);
      expect(sends[0]!.channel).toBe(stuck);
      expect(sends.at(-1)!.channel).toBe(fresh);
    }
    expect(pub.pending).toBe(0);
  });

  it("the outbox relay: a channel that nacks everything is renewed and the rows go through; none is dead-lettered", async () => {
    let stuck: number | undefined;
    const { client, broker } = await setup((p, b) => {
      stuck ??= b.confirmChannels[0];
      return p.channel === stuck ? "nack" : "ack";
    });
    const dir = mkdtempSync(join(tmpdir(), "warren-nacks-"));
    try {
      const pub = client.publisher({
        outbox: { path: join(dir, "outbox.db") },
        renewAfterNacks: 3,
        nackRetry: { initialDelayMs: 10, maxDelayMs: 20 },
      });
      const sent = bodies(8, "row");
      for (const body of sent) await pub.publish({ exchange: "", routingKey: "q", body });
      await pub.whenIdle(10_000);
      expect(pub.stored).toBe(0);
      expect(pub.deadLetters.list()).toEqual([]);
      expect(pub.counters.channelRenewals).toBeGreaterThanOrEqual(1);
      const b = broker();
      expect(b.closedChannels).toContain(stuck);
      const fresh = b.confirmChannels.at(-1);
      for (const body of sent) expect(b.sendsOf(body).at(-1)!.channel).toBe(fresh);
      await pub.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a nack then an ack: sent again after the backoff; no renewal while acks come between nacks", async () => {
    const { client, broker } = await setup((p, b) => (b.sendsOf(p.body).length === 1 ? "nack" : "ack"));
    const pub = client.publisher({ renewAfterNacks: 2, nackRetry: { initialDelayMs: 100, maxDelayMs: 100 } });
    const sent = bodies(4);
    for (const body of sent) await pub.publish({ exchange: "", routingKey: "q", body });
    const b = broker();
    expect(pub.counters).toEqual({ nackRetries: 4, channelRenewals: 0 });
    for (const body of sent) {
      const [first, second, ...more] = b.sendsOf(body);
      expect(more).toEqual([]);
      expect(second!.channel).toBe(first!.channel);
      // Equal jitter: at least half of the 100 ms delay (timer granularity aside).
      expect(second!.at - first!.at).toBeGreaterThanOrEqual(45);
    }
    expect(b.closedChannels).toEqual([]);
  });

  it("a `multiple` nack settles every message up to its tag; they are sent again in their original order", async () => {
    let nackedOnce = false;
    const { client, broker } = await setup((p, b) =>
      !nackedOnce && b.sendsOf(p.body).length === 1 ? "hold" : "ack",
    );
    const pub = client.publisher({ renewAfterNacks: 10, nackRetry: { initialDelayMs: 10, maxDelayMs: 10 } });
    const sent = bodies(5);
    const done = Promise.all(sent.map((body) => pub.publish({ exchange: "", routingKey: "q", body })));
    const b = broker();
    await waitFor(() => b.held.length === 5, "five held publishes");
    nackedOnce = true;
    b.confirm(b.held[0]!.channel, 5, true, true);
    await done;
    expect(pub.counters).toEqual({ nackRetries: 5, channelRenewals: 0 });
    expect(b.publishes.slice(5).map((p) => p.body)).toEqual(sent);
    expect(b.publishes.map((p) => p.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it("nacked on every attempt: rejects with PublishNackedError carrying the attempts; renewals back off", async () => {
    const { client, broker } = await setup(() => "nack");
    const pub = client.publisher({
      renewAfterNacks: 1,
      nackRetry: { attempts: 4, withinMs: 10_000, initialDelayMs: 10, maxDelayMs: 20 },
    });
    const err = await rejection(pub.publish({ exchange: "", routingKey: "q", body: "never" }));
    expect(err).toBeInstanceOf(PublishNackedError);
    expect((err as PublishNackedError).attempts).toBe(4);
    expect((err as PublishNackedError).cause).toBeInstanceOf(PublishNackedError);
    expect(broker().sendsOf("never")).toHaveLength(4);
    expect(pub.counters.nackRetries).toBe(3);
    // One renewal per nack at most, fewer when the nacks come faster than the renewal backoff.
    expect(pub.counters.channelRenewals).toBeGreaterThanOrEqual(1);
    expect(pub.counters.channelRenewals).toBeLessThanOrEqual(4);
    expect(pub.pending).toBe(0);
  });

  it("the retry window bounds the attempts too", async () => {
    const { client, broker } = await setup(() => "nack");
    const withinMs = 300;
    const pub = client.publisher({
      renewAfterNacks: 0,
      nackRetry: { attempts: 100, withinMs, initialDelayMs: 100, maxDelayMs: 100 },
    });
    // Date.now(), the clock the publisher measures the window with.
    const started = Date.now();
    const err = (await rejection(
      pub.publish({ exchange: "", routingKey: "q", body: "x" }),
    )) as PublishNackedError;
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(PublishNackedError);
    // Bounds that follow from the configuration, whatever the machine's speed: the first nack is
    // always retried; each retry waits at least 50 ms (half the 100 ms delay: equal jitter), and none
    // starts once 300 ms have passed since the first nack, so at most 2 + 300 / 50 = 8 sends. A slow
    // machine gives fewer attempts, never more. The attempts limit (100) is far beyond reach.
    expect(err.attempts).toBeGreaterThanOrEqual(2);
    expect(err.attempts).toBeLessThanOrEqual(8);
    expect(broker().sendsOf("x")).toHaveLength(err.attempts);
    // It gave up on the first nack past the window: not before it; nominally ~400 ms (the window,
    // one more delay, the round trips), bounded at 5x that for a loaded machine.
    expect(elapsed).toBeGreaterThanOrEqual(withinMs);
    expect(elapsed).toBeLessThan(2000);
    expect(broker().closedChannels).toEqual([]); // renewAfterNacks 0: never renewed
  });

  it("close() rejects a message waiting for its nack backoff with ClientClosedError", async () => {
    const { client } = await setup(() => "nack");
    const pub = client.publisher({ nackRetry: { initialDelayMs: 60_000, maxDelayMs: 60_000 } });
    const p = errorOf(pub.publish({ exchange: "", routingKey: "q", body: "waiting" }));
    await waitFor(() => pub.counters.nackRetries === 1, "the first nack");
    expect(pub.pending).toBe(1);
    await pub.close(0);
    expect(await p).toBeInstanceOf(ClientClosedError);
    expect(pub.pending).toBe(0);
  });
});
