import amqplib from "amqplib";
import { type PubSubOptions, Receipts, stamped } from "./pubsub.js";
import { pump, pumpShared } from "./pump.js";
import { Correlator, correlatedCalls, REPLY_TO } from "./rpc-calls.js";
import type { BenchClient, OpenOptions } from "./types.js";

export class AmqplibClient implements BenchClient {
  readonly name = "amqplib";
  private conn!: amqplib.ChannelModel;
  private pub!: amqplib.Channel;
  private confirm!: amqplib.ConfirmChannel;
  private sub!: amqplib.Channel;
  private rpcChannel: amqplib.Channel | undefined;
  private readonly correlator = new Correlator();
  /** publishMany's confirm channels, kept from one call to the next. */
  private many: amqplib.ConfirmChannel[] = [];

  async open(o: OpenOptions): Promise<void> {
    const url = new URL(o.url);
    if (o.frameMax !== undefined) url.searchParams.set("frameMax", String(o.frameMax));
    this.conn = await amqplib.connect(url.toString());
    this.pub = await this.conn.createChannel();
    this.confirm = await this.conn.createConfirmChannel();
    this.sub = await this.conn.createChannel();
  }

  async publish(queue: string, body: Buffer, count: number): Promise<void> {
    const ch = this.pub;
    for (let i = 0; i < count; i++) {
      if (!ch.publish("", queue, body)) await new Promise((r) => ch.once("drain", r));
    }
    await ch.checkQueue(queue);
  }

  publishConfirmed(queue: string, body: Buffer, count: number, maxInFlight: number): Promise<void> {
    const ch = this.confirm;
    return pump(
      count,
      maxInFlight,
      (done, fail) =>
        ch.publish("", queue, body, {}, (err) => {
          if (err) fail(err);
          else done();
        }),
      (resume) => ch.once("drain", resume),
    );
  }

  async consume(queue: string, count: number, prefetch: number, bodySize: number): Promise<void> {
    const ch = this.sub;
    await ch.prefetch(prefetch);
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      ch.consume(
        queue,
        (m) => {
          if (m === null) return reject(new Error("consumer cancelled by the broker"));
          if (m.content.length !== bodySize)
            reject(new Error(`body of ${m.content.length} bytes, not ${bodySize}`));
          ch.ack(m);
          if (++received === count) resolve();
        },
        { noAck: false },
      ).catch(reject);
    });
    await ch.checkQueue(queue);
  }

  /** A new channel per queue, prefetch, consume, ack each; then cancel and close each. */
  async consumeMany(
    queues: readonly string[],
    countEach: number,
    prefetch: number,
    bodySize: number,
  ): Promise<void> {
    await Promise.all(
      queues.map(async (queue) => {
        const ch = await this.conn.createChannel();
        await ch.prefetch(prefetch);
        let received = 0;
        let tag = "";
        await new Promise<void>((resolve, reject) => {
          ch.consume(
            queue,
            (m) => {
              if (m === null) return reject(new Error("consumer cancelled by the broker"));
              if (m.content.length !== bodySize)
                reject(new Error(`body of ${m.content.length} bytes, not ${bodySize}`));
              ch.ack(m);
              if (++received === countEach) resolve();
            },
            { noAck: false },
          ).then((ok) => {
            tag = ok.consumerTag;
          }, reject);
        });
        await ch.cancel(tag);
        await ch.close();
      }),
    );
  }

  /** `publishers` confirm channels, each with its own window of `maxInFlight`. */
  async publishMany(
    queue: string,
    body: Buffer,
    count: number,
    publishers: number,
    maxInFlight: number,
  ): Promise<void> {
    while (this.many.length < publishers) this.many.push(await this.conn.createConfirmChannel());
    await pumpShared(
      count,
      this.many.slice(0, publishers),
      maxInFlight,
      (ch) => (done, fail) =>
        ch.publish("", queue, body, {}, (err) => {
          if (err) fail(err);
          else done();
        }),
      (ch) => (resume) => ch.once("drain", resume),
    );
  }

  /** sendToQueue() on the plain channel (false → wait for 'drain') while the consuming channel receives. */
  async pubsub(queue: string, template: Buffer, count: number, o: PubSubOptions): Promise<Float64Array> {
    const pub = this.pub;
    const sub = this.sub;
    const r = new Receipts(count, template.length);
    await sub.prefetch(o.prefetch);
    const { consumerTag } = await sub.consume(
      queue,
      (m) => {
        if (m === null) {
          r.fail("the broker cancelled the consumer");
          return;
        }
        if (!o.noAck) sub.ack(m);
        r.receive(m.content);
      },
      { noAck: o.noAck },
    );
    const publishing = (async () => {
      for (let i = 0; i < count; i++) {
        if (!pub.sendToQueue(queue, stamped(template, i))) await new Promise((d) => pub.once("drain", d));
      }
    })();
    await Promise.all([publishing, r.all]);
    await sub.cancel(consumerTag);
    return r.finish();
  }

  /** Direct reply-to by hand on one channel: consume amq.rabbitmq.reply-to (noAck), publish with replyTo. */
  async rpc(queue: string, body: Buffer, count: number, concurrency: number): Promise<number[]> {
    if (this.rpcChannel === undefined) {
      const ch = await this.conn.createChannel();
      await ch.consume(
        REPLY_TO,
        (m) => {
          if (m !== null) this.correlator.reply(m.properties.correlationId as string | undefined, m.content);
        },
        { noAck: true },
      );
      this.rpcChannel = ch;
    }
    const ch = this.rpcChannel;
    return correlatedCalls(count, concurrency, body, this.correlator, (correlationId) =>
      ch.publish("", queue, body, { replyTo: REPLY_TO, correlationId }),
    );
  }

  async close(): Promise<void> {
    await this.conn.close();
  }
}
