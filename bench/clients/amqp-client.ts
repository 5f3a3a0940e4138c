import { type AMQPChannel, AMQPClient } from "@cloudamqp/amqp-client";
import { type PubSubOptions, Receipts, stamped } from "./pubsub.js";
import { pump, pumpShared, WRITE_WINDOW } from "./pump.js";
import { Correlator, correlatedCalls, REPLY_TO } from "./rpc-calls.js";
import type { BenchClient, OpenOptions } from "./types.js";

/**
 * @cloudamqp/amqp-client's basicPublish writes straight to the socket and returns a
 * promise resolved by the socket's write callback (or, in confirm mode, by the confirm);
 * without confirms we keep at most WRITE_WINDOW of them unresolved, as for rabbitmq-client.
 */
export class CloudAmqpClient implements BenchClient {
  readonly name = "@cloudamqp/amqp-client";
  private client!: AMQPClient;
  private pub!: AMQPChannel;
  private confirm!: AMQPChannel;
  private sub!: AMQPChannel;
  private rpcChannel: AMQPChannel | undefined;
  private readonly correlator = new Correlator();
  /** publishMany's confirm channels, kept from one call to the next. */
  private many: AMQPChannel[] = [];

  async open(o: OpenOptions): Promise<void> {
    const url = new URL(o.url);
    if (o.frameMax !== undefined) url.searchParams.set("frameMax", String(o.frameMax));
    this.client = new AMQPClient(url.toString());
    await this.client.connect();
    this.pub = await this.client.channel();
    this.confirm = await this.client.channel();
    await this.confirm.confirmSelect();
    this.sub = await this.client.channel();
  }

  async publish(queue: string, body: Buffer, count: number): Promise<void> {
    const ch = this.pub;
    await pump(count, WRITE_WINDOW, (done, fail) => {
      ch.basicPublish("", queue, body).then(done, fail);
      return true;
    });
    await ch.queueDeclare(queue, { passive: true });
  }

  publishConfirmed(queue: string, body: Buffer, count: number, maxInFlight: number): Promise<void> {
    const ch = this.confirm;
    return pump(count, maxInFlight, (done, fail) => {
      ch.basicPublish("", queue, body).then(done, fail);
      return true;
    });
  }

  async consume(queue: string, count: number, prefetch: number, bodySize: number): Promise<void> {
    const ch = this.sub;
    await ch.basicQos(prefetch);
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      ch.basicConsume(queue, { noAck: false }, (m) => {
        if (m.bodySize !== bodySize) reject(new Error(`body of ${m.bodySize} bytes, not ${bodySize}`));
        void ch.basicAck(m.deliveryTag);
        if (++received === count) resolve();
      }).catch(reject);
    });
    await ch.queueDeclare(queue, { passive: true });
  }

  /** A new channel per queue, basicQos, basicConsume, ack each; then cancel and close each. */
  async consumeMany(
    queues: readonly string[],
    countEach: number,
    prefetch: number,
    bodySize: number,
  ): Promise<void> {
    await Promise.all(
      queues.map(async (queue) => {
        const ch = await this.client.channel();
        await ch.basicQos(prefetch);
        let received = 0;
        let done: () => void = () => undefined;
        const all = new Promise<void>((resolve) => {
          done = resolve;
        });
        let bad: Error | undefined;
        const consumer = await ch.basicConsume(queue, { noAck: false }, (m) => {
          if (m.bodySize !== bodySize) bad ??= new Error(`body of ${m.bodySize} bytes, not ${bodySize}`);
          void ch.basicAck(m.deliveryTag);
          if (++received === countEach) done();
        });
        await all;
        if (bad) throw bad;
        await consumer.cancel();
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
      const ch = await this.client.channel();
      await ch.confirmSelect();
      this.many.push(ch);
    }
    await pumpShared(count, this.many.slice(0, publishers), maxInFlight, (ch) => (done, fail) => {
      ch.basicPublish("", queue, body).then(done, fail);
      return true;
    });
  }

  /** Its publish promise, at most `o.window` unresolved, while the consuming channel receives. */
  async pubsub(queue: string, template: Buffer, count: number, o: PubSubOptions): Promise<Float64Array> {
    const pub = this.pub;
    const sub = this.sub;
    const r = new Receipts(count, template.length);
    await sub.basicQos(o.prefetch);
    const consumer = await sub.basicConsume(queue, { noAck: o.noAck }, (m) => {
      if (!o.noAck) void sub.basicAck(m.deliveryTag);
      r.receive(m.body);
    });
    let i = 0;
    const publishing = pump(count, o.window, (done, fail) => {
      pub.basicPublish("", queue, stamped(template, i++)).then(done, fail);
      return true;
    });
    await Promise.all([publishing, r.all]);
    await consumer.cancel();
    return r.finish();
  }

  /** Direct reply-to by hand on one channel: consume amq.rabbitmq.reply-to (noAck), publish with replyTo. */
  async rpc(queue: string, body: Buffer, count: number, concurrency: number): Promise<number[]> {
    if (this.rpcChannel === undefined) {
      const ch = await this.client.channel();
      await ch.basicConsume(REPLY_TO, { noAck: true }, (m) => {
        this.correlator.reply(m.properties.correlationId, m.body ?? new Uint8Array(0));
      });
      this.rpcChannel = ch;
    }
    const ch = this.rpcChannel;
    return correlatedCalls(count, concurrency, body, this.correlator, (correlationId) =>
      ch.basicPublish("", queue, body, { replyTo: REPLY_TO, correlationId }),
    );
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
