/**
 * What every benchmarked client implements. One instance lives in one worker
 * process, holds one connection and the channels the workloads need, and is
 * driven through the client's own public API with its usual backpressure
 * signal. Queues are declared and deleted by the orchestrator, not here.
 *
 * Every method resolves only once the broker has seen the work: publishes end
 * with a synchronous round trip on the publishing channel (or the last
 * confirm), consumes with one after the last ack.
 */
import type { Workload } from "../jobs.js";
import type { PubSubOptions } from "./pubsub.js";

export interface OpenOptions {
  url: string;
  /** Negotiated frame_max to ask for; undefined keeps the client's default. */
  frameMax: number | undefined;
}

export interface BenchClient {
  /** npm package name. */
  readonly name: string;
  /** Connects and opens its channels (one plain publishing, one confirm, one consuming). */
  open(o: OpenOptions): Promise<void>;
  /**
   * Publishes `count` copies of `body` to `queue` through the default exchange, without
   * confirms, waiting whenever the client signals backpressure; then does a synchronous
   * round trip on the same channel so the broker has read every message.
   */
  publish(queue: string, body: Buffer, count: number): Promise<void>;
  /** Publishes with confirms, at most `maxInFlight` unconfirmed; resolves once all are acked. */
  publishConfirmed(queue: string, body: Buffer, count: number, maxInFlight: number): Promise<void>;
  /**
   * Consumes `count` messages from `queue` with manual acks and the given prefetch, acking
   * each as it arrives; resolves after a round trip that follows the last ack. Rejects if a
   * body does not have `bodySize` bytes.
   */
  consume(queue: string, count: number, prefetch: number, bodySize: number): Promise<void>;
  /**
   * rpc: `count` request/reply calls to `queue` over direct reply-to (consume
   * amq.rabbitmq.reply-to with noAck, publish with replyTo and a correlationId on the same
   * channel, or the client's own RPC API), at most `concurrency` outstanding; resolves with each
   * call's round trip in µs. Rejects if a reply is not the request's body. Absent: n/a.
   */
  /**
   * pubsub: publishes `count` stamped copies of `template` (clients/pubsub.ts) to `queue` without
   * confirms, at most `o.window` outstanding (or the client's drain signal), while a consumer of
   * the same client, on another channel, receives them (`o.noAck`, or acking each; `o.prefetch`).
   * Resolves once all were received and the consumer was cancelled (its basic.cancel follows the
   * last ack), with each message's publish → deliver latency in µs. Rejects on a missing, extra,
   * duplicate or wrong-sized message.
   */
  pubsub(queue: string, template: Buffer, count: number, o: PubSubOptions): Promise<Float64Array>;
  rpc?(queue: string, body: Buffer, count: number, concurrency: number): Promise<number[]>;
  /**
   * scaling: starts one consumer per queue of `queues`, each on its own new channel with
   * `prefetch`, acking each message; resolves once `countEach` arrived on every one and all were
   * cancelled (each cancel follows its last ack) and their channels closed. Rejects on a wrong-sized
   * body. Absent: not in the scaling table.
   */
  consumeMany?(
    queues: readonly string[],
    countEach: number,
    prefetch: number,
    bodySize: number,
  ): Promise<void>;
  /**
   * scaling: `publishers` confirmed publishers, each on its own channel (made on first use and
   * kept), publish `count` copies of `body` to `queue` between them, each with at most
   * `maxInFlight` unconfirmed; resolves once all are confirmed.
   */
  publishMany?(
    queue: string,
    body: Buffer,
    count: number,
    publishers: number,
    maxInFlight: number,
  ): Promise<void>;
  close(): Promise<void>;
}

export type ClientName =
  | "warren"
  | "warren-client"
  | "warren-outbox"
  | "warren-observed"
  | "warren-status"
  | "warren-single"
  | "amqplib"
  | "rabbitmq-client"
  | "@cloudamqp/amqp-client";

/**
 * "warren" is the low-level Connection/Channel API, "warren-client" the supervised client
 * (`connect()`, its publishers and consumers), "warren-outbox" the supervised client
 * publishing through its durable SQLite outbox, "warren-observed" the supervised client with
 * Prometheus metrics and OpenTelemetry tracing on, "warren-status" the supervised client with its
 * status server served and watched (an /events reader, /status.json every 2 s), "warren-single"
 * the supervised client on one connection (`connections: "single"`; warren-client has two).
 */
export const CLIENT_NAMES: readonly ClientName[] = [
  "warren",
  "warren-client",
  "warren-outbox",
  "warren-observed",
  "warren-status",
  "warren-single",
  "amqplib",
  "rabbitmq-client",
  "@cloudamqp/amqp-client",
];

/** The other libraries: "best peer" is the best of these. */
export const PEERS: readonly ClientName[] = ["amqplib", "rabbitmq-client", "@cloudamqp/amqp-client"];

/** Clients that run only some workloads (the rest are reported as n/a); absent: all. */
export const CLIENT_WORKLOADS: Partial<Record<ClientName, readonly Workload[]>> = {
  "warren-outbox": ["confirm"],
  "warren-observed": ["confirm", "consume"],
  "warren-status": ["confirm", "consume"],
  "warren-single": ["confirm", "consume"],
};

export function runsWorkload(client: ClientName, workload: Workload): boolean {
  return CLIENT_WORKLOADS[client]?.includes(workload) ?? true;
}

/** Loads only the module of the client asked for, so a worker holds one library. */
export async function loadClient(name: ClientName): Promise<BenchClient> {
  switch (name) {
    case "warren":
      return new (await import("./warren.js")).WarrenClient();
    case "warren-client":
      return new (await import("./warren-client.js")).WarrenClientClient();
    case "warren-outbox":
      return new (await import("./warren-outbox.js")).WarrenOutboxClient();
    case "warren-observed":
      return new (await import("./warren-observed.js")).WarrenObservedClient();
    case "warren-status":
      return new (await import("./warren-status.js")).WarrenStatusClient();
    case "warren-single":
      return new (await import("./warren-single.js")).WarrenSingleClient();
    case "amqplib":
      return new (await import("./amqplib.js")).AmqplibClient();
    case "rabbitmq-client":
      return new (await import("./rabbitmq-client.js")).RabbitmqClient();
    case "@cloudamqp/amqp-client":
      return new (await import("./amqp-client.js")).CloudAmqpClient();
  }
}
