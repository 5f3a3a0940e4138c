import { type Channel, Connection } from "../../src/index.js";
import { type PubSubOptions, Receipts, stamped } from "./pubsub.js";
import { pump } from "./pump.js";
import { Correlator, correlatedCalls, REPLY_TO } from "./rpc-calls.js";
import type { BenchClient, OpenOptions } from "./types.js";

export class WarrenClient implements BenchClient {
  readonly name = "warren";
  private conn!: Connection;
  private pub!: Channel;
  private confirm!: Channel;
  private sub!: Channel;
  private rpcChannel: Channel | undefined;
  private readonly correlator = new Correlator();

  async open(o: OpenOptions): Promise<void> {
    this.conn = await Connection.open(
      o.frameMax === undefined ? o.url : { url: o.url, frameMax: o.frameMax },
    );
    this.pub = await this.conn.openChannel();
    this.confirm = await this.conn.openChannel();
    await this.confirm.confirmSelect();
    this.sub = await this.conn.openChannel();
  }

  async publish(queue: string, body: Buffer, count: number): Promise<void> {
    const ch = this.pub;
    for (let i = 0; i < count; i++) {
      if (!ch.basicPublish("", queue, body)) await ch.waitForDrain();
    }
    await ch.queueDeclare({ queue, passive: true });
  }

  publishConfirmed(queue: string, body: Buffer, count: number, maxInFlight: number): Promise<void> {
    const ch = this.confirm;
    const writer = this.conn.writer;
    return pump(
      count,
      maxInFlight,
      (done, fail) => {
        ch.publish("", queue, body).then(done, fail);
        return !writer.needsDrain;
      },
      (resume) => void ch.waitForDrain().then(resume),
    );
  }

  async consume(queue: string, count: number, prefetch: number, bodySize: number): Promise<void> {
    const ch = this.sub;
    await ch.basicQos({ prefetchCount: prefetch });
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      ch.basicConsume({ queue }, (m) => {
        if (m.body.length !== bodySize) reject(new Error(`body of ${m.body.length} bytes, not ${bodySize}`));
        ch.basicAck(m.deliveryTag);
        if (++received === count) resolve();
      }).catch(reject);
    });
    await ch.queueDeclare({ queue, passive: true });
  }

  /** Publishes on the plain channel (drain signal) while the consuming channel receives. */
  async pubsub(queue: string, template: Buffer, count: number, o: PubSubOptions): Promise<Float64Array> {
    const pub = this.pub;
    const sub = this.sub;
    const r = new Receipts(count, template.length);
    await sub.basicQos({ prefetchCount: o.prefetch });
    const tag = await sub.basicConsume({ queue, noAck: o.noAck }, (m) => {
      if (!o.noAck) sub.basicAck(m.deliveryTag);
      r.receive(m.body);
    });
    const publishing = (async () => {
      for (let i = 0; i < count; i++) {
        if (!pub.basicPublish("", queue, stamped(template, i))) await pub.waitForDrain();
      }
    })();
    await Promise.all([publishing, r.all]);
    await sub.basicCancel(tag);
    return r.finish();
  }

  /** Direct reply-to by hand on one channel: consume amq.rabbitmq.reply-to (noAck), publish with replyTo. */
  async rpc(queue: string, body: Buffer, count: number, concurrency: number): Promise<number[]> {
    if (this.rpcChannel === undefined) {
      const ch = await this.conn.openChannel();
      await ch.basicConsume({ queue: REPLY_TO, noAck: true }, (m) =>
        this.correlator.reply(m.properties.correlationId, m.body),
      );
      this.rpcChannel = ch;
    }
    const ch = this.rpcChannel;
    return correlatedCalls(count, concurrency, body, this.correlator, (correlationId) =>
      ch.basicPublish("", queue, body, { replyTo: REPLY_TO, correlationId }),
    );
  }

  async close(): Promise<void> {
    await this.conn.close();
  }
}
