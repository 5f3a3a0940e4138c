/**
 * warren's supervised client (`connect()`), driven the way its README suggests: publishers
 * from `client.publisher()` (which bound what is in flight and wait for the socket to drain
 * themselves) with their promises awaited in the same caller-side window as the peers' (confirms:
 * maxInFlight; without: WRITE_WINDOW, as the promise-based peers), and `client.consume()` with an
 * async handler (acked once it resolves).
 *
 * The publisher's and the consumer's channels are the client's own, so the round trip that
 * ends an unconfirmed publish goes over a separate raw channel of the publishers' connection (the
 * broker has then read every byte sent before it); a consume ends with consumer.cancel(),
 * whose basic.cancel and channel.close follow the last ack on the consumer's channel.
 *
 * The client is made with connect()'s defaults (the URL, and frameMax when asked): pubsub puts
 * its publisher and consumer wherever those defaults put them, as a user calling it would get.
 */
import {
  type Channel,
  type Client,
  type ClientOptions,
  type ConsumedMessage,
  connect,
  type Publisher,
  type RpcClient,
} from "../../src/index.js";
import { type PubSubOptions, Receipts, stamped } from "./pubsub.js";
import { pump, pumpShared, WRITE_WINDOW } from "./pump.js";
import { timedCalls } from "./rpc-calls.js";
import type { BenchClient, OpenOptions } from "./types.js";

export class WarrenClientClient implements BenchClient {
  readonly name: string = "warren-client";
  protected client!: Client;
  private plain: Publisher | undefined;
  private confirmed = new Map<number, Publisher>();
  /** publishMany's publishers, kept from one call to the next (the first made ones reused). */
  private many: Publisher[] = [];
  private unconfirmed = new Map<number, Publisher>();
  private sync: Channel | undefined;
  private rpcClient: RpcClient | undefined;

  async open(o: OpenOptions): Promise<void> {
    const opts: ClientOptions = { url: o.url };
    if (o.frameMax !== undefined) opts.frameMax = o.frameMax;
    this.client = connect(opts);
    await this.client.ready();
  }

  async publish(queue: string, body: Buffer, count: number): Promise<void> {
    this.plain ??= this.client.publisher({ confirm: false });
    const pub = this.plain;
    // Its promises awaited in the same window as the promise-based peers' (WRITE_WINDOW): handing
    // all 100k over at once works too (the publisher bounds what it sends), but every message and
    // its promise then live until sent, which costs about 2.7× the CPU per message (docs/publishing.md).
    await pump(count, WRITE_WINDOW, (done, fail) => {
      pub.publish({ exchange: "", routingKey: queue, body }).then(done, fail);
      return true;
    });
    // The client exposes no channel of its publisher: a round trip on another channel of the
    // same connection shows the broker has read everything written before it.
    if (!this.sync?.isOpen) {
      // The publishers' connection (the client's publish one, unless it has one for everything).
      const conn = this.client.connections.find((c) => c.role !== "consume")?.connection;
      if (!conn) throw new Error("the client has no connection");
      this.sync = await conn.openChannel();
    }
    await this.sync.queueDeclare({ queue, passive: true });
  }

  async publishConfirmed(queue: string, body: Buffer, count: number, maxInFlight: number): Promise<void> {
    let pub = this.confirmed.get(maxInFlight);
    if (!pub) {
      pub = this.client.publisher({ maxInFlight, confirm: true });
      this.confirmed.set(maxInFlight, pub);
    }
    // The same caller-side window as every peer's confirm loop (the publisher bounds it too).
    await pump(
      count,
      maxInFlight,
      (done, fail) => {
        pub.publish({ exchange: "", routingKey: queue, body }).then(done, fail);
        return true;
      },
      (resume) => resume(),
    );
  }

  async consume(queue: string, count: number, prefetch: number, bodySize: number): Promise<void> {
    let received = 0;
    let consumer: ReturnType<Client["consume"]> | undefined;
    await new Promise<void>((resolve, reject) => {
      consumer = this.client.consume({ queue, prefetch }, async (m: ConsumedMessage) => {
        if (m.body.length !== bodySize) reject(new Error(`body of ${m.body.length} bytes, not ${bodySize}`));
        // The ack follows this handler's promise; cancel() below is sent after it.
        if (++received === count) setImmediate(resolve);
      });
      consumer.on("state", ({ to, error }) => {
        if (to === "failed") reject(error ?? new Error("the consumer failed"));
      });
    });
    await consumer!.cancel();
  }

  /** `client.consume()` once per queue (each its own channel), all at once; cancel() ends each. */
  async consumeMany(
    queues: readonly string[],
    countEach: number,
    prefetch: number,
    bodySize: number,
  ): Promise<void> {
    await Promise.all(queues.map((q) => this.consume(q, countEach, prefetch, bodySize)));
  }

  /** `client.publisher({ maxInFlight })` × `publishers` (each its own confirm channel), all at once. */
  async publishMany(
    queue: string,
    body: Buffer,
    count: number,
    publishers: number,
    maxInFlight: number,
  ): Promise<void> {
    while (this.many.length < publishers)
      this.many.push(this.client.publisher({ maxInFlight, confirm: true }));
    await pumpShared(count, this.many.slice(0, publishers), maxInFlight, (pub) => (done, fail) => {
      pub.publish({ exchange: "", routingKey: queue, body }).then(done, fail);
      return true;
    });
  }

  /**
   * `client.publisher({ confirm: false, maxInFlight })`, its promises awaited in a window of
   * `o.window`, while `client.consume()` receives (noAck, or acked once the handler resolves).
   */
  async pubsub(queue: string, template: Buffer, count: number, o: PubSubOptions): Promise<Float64Array> {
    let pub = this.unconfirmed.get(o.window);
    if (!pub) {
      pub = this.client.publisher({ confirm: false, maxInFlight: o.window });
      this.unconfirmed.set(o.window, pub);
    }
    const r = new Receipts(count, template.length);
    const consumer = this.client.consume(
      { queue, prefetch: o.prefetch, noAck: o.noAck },
      async (m: ConsumedMessage) => r.receive(m.body),
    );
    consumer.on("state", ({ to, error }) => {
      if (to === "failed") r.fail(`the consumer failed: ${error?.message ?? "no error given"}`);
    });
    await consumer.ready();
    let i = 0;
    const publishing = pump(count, o.window, (done, fail) => {
      pub.publish({ exchange: "", routingKey: queue, body: stamped(template, i++) }).then(done, fail);
      return true;
    });
    await Promise.all([publishing, r.all]);
    // basic.cancel (and channel.close) follow the last ack on the consumer's channel.
    await consumer.cancel();
    return r.finish();
  }

  /** `client.rpcClient().call()`: direct reply-to, correlation ids, timeouts, recovery. */
  async rpc(queue: string, body: Buffer, count: number, concurrency: number): Promise<number[]> {
    this.rpcClient ??= this.client.rpcClient();
    const rpc = this.rpcClient;
    return timedCalls(count, concurrency, body, async () => {
      const reply = await rpc.call({ routingKey: queue, body, timeoutMs: 30_000 });
      return reply.body;
    });
  }

  async close(): Promise<void> {
    if (this.sync?.isOpen) await this.sync.close();
    await this.client.close();
  }
}
