import { type Channel, Connection, type RPCClient } from "rabbitmq-client";
import { type PubSubOptions, Receipts, stamped } from "./pubsub.js";
import { pump, pumpShared, WRITE_WINDOW } from "./pump.js";
import { timedCalls } from "./rpc-calls.js";
import type { BenchClient, OpenOptions } from "./types.js";

/**
 * rabbitmq-client's basicPublish returns a promise that resolves once the frames are
 * written to the socket (they wait in its encoder stream while the socket drains); that
 * promise is its only backpressure signal, so without confirms at most WRITE_WINDOW are
 * left unresolved.
 */
export class RabbitmqClient implements BenchClient {
  readonly name = "rabbitmq-client";
  private conn!: Connection;
  private pub!: Channel;
  private confirm!: Channel;
  private sub!: Channel;
  private rpcClient: RPCClient | undefined;
  /** publishMany's confirm channels, kept from one call to the next. */
  private many: Channel[] = [];

  async open(o: OpenOptions): Promise<void> {
    this.conn = new Connection(
      o.frameMax === undefined ? { url: o.url } : { url: o.url, frameMax: o.frameMax },
    );
    this.conn.on("error", (err) => {
      console.error(`rabbitmq-client connection error: ${String(err)}`);
    });
    this.pub = await this.conn.acquire();
    this.confirm = await this.conn.acquire();
    await this.confirm.confirmSelect();
    this.sub = await this.conn.acquire();
  }

  async publish(queue: string, body: Buffer, count: number): Promise<void> {
    const ch = this.pub;
    await pump(count, WRITE_WINDOW, (done, fail) => {
      ch.basicPublish({ routingKey: queue }, body).then(done, fail);
      return true;
    });
    await ch.queueDeclare({ queue, passive: true });
  }

  publishConfirmed(queue: string, body: Buffer, count: number, maxInFlight: number): Promise<void> {
    const ch = this.confirm;
    return pump(count, maxInFlight, (done, fail) => {
      ch.basicPublish({ routingKey: queue }, body).then(done, fail);
      return true;
    });
  }

  async consume(queue: string, count: number, prefetch: number, bodySize: number): Promise<void> {
    const ch = this.sub;
    await ch.basicQos({ prefetchCount: prefetch });
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      ch.basicConsume({ queue }, (m) => {
        const n = Buffer.isBuffer(m.body) ? m.body.length : -1;
        if (n !== bodySize) reject(new Error(`body of ${n} bytes, not ${bodySize}`));
        ch.basicAck({ deliveryTag: m.deliveryTag });
        if (++received === count) resolve();
      }).catch(reject);
    });
    await ch.queueDeclare({ queue, passive: true });
  }

  /** A new channel per queue, basicQos, basicConsume, ack each; then basicCancel and close each. */
  async consumeMany(
    queues: readonly string[],
    countEach: number,
    prefetch: number,
    bodySize: number,
  ): Promise<void> {
    await Promise.all(
      queues.map(async (queue) => {
        const ch = await this.conn.acquire();
        await ch.basicQos({ prefetchCount: prefetch });
        let received = 0;
        let tag = "";
        await new Promise<void>((resolve, reject) => {
          ch.basicConsume({ queue }, (m) => {
            const n = Buffer.isBuffer(m.body) ? m.body.length : -1;
            if (n !== bodySize) reject(new Error(`body of ${n} bytes, not ${bodySize}`));
            ch.basicAck({ deliveryTag: m.deliveryTag });
            if (++received === countEach) resolve();
          }).then((ok) => {
            tag = ok.consumerTag;
          }, reject);
        });
        await ch.basicCancel(tag);
        await ch.close();
      }),
    );
  }

  /** `publishers` confirm channels, each with its own window of `maxInFlight` publish promises. */
  async publishMany(
    queue: string,
    body: Buffer,
    count: number,
    publishers: number,
    maxInFlight: number,
  ): Promise<void> {
    while (this.many.length < publishers) {
      const ch = await this.conn.acquire();
      await ch.confirmSelect();
      this.many.push(ch);
    }
    await pumpShared(count, this.many.slice(0, publishers), maxInFlight, (ch) => (done, fail) => {
      ch.basicPublish({ routingKey: queue }, body).then(done, fail);
      return true;
    });
  }

  /** Its publish promise, at most `o.window` unresolved, while the consuming channel receives. */
  async pubsub(queue: string, template: Buffer, count: number, o: PubSubOptions): Promise<Float64Array> {
    const pub = this.pub;
    const sub = this.sub;
    const r = new Receipts(count, template.length);
    await sub.basicQos({ prefetchCount: o.prefetch });
    const { consumerTag } = await sub.basicConsume({ queue, noAck: o.noAck }, (m) => {
      if (!o.noAck) sub.basicAck({ deliveryTag: m.deliveryTag });
      r.receive(Buffer.isBuffer(m.body) ? m.body : null);
    });
    let i = 0;
    const publishing = pump(count, o.window, (done, fail) => {
      pub.basicPublish({ routingKey: queue }, stamped(template, i++)).then(done, fail);
      return true;
    });
    await Promise.all([publishing, r.all]);
    await sub.basicCancel(consumerTag);
    return r.finish();
  }

  /** Its RPC client, `createRPCClient()` (direct reply-to), without publisher confirms as the others. */
  async rpc(queue: string, body: Buffer, count: number, concurrency: number): Promise<number[]> {
    this.rpcClient ??= this.conn.createRPCClient({ confirm: false, timeout: 30_000 });
    const rpc = this.rpcClient;
    return timedCalls(count, concurrency, body, async () => {
      const reply = await rpc.send({ routingKey: queue }, body);
      return Buffer.isBuffer(reply.body) ? reply.body : Buffer.from(String(reply.body ?? ""));
    });
  }

  async close(): Promise<void> {
    await this.rpcClient?.close();
    await Promise.all([
      this.pub.close(),
      this.confirm.close(),
      this.sub.close(),
      ...this.many.map((c) => c.close()),
    ]);
    await this.conn.close();
  }
}
